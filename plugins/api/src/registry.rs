use std::collections::BTreeMap;
use std::sync::Arc;

use crate::{BuildContext, ConfigError, Filter, PluginConfig, Sink, Transform};

pub type FilterFactory = Arc<
    dyn Fn(&PluginConfig<'_>, &BuildContext) -> Result<Arc<dyn Filter>, ConfigError> + Send + Sync,
>;
pub type TransformFactory = Arc<
    dyn Fn(&PluginConfig<'_>, &BuildContext) -> Result<Arc<dyn Transform>, ConfigError>
        + Send
        + Sync,
>;
pub type SinkFactory = Arc<
    dyn Fn(&PluginConfig<'_>, &BuildContext) -> Result<Arc<dyn Sink>, ConfigError> + Send + Sync,
>;

/// The three kinds of stage, as named by the stage table's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StageKind {
    Filter,
    Transform,
    Sink,
}

impl StageKind {
    pub const ALL: [StageKind; 3] = [StageKind::Filter, StageKind::Transform, StageKind::Sink];

    /// The key that introduces this kind in a stage table.
    pub fn key(self) -> &'static str {
        match self {
            StageKind::Filter => "filter",
            StageKind::Transform => "transform",
            StageKind::Sink => "sink",
        }
    }
}

impl std::fmt::Display for StageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

/// Plugin factories by name: an explicit list, no link-time registration. Built-ins are
/// added by `hookline_builtin::register`; a custom binary adds its own the same way.
#[derive(Clone, Default)]
pub struct Registry {
    filters: BTreeMap<String, FilterFactory>,
    transforms: BTreeMap<String, TransformFactory>,
    sinks: BTreeMap<String, SinkFactory>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("filters", &self.filters.keys().collect::<Vec<_>>())
            .field("transforms", &self.transforms.keys().collect::<Vec<_>>())
            .field("sinks", &self.sinks.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn filter<F>(&mut self, name: &str, factory: F) -> &mut Self
    where
        F: Fn(&PluginConfig<'_>, &BuildContext) -> Result<Arc<dyn Filter>, ConfigError>
            + Send
            + Sync
            + 'static,
    {
        self.filters.insert(name.to_string(), Arc::new(factory));
        self
    }

    pub fn transform<F>(&mut self, name: &str, factory: F) -> &mut Self
    where
        F: Fn(&PluginConfig<'_>, &BuildContext) -> Result<Arc<dyn Transform>, ConfigError>
            + Send
            + Sync
            + 'static,
    {
        self.transforms.insert(name.to_string(), Arc::new(factory));
        self
    }

    pub fn sink<F>(&mut self, name: &str, factory: F) -> &mut Self
    where
        F: Fn(&PluginConfig<'_>, &BuildContext) -> Result<Arc<dyn Sink>, ConfigError>
            + Send
            + Sync
            + 'static,
    {
        self.sinks.insert(name.to_string(), Arc::new(factory));
        self
    }

    pub fn get_filter(&self, name: &str) -> Option<&FilterFactory> {
        self.filters.get(name)
    }

    pub fn get_transform(&self, name: &str) -> Option<&TransformFactory> {
        self.transforms.get(name)
    }

    pub fn get_sink(&self, name: &str) -> Option<&SinkFactory> {
        self.sinks.get(name)
    }

    /// Names registered for a kind, sorted (for "did you mean" style errors).
    pub fn names(&self, kind: StageKind) -> Vec<&str> {
        match kind {
            StageKind::Filter => self.filters.keys().map(String::as_str).collect(),
            StageKind::Transform => self.transforms.keys().map(String::as_str).collect(),
            StageKind::Sink => self.sinks.keys().map(String::as_str).collect(),
        }
    }
}
