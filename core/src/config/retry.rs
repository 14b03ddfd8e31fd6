//! A stage's retry policy: `retry = { attempts = 8, initial = "1s", max = "5m" }`.

use std::time::Duration;

use serde::Deserialize;

/// How often and how patiently a failing stage is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Tries in all, the first one included; after the last, the event is dead-lettered.
    #[serde(default = "default_attempts")]
    pub(crate) attempts: u32,
    /// Wait before the second try; each later wait doubles, up to `max`.
    #[serde(default = "default_initial", with = "humantime_serde")]
    pub(crate) initial: Duration,
    #[serde(default = "default_max", with = "humantime_serde")]
    pub(crate) max: Duration,
}

fn default_attempts() -> u32 {
    8
}

fn default_initial() -> Duration {
    Duration::from_secs(1)
}

fn default_max() -> Duration {
    Duration::from_secs(300)
}

/// The most a peer's `Retry-After` can push a retry out.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: default_attempts(),
            initial: default_initial(),
            max: default_max(),
        }
    }
}

impl RetryPolicy {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.attempts == 0 {
            return Err("`attempts` must be at least 1 (1 means no retries)".into());
        }
        if self.initial > self.max {
            return Err(format!(
                "`initial` ({}) is longer than `max` ({})",
                humantime::format_duration(self.initial),
                humantime::format_duration(self.max)
            ));
        }
        Ok(())
    }

    /// Whether a try that failed as attempt number `attempts` gets another one.
    pub(crate) fn allows_another(&self, attempts: u32) -> bool {
        attempts < self.attempts
    }

    /// Wait after failed attempt number `attempt` (1-based): exponential from `initial`,
    /// capped at `max`, with jitter over its upper half so retries from many events spread
    /// out; never shorter than a peer's `Retry-After`.
    pub(crate) fn delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Duration {
        let exp = attempt.saturating_sub(1).min(32);
        let base = self
            .initial
            .saturating_mul(1u32 << exp.min(31))
            .min(self.max);
        let jittered = base
            .mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
            .max(self.initial.min(base));
        match retry_after {
            Some(wait) => jittered.max(wait.min(MAX_RETRY_AFTER)),
            None => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_max() {
        let p = RetryPolicy {
            attempts: 10,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        };
        assert_eq!(p.delay(1, None, 1.0), Duration::from_secs(1));
        assert_eq!(p.delay(2, None, 1.0), Duration::from_secs(2));
        assert_eq!(p.delay(4, None, 1.0), Duration::from_secs(8));
        assert_eq!(p.delay(30, None, 1.0), Duration::from_secs(60));
        // Jitter stays within [half, full] and never below `initial`.
        assert_eq!(p.delay(4, None, 0.0), Duration::from_secs(4));
        assert_eq!(p.delay(1, None, 0.0), Duration::from_secs(1));
    }

    #[test]
    fn retry_after_is_honoured_but_bounded() {
        let p = RetryPolicy::default();
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
        let p = RetryPolicy {
            attempts: 3,
            ..RetryPolicy::default()
        };
        assert!(p.allows_another(1));
        assert!(p.allows_another(2));
        assert!(!p.allows_another(3));
        assert!(RetryPolicy { attempts: 0, ..p }.validate().is_err());
        let backwards = RetryPolicy {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(1),
            ..p
        };
        assert!(backwards.validate().is_err());
    }
}
