//! A stage's retry policy: how long a failing destination is tried before its event becomes
//! a dead letter.
//!
//! ```toml
//! retry = { schedule = ["5s", "5m", "30m", "2h", "5h", "10h", "10h"] }  # the default
//! retry = { attempts = 8, initial = "1s", max = "5m" }                  # exponential
//! ```
//!
//! A schedule lists the waits after each failed attempt: N waits, N + 1 attempts. The
//! exponential form doubles from `initial` up to `max`. Both are jittered so retries of many
//! events spread out, and both honour a peer's `Retry-After` (up to an hour).

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

/// How often and how patiently a failing stage is tried again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    backoff: Backoff,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Backoff {
    /// The wait after failed attempt `i` (1-based) is `waits[i - 1]`; after the last, none.
    Schedule(Arc<[Duration]>),
    /// `attempts` tries in all; waits double from `initial` up to `max`.
    Exponential {
        attempts: u32,
        initial: Duration,
        max: Duration,
    },
}

/// The default schedule, after the Standard Webhooks guidance: attempts immediately, then
/// after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h — eight attempts over about 27 h 35 min.
const DEFAULT_SCHEDULE: [u64; 7] = [5, 300, 1800, 7200, 18_000, 36_000, 36_000];

/// The most a peer's `Retry-After` can push a retry out.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// A scheduled wait is jittered by up to this fraction either way.
const SCHEDULE_JITTER: f64 = 0.1;

/// The table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryTable {
    #[serde(default, with = "humantime_serde::option")]
    initial: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    max: Option<Duration>,
    attempts: Option<u32>,
    #[serde(default)]
    schedule: Option<Vec<humantime_serde::Serde<Duration>>>,
}

impl<'de> Deserialize<'de> for RetryPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let t = RetryTable::deserialize(d)?;
        let exponential = t.attempts.is_some() || t.initial.is_some() || t.max.is_some();
        match (t.schedule, exponential) {
            (Some(_), true) => Err(serde::de::Error::custom(
                "give either `schedule` or `attempts`/`initial`/`max`, not both",
            )),
            (Some(waits), false) => Ok(RetryPolicy::schedule(
                waits.into_iter().map(|w| w.into_inner()).collect(),
            )),
            (None, true) => Ok(RetryPolicy::exponential(
                t.attempts.unwrap_or(8),
                t.initial.unwrap_or(Duration::from_secs(1)),
                t.max.unwrap_or(Duration::from_secs(300)),
            )),
            (None, false) => Ok(RetryPolicy::default()),
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::schedule(
            DEFAULT_SCHEDULE
                .iter()
                .map(|&s| Duration::from_secs(s))
                .collect(),
        )
    }
}

impl RetryPolicy {
    /// Waits after each failed attempt, in order.
    pub(crate) fn schedule(waits: Vec<Duration>) -> Self {
        RetryPolicy {
            backoff: Backoff::Schedule(waits.into()),
        }
    }

    pub(crate) fn exponential(attempts: u32, initial: Duration, max: Duration) -> Self {
        RetryPolicy {
            backoff: Backoff::Exponential {
                attempts,
                initial,
                max,
            },
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        match &self.backoff {
            Backoff::Schedule(waits) => {
                if waits.iter().any(Duration::is_zero) {
                    return Err("a `schedule` wait must be longer than 0s".into());
                }
                if waits.len() > 100 {
                    return Err(format!(
                        "a `schedule` of {} waits is more than the 100 allowed",
                        waits.len()
                    ));
                }
                Ok(())
            }
            Backoff::Exponential {
                attempts,
                initial,
                max,
            } => {
                if *attempts == 0 {
                    return Err("`attempts` must be at least 1 (1 means no retries)".into());
                }
                if initial > max {
                    return Err(format!(
                        "`initial` ({}) is longer than `max` ({})",
                        humantime::format_duration(*initial),
                        humantime::format_duration(*max)
                    ));
                }
                Ok(())
            }
        }
    }

    /// Tries in all, the first one included.
    pub(crate) fn attempts(&self) -> u32 {
        match &self.backoff {
            Backoff::Schedule(waits) => u32::try_from(waits.len()).unwrap_or(u32::MAX - 1) + 1,
            Backoff::Exponential { attempts, .. } => *attempts,
        }
    }

    /// Whether a try that failed as attempt number `attempts` gets another one.
    pub(crate) fn allows_another(&self, attempts: u32) -> bool {
        attempts < self.attempts()
    }

    /// From the first failure to the dead letter, waits only (without jitter, without the
    /// time the attempts themselves take).
    pub(crate) fn time_to_dead_letter(&self) -> Duration {
        (1..self.attempts())
            .map(|a| self.base(a))
            .fold(Duration::ZERO, Duration::saturating_add)
    }

    /// The wait after failed attempt `attempt` before jitter.
    fn base(&self, attempt: u32) -> Duration {
        match &self.backoff {
            Backoff::Schedule(waits) => {
                let i = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
                waits
                    .get(i)
                    .or(waits.last())
                    .copied()
                    .unwrap_or(Duration::ZERO)
            }
            Backoff::Exponential { initial, max, .. } => {
                let exp = attempt.saturating_sub(1).min(31);
                initial.saturating_mul(1u32 << exp).min(*max)
            }
        }
    }

    /// Wait after failed attempt number `attempt` (1-based), jittered by `jitter` (0..1) so
    /// retries from many events spread out — a schedule's wait by ±10 %, an exponential one
    /// over its upper half and never below `initial` — and never shorter than a peer's
    /// `Retry-After`.
    pub(crate) fn delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Duration {
        let base = self.base(attempt);
        let jitter = jitter.clamp(0.0, 1.0);
        let jittered = match &self.backoff {
            Backoff::Schedule(_) => {
                base.mul_f64(1.0 - SCHEDULE_JITTER + 2.0 * SCHEDULE_JITTER * jitter)
            }
            Backoff::Exponential { initial, .. } => {
                base.mul_f64(0.5 + 0.5 * jitter).max((*initial).min(base))
            }
        };
        match retry_after {
            Some(wait) => jittered.max(wait.min(MAX_RETRY_AFTER)),
            None => jittered,
        }
    }

    /// In words, for `check` and errors: "8 attempts over 27h 35m 5s".
    pub(crate) fn describe(&self) -> String {
        let attempts = self.attempts();
        let span = humantime::format_duration(self.time_to_dead_letter());
        match &self.backoff {
            Backoff::Schedule(_) if attempts == 1 => "1 attempt, no retries".into(),
            Backoff::Schedule(_) => format!("{attempts} attempts over {span} (schedule)"),
            Backoff::Exponential { initial, max, .. } => format!(
                "{attempts} attempts over {span} ({} doubling to {})",
                humantime::format_duration(*initial),
                humantime::format_duration(*max)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RetryPolicy, String> {
        #[derive(Deserialize)]
        struct T {
            retry: RetryPolicy,
        }
        toml::from_str::<T>(text)
            .map(|t| t.retry)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn backoff_doubles_up_to_max() {
        let p = RetryPolicy::exponential(10, Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(p.delay(1, None, 1.0), Duration::from_secs(1));
        assert_eq!(p.delay(2, None, 1.0), Duration::from_secs(2));
        assert_eq!(p.delay(4, None, 1.0), Duration::from_secs(8));
        assert_eq!(p.delay(30, None, 1.0), Duration::from_secs(60));
        // Jitter stays within [half, full] and never below `initial`.
        assert_eq!(p.delay(4, None, 0.0), Duration::from_secs(4));
        assert_eq!(p.delay(1, None, 0.0), Duration::from_secs(1));
    }

    #[test]
    fn the_default_schedule_spans_more_than_a_day() {
        let p = RetryPolicy::default();
        assert_eq!(p.attempts(), 8);
        assert_eq!(
            p.time_to_dead_letter(),
            Duration::from_secs(5 + 300 + 1800 + 7200 + 18_000 + 36_000 + 36_000)
        );
        assert!(p.time_to_dead_letter() > Duration::from_secs(24 * 3600));
        assert_eq!(p.delay(1, None, 0.5), Duration::from_secs(5));
        assert_eq!(p.delay(2, None, 0.0), Duration::from_secs(270));
        assert_eq!(p.delay(2, None, 1.0), Duration::from_secs(330));
        assert_eq!(p.delay(7, None, 0.5), Duration::from_secs(36_000));
        assert!(p.allows_another(7));
        assert!(!p.allows_another(8));
        assert_eq!(p.describe(), "8 attempts over 1day 3h 35m 5s (schedule)");
    }

    #[test]
    fn tables_choose_a_form_and_unset_means_the_default() {
        let s = parse(r#"retry = { schedule = ["1s", "1m"] }"#).expect("schedule");
        assert_eq!(s.attempts(), 3);
        assert_eq!(s.time_to_dead_letter(), Duration::from_secs(61));
        let e = parse("retry = { attempts = 3 }").expect("exponential");
        assert_eq!(
            e,
            RetryPolicy::exponential(3, Duration::from_secs(1), Duration::from_secs(300))
        );
        assert_eq!(parse("retry = {}").expect("empty"), RetryPolicy::default());
        assert_eq!(
            parse("retry = { schedule = [] }").expect("none").attempts(),
            1
        );
        let both = parse(r#"retry = { schedule = ["1s"], attempts = 2 }"#).expect_err("both forms");
        assert!(both.contains("either `schedule`"), "{both}");
        assert!(parse(r#"retry = { schedule = ["soon"] }"#).is_err());
        assert!(
            parse(r#"retry = { schedule = ["0s"] }"#)
                .expect("parses")
                .validate()
                .is_err()
        );
    }

    #[test]
    fn retry_after_is_honoured_but_bounded() {
        let p = RetryPolicy::exponential(8, Duration::from_secs(1), Duration::from_secs(300));
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(30)), 1.0),
            Duration::from_secs(30)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(86_400)), 1.0),
            MAX_RETRY_AFTER
        );
    }

    #[test]
    fn attempts_count_the_first_try() {
        let p = RetryPolicy::exponential(3, Duration::from_secs(1), Duration::from_secs(300));
        assert!(p.allows_another(1));
        assert!(p.allows_another(2));
        assert!(!p.allows_another(3));
        assert!(
            RetryPolicy::exponential(0, Duration::from_secs(1), Duration::from_secs(1))
                .validate()
                .is_err()
        );
        let backwards =
            RetryPolicy::exponential(3, Duration::from_secs(10), Duration::from_secs(1));
        assert!(backwards.validate().is_err());
    }
}
