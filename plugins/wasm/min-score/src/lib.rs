//! `wasm:min-score` — keeps events whose `data.score` (set by `wasm:lead-score`) is at least
//! `min`; events without a score are dropped.
//!
//! ```toml
//! { filter = "wasm:min-score", min = 40 }
//! ```

use hookline_plugin_sdk::{Config, Error, Event, Filter};

/// The stage's table is the plugin's state.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MinScore {
    min: u64,
    /// Key under `data` that holds the score; `score` when absent.
    field: Option<String>,
}

impl Filter for MinScore {
    fn new(config: Config) -> Result<Self, String> {
        config.parse()
    }

    fn keep(&mut self, event: &Event) -> Result<bool, Error> {
        let payload = event.json()?;
        let field = self.field.as_deref().unwrap_or("score");
        let score = payload["data"][field].as_u64();
        let keep = score.is_some_and(|s| s >= self.min);
        if !keep {
            hookline_plugin_sdk::increment("dropped", 1);
            hookline_plugin_sdk::log::debug(&match score {
                Some(s) => format!("dropped: score {s} is below {}", self.min),
                None => format!("dropped: no `data.{field}`"),
            });
        }
        Ok(keep)
    }
}

hookline_plugin_sdk::filter!(MinScore);
