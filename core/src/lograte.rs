//! Log lines that a sender can cause at will — a flood of bad signatures, pings, 503s while
//! the disk is full, scrapes of `/readyz` during an outage — are rate-limited: at most one
//! line per kind per [`INTERVAL`], which says how many like it were held back. The metrics
//! count every one.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// At most one line per kind in this time.
pub(crate) const INTERVAL: Duration = Duration::from_secs(10);
/// Kinds tracked at most (kinds come from the config: source × closed reason sets).
const MAX_KINDS: usize = 4096;

static LAST: LazyLock<Mutex<HashMap<String, (Instant, u64)>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Whether a line of this kind may be written now: `Some(n)` with the number of lines held
/// back since the last one, or `None` (counted, to be reported with the next line).
pub(crate) fn allow(kind: &str) -> Option<u64> {
    allow_at(kind, Instant::now())
}

fn allow_at(kind: &str, now: Instant) -> Option<u64> {
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    match last.get_mut(kind) {
        Some((at, held)) if now.duration_since(*at) < INTERVAL => {
            *held += 1;
            None
        }
        Some((at, held)) => {
            *at = now;
            Some(std::mem::take(held))
        }
        None => {
            if last.len() >= MAX_KINDS {
                last.clear();
            }
            last.insert(kind.to_string(), (now, 0));
            Some(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_kind_per_interval_with_the_count_held_back() {
        let t0 = Instant::now();
        assert_eq!(allow_at("test-a", t0), Some(0));
        for i in 1..=999 {
            assert_eq!(allow_at("test-a", t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(allow_at("test-b", t0), Some(0), "kinds are separate");
        assert_eq!(allow_at("test-a", t0 + INTERVAL), Some(999));
        assert_eq!(
            allow_at("test-a", t0 + INTERVAL + Duration::from_secs(1)),
            None
        );
    }
}
