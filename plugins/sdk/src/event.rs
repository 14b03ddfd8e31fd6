use hookline_leadshark::LeadSharkEvent;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A verified webhook event, as the host hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: String,
    /// The `[[sources]]` entry that received it.
    pub source: String,
    /// Event type from the signed payload (`email.captured`).
    pub event_type: String,
    /// RFC 3339.
    pub received_at: String,
    /// Lower-case header names.
    pub headers: Vec<(String, String)>,
    /// The JSON payload as text: parse it with [`Event::json`] or [`Event::leadshark`] only
    /// when needed.
    pub payload: String,
}

impl Event {
    /// The payload as JSON. Not JSON is a fatal error (retrying cannot fix it).
    pub fn json(&self) -> Result<Value, Error> {
        serde_json::from_str(&self.payload)
            .map_err(|e| Error::fatal(format!("payload is not JSON: {e}")))
    }

    pub fn set_json(&mut self, payload: &Value) {
        self.payload = payload.to_string();
    }

    /// The payload as a typed LeadShark event, parsed straight from the text (no
    /// intermediate [`Value`]).
    pub fn leadshark(&self) -> Result<LeadSharkEvent, Error> {
        LeadSharkEvent::from_json(&self.payload).map_err(Error::fatal)
    }

    pub fn set_leadshark(&mut self, event: &LeadSharkEvent) -> Result<(), Error> {
        self.payload = serde_json::to_string(event).map_err(|e| Error::fatal(e.to_string()))?;
        Ok(())
    }

    /// A header's value (names are lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One event a transform passes on, from [`Transform::apply_changes`](crate::Transform).
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A whole event (its id, source and time of arrival stay the host's).
    Whole(Event),
    /// The event the transform was given, with these changes.
    Changed(Changes),
}

impl Output {
    /// The event it was given, with `patch` merged into its payload (RFC 7396: objects merge
    /// key by key, `null` removes a key).
    pub fn merge(patch: Value) -> Output {
        Output::Changed(Changes {
            payload_patch: Some(patch),
            ..Changes::default()
        })
    }

    /// The event this output stands for, given the event the transform received.
    pub fn into_event(self, received: &Event) -> Event {
        match self {
            Output::Whole(event) => event,
            Output::Changed(changes) => {
                let mut event = received.clone();
                changes.apply_to(&mut event);
                event
            }
        }
    }
}

/// Changes to an event; `None` leaves that part as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    pub event_type: Option<String>,
    pub headers: Option<Vec<(String, String)>>,
    /// An RFC 7396 JSON merge patch for the payload.
    pub payload_patch: Option<Value>,
}

impl Changes {
    /// Make the changes to `event` here, as the host does (for tests, and for an `apply`
    /// written in terms of `apply_changes`). A payload that is not JSON is left as it is.
    pub fn apply_to(self, event: &mut Event) {
        if let Some(t) = self.event_type {
            event.event_type = t;
        }
        if let Some(h) = self.headers {
            event.headers = h;
        }
        if let Some(patch) = self.payload_patch
            && let Ok(mut payload) = event.json()
        {
            hookline_plugin_api::merge_patch(&mut payload, patch);
            event.set_json(&payload);
        }
    }
}

/// Why a plugin could not handle an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Trying again later may help: the host retries under the stage's retry policy.
    Retryable(String),
    /// Trying again cannot help: the event is dead-lettered with this message.
    Fatal(String),
}

impl Error {
    pub fn retryable(message: impl Into<String>) -> Self {
        Error::Retryable(message.into())
    }

    pub fn fatal(message: impl Into<String>) -> Self {
        Error::Fatal(message.into())
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Retryable(m) => write!(f, "retryable: {m}"),
            Error::Fatal(m) => write!(f, "fatal: {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// The stage's table from `pipeline.toml` (without the sandbox keys the host reads), as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Config(Value);

impl Config {
    #[doc(hidden)]
    pub fn from_json(text: &str) -> Result<Self, String> {
        serde_json::from_str(text)
            .map(Config)
            .map_err(|e| format!("config is not JSON: {e}"))
    }

    /// Deserialize into the plugin's settings; use `#[serde(deny_unknown_fields)]` so a typo
    /// is a start-up error.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, String> {
        T::deserialize(&self.0).map_err(|e| e.to_string())
    }

    /// The raw table.
    pub fn value(&self) -> &Value {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(payload: &str) -> Event {
        Event {
            id: "1".into(),
            source: "s".into(),
            event_type: "email.captured".into(),
            received_at: "2026-01-01T00:00:00Z".into(),
            headers: vec![("x-a".into(), "b".into())],
            payload: payload.into(),
        }
    }

    #[test]
    fn json_and_leadshark_round_trip() {
        let text = hookline_leadshark::samples::EMAIL_CAPTURED;
        let mut e = event(text);
        let typed = e.leadshark().expect("typed");
        assert_eq!(typed.event_type(), "email.captured");
        e.set_leadshark(&typed).expect("serialises");
        assert_eq!(e.json().expect("json")["data"]["lead"]["name"], "John Doe");
        assert_eq!(e.header("X-A"), Some("b"));
    }

    #[test]
    fn a_merge_output_changes_only_what_it_names() {
        let received = event(r#"{"event":"x","data":{"a":1,"b":2}}"#);
        let out = Output::merge(serde_json::json!({"data": {"b": null, "score": 5}}));
        let e = out.into_event(&received);
        assert_eq!(e.payload, r#"{"event":"x","data":{"a":1,"score":5}}"#);
        assert_eq!((e.id, e.headers), (received.id, received.headers));
    }

    #[test]
    fn bad_payload_is_fatal() {
        assert!(matches!(event("{").json(), Err(Error::Fatal(_))));
    }

    #[test]
    fn config_rejects_unknown_keys() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct S {
            a: u32,
        }
        let ok = Config::from_json(r#"{"a": 1}"#).expect("json");
        assert_eq!(ok.parse::<S>().expect("parses").a, 1);
        let bad = Config::from_json(r#"{"a": 1, "b": 2}"#).expect("json");
        assert!(bad.parse::<S>().expect_err("unknown").contains("b"));
    }
}
