//! `wasm:min-score` — keeps events whose `data.score` (set by `wasm:lead-score`) is at least
//! `min`; events without a score are dropped.
//!
//! ```toml
//! { filter = "wasm:min-score", min = 40 }
//! ```

use hookline_plugin_sdk::{Config, Error, Event, Filter};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    min: u64,
    /// Key under `data` that holds the score.
    #[serde(default = "default_field")]
    field: String,
}

fn default_field() -> String {
    "score".into()
}

struct MinScore(Settings);

impl Filter for MinScore {
    fn new(config: Config) -> Result<Self, String> {
        Ok(MinScore(config.parse()?))
    }

    fn keep(&mut self, event: &Event) -> Result<bool, Error> {
        let payload = event.json()?;
        let score = payload["data"][&self.0.field].as_u64();
        let keep = score.is_some_and(|s| s >= self.0.min);
        if !keep {
            hookline_plugin_sdk::increment("dropped", 1);
        }
        Ok(keep)
    }
}

hookline_plugin_sdk::filter!(MinScore);
