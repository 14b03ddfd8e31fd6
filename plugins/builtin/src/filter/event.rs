//! `event` filter: keeps events whose type matches one of a list of names or globs.
//!
//! ```toml
//! { filter = "event", events = ["email.captured", "new.*"] }
//! { filter = "event", events = ["new.profile.visit"], negate = true }  # everything else
//! ```
//!
//! Globs use `globset` syntax (`*`, `?`, `[abc]`, `{a,b}`); `*` also matches dots, so
//! `"*"` matches every type and `"new.*"` matches `new.like` and `new.profile.visit`.

use std::sync::Arc;

use globset::{Glob, GlobSet, GlobSetBuilder};
use hookline_plugin_api::{BuildContext, ConfigError, Event, Filter, PluginConfig, StageError};
use serde::Deserialize;
use toml::Spanned;

/// Config of the `event` filter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventFilterConfig {
    /// Event types to keep: exact names or globs. Required, non-empty.
    pub events: Vec<Spanned<String>>,
    /// Keep the events that do *not* match instead. Default `false`.
    #[serde(default)]
    pub negate: bool,
}

pub fn build(
    config: &PluginConfig<'_>,
    _ctx: &BuildContext,
) -> Result<Arc<dyn Filter>, ConfigError> {
    let cfg: EventFilterConfig = config.parse()?;
    if cfg.events.is_empty() {
        return Err(config.error_at(
            "events",
            "`events` must list at least one event type or glob",
        ));
    }
    let mut builder = GlobSetBuilder::new();
    for pattern in &cfg.events {
        let glob = Glob::new(pattern.get_ref()).map_err(|e| ConfigError {
            message: format!("invalid event glob: {}", e.kind()),
            span: Some(pattern.span()),
            key: Some("events".into()),
        })?;
        builder.add(glob);
    }
    let set = builder
        .build()
        .map_err(|e| config.error_at("events", format!("invalid event globs: {e}")))?;
    Ok(Arc::new(EventFilter {
        patterns: cfg.events.into_iter().map(Spanned::into_inner).collect(),
        set,
        negate: cfg.negate,
    }))
}

/// Runtime form of the `event` filter: the globs compiled into one matcher.
#[derive(Debug)]
pub struct EventFilter {
    patterns: Vec<String>,
    set: GlobSet,
    negate: bool,
}

impl EventFilter {
    /// The patterns as configured (for `hookline check` output).
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }
}

impl Filter for EventFilter {
    fn keep(&self, event: &Event) -> Result<bool, StageError> {
        Ok(self.set.is_match(&event.event_type) != self.negate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{config, ctx, event, leadshark_v1, leadshark_v2, spanned};

    fn filter(text: &str) -> Arc<dyn Filter> {
        build(&config("event", text), &ctx()).expect("builds")
    }

    fn keeps(f: &Arc<dyn Filter>, event_type: &str) -> bool {
        f.keep(&event(event_type, leadshark_v2())).expect("keep")
    }

    #[test]
    fn exact_names_and_globs() {
        let f = filter(r#"events = ["email.captured", "new.*"]"#);
        assert!(keeps(&f, "email.captured"));
        assert!(keeps(&f, "new.like"));
        assert!(keeps(&f, "new.profile.visit"));
        assert!(!keeps(&f, "lead.sent"));
        assert!(!keeps(&f, "email.captured.x"));
        assert!(
            f.keep(&event("email.captured", leadshark_v1()))
                .expect("keep")
        );
    }

    #[test]
    fn star_matches_everything_and_negate_inverts() {
        assert!(keeps(&filter(r#"events = ["*"]"#), "dm.sent"));
        let f = filter("events = [\"new.*\"]\nnegate = true");
        assert!(!keeps(&f, "new.comment"));
        assert!(keeps(&f, "email.captured"));
    }

    #[test]
    fn config_errors_are_located() {
        let text = "events = [\"ok\", \"new.[\"]";
        let err = build(&config("event", text), &ctx()).expect_err("bad glob");
        assert_eq!(spanned(text, &err), "\"new.[\"");
        assert!(
            err.message.contains("invalid event glob"),
            "{}",
            err.message
        );

        let text = "events = []";
        let err = build(&config("event", text), &ctx()).expect_err("empty");
        assert_eq!(spanned(text, &err), "[]");

        let text = "events = [\"a\"]\nnegat = true";
        let err = build(&config("event", text), &ctx()).expect_err("unknown key");
        assert_eq!(spanned(text, &err), "negat");

        let err = build(&config("event", "negate = true"), &ctx()).expect_err("missing");
        assert!(err.message.contains("events"), "{}", err.message);
    }
}
