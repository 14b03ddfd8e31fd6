//! `pipeline.toml`: read, interpolate `${VAR}`, and check into inert, typed data.
//!
//! Every problem is reported at once, each located by file, line, column and key. Stage
//! tables stay as spanned TOML ([`PluginConfig`]) until their plugin's factory builds them,
//! so plugin errors are located the same way.

mod check;
mod diag;
mod interp;
mod limits;
mod nats;
mod retry;
mod secret_ref;
mod sections;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use hookline_plugin_api::{PluginConfig, StageKind};
use toml::de::DeTable;

pub use diag::{Diagnostic, Diagnostics, Locator, line_col};
pub use interp::{DefaultUsed, TEST_SECRET, expand, interpolate_table};
pub use limits::{CircuitPolicy, Rate, SinkLimits};
pub use nats::{Backend, NatsConfig, Urls};
pub use retry::RetryPolicy;
pub use sections::{AdminConfig, PluginsConfig, ServerConfig, SourceConfig, StorageConfig};

/// The sections `pipeline.toml` may have.
const SECTIONS: &[&str] = &[
    "server",
    "storage",
    "admin",
    "plugins",
    "sources",
    "pipelines",
];
/// Keys of a stage table that the engine reads; the rest belong to the plugin.
const ENGINE_STAGE_KEYS: &[&str] = &[
    "filter",
    "transform",
    "sink",
    "name",
    "retry",
    "circuit",
    "rate",
    "concurrency",
];
/// The stage keys that limit a sink's calls to its destination.
const LIMIT_KEYS: &[&str] = &["circuit", "rate", "concurrency"];

/// A config file's text, kept so errors can quote positions in it.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub text: String,
}

impl ConfigFile {
    pub(crate) fn read(path: &Path) -> Result<Self, Diagnostics> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let hint = match e.kind() {
                std::io::ErrorKind::NotFound => {
                    " (write a starter with `hookline init`, or name another file with `--config PATH` or $HOOKLINE_CONFIG)"
                }
                _ => "",
            };
            Diagnostics::single(path, format!("cannot read config file: {e}{hint}"))
        })?;
        Ok(ConfigFile {
            path: path.to_path_buf(),
            text,
        })
    }

    /// Directory that relative paths in the config resolve against.
    pub(crate) fn base_dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// Parse with the process environment for `${VAR}`.
    pub fn parse(&self) -> Result<Config<'_>, Diagnostics> {
        self.parse_with_env(&|name| std::env::var(name).ok())
    }

    /// Parse for `hookline test`: like [`ConfigFile::parse`], but an unset variable in a
    /// secret's place resolves to [`TEST_SECRET`] (pipeline tests check no signature).
    pub(crate) fn parse_for_tests(&self) -> Result<Config<'_>, Diagnostics> {
        self.parse_inner(&|name| std::env::var(name).ok(), true)
    }

    pub(crate) fn parse_with_env(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config<'_>, Diagnostics> {
        self.parse_inner(env, false)
    }

    fn parse_inner(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
        test_secrets: bool,
    ) -> Result<Config<'_>, Diagnostics> {
        let loc = |doc| Locator {
            file: &self.path,
            text: &self.text,
            doc,
        };
        let mut doc = match DeTable::parse(&self.text) {
            Ok(doc) => doc.into_inner(),
            Err(e) => {
                let message = e.message().trim().to_string();
                return Err(Diagnostics(vec![loc(None).at(e.span(), None, message)]));
            }
        };
        // Spans are unchanged by interpolation, so the tree as written locates keys.
        let original = doc.clone();
        let interp = match test_secrets {
            true => interp::interpolate_table_for_tests(&mut doc, env, &self.base_dir()),
            false => interp::interpolate_table(&mut doc, env, &self.base_dir()),
        };
        let locator = loc(Some(&original));
        let mut errors: Vec<Diagnostic> = interp
            .errors
            .iter()
            .map(|(span, msg)| locator.at(Some(span.clone()), None, msg.clone()))
            .collect();
        let mut checker = check::Checker {
            locator: &locator,
            errors: &mut errors,
        };
        let config = checker.config(self, &doc, interp.defaults_used);
        if errors.is_empty() {
            Ok(Config { original, ..config })
        } else {
            Err(Diagnostics(errors))
        }
    }
}

/// The checked configuration. Borrows the file: stage tables are built into plugins while it
/// lives, then dropped.
#[derive(Debug)]
pub struct Config<'a> {
    pub(crate) file: &'a ConfigFile,
    pub(crate) server: ServerConfig,
    pub(crate) storage: StorageConfig,
    pub(crate) admin: AdminConfig,
    pub(crate) plugins: PluginsConfig,
    pub(crate) sources: Vec<SourceConfig>,
    pub(crate) pipelines: Vec<PipelineConfig<'a>>,
    /// `${VAR:-default}` references whose variable was unset.
    pub(crate) defaults_used: Vec<DefaultUsed>,
    /// The document as written (before `${VAR}` interpolation): locates errors found later,
    /// when plugins are built, without parsing the text again.
    pub(crate) original: DeTable<'a>,
}

impl Config<'_> {
    /// The journal's path, resolved against the config file's directory.
    pub(crate) fn storage_path(&self) -> PathBuf {
        self.resolve(&self.storage.path)
    }

    /// The WASM plugins folder, resolved against the config file's directory.
    pub(crate) fn plugins_dir(&self) -> PathBuf {
        self.resolve(&self.plugins.dir)
    }

    /// Where compiled plugins are cached: `[plugins] cache_dir`, or `wasm-cache` beside the
    /// journal.
    pub(crate) fn plugin_cache_dir(&self) -> PathBuf {
        match &self.plugins.cache_dir {
            Some(dir) => self.resolve(dir),
            None => match self.storage_path().parent() {
                Some(parent) => parent.join("wasm-cache"),
                None => self.resolve("wasm-cache"),
            },
        }
    }

    fn resolve(&self, path: impl AsRef<Path>) -> PathBuf {
        let path = path.as_ref();
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.file.base_dir().join(path)
        }
    }

    /// Secrets (or tokens, private keys) that came from a default written in the file:
    /// anyone who can read the file can forge webhooks, so `serve` warns loudly. So do
    /// public keys from a default: a sample key (`hookline init`'s is RFC 8032's, whose
    /// private half is published) lets anyone sign.
    pub(crate) fn insecure_defaults(&self) -> Vec<&DefaultUsed> {
        self.defaults_used
            .iter()
            .filter(|d| {
                let key = d.key.to_ascii_lowercase();
                ["secret", "token", "private_key", "public_keys"]
                    .iter()
                    .any(|k| key.contains(k))
            })
            .collect()
    }

    /// A plugin used more than once in a pipeline where not every use has a `name`: those
    /// stages are named by their order among the plugin's uses (`http`, `http#2`), so a
    /// reload that reorders them, or adds another before them, renames them, and a retry
    /// waiting at one resumes at another. Not an error (a pipeline with two `http` sinks
    /// works), but `check` and `serve` say so.
    pub(crate) fn unnamed_repeats(&self) -> Vec<String> {
        let mut out = Vec::new();
        for p in &self.pipelines {
            let mut plugins: Vec<&str> = Vec::new();
            for s in &p.stages {
                if !plugins.contains(&s.plugin.as_str()) {
                    plugins.push(&s.plugin);
                }
            }
            for plugin in plugins {
                let uses: Vec<&StageConfig<'_>> =
                    p.stages.iter().filter(|s| s.plugin == plugin).collect();
                let unnamed: Vec<String> = uses
                    .iter()
                    .filter(|s| !s.named)
                    .map(|s| format!("`{}`", s.name))
                    .collect();
                if uses.len() < 2 || unnamed.is_empty() {
                    continue;
                }
                out.push(format!(
                    "pipeline `{}` uses `{plugin}` {} times and names its stages {} by their order: reordering them, or adding another `{plugin}` before them, renames them, and a retry waiting at one would resume at another. Give each a `name`.",
                    p.name,
                    uses.len(),
                    unnamed.join(", ")
                ));
            }
        }
        out
    }
}

/// The keys of a `[[pipelines]]` table (for the configuration reference).
pub fn pipeline_keys() -> &'static [&'static str] {
    check::PIPELINE_KEYS
}

/// The keys of a stage table that the engine reads (for the configuration reference).
pub fn stage_keys() -> &'static [&'static str] {
    ENGINE_STAGE_KEYS
}

#[derive(Debug)]
pub(crate) struct PipelineConfig<'a> {
    pub(crate) name: String,
    pub(crate) source: String,
    /// Event type names or globs (`new.*`, `*`).
    pub(crate) events: Vec<String>,
    /// `events`, compiled.
    pub(crate) matcher: globset::GlobSet,
    pub(crate) stages: Vec<StageConfig<'a>>,
    /// A payload path: events with the same value there are delivered in order, one at a
    /// time (`None`: no ordering).
    pub(crate) order_key: Option<String>,
}

/// A pipeline's `events` as one matcher: `.` is not special in event names, and `*` crosses
/// it (`new.*`, `*`).
pub(crate) fn event_matcher(events: &[String]) -> Result<globset::GlobSet, String> {
    let mut builder = globset::GlobSetBuilder::new();
    for pattern in events {
        let glob = globset::Glob::new(pattern)
            .map_err(|e| format!("bad event pattern `{pattern}`: {e}"))?;
        builder.add(glob);
    }
    builder
        .build()
        .map_err(|e| format!("bad event patterns: {e}"))
}

#[derive(Debug)]
pub(crate) struct StageConfig<'a> {
    pub(crate) index: usize,
    /// `name` from the table, or the plugin name (suffixed `#n` when repeated).
    pub(crate) name: String,
    /// Whether `name` was written in the table (not derived from the plugin).
    pub(crate) named: bool,
    pub(crate) kind: StageKind,
    pub(crate) plugin: String,
    /// Span of the plugin name, for "unknown plugin" errors.
    pub(crate) plugin_span: Range<usize>,
    pub(crate) config: PluginConfig<'a>,
    /// A sink's `retry` table; the default policy for every other stage (a retryable
    /// error of any stage is retried).
    pub(crate) retry: RetryPolicy,
    /// A sink's circuit, rate and concurrency; `None` for other stages.
    pub(crate) limits: Option<SinkLimits>,
}

#[cfg(test)]
mod tests;
