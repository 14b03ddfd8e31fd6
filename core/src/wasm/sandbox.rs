//! A WASM stage's limits, from keys of its stage table that the host reads itself
//! (`timeout`, `memory`, `fuel`, `allowed_hosts`, `recycle_after`, `instances`). The rest of
//! the table is the plugin's own config.
//!
//! ```toml
//! { transform = "wasm:redact", timeout = "50ms", memory = "16MiB", fuel = 50000000 }
//! { sink = "wasm:slack", url = "...", allowed_hosts = ["hooks.slack.com"], timeout = "10s" }
//! ```

use std::time::Duration;

use hookline_plugin_api::{ConfigError, PluginConfig, StageKind, toml_to_json};
use serde::de::DeserializeOwned;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sandbox {
    /// Wall-clock deadline per call (epoch interruption); for sinks it also bounds HTTP.
    pub(crate) timeout: Duration,
    /// Cap on the instance's linear memory (and tables), in bytes.
    pub(crate) memory: u64,
    /// Instructions per call, when set; unlimited otherwise (the deadline still applies).
    pub(crate) fuel: Option<u64>,
    /// Hosts a sink may reach through `http-send` (`host` or `host:port`).
    pub(crate) allowed_hosts: Vec<String>,
    /// Instances are replaced after this many calls.
    pub(crate) recycle_after: u64,
    /// Idle instances kept per stage.
    pub(crate) instances: usize,
}

impl Sandbox {
    /// Safe defaults for a kind: filters and transforms get a short deadline; sinks wait on
    /// the network, so theirs is longer.
    pub(crate) fn defaults(kind: StageKind) -> Sandbox {
        Sandbox {
            timeout: match kind {
                StageKind::Sink => Duration::from_secs(10),
                _ => Duration::from_millis(200),
            },
            memory: 64 << 20,
            fuel: None,
            allowed_hosts: Vec::new(),
            recycle_after: 10_000,
            instances: 4,
        }
    }

    /// Past this much memory an instance is recycled after its call (long-lived instances'
    /// memory only grows).
    pub(crate) fn high_water(&self) -> u64 {
        self.memory / 2
    }

    /// Read the sandbox keys of `config`; returns the limits and the plugin's own table.
    pub(crate) fn parse(
        kind: StageKind,
        config: &PluginConfig<'_>,
    ) -> Result<(Sandbox, toml::Table), ConfigError> {
        let mut table = config.to_table();
        let mut sandbox = Sandbox::defaults(kind);
        let mut take = |key: &str| table.remove(key);
        if let Some(v) = take("timeout") {
            let d: humantime_serde::Serde<Duration> = value(config, "timeout", v)?;
            sandbox.timeout = d.into_inner();
            if sandbox.timeout.is_zero() || sandbox.timeout > Duration::from_secs(300) {
                return Err(config.error_at("timeout", "`timeout` must be between 1ms and 5m"));
            }
        }
        if let Some(v) = take("memory") {
            let size: bytesize::ByteSize = value(config, "memory", v)?;
            sandbox.memory = size.as_u64();
            if !(1 << 20..=4 << 30).contains(&sandbox.memory) {
                return Err(config.error_at("memory", "`memory` must be between 1MiB and 4GiB"));
            }
        }
        if let Some(v) = take("fuel") {
            let fuel: u64 = value(config, "fuel", v)?;
            if fuel == 0 {
                return Err(config.error_at("fuel", "`fuel` must be positive"));
            }
            sandbox.fuel = Some(fuel);
        }
        if let Some(v) = take("allowed_hosts") {
            if kind != StageKind::Sink {
                return Err(config.error_at(
                    "allowed_hosts",
                    format!("`allowed_hosts` applies to sinks; a {kind} makes no HTTP requests"),
                ));
            }
            let hosts: Vec<String> = value(config, "allowed_hosts", v)?;
            for h in &hosts {
                super::http::validate_allowed(h)
                    .map_err(|e| config.error_at("allowed_hosts", e))?;
            }
            sandbox.allowed_hosts = hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
        }
        if let Some(v) = take("recycle_after") {
            sandbox.recycle_after = value(config, "recycle_after", v)?;
            if sandbox.recycle_after == 0 {
                return Err(config.error_at("recycle_after", "`recycle_after` must be positive"));
            }
        }
        if let Some(v) = take("instances") {
            sandbox.instances = value(config, "instances", v)?;
            if !(1..=64).contains(&sandbox.instances) {
                return Err(config.error_at("instances", "`instances` must be between 1 and 64"));
            }
        }
        Ok((sandbox, table))
    }
}

fn value<T: DeserializeOwned>(
    config: &PluginConfig<'_>,
    key: &str,
    v: toml::Value,
) -> Result<T, ConfigError> {
    T::deserialize(v).map_err(|e| config.error_at(key, format!("`{key}`: {}", e.message())))
}

/// The plugin's table as JSON text for its `init` ([`toml_to_json`], as for native plugins).
pub(crate) fn to_json(table: toml::Table) -> Result<String, String> {
    toml_to_json(&toml::Value::Table(table)).map(|v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(kind: StageKind, text: &str) -> Result<(Sandbox, toml::Table), ConfigError> {
        let cfg = PluginConfig::from_toml("wasm:x", text).expect("toml");
        Sandbox::parse(kind, &cfg)
    }

    #[test]
    fn plugin_configs_become_json_as_native_ones_do() {
        let (_, rest) =
            parse(StageKind::Transform, "at = 1979-05-27T07:32:00Z\nn = nan\n").expect("ok");
        let e = to_json(rest).expect_err("NaN has no JSON form");
        assert!(e.contains("no JSON representation"), "{e}");
        let (_, rest) = parse(StageKind::Transform, "at = 1979-05-27T07:32:00Z\n").expect("ok");
        assert_eq!(
            to_json(rest).as_deref(),
            Ok(r#"{"at":"1979-05-27T07:32:00Z"}"#)
        );
    }

    #[test]
    fn defaults_are_safe() {
        let (s, rest) = parse(StageKind::Transform, "keep_domain = true\n").expect("ok");
        assert_eq!(s, Sandbox::defaults(StageKind::Transform));
        assert_eq!(s.timeout, Duration::from_millis(200));
        assert_eq!(s.memory, 64 << 20);
        assert!(s.fuel.is_none() && s.allowed_hosts.is_empty());
        assert_eq!(to_json(rest).as_deref(), Ok(r#"{"keep_domain":true}"#));
    }

    #[test]
    fn keys_are_read_and_removed() {
        let text = "timeout = \"50ms\"\nmemory = \"8MiB\"\nfuel = 1000\nallowed_hosts = [\"Hooks.Slack.com\"]\nurl = \"u\"\n";
        let (s, rest) = parse(StageKind::Sink, text).expect("ok");
        assert_eq!(s.timeout, Duration::from_millis(50));
        assert_eq!(s.memory, 8 << 20);
        assert_eq!(s.fuel, Some(1000));
        assert_eq!(s.allowed_hosts, ["hooks.slack.com"]);
        assert_eq!(to_json(rest).as_deref(), Ok(r#"{"url":"u"}"#));
    }

    #[test]
    fn bad_values_are_located_errors() {
        let text = "memory = \"lots\"\n";
        let err = parse(StageKind::Transform, text).expect_err("bad size");
        assert_eq!(err.key.as_deref(), Some("memory"));
        assert_eq!(&text[err.span.expect("span")], "\"lots\"");
        let err = parse(StageKind::Filter, "allowed_hosts = [\"a.b\"]\n").expect_err("filter");
        assert!(err.message.contains("applies to sinks"), "{}", err.message);
        assert!(parse(StageKind::Transform, "timeout = \"0s\"\n").is_err());
        assert!(parse(StageKind::Sink, "allowed_hosts = [\"http://x\"]\n").is_err());
    }
}
