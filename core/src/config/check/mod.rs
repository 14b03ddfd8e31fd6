//! The checker: every section, source, pipeline and stage of `pipeline.toml` checked on its
//! own, so that every problem is reported at once, located by file, line, column and key.
//! `sources.rs` and `pipelines.rs` check those arrays; the other sections check themselves
//! (`problems()` in `sections.rs` and `nats.rs`).

mod pipelines;
mod sources;

pub(super) use pipelines::PIPELINE_KEYS;

use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::*;

pub(super) struct Checker<'l, 'e> {
    pub(super) locator: &'l Locator<'l>,
    pub(super) errors: &'e mut Vec<Diagnostic>,
}

impl Checker<'_, '_> {
    pub(super) fn err(
        &mut self,
        span: Range<usize>,
        key: Option<&str>,
        message: impl Into<String>,
    ) {
        let d = self
            .locator
            .at(Some(span), key.map(str::to_string), message);
        self.errors.push(d);
    }

    pub(super) fn de<T: DeserializeOwned>(&mut self, value: &Spanned<DeValue<'_>>) -> Option<T> {
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

    pub(super) fn config<'a>(
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
            for (span, p) in &pipelines {
                if p.order_key.is_some() {
                    self.err(
                        span.clone(),
                        None,
                        format!(
                            "pipeline `{}`: `order_key` needs the SQLite journal; the NATS journal delivers in parallel across workers and cannot keep per-key order",
                            p.name
                        ),
                    );
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
            original: DeTable::new(),
        }
    }

    pub(super) fn has_key(&self, doc: &DeTable<'_>, key: &str) -> bool {
        doc.iter().any(|(k, _)| k.get_ref() == key)
    }

    pub(super) fn array_of_tables<'v, 'a>(
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
}

/// Span of `key`'s value inside a table value, or of the table itself.
pub(super) fn entry_span(table: &Spanned<DeValue<'_>>, key: &str) -> Range<usize> {
    match table.get_ref() {
        DeValue::Table(t) => t
            .iter()
            .find(|(k, _)| k.get_ref() == key)
            .map(|(_, v)| v.span())
            .unwrap_or_else(|| table.span()),
        _ => table.span(),
    }
}
