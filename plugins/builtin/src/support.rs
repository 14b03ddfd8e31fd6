//! Small helpers shared by several built-ins.

pub(crate) use hookline_plugin_api::toml_to_json;
use hookline_plugin_api::{ConfigError, Event, PluginConfig, StageError};
use serde_json::{Map, Value};

/// An error about the stage's table as a whole (no single key is at fault).
pub(crate) fn table_error(config: &PluginConfig<'_>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        message: message.into(),
        span: Some(config.span()),
        key: None,
    }
}

/// At most `max` characters of `text`, marked when cut: error messages quote peers' bodies
/// and rendered output, never unboundedly.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// The `event` variable of expressions and templates: identity without the payload.
pub(crate) fn event_meta(event: &Event) -> Value {
    serde_json::json!({
        "id": event.id,
        "type": event.event_type,
        "source": event.source,
        "received_at": event.received_at.to_string(),
    })
}

/// The `headers` variable: lower-case name to value; repeated headers are joined with `, `
/// as HTTP allows.
pub(crate) fn headers_map(event: &Event) -> Map<String, Value> {
    let mut map = Map::new();
    for (name, value) in &event.headers {
        match map.get_mut(name) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(value);
            }
            _ => {
                map.insert(name.clone(), Value::String(value.clone()));
            }
        }
    }
    map
}

/// The id a message-queue sink gives what it publishes (`Nats-Msg-Id`, AMQP `message_id`):
/// `<event id>:<pipeline>:<stage>:<16 hex digits of SHA-256 of the body>`. A redelivery of
/// the same event by the same stage has the same id, so brokers and consumers can drop the
/// copy; branches of a split (same event id, different bodies) and other stages do not.
pub(crate) fn delivery_id(event: &Event, pipeline: &str, stage: &str, body: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(body);
    let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}:{pipeline}:{stage}:{hash}", event.id)
}

/// For a dry run (`hookline check`): whether `path` could be opened for writing, without
/// creating it or its folders. An existing file is opened for append (which changes
/// nothing); otherwise the nearest existing ancestor must be a folder.
pub(crate) fn check_writable(path: &std::path::Path) -> Result<(), String> {
    if path.exists() {
        if path.is_dir() {
            return Err("it is a folder".into());
        }
        return std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map(drop)
            .map_err(|e| e.to_string());
    }
    let mut at = path.parent();
    while let Some(dir) = at {
        let dir = if dir.as_os_str().is_empty() {
            std::path::Path::new(".")
        } else {
            dir
        };
        if dir.exists() {
            if !dir.is_dir() {
                return Err(format!("{} is not a folder", dir.display()));
            }
            if dir.metadata().is_ok_and(|m| m.permissions().readonly()) {
                return Err(format!("{} is read-only", dir.display()));
            }
            return Ok(());
        }
        at = dir.parent();
    }
    Ok(())
}

/// The bytes a sink sends for `event`: the payload as JSON, or with `envelope` the whole event
/// (`id`, `source`, `type`, `received_at`, `payload`). Encoding cannot fail for a JSON value;
/// if it ever did, retrying would not help.
pub(crate) fn encode(event: &Event, envelope: bool) -> Result<Vec<u8>, StageError> {
    // Room for a typical webhook up front: growing from empty reallocates about eight times
    // for a 500-byte envelope.
    let mut out = Vec::with_capacity(1024);
    if envelope {
        serde_json::to_writer(&mut out, &event.envelope_ref())
    } else {
        serde_json::to_writer(&mut out, &event.payload)
    }
    .map_err(|e| StageError::fatal(format!("cannot encode event: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn toml_values_become_json() {
        let t: toml::Table =
            toml::from_str("a = 1\nb = [true, 2.5]\nc = 1979-05-27T07:32:00Z\nd = { e = 'x' }")
                .expect("toml");
        let j = toml_to_json(&toml::Value::Table(t)).expect("json");
        assert_eq!(
            j,
            json!({"a": 1, "b": [true, 2.5], "c": "1979-05-27T07:32:00Z", "d": {"e": "x"}})
        );
        assert!(toml_to_json(&toml::Value::Float(f64::NAN)).is_err());
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "hé…");
        assert_eq!(truncate("hi", 2), "hi");
    }

    #[test]
    fn delivery_ids_differ_by_stage_and_body_only() {
        let e = crate::testutil::event("t", json!({}));
        let id = delivery_id(&e, "p", "s", b"{}");
        assert_eq!(id, delivery_id(&e, "p", "s", b"{}"));
        assert!(id.starts_with("01J00000000000000000000000:p:s:"), "{id}");
        assert_ne!(id, delivery_id(&e, "p", "t", b"{}"));
        assert_ne!(id, delivery_id(&e, "p", "s", b"[]"));
    }

    #[test]
    fn repeated_headers_are_joined() {
        let mut e = crate::testutil::event("t", json!({}));
        e.headers = vec![
            ("a".into(), "1".into()),
            ("a".into(), "2".into()),
            ("b".into(), "3".into()),
        ];
        assert_eq!(
            Value::Object(headers_map(&e)),
            json!({"a": "1, 2", "b": "3"})
        );
    }
}
