//! The running configuration: sources with their verifiers, pipelines with built stages,
//! and the stage runner that carries an event through a pipeline.
//!
//! [`Runtime::build`] is the only place plugins are constructed; it validates every stage
//! before the first event, so a config that would fail at run time fails at start-up (or a
//! reload keeps the running set).

mod gate;
pub(crate) mod load;
mod pipeline;
mod threads;
mod worker;

use std::collections::HashMap;
use std::sync::Arc;

use hookline_plugin_api::{BuildContext, Registry, StageKind};

pub(crate) use gate::SinkGate;
pub use pipeline::{Outcome, Pipeline, Stage, StageOp, StageTrace};
pub(crate) use worker::Workers;

use crate::config::{AdminConfig, Config, Diagnostics, ServerConfig, StorageConfig};
use crate::internal_events::{SinkTelemetry, SourceTelemetry};
use crate::verify::Verifier;
use crate::wasm::PluginSet;

/// A `[[sources]]` entry, ready to verify requests.
#[derive(Debug)]
pub(crate) struct Source {
    pub(crate) name: String,
    pub(crate) path: String,
    pub(crate) verifier: Arc<dyn Verifier>,
    pub(crate) dedupe_window: std::time::Duration,
    /// `respond`: the answer to an accepted event, when not Hookline's own.
    pub(crate) responder: Option<Arc<crate::respond::Responder>>,
    /// Event types used as metric labels; anything else is `other`.
    pub(crate) declared: Vec<String>,
    /// Pipelines fed by this source, in config order.
    pub(crate) pipelines: Vec<Arc<Pipeline>>,
    /// Its series, and what is logged of its requests.
    pub(crate) telemetry: SourceTelemetry,
}

impl Source {
    /// The `event_type` label for an event of this type: declared, or `other`.
    pub(crate) fn metric_type<'a>(&'a self, event_type: &'a str) -> &'a str {
        if self.declared.iter().any(|d| d == event_type) {
            event_type
        } else {
            "other"
        }
    }

    pub(crate) fn route<'a>(
        &'a self,
        event_type: &'a str,
    ) -> impl Iterator<Item = &'a Arc<Pipeline>> + 'a {
        self.pipelines.iter().filter(move |p| p.matches(event_type))
    }
}

/// How [`Runtime::build_with`] builds.
#[derive(Debug, Clone, Default)]
pub(crate) struct BuildOptions {
    /// Validate without side effects (see `BuildContext::dry_run`): sinks create no files.
    pub(crate) dry_run: bool,
    /// Compile WASM plugins into this folder instead of the configured cache (a dry run
    /// passes a temporary one, so the real cache is not written).
    pub(crate) cache_dir: Option<std::path::PathBuf>,
}

/// Everything built from one `pipeline.toml`.
#[derive(Debug)]
pub struct Runtime {
    pub(crate) server: ServerConfig,
    pub(crate) storage: StorageConfig,
    /// The journal's path, resolved.
    pub(crate) storage_path: std::path::PathBuf,
    /// The WASM plugins folder, resolved.
    pub(crate) plugins_dir: std::path::PathBuf,
    pub(crate) admin: AdminConfig,
    /// Sources by URL path.
    pub(crate) sources: HashMap<String, Arc<Source>>,
    pub pipelines: Vec<Arc<Pipeline>>,
}

impl Runtime {
    /// Build every verifier and stage. All problems are reported at once, located in the file.
    ///
    /// WASM plugins are part of the build: the plugins folder is scanned and each
    /// `<name>.wasm` is added to (a copy of) `registry` as `wasm:<name>`, so rebuilding the
    /// runtime (a reload) also picks up added, removed and changed plugins.
    pub fn build(config: &Config<'_>, registry: &Registry) -> Result<Runtime, Diagnostics> {
        Self::build_with(config, registry, &BuildOptions::default())
    }

    /// [`Runtime::build`] with options: `hookline check` and `hookline test` build dry.
    pub(crate) fn build_with(
        config: &Config<'_>,
        registry: &Registry,
        options: &BuildOptions,
    ) -> Result<Runtime, Diagnostics> {
        let locator = config_locator(config);
        let mut errors = Vec::new();
        let base_dir = config.file.base_dir();
        let plugins_dir = config.plugins_dir();
        let cache_dir = options
            .cache_dir
            .clone()
            .unwrap_or_else(|| config.plugin_cache_dir());
        let plugins = match PluginSet::scan(&plugins_dir, &cache_dir) {
            Ok(set) => Some(set),
            Err(e) => {
                errors.push(locator.at(
                    None,
                    Some("plugins.dir".into()),
                    format!(
                        "cannot read the plugins folder {}: {e}",
                        plugins_dir.display()
                    ),
                ));
                None
            }
        };
        let registry = &{
            let mut with_wasm = registry.clone();
            if let Some(set) = &plugins {
                set.register(&mut with_wasm);
            }
            with_wasm
        };

        let mut pipelines = Vec::new();
        for p in &config.pipelines {
            let mut stages = Vec::new();
            for s in &p.stages {
                let ctx =
                    BuildContext::new(&base_dir, &p.name, &s.name).with_dry_run(options.dry_run);
                let built = match s.kind {
                    StageKind::Filter => registry
                        .get_filter(&s.plugin)
                        .map(|f| f(&s.config, &ctx).map(StageOp::Filter)),
                    StageKind::Transform => registry
                        .get_transform(&s.plugin)
                        .map(|f| f(&s.config, &ctx).map(StageOp::Transform)),
                    StageKind::Sink => registry
                        .get_sink(&s.plugin)
                        .map(|f| f(&s.config, &ctx).map(StageOp::Sink)),
                };
                match built {
                    None => errors.push(locator.at(
                        Some(s.plugin_span.clone()),
                        None,
                        unknown_plugin(registry, s.kind, &s.plugin, &plugins_dir),
                    )),
                    Some(Err(e)) => {
                        // A WASM plugin's own failures (compile error, wrong world, missing
                        // export) are about the plugin named here, not about a key.
                        let fallback = if s.plugin.starts_with(crate::wasm::PREFIX) {
                            s.plugin_span.clone()
                        } else {
                            s.config.span()
                        };
                        let span = e.span.clone().or(Some(fallback));
                        errors.push(locator.at(span, e.key.clone(), e.message));
                    }
                    Some(Ok(op)) => stages.push(Stage {
                        name: s.name.clone(),
                        plugin: s.plugin.clone(),
                        op,
                        retry: s.retry.clone(),
                        gate: s.limits.clone().map(|limits| {
                            Arc::new(SinkGate::new(limits, SinkTelemetry::new(&p.name, &s.name)))
                        }),
                    }),
                }
            }
            pipelines.push(Arc::new(
                Pipeline::with_matcher(&p.name, &p.source, &p.events, p.matcher.clone(), stages)
                    .with_order_key(p.order_key.clone()),
            ));
        }

        let mut sources = HashMap::new();
        for s in &config.sources {
            // The checker built every source's verifier (or reported why it could not).
            match s.verifier.clone() {
                Some(verifier) => {
                    let feeds = pipelines
                        .iter()
                        .filter(|p| p.source == s.name)
                        .cloned()
                        .collect();
                    let declared = s
                        .events
                        .clone()
                        .unwrap_or_else(|| default_event_types(s.verify.scheme()));
                    sources.insert(
                        s.path.clone(),
                        Arc::new(Source {
                            name: s.name.clone(),
                            path: s.path.clone(),
                            verifier,
                            dedupe_window: s.dedupe_window,
                            responder: s.responder.clone(),
                            telemetry: SourceTelemetry::new(
                                &s.name,
                                declared.iter().map(String::as_str),
                            ),
                            declared,
                            pipelines: feeds,
                        }),
                    );
                }
                None => errors.push(locator.at(
                    None,
                    None,
                    format!("source `{}`: its verifier was not built", s.name),
                )),
            }
        }

        if errors.is_empty() {
            Ok(Runtime {
                server: config.server.clone(),
                storage: config.storage.clone(),
                storage_path: config.storage_path(),
                plugins_dir,
                admin: config.admin.clone(),
                sources,
                pipelines,
            })
        } else {
            Err(Diagnostics(errors))
        }
    }
}

impl crate::journal::Routes for Runtime {
    fn routes(&self) -> Vec<crate::journal::Route<'_>> {
        self.pipelines
            .iter()
            .map(|p| crate::journal::Route {
                name: &p.name,
                source: &p.source,
                events: &p.events,
            })
            .collect()
    }

    fn wants(&self, pipeline: &str, event_type: &str) -> Option<bool> {
        self.pipeline(pipeline).map(|p| p.matches(event_type))
    }

    fn source_of(&self, pipeline: &str) -> Option<&str> {
        self.pipeline(pipeline).map(|p| p.source.as_str())
    }

    fn type_label<'a>(&'a self, source: &str, event_type: &'a str) -> Option<&'a str> {
        self.sources
            .values()
            .find(|s| s.name == source)
            .map(|s| s.metric_type(event_type))
    }
}

/// The runtime in force, swapped by a reload.
impl crate::journal::LiveRoutes for arc_swap::ArcSwap<Runtime> {
    fn current(&self) -> Arc<dyn crate::journal::Routes> {
        self.load_full()
    }
}

impl Runtime {
    /// A pipeline by name.
    pub(crate) fn pipeline(&self, name: &str) -> Option<&Pipeline> {
        self.pipelines
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.as_ref())
    }
}

/// A locator that also derives key paths from the parsed document.
fn config_locator<'a>(config: &'a Config<'_>) -> ConfigLocator<'a> {
    ConfigLocator {
        file: config.file,
        doc: &config.original,
    }
}

struct ConfigLocator<'a> {
    file: &'a crate::config::ConfigFile,
    doc: &'a toml::de::DeTable<'a>,
}

impl ConfigLocator<'_> {
    fn at(
        &self,
        span: Option<std::ops::Range<usize>>,
        key: Option<String>,
        message: String,
    ) -> crate::config::Diagnostic {
        crate::config::Locator {
            file: &self.file.path,
            text: &self.file.text,
            doc: Some(self.doc),
        }
        .at(span, key, message)
    }
}

/// Event types a scheme documents, for metric labels when a source declares none.
fn default_event_types(scheme: &str) -> Vec<String> {
    match scheme {
        "leadshark" => hookline_leadshark::EVENT_TYPES
            .iter()
            .chain(&["dm.sent"])
            .map(|s| s.to_string())
            .collect(),
        _ => Vec::new(),
    }
}

fn unknown_plugin(
    registry: &Registry,
    kind: StageKind,
    name: &str,
    plugins_dir: &std::path::Path,
) -> String {
    let hint = match name.strip_prefix(crate::wasm::PREFIX) {
        Some(stem) => format!(
            " (no {} in the plugins folder)",
            plugins_dir.join(format!("{stem}.wasm")).display()
        ),
        None => String::new(),
    };
    format!(
        "unknown {kind} plugin `{name}`{hint}; available: {}",
        registry.names(kind).join(", ")
    )
}
