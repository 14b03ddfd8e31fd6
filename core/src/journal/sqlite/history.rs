//! Event history: each run's attempt is written by the settle that ends it (same commit);
//! listings and an event's page are read on the read-only connections, and say where the
//! event stands in each pipeline from its delivery rows, its attempts and the watermark.

use std::collections::HashMap;

use hookline_plugin_api::Event;
use rusqlite::{Connection, OptionalExtension, params};

use super::rows::{NewDelivery, event_from_row, from_json, insert_delivery, ms, to_json, ts};
use crate::journal::rules::{self, Standing};
use crate::journal::{
    Attempt, AttemptResult, Erased, EventFilter, EventPage, EventRecord, EventSummary, Hold,
    JournalError, Replayed,
};

/// Events a listing looks at, at most, before it answers with what it found and a cursor.
pub(crate) const SCAN_BUDGET: u64 = 10_000;

/// Rows read from `events` per query while filling a page.
const CHUNK: u64 = 500;

/// One run of an event's history as `attempt_runs.runs` keeps it: pipeline, stage,
/// stage name, when it ended (unix ms), how long it took (µs), result, error.
type StoredRun<'a> = (&'a str, usize, &'a str, i64, u64, &'a str, Option<&'a str>);
/// [`StoredRun`], read back.
type ReadRun = (String, usize, String, i64, u64, String, Option<String>);

/// The history rows `attempts` make: one per event, its runs in the order given, as the
/// text of `attempt_runs.runs`. Encoded by the caller, off the writer thread.
pub(crate) fn encode<'a>(
    attempts: impl IntoIterator<Item = &'a Attempt>,
) -> Result<Vec<(String, String)>, JournalError> {
    let attempts: Vec<&Attempt> = attempts.into_iter().collect();
    // Most settles are of one event: its runs' vector is allocated once, at its size.
    let mut by_event: Vec<(&str, Vec<StoredRun<'a>>)> = Vec::with_capacity(1);
    for a in attempts.iter().copied() {
        let run = (
            a.pipeline.as_str(),
            a.stage,
            a.stage_name.as_str(),
            ms(a.at),
            a.duration_us,
            a.result.as_str(),
            a.error.as_deref(),
        );
        match by_event.iter_mut().find(|(id, _)| *id == a.event_id) {
            Some((_, runs)) => runs.push(run),
            None => {
                let mut runs = Vec::with_capacity(attempts.len());
                runs.push(run);
                by_event.push((&a.event_id, runs));
            }
        }
    }
    by_event
        .into_iter()
        .map(|(id, runs)| Ok((id.to_string(), to_json(&runs)?)))
        .collect()
}

/// Write the rows [`encode`] made, in the settle's transaction.
pub(crate) fn record(c: &Connection, rows: &[(String, String)]) -> Result<(), JournalError> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut insert =
        c.prepare_cached("INSERT INTO attempt_runs (event_id, runs) VALUES (?1, ?2)")?;
    for (event_id, runs) in rows {
        insert.execute(params![event_id, runs])?;
    }
    Ok(())
}

/// The cursor a page hands out: the rowid below which the listing goes on.
fn parse_cursor(cursor: Option<&str>) -> Result<i64, JournalError> {
    match cursor {
        None => Ok(i64::MAX),
        Some(c) => c.parse::<i64>().ok().filter(|r| *r > 0).ok_or_else(|| {
            JournalError::Invalid(format!(
                "`{c}` is not a cursor: pass the `next` of the previous page"
            ))
        }),
    }
}

pub(crate) fn list_events(
    c: &Connection,
    filter: &EventFilter,
    cursor: Option<&str>,
    limit: u64,
) -> Result<EventPage, JournalError> {
    let mut below = parse_cursor(cursor)?;
    let limit = limit.clamp(1, 1000);
    let done_below = watermark(c)?;
    let with_body = filter.matcher.is_some();
    let sql = format!(
        "SELECT rowid, id, source, type, received_at, pipelines{body} FROM events
         WHERE rowid < ?1 AND (?2 IS NULL OR source = ?2) AND (?3 IS NULL OR type = ?3)
           AND (?4 IS NULL OR received_at >= ?4) AND (?5 IS NULL OR received_at < ?5)
         ORDER BY rowid DESC LIMIT ?6",
        body = if with_body { ", headers, payload" } else { "" }
    );
    let mut stmt = c.prepare_cached(&sql)?;
    let mut items = Vec::new();
    let mut scanned = 0u64;
    loop {
        let want = CHUNK.min(SCAN_BUDGET - scanned);
        let mut rows = stmt.query(params![
            below,
            filter.source,
            filter.event_type,
            filter.since.map(ms),
            filter.until.map(ms),
            want as i64,
        ])?;
        let mut read = 0u64;
        let mut full = false;
        while let Some(row) = rows.next()? {
            read += 1;
            scanned += 1;
            let rowid: i64 = row.get(0)?;
            below = rowid;
            if let Some(matcher) = &filter.matcher {
                let event = Event {
                    id: row.get(1)?,
                    source: row.get(2)?,
                    event_type: row.get(3)?,
                    received_at: ts(row.get(4)?),
                    headers: from_json(&row.get::<_, String>(6)?)?,
                    payload: from_json(&row.get::<_, String>(7)?)?,
                };
                if !matcher(&event) {
                    continue;
                }
            }
            let summary = summarise(
                c,
                rowid,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
                done_below,
            )?;
            if filter.selects(&summary) {
                items.push(summary);
                if items.len() as u64 == limit {
                    full = true;
                    break;
                }
            }
        }
        drop(rows);
        let exhausted = !full && read < want;
        if full || exhausted || scanned >= SCAN_BUDGET {
            let next = match exhausted {
                true => None,
                false => has_older(c, below)?.then(|| below.to_string()),
            };
            return Ok(EventPage {
                items,
                next,
                scanned,
            });
        }
    }
}

fn has_older(c: &Connection, below: i64) -> Result<bool, JournalError> {
    Ok(
        c.prepare_cached("SELECT EXISTS (SELECT 1 FROM events WHERE rowid < ?1)")?
            .query_row(params![below], |r| r.get(0))?,
    )
}

fn watermark(c: &Connection) -> Result<i64, JournalError> {
    Ok(
        c.prepare_cached("SELECT done_below FROM progress WHERE id = 1")?
            .query_row([], |r| r.get(0))?,
    )
}

pub(crate) fn get_event(c: &Connection, id: &str) -> Result<Option<EventRecord>, JournalError> {
    let found = c
        .prepare_cached(
            "SELECT rowid, id, source, type, received_at, headers, payload, pipelines FROM events WHERE id = ?1",
        )?
        .query_row(params![id], |r| {
            Ok((r.get::<_, i64>(0)?, event_from_row(r, 1), r.get::<_, Option<String>>(7)?))
        });
    let (rowid, event, routed) = match found {
        Ok(found) => found,
        Err(rusqlite::Error::QueryReturnedNoRows) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let event = event?;
    let summary = summarise(
        c,
        rowid,
        event.id.clone(),
        event.source.clone(),
        event.event_type.clone(),
        ms(event.received_at),
        routed,
        watermark(c)?,
    )?;
    let dead_letters = c
        .prepare_cached("SELECT id FROM dead_letters WHERE event_id = ?1 ORDER BY created_at")?
        .query_map(params![id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(Some(EventRecord {
        summary,
        headers: event.headers,
        payload: event.payload,
        attempts: attempts(c, id)?,
        dead_letters,
    }))
}

/// An event's attempts in the order they were recorded: the rows an older Hookline wrote,
/// one per run (`attempts`), then this one's, one per settle (`attempt_runs`).
fn attempts(c: &Connection, event_id: &str) -> Result<Vec<Attempt>, JournalError> {
    let mut out = Vec::new();
    let mut stmt = c.prepare_cached(
        "SELECT pipeline, stage, stage_name, at, duration_us, result, error FROM attempts
         WHERE event_id = ?1 ORDER BY id",
    )?;
    let mut rows = stmt.query(params![event_id])?;
    while let Some(r) = rows.next()? {
        out.push(attempt(
            event_id,
            (
                r.get(0)?,
                r.get::<_, i64>(1)?.max(0) as usize,
                r.get(2)?,
                r.get(3)?,
                r.get::<_, i64>(4)?.max(0) as u64,
                r.get(5)?,
                r.get(6)?,
            ),
        )?);
    }
    let mut stmt =
        c.prepare_cached("SELECT runs FROM attempt_runs WHERE event_id = ?1 ORDER BY id")?;
    let mut rows = stmt.query(params![event_id])?;
    while let Some(r) = rows.next()? {
        let runs: String = r.get(0)?;
        for run in from_json::<Vec<ReadRun>>(&runs)? {
            out.push(attempt(event_id, run)?);
        }
    }
    Ok(out)
}

fn attempt(
    event_id: &str,
    (pipeline, stage, stage_name, at, duration_us, result, error): ReadRun,
) -> Result<Attempt, JournalError> {
    Ok(Attempt {
        event_id: event_id.to_string(),
        pipeline,
        stage,
        stage_name,
        at: ts(at),
        duration_us,
        result: AttemptResult::parse(&result)
            .ok_or_else(|| JournalError::Corrupt(format!("attempt result `{result}`")))?,
        error,
    })
}

/// A delivery row of the event, as the summary needs it.
struct Row {
    pipeline: String,
    stage: usize,
    stage_name: Option<String>,
    state: String,
    held: Option<String>,
    error: Option<String>,
    next_attempt_at: i64,
}

#[allow(clippy::too_many_arguments)]
fn summarise(
    c: &Connection,
    rowid: i64,
    id: String,
    source: String,
    event_type: String,
    received_at: i64,
    routed: Option<String>,
    done_below: i64,
) -> Result<EventSummary, JournalError> {
    let mut order: Vec<String> = match &routed {
        Some(json) => from_json(json)?,
        None => Vec::new(),
    };
    let rows: Vec<Row> = c
        .prepare_cached(
            "SELECT pipeline, stage, state, held, last_error, next_attempt_at, stage_name FROM deliveries
             WHERE event_id = ?1 ORDER BY id",
        )?
        .query_map(params![id], |r| {
            Ok(Row {
                pipeline: r.get(0)?,
                stage: r.get::<_, i64>(1)?.max(0) as usize,
                state: r.get(2)?,
                held: r.get(3)?,
                error: r.get(4)?,
                next_attempt_at: r.get(5)?,
                stage_name: r.get(6)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let history = attempts(c, &id)?;
    for name in rows
        .iter()
        .map(|r| &r.pipeline)
        .chain(history.iter().map(|a| &a.pipeline))
    {
        if !order.contains(name) {
            order.push(name.clone());
        }
    }
    let in_flight = routed.is_some() && rowid >= done_below;
    let mut by_pipeline: HashMap<&str, Vec<&Attempt>> = HashMap::new();
    for a in &history {
        by_pipeline.entry(a.pipeline.as_str()).or_default().push(a);
    }
    let pipelines = order
        .iter()
        .map(|name| {
            let mine: Vec<&Row> = rows.iter().filter(|r| &r.pipeline == name).collect();
            let tried = by_pipeline.get(name.as_str()).cloned().unwrap_or_default();
            rules::pipeline_state(name, standing(&mine), &tried, in_flight && mine.is_empty())
        })
        .collect();
    Ok(EventSummary {
        id,
        source,
        event_type,
        received_at: ts(received_at),
        pipelines,
    })
}

/// What this pipeline's delivery rows say: a pending row (waiting or retrying) first, then a
/// dead one. The outcome itself is [`rules::pipeline_state`]'s, the rule NATS uses too.
fn standing(rows: &[&Row]) -> Option<Standing> {
    if let Some(r) = rows.iter().find(|r| r.state == "pending") {
        return Some(Standing::Waiting {
            stage: r.stage,
            stage_name: r.stage_name.clone(),
            error: r.error.clone(),
            hold: match r.held.as_deref() {
                Some("paused") => Some(Hold::Paused),
                Some(_) => Some(Hold::Circuit),
                None => None,
            },
            next_attempt_at: Some(ts(r.next_attempt_at)),
        });
    }
    rows.iter()
        .find(|r| r.state == "dead")
        .map(|r| Standing::Dead {
            stage: r.stage,
            stage_name: r.stage_name.clone(),
            error: r.error.clone(),
        })
}

/// Send a retained event into `pipeline` again (or for the first time: a pipeline added after
/// it arrived): from its first stage, or from the stage where it was dead-lettered there.
pub(crate) fn replay_event(
    c: &Connection,
    event_id: &str,
    pipeline: &str,
    from_failed: bool,
) -> Result<Replayed, JournalError> {
    let known: bool = c
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM events WHERE id = ?1)")?
        .query_row(params![event_id], |r| r.get(0))?;
    if !known {
        return Ok(Replayed::NotFound);
    }
    if from_failed {
        let letter: Option<String> = c
            .prepare_cached(
                "SELECT id FROM dead_letters WHERE event_id = ?1 AND pipeline = ?2 AND state = 'dead'
                 ORDER BY created_at DESC LIMIT 1",
            )?
            .query_row(params![event_id, pipeline], |r| r.get(0))
            .optional()?;
        return match letter {
            Some(id) => super::dead::replay(c, &id, false),
            None => Ok(Replayed::Skipped {
                reason: format!(
                    "the event has no dead letter in `{pipeline}` to resume from; replay it from the first stage"
                ),
            }),
        };
    }
    let pending: bool = c
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM deliveries WHERE event_id = ?1 AND pipeline = ?2 AND state = 'pending')",
        )?
        .query_row(params![event_id, pipeline], |r| r.get(0))?;
    if pending {
        return Ok(Replayed::Skipped {
            reason: format!("the event is already waiting for delivery in `{pipeline}`"),
        });
    }
    let now = ms(jiff::Timestamp::now());
    let delivery_id = insert_delivery(c, NewDelivery::pending(event_id, pipeline, now))?;
    Ok(Replayed::Queued { delivery_id })
}

/// Delete events with everything kept of them: delivery rows, history, dead letters. An
/// event with a run under way (its first run in flight, or a claimed delivery) is left, so
/// that the run cannot write it back; it is counted as `busy`.
/// Returns what was erased, and how many pending deliveries and dead (not replayed) letters
/// went with it, for the journal's counters.
pub(crate) fn erase(
    ctx: &mut super::Ctx,
    ids: &[String],
) -> Result<(Erased, i64, i64), JournalError> {
    let c = &ctx.conn;
    let mut out = Erased::default();
    let (mut pending_gone, mut dead_gone) = (0i64, 0i64);
    for id in ids {
        let rowid: Option<i64> = c
            .prepare_cached("SELECT rowid FROM events WHERE id = ?1")?
            .query_row(params![id], |r| r.get(0))
            .optional()?;
        let Some(rowid) = rowid else { continue };
        let claimed: bool = c
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM deliveries WHERE event_id = ?1 AND state = 'pending' AND claimed_by IS NOT NULL)",
            )?
            .query_row(params![id], |r| r.get(0))?;
        if claimed || ctx.fast.holds(rowid) {
            out.busy += 1;
            continue;
        }
        pending_gone += c
            .prepare_cached("DELETE FROM deliveries WHERE event_id = ?1 AND state = 'pending'")?
            .execute(params![id])? as i64;
        c.prepare_cached("DELETE FROM deliveries WHERE event_id = ?1")?
            .execute(params![id])?;
        dead_gone += c
            .prepare_cached(
                "SELECT COUNT(*) FROM dead_letters WHERE event_id = ?1 AND state = 'dead'",
            )?
            .query_row(params![id], |r| r.get::<_, i64>(0))?;
        out.dead_letters += c
            .prepare_cached("DELETE FROM dead_letters WHERE event_id = ?1")?
            .execute(params![id])? as u64;
        c.prepare_cached("DELETE FROM attempts WHERE event_id = ?1")?
            .execute(params![id])?;
        c.prepare_cached("DELETE FROM attempt_runs WHERE event_id = ?1")?
            .execute(params![id])?;
        c.prepare_cached("DELETE FROM events WHERE rowid = ?1")?
            .execute(params![rowid])?;
        out.events += 1;
    }
    Ok((out, pending_gone, dead_gone))
}
