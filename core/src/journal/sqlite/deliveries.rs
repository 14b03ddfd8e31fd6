//! Running deliveries: claiming what is due, loading what was just accepted, deferring
//! what this process has no room for, and settling how a run ended.

use hookline_plugin_api::Event;
use jiff::Timestamp;
use rusqlite::{Connection, Row, params};

use super::Ctx;
use super::dead::insert_dead_letter;
use super::events::routed;
use super::fast;
use super::rows::{NewDelivery, event_from_row, from_json, insert_delivery, ms, to_json, ts};
use crate::journal::{Continuation, Delivery, DeliveryState, JournalError};

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
     e.id, e.source, e.type, e.received_at, e.headers, e.payload";

fn delivery_from_row(r: &Row<'_>) -> Result<Delivery, JournalError> {
    let snapshot: Option<String> = r.get(5)?;
    let event = match snapshot {
        Some(s) => from_json::<Event>(&s)?,
        None => {
            // A LEFT JOIN: no event row, no columns.
            if r.get::<_, Option<String>>(6)?.is_none() {
                return Err(JournalError::Corrupt(
                    "delivery has neither snapshot nor event".into(),
                ));
            }
            event_from_row(r, 6)?
        }
    };
    Ok(Delivery {
        id: r.get(0)?,
        pipeline: r.get(1)?,
        stage: r.get::<_, i64>(2)?.max(0) as usize,
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
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries d LEFT JOIN events e ON e.id = d.event_id
         WHERE d.state = 'pending' AND d.next_attempt_at <= ?1 AND (d.claimed_by IS NULL OR d.claimed_by != ?2)
         ORDER BY d.next_attempt_at LIMIT ?3"
    );
    let mut stmt = c.prepare_cached(&sql)?;
    let mut rows = stmt.query(params![ms(now), boot, limit as i64])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(delivery_from_row(row)?);
    }
    let mut claim = c.prepare_cached("UPDATE deliveries SET claimed_by = ?2 WHERE id = ?1")?;
    for d in &out {
        claim.execute(params![d.id, boot])?;
    }
    Ok(out)
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
        if let Some(&row) = ctx.fast.materialised.get(&id) {
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
        ctx.fast.materialised.remove(&id);
    }
    for (rowid, index) in made {
        ctx.fast.complete(rowid, index);
    }
    Ok(())
}

pub(crate) fn settle(
    ctx: &mut Ctx,
    delivery: i64,
    continuations: &[Continuation],
) -> Result<(), JournalError> {
    let delivery = match ctx.fast.materialised.get(&delivery) {
        Some(&row) => {
            settle_row(&ctx.conn, row, continuations)?;
            ctx.fast.materialised.remove(&delivery);
            return Ok(());
        }
        None => delivery,
    };
    let Some((rowid, index)) = fast::split_virtual(delivery) else {
        return settle_row(&ctx.conn, delivery, continuations);
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
    ctx.fast.complete(rowid, index);
    Ok(())
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
    let (event_id, pipeline): (String, String) = c.query_row(
        "SELECT event_id, pipeline FROM deliveries WHERE id = ?1",
        params![delivery],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    // The first branch updates the delivery in place; further branches of a split get rows of their own.
    apply(c, delivery, first, now)?;
    for more in &continuations[1..] {
        let id = insert_delivery(c, NewDelivery::pending(&event_id, &pipeline, now))?;
        apply(c, id, more, now)?;
    }
    Ok(())
}

fn apply(c: &Connection, delivery: i64, cont: &Continuation, now: i64) -> Result<(), JournalError> {
    match cont {
        Continuation::Retry {
            stage,
            event,
            attempts,
            next_attempt_at,
            error,
            first_failed_at,
        } => {
            c.prepare_cached(
                "UPDATE deliveries SET state = ?9, stage = ?2, snapshot = ?3, attempts = ?4, next_attempt_at = ?5,
                 last_error = ?6, first_failed_at = ?7, claimed_by = NULL, updated_at = ?8 WHERE id = ?1",
            )?
            .execute(params![
                delivery,
                *stage as i64,
                to_json(event)?,
                *attempts as i64,
                ms(*next_attempt_at),
                error,
                ms(*first_failed_at),
                now,
                DeliveryState::Pending
            ])?;
        }
        Continuation::Dead(letter) => {
            c.prepare_cached(
                "UPDATE deliveries SET state = ?6, stage = ?2, attempts = ?3, last_error = ?4, claimed_by = NULL,
                 updated_at = ?5 WHERE id = ?1",
            )?
            .execute(params![
                delivery,
                letter.stage_index.unwrap_or(0) as i64,
                letter.attempts as i64,
                letter.error,
                now,
                DeliveryState::Dead
            ])?;
            insert_dead_letter(c, Some(delivery), letter)?;
        }
    }
    Ok(())
}
