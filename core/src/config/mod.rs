//! `pipeline.toml`: read, interpolate `${VAR}`, and check into inert, typed data.
//!
//! Every problem is reported at once, each located by file, line, column and key. Stage
//! tables stay as spanned TOML ([`PluginConfig`]) until their plugin's factory builds them,
//! so plugin errors are located the same way.

mod diag;
mod interp;
mod nats;
mod sections;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use hookline_plugin_api::{PluginConfig, StageKind};
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

pub use diag::{Diagnostic, Diagnostics, Locator, line_col};
pub use interp::{DefaultUsed, TEST_SECRET, expand, interpolate_table};
pub use nats::{Backend, NatsConfig, Urls};
pub use sections::{AdminConfig, PluginsConfig, ServerConfig, SourceConfig, StorageConfig};

use crate::runtime::RetryPolicy;

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
const ENGINE_STAGE_KEYS: &[&str] = &["filter", "transform", "sink", "name", "retry"];

/// A config file's text, kept so errors can quote positions in it.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub text: String,
}

impl ConfigFile {
    pub fn read(path: &Path) -> Result<Self, Diagnostics> {
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
    pub fn base_dir(&self) -> PathBuf {
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
    pub fn parse_for_tests(&self) -> Result<Config<'_>, Diagnostics> {
        self.parse_inner(&|name| std::env::var(name).ok(), true)
    }

    pub fn parse_with_env(
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
        let interp = match test_secrets {
            true => interp::interpolate_table_for_tests(&mut doc, env),
            false => interp::interpolate_table(&mut doc, env),
        };
        // Spans are unchanged by interpolation, so the original tree locates keys.
        let original = DeTable::parse(&self.text).map(Spanned::into_inner).ok();
        let locator = loc(original.as_ref());
        let mut errors: Vec<Diagnostic> = interp
            .errors
            .iter()
            .map(|(span, msg)| locator.at(Some(span.clone()), None, msg.clone()))
            .collect();
        let mut checker = Checker {
            locator: &locator,
            errors: &mut errors,
        };
        let config = checker.config(self, &doc, interp.defaults_used);
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(Diagnostics(errors))
        }
    }
}

/// The checked configuration. Borrows the file: stage tables are built into plugins while it
/// lives, then dropped.
#[derive(Debug)]
pub struct Config<'a> {
    pub file: &'a ConfigFile,
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub admin: AdminConfig,
    pub plugins: PluginsConfig,
    pub sources: Vec<SourceConfig>,
    pub pipelines: Vec<PipelineConfig<'a>>,
    /// `${VAR:-default}` references whose variable was unset.
    pub defaults_used: Vec<DefaultUsed>,
}

impl Config<'_> {
    /// A locator for errors found after parsing (plugin builds).
    pub fn locator(&self) -> Locator<'_> {
        Locator {
            file: &self.file.path,
            text: &self.file.text,
            doc: None,
        }
    }

    /// The journal's path, resolved against the config file's directory.
    pub fn storage_path(&self) -> PathBuf {
        self.resolve(&self.storage.path)
    }

    /// The WASM plugins folder, resolved against the config file's directory.
    pub fn plugins_dir(&self) -> PathBuf {
        self.resolve(&self.plugins.dir)
    }

    /// Where compiled plugins are cached: `[plugins] cache_dir`, or `wasm-cache` beside the
    /// journal.
    pub fn plugin_cache_dir(&self) -> PathBuf {
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

    /// Secrets (or tokens) that came from a default written in the file: anyone who can read
    /// the file can forge webhooks, so `serve` warns loudly.
    pub fn insecure_defaults(&self) -> Vec<&DefaultUsed> {
        self.defaults_used
            .iter()
            .filter(|d| {
                let key = d.key.to_ascii_lowercase();
                key.contains("secret") || key.contains("token")
            })
            .collect()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    name: String,
    source: String,
    #[serde(default = "all_events")]
    events: Vec<String>,
    stages: Vec<IgnoredAny>,
}

/// The keys of a `[[pipelines]]` table (for the configuration reference).
pub fn pipeline_keys() -> &'static [&'static str] {
    &["name", "source", "events", "stages"]
}

/// The keys of a stage table that the engine reads (for the configuration reference).
pub fn stage_keys() -> &'static [&'static str] {
    ENGINE_STAGE_KEYS
}

fn all_events() -> Vec<String> {
    vec!["*".into()]
}

#[derive(Debug)]
pub struct PipelineConfig<'a> {
    pub name: String,
    pub source: String,
    /// Event type names or globs (`new.*`, `*`).
    pub events: Vec<String>,
    pub stages: Vec<StageConfig<'a>>,
}

#[derive(Debug)]
pub struct StageConfig<'a> {
    pub index: usize,
    /// `name` from the table, or the plugin name (suffixed `#n` when repeated).
    pub name: String,
    pub kind: StageKind,
    pub plugin: String,
    /// Span of the plugin name, for "unknown plugin" errors.
    pub plugin_span: Range<usize>,
    pub config: PluginConfig<'a>,
    /// A sink's `retry` table (defaults when absent).
    pub retry: RetryPolicy,
}

struct Checker<'l, 'e> {
    locator: &'l Locator<'l>,
    errors: &'e mut Vec<Diagnostic>,
}

impl Checker<'_, '_> {
    fn err(&mut self, span: Range<usize>, key: Option<&str>, message: impl Into<String>) {
        let d = self
            .locator
            .at(Some(span), key.map(str::to_string), message);
        self.errors.push(d);
    }

    fn de<T: DeserializeOwned>(&mut self, value: &Spanned<DeValue<'_>>) -> Option<T> {
        let span = value.span();
        match T::deserialize(toml::de::ValueDeserializer::from(value.clone())) {
            Ok(v) => Some(v),
            Err(e) => {
                let at = e.span().unwrap_or(span);
                self.err(at, None, e.message().trim().to_string());
                None
            }
        }
    }

    fn config<'a>(
        &mut self,
        file: &'a ConfigFile,
        doc: &DeTable<'a>,
        defaults_used: Vec<DefaultUsed>,
    ) -> Config<'a> {
        let mut server = ServerConfig::default();
        let mut storage = StorageConfig::default();
        let mut admin = AdminConfig::default();
        let mut plugins = PluginsConfig::default();
        let mut sources = Vec::new();
        let mut broken_sources = Vec::new();
        let mut pipelines = Vec::new();
        for (key, value) in doc.iter() {
            match key.get_ref().as_ref() {
                "server" => {
                    if let Some(s) = self.de::<ServerConfig>(value) {
                        server = s;
                        if server.listen.parse::<SocketAddr>().is_err() {
                            let span = entry_span(value, "listen");
                            self.err(span, Some("server.listen"), format!(
                                "`{}` is not a socket address (expected e.g. \"0.0.0.0:8080\" or \"127.0.0.1:0\")",
                                server.listen
                            ));
                        }
                        for (key, message) in server.problems() {
                            self.err(entry_span(value, key), None, message);
                        }
                    }
                }
                "storage" => {
                    if let Some(s) = self.de::<StorageConfig>(value) {
                        storage = s;
                        if storage.concurrency == 0 {
                            self.err(
                                entry_span(value, "concurrency"),
                                None,
                                "`concurrency` must be at least 1",
                            );
                        }
                        for (key, message) in nats::storage_problems(&storage) {
                            let span = nats::problem_span(value, &key);
                            self.err(span, None, message);
                        }
                    }
                }
                "admin" => {
                    if let Some(a) = self.de::<AdminConfig>(value) {
                        admin = a;
                        match admin.listen.parse::<SocketAddr>() {
                            Err(_) => self.err(
                                entry_span(value, "listen"),
                                None,
                                format!("`{}` is not a socket address (expected e.g. \"127.0.0.1:9090\")", admin.listen),
                            ),
                            Ok(addr) if !addr.ip().is_loopback() && admin.token.is_none() => self.err(
                                entry_span(value, "listen"),
                                None,
                                format!(
                                    "the admin API would listen on {addr}, which is not loopback, without a `token`: set `token = \"${{HOOKLINE_ADMIN_TOKEN}}\"` or listen on 127.0.0.1"
                                ),
                            ),
                            Ok(_) => {}
                        }
                        if admin.token.as_ref().is_some_and(|t| t.expose().len() < 16) {
                            self.err(
                                entry_span(value, "token"),
                                None,
                                "the admin `token` must be at least 16 characters",
                            );
                        }
                    }
                }
                "plugins" => {
                    if let Some(p) = self.de::<PluginsConfig>(value) {
                        plugins = p;
                    }
                }
                "sources" => (sources, broken_sources) = self.sources(value),
                "pipelines" => pipelines = self.pipelines(value),
                other => self.err(
                    key.span(),
                    Some(other),
                    format!(
                        "unknown section `{other}`, expected one of: {}",
                        SECTIONS.join(", ")
                    ),
                ),
            }
        }
        if sources.is_empty() && !self.has_key(doc, "sources") {
            self.errors.push(self.locator.at(
                None,
                None,
                "no `[[sources]]`: add at least one source to receive webhooks",
            ));
        }
        let known: HashSet<&str> = sources
            .iter()
            .map(|s: &SourceConfig| s.name.as_str())
            .collect();
        let mut names: Vec<&str> = known.iter().copied().collect();
        names.sort_unstable();
        // A source already reported as broken (or none at all) is not reported again for
        // every pipeline that uses it; a source whose very name is unreadable could be any.
        let cascade = sources.is_empty() || broken_sources.iter().any(Option::is_none);
        let broken: HashSet<&str> = broken_sources
            .iter()
            .flatten()
            .map(String::as_str)
            .collect();
        let unknown: Vec<(Range<usize>, String)> = pipelines
            .iter()
            .filter(|(_, p)| {
                !known.contains(p.source.as_str()) && !broken.contains(p.source.as_str())
            })
            .map(|(span, p)| (span.clone(), p.source.clone()))
            .collect();
        if !cascade {
            for (span, name) in unknown {
                self.err(
                    span,
                    None,
                    format!("unknown source `{name}` (sources: {})", names.join(", ")),
                );
            }
        }
        if storage.backend == Backend::Nats {
            for s in &sources {
                if s.dedupe_window > storage.retain {
                    self.errors.push(self.locator.at(
                        None,
                        Some(format!("sources.{}.dedupe_window", s.name)),
                        format!(
                            "source `{}`: with the NATS journal `dedupe_window` cannot be longer than `[storage] retain`",
                            s.name
                        ),
                    ));
                }
            }
        }
        Config {
            file,
            server,
            storage,
            admin,
            plugins,
            sources,
            pipelines: pipelines.into_iter().map(|(_, p)| p).collect(),
            defaults_used,
        }
    }

    fn has_key(&self, doc: &DeTable<'_>, key: &str) -> bool {
        doc.iter().any(|(k, _)| k.get_ref() == key)
    }

    fn array_of_tables<'v, 'a>(
        &mut self,
        value: &'v Spanned<DeValue<'a>>,
        what: &str,
    ) -> Vec<&'v Spanned<DeValue<'a>>> {
        match value.get_ref() {
            DeValue::Array(items) => {
                let mut out = Vec::new();
                for item in items.iter() {
                    if item.get_ref().is_table() {
                        out.push(item);
                    } else {
                        self.err(item.span(), None, format!("each {what} must be a table"));
                    }
                }
                out
            }
            _ => {
                self.err(
                    value.span(),
                    None,
                    format!("`{what}` must be an array of tables (`[[{what}]]`)"),
                );
                Vec::new()
            }
        }
    }

    /// The sources that check out, and the names of those that did not (already reported;
    /// `None` when even the name cannot be read).
    fn sources(
        &mut self,
        value: &Spanned<DeValue<'_>>,
    ) -> (Vec<SourceConfig>, Vec<Option<String>>) {
        let mut names = HashSet::new();
        let mut paths = HashSet::new();
        let mut out = Vec::new();
        let mut broken = Vec::new();
        for item in self.array_of_tables(value, "sources") {
            let Some(source) = self.de::<SourceConfig>(item) else {
                let name = match item.get_ref() {
                    DeValue::Table(t) => t
                        .get("name")
                        .and_then(|n| n.get_ref().as_str())
                        .map(str::to_string),
                    _ => None,
                };
                broken.push(name);
                continue;
            };
            if source.name.is_empty() || !names.insert(source.name.clone()) {
                self.err(
                    entry_span(item, "name"),
                    None,
                    format!("source name `{}` is empty or used twice", source.name),
                );
            }
            if !source.path.starts_with('/') || source.path.contains(['?', '#', ' ']) {
                self.err(
                    entry_span(item, "path"),
                    None,
                    format!(
                        "source path `{}` must be a URL path starting with `/`",
                        source.path
                    ),
                );
            } else if !paths.insert(source.path.clone()) {
                self.err(
                    entry_span(item, "path"),
                    None,
                    format!("source path `{}` is used by two sources", source.path),
                );
            }
            if let Err(e) = source.verify.build() {
                self.err(entry_span(item, "verify"), None, e);
            }
            out.push(source);
        }
        (out, broken)
    }

    fn pipelines<'a>(
        &mut self,
        value: &Spanned<DeValue<'a>>,
    ) -> Vec<(Range<usize>, PipelineConfig<'a>)> {
        let mut names = HashSet::new();
        let mut out = Vec::new();
        for item in self.array_of_tables(value, "pipelines") {
            let Some(raw) = self.de::<RawPipeline>(item) else {
                continue;
            };
            if raw.name.is_empty() || !names.insert(raw.name.clone()) {
                self.err(
                    entry_span(item, "name"),
                    None,
                    format!("pipeline name `{}` is empty or used twice", raw.name),
                );
            }
            for pattern in &raw.events {
                if let Err(e) = globset::Glob::new(pattern) {
                    self.err(
                        entry_span(item, "events"),
                        None,
                        format!("bad event pattern `{pattern}`: {e}"),
                    );
                }
            }
            let stages = match item.get_ref().get("stages") {
                Some(stages) => self.stages(stages),
                None => Vec::new(),
            };
            if raw.stages.is_empty() {
                self.err(
                    entry_span(item, "stages"),
                    None,
                    "a pipeline needs at least one stage",
                );
            }
            out.push((
                entry_span(item, "source"),
                PipelineConfig {
                    name: raw.name,
                    source: raw.source,
                    events: raw.events,
                    stages,
                },
            ));
        }
        out
    }

    fn stages<'a>(&mut self, value: &Spanned<DeValue<'a>>) -> Vec<StageConfig<'a>> {
        let mut out: Vec<StageConfig<'a>> = Vec::new();
        for (index, item) in self
            .array_of_tables(value, "stages")
            .into_iter()
            .enumerate()
        {
            let DeValue::Table(table) = item.get_ref() else {
                continue;
            };
            let kinds: Vec<(StageKind, &Spanned<DeValue<'a>>)> = StageKind::ALL
                .iter()
                .filter_map(|k| {
                    table
                        .iter()
                        .find(|(key, _)| key.get_ref() == k.key())
                        .map(|(_, v)| (*k, v))
                })
                .collect();
            let (kind, plugin_value) = match kinds.as_slice() {
                [one] => *one,
                [] => {
                    self.err(item.span(), None, "a stage needs exactly one of `filter`, `transform` or `sink` naming its plugin");
                    continue;
                }
                [_, second, ..] => {
                    self.err(
                        second.1.span(),
                        None,
                        "a stage has exactly one of `filter`, `transform` or `sink`",
                    );
                    continue;
                }
            };
            let Some(plugin) = plugin_value.get_ref().as_str().map(str::to_string) else {
                self.err(
                    plugin_value.span(),
                    None,
                    format!("`{kind}` must be a plugin name (a string)"),
                );
                continue;
            };
            let explicit_name = match table.iter().find(|(k, _)| k.get_ref() == "name") {
                Some((_, v)) => match v.get_ref().as_str() {
                    Some(n) if !n.is_empty() => Some(n.to_string()),
                    _ => {
                        self.err(v.span(), None, "a stage `name` must be a non-empty string");
                        None
                    }
                },
                None => None,
            };
            let name = explicit_name.unwrap_or_else(|| {
                let repeats = out.iter().filter(|s| s.plugin == plugin).count();
                if repeats == 0 {
                    plugin.clone()
                } else {
                    format!("{plugin}#{}", repeats + 1)
                }
            });
            if out.iter().any(|s| s.name == name) {
                self.err(
                    item.span(),
                    None,
                    format!("two stages are named `{name}`; give one a distinct `name`"),
                );
            }
            let retry = match table.iter().find(|(k, _)| k.get_ref() == "retry") {
                None => RetryPolicy::default(),
                Some((_, v)) if kind != StageKind::Sink => {
                    self.err(
                        v.span(),
                        None,
                        format!("`retry` applies to sinks; a {kind} is not retried"),
                    );
                    RetryPolicy::default()
                }
                Some((_, v)) => match self.de::<RetryPolicy>(v) {
                    Some(policy) => {
                        if let Err(e) = policy.validate() {
                            self.err(v.span(), None, e);
                        }
                        policy
                    }
                    None => RetryPolicy::default(),
                },
            };
            let mut plugin_table = DeTable::new();
            for (k, v) in table.iter() {
                if !ENGINE_STAGE_KEYS.contains(&k.get_ref().as_ref()) {
                    plugin_table.insert(k.clone(), v.clone());
                }
            }
            out.push(StageConfig {
                index,
                name,
                kind,
                plugin: plugin.clone(),
                plugin_span: plugin_value.span(),
                retry,
                config: PluginConfig::new(
                    plugin,
                    Spanned::new(item.span(), DeValue::Table(plugin_table)),
                ),
            });
        }
        out
    }
}

/// Span of `key`'s value inside a table value, or of the table itself.
fn entry_span(table: &Spanned<DeValue<'_>>, key: &str) -> Range<usize> {
    match table.get_ref() {
        DeValue::Table(t) => t
            .iter()
            .find(|(k, _)| k.get_ref() == key)
            .map(|(_, v)| v.span())
            .unwrap_or_else(|| table.span()),
        _ => table.span(),
    }
}

#[cfg(test)]
mod tests;
