//! The SQL, one function per journal operation. Writes run inside the writer's transaction;
//! `list_dead`, `get_dead`, `dead_ids`, `count_dead` and `live_dedupe_from` only read and
//! run on a read-only connection (`read.rs`).

use hookline_plugin_api::Event;
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::Ctx;
use super::fast::{self, Dedupe, FastPath};
use crate::journal::{
    Accepted, Continuation, DeadLetter, DeadLetterFilter, Delivery, DeliveryRef, JournalError,
    NewDeadLetter, NewEvent, Page, Replayed,
};

fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, JournalError> {
    serde_json::to_string(v).map_err(|e| JournalError::Corrupt(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, JournalError> {
    serde_json::from_str(s).map_err(|e| JournalError::Corrupt(e.to_string()))
}

pub fn count_pending(c: &Connection) -> rusqlite::Result<u64> {
    c.query_row(
        "SELECT COUNT(*) FROM deliveries WHERE state = 'pending'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n.max(0) as u64)
}

pub fn count_dead(c: &Connection) -> rusqlite::Result<u64> {
    c.query_row(
        "SELECT COUNT(*) FROM dead_letters WHERE state = 'dead'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n.max(0) as u64)
}

/// An event's JSON columns, encoded before the event reaches the writer thread.
pub struct Encoded {
    headers: String,
    payload: String,
}

impl Encoded {
    pub fn new(e: &Event) -> Result<Self, JournalError> {
        Ok(Encoded {
            headers: to_json(&e.headers)?,
            payload: to_json(&e.payload)?,
        })
    }
}

pub fn accept(
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
        .map(|k| (k, fast::key_hash(&e.source, k)));
    if let Some((key, hash)) = &key
        && let Some(rowid) = ctx.dedupe.get(*hash)
    {
        // Confirmed on the row: a hash collision or a rolled-back insert is no duplicate.
        let first: Option<String> = c
            .prepare_cached(
                "SELECT id FROM events WHERE rowid = ?1 AND source = ?2 AND dedupe_key = ?3 AND dedupe_until > ?4",
            )?
            .query_row(params![rowid, e.source, key, now], |r| r.get(0))
            .optional()?;
        if let Some(first_id) = first {
            return Ok(Accepted::Duplicate { first_id });
        }
    }
    let fast_path = !new.pipelines.is_empty() && new.pipelines.len() <= fast::MAX_PIPELINES;
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
    if fast_path {
        for (i, pipeline) in new.pipelines.iter().enumerate() {
            deliveries.push(DeliveryRef {
                id: fast::virtual_id(rowid, i),
                pipeline: pipeline.clone(),
            });
        }
    } else {
        let mut insert = c.prepare_cached(
            "INSERT INTO deliveries (event_id, pipeline, stage, state, attempts, next_attempt_at, claimed_by, updated_at)
             VALUES (?1, ?2, 0, 'pending', 0, ?3, ?4, ?3)",
        )?;
        for pipeline in &new.pipelines {
            insert.execute(params![e.id, pipeline, now, boot])?;
            deliveries.push(DeliveryRef {
                id: c.last_insert_rowid(),
                pipeline: pipeline.clone(),
            });
        }
    }
    // Memory changes last: the statements above can still fail and roll back.
    if let Some((_, hash)) = key {
        ctx.dedupe.insert(hash, rowid);
    }
    ctx.fast
        .register(rowid, if fast_path { new.pipelines.len() } else { 0 });
    Ok(Accepted::New { deliveries })
}

/// At open: rebuild the in-memory deduplication keys, and give every first run that a
/// previous process left unfinished (at or above the watermark, without a row) a row.
pub fn recover(c: &mut Connection, now: Timestamp) -> Result<(FastPath, Dedupe), JournalError> {
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
        let mut insert = tx.prepare(
            "INSERT INTO deliveries (event_id, pipeline, stage, state, attempts, next_attempt_at, updated_at)
             VALUES (?1, ?2, 0, 'pending', 0, ?3, ?4)",
        )?;
        let mut rows = left.query(params![done_below])?;
        while let Some(row) = rows.next()? {
            let id: String = row.get(0)?;
            let pipelines: Vec<String> = from_json(&row.get::<_, String>(1)?)?;
            let received: i64 = row.get(2)?;
            for p in pipelines {
                if !has_row.query_row(params![id, p], |r| r.get::<_, bool>(0))? {
                    insert.execute(params![id, p, received, ms(now)])?;
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
    let fast = FastPath {
        high,
        persisted: high + 1,
        ..FastPath::default()
    };
    Ok((fast, dedupe))
}

/// The id of the event at `rowid` and the pipelines it was routed to on the fast path (a
/// virtual delivery names its pipeline by index into these).
fn routed(c: &Connection, rowid: i64) -> Result<(String, Vec<String>), JournalError> {
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
pub fn advance(ctx: &mut Ctx, everything: bool) -> Result<(), JournalError> {
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
        let mut made = Vec::new();
        {
            let c = &ctx.conn;
            let mut insert = c.prepare_cached(
                "INSERT INTO deliveries (event_id, pipeline, stage, state, attempts, next_attempt_at, claimed_by, updated_at)
                 VALUES (?1, ?2, 0, 'pending', 0, ?3, ?4, ?3)",
            )?;
            for (rowid, remaining) in &overdue {
                let (id, pipelines) = routed(c, *rowid)?;
                for &i in remaining {
                    let Some(p) = pipelines.get(usize::from(i)) else {
                        continue;
                    };
                    insert.execute(params![id, p, now, ctx.boot])?;
                    made.push((
                        fast::virtual_id(*rowid, usize::from(i)),
                        c.last_insert_rowid(),
                    ));
                }
            }
        }
        for (rowid, _) in &overdue {
            ctx.fast.outstanding.remove(rowid);
        }
        ctx.fast.materialised.extend(made);
    }
    let mark = ctx.fast.watermark();
    if mark > ctx.fast.persisted {
        ctx.conn
            .prepare_cached("UPDATE progress SET done_below = ?1 WHERE id = 1")?
            .execute(params![mark])?;
        ctx.fast.persisted = mark;
    }
    Ok(())
}

const DELIVERY_COLUMNS: &str =
    "d.id, d.pipeline, d.stage, d.attempts, d.first_failed_at, d.snapshot,
     e.id, e.source, e.type, e.received_at, e.headers, e.payload";

fn delivery_from_row(r: &Row<'_>) -> Result<Delivery, JournalError> {
    let snapshot: Option<String> = r.get(5)?;
    let event = match snapshot {
        Some(s) => from_json::<Event>(&s)?,
        None => {
            let id: Option<String> = r.get(6)?;
            let Some(id) = id else {
                return Err(JournalError::Corrupt(
                    "delivery has neither snapshot nor event".into(),
                ));
            };
            Event {
                id,
                source: r.get(7)?,
                event_type: r.get(8)?,
                received_at: ts(r.get(9)?),
                headers: from_json(&r.get::<_, String>(10)?)?,
                payload: from_json(&r.get::<_, String>(11)?)?,
            }
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

pub fn claim_due(
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
pub fn defer(ctx: &mut Ctx, ids: &[i64]) -> Result<(), JournalError> {
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
            c.prepare_cached(
                "INSERT INTO deliveries (event_id, pipeline, stage, state, attempts, next_attempt_at, updated_at)
                 VALUES (?1, ?2, 0, 'pending', 0, ?3, ?3)",
            )?
            .execute(params![event_id, pipeline, now])?;
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

pub fn load(ctx: &mut Ctx, ids: &[i64]) -> Result<Vec<Delivery>, JournalError> {
    let c = &ctx.conn;
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries d LEFT JOIN events e ON e.id = d.event_id WHERE d.id = ?1 AND d.state = 'pending'"
    );
    let mut stmt = c.prepare_cached(&sql)?;
    let mut out = Vec::with_capacity(ids.len());
    for &id in ids {
        let id = ctx.fast.materialised.get(&id).copied().unwrap_or(id);
        if let Some((rowid, index)) = fast::split_virtual(id) {
            if let Some(d) = load_virtual(c, id, rowid, index)? {
                out.push(d);
            }
            continue;
        }
        let mut rows = stmt.query(params![id])?;
        if let Some(row) = rows.next()? {
            out.push(delivery_from_row(row)?);
        }
    }
    Ok(out)
}

fn load_virtual(
    c: &Connection,
    id: i64,
    rowid: i64,
    index: usize,
) -> Result<Option<Delivery>, JournalError> {
    let row = c
        .prepare_cached(
            "SELECT id, source, type, received_at, headers, payload, pipelines FROM events WHERE rowid = ?1",
        )?
        .query_row(params![rowid], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, Option<String>>(6)?,
            ))
        })
        .optional()?;
    let Some((event_id, source, event_type, received, headers, payload, pipelines)) = row else {
        return Ok(None);
    };
    let pipelines: Vec<String> = pipelines
        .map(|p| from_json(&p))
        .transpose()?
        .unwrap_or_default();
    let Some(pipeline) = pipelines.into_iter().nth(index) else {
        return Ok(None);
    };
    Ok(Some(Delivery {
        id,
        pipeline,
        stage: 0,
        attempts: 0,
        first_failed_at: None,
        event: Event {
            id: event_id,
            source,
            event_type,
            received_at: ts(received),
            headers: from_json(&headers)?,
            payload: from_json(&payload)?,
        },
    }))
}

pub fn settle(
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
            c.prepare_cached(
                "INSERT INTO deliveries (event_id, pipeline, stage, state, attempts, next_attempt_at, updated_at)
                 VALUES (?1, ?2, 0, 'pending', 0, ?3, ?3)",
            )?
            .execute(params![event_id, pipeline, now])?;
            let id = c.last_insert_rowid();
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
        c.prepare_cached("UPDATE deliveries SET state = 'done', claimed_by = NULL, updated_at = ?2 WHERE id = ?1")?
            .execute(params![delivery, now])?;
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
        c.prepare_cached(
            "INSERT INTO deliveries (event_id, pipeline, stage, state, attempts, next_attempt_at, updated_at)
             VALUES (?1, ?2, 0, 'pending', 0, ?3, ?3)",
        )?
        .execute(params![event_id, pipeline, now])?;
        let id = c.last_insert_rowid();
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
                "UPDATE deliveries SET state = 'pending', stage = ?2, snapshot = ?3, attempts = ?4, next_attempt_at = ?5,
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
                now
            ])?;
        }
        Continuation::Dead(letter) => {
            c.prepare_cached(
                "UPDATE deliveries SET state = 'dead', stage = ?2, attempts = ?3, last_error = ?4, claimed_by = NULL,
                 updated_at = ?5 WHERE id = ?1",
            )?
            .execute(params![
                delivery,
                letter.stage_index.unwrap_or(0) as i64,
                letter.attempts as i64,
                letter.error,
                now
            ])?;
            insert_dead_letter(c, Some(delivery), letter)?;
        }
    }
    Ok(())
}

pub fn insert_dead_letter(
    c: &Connection,
    delivery: Option<i64>,
    l: &NewDeadLetter,
) -> Result<String, JournalError> {
    let id = uuid::Uuid::now_v7().to_string();
    let event = l.event.as_ref().map(to_json).transpose()?;
    c.prepare_cached(
        "INSERT INTO dead_letters (id, delivery_id, event_id, source, pipeline, stage_index, stage_name, error, attempts,
         first_failed_at, last_failed_at, created_at, state, event, raw)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 'dead', ?13, ?14)",
    )?
    .execute(params![
        id,
        delivery,
        l.event_id,
        l.source,
        l.pipeline,
        l.stage_index.map(|s| s as i64),
        l.stage_name,
        l.error,
        l.attempts as i64,
        ms(l.first_failed_at),
        ms(l.last_failed_at),
        ms(Timestamp::now()),
        event,
        l.raw
    ])?;
    Ok(id)
}

const DEAD_COLUMNS: &str =
    "id, event_id, source, pipeline, stage_index, stage_name, error, attempts, first_failed_at,
     last_failed_at, created_at, state, replayed_at, event, raw";
/// The same, without payloads and raw bodies (the JSON is trimmed inside SQLite).
const DEAD_SUMMARY_COLUMNS: &str =
    "id, event_id, source, pipeline, stage_index, stage_name, error, attempts, first_failed_at,
     last_failed_at, created_at, state, replayed_at,
     CASE WHEN event IS NULL THEN NULL
          ELSE json_set(event, '$.payload', json('null'), '$.headers', json('[]')) END,
     CASE WHEN raw IS NULL THEN NULL ELSE X'' END";

fn dead_from_row(r: &Row<'_>) -> Result<DeadLetter, JournalError> {
    let event: Option<String> = r.get(13)?;
    let raw: Option<Vec<u8>> = r.get(14)?;
    Ok(DeadLetter {
        id: r.get(0)?,
        event_id: r.get(1)?,
        source: r.get(2)?,
        pipeline: r.get(3)?,
        stage_index: r.get::<_, Option<i64>>(4)?.map(|s| s.max(0) as usize),
        stage_name: r.get(5)?,
        error: r.get(6)?,
        attempts: r.get::<_, i64>(7)?.max(0) as u32,
        first_failed_at: ts(r.get(8)?),
        last_failed_at: ts(r.get(9)?),
        created_at: ts(r.get(10)?),
        state: r.get(11)?,
        replayed_at: r.get::<_, Option<i64>>(12)?.map(ts),
        event: event.map(|s| from_json(&s)).transpose()?,
        raw: raw.map(|b| String::from_utf8_lossy(&b).into_owned()),
    })
}

/// WHERE clause and its parameters for a filter.
fn filter_sql(f: &DeadLetterFilter) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let mut clauses = Vec::new();
    let mut values = Vec::new();
    if !f.include_replayed {
        clauses.push("state = 'dead'".to_string());
    }
    if let Some(p) = &f.pipeline {
        values.push(Value::Text(p.clone()));
        clauses.push(format!("pipeline = ?{}", values.len()));
    }
    if let Some(s) = &f.stage {
        values.push(Value::Text(s.clone()));
        let n = values.len();
        clauses.push(format!(
            "(stage_name = ?{n} OR CAST(stage_index AS TEXT) = ?{n})"
        ));
    }
    if let Some(r) = &f.reason {
        values.push(Value::Text(r.clone()));
        clauses.push(format!("instr(lower(error), lower(?{})) > 0", values.len()));
    }
    if let Some(since) = f.since {
        values.push(Value::Integer(ms(since)));
        clauses.push(format!("last_failed_at >= ?{}", values.len()));
    }
    if let Some(event) = &f.event_id {
        values.push(Value::Text(event.clone()));
        clauses.push(format!("event_id = ?{}", values.len()));
    }
    let sql = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    (sql, values)
}

pub fn list_dead(
    c: &Connection,
    f: &DeadLetterFilter,
    offset: u64,
    limit: u64,
) -> Result<Page<DeadLetter>, JournalError> {
    let (clause, values) = filter_sql(f);
    let total: i64 = c.query_row(
        &format!("SELECT COUNT(*) FROM dead_letters {clause}"),
        rusqlite::params_from_iter(values.iter()),
        |r| r.get(0),
    )?;
    let columns = if f.summaries {
        DEAD_SUMMARY_COLUMNS
    } else {
        DEAD_COLUMNS
    };
    let sql = format!(
        "SELECT {columns} FROM dead_letters {clause} ORDER BY created_at DESC, id DESC LIMIT {} OFFSET {}",
        limit.min(i64::MAX as u64),
        offset.min(i64::MAX as u64)
    );
    let mut stmt = c.prepare(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(values.iter()))?;
    let mut items = Vec::new();
    while let Some(row) = rows.next()? {
        items.push(dead_from_row(row)?);
    }
    Ok(Page {
        items,
        total: total.max(0) as u64,
        offset,
        limit,
    })
}

pub fn dead_ids(c: &Connection, f: &DeadLetterFilter) -> Result<Vec<String>, JournalError> {
    let (clause, values) = filter_sql(f);
    let mut stmt = c.prepare(&format!(
        "SELECT id FROM dead_letters {clause} ORDER BY created_at, id"
    ))?;
    let ids = stmt
        .query_map(rusqlite::params_from_iter(values.iter()), |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(ids)
}

pub fn get_dead(c: &Connection, id: &str) -> Result<Option<DeadLetter>, JournalError> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {DEAD_COLUMNS} FROM dead_letters WHERE id = ?1"
    ))?;
    let mut rows = stmt.query(params![id])?;
    match rows.next()? {
        Some(row) => Ok(Some(dead_from_row(row)?)),
        None => Ok(None),
    }
}

pub fn replay(c: &Connection, id: &str, from_start: bool) -> Result<Replayed, JournalError> {
    let Some(dl) = get_dead(c, id)? else {
        return Ok(Replayed::NotFound);
    };
    if dl.state != "dead" {
        return Ok(Replayed::Skipped {
            reason: "already replayed".into(),
        });
    }
    let (Some(pipeline), Some(snapshot)) = (&dl.pipeline, &dl.event) else {
        return Ok(Replayed::Skipped {
            reason: "the request failed before routing (it could not be decoded); have the sender resend it".into(),
        });
    };
    let (stage, event) = if from_start {
        let original: Option<Event> = c
            .query_row(
                "SELECT id, source, type, received_at, headers, payload FROM events WHERE id = ?1",
                params![dl.event_id],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?, r.get::<_, String>(4)?, r.get::<_, String>(5)?)),
            )
            .optional()?
            .map(|(id, source, event_type, received, headers, payload)| -> Result<Event, JournalError> {
                Ok(Event {
                    id,
                    source,
                    event_type,
                    received_at: ts(received),
                    headers: from_json(&headers)?,
                    payload: from_json(&payload)?,
                })
            })
            .transpose()?;
        match original {
            Some(e) => (0usize, e),
            None if dl.stage_index == Some(0) => (0, snapshot.clone()),
            None => {
                return Ok(Replayed::Skipped {
                    reason: "the original event is no longer in the journal; replay from the failed stage instead".into(),
                });
            }
        }
    } else {
        (dl.stage_index.unwrap_or(0), snapshot.clone())
    };
    let now = ms(Timestamp::now());
    c.prepare_cached(
        "INSERT INTO deliveries (event_id, pipeline, stage, state, attempts, next_attempt_at, snapshot, updated_at)
         VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?5, ?4)",
    )?
    .execute(params![dl.event_id, pipeline, stage as i64, now, to_json(&event)?])?;
    let delivery_id = c.last_insert_rowid();
    c.prepare_cached("UPDATE dead_letters SET state = 'replayed', replayed_at = ?2 WHERE id = ?1")?
        .execute(params![id, now])?;
    c.prepare_cached(
        "UPDATE deliveries SET state = 'replayed', updated_at = ?2
         WHERE id = (SELECT delivery_id FROM dead_letters WHERE id = ?1) AND state = 'dead'",
    )?
    .execute(params![id, now])?;
    Ok(Replayed::Queued { delivery_id })
}

/// Returns how many letters were deleted, and how many of those were still dead (not
/// replayed).
pub fn purge(c: &Connection, ids: &[String]) -> Result<(u64, u64), JournalError> {
    let (mut n, mut dead) = (0, 0);
    let mut del = c.prepare_cached("DELETE FROM dead_letters WHERE id = ?1 RETURNING state")?;
    let mut retire = c.prepare_cached(
        "UPDATE deliveries SET state = 'done' WHERE id = (SELECT delivery_id FROM dead_letters WHERE id = ?1) AND state = 'dead'",
    )?;
    for id in ids {
        retire.execute(params![id])?;
        let state: Option<String> = del.query_row(params![id], |r| r.get(0)).optional()?;
        if let Some(state) = state {
            n += 1;
            dead += u64::from(state == "dead");
        }
    }
    Ok((n, dead))
}

/// Where the last batch of [`prune_events`] stopped: `(received_at, rowid)`, in the order
/// of the `events_received` index.
#[derive(Debug, Clone, Copy, Default)]
pub struct PruneCursor(i64, i64);

/// Delete up to `batch` events that are past retention and finished, after `after`: events
/// whose every delivery finished (delivered, dropped, replayed elsewhere), whose first runs
/// are all below the watermark, and whose deduplication window closed. The newest event
/// always stays: rowids must keep growing past the watermark. Returns how many were
/// deleted and where to go on from; each batch starts where the last stopped, so rows kept
/// back (a dead letter's event) are not scanned again.
pub fn prune_events(
    c: &Connection,
    before: Timestamp,
    now: Timestamp,
    after: PruneCursor,
    batch: usize,
) -> Result<(usize, Option<PruneCursor>), JournalError> {
    let candidates: Vec<(i64, i64)> = c
        .prepare_cached(
            "SELECT received_at, rowid FROM events
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
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?
        .collect::<Result<_, _>>()?;
    let mut delete = c.prepare_cached("DELETE FROM events WHERE rowid = ?1")?;
    for (_, rowid) in &candidates {
        delete.execute(params![rowid])?;
    }
    Ok((
        candidates.len(),
        candidates.last().map(|&(at, rowid)| PruneCursor(at, rowid)),
    ))
}

/// Delete up to `batch` finished delivery rows (delivered, replayed) past retention whose
/// event is gone, with ids above `after`. Returns how many and the last id looked at.
pub fn prune_deliveries(
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
pub fn live_dedupe_from(c: &Connection, now: Timestamp) -> Result<i64, JournalError> {
    let (live, high): (Option<i64>, i64) = c.query_row(
        "SELECT (SELECT MIN(rowid) FROM events WHERE dedupe_hash IS NOT NULL AND dedupe_until > ?1),
                (SELECT COALESCE(MAX(rowid), 0) FROM events)",
        params![ms(now)],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(live.unwrap_or(high + 1))
}
