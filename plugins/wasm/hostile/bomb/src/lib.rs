//! Hostile test plugin: allocates until something stops it (the host's memory cap).

use hookline_plugin_sdk::{Config, Error, Event, Transform};

struct Bomb(Vec<Vec<u8>>);

impl Transform for Bomb {
    fn new(_: Config) -> Result<Self, String> {
        Ok(Bomb(Vec::new()))
    }

    fn apply(&mut self, _: Event) -> Result<Vec<Event>, Error> {
        loop {
            self.0.push(std::hint::black_box(vec![7u8; 1 << 20]));
        }
    }
}

hookline_plugin_sdk::transform!(Bomb);
