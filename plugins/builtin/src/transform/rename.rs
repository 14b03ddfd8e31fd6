//! `rename` transform: moves payload fields to new paths.
//!
//! ```toml
//! { transform = "rename", fields = { "data.lead.email" = "data.contact.email", "event" = "type" } }
//! ```
//!
//! Each key is a source path and its value the destination path (quote dotted keys). A
//! missing source is skipped. Destinations are written like the `set` transform does:
//! missing objects are created, and a non-object in the way is a fatal error for the event.
//! Renames run in source-path order.

use std::collections::BTreeMap;
use std::sync::Arc;

use hookline_plugin_api::{BuildContext, ConfigError, Event, PluginConfig, StageError, Transform};
use serde::Deserialize;

use crate::path::{self, FieldPath};

/// Config of the `rename` transform.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameConfig {
    /// Source path to destination path. Required, non-empty.
    pub fields: BTreeMap<String, String>,
}

pub fn build(
    config: &PluginConfig<'_>,
    _ctx: &BuildContext,
) -> Result<Arc<dyn Transform>, ConfigError> {
    let cfg: RenameConfig = config.parse()?;
    if cfg.fields.is_empty() {
        return Err(config.error_at("fields", "`fields` must rename at least one path"));
    }
    let err = |m: String| config.error_at("fields", m);
    let mut moves: Vec<(FieldPath, FieldPath)> = Vec::with_capacity(cfg.fields.len());
    for (from, to) in &cfg.fields {
        let from = FieldPath::parse(from).map_err(err)?;
        let to = FieldPath::parse(to).map_err(err)?;
        if from == to {
            return Err(err(format!("`{from}` is renamed to itself")));
        }
        if let Some((other, _)) = moves.iter().find(|(_, t)| *t == to) {
            return Err(err(format!(
                "`{other}` and `{from}` are both renamed to `{to}`"
            )));
        }
        moves.push((from, to));
    }
    Ok(Arc::new(RenameTransform { moves }))
}

/// Runtime form of the `rename` transform.
#[derive(Debug)]
pub struct RenameTransform {
    moves: Vec<(FieldPath, FieldPath)>,
}

impl Transform for RenameTransform {
    fn apply(&self, mut event: Event) -> Result<Vec<Event>, StageError> {
        for (from, to) in &self.moves {
            if let Some(value) = path::remove(&mut event.payload, from) {
                path::set(&mut event.payload, to, value)
                    .map_err(|e| StageError::fatal(format!("cannot rename `{from}`: {e}")))?;
            }
        }
        Ok(vec![event])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{config, ctx, event, leadshark_v1, leadshark_v2, spanned};
    use serde_json::{Value, json};

    fn apply(text: &str, payload: Value) -> Result<Value, StageError> {
        let t = build(&config("rename", text), &ctx()).expect("builds");
        Ok(t.apply(event("email.captured", payload))?.remove(0).payload)
    }

    #[test]
    fn moves_values_and_skips_missing_sources() {
        let text = r#"fields = { "data.lead.email" = "contact.email", "data.lead.actor_id" = "contact.actor" }"#;
        let v1 = apply(text, leadshark_v1()).expect("v1");
        assert_eq!(v1["contact"], json!({"email": "john.doe@example.com"}));
        assert!(v1["data"]["lead"].get("email").is_none());
        let v2 = apply(text, leadshark_v2()).expect("v2");
        assert_eq!(
            v2["contact"],
            json!({"email": "john.doe@example.com", "actor": "ACoA123"})
        );
    }

    #[test]
    fn blocked_destination_is_fatal() {
        let err = apply(
            r#"fields = { "event" = "data.automation.event" }"#,
            leadshark_v2(),
        )
        .expect_err("null");
        assert!(!err.is_retryable());
        assert!(
            err.message().contains("cannot rename `event`"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn config_errors_are_located() {
        let text = "fields = { \"a\" = \"a\" }";
        let err = build(&config("rename", text), &ctx()).expect_err("self");
        assert_eq!(spanned(text, &err), "{ \"a\" = \"a\" }");
        let text = "fields = { \"a\" = \"c\", \"b\" = \"c\" }";
        let err = build(&config("rename", text), &ctx()).expect_err("same destination");
        assert!(
            err.message.contains("both renamed to `c`"),
            "{}",
            err.message
        );
        let text = "fields = { \"a\" = \"b.\" }";
        assert!(build(&config("rename", text), &ctx()).is_err());
        let text = "fields = { \"a\" = 1 }";
        let err = build(&config("rename", text), &ctx()).expect_err("not a string");
        assert_eq!(spanned(text, &err), "1");
        let text = "fields = { \"a\" = \"b\" }\nto = 1";
        assert_eq!(
            spanned(
                text,
                &build(&config("rename", text), &ctx()).expect_err("unknown")
            ),
            "to"
        );
    }
}
