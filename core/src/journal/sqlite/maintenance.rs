//! Keeping the file small: pruning finished events and delivery rows past retention, and
//! forgetting deduplication keys whose window closed.

use jiff::Timestamp;
use rusqlite::{Connection, params};

use super::rows::ms;
use crate::journal::JournalError;

/// Where the last batch of [`prune_events`] stopped: `(received_at, rowid)`, in the order
/// of the `events_received` index.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PruneCursor(i64, i64);

/// Delete up to `batch` events that are past retention and finished, after `after`: events
/// whose every delivery finished (delivered, dropped, replayed elsewhere), whose first runs
/// are all below the watermark, and whose deduplication window closed. The newest event
/// always stays: rowids must keep growing past the watermark. Returns how many were
/// deleted and where to go on from; each batch starts where the last stopped, so rows kept
/// back (a dead letter's event) are not scanned again.
pub(crate) fn prune_events(
    c: &Connection,
    before: Timestamp,
    now: Timestamp,
    after: PruneCursor,
    batch: usize,
) -> Result<(usize, Option<PruneCursor>), JournalError> {
    let candidates: Vec<(i64, i64, String)> = c
        .prepare_cached(
            "SELECT received_at, rowid, id FROM events
             WHERE received_at < ?1 AND (received_at, rowid) > (?3, ?4)
               AND rowid < (SELECT done_below FROM progress WHERE id = 1)
               AND rowid < (SELECT MAX(rowid) FROM events)
               AND (dedupe_until IS NULL OR dedupe_until <= ?2)
               AND NOT EXISTS (
                 SELECT 1 FROM deliveries d WHERE d.event_id = events.id AND d.state IN ('pending', 'dead'))
             ORDER BY received_at, rowid LIMIT ?5",
        )?
        .query_map(
            params![ms(before), ms(now), after.0, after.1, batch as i64],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?
        .collect::<Result<_, _>>()?;
    let mut delete = c.prepare_cached("DELETE FROM events WHERE rowid = ?1")?;
    // The event's history goes with it.
    let mut forget = c.prepare_cached("DELETE FROM attempts WHERE event_id = ?1")?;
    let mut forget_runs = c.prepare_cached("DELETE FROM attempt_runs WHERE event_id = ?1")?;
    for (_, rowid, id) in &candidates {
        delete.execute(params![rowid])?;
        forget.execute(params![id])?;
        forget_runs.execute(params![id])?;
    }
    Ok((
        candidates.len(),
        candidates
            .last()
            .map(|(at, rowid, _)| PruneCursor(*at, *rowid)),
    ))
}

/// Delete up to `batch` finished delivery rows (delivered, replayed) past retention whose
/// event is gone, with ids above `after`. Returns how many and the last id looked at.
pub(crate) fn prune_deliveries(
    c: &Connection,
    before: Timestamp,
    after: i64,
    batch: usize,
) -> Result<(usize, i64), JournalError> {
    let ids: Vec<i64> = c
        .prepare_cached(
            "SELECT id FROM deliveries WHERE id > ?2 AND state IN ('done', 'replayed') AND updated_at < ?1
               AND NOT EXISTS (SELECT 1 FROM events e WHERE e.id = deliveries.event_id)
             ORDER BY id LIMIT ?3",
        )?
        .query_map(params![ms(before), after, batch as i64], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut delete = c.prepare_cached("DELETE FROM deliveries WHERE id = ?1")?;
    for id in &ids {
        delete.execute(params![id])?;
    }
    Ok((ids.len(), ids.last().copied().unwrap_or(after)))
}

/// The lowest event rowid whose deduplication key is still inside its window, or one past
/// the newest event when none is: every key below it can be forgotten.
pub(crate) fn live_dedupe_from(c: &Connection, now: Timestamp) -> Result<i64, JournalError> {
    let (live, high): (Option<i64>, i64) = c.query_row(
        "SELECT (SELECT MIN(rowid) FROM events WHERE dedupe_hash IS NOT NULL AND dedupe_until > ?1),
                (SELECT COALESCE(MAX(rowid), 0) FROM events)",
        params![ms(now)],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(live.unwrap_or(high + 1))
}
