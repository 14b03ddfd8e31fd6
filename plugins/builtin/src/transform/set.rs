//! `set` transform: sets payload fields to fixed values.
//!
//! ```toml
//! { transform = "set", fields = { "data.source" = "leadshark", "meta.n" = 3, "meta.tags" = ["lead"] } }
//! ```
//!
//! Keys are dotted paths into the payload — quote them: an unquoted `data.source = "x"` is
//! TOML for a nested table and would replace all of `data`. Values are any TOML value,
//! written as JSON (datetimes as RFC 3339 text). Missing intermediate objects are created;
//! an intermediate that exists but is not an object (or an array holding that index) is a
//! fatal error for the event rather than being overwritten.

use std::collections::BTreeMap;
use std::sync::Arc;

use hookline_plugin_api::{BuildContext, ConfigError, Event, PluginConfig, StageError, Transform};
use serde::Deserialize;
use serde_json::Value;

use crate::path::{self, FieldPath};
use crate::support::toml_to_json;

/// Config of the `set` transform.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetConfig {
    /// Dotted path to value. Required, non-empty. Applied in path order, so a parent is set
    /// before anything below it.
    pub fields: BTreeMap<String, toml::Value>,
}

pub fn build(
    config: &PluginConfig<'_>,
    _ctx: &BuildContext,
) -> Result<Arc<dyn Transform>, ConfigError> {
    let cfg: SetConfig = config.parse()?;
    if cfg.fields.is_empty() {
        return Err(config.error_at("fields", "`fields` must set at least one path"));
    }
    let mut fields: Vec<(FieldPath, Value)> = Vec::with_capacity(cfg.fields.len());
    for (key, value) in &cfg.fields {
        let path = FieldPath::parse(key).map_err(|e| config.error_at("fields", e))?;
        let value =
            toml_to_json(value).map_err(|e| config.error_at("fields", format!("`{key}`: {e}")))?;
        if let Some((other, _)) = fields
            .iter()
            .find(|(p, _)| p.contains(&path) || path.contains(p))
        {
            return Err(config.error_at(
                "fields",
                format!("`{other}` and `{path}` overlap; set one of them"),
            ));
        }
        fields.push((path, value));
    }
    Ok(Arc::new(SetTransform { fields }))
}

/// Runtime form of the `set` transform.
#[derive(Debug)]
pub struct SetTransform {
    fields: Vec<(FieldPath, Value)>,
}

impl Transform for SetTransform {
    fn apply(&self, mut event: Event) -> Result<Vec<Event>, StageError> {
        self.edit(&mut event)?;
        Ok(vec![event])
    }

    fn edits_in_place(&self) -> bool {
        true
    }

    /// Every path is checked before any is set, so a failure leaves the event as it was
    /// (the paths do not overlap, however an index is spelled, so setting one cannot change
    /// whether another can be set).
    fn edit(&self, event: &mut Event) -> Result<(), StageError> {
        for (path, _) in &self.fields {
            path::settable(&event.payload, path).map_err(StageError::fatal)?;
        }
        for (path, value) in &self.fields {
            path::set(&mut event.payload, path, value.clone()).map_err(StageError::fatal)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{config, ctx, event, leadshark_v1, leadshark_v2, spanned};
    use serde_json::json;

    fn apply(text: &str, payload: Value) -> Result<Value, StageError> {
        let t = build(&config("set", text), &ctx()).expect("builds");
        let mut out = t.apply(event("email.captured", payload))?;
        assert_eq!(out.len(), 1);
        Ok(out.remove(0).payload)
    }

    #[test]
    fn sets_values_and_creates_objects() {
        let text = r#"fields = { "data.source" = "leadshark", "meta.n" = 3, "meta.tags" = ["a", 1.5], "data.lead.vip" = true }"#;
        for p in [leadshark_v1(), leadshark_v2()] {
            let out = apply(text, p).expect("applies");
            assert_eq!(out["data"]["source"], "leadshark");
            assert_eq!(out["data"]["lead"]["vip"], true);
            assert_eq!(out["data"]["lead"]["email"], "john.doe@example.com");
            assert_eq!(out["meta"], json!({"n": 3, "tags": ["a", 1.5]}));
        }
    }

    #[test]
    fn non_object_intermediate_is_fatal() {
        let err =
            apply(r#"fields = { "data.automation.id" = "x" }"#, leadshark_v2()).expect_err("null");
        assert!(!err.is_retryable());
        assert!(
            err.message().contains("`data.automation` is null"),
            "{}",
            err.message()
        );
        let out =
            apply(r#"fields = { "data.automation.id" = "x" }"#, leadshark_v1()).expect("object");
        assert_eq!(out["data"]["automation"]["id"], "x");
    }

    /// In place, a field that cannot be set leaves every field as it was, even those
    /// before it.
    #[test]
    fn a_failed_edit_leaves_the_event_as_it_was() {
        let t = build(
            &config("set", r#"fields = { "a.x" = 1, "b.y" = 2 }"#),
            &ctx(),
        )
        .expect("builds");
        assert!(t.edits_in_place());
        let mut e = event("email.captured", json!({"a": {}, "b": "text"}));
        let before = e.payload.clone();
        let err = t.edit(&mut e).expect_err("b is text");
        assert!(
            err.message().contains("`b` is a string"),
            "{}",
            err.message()
        );
        // As text: `==` on objects ignores their order.
        assert_eq!(e.payload.to_string(), before.to_string());
        let mut e = event("email.captured", json!({"a": {}, "b": {}}));
        t.edit(&mut e).expect("edits");
        assert_eq!(e.payload, json!({"a": {"x": 1}, "b": {"y": 2}}));
    }

    #[test]
    fn config_errors_are_located() {
        let text = "fields = { \"a..b\" = 1 }";
        let err = build(&config("set", text), &ctx()).expect_err("bad path");
        assert_eq!(spanned(text, &err), "{ \"a..b\" = 1 }");

        let text = "fields = { \"a\" = {}, \"a.b\" = 1 }";
        let err = build(&config("set", text), &ctx()).expect_err("overlap");
        assert!(err.message.contains("overlap"), "{}", err.message);
        // One array element spelled two ways: setting the first would change whether the
        // second can be set, and an in-place edit could stop half done.
        for text in [
            "fields = { \"items.0\" = \"x\", \"items.00.id\" = 1 }",
            "fields = { \"items.+0.id\" = 1, \"items.0\" = 2 }",
        ] {
            let err = build(&config("set", text), &ctx()).expect_err("overlap");
            assert!(err.message.contains("overlap"), "{text}: {}", err.message);
        }

        let text = "fields = {}";
        assert_eq!(
            spanned(
                text,
                &build(&config("set", text), &ctx()).expect_err("empty")
            ),
            "{}"
        );

        let text = "fields = { a = 1 }\nfield = 2";
        assert_eq!(
            spanned(
                text,
                &build(&config("set", text), &ctx()).expect_err("unknown")
            ),
            "field"
        );

        let text = "fields = [\"a\"]";
        let err = build(&config("set", text), &ctx()).expect_err("wrong type");
        assert_eq!(spanned(text, &err), "[\"a\"]");
    }
}
