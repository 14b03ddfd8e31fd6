//! What the benches share: a runtime built from TOML as `serve` builds it, and the LeadShark
//! sample they run on.

use hookline::config::ConfigFile;
use hookline::runtime::Runtime;
use hookline_plugin_api::Event;

/// `text` built through the registry of built-ins, exactly as `serve` builds a config.
pub fn runtime(name: &str, text: String) -> Runtime {
    let file = ConfigFile {
        path: std::env::temp_dir().join(format!("hookline-bench-{name}.toml")),
        text,
    };
    let config = match file.parse() {
        Ok(c) => c,
        Err(d) => panic!("{d}"),
    };
    match Runtime::build(&config, &hookline_builtin::registry()) {
        Ok(r) => r,
        Err(d) => panic!("{d}"),
    }
}

/// A LeadShark `email.captured` sample, as ingest makes it an event.
pub fn event() -> Event {
    let payload = hookline_leadshark::samples::sample("email.captured", 42)
        .unwrap_or_else(|| panic!("sample"));
    Event {
        id: "0190b7e4-7f8a-7000-8000-000000000000".into(),
        source: "leadshark".into(),
        event_type: "email.captured".into(),
        received_at: jiff::Timestamp::now(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("x-webhook-event".into(), "email.captured".into()),
        ],
        payload,
    }
}
