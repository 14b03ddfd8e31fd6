//! Hostile test plugin: panics on every event (after `init` succeeded).

use hookline_plugin_sdk::{Config, Error, Event, Transform};

struct Panic;

impl Transform for Panic {
    fn new(_: Config) -> Result<Self, String> {
        Ok(Panic)
    }

    fn apply(&mut self, event: Event) -> Result<Vec<Event>, Error> {
        panic!("hostile-panic refuses event {}", event.id);
    }
}

hookline_plugin_sdk::transform!(Panic);
