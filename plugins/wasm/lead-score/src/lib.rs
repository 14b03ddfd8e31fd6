//! `wasm:lead-score` — adds a 0–100 score to LeadShark events, from the event kind and the
//! person's title.
//!
//! ```toml
//! { transform = "wasm:lead-score", field = "score" }
//! ```
//!
//! The score goes to `data.<field>`. Events that are not LeadShark payloads fail the stage
//! (fatal): put an `event` filter in front when a source sends other things too.

use hookline_plugin_sdk::{Config, Error, Event, Output, Transform, leadshark, serde_json};

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

    fn apply(&mut self, event: Event) -> Result<Vec<Event>, Error> {
        let outputs = self.apply_changes(event.clone())?;
        Ok(outputs.into_iter().map(|o| o.into_event(&event)).collect())
    }

    /// Only the score goes back (`{"data": {"<field>": n}}`): the host merges it into the
    /// payload it holds, so neither side serialises or parses the whole payload again.
    fn apply_changes(&mut self, event: Event) -> Result<Vec<Output>, Error> {
        // Typed straight from the text: every known event's `data` is an object by then.
        let typed = event.leadshark()?;
        if let leadshark::LeadSharkEvent::Other { payload, .. } = &typed
            && !payload.get("data").is_some_and(|d| d.is_object())
        {
            return Err(Error::fatal("payload has no `data` object"));
        }
        let score = score::score(&typed);
        let mut data = serde_json::Map::new();
        data.insert(self.0.field.clone(), score.into());
        let mut patch = serde_json::Map::new();
        patch.insert("data".into(), data.into());
        Ok(vec![Output::merge(patch.into())])
    }
}

hookline_plugin_sdk::transform!(LeadScore);
