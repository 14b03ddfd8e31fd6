//! The contract between Hookline and its native plugins.
//!
//! A plugin is a [`Filter`], a [`Transform`] or a [`Sink`]. Hookline builds each stage of a
//! pipeline once, at start-up or reload, through a factory registered by name in a
//! [`Registry`]; the factory receives the stage's TOML table as a [`PluginConfig`] and must
//! validate everything then (compile expressions, templates, regexes), so that a config that
//! would fail on the first event is a start-up error instead.
//!
//! At run time the engine hands each stage an [`Event`]: a verified webhook with its id,
//! source, type, headers and JSON payload. A stage that cannot do its work returns a
//! [`StageError`] saying whether trying again later may help.
//!
//! This crate is deliberately small (serde, toml, jiff): a third-party plugin depends on it,
//! not on the engine.

mod config;
mod error;
mod event;
mod merge;
mod registry;
mod secret;
mod stage;

pub use config::{BuildContext, ConfigError, PluginConfig, toml_to_json};
pub use error::StageError;
pub use event::{Envelope, Event};
pub use merge::merge_patch;
pub use registry::{FilterFactory, Registry, SinkFactory, StageKind, TransformFactory};
pub use secret::Secret;
pub use stage::{Filter, Sink, Transform};

/// Re-exported so plugins name the same versions as the engine.
pub use async_trait::async_trait;
pub use serde_json;
