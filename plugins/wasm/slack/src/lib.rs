//! `wasm:slack` — posts a one-line message per event to a Slack-style incoming webhook.
//!
//! ```toml
//! { sink = "wasm:slack", url = "${SLACK_WEBHOOK_URL}", allowed_hosts = ["hooks.slack.com"] }
//! ```
//!
//! The message is `{"text": "<prefix> <event type>: <name> (<title>) score <score>"}`
//! (parts the event lacks are left out). 2xx is delivered; 408, 429 and 5xx are retried;
//! other statuses and refusals by the host (a host not in `allowed_hosts`) are fatal.

use hookline_plugin_sdk::http::{self, Request};
use hookline_plugin_sdk::{Config, Error, Event, Sink};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// The incoming-webhook URL. Its host must be in the stage's `allowed_hosts`.
    url: String,
    /// Text before the summary.
    #[serde(default = "default_prefix")]
    prefix: String,
}

fn default_prefix() -> String {
    ":zap:".into()
}

struct Slack(Settings);

impl Sink for Slack {
    fn new(config: Config) -> Result<Self, String> {
        let settings: Settings = config.parse()?;
        if !settings.url.starts_with("https://") && !settings.url.starts_with("http://") {
            return Err("`url` must be an http(s) URL".into());
        }
        Ok(Slack(settings))
    }

    fn deliver(&mut self, event: &Event) -> Result<(), Error> {
        let text = format!("{} {}", self.0.prefix, summary(event));
        let request = Request::post_json(&self.0.url, &serde_json::json!({ "text": text }));
        http::send(&request)?.into_result()?;
        hookline_plugin_sdk::increment("messages_sent", 1);
        Ok(())
    }
}

fn summary(event: &Event) -> String {
    let mut out = event.event_type.clone();
    let Ok(payload) = event.json() else {
        return out;
    };
    let lead = &payload["data"]["lead"];
    let person = if lead.is_object() {
        lead
    } else {
        &payload["data"]["visitor"]
    };
    if let Some(name) = person["name"].as_str() {
        out.push_str(&format!(": {name}"));
    }
    if let Some(title) = person["title"].as_str() {
        out.push_str(&format!(" ({title})"));
    }
    if let Some(score) = payload["data"]["score"].as_u64() {
        out.push_str(&format!(" score {score}"));
    }
    out
}

hookline_plugin_sdk::sink!(Slack);
