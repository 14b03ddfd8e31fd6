//! Plugin-named counters: what plugins count through the `increment` import.
//!
//! `increment` counts into `hookline_wasm_plugin_counter_total` (`metrics.rs`) and keeps
//! the totals here; [`counters`] is the read side (tests). Names are
//! the plugin's (never payload values): at most [`MAX_NAMES`] per plugin, each at most
//! [`MAX_NAME_LEN`] characters of `[a-z0-9_]`; anything else is ignored with a warning, so a
//! plugin cannot blow up the metrics' cardinality.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use tracing::warn;

pub(crate) const MAX_NAMES: usize = 32;
pub(crate) const MAX_NAME_LEN: usize = 64;

type Counts = BTreeMap<(String, String), u64>;

fn counts() -> &'static Mutex<Counts> {
    static COUNTS: OnceLock<Mutex<Counts>> = OnceLock::new();
    COUNTS.get_or_init(Mutex::default)
}

/// Every counter so far: `(plugin, name, value)`, sorted.
#[cfg(test)]
pub(crate) fn counters() -> Vec<(String, String, u64)> {
    let counts = counts().lock().unwrap_or_else(|e| e.into_inner());
    counts
        .iter()
        .map(|((plugin, name), v)| (plugin.clone(), name.clone(), *v))
        .collect()
}

pub(super) fn increment(plugin: &str, name: &str, by: u64) {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !valid {
        warn!(
            plugin,
            "ignored a counter with an invalid name (want [a-z0-9_], 1-64 chars)"
        );
        return;
    }
    let mut counts = counts().lock().unwrap_or_else(|e| e.into_inner());
    let key = (plugin.to_string(), name.to_string());
    if let Some(v) = counts.get_mut(&key) {
        *v = v.saturating_add(by);
        crate::metrics::wasm_plugin_counter(plugin, name, by);
        return;
    }
    if counts.keys().filter(|(p, _)| p == plugin).count() >= MAX_NAMES {
        warn!(
            plugin,
            counter = name,
            "ignored a counter: the plugin already has {MAX_NAMES}"
        );
        return;
    }
    counts.insert(key, by);
    crate::metrics::wasm_plugin_counter(plugin, name, by);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_plugin_and_rejects_bad_names() {
        increment("counters-test", "seen", 2);
        increment("counters-test", "seen", 3);
        increment("counters-test", "Bad Name", 1);
        for i in 0..40 {
            increment("counters-test-many", &format!("c{i}"), 1);
        }
        let all = counters();
        assert!(all.contains(&("counters-test".into(), "seen".into(), 5)));
        assert!(!all.iter().any(|(_, n, _)| n == "Bad Name"));
        let many = all
            .iter()
            .filter(|(p, _, _)| p == "counters-test-many")
            .count();
        assert_eq!(many, MAX_NAMES);
    }
}
