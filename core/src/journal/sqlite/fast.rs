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

/// Virtual deliveries in flight. A batch's changes are noted as they are made (`begin`),
/// so that a failed commit puts back only what the batch changed (`rollback`): the cost of
/// a batch grows with what it does, not with how many first runs are in flight.
#[derive(Debug, Default)]
pub(crate) struct FastPath {
    outstanding: BTreeMap<i64, Outstanding>,
    /// Highest event rowid inserted.
    high: i64,
    /// `progress.done_below` as last written.
    persisted: i64,
    /// Virtual ids that were given a row while running: virtual id → row id.
    materialised: HashMap<i64, i64>,
    /// `high` and `persisted` when the open batch began; `None` outside a batch.
    batch: Option<(i64, i64)>,
    /// The open batch's changes, newest last (kept empty, with its capacity, between
    /// batches).
    changes: Vec<Change>,
}

/// One change to the fast path, with what it takes to reverse it.
#[derive(Debug)]
enum Change {
    /// `register` added this entry.
    Registered(i64),
    /// `complete` took `index` out of the entry (removed once empty; `since` as it was).
    Completed {
        rowid: i64,
        index: u16,
        since: Instant,
    },
    /// `materialise` removed this entry (if there was one) and gave these virtual ids rows.
    Materialised {
        rowid: i64,
        entry: Option<Outstanding>,
        ids: Vec<i64>,
    },
    /// `forget` dropped this virtual id's row mapping.
    Forgot { id: i64, row: i64 },
}

impl FastPath {
    /// After a start: nothing in flight, every event up to `high` done.
    pub(crate) fn after(high: i64) -> Self {
        FastPath {
            high,
            persisted: high + 1,
            ..FastPath::default()
        }
    }

    /// Start noting changes: a batch begins.
    pub(crate) fn begin(&mut self) {
        self.changes.clear();
        self.batch = Some((self.high, self.persisted));
    }

    /// The batch committed: keep its changes.
    pub(crate) fn commit(&mut self) {
        self.changes.clear();
        self.batch = None;
    }

    /// The batch's commit failed: put back everything it changed, newest first.
    pub(crate) fn rollback(&mut self) {
        let Some((high, persisted)) = self.batch.take() else {
            return;
        };
        let mut changes = std::mem::take(&mut self.changes);
        for change in changes.drain(..).rev() {
            match change {
                Change::Registered(rowid) => {
                    self.outstanding.remove(&rowid);
                }
                Change::Completed {
                    rowid,
                    index,
                    since,
                } => {
                    let remaining = &mut self
                        .outstanding
                        .entry(rowid)
                        .or_insert_with(|| Outstanding {
                            remaining: Vec::new(),
                            since,
                        })
                        .remaining;
                    let at = remaining.binary_search(&index).unwrap_or_else(|at| at);
                    remaining.insert(at, index);
                }
                Change::Materialised { rowid, entry, ids } => {
                    for id in ids {
                        self.materialised.remove(&id);
                    }
                    if let Some(entry) = entry {
                        self.outstanding.insert(rowid, entry);
                    }
                }
                Change::Forgot { id, row } => {
                    self.materialised.insert(id, row);
                }
            }
        }
        self.high = high;
        self.persisted = persisted;
        self.changes = changes;
    }

    fn note(&mut self, change: Change) {
        if self.batch.is_some() {
            self.changes.push(change);
        }
    }

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
            self.note(Change::Registered(rowid));
        }
    }

    /// The first run of `(rowid, index)` settled. False if it was not in flight.
    pub(crate) fn complete(&mut self, rowid: i64, index: usize) -> bool {
        let Some(entry) = self.outstanding.get_mut(&rowid) else {
            return false;
        };
        let Some(at) = entry
            .remaining
            .iter()
            .position(|&i| usize::from(i) == index)
        else {
            return false;
        };
        let taken = entry.remaining.remove(at);
        let since = entry.since;
        if entry.remaining.is_empty() {
            self.outstanding.remove(&rowid);
        }
        self.note(Change::Completed {
            rowid,
            index: taken,
            since,
        });
        true
    }

    /// The first runs still in flight of the event at `rowid` were given rows (`made`:
    /// virtual id → row id); the event no longer holds the watermark.
    pub(crate) fn materialise(&mut self, rowid: i64, made: &[(i64, i64)]) {
        self.materialised.extend(made.iter().copied());
        let entry = self.outstanding.remove(&rowid);
        if self.batch.is_some() {
            self.note(Change::Materialised {
                rowid,
                entry,
                ids: made.iter().map(|(id, _)| *id).collect(),
            });
        }
    }

    /// The row a virtual id was given while it ran, if it was.
    pub(crate) fn row_of(&self, id: i64) -> Option<i64> {
        self.materialised.get(&id).copied()
    }

    /// A materialised first run settled: forget its row.
    pub(crate) fn forget(&mut self, id: i64) {
        if let Some(row) = self.materialised.remove(&id) {
            self.note(Change::Forgot { id, row });
        }
    }

    /// Whether the event at `rowid` has a first run in flight.
    pub(crate) fn holds(&self, rowid: i64) -> bool {
        self.outstanding.contains_key(&rowid)
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

    /// The watermark to write, if it moved past the one last written.
    pub(crate) fn unwritten_watermark(&self) -> Option<i64> {
        let mark = self.watermark();
        (mark > self.persisted).then_some(mark)
    }

    /// `progress.done_below` now holds `mark`.
    pub(crate) fn written(&mut self, mark: i64) {
        self.persisted = mark;
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

    type State = (Vec<(i64, Vec<u16>, Instant)>, i64, i64, Vec<(i64, i64)>);

    fn state(f: &FastPath) -> State {
        let mut materialised: Vec<_> = f.materialised.iter().map(|(a, b)| (*a, *b)).collect();
        materialised.sort_unstable();
        (
            f.outstanding
                .iter()
                .map(|(r, o)| (*r, o.remaining.clone(), o.since))
                .collect(),
            f.high,
            f.persisted,
            materialised,
        )
    }

    #[test]
    fn a_failed_batch_puts_back_exactly_what_it_changed() {
        let mut f = FastPath::after(0);
        f.register(1, 3);
        f.register(2, 1);
        assert!(f.complete(1, 1));
        f.materialise(2, &[(virtual_id(2, 0), 100)]);
        let before = state(&f);

        f.begin();
        f.register(3, 2);
        assert!(f.complete(1, 0));
        assert!(f.complete(1, 2), "the last run of event 1: its entry goes");
        assert!(!f.holds(1));
        f.forget(virtual_id(2, 0));
        f.materialise(3, &[(virtual_id(3, 0), 101), (virtual_id(3, 1), 102)]);
        f.materialise(9, &[(virtual_id(9, 0), 103)]);
        let mark = f.unwritten_watermark().expect("moved");
        f.written(mark);
        assert_ne!(state(&f), before);
        f.rollback();
        assert_eq!(state(&f), before, "as it was, `since` and order included");

        // A committed batch keeps its changes, and a later failed one does not touch them.
        f.begin();
        f.register(4, 1);
        f.commit();
        f.begin();
        assert!(f.complete(4, 0));
        f.rollback();
        assert!(f.holds(4));
        // Outside a batch nothing is noted (a start, a shutdown's last advance).
        f.register(5, 1);
        assert!(f.changes.is_empty());
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
