//! `wasm:redact` — masks emails and names anywhere in the payload.
//!
//! ```toml
//! { transform = "wasm:redact", keep_domain = true }
//! ```
//!
//! Every string under a key named like an email (`email`, `*_email`) and every string that
//! looks like an email address is masked (`j***@example.com`, or `***` without
//! `keep_domain`); every string under a key in `name_keys` becomes initials (`J. D.`).

use hookline_plugin_sdk::serde_json::Value;
use hookline_plugin_sdk::{Config, Error, Event, Transform};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Keep the part after `@` (`j***@example.com`).
    #[serde(default = "yes")]
    keep_domain: bool,
    /// Keys whose string values are people's names.
    #[serde(default = "default_name_keys")]
    name_keys: Vec<String>,
}

fn yes() -> bool {
    true
}

fn default_name_keys() -> Vec<String> {
    vec!["name".into()]
}

struct Redact(Settings);

impl Transform for Redact {
    fn new(config: Config) -> Result<Self, String> {
        Ok(Redact(config.parse()?))
    }

    fn apply(&mut self, mut event: Event) -> Result<Vec<Event>, Error> {
        let mut payload = event.json()?;
        let masked = self.walk(None, &mut payload);
        if masked > 0 {
            hookline_plugin_sdk::increment("fields_masked", masked);
        }
        event.set_json(&payload);
        Ok(vec![event])
    }
}

impl Redact {
    /// Masks in place; returns how many values it changed.
    fn walk(&self, key: Option<&str>, value: &mut Value) -> u64 {
        match value {
            Value::Object(map) => map.iter_mut().map(|(k, v)| self.walk(Some(k), v)).sum(),
            Value::Array(items) => items.iter_mut().map(|v| self.walk(key, v)).sum(),
            Value::String(s) => {
                let replacement = if key.is_some_and(|k| k == "email" || k.ends_with("_email"))
                    || looks_like_email(s)
                {
                    self.mask_email(s)
                } else if key.is_some_and(|k| self.0.name_keys.iter().any(|n| n == k)) {
                    initials(s)
                } else {
                    return 0;
                };
                *s = replacement;
                1
            }
            _ => 0,
        }
    }

    fn mask_email(&self, email: &str) -> String {
        match email.rsplit_once('@') {
            Some((local, domain)) if self.0.keep_domain => {
                let first = local.chars().next().map(String::from).unwrap_or_default();
                format!("{first}***@{domain}")
            }
            _ => "***".into(),
        }
    }
}

fn looks_like_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !local.contains(char::is_whitespace)
                && domain.contains('.')
                && !domain.contains(['@', ' ', '/'])
        }
        None => false,
    }
}

/// `"John Doe"` → `"J. D."`.
fn initials(name: &str) -> String {
    name.split_whitespace()
        .filter_map(|w| w.chars().next())
        .map(|c| format!("{c}."))
        .collect::<Vec<_>>()
        .join(" ")
}

hookline_plugin_sdk::transform!(Redact);
