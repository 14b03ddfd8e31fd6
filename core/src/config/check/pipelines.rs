//! `[[pipelines]]` and their `[[pipelines.stages]]`: names, event patterns (compiled once:
//! the runtime uses the matcher), stage kinds and plugin names, retry policies.

use std::collections::HashSet;
use std::ops::Range;

use hookline_plugin_api::{PluginConfig, StageKind};
use serde::Deserialize;
use serde::de::IgnoredAny;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::{Checker, entry_span};
use crate::config::limits::{CircuitPolicy, Rate, SinkLimits};
use crate::config::{
    ENGINE_STAGE_KEYS, LIMIT_KEYS, PipelineConfig, RetryPolicy, StageConfig, event_matcher,
};

/// The keys of a `[[pipelines]]` table: `RawPipeline`'s fields (a test holds them together).
pub(crate) const PIPELINE_KEYS: &[&str] = &["name", "source", "events", "stages", "order_key"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    name: String,
    source: String,
    #[serde(default = "all_events")]
    events: Vec<String>,
    stages: Vec<IgnoredAny>,
    #[serde(default)]
    order_key: Option<String>,
}

fn all_events() -> Vec<String> {
    vec!["*".into()]
}

impl Checker<'_, '_> {
    pub(super) fn pipelines<'a>(
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
            let matcher = match event_matcher(&raw.events) {
                Ok(matcher) => matcher,
                Err(e) => {
                    self.err(entry_span(item, "events"), None, e);
                    globset::GlobSet::empty()
                }
            };
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
            if let Some(key) = &raw.order_key
                && (key.is_empty() || key.split('.').any(str::is_empty))
            {
                self.err(
                    entry_span(item, "order_key"),
                    None,
                    format!("`order_key` must be a dotted payload path such as `data.lead.id`, not `{key}`"),
                );
            }
            out.push((
                entry_span(item, "source"),
                PipelineConfig {
                    name: raw.name,
                    source: raw.source,
                    events: raw.events,
                    matcher,
                    stages,
                    order_key: raw.order_key,
                },
            ));
        }
        out
    }

    pub(super) fn stages<'a>(&mut self, value: &Spanned<DeValue<'a>>) -> Vec<StageConfig<'a>> {
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
            let named = explicit_name.is_some();
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
                        format!("`retry` can be set on sinks only; a {kind} that fails with a retryable error is retried with the default schedule (8 attempts over about 27 hours)"),
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
            let limits = self.limits(table, kind);
            let mut plugin_table = DeTable::new();
            for (k, v) in table.iter() {
                if !ENGINE_STAGE_KEYS.contains(&k.get_ref().as_ref()) {
                    plugin_table.insert(k.clone(), v.clone());
                }
            }
            out.push(StageConfig {
                index,
                name,
                named,
                kind,
                plugin: plugin.clone(),
                plugin_span: plugin_value.span(),
                retry,
                limits,
                config: PluginConfig::new(
                    plugin,
                    Spanned::new(item.span(), DeValue::Table(plugin_table)),
                ),
            });
        }
        out
    }
}

impl Checker<'_, '_> {
    /// A sink's `circuit`, `rate` and `concurrency`; `None` for other stages (where the keys
    /// are an error).
    fn limits(&mut self, table: &DeTable<'_>, kind: StageKind) -> Option<SinkLimits> {
        let mut limits = SinkLimits::defaults();
        for (key, value) in table.iter() {
            let key = key.get_ref().as_ref();
            if !LIMIT_KEYS.contains(&key) {
                continue;
            }
            if kind != StageKind::Sink {
                self.err(
                    value.span(),
                    None,
                    format!("`{key}` can be set on sinks only: it limits calls to a destination"),
                );
                continue;
            }
            match key {
                "circuit" => {
                    let parsed =
                        CircuitPolicy::from_value(toml::de::ValueDeserializer::from(value.clone()));
                    match parsed {
                        Ok(policy) => {
                            if let Some(Err(e)) = policy.as_ref().map(CircuitPolicy::validate) {
                                self.err(value.span(), None, e);
                            }
                            limits.circuit = policy;
                        }
                        Err(_) => self.err(
                            value.span(),
                            None,
                            "`circuit` must be `false` or a table `{ failures = 5, cooldown = \"30s\", max_cooldown = \"10m\" }`",
                        ),
                    }
                }
                "rate" => match value.get_ref().as_str().map(Rate::parse) {
                    Some(Ok(rate)) => limits.rate = Some(rate),
                    Some(Err(e)) => self.err(value.span(), None, e),
                    None => self.err(
                        value.span(),
                        None,
                        "`rate` must be a string such as \"50/s\"",
                    ),
                },
                _ => match self.de::<u32>(value).map(std::num::NonZeroU32::new) {
                    Some(Some(n)) => limits.concurrency = Some(n),
                    Some(None) => self.err(value.span(), None, "`concurrency` must be at least 1"),
                    None => {}
                },
            }
        }
        (kind == StageKind::Sink).then_some(limits)
    }
}

#[cfg(test)]
mod tests {
    use serde_aux::serde_introspection::serde_introspect;

    use super::{PIPELINE_KEYS, RawPipeline};

    #[test]
    fn the_documented_pipeline_keys_are_the_ones_read() {
        let mut read = serde_introspect::<RawPipeline>().to_vec();
        let mut listed = PIPELINE_KEYS.to_vec();
        read.sort_unstable();
        listed.sort_unstable();
        assert_eq!(read, listed);
    }
}
