//! The WASM plugin host: wasmtime with the component model.
//!
//! A plugin is a component targeting one world of `plugins/wit/hookline.wit` (`filter`,
//! `transform` or `sink`). [`PluginSet::scan`] lists the `<name>.wasm` files of the plugins
//! folder and [`PluginSet::register`] adds each as `wasm:<name>` to a [`Registry`], so
//! `Runtime::build` constructs WASM stages through the same factories as native ones — and a
//! reload that rebuilds the runtime reloads plugins with it.
//!
//! ```text
//! engine.rs     the Engines (with and without fuel metering); their epoch ticker threads
//! cache.rs      compile once: <cache_dir>/<sha256 of the .wasm>-<engine hash>[-fuel].cwasm
//! plugin.rs     a compiled plugin: world check, linker, InstancePre
//! sandbox.rs    the stage's limits: timeout, memory, fuel, allowed_hosts, recycling
//! instance.rs   Store + instance; a call under limits; traps turned into StageErrors
//! stage.rs      WasmFilter / WasmTransform / WasmSink: the plugin-api traits over a pool
//! wasi.rs       the WASI p2 subset plugins get (no filesystem, environment or sockets)
//! http.rs       the `http-send` import: allowlist, public addresses only, size and time caps
//! counters.rs   plugin-named counters (`increment`), read with [`counters`]
//! ```
//!
//! Instances are reused across events (a small pool per stage) and recycled after a number
//! of calls, past a memory high-water mark, and after any trap or error result: a component
//! instance cannot be entered again after a trap, and a long-lived instance's memory only
//! grows. Every call runs with an epoch deadline (and fuel, when configured) set just
//! before it. Fuel metering is compiled into a plugin only for stages that set `fuel`: it
//! costs every call, even with unlimited fuel.

mod bindings;
mod cache;
mod counters;
mod engine;
mod http;
pub(crate) mod instance;
mod plugin;
mod sandbox;
pub(crate) mod stage;
mod wasi;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hookline_plugin_api::{ConfigError, Registry};

#[cfg(test)]
pub(crate) use cache::compiles;
#[cfg(test)]
pub(crate) use counters::counters;
pub(crate) use plugin::Plugin;

/// The prefix that names a WASM plugin in a stage: `{ transform = "wasm:redact" }`.
pub(crate) const PREFIX: &str = "wasm:";

/// The `.wasm` files of a plugins folder, compiled on first use (at most once per set, and
/// loaded from the on-disk cache when an identical file was compiled before).
#[derive(Debug, Clone)]
pub struct PluginSet {
    cache_dir: PathBuf,
    plugins: BTreeMap<String, Arc<Slot>>,
}

/// One plugin file; compiled when a stage first uses it.
#[derive(Debug)]
struct Slot {
    name: String,
    path: PathBuf,
    compiled: Mutex<Option<Result<Arc<Plugin>, String>>>,
}

impl PluginSet {
    /// List `<name>.wasm` in `dir` (a missing folder is an empty set). Nothing is compiled yet.
    pub fn scan(dir: &Path, cache_dir: &Path) -> std::io::Result<PluginSet> {
        let mut plugins = BTreeMap::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(PluginSet {
                    cache_dir: cache_dir.to_path_buf(),
                    plugins,
                });
            }
            Err(e) => return Err(e),
        };
        for entry in entries {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("wasm") || !path.is_file() {
                continue;
            }
            if let Some(name) = path.file_stem().and_then(|s| s.to_str()) {
                plugins.insert(
                    name.to_string(),
                    Arc::new(Slot {
                        name: name.to_string(),
                        path: path.clone(),
                        compiled: Mutex::new(None),
                    }),
                );
            }
        }
        Ok(PluginSet {
            cache_dir: cache_dir.to_path_buf(),
            plugins,
        })
    }

    /// Plugin names (without the `wasm:` prefix), sorted.
    #[cfg(test)]
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.plugins.keys().map(String::as_str)
    }

    /// Add every plugin as `wasm:<name>` for all three kinds: the world check at build time
    /// then says "this is a transform plugin" instead of "unknown plugin".
    pub fn register(&self, registry: &mut Registry) {
        for (name, slot) in &self.plugins {
            let full = format!("{PREFIX}{name}");
            let (s, c) = (slot.clone(), self.cache_dir.clone());
            registry.filter(&full, move |cfg, ctx| {
                let plugin = s.get(&c)?;
                let built: Arc<dyn hookline_plugin_api::Filter> =
                    stage::build_filter(&plugin, cfg, ctx)?;
                Ok(built)
            });
            let (s, c) = (slot.clone(), self.cache_dir.clone());
            registry.transform(&full, move |cfg, ctx| {
                let plugin = s.get(&c)?;
                let built: Arc<dyn hookline_plugin_api::Transform> =
                    stage::build_transform(&plugin, cfg, ctx)?;
                Ok(built)
            });
            let (s, c) = (slot.clone(), self.cache_dir.clone());
            registry.sink(&full, move |cfg, ctx| {
                let plugin = s.get(&c)?;
                let built: Arc<dyn hookline_plugin_api::Sink> =
                    stage::build_sink(&plugin, cfg, ctx)?;
                Ok(built)
            });
        }
    }
}

impl Slot {
    /// The compiled plugin; a compile error names the file.
    fn get(&self, cache_dir: &Path) -> Result<Arc<Plugin>, ConfigError> {
        let mut compiled = self.compiled.lock().unwrap_or_else(|e| e.into_inner());
        let result = compiled
            .get_or_insert_with(|| Plugin::load(&self.name, &self.path, cache_dir).map(Arc::new));
        result.clone().map_err(ConfigError::new)
    }
}
