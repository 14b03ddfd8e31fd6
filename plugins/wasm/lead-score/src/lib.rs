//! `wasm:lead-score` — adds a 0–100 score to LeadShark events, from the event kind and the
//! person's title.
//!
//! ```toml
//! { transform = "wasm:lead-score", field = "score" }
//! ```
//!
//! The score goes to `data.<field>`. Events that are not LeadShark payloads fail the stage
//! (fatal): put an `event` filter in front when a source sends other things too.

use hookline_plugin_sdk::{Config, Error, Event, Transform, leadshark};

mod score;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Key under `data` that receives the score.
    #[serde(default = "default_field")]
    field: String,
}

fn default_field() -> String {
    "score".into()
}

struct LeadScore(Settings);

impl Transform for LeadScore {
    fn new(config: Config) -> Result<Self, String> {
        Ok(LeadScore(config.parse()?))
    }

    fn apply(&mut self, mut event: Event) -> Result<Vec<Event>, Error> {
        let mut payload = event.json()?;
        let typed = leadshark::LeadSharkEvent::from_value(&payload).map_err(Error::fatal)?;
        let score = score::score(&typed);
        match payload.get_mut("data").and_then(|d| d.as_object_mut()) {
            Some(data) => {
                data.insert(self.0.field.clone(), score.into());
            }
            None => return Err(Error::fatal("payload has no `data` object")),
        }
        event.set_json(&payload);
        Ok(vec![event])
    }
}

hookline_plugin_sdk::transform!(LeadScore);
