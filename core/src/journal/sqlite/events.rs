//! Accepting events: the event row, deduplication, the fast path's virtual first runs and
//! its watermark, and what a start recovers of them.

use hookline_plugin_api::Event;
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};

use super::Ctx;
use super::dedupe::{self, Dedupe};
use super::fast::{self, FastPath};
use super::rows::{NewDelivery, from_json, insert_delivery, ms, to_json};
use crate::journal::{Accepted, DeliveryRef, JournalError, NewEvent};

/// An event's JSON columns, encoded before the event reaches the writer thread.
pub(crate) struct Encoded {
    headers: String,
    payload: String,
}

impl Encoded {
    pub(crate) fn new(e: &Event) -> Result<Self, JournalError> {
        Ok(Encoded {
            headers: to_json(&e.headers)?,
            payload: to_json(&e.payload)?,
        })
    }
}

pub(crate) fn accept(
    ctx: &mut Ctx,
    new: &NewEvent,
    encoded: &Encoded,
    boot: &str,
) -> Result<Accepted, JournalError> {
    let c = &ctx.conn;
    let e = &new.event;
    let now = ms(e.received_at);
    let key = new
        .dedupe_key
        .as_ref()
        .map(|k| (k, dedupe::key_hash(&e.source, k)));
    if let Some((key, hash)) = &key {
        // Confirmed on the row: another key's slot or a rolled-back insert is no duplicate.
        for rowid in ctx.dedupe.candidates(*hash) {
            let first: Option<(String, bool)> = c
                .prepare_cached(
                    "SELECT id, dedupe_until > ?4 FROM events WHERE rowid = ?1 AND source = ?2 AND dedupe_key = ?3",
                )?
                .query_row(params![rowid, e.source, key, now], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            match first {
                Some((first_id, true)) => return Ok(Accepted::Duplicate { first_id }),
                // This key's earlier row, its window passed: the new row's slot replaces
                // its slot.
                Some((_, false)) => ctx.dedupe.forget(*hash, rowid),
                None => {}
            }
        }
    }
    // Ordered deliveries wait their turn in the journal: they always get rows.
    let fast_path = !new.pipelines.is_empty()
        && new.pipelines.len() <= fast::MAX_PIPELINES
        && new.order_keys.iter().all(Option::is_none);
    let pipelines = if fast_path {
        Some(to_json(&new.pipelines)?)
    } else {
        None
    };
    let (dedupe_key, dedupe_until, dedupe_hash) = match &key {
        Some((k, hash)) => (Some(k.as_str()), Some(ms(new.dedupe_until)), Some(*hash)),
        None => (None, None, None),
    };
    c.prepare_cached(
        "INSERT INTO events (id, source, type, received_at, headers, payload, pipelines, dedupe_key, dedupe_until, dedupe_hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        e.id,
        e.source,
        e.event_type,
        now,
        encoded.headers,
        encoded.payload,
        pipelines,
        dedupe_key,
        dedupe_until,
        dedupe_hash
    ])?;
    let rowid = c.last_insert_rowid();
    let mut deliveries = Vec::with_capacity(new.pipelines.len());
    let mut queued = 0;
    if fast_path {
        for (i, pipeline) in new.pipelines.iter().enumerate() {
            deliveries.push(DeliveryRef {
                id: fast::virtual_id(rowid, i),
                pipeline: pipeline.clone(),
            });
        }
    } else {
        for (i, pipeline) in new.pipelines.iter().enumerate() {
            let order_key = new.order_key(i);
            let id = insert_delivery(
                c,
                NewDelivery {
                    event_id: &e.id,
                    pipeline,
                    stage: 0,
                    stage_name: None,
                    next_attempt_at: now,
                    // An ordered delivery is the poller's: it may have to wait for an
                    // earlier one with its key.
                    claimed_by: order_key.is_none().then_some(boot),
                    snapshot: None,
                    updated_at: now,
                    order_key,
                },
            )?;
            if order_key.is_some() {
                queued += 1;
            } else {
                deliveries.push(DeliveryRef {
                    id,
                    pipeline: pipeline.clone(),
                });
            }
        }
    }
    // Memory changes last: the statements above can still fail and roll back.
    if let Some((_, hash)) = key {
        ctx.dedupe.insert(hash, rowid);
    }
    ctx.fast
        .register(rowid, if fast_path { new.pipelines.len() } else { 0 });
    Ok(Accepted::New { deliveries, queued })
}

/// At open: rebuild the in-memory deduplication keys, and give every first run that a
/// previous process left unfinished (at or above the watermark, without a row) a row.
pub(crate) fn recover(
    c: &mut Connection,
    now: Timestamp,
) -> Result<(FastPath, Dedupe), JournalError> {
    let tx = c.transaction()?;
    let done_below: i64 =
        tx.query_row("SELECT done_below FROM progress WHERE id = 1", [], |r| {
            r.get(0)
        })?;
    let high: i64 = tx.query_row("SELECT COALESCE(MAX(rowid), 0) FROM events", [], |r| {
        r.get(0)
    })?;
    {
        let mut left = tx.prepare(
            "SELECT id, pipelines, received_at FROM events WHERE rowid >= ?1 AND pipelines IS NOT NULL ORDER BY rowid",
        )?;
        let mut has_row = tx.prepare(
            "SELECT EXISTS (SELECT 1 FROM deliveries WHERE event_id = ?1 AND pipeline = ?2)",
        )?;
        let mut rows = left.query(params![done_below])?;
        while let Some(row) = rows.next()? {
            let id: String = row.get(0)?;
            let pipelines: Vec<String> = from_json(&row.get::<_, String>(1)?)?;
            let received: i64 = row.get(2)?;
            for p in pipelines {
                if !has_row.query_row(params![id, p], |r| r.get::<_, bool>(0))? {
                    insert_delivery(
                        &tx,
                        NewDelivery {
                            event_id: &id,
                            pipeline: &p,
                            stage: 0,
                            stage_name: None,
                            next_attempt_at: received,
                            claimed_by: None,
                            snapshot: None,
                            updated_at: ms(now),
                            order_key: None,
                        },
                    )?;
                }
            }
        }
    }
    tx.execute(
        "UPDATE progress SET done_below = ?1 WHERE id = 1",
        params![high + 1],
    )?;
    let mut dedupe = Dedupe::default();
    {
        let mut keys = tx.prepare(
            "SELECT rowid, dedupe_hash FROM events
             WHERE dedupe_hash IS NOT NULL AND dedupe_until > ?1",
        )?;
        let mut rows = keys.query(params![ms(now)])?;
        while let Some(row) = rows.next()? {
            dedupe.insert(row.get(1)?, row.get(0)?);
        }
    }
    tx.commit()?;
    let fast = FastPath::after(high);
    Ok((fast, dedupe))
}

/// The id of the event at `rowid` and the pipelines it was routed to on the fast path (a
/// virtual delivery names its pipeline by index into these).
pub(super) fn routed(c: &Connection, rowid: i64) -> Result<(String, Vec<String>), JournalError> {
    let (id, pipelines): (String, Option<String>) = c
        .prepare_cached("SELECT id, pipelines FROM events WHERE rowid = ?1")?
        .query_row(params![rowid], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let pipelines = pipelines
        .map(|p| from_json(&p))
        .transpose()?
        .unwrap_or_default();
    Ok((id, pipelines))
}

/// End of a batch, before its commit: give long-running first runs a row, and move the
/// watermark if it can.
/// `everything`: at shutdown, every first run still in flight gets its row, so the next
/// start re-runs only those.
pub(crate) fn advance(ctx: &mut Ctx, everything: bool) -> Result<(), JournalError> {
    if !ctx.owner {
        return Ok(());
    }
    let overdue = ctx.fast.overdue(
        std::time::Instant::now()
            + if everything {
                fast::MATERIALISE_AFTER
            } else {
                std::time::Duration::ZERO
            },
    );
    if !overdue.is_empty() {
        let now = ms(Timestamp::now());
        let mut made = Vec::with_capacity(overdue.len());
        {
            let c = &ctx.conn;
            for (rowid, remaining) in &overdue {
                let mut rows = Vec::with_capacity(remaining.len());
                let (id, pipelines) = routed(c, *rowid)?;
                for &i in remaining {
                    let Some(p) = pipelines.get(usize::from(i)) else {
                        continue;
                    };
                    let row = insert_delivery(
                        c,
                        NewDelivery {
                            event_id: &id,
                            pipeline: p,
                            stage: 0,
                            stage_name: None,
                            next_attempt_at: now,
                            claimed_by: Some(&ctx.boot),
                            snapshot: None,
                            updated_at: now,
                            order_key: None,
                        },
                    )?;
                    rows.push((fast::virtual_id(*rowid, usize::from(i)), row));
                }
                made.push((*rowid, rows));
            }
        }
        for (rowid, rows) in &made {
            ctx.fast.materialise(*rowid, rows);
        }
    }
    if let Some(mark) = ctx.fast.unwritten_watermark() {
        ctx.conn
            .prepare_cached("UPDATE progress SET done_below = ?1 WHERE id = 1")?
            .execute(params![mark])?;
        ctx.fast.written(mark);
    }
    Ok(())
}
