//! Helpers for the plugins' unit tests.

use std::ops::Range;

use hookline_plugin_api::{BuildContext, ConfigError, Event, PluginConfig};
use serde_json::{Value, json};

/// A LeadShark v1 body (Feb 2026 docs): automation is an object, no `payload_version`.
pub(crate) fn leadshark_v1() -> Value {
    json!({
        "event": "email.captured",
        "timestamp": "2025-09-15T11:43:42.659+00:00",
        "data": {
            "lead": {
                "name": "John Doe",
                "title": "Senior Marketing Manager",
                "email": "john.doe@example.com",
                "linkedin_username": "john-doe-12345"
            },
            "automation": {"id": "58c132e6-648c-4079-8815-77a3b2ec1adc", "name": "Q4 Marketing Guide"}
        }
    })
}

/// A LeadShark v2 body (May 2026): `payload_version`, `actor_id`, and a null automation.
pub(crate) fn leadshark_v2() -> Value {
    json!({
        "event": "email.captured",
        "timestamp": "2026-05-09T10:00:00.000Z",
        "data": {
            "lead": {"name": "John Doe", "email": "john.doe@example.com", "actor_id": "ACoA123"},
            "automation": null,
            "payload_version": 2
        }
    })
}

pub(crate) fn event(event_type: &str, payload: Value) -> Event {
    Event {
        id: "01J00000000000000000000000".into(),
        source: "leadshark".into(),
        event_type: event_type.into(),
        received_at: jiff::Timestamp::UNIX_EPOCH,
        headers: vec![("x-webhook-event".into(), event_type.into())],
        payload,
    }
}

pub(crate) fn config<'a>(plugin: &str, text: &'a str) -> PluginConfig<'a> {
    PluginConfig::from_toml(plugin, text).expect("test TOML parses")
}

pub(crate) fn ctx() -> BuildContext {
    BuildContext::new(std::env::temp_dir(), "test", "stage")
}

/// A stage as the engine hands it over: the inline table that is the value of the first key
/// of `doc` (e.g. `stage = { path = "a" }`), with spans into `doc`.
pub(crate) fn inline_config(plugin: &str, doc: &'static str) -> PluginConfig<'static> {
    let table = toml::de::DeTable::parse(doc).expect("test TOML parses");
    let (_, value) = table.get_ref().iter().next().expect("one key");
    PluginConfig::new(plugin, value.clone())
}

/// The text an error's span covers.
pub(crate) fn spanned<'t>(text: &'t str, err: &ConfigError) -> &'t str {
    let span: Range<usize> = err.span.clone().expect("error has a span");
    &text[span]
}
