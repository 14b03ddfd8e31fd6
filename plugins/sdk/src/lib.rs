//! Write Hookline plugins in Rust, compiled to WebAssembly components.
//!
//! A plugin is a type implementing one of [`Filter`], [`Transform`] or [`Sink`], exported
//! with the matching macro. Build it with `cargo build --target wasm32-wasip2 --release` and
//! drop the `.wasm` into Hookline's plugins folder; `foo.wasm` is then the plugin
//! `wasm:foo` in `pipeline.toml`.
//!
//! ```ignore
//! use hookline_plugin_sdk::{Config, Error, Event, Transform};
//!
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Settings { field: String }
//!
//! struct Stamp(Settings);
//!
//! impl Transform for Stamp {
//!     fn new(config: Config) -> Result<Self, String> {
//!         Ok(Stamp(config.parse()?))
//!     }
//!     fn apply(&mut self, mut event: Event) -> Result<Vec<Event>, Error> {
//!         let mut payload = event.json()?;
//!         payload[&self.0.field] = true.into();
//!         event.set_json(&payload);
//!         Ok(vec![event])
//!     }
//! }
//!
//! hookline_plugin_sdk::transform!(Stamp);
//! ```
//!
//! # How it works
//!
//! The contract is the WIT package in `plugins/wit` (one world per stage kind; transforms
//! target `transform-changes`, so [`Transform::apply_changes`] may return only a merge patch
//! of the payload instead of the whole event). The macros
//! generate its bindings in the plugin's crate (so the component carries exactly one world)
//! and glue them to your type: `new` runs once per instance, in the world's `init`, with
//! the stage's table; the stage function runs once per event on the same instance, so a
//! plugin may keep state between events — but the host recycles instances after a number of
//! calls, a memory high-water mark or any trap, so state is a cache, never a record.
//!
//! The host imports are wrapped as [`log`], [`increment`] and (sinks only) [`http::send`].
//! LeadShark payloads are typed through [`leadshark`], the same models native plugins use.

mod event;
pub mod host;
pub mod http;
mod macros;

pub use event::{Changes, Config, Error, Event, Output};
/// Typed LeadShark payloads (`LeadSharkEvent::from_value`, `Lead`, ...).
pub use hookline_leadshark as leadshark;
pub use host::{increment, log};
pub use serde_json;

/// Keeps or drops events.
pub trait Filter: Sized + 'static {
    /// Called once per instance with the stage's table; an error is a config error.
    fn new(config: Config) -> Result<Self, String>;
    /// `Ok(true)` keeps the event.
    fn keep(&mut self, event: &Event) -> Result<bool, Error>;
}

/// Changes events, drops them (no events) or splits them (several).
pub trait Transform: Sized + 'static {
    fn new(config: Config) -> Result<Self, String>;
    fn apply(&mut self, event: Event) -> Result<Vec<Event>, Error>;

    /// What the host calls: like [`apply`](Transform::apply), but an output may be only the
    /// changes to the event ([`Output::merge`]: a JSON merge patch of the payload). A plugin
    /// that adds or sets a few fields saves serialising the whole payload here and the host's
    /// parse of it. The default passes `apply`'s events on whole.
    fn apply_changes(&mut self, event: Event) -> Result<Vec<Output>, Error> {
        self.apply(event)
            .map(|events| events.into_iter().map(Output::Whole).collect())
    }
}

/// Delivers events, usually through [`http::send`].
pub trait Sink: Sized + 'static {
    fn new(config: Config) -> Result<Self, String>;
    fn deliver(&mut self, event: &Event) -> Result<(), Error>;
}

#[doc(hidden)]
pub mod __private {
    pub use crate::host::{HostFns, install};
    pub use hookline_plugin_sdk_macros::__wit_bindings as bindings;
    pub use wit_bindgen;
}
