//! Unprocessable requests: the dead letters without a pipeline, kept with their raw body
//! and headers; listed by rowid (newest first), and re-run into an event.

use jiff::Timestamp;
use rusqlite::{Connection, Row, params};

use super::rows::{NewDelivery, from_json, insert_delivery, ms, to_json, ts};
use crate::journal::rules::LetterState;
use crate::journal::{
    JournalError, NewDeadLetter, RequestPage, RequestState, Rerun, RerunEvent, UnprocessableRequest,
};

/// Keep a request as a dead letter with the headers an event would keep.
pub(crate) fn insert(
    c: &Connection,
    letter: &NewDeadLetter,
    headers: &[(String, String)],
) -> Result<String, JournalError> {
    let id = super::dead::insert_dead_letter(c, None, letter)?;
    c.prepare_cached("UPDATE dead_letters SET headers = ?2 WHERE id = ?1")?
        .execute(params![id, to_json(&headers)?])?;
    Ok(id)
}

const COLUMNS: &str =
    "rowid, event_id, id, source, first_failed_at, error, state, rerun_event, replayed_at, headers";

fn from_row(r: &Row<'_>, with_body: bool) -> Result<UnprocessableRequest, JournalError> {
    let state: String = r.get(6)?;
    let headers: Option<String> = r.get(9)?;
    let raw: Vec<u8> = match with_body {
        true => r.get::<_, Option<Vec<u8>>>(10)?.unwrap_or_default(),
        false => Vec::new(),
    };
    Ok(UnprocessableRequest {
        id: r.get(1)?,
        dead_letter: r.get(2)?,
        source: r.get(3)?,
        received_at: ts(r.get(4)?),
        reason: r.get(5)?,
        state: match LetterState::parse(&state) {
            Some(LetterState::Dead) => RequestState::Unprocessable,
            Some(LetterState::Replayed) => RequestState::Rerun,
            None => {
                return Err(JournalError::Corrupt(format!(
                    "dead letter state `{state}`"
                )));
            }
        },
        event_id: r.get(7)?,
        rerun_at: r.get::<_, Option<i64>>(8)?.map(ts),
        headers: headers
            .map(|h| from_json(&h))
            .transpose()?
            .unwrap_or_default(),
        body: with_body.then(|| String::from_utf8_lossy(&raw).into_owned()),
        raw,
    })
}

pub(crate) fn list(
    c: &Connection,
    cursor: Option<&str>,
    limit: u64,
) -> Result<RequestPage, JournalError> {
    let below = match cursor {
        None => i64::MAX,
        Some(c) => c.parse::<i64>().ok().filter(|r| *r > 0).ok_or_else(|| {
            JournalError::Invalid(format!(
                "`{c}` is not a cursor: pass the `next` of the previous page"
            ))
        })?,
    };
    let limit = limit.clamp(1, 500);
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM dead_letters WHERE pipeline IS NULL AND rowid < ?1
         ORDER BY rowid DESC LIMIT ?2"
    ))?;
    let mut rows = stmt.query(params![below, limit as i64 + 1])?;
    let mut items = Vec::new();
    let mut last = None;
    let mut more = false;
    while let Some(r) = rows.next()? {
        if items.len() as u64 == limit {
            more = true;
            break;
        }
        last = Some(r.get::<_, i64>(0)?);
        items.push(from_row(r, false)?);
    }
    Ok(RequestPage {
        items,
        next: last.filter(|_| more).map(|l| l.to_string()),
    })
}

pub(crate) fn get(c: &Connection, id: &str) -> Result<Option<UnprocessableRequest>, JournalError> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {COLUMNS}, raw FROM dead_letters WHERE event_id = ?1 AND pipeline IS NULL
         ORDER BY rowid LIMIT 1"
    ))?;
    let mut rows = stmt.query(params![id])?;
    rows.next()?.map(|r| from_row(r, true)).transpose()
}

/// Journal the event and a pending delivery per pipeline (for the poller), and mark the
/// request re-run; a request re-run before is left alone.
pub(crate) fn rerun(c: &Connection, id: &str, new: &RerunEvent) -> Result<Rerun, JournalError> {
    let Some(request) = get(c, id)? else {
        return Ok(Rerun::NotFound);
    };
    if let Some(event_id) = request.event_id {
        return Ok(Rerun::Already { event_id });
    }
    let e = &new.event;
    let now = ms(Timestamp::now());
    c.prepare_cached(
        "INSERT INTO events (id, source, type, received_at, headers, payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        e.id,
        e.source,
        e.event_type,
        ms(e.received_at),
        to_json(&e.headers)?,
        to_json(&e.payload)?,
    ])?;
    for (i, pipeline) in new.pipelines.iter().enumerate() {
        insert_delivery(
            c,
            NewDelivery {
                order_key: new.order_keys.get(i).and_then(Option::as_deref),
                ..NewDelivery::pending(&e.id, pipeline, now)
            },
        )?;
    }
    c.prepare_cached(
        "UPDATE dead_letters SET state = ?2, replayed_at = ?3, rerun_event = ?4 WHERE id = ?1",
    )?
    .execute(params![
        request.dead_letter,
        LetterState::Replayed,
        now,
        e.id
    ])?;
    Ok(Rerun::Accepted {
        event_id: e.id.clone(),
        pipelines: new.pipelines.len(),
    })
}
