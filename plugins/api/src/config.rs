use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// A plugin's slice of `pipeline.toml`: the stage's table, without the keys the engine
/// itself reads (`filter`/`transform`/`sink`, `name`, `retry`).
///
/// Spans point into the original file, so every error a plugin reports through
/// [`PluginConfig::parse`] or [`PluginConfig::error_at`] names the file, line, column and key.
///
/// It borrows the parsed document, so it lives only while the stage is built: a plugin keeps
/// its typed config, never this.
#[derive(Debug, Clone)]
pub struct PluginConfig<'a> {
    plugin: String,
    table: Spanned<DeValue<'a>>,
}

/// A TOML value from the config as JSON, the same for native and WASM plugins: datetimes
/// become their RFC 3339 text; a non-finite float has no JSON form and is refused.
pub fn toml_to_json(value: &toml::Value) -> Result<serde_json::Value, String> {
    use serde_json::Value;
    Ok(match value {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .ok_or_else(|| format!("{f} has no JSON representation"))?,
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => {
            Value::Array(items.iter().map(toml_to_json).collect::<Result<_, _>>()?)
        }
        toml::Value::Table(table) => Value::Object(
            table
                .iter()
                .map(|(k, v)| Ok((k.clone(), toml_to_json(v)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

impl<'a> PluginConfig<'a> {
    /// `table` must be a TOML table; anything else is treated as an empty one.
    pub fn new(plugin: impl Into<String>, table: Spanned<DeValue<'a>>) -> Self {
        PluginConfig {
            plugin: plugin.into(),
            table,
        }
    }

    /// Parse a stand-alone TOML table (handy in plugin unit tests). Spans then point into
    /// `toml_text`; the table itself spans the whole text.
    pub fn from_toml(plugin: &str, toml_text: &'a str) -> Result<Self, ConfigError> {
        let table = DeTable::parse(toml_text).map_err(ConfigError::from)?;
        let value = DeValue::Table(table.into_inner());
        Ok(PluginConfig::new(
            plugin,
            Spanned::new(0..toml_text.len(), value),
        ))
    }

    /// The plugin's name as written in the stage (`http`, `cel`, `wasm:redact`).
    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// Where the stage's table is in the file.
    pub fn span(&self) -> Range<usize> {
        self.table.span()
    }

    /// Deserialize the table into the plugin's typed config. Use
    /// `#[serde(deny_unknown_fields)]` on it: unknown keys are start-up errors.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let de = toml::de::ValueDeserializer::from(self.table.clone());
        T::deserialize(de).map_err(|e| {
            let mut err = ConfigError::from(e);
            if err.span.is_none() {
                err.span = Some(self.span());
            }
            err
        })
    }

    /// An error about one key of this table (a bad expression, an invalid URL): located at
    /// that key's value, or at the table when the key is absent.
    pub fn error_at(&self, key: &str, message: impl Into<String>) -> ConfigError {
        let span = self
            .entry(key)
            .map(|(_, v)| v.span())
            .unwrap_or_else(|| self.span());
        ConfigError {
            message: message.into(),
            span: Some(span),
            key: Some(key.to_string()),
        }
    }

    /// An error at an exact place (an array item, a nested key), e.g. from a
    /// `toml::Spanned<T>` field of the plugin's config.
    pub fn error_at_span(
        &self,
        span: Range<usize>,
        key: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            message: message.into(),
            span: Some(span),
            key: Some(key.to_string()),
        }
    }

    /// The table as plain TOML (spans dropped), e.g. to hand to a WASM plugin.
    pub fn to_table(&self) -> toml::Table {
        self.parse::<toml::Table>().unwrap_or_default()
    }

    /// Whether the table has this key.
    pub fn has(&self, key: &str) -> bool {
        self.entry(key).is_some()
    }

    #[allow(clippy::type_complexity)]
    fn entry(
        &self,
        key: &str,
    ) -> Option<(&Spanned<std::borrow::Cow<'a, str>>, &Spanned<DeValue<'a>>)> {
        match self.table.get_ref() {
            DeValue::Table(t) => t.iter().find(|(k, _)| k.get_ref().as_ref() == key),
            _ => None,
        }
    }
}

/// A problem with a stage's configuration, located in the file by its span.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    pub message: String,
    /// Byte range in the config file; the engine turns it into line and column.
    pub span: Option<Range<usize>>,
    /// The key at fault, when known (the engine also derives it from the span).
    pub key: Option<String>,
}

impl ConfigError {
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError {
            message: message.into(),
            span: None,
            key: None,
        }
    }
}

impl From<toml::de::Error> for ConfigError {
    fn from(e: toml::de::Error) -> Self {
        ConfigError {
            message: e.message().trim().to_string(),
            span: e.span(),
            key: None,
        }
    }
}

/// What a factory may need besides its own table.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BuildContext {
    /// Directory of the config file: relative paths in a stage resolve against it.
    pub base_dir: PathBuf,
    /// Pipeline and stage names, for logs and metrics.
    pub pipeline: String,
    pub stage: String,
    /// `hookline check` and `hookline test`: validate everything the factory can (paths
    /// included), but change nothing outside the process: create no file, directory or
    /// table. A stage built this way is never asked to deliver.
    pub dry_run: bool,
}

impl BuildContext {
    pub fn new(
        base_dir: impl Into<PathBuf>,
        pipeline: impl Into<String>,
        stage: impl Into<String>,
    ) -> Self {
        BuildContext {
            base_dir: base_dir.into(),
            pipeline: pipeline.into(),
            stage: stage.into(),
            dry_run: false,
        }
    }

    /// The same context for a dry run (see [`BuildContext::dry_run`]).
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// `path` as written in the config, resolved against the config file's directory.
    pub fn resolve(&self, path: impl AsRef<Path>) -> PathBuf {
        let path = path.as_ref();
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        #[allow(dead_code)]
        url: String,
    }

    #[test]
    fn unknown_key_is_located() {
        let text = "url = \"x\"\nurll = \"y\"\n";
        let cfg = PluginConfig::from_toml("http", text).expect("parses");
        let err = cfg.parse::<Cfg>().expect_err("unknown key");
        assert!(err.message.contains("urll"), "{}", err.message);
        let span = err.span.expect("span");
        assert_eq!(&text[span], "urll");
    }

    #[test]
    fn missing_key_points_at_table() {
        let cfg = PluginConfig::from_toml("http", "timeout = 3\n").expect("parses");
        let err = cfg.parse::<Cfg>().expect_err("missing");
        assert!(err.message.contains("url"), "{}", err.message);
        assert!(err.span.is_some());
    }

    #[test]
    fn error_at_points_at_value() {
        let text = "expr = \"1 +\"\n";
        let cfg = PluginConfig::from_toml("cel", text).expect("parses");
        let err = cfg.error_at("expr", "bad");
        assert_eq!(&text[err.span.expect("span")], "\"1 +\"");
        assert_eq!(err.key.as_deref(), Some("expr"));
    }

    #[test]
    fn to_table_keeps_values() {
        let cfg = PluginConfig::from_toml("x", "a = 1\nb = { c = [true] }\n").expect("parses");
        let t = cfg.to_table();
        assert_eq!(t["a"].as_integer(), Some(1));
        assert_eq!(t["b"]["c"][0].as_bool(), Some(true));
    }
}
