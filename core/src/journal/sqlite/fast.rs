//! The fast path's bookkeeping, owned by the writer thread.
//!
//! An accepted event's first run through each pipeline is a *virtual* delivery: no
//! `deliveries` row, only an entry here. It finishes in one of three ways:
//! - delivered or dropped: the entry goes, and no delivery row is written for it (only its
//!   attempt, to the event's history);
//! - retry or dead letter: the settle writes a `deliveries` row (and a dead letter) as for
//!   any delivery, in the same transaction that retires the entry;
//! - still running after [`MATERIALISE_AFTER`]: the writer gives it a row (claimed by this
//!   process) so that it stops holding back the watermark; its settle then updates that row.
//!
//! The watermark (`progress.done_below`) is the lowest rowid that may still have a virtual
//! delivery in flight, written with every batch it moves in. A start materialises rows for
//! every event at or above it whose pipelines have none, so a crash loses nothing: what ran
//! after the watermark runs again (at-least-once), at most about [`MATERIALISE_AFTER`] worth
//! of events beyond the ones in flight.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// How long a first run may hold the watermark before it gets a row of its own.
pub(crate) const MATERIALISE_AFTER: Duration = Duration::from_millis(250);

/// Pipelines per event that the virtual id can carry; more take the row path.
pub(crate) const MAX_PIPELINES: usize = 1 << 16;

/// A virtual delivery's id: negative, so it never meets a row id.
pub(crate) fn virtual_id(rowid: i64, index: usize) -> i64 {
    -((rowid << 16) | index as i64) - 1
}

/// `(event rowid, pipeline index)` of a virtual id; `None` for a row id.
pub(crate) fn split_virtual(id: i64) -> Option<(i64, usize)> {
    (id < 0).then(|| {
        let v = -(id + 1);
        (v >> 16, (v & 0xFFFF) as usize)
    })
}

#[derive(Debug, Clone)]
pub(crate) struct Outstanding {
    /// Pipeline indexes whose first run has not settled.
    pub(crate) remaining: Vec<u16>,
    pub(crate) since: Instant,
}

/// Virtual deliveries in flight. Cloned at the start of each batch so a failed commit can
/// put it back as it was.
#[derive(Debug, Clone, Default)]
pub(crate) struct FastPath {
    pub(crate) outstanding: BTreeMap<i64, Outstanding>,
    /// Highest event rowid inserted.
    pub(crate) high: i64,
    /// `progress.done_below` as last written.
    pub(crate) persisted: i64,
    /// Virtual ids that were given a row while running: virtual id → row id.
    pub(crate) materialised: HashMap<i64, i64>,
}

impl FastPath {
    pub(crate) fn register(&mut self, rowid: i64, pipelines: usize) {
        self.high = self.high.max(rowid);
        if pipelines > 0 {
            self.outstanding.insert(
                rowid,
                Outstanding {
                    remaining: (0..pipelines.min(MAX_PIPELINES) as u32)
                        .map(|i| i as u16)
                        .collect(),
                    since: Instant::now(),
                },
            );
        }
    }

    /// The first run of `(rowid, index)` settled. False if it was not in flight.
    pub(crate) fn complete(&mut self, rowid: i64, index: usize) -> bool {
        let Some(entry) = self.outstanding.get_mut(&rowid) else {
            return false;
        };
        let before = entry.remaining.len();
        entry.remaining.retain(|&i| usize::from(i) != index);
        let found = entry.remaining.len() < before;
        if entry.remaining.is_empty() {
            self.outstanding.remove(&rowid);
        }
        found
    }

    /// First runs still in flight.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> u64 {
        self.outstanding
            .values()
            .map(|o| o.remaining.len() as u64)
            .sum()
    }

    /// The lowest rowid that may still have a first run in flight.
    pub(crate) fn watermark(&self) -> i64 {
        self.outstanding
            .keys()
            .next()
            .copied()
            .unwrap_or(self.high + 1)
    }

    /// Entries that have held the watermark for longer than [`MATERIALISE_AFTER`].
    pub(crate) fn overdue(&self, now: Instant) -> Vec<(i64, Vec<u16>)> {
        self.outstanding
            .iter()
            .take_while(|(_, o)| now.duration_since(o.since) >= MATERIALISE_AFTER)
            .map(|(rowid, o)| (*rowid, o.remaining.clone()))
            .collect()
    }
}

/// Deduplication keys inside their window: a hash of (source, key) → the event's rowid,
/// 16 bytes a key. A hit is confirmed against the event row (key and window), so a hash
/// collision, a rolled-back insert or an expired key is never taken for a duplicate; a
/// collision only overwrites the older entry (that key may then be processed twice, which
/// at-least-once allows).
#[derive(Debug, Default)]
pub(crate) struct Dedupe {
    keys: HashMap<i64, i64>,
}

/// A dedupe key's hash, stored with the event (`dedupe_hash`) so a start reloads the map
/// from an index of integers: the first 8 bytes of SHA-256(source, 0, key).
pub(crate) fn key_hash(source: &str, key: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(source.as_bytes())
        .chain_update([0u8])
        .chain_update(key.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

impl Dedupe {
    /// The event rowid that may hold this key.
    pub(crate) fn get(&self, hash: i64) -> Option<i64> {
        self.keys.get(&hash).copied()
    }

    pub(crate) fn insert(&mut self, hash: i64, rowid: i64) {
        self.keys.insert(hash, rowid);
    }

    /// Forget keys of events below `rowid` (every key still inside its window is at or
    /// above it).
    pub(crate) fn expire_below(&mut self, rowid: i64) {
        self.keys.retain(|_, r| *r >= rowid);
        self.keys.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_ids_round_trip_and_never_meet_row_ids() {
        for (rowid, index) in [(1, 0), (1, 1), (123_456_789, 65_535), (1 << 40, 7)] {
            let id = virtual_id(rowid, index);
            assert!(id < 0);
            assert_eq!(split_virtual(id), Some((rowid, index)));
        }
        assert_eq!(split_virtual(0), None);
        assert_eq!(split_virtual(42), None);
    }

    #[test]
    fn watermark_waits_for_the_oldest_run() {
        let mut f = FastPath::default();
        f.register(1, 2);
        f.register(2, 1);
        f.register(3, 0);
        assert_eq!(f.watermark(), 1);
        assert!(f.complete(2, 0));
        assert_eq!(f.watermark(), 1, "event 1 still has runs in flight");
        assert!(f.complete(1, 1));
        assert!(!f.complete(1, 1), "settled once only");
        assert_eq!(f.in_flight(), 1);
        assert!(f.complete(1, 0));
        assert_eq!(f.watermark(), 4, "nothing in flight: past the highest row");
    }
}
