//! A compiled plugin: its component, which world it targets, and how to instantiate it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hookline_plugin_api::StageKind;
use wasmtime::component::{Component, Linker};

use super::bindings::{filter, sink, transform, transform_changes};
use super::engine::Metering;
use super::instance::State;

/// A `.wasm` component from the plugins folder, compiled (or loaded from the cache).
pub(crate) struct Plugin {
    /// As stages name it: `wasm:<file stem>`.
    pub(crate) name: String,
    pub(crate) path: PathBuf,
    /// Compiled without fuel metering: what stages without `fuel` run.
    component: Component,
    /// Compiled with fuel metering, when a stage with `fuel` first uses the plugin.
    metered: OnceLock<Result<Component, String>>,
    /// The `.wasm` as read, for the metered compile (not read again: the file may change).
    bytes: Vec<u8>,
    cache_dir: PathBuf,
    exports: Vec<String>,
    /// Whether this load compiled the component or found it in the cache.
    pub(crate) origin: super::cache::Origin,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("exports", &self.exports)
            .field("origin", &self.origin)
            .finish()
    }
}

/// A plugin linked for one world, ready to instantiate cheaply.
#[derive(Clone)]
pub(crate) enum Pre {
    Filter(filter::FilterPre<State>),
    Transform(transform::TransformPre<State>),
    TransformChanges(transform_changes::TransformChangesPre<State>),
    Sink(sink::SinkPre<State>),
}

impl std::fmt::Debug for Pre {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Pre::Filter(_) => "Pre::Filter",
            Pre::Transform(_) => "Pre::Transform",
            Pre::TransformChanges(_) => "Pre::TransformChanges",
            Pre::Sink(_) => "Pre::Sink",
        })
    }
}

/// The function each world exports besides `init`: a transform exports `apply` (world
/// `transform`) or `apply-changes` (world `transform-changes`).
fn entries(kind: StageKind) -> &'static [&'static str] {
    match kind {
        StageKind::Filter => &["keep"],
        StageKind::Transform => &["apply", "apply-changes"],
        StageKind::Sink => &["deliver"],
    }
}

impl Plugin {
    /// Read and compile `path`. Errors name the file.
    pub(crate) fn load(stem: &str, path: &Path, cache_dir: &Path) -> Result<Plugin, String> {
        let shown = path.display();
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
        if bytes.get(..4) == Some(b"\0asm") && bytes.get(4..8) == Some(&[1, 0, 0, 0]) {
            return Err(format!(
                "{shown} is a core WebAssembly module, not a component: build the plugin for `wasm32-wasip2` (see docs/plugins.md)"
            ));
        }
        let (component, origin) = super::cache::load(cache_dir, &bytes, Metering::Off)
            .map_err(|e| format!("{shown} does not compile: {e}"))?;
        let exports = component
            .component_type()
            .exports(component.engine())
            .map(|(name, _)| name.to_string())
            .collect();
        Ok(Plugin {
            name: format!("{}{stem}", super::PREFIX),
            path: path.to_path_buf(),
            component,
            metered: OnceLock::new(),
            bytes,
            cache_dir: cache_dir.to_path_buf(),
            exports,
            origin,
        })
    }

    /// The component compiled for `metering` (the metered one compiled, or loaded from the
    /// cache, on first use).
    fn component(&self, metering: Metering) -> Result<&Component, String> {
        match metering {
            Metering::Off => Ok(&self.component),
            Metering::Fuel => self
                .metered
                .get_or_init(|| {
                    super::cache::load(&self.cache_dir, &self.bytes, Metering::Fuel)
                        .map(|(component, _)| component)
                        .map_err(|e| {
                            format!(
                                "{} does not compile with fuel metering: {e}",
                                self.path.display()
                            )
                        })
                })
                .as_ref()
                .map_err(Clone::clone),
        }
    }

    /// The world the plugin's exports say it targets, if any.
    pub(crate) fn world(&self) -> Option<StageKind> {
        StageKind::ALL
            .into_iter()
            .find(|k| self.entry(*k).is_some())
    }

    /// The export that serves as a `kind` stage, if the plugin has one (`apply-changes`
    /// over `apply` should a component export both: it is the cheaper contract).
    fn entry(&self, kind: StageKind) -> Option<&'static str> {
        entries(kind)
            .iter()
            .rev()
            .find(|name| self.exports.iter().any(|e| e == *name))
            .copied()
    }

    /// Whether the plugin can serve as a `kind` stage; the reason when not.
    pub(crate) fn check(&self, kind: StageKind) -> Result<(), String> {
        let shown = self.path.display();
        match self.world() {
            Some(world) if world != kind => {
                return Err(format!(
                    "{shown} is a {world} plugin (it exports `{}`), not a {kind}: use it as `{{ {world} = \"{}\" }}`",
                    self.entry(world).unwrap_or_default(),
                    self.name
                ));
            }
            _ => {}
        }
        let entry = self.entry(kind).unwrap_or(entries(kind)[0]);
        for export in ["init", entry] {
            if !self.exports.iter().any(|e| e == export) {
                let has = if self.exports.is_empty() {
                    "it exports nothing".to_string()
                } else {
                    format!("it exports {}", self.exports.join(", "))
                };
                return Err(format!(
                    "{shown} is missing the export `{export}` of the hookline:plugin/{kind} world ({has})"
                ));
            }
        }
        Ok(())
    }

    /// Link the plugin for `kind`, compiled for `metering`. An import Hookline does not
    /// provide is an error here, at load, not at the first event.
    pub(crate) fn pre(&self, kind: StageKind, metering: Metering) -> Result<Pre, String> {
        let shown = self.path.display();
        let component = self.component(metering)?;
        let mut linker = linker(kind, metering)?.clone();
        super::wasi::stub_denied(&mut linker, component).map_err(|e| format!("{shown}: {e:#}"))?;
        let pre = linker
            .instantiate_pre(component)
            .map_err(|e| format!("{shown} cannot be linked: {e:#}"))?;
        let mismatch = |e: wasmtime::Error| {
            format!("{shown} does not match the hookline:plugin/{kind} world: {e:#}")
        };
        Ok(match kind {
            StageKind::Filter => Pre::Filter(filter::FilterPre::new(pre).map_err(mismatch)?),
            StageKind::Transform if self.entry(kind) == Some("apply-changes") => {
                Pre::TransformChanges(
                    transform_changes::TransformChangesPre::new(pre).map_err(mismatch)?,
                )
            }
            StageKind::Transform => {
                Pre::Transform(transform::TransformPre::new(pre).map_err(mismatch)?)
            }
            StageKind::Sink => Pre::Sink(sink::SinkPre::new(pre).map_err(mismatch)?),
        })
    }
}

/// The linker of a world for an engine: WASI subset, `host`, and `http` for sinks. Built
/// once per engine.
fn linker(kind: StageKind, metering: Metering) -> Result<&'static Linker<State>, String> {
    type Linkers = OnceLock<Result<[Linker<State>; 3], String>>;
    static OFF: Linkers = OnceLock::new();
    static FUEL: Linkers = OnceLock::new();
    let cell = match metering {
        Metering::Off => &OFF,
        Metering::Fuel => &FUEL,
    };
    let linkers = cell.get_or_init(|| {
        let build = |kind: StageKind| -> wasmtime::Result<Linker<State>> {
            let mut linker = Linker::new(super::engine::engine(metering));
            super::wasi::add_to_linker(&mut linker)?;
            use wasmtime::component::HasSelf;
            match kind {
                StageKind::Filter => {
                    filter::Filter::add_to_linker::<_, HasSelf<State>>(&mut linker, |s| s)?
                }
                StageKind::Transform => {
                    transform::Transform::add_to_linker::<_, HasSelf<State>>(&mut linker, |s| s)?
                }
                StageKind::Sink => {
                    sink::Sink::add_to_linker::<_, HasSelf<State>>(&mut linker, |s| s)?
                }
            }
            Ok(linker)
        };
        let all = (|| {
            Ok::<_, wasmtime::Error>([
                build(StageKind::Filter)?,
                build(StageKind::Transform)?,
                build(StageKind::Sink)?,
            ])
        })();
        all.map_err(|e| format!("cannot set up the WASM linker: {e:#}"))
    });
    match linkers {
        Ok([f, t, s]) => Ok(match kind {
            StageKind::Filter => f,
            StageKind::Transform => t,
            StageKind::Sink => s,
        }),
        Err(e) => Err(e.clone()),
    }
}
