//! Wall-clock arithmetic with configured durations. A duration in `pipeline.toml` may be
//! as long as an operator writes it ("20000y" parses); adding it to a timestamp must not
//! panic in a request or a run, so these saturate at the earliest and latest times there
//! are instead.

use std::time::Duration;

use jiff::Timestamp;

/// `t` plus `d`, or the latest time there is.
pub(crate) fn later(t: Timestamp, d: Duration) -> Timestamp {
    t.saturating_add(d).unwrap_or(Timestamp::MAX)
}

/// `t` minus `d`, or the earliest time there is.
pub(crate) fn earlier(t: Timestamp, d: Duration) -> Timestamp {
    t.saturating_sub(d).unwrap_or(Timestamp::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_of_any_length_saturate() {
        let years = Duration::from_secs(20_000 * 366 * 86_400);
        assert_eq!(later(Timestamp::now(), years), Timestamp::MAX);
        assert_eq!(earlier(Timestamp::now(), years), Timestamp::MIN);
        assert_eq!(later(Timestamp::now(), Duration::MAX), Timestamp::MAX);
        let t = Timestamp::UNIX_EPOCH;
        assert_eq!(later(t, Duration::from_secs(60)).as_second(), 60);
        assert_eq!(earlier(t, Duration::from_secs(60)).as_second(), -60);
    }
}
