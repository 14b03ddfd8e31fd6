//! What a sink may ask of its destination: a circuit breaker, a rate and a concurrency.
//!
//! ```toml
//! { sink = "http", url = "...", rate = "50/s", concurrency = 4, circuit = { failures = 5, cooldown = "30s" } }
//! ```

use std::num::NonZeroU32;
use std::time::Duration;

use serde::Deserialize;

/// A sink stage's limits towards its destination.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SinkLimits {
    /// `None`: `circuit = false`.
    pub(crate) circuit: Option<CircuitPolicy>,
    pub(crate) rate: Option<Rate>,
    /// Calls in flight at once, at most.
    pub(crate) concurrency: Option<NonZeroU32>,
}

impl SinkLimits {
    /// In words, with the sink's retry policy: what `hookline check` prints under a sink.
    pub(crate) fn describe(&self, retry: &super::RetryPolicy) -> String {
        let mut parts = vec![format!("retry {}", retry.describe())];
        parts.push(match &self.circuit {
            Some(c) => format!(
                "circuit opens after {} failures, probes after {}",
                c.failures,
                humantime::format_duration(c.cooldown)
            ),
            None => "no circuit".into(),
        });
        if let Some(rate) = self.rate {
            parts.push(format!("rate {rate}"));
        }
        if let Some(n) = self.concurrency {
            parts.push(format!("concurrency {n}"));
        }
        parts.join("; ")
    }

    /// The limits of a stage that sets none of the keys: a circuit with the defaults.
    pub(crate) fn defaults() -> Self {
        SinkLimits {
            circuit: Some(CircuitPolicy::default()),
            rate: None,
            concurrency: None,
        }
    }
}

/// When a sink's circuit opens and how long it stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitPolicy {
    /// Retryable failures in a row that open the circuit.
    #[serde(default = "default_failures")]
    pub(crate) failures: u32,
    /// How long it stays open before one delivery probes the destination; doubles after each
    /// failed probe, up to `max_cooldown`.
    #[serde(default = "default_cooldown", with = "humantime_serde")]
    pub(crate) cooldown: Duration,
    #[serde(default = "default_max_cooldown", with = "humantime_serde")]
    pub(crate) max_cooldown: Duration,
}

fn default_failures() -> u32 {
    5
}

fn default_cooldown() -> Duration {
    Duration::from_secs(30)
}

fn default_max_cooldown() -> Duration {
    Duration::from_secs(600)
}

impl Default for CircuitPolicy {
    fn default() -> Self {
        CircuitPolicy {
            failures: default_failures(),
            cooldown: default_cooldown(),
            max_cooldown: default_max_cooldown(),
        }
    }
}

/// `circuit = false`, or a table.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum CircuitTable {
    Switch(bool),
    Policy(CircuitPolicy),
}

impl CircuitPolicy {
    /// `circuit = false` → `None`; `true` → the defaults.
    pub(crate) fn from_value<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Self>, D::Error> {
        Ok(match CircuitTable::deserialize(d)? {
            CircuitTable::Switch(false) => None,
            CircuitTable::Switch(true) => Some(CircuitPolicy::default()),
            CircuitTable::Policy(p) => Some(p),
        })
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.failures == 0 {
            return Err(
                "`failures` must be at least 1 (turn the circuit off with `circuit = false`)"
                    .into(),
            );
        }
        if self.cooldown < Duration::from_millis(100) {
            return Err("`cooldown` must be at least 100ms".into());
        }
        if self.max_cooldown < self.cooldown {
            return Err(format!(
                "`max_cooldown` ({}) is shorter than `cooldown` ({})",
                humantime::format_duration(self.max_cooldown),
                humantime::format_duration(self.cooldown)
            ));
        }
        Ok(())
    }
}

/// Calls per period: `"50/s"`, `"600/m"`, `"1000/h"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub(crate) calls: NonZeroU32,
    pub(crate) per: Duration,
}

impl Rate {
    pub(crate) fn parse(text: &str) -> Result<Rate, String> {
        let bad =
            || format!("`rate` must look like \"50/s\", \"600/m\" or \"1000/h\", not \"{text}\"");
        let (calls, unit) = text.split_once('/').ok_or_else(bad)?;
        let calls: u32 = calls.trim().parse().map_err(|_| bad())?;
        let calls = NonZeroU32::new(calls).ok_or("`rate` must allow at least 1 call")?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        Ok(Rate { calls, per })
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "m",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.calls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_print() {
        let r = Rate::parse("50/s").expect("rate");
        assert_eq!((r.calls.get(), r.per), (50, Duration::from_secs(1)));
        assert_eq!(r.to_string(), "50/s");
        assert_eq!(
            Rate::parse(" 600 / m ").expect("rate").per,
            Duration::from_secs(60)
        );
        for bad in ["50", "0/s", "-1/s", "50/d", "fast"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn circuits_switch_off_or_take_a_table() {
        #[derive(Deserialize)]
        struct T {
            #[serde(deserialize_with = "CircuitPolicy::from_value")]
            circuit: Option<CircuitPolicy>,
        }
        let off: T = toml::from_str("circuit = false").expect("off");
        assert_eq!(off.circuit, None);
        let on: T = toml::from_str("circuit = { failures = 3 }").expect("table");
        let p = on.circuit.expect("policy");
        assert_eq!(p.failures, 3);
        assert_eq!(p.cooldown, Duration::from_secs(30));
        assert!(
            CircuitPolicy {
                failures: 0,
                ..CircuitPolicy::default()
            }
            .validate()
            .is_err()
        );
    }
}
