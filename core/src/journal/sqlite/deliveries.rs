//! Running deliveries: claiming what is due, loading what was just accepted, deferring
//! what this process has no room for, and settling how a run ended.

use std::collections::HashMap;
use std::sync::Arc;

use hookline_plugin_api::Event;
use jiff::Timestamp;
use rusqlite::{Connection, Row, params};

use super::Ctx;
use super::dead::insert_dead_letter;
use super::events::routed;
use super::fast;
use super::rows::{NewDelivery, event_from_row, from_json, insert_delivery, ms, to_json, ts};
use crate::journal::{
    Continuation, Delivery, DeliveryState, Hold, JournalError, NewDeadLetter, Release, Settlement,
};

pub(crate) fn count_pending(c: &Connection) -> rusqlite::Result<u64> {
    c.query_row(
        "SELECT COUNT(*) FROM deliveries WHERE state = 'pending'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n.max(0) as u64)
}

const DELIVERY_COLUMNS: &str =
    "d.id, d.pipeline, d.stage, d.attempts, d.first_failed_at, d.snapshot,
     e.id, e.source, e.type, e.received_at, e.headers, e.payload, d.stage_name";

/// A claimed row as a delivery. Rows on the stored event (no snapshot) share one copy of
/// it through `stored`: the first runs of an event's pipelines, deferred together, are
/// decoded once and run together (`runtime/worker.rs`, `by_event`).
fn delivery_from_row(
    r: &Row<'_>,
    stored: &mut HashMap<String, Arc<Event>>,
) -> Result<Delivery, JournalError> {
    let snapshot: Option<String> = r.get(5)?;
    let event = match snapshot {
        Some(s) => Arc::new(from_json::<Event>(&s)?),
        None => {
            // A LEFT JOIN: no event row, no columns.
            let Some(id) = r.get::<_, Option<String>>(6)? else {
                return Err(JournalError::Corrupt(
                    "delivery has neither snapshot nor event".into(),
                ));
            };
            match stored.get(&id) {
                Some(e) => Arc::clone(e),
                None => {
                    let e = Arc::new(event_from_row(r, 6)?);
                    stored.insert(id, Arc::clone(&e));
                    e
                }
            }
        }
    };
    Ok(Delivery {
        id: r.get(0)?,
        pipeline: r.get(1)?,
        stage: r.get::<_, i64>(2)?.max(0) as usize,
        stage_name: r.get(12)?,
        attempts: r.get::<_, i64>(3)?.max(0) as u32,
        first_failed_at: r.get::<_, Option<i64>>(4)?.map(ts),
        event,
    })
}

pub(crate) fn claim_due(
    c: &Connection,
    now: Timestamp,
    limit: usize,
    boot: &str,
) -> Result<Vec<Delivery>, JournalError> {
    // Held deliveries are not in the due index at all. An ordered delivery waits while an
    // earlier pending delivery with its key (accepted earlier, or an earlier branch of the
    // same event) exists: running, retrying or held.
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries d LEFT JOIN events e ON e.id = d.event_id
         WHERE d.state = 'pending' AND d.held IS NULL AND d.next_attempt_at <= ?1
           AND (d.claimed_by IS NULL OR d.claimed_by != ?2)
           AND (d.order_key IS NULL OR NOT EXISTS (
             SELECT 1 FROM deliveries o JOIN events oe ON oe.id = o.event_id
             WHERE o.state = 'pending' AND o.order_key IS NOT NULL
               AND o.pipeline = d.pipeline AND o.order_key = d.order_key
               AND (oe.rowid < e.rowid OR (oe.rowid = e.rowid AND o.id < d.id))))
         ORDER BY d.next_attempt_at LIMIT ?3"
    );
    let mut stmt = c.prepare_cached(&sql)?;
    let mut rows = stmt.query(params![ms(now), boot, limit as i64])?;
    let mut out = Vec::new();
    let mut unreadable = Vec::new();
    let mut stored = HashMap::new();
    while let Some(row) = rows.next()? {
        match delivery_from_row(row, &mut stored) {
            Ok(d) => out.push(d),
            // One row that cannot be read back must not stop every other due delivery.
            Err(JournalError::Corrupt(why)) => unreadable.push((row.get::<_, i64>(0)?, why)),
            Err(e) => return Err(e),
        }
    }
    for (id, why) in unreadable {
        dead_letter_unreadable(c, id, &why, now)?;
    }
    let mut claim = c.prepare_cached("UPDATE deliveries SET claimed_by = ?2 WHERE id = ?1")?;
    for d in &out {
        claim.execute(params![d.id, boot])?;
    }
    Ok(out)
}

/// A due delivery whose stored event cannot be read back: dead-lettered with the stored
/// text as its raw body and the reason, so an operator sees it, instead of failing every
/// claim it is part of.
fn dead_letter_unreadable(
    c: &Connection,
    id: i64,
    why: &str,
    now: Timestamp,
) -> Result<(), JournalError> {
    let (event_id, pipeline, stage, attempts, first_failed_at, text, source) = c
        .prepare_cached(
            "SELECT d.event_id, d.pipeline, d.stage, d.attempts, d.first_failed_at,
                    COALESCE(d.snapshot, e.payload), e.source
             FROM deliveries d LEFT JOIN events e ON e.id = d.event_id WHERE d.id = ?1",
        )?
        .query_row(params![id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, Option<String>>(6)?,
            ))
        })?;
    let error = format!("the stored event could not be read back: {why}");
    tracing::error!(delivery = id, event_id = %event_id, pipeline = %pipeline, %error, "dead-lettered a delivery");
    let letter = NewDeadLetter {
        event_id,
        source: source.unwrap_or_default(),
        pipeline: Some(pipeline),
        stage_index: Some(stage.max(0) as usize),
        stage_name: None,
        error,
        attempts: attempts.max(0) as u32,
        first_failed_at: first_failed_at.map_or(now, ts),
        last_failed_at: now,
        event: None,
        raw: text.map(String::into_bytes),
    };
    settle_row(c, id, &[Continuation::Dead(letter)])
}

/// Deliveries this process will not run now: each gets an unclaimed row (a first run) or
/// has its claim released (a row), so the poller picks it up when there is room.
pub(crate) fn defer(ctx: &mut Ctx, ids: &[i64]) -> Result<(), JournalError> {
    let c = &ctx.conn;
    let now = ms(Timestamp::now());
    let mut released = Vec::new();
    let mut made = Vec::new();
    let mut unclaim = c.prepare_cached("UPDATE deliveries SET claimed_by = NULL WHERE id = ?1")?;
    for &id in ids {
        if let Some(row) = ctx.fast.row_of(id) {
            unclaim.execute(params![row])?;
            released.push(id);
        } else if let Some((rowid, index)) = fast::split_virtual(id) {
            let (event_id, pipelines) = routed(c, rowid)?;
            let Some(pipeline) = pipelines.get(index) else {
                continue;
            };
            insert_delivery(c, NewDelivery::pending(&event_id, pipeline, now))?;
            made.push((rowid, index));
        } else {
            unclaim.execute(params![id])?;
        }
    }
    for id in released {
        ctx.fast.forget(id);
    }
    for (rowid, index) in made {
        ctx.fast.complete(rowid, index);
    }
    Ok(())
}

/// Record how runs ended. Their SQL first, then the fast path's bookkeeping, so that an
/// error (rolled back by the caller's savepoint) leaves `ctx.fast` as it was.
pub(crate) fn settle(ctx: &mut Ctx, runs: &[Settlement]) -> Result<(), JournalError> {
    let mut retired = Vec::with_capacity(runs.len());
    for run in runs {
        retired.push(settle_sql(ctx, run.delivery, &run.continuations)?);
    }
    for (run, retire) in runs.iter().zip(retired) {
        match retire {
            Retire::Materialised => ctx.fast.forget(run.delivery),
            Retire::Virtual(rowid, index) => {
                ctx.fast.complete(rowid, index);
            }
            Retire::Row => {}
        }
    }
    Ok(())
}

/// What a settled run leaves the fast path to do.
enum Retire {
    /// A first run that was given a row while it ran: forget the mapping.
    Materialised,
    /// A first run without a row: it is no longer in flight.
    Virtual(i64, usize),
    /// A delivery row: nothing.
    Row,
}

fn settle_sql(
    ctx: &Ctx,
    delivery: i64,
    continuations: &[Continuation],
) -> Result<Retire, JournalError> {
    if let Some(row) = ctx.fast.row_of(delivery) {
        settle_row(&ctx.conn, row, continuations)?;
        return Ok(Retire::Materialised);
    }
    let Some((rowid, index)) = fast::split_virtual(delivery) else {
        settle_row(&ctx.conn, delivery, continuations)?;
        return Ok(Retire::Row);
    };
    if !continuations.is_empty() {
        // The first run did not finish: from here on it is a delivery like any other.
        let c = &ctx.conn;
        let (event_id, pipelines) = routed(c, rowid)?;
        let Some(pipeline) = pipelines.get(index) else {
            return Err(JournalError::Corrupt(format!(
                "event {event_id} has no pipeline #{index}"
            )));
        };
        let now = ms(Timestamp::now());
        for cont in continuations {
            let id = insert_delivery(c, NewDelivery::pending(&event_id, pipeline, now))?;
            apply(c, id, cont, now)?;
        }
    }
    Ok(Retire::Virtual(rowid, index))
}

fn settle_row(
    c: &Connection,
    delivery: i64,
    continuations: &[Continuation],
) -> Result<(), JournalError> {
    let now = ms(Timestamp::now());
    let Some(first) = continuations.first() else {
        c.prepare_cached(
            "UPDATE deliveries SET state = ?3, claimed_by = NULL, updated_at = ?2 WHERE id = ?1",
        )?
        .execute(params![delivery, now, DeliveryState::Done])?;
        return Ok(());
    };
    let (event_id, pipeline, order_key): (String, String, Option<String>) = c.query_row(
        "SELECT event_id, pipeline, order_key FROM deliveries WHERE id = ?1",
        params![delivery],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    // The first branch updates the delivery in place; further branches of a split get rows
    // of their own, with its ordering key.
    apply(c, delivery, first, now)?;
    for more in &continuations[1..] {
        let id = insert_delivery(
            c,
            NewDelivery {
                order_key: order_key.as_deref(),
                ..NewDelivery::pending(&event_id, &pipeline, now)
            },
        )?;
        apply(c, id, more, now)?;
    }
    Ok(())
}

fn apply(c: &Connection, delivery: i64, cont: &Continuation, now: i64) -> Result<(), JournalError> {
    match cont {
        Continuation::Retry {
            stage,
            stage_name,
            event,
            attempts,
            next_attempt_at,
            error,
            first_failed_at,
            held,
        } => {
            // A held delivery is due as soon as it is released.
            let due = if held.is_some() {
                now
            } else {
                ms(*next_attempt_at)
            };
            c.prepare_cached(
                "UPDATE deliveries SET state = ?9, stage = ?2, snapshot = ?3, attempts = ?4, next_attempt_at = ?5,
                 last_error = ?6, first_failed_at = ?7, claimed_by = NULL, updated_at = ?8, held = ?10,
                 stage_name = ?11 WHERE id = ?1",
            )?
            .execute(params![
                delivery,
                *stage as i64,
                to_json(event)?,
                *attempts as i64,
                due,
                error,
                ms(*first_failed_at),
                now,
                DeliveryState::Pending,
                held.map(Hold::as_str),
                stage_name
            ])?;
        }
        Continuation::Dead(letter) => {
            c.prepare_cached(
                "UPDATE deliveries SET state = ?6, stage = ?2, attempts = ?3, last_error = ?4, claimed_by = NULL,
                 updated_at = ?5, stage_name = ?7 WHERE id = ?1",
            )?
            .execute(params![
                delivery,
                letter.stage_index.unwrap_or(0) as i64,
                letter.attempts as i64,
                letter.error,
                now,
                DeliveryState::Dead,
                letter.stage_name
            ])?;
            insert_dead_letter(c, Some(delivery), letter)?;
        }
    }
    Ok(())
}

/// Let held deliveries go: due now. Returns how many.
pub(crate) fn release(c: &Connection, r: &Release) -> Result<u64, JournalError> {
    let now = ms(Timestamp::now());
    let n = c
        .prepare_cached(
            "UPDATE deliveries SET held = NULL, next_attempt_at = MIN(next_attempt_at, ?1)
             WHERE id IN (SELECT id FROM deliveries WHERE held = ?2
               AND (?3 IS NULL OR pipeline = ?3) AND (?4 IS NULL OR stage = ?4)
               ORDER BY next_attempt_at, id LIMIT ?5)",
        )?
        .execute(params![
            now,
            r.hold.as_str(),
            r.pipeline,
            r.stage.map(|s| s as i64),
            r.limit.map_or(-1, i64::from)
        ])?;
    Ok(n as u64)
}

/// Pause (`true`) or resume a pipeline: the `paused` row, and its pending deliveries held or
/// released. Returns whether the state changed.
pub(crate) fn set_paused(
    c: &Connection,
    pipeline: &str,
    paused: bool,
) -> Result<bool, JournalError> {
    let now = ms(Timestamp::now());
    if paused {
        let changed = c
            .prepare_cached("INSERT OR IGNORE INTO paused (pipeline, paused_at) VALUES (?1, ?2)")?
            .execute(params![pipeline, now])?;
        // Runs in flight finish (their outcome clears the mark; the worker holds what they
        // leave); the rest wait. A delivery held by its circuit stays so.
        c.prepare_cached(
            "UPDATE deliveries SET held = ?2 WHERE state = 'pending' AND pipeline = ?1 AND held IS NULL",
        )?
        .execute(params![pipeline, Hold::Paused.as_str()])?;
        Ok(changed > 0)
    } else {
        let changed = c
            .prepare_cached("DELETE FROM paused WHERE pipeline = ?1")?
            .execute(params![pipeline])?;
        release(
            c,
            &Release {
                hold: Hold::Paused,
                pipeline: Some(pipeline.to_string()),
                stage: None,
                limit: None,
            },
        )?;
        Ok(changed > 0)
    }
}

pub(crate) fn paused(c: &Connection) -> Result<Vec<String>, JournalError> {
    let mut stmt = c.prepare_cached("SELECT pipeline FROM paused ORDER BY pipeline")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}
