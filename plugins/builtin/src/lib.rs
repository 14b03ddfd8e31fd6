//! Hookline's built-in native plugins.
//!
//! Every built-in is one file under `src/<kind>/<name>.rs` holding its config struct (unknown
//! keys rejected, every field documented), a `build()` factory, the runtime type and its
//! tests. [`register`] lists them by name; the engine looks stages up in that
//! [`Registry`].
//!
//! | kind | name | does |
//! |---|---|---|
//! | filter | `event` | keeps events whose type matches names or globs |
//! | filter | `field` | keeps events by one condition on a payload field |
//! | filter | `cel` | keeps events for which a CEL expression is true |
//! | transform | `set` | sets payload fields to fixed values |
//! | transform | `remove` | removes payload fields |
//! | transform | `rename` | moves payload fields |
//! | transform | `template` | renders a new payload with a minijinja template |
//! | sink | `file` | appends JSON Lines to a file |
//! | sink | `stdout` | prints JSON Lines |
//! | sink | `http` | sends JSON to a URL, optionally signed (Standard Webhooks) |
//! | sink | `sqlite` | inserts rows into an SQLite table, payload fields as columns |
//! | sink | `postgres` | inserts rows into a PostgreSQL table in batches, once per event |
//! | sink | `nats` | publishes to a NATS JetStream subject named from the event |
//! | sink | `amqp` | publishes to a RabbitMQ exchange with publisher confirms |
//!
//! # Design
//!
//! Config is inert data until `build()`: each factory deserializes its table with
//! [`PluginConfig::parse`](hookline_plugin_api::PluginConfig::parse) (so errors keep their
//! file, line and column), then compiles everything it will need — globs, regexes, CEL
//! programs, templates, URLs, header values, signing keys, open files — so that a config
//! which would fail on the first event is refused at start-up instead. At run time a stage
//! reports a [`StageError`](hookline_plugin_api::StageError): retryable when trying again
//! later may help (I/O, timeouts, 429/5xx), fatal when it cannot (a bad payload, a 4xx).

use hookline_plugin_api::Registry;

pub mod filter;
pub mod sink;
pub mod transform;

mod name_template;
mod path;
mod support;
#[cfg(test)]
mod testutil;

/// Adds every built-in plugin to `registry`, by the name a stage uses (`{ filter = "cel" }`).
pub fn register(registry: &mut Registry) {
    registry
        .filter("event", filter::event::build)
        .filter("field", filter::field::build)
        .filter("cel", filter::cel::build)
        .transform("set", transform::set::build)
        .transform("remove", transform::remove::build)
        .transform("rename", transform::rename::build)
        .transform("template", transform::template::build)
        .sink("file", sink::file::build)
        .sink("stdout", sink::stdout::build)
        .sink("http", sink::http::build)
        .sink("sqlite", sink::sqlite::build)
        .sink("postgres", sink::postgres::build)
        .sink("nats", sink::nats::build)
        .sink("amqp", sink::amqp::build);
}

/// A fresh registry holding the built-ins.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    register(&mut registry);
    registry
}

#[cfg(test)]
mod tests {
    use hookline_plugin_api::StageKind;

    #[test]
    fn registers_every_builtin() {
        let r = super::registry();
        assert_eq!(r.names(StageKind::Filter), ["cel", "event", "field"]);
        assert_eq!(
            r.names(StageKind::Transform),
            ["remove", "rename", "set", "template"]
        );
        assert_eq!(
            r.names(StageKind::Sink),
            [
                "amqp", "file", "http", "nats", "postgres", "sqlite", "stdout"
            ]
        );
    }
}
