//! What every SQLite statement of the journal shares: time and JSON columns, the event
//! columns and their decoder, the one statement that creates a delivery row, and the Rust
//! functions the SQL calls.

use hookline_plugin_api::Event;
use jiff::Timestamp;
use rusqlite::{Connection, Row, params};

use crate::journal::JournalError;
use crate::journal::rules::{self, DeliveryState, LetterState};

/// The Rust functions the SQL calls, on every connection: `hookline_fold(text)` is
/// [`rules::fold`], so a filter folds case as the NATS journal does (SQL `lower()` folds ASCII
/// only).
pub(crate) fn register_functions(c: &Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    c.create_scalar_function(
        "hookline_fold",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            Ok(match ctx.get_raw(0) {
                rusqlite::types::ValueRef::Text(t) => {
                    Some(rules::fold(&String::from_utf8_lossy(t)))
                }
                _ => None,
            })
        },
    )
}

/// States are written through their enums; statements that select by state spell the word
/// (a partial index needs it literally), and `the_sql_spells_only_known_states` checks those.
impl rusqlite::ToSql for DeliveryState {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl rusqlite::ToSql for LetterState {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

pub(crate) fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

pub(crate) fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Result<String, JournalError> {
    serde_json::to_string(v).map_err(|e| JournalError::Corrupt(e.to_string()))
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, JournalError> {
    serde_json::from_str(s).map_err(|e| JournalError::Corrupt(e.to_string()))
}

/// An event's columns, in the order [`event_from_row`] reads them (prefix them with the
/// table's alias when joining).
pub(crate) const EVENT_COLUMNS: &str = "id, source, type, received_at, headers, payload";

/// The event stored at columns `first..first + 6` of a row ([`EVENT_COLUMNS`]).
pub(crate) fn event_from_row(r: &Row<'_>, first: usize) -> Result<Event, JournalError> {
    Ok(Event {
        id: r.get(first)?,
        source: r.get(first + 1)?,
        event_type: r.get(first + 2)?,
        received_at: ts(r.get(first + 3)?),
        headers: from_json(&r.get::<_, String>(first + 4)?)?,
        payload: from_json(&r.get::<_, String>(first + 5)?)?,
    })
}

/// A delivery row to create, pending from `next_attempt_at`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewDelivery<'a> {
    pub(crate) event_id: &'a str,
    pub(crate) pipeline: &'a str,
    pub(crate) stage: usize,
    /// The name of the stage at `stage` (see `Delivery::stage_name`).
    pub(crate) stage_name: Option<&'a str>,
    pub(crate) next_attempt_at: i64,
    /// The process that runs it now; `None`: the poller's.
    pub(crate) claimed_by: Option<&'a str>,
    /// The event as it enters `stage`, when not the stored event (JSON).
    pub(crate) snapshot: Option<&'a str>,
    pub(crate) updated_at: i64,
    /// Its ordering key in an ordered pipeline.
    pub(crate) order_key: Option<&'a str>,
}

impl<'a> NewDelivery<'a> {
    /// Due now at stage 0, on the stored event, for the poller.
    pub(crate) fn pending(event_id: &'a str, pipeline: &'a str, now: i64) -> Self {
        NewDelivery {
            event_id,
            pipeline,
            stage: 0,
            stage_name: None,
            next_attempt_at: now,
            claimed_by: None,
            snapshot: None,
            updated_at: now,
            order_key: None,
        }
    }
}

/// Create a pending delivery row; returns its id. The only statement that inserts one.
pub(crate) fn insert_delivery(c: &Connection, d: NewDelivery<'_>) -> Result<i64, JournalError> {
    c.prepare_cached(
        "INSERT INTO deliveries (event_id, pipeline, stage, state, attempts, next_attempt_at, claimed_by, snapshot, updated_at, order_key, stage_name)
         VALUES (?1, ?2, ?3, ?8, 0, ?4, ?5, ?6, ?7, ?9, ?10)",
    )?
    .execute(params![
        d.event_id,
        d.pipeline,
        d.stage as i64,
        d.next_attempt_at,
        d.claimed_by,
        d.snapshot,
        d.updated_at,
        DeliveryState::Pending,
        d.order_key,
        d.stage_name
    ])?;
    Ok(c.last_insert_rowid())
}
