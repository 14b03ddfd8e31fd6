use serde::{Deserialize, Serialize};

/// A verified webhook event as it moves through a pipeline.
///
/// Only a source's verifier creates events from requests: everything a stage sees has
/// passed signature verification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique id (UUIDv7 text), assigned at ingest; stable across retries and replays.
    pub id: String,
    /// Name of the `[[sources]]` entry that received it.
    pub source: String,
    /// Event type, taken from the signed payload (e.g. `email.captured`).
    #[serde(rename = "type")]
    pub event_type: String,
    /// When Hookline accepted the request.
    pub received_at: jiff::Timestamp,
    /// Request headers worth keeping (lower-case names; signatures and cookies removed).
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The JSON payload, as sent (or as changed by earlier transforms).
    pub payload: serde_json::Value,
}

impl Event {
    /// The value at a dotted path inside the payload (`data.lead.email`); array elements by
    /// index (`items.0.id`). `None` if any step is missing.
    pub fn lookup(&self, path: &str) -> Option<&serde_json::Value> {
        lookup(&self.payload, path)
    }

    /// The event's identity (id, source, type, arrival) without its headers and payload:
    /// what names it where the content is kept elsewhere.
    pub fn identity(&self) -> Event {
        Event {
            id: self.id.clone(),
            source: self.source.clone(),
            event_type: self.event_type.clone(),
            received_at: self.received_at,
            headers: Vec::new(),
            payload: serde_json::Value::Null,
        }
    }

    /// The envelope form sinks write with `envelope = true`, as a JSON value.
    pub fn envelope(&self) -> serde_json::Value {
        serde_json::to_value(self.envelope_ref())
            .expect("an envelope of strings and a JSON value always encodes")
    }

    /// The envelope form borrowed from the event: what a sink serialises, without copying
    /// the payload (a sink writing an envelope per delivery copied it for each).
    pub fn envelope_ref(&self) -> Envelope<'_> {
        Envelope {
            id: &self.id,
            source: &self.source,
            event_type: &self.event_type,
            received_at: &self.received_at,
            payload: &self.payload,
        }
    }
}

/// The envelope form of an [`Event`] (`id`, `source`, `type`, `received_at` as RFC 3339
/// text, `payload`, in that order), borrowed: see [`Event::envelope_ref`].
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Envelope<'a> {
    id: &'a str,
    source: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    #[serde(serialize_with = "as_text")]
    received_at: &'a jiff::Timestamp,
    payload: &'a serde_json::Value,
}

fn as_text<S: serde::Serializer>(at: &&jiff::Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(at)
}

/// Walk a dotted path (`a.b.0.c`) through objects and arrays.
pub fn lookup<'a>(value: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    if path.is_empty() {
        return Some(value);
    }
    path.split('.').try_fold(value, |v, key| match v {
        serde_json::Value::Object(map) => map.get(key),
        serde_json::Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(payload: serde_json::Value) -> Event {
        Event {
            id: "01".into(),
            source: "s".into(),
            event_type: "t".into(),
            received_at: jiff::Timestamp::UNIX_EPOCH,
            headers: vec![],
            payload,
        }
    }

    #[test]
    fn lookup_walks_objects_and_arrays() {
        let e = event(json!({"data": {"lead": {"email": "a@b.c"}, "items": [{"id": 7}]}}));
        assert_eq!(e.lookup("data.lead.email"), Some(&json!("a@b.c")));
        assert_eq!(e.lookup("data.items.0.id"), Some(&json!(7)));
        assert_eq!(e.lookup("data.items.1.id"), None);
        assert_eq!(e.lookup("data.lead.email.x"), None);
        assert_eq!(e.lookup("missing"), None);
    }

    #[test]
    fn envelope_carries_identity_and_payload() {
        let e = event(json!({"a": 1}));
        let env = e.envelope();
        assert_eq!(env["id"], "01");
        assert_eq!(env["type"], "t");
        assert_eq!(env["payload"], json!({"a": 1}));
        assert_eq!(env["received_at"], "1970-01-01T00:00:00Z");
        let keys: Vec<&String> = env.as_object().expect("object").keys().collect();
        assert_eq!(keys, ["id", "source", "type", "received_at", "payload"]);
        let text = serde_json::to_string(&e.envelope_ref()).expect("json");
        assert_eq!(text, serde_json::to_string(&env).expect("json"));
    }
}
