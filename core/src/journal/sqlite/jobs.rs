//! Bulk replay jobs: their rows, leases, and the batch that replays events and records the
//! job's progress in one savepoint (so in one commit).

use std::collections::BTreeMap;

use jiff::Timestamp;
use rusqlite::{Connection, Row, params};

use super::history;
use super::rows::{from_json, ms, to_json, ts};
use crate::journal::{JobBatch, JobState, JournalError, Lease, NewReplayJob, ReplayJob, Replayed};

impl rusqlite::ToSql for JobState {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

const COLUMNS: &str = "id, state, pipeline, source, from_failed, filter, plan, batch, max_pending,
     cursor, matched, replayed, skipped, reasons, errors, error, lease_owner, lease_until,
     created_at, updated_at, finished_at";

fn from_row(r: &Row<'_>) -> Result<ReplayJob, JournalError> {
    let state: String = r.get(1)?;
    let cursor: Option<i64> = r.get(9)?;
    let count = |i: usize| -> rusqlite::Result<u64> { Ok(r.get::<_, i64>(i)?.max(0) as u64) };
    Ok(ReplayJob {
        id: r.get(0)?,
        state: JobState::parse(&state)
            .ok_or_else(|| JournalError::Corrupt(format!("replay job state `{state}`")))?,
        pipeline: r.get(2)?,
        source: r.get(3)?,
        from_failed: r.get(4)?,
        filter: from_json(&r.get::<_, String>(5)?)?,
        plan: from_json(&r.get::<_, String>(6)?)?,
        batch: r.get::<_, i64>(7)?.clamp(1, u32::MAX as i64) as u32,
        max_pending: count(8)?,
        cursor: cursor.map(|c| c.to_string()),
        matched_so_far: count(10)?,
        replayed: count(11)?,
        skipped: count(12)?,
        skipped_reasons: from_json(&r.get::<_, String>(13)?)?,
        errors: count(14)?,
        error: r.get(15)?,
        lease_owner: r.get(16)?,
        lease_until: r.get::<_, Option<i64>>(17)?.map(ts),
        created_at: ts(r.get(18)?),
        updated_at: ts(r.get(19)?),
        finished_at: r.get::<_, Option<i64>>(20)?.map(ts),
    })
}

pub(crate) fn get(c: &Connection, id: &str) -> Result<Option<ReplayJob>, JournalError> {
    let mut stmt = c.prepare_cached(&format!("SELECT {COLUMNS} FROM replay_jobs WHERE id = ?1"))?;
    let mut rows = stmt.query(params![id])?;
    rows.next()?.map(from_row).transpose()
}

pub(crate) fn list(c: &Connection, limit: u64) -> Result<Vec<ReplayJob>, JournalError> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM replay_jobs ORDER BY created_at DESC, id DESC LIMIT ?1"
    ))?;
    let mut rows = stmt.query(params![limit.clamp(1, 1000) as i64])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(from_row(r)?);
    }
    Ok(out)
}

/// A new running job, starting above the newest event there is now: events that arrive
/// later are not the job's.
pub(crate) fn create(c: &Connection, job: &NewReplayJob) -> Result<ReplayJob, JournalError> {
    let id = uuid::Uuid::now_v7().to_string();
    let now = ms(Timestamp::now());
    let top: i64 = c.query_row("SELECT COALESCE(MAX(rowid), 0) + 1 FROM events", [], |r| {
        r.get(0)
    })?;
    c.prepare_cached(
        "INSERT INTO replay_jobs (id, state, pipeline, source, from_failed, filter, plan, batch,
           max_pending, cursor, lease_owner, lease_until, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13)",
    )?
    .execute(params![
        id,
        JobState::Running,
        job.pipeline,
        job.source,
        job.from_failed,
        to_json(&job.filter)?,
        to_json(&job.plan)?,
        i64::from(job.batch.max(1)),
        i64::try_from(job.max_pending).unwrap_or(i64::MAX),
        top,
        job.owner,
        job.owner.as_ref().map(|_| ms(job.lease_until)),
        now,
    ])?;
    get(c, &id)?.ok_or_else(|| JournalError::Corrupt(format!("replay job {id} vanished")))
}

pub(crate) fn cancel(c: &Connection, id: &str) -> Result<Option<ReplayJob>, JournalError> {
    let now = ms(Timestamp::now());
    c.prepare_cached(
        "UPDATE replay_jobs SET state = ?2, finished_at = ?3, updated_at = ?3, lease_owner = NULL, lease_until = NULL
         WHERE id = ?1 AND state = 'running'",
    )?
    .execute(params![id, JobState::Cancelled, now])?;
    get(c, id)
}

/// The lease condition: no holder, the holder itself, a lease run out, or a holder named
/// by `take_from`'s prefix.
const TAKEABLE: &str = "(lease_owner IS NULL OR lease_owner = ?2 OR lease_until <= ?3
      OR (?4 IS NOT NULL AND substr(lease_owner, 1, length(?4)) = ?4))";

pub(crate) fn lease(
    c: &Connection,
    id: &str,
    lease: &Lease,
) -> Result<Option<ReplayJob>, JournalError> {
    let now = ms(Timestamp::now());
    let taken = c
        .prepare_cached(&format!(
            "UPDATE replay_jobs SET lease_owner = ?2, lease_until = ?5
             WHERE id = ?1 AND state = 'running' AND {TAKEABLE}"
        ))?
        .execute(params![
            id,
            lease.owner,
            now,
            lease.take_from,
            ms(lease.until)
        ])?;
    match taken {
        0 => Ok(None),
        _ => get(c, id),
    }
}

pub(crate) fn release(c: &Connection, id: &str, owner: &str) -> Result<(), JournalError> {
    c.prepare_cached(
        "UPDATE replay_jobs SET lease_owner = NULL, lease_until = NULL WHERE id = ?1 AND lease_owner = ?2",
    )?
    .execute(params![id, owner])?;
    Ok(())
}

pub(crate) fn claimable(
    c: &Connection,
    now: Timestamp,
    take_from: Option<&str>,
) -> Result<Vec<String>, JournalError> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT id FROM replay_jobs WHERE state = 'running' AND {TAKEABLE}
         ORDER BY created_at LIMIT 100"
    ))?;
    // `?2`, the runner itself, is no one here: a runner knows the jobs it runs.
    let ids = stmt
        .query_map(params!["", Option::<&str>::None, ms(now), take_from], |r| {
            r.get(0)
        })?
        .collect::<Result<_, _>>()?;
    Ok(ids)
}

/// What a batch did, for the journal's counters.
pub(crate) struct BatchDone {
    pub(crate) job: Option<ReplayJob>,
    /// Deliveries it created.
    pub(crate) queued: u64,
    /// Dead letters it sent back in (`from_failed`).
    pub(crate) revived: u64,
}

/// Replay the batch's events and write the job's progress: all or nothing (the caller's
/// savepoint), and only while `batch.owner` holds the running job.
pub(crate) fn run_batch(c: &Connection, batch: &JobBatch) -> Result<BatchDone, JournalError> {
    let none = BatchDone {
        job: None,
        queued: 0,
        revived: 0,
    };
    let Some(job) = get(c, &batch.job)? else {
        return Ok(none);
    };
    if job.state != JobState::Running || job.lease_owner.as_deref() != Some(&batch.owner) {
        return Ok(none);
    }
    let next: Option<i64> = match &batch.next {
        None => None,
        Some(n) => Some(
            n.parse()
                .map_err(|_| JournalError::Invalid(format!("`{n}` is not an events cursor")))?,
        ),
    };
    let (mut replayed, mut skipped) = (0u64, 0u64);
    let mut reasons: BTreeMap<String, u64> = job.skipped_reasons.clone();
    for id in &batch.ids {
        match history::replay_event(c, id, &job.pipeline, job.from_failed)? {
            Replayed::Queued { .. } => replayed += 1,
            Replayed::NotFound => {
                skipped += 1;
                *reasons
                    .entry("the event is no longer retained".into())
                    .or_default() += 1;
            }
            Replayed::Skipped { reason } => {
                skipped += 1;
                *reasons.entry(reason).or_default() += 1;
            }
        }
    }
    let now = ms(Timestamp::now());
    let (state, finished) = match next {
        Some(_) => (JobState::Running, None),
        None => (JobState::Done, Some(now)),
    };
    let matched = batch.ids.len() as i64;
    c.prepare_cached(
        "UPDATE replay_jobs SET state = ?2, cursor = ?3, matched = matched + ?4,
           replayed = replayed + ?5, skipped = skipped + ?6, reasons = ?7, updated_at = ?8,
           finished_at = ?9, lease_until = ?10,
           lease_owner = CASE WHEN ?9 IS NULL THEN lease_owner END
         WHERE id = ?1",
    )?
    .execute(params![
        batch.job,
        state,
        next,
        matched,
        replayed as i64,
        skipped as i64,
        to_json(&reasons)?,
        now,
        finished,
        finished.map_or(Some(ms(batch.lease_until)), |_| None),
    ])?;
    Ok(BatchDone {
        job: get(c, &batch.job)?,
        queued: replayed,
        revived: if job.from_failed { replayed } else { 0 },
    })
}

/// Count a failed batch; `fatal` fails the job.
pub(crate) fn error(
    c: &Connection,
    id: &str,
    owner: &str,
    error: &str,
    fatal: bool,
) -> Result<(), JournalError> {
    let now = ms(Timestamp::now());
    let (state, finished) = match fatal {
        true => (JobState::Failed, Some(now)),
        false => (JobState::Running, None),
    };
    c.prepare_cached(
        "UPDATE replay_jobs SET errors = errors + 1, error = ?3, state = ?4, updated_at = ?5,
           finished_at = ?6
         WHERE id = ?1 AND state = 'running' AND lease_owner = ?2",
    )?
    .execute(params![id, owner, error, state, now, finished])?;
    Ok(())
}

pub(crate) fn pending_in(c: &Connection, pipeline: &str) -> Result<u64, JournalError> {
    let n: i64 = c
        .prepare_cached(
            "SELECT COUNT(*) FROM deliveries WHERE pipeline = ?1 AND state = 'pending'",
        )?
        .query_row(params![pipeline], |r| r.get(0))?;
    Ok(n.max(0) as u64)
}
