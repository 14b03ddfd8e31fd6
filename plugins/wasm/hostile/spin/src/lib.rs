//! Hostile test plugin: never returns from `apply` (the host's deadline must stop it).

use hookline_plugin_sdk::{Config, Error, Event, Transform};

struct Spin;

impl Transform for Spin {
    fn new(_: Config) -> Result<Self, String> {
        Ok(Spin)
    }

    fn apply(&mut self, _: Event) -> Result<Vec<Event>, Error> {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

hookline_plugin_sdk::transform!(Spin);
