//! `remove` transform: removes payload fields.
//!
//! ```toml
//! { transform = "remove", fields = ["data.lead.email", "data.lead.linkedin_username"] }
//! ```
//!
//! Paths are dotted (`items.0` removes the first element; later ones shift down). A path
//! that is not there is skipped: LeadShark v1 and v2 bodies carry different fields.

use std::sync::Arc;

use hookline_plugin_api::{BuildContext, ConfigError, Event, PluginConfig, StageError, Transform};
use serde::Deserialize;
use toml::Spanned;

use crate::path::{self, FieldPath};

/// Config of the `remove` transform.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveConfig {
    /// Dotted paths to remove. Required, non-empty.
    pub fields: Vec<Spanned<String>>,
}

pub fn build(
    config: &PluginConfig<'_>,
    _ctx: &BuildContext,
) -> Result<Arc<dyn Transform>, ConfigError> {
    let cfg: RemoveConfig = config.parse()?;
    if cfg.fields.is_empty() {
        return Err(config.error_at("fields", "`fields` must list at least one path"));
    }
    let fields = cfg
        .fields
        .iter()
        .map(|f| {
            FieldPath::parse(f.get_ref()).map_err(|message| ConfigError {
                message,
                span: Some(f.span()),
                key: Some("fields".into()),
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Arc::new(RemoveTransform { fields }))
}

/// Runtime form of the `remove` transform.
#[derive(Debug)]
pub struct RemoveTransform {
    fields: Vec<FieldPath>,
}

impl Transform for RemoveTransform {
    fn apply(&self, mut event: Event) -> Result<Vec<Event>, StageError> {
        self.edit(&mut event)?;
        Ok(vec![event])
    }

    fn edits_in_place(&self) -> bool {
        true
    }

    /// Removing cannot fail.
    fn edit(&self, event: &mut Event) -> Result<(), StageError> {
        for path in &self.fields {
            path::remove(&mut event.payload, path);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{config, ctx, event, leadshark_v1, leadshark_v2, spanned};

    #[test]
    fn removes_present_fields_and_skips_missing_ones() {
        let t = build(
            &config(
                "remove",
                r#"fields = ["data.lead.email", "data.automation.id", "nope.x"]"#,
            ),
            &ctx(),
        )
        .expect("builds");
        let v1 = t
            .apply(event("email.captured", leadshark_v1()))
            .expect("v1")
            .remove(0)
            .payload;
        assert!(v1["data"]["lead"].get("email").is_none());
        assert!(v1["data"]["automation"].get("id").is_none());
        assert_eq!(v1["data"]["automation"]["name"], "Q4 Marketing Guide");
        let v2 = t
            .apply(event("email.captured", leadshark_v2()))
            .expect("v2")
            .remove(0)
            .payload;
        assert!(v2["data"]["lead"].get("email").is_none());
        assert!(v2["data"]["automation"].is_null());
        assert_eq!(v2["data"]["lead"]["name"], "John Doe");
    }

    #[test]
    fn config_errors_are_located() {
        let text = "fields = [\"ok\", \"bad.\"]";
        let err = build(&config("remove", text), &ctx()).expect_err("bad path");
        assert_eq!(spanned(text, &err), "\"bad.\"");
        let text = "fields = []";
        assert_eq!(
            spanned(
                text,
                &build(&config("remove", text), &ctx()).expect_err("empty")
            ),
            "[]"
        );
        let text = "fields = [\"a\"]\npaths = []";
        assert_eq!(
            spanned(
                text,
                &build(&config("remove", text), &ctx()).expect_err("unknown")
            ),
            "paths"
        );
        let err = build(&config("remove", ""), &ctx()).expect_err("missing");
        assert!(err.message.contains("fields"), "{}", err.message);
    }
}
