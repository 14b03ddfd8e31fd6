//! Dead letters: writing, listing and filtering them (the rules are `journal/rules.rs`),
//! replaying and purging.

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::rows::{
    EVENT_COLUMNS, NewDelivery, event_from_row, from_json, insert_delivery, ms, to_json, ts,
};
use crate::journal::rules::{self, DeliveryState, LetterState};
use crate::journal::{DeadLetter, DeadLetterFilter, JournalError, NewDeadLetter, Page, Replayed};

pub(crate) fn count_dead(c: &Connection) -> rusqlite::Result<u64> {
    c.query_row(
        "SELECT COUNT(*) FROM dead_letters WHERE state = 'dead'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n.max(0) as u64)
}

pub(crate) fn insert_dead_letter(
    c: &Connection,
    delivery: Option<i64>,
    l: &NewDeadLetter,
) -> Result<String, JournalError> {
    let id = uuid::Uuid::now_v7().to_string();
    let event = l.event.as_ref().map(to_json).transpose()?;
    c.prepare_cached(
        "INSERT INTO dead_letters (id, delivery_id, event_id, source, pipeline, stage_index, stage_name, error, attempts,
         first_failed_at, last_failed_at, created_at, state, event, raw)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?15, ?13, ?14)",
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
        l.raw,
        LetterState::Dead
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
        state: {
            let state: String = r.get(11)?;
            LetterState::parse(&state)
                .ok_or_else(|| JournalError::Corrupt(format!("dead letter state `{state}`")))?
        },
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
        values.push(Value::Text(rules::fold(r)));
        clauses.push(format!(
            "instr(hookline_fold(error), ?{}) > 0",
            values.len()
        ));
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

pub(crate) fn list_dead(
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

pub(crate) fn dead_ids(c: &Connection, f: &DeadLetterFilter) -> Result<Vec<String>, JournalError> {
    let (clause, values) = filter_sql(f);
    let mut stmt = c.prepare(&format!(
        "SELECT id FROM dead_letters {clause} ORDER BY created_at, id"
    ))?;
    let ids = stmt
        .query_map(rusqlite::params_from_iter(values.iter()), |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(ids)
}

pub(crate) fn get_dead(c: &Connection, id: &str) -> Result<Option<DeadLetter>, JournalError> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {DEAD_COLUMNS} FROM dead_letters WHERE id = ?1"
    ))?;
    let mut rows = stmt.query(params![id])?;
    match rows.next()? {
        Some(row) => Ok(Some(dead_from_row(row)?)),
        None => Ok(None),
    }
}

pub(crate) fn replay(c: &Connection, id: &str, from_start: bool) -> Result<Replayed, JournalError> {
    let Some(dl) = get_dead(c, id)? else {
        return Ok(Replayed::NotFound);
    };
    let from = match rules::replayable(&dl) {
        Ok(from) => from,
        Err(skipped) => return Ok(skipped),
    };
    let original = match from_start {
        true => {
            let mut stmt =
                c.prepare_cached(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = ?1"))?;
            let mut rows = stmt.query(params![dl.event_id])?;
            rows.next()?.map(|r| event_from_row(r, 0)).transpose()?
        }
        false => None,
    };
    let start = match rules::replay_start(&dl, &from, from_start, original) {
        Ok(start) => start,
        Err(skipped) => return Ok(skipped),
    };
    let pipeline = from.pipeline;
    let now = ms(Timestamp::now());
    let snapshot = to_json(&start.event)?;
    let delivery_id = insert_delivery(
        c,
        NewDelivery {
            stage: start.stage,
            stage_name: start.stage_name.as_deref(),
            snapshot: Some(&snapshot),
            ..NewDelivery::pending(&dl.event_id, pipeline, now)
        },
    )?;
    c.prepare_cached("UPDATE dead_letters SET state = ?3, replayed_at = ?2 WHERE id = ?1")?
        .execute(params![id, now, LetterState::Replayed])?;
    c.prepare_cached(
        "UPDATE deliveries SET state = ?3, updated_at = ?2
         WHERE id = (SELECT delivery_id FROM dead_letters WHERE id = ?1) AND state = ?4",
    )?
    .execute(params![
        id,
        now,
        DeliveryState::Replayed,
        DeliveryState::Dead
    ])?;
    Ok(Replayed::Queued { delivery_id })
}

/// Returns how many letters were deleted, and how many of those were still dead (not
/// replayed).
pub(crate) fn purge(c: &Connection, ids: &[String]) -> Result<(u64, u64), JournalError> {
    let (mut n, mut dead) = (0, 0);
    let mut del = c.prepare_cached("DELETE FROM dead_letters WHERE id = ?1 RETURNING state")?;
    let mut retire = c.prepare_cached(
        "UPDATE deliveries SET state = ?2 WHERE id = (SELECT delivery_id FROM dead_letters WHERE id = ?1) AND state = ?3",
    )?;
    for id in ids {
        retire.execute(params![id, DeliveryState::Done, DeliveryState::Dead])?;
        let state: Option<String> = del.query_row(params![id], |r| r.get(0)).optional()?;
        if let Some(state) = state {
            n += 1;
            dead += u64::from(LetterState::parse(&state) == Some(LetterState::Dead));
        }
    }
    Ok((n, dead))
}
