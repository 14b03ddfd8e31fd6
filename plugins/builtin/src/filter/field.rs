//! `field` filter: keeps events by one condition on a payload field.
//!
//! ```toml
//! { filter = "field", path = "data.lead.email", regex = "@example\\.com$", not = true }
//! { filter = "field", path = "data.payload_version", equals = 2 }
//! { filter = "field", path = "event", in = ["email.captured", "new.comment"] }
//! { filter = "field", path = "data.automation", exists = true }
//! ```
//!
//! `path` is dotted (`data.lead.email`, `items.0.id`). Exactly one condition is required:
//!
//! - `equals`: any TOML value, compared with the field as JSON (numbers by value, so `2`
//!   equals `2.0`);
//! - `in`: a list of such values; the field must equal one of them;
//! - `regex`: the field must be a string that the regex matches (unanchored; use `^…$`);
//!   non-string fields never match;
//! - `exists`: whether the field is present.
//!
//! A JSON `null` counts as absent (so a LeadShark v2 body with `"automation": null` behaves
//! like a v1 body without the key), and an absent field fails every condition but
//! `exists = false`. `not = true` inverts the result.

use std::sync::Arc;

use hookline_plugin_api::{BuildContext, ConfigError, Event, Filter, PluginConfig, StageError};
use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

use crate::path::FieldPath;
use crate::support::{table_error, toml_to_json};

/// Config of the `field` filter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldFilterConfig {
    /// Dotted path into the payload. Required.
    pub path: String,
    /// Keep when the field equals this value. No default.
    pub equals: Option<toml::Value>,
    /// Keep when the field equals one of these values. No default.
    #[serde(rename = "in")]
    pub in_list: Option<Vec<toml::Value>>,
    /// Keep when the field is a string this regex matches. No default.
    pub regex: Option<String>,
    /// Keep when the field is present and not null (`true`) or absent or null (`false`).
    pub exists: Option<bool>,
    /// Invert the condition. Default `false`.
    #[serde(default)]
    pub not: bool,
}

/// The one condition a `field` filter tests.
#[derive(Debug)]
enum Condition {
    Equals(Value),
    In(Vec<Value>),
    Regex(Regex),
    Exists(bool),
}

pub fn build(
    config: &PluginConfig<'_>,
    _ctx: &BuildContext,
) -> Result<Arc<dyn Filter>, ConfigError> {
    let cfg: FieldFilterConfig = config.parse()?;
    let path = FieldPath::parse(&cfg.path).map_err(|e| config.error_at("path", e))?;
    let json = |key: &str, v: &toml::Value| toml_to_json(v).map_err(|e| config.error_at(key, e));

    let mut conditions = Vec::new();
    if let Some(v) = &cfg.equals {
        conditions.push(Condition::Equals(json("equals", v)?));
    }
    if let Some(values) = &cfg.in_list {
        if values.is_empty() {
            return Err(config.error_at("in", "`in` must list at least one value"));
        }
        let values = values
            .iter()
            .map(|v| json("in", v))
            .collect::<Result<_, _>>()?;
        conditions.push(Condition::In(values));
    }
    if let Some(pattern) = &cfg.regex {
        let regex = Regex::new(pattern)
            .map_err(|e| config.error_at("regex", format!("invalid regex: {e}")))?;
        conditions.push(Condition::Regex(regex));
    }
    if let Some(exists) = cfg.exists {
        conditions.push(Condition::Exists(exists));
    }
    if conditions.len() != 1 {
        return Err(table_error(
            config,
            format!(
                "the field filter needs exactly one of `equals`, `in`, `regex`, `exists` (found {})",
                conditions.len()
            ),
        ));
    }
    let condition = conditions.remove(0);
    Ok(Arc::new(FieldFilter {
        path,
        condition,
        not: cfg.not,
    }))
}

/// Runtime form of the `field` filter.
#[derive(Debug)]
pub struct FieldFilter {
    path: FieldPath,
    condition: Condition,
    not: bool,
}

impl Filter for FieldFilter {
    fn keep(&self, event: &Event) -> Result<bool, StageError> {
        let value = event.lookup(self.path.as_str()).filter(|v| !v.is_null());
        let matched = match (&self.condition, value) {
            (Condition::Exists(want), v) => v.is_some() == *want,
            (_, None) => false,
            (Condition::Equals(expected), Some(v)) => json_eq(expected, v),
            (Condition::In(options), Some(v)) => options.iter().any(|o| json_eq(o, v)),
            (Condition::Regex(re), Some(v)) => v.as_str().is_some_and(|s| re.is_match(s)),
        };
        Ok(matched != self.not)
    }
}

/// JSON equality where numbers compare by value: TOML `2` and a payload's `2.0` are equal.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
                (Some(x), Some(y), _, _) => x == y,
                (_, _, Some(x), Some(y)) => x == y,
                _ => x.as_f64() == y.as_f64(),
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{config, ctx, event, inline_config, leadshark_v1, leadshark_v2, spanned};
    use serde_json::json;

    fn keeps(text: &str, payload: Value) -> bool {
        let f = build(&config("field", text), &ctx()).expect("builds");
        f.keep(&event("email.captured", payload)).expect("keep")
    }

    fn build_err(text: &str) -> ConfigError {
        build(&config("field", text), &ctx()).expect_err("config error")
    }

    #[test]
    fn equals_and_in_compare_as_json() {
        let both = [leadshark_v1(), leadshark_v2()];
        for p in &both {
            assert!(keeps(
                "path = \"data.lead.name\"\nequals = \"John Doe\"",
                p.clone()
            ));
            assert!(keeps(
                "path = \"event\"\nin = [\"new.like\", \"email.captured\"]",
                p.clone()
            ));
            assert!(!keeps(
                "path = \"data.lead.name\"\nequals = \"Jane\"",
                p.clone()
            ));
        }
        assert!(keeps(
            "path = \"data.payload_version\"\nequals = 2",
            leadshark_v2()
        ));
        assert!(keeps(
            "path = \"data.payload_version\"\nequals = 2.0",
            leadshark_v2()
        ));
        assert!(!keeps(
            "path = \"data.payload_version\"\nequals = 2",
            leadshark_v1()
        ));
        assert!(keeps(
            "path = \"a\"\nequals = { b = [1, true] }",
            json!({"a": {"b": [1.0, true]}})
        ));
        assert!(!keeps("path = \"a\"\nequals = \"1\"", json!({"a": 1})));
    }

    #[test]
    fn regex_matches_strings_only() {
        let text = "path = \"data.lead.email\"\nregex = \"@example\\\\.com$\"";
        assert!(keeps(text, leadshark_v1()));
        assert!(keeps(text, leadshark_v2()));
        assert!(!keeps(&format!("{text}\nnot = true"), leadshark_v2()));
        assert!(!keeps("path = \"n\"\nregex = \"1\"", json!({"n": 1})));
        assert!(!keeps("path = \"missing\"\nregex = \".*\"", json!({})));
    }

    #[test]
    fn exists_treats_null_as_absent() {
        let text = "path = \"data.automation\"\nexists = true";
        assert!(keeps(text, leadshark_v1()));
        assert!(!keeps(text, leadshark_v2()));
        assert!(keeps(
            "path = \"data.automation\"\nexists = false",
            leadshark_v2()
        ));
        assert!(keeps(
            "path = \"data.lead.actor_id\"\nexists = true",
            leadshark_v2()
        ));
        assert!(!keeps(
            "path = \"data.lead.actor_id\"\nexists = true",
            leadshark_v1()
        ));
        assert!(keeps(
            "path = \"data.lead.actor_id\"\nexists = true\nnot = true",
            leadshark_v1()
        ));
    }

    #[test]
    fn condition_count_is_checked_at_the_table() {
        let doc = "stage = { path = \"a\", equals = 1, exists = true }";
        let err = build(&inline_config("field", doc), &ctx()).expect_err("two conditions");
        assert!(err.message.contains("exactly one"), "{}", err.message);
        assert_eq!(spanned(doc, &err), &doc["stage = ".len()..]);
        assert_eq!(err.key, None);
        let err = build_err("path = \"a\"");
        assert!(err.message.contains("found 0"), "{}", err.message);
    }

    #[test]
    fn config_errors_are_located() {
        let text = "path = \"a\"\nregex = \"(unclosed\"";
        let err = build_err(text);
        assert_eq!(spanned(text, &err), "\"(unclosed\"");
        assert!(err.message.starts_with("invalid regex"), "{}", err.message);

        let text = "path = \"a..b\"\nexists = true";
        assert_eq!(spanned(text, &build_err(text)), "\"a..b\"");

        let text = "path = \"a\"\nin = []";
        assert_eq!(spanned(text, &build_err(text)), "[]");

        let text = "path = \"a\"\nexists = true\nequal = 1";
        assert_eq!(spanned(text, &build_err(text)), "equal");

        let err = build_err("exists = true");
        assert!(err.message.contains("path"), "{}", err.message);
    }
}
