//! Schema migrations, versioned with `PRAGMA user_version`. Append only: a released
//! migration is never edited.

use rusqlite::Connection;

pub(super) const MIGRATIONS: &[&str] = &[
    // 1: events, deliveries, dead letters, dedupe keys.
    r#"
CREATE TABLE events (
  id          TEXT PRIMARY KEY,
  source      TEXT NOT NULL,
  type        TEXT NOT NULL,
  received_at INTEGER NOT NULL,       -- unix ms
  headers     TEXT NOT NULL,          -- JSON [[name, value], ...]
  payload     TEXT NOT NULL           -- JSON
);
CREATE INDEX events_received ON events(received_at);

CREATE TABLE deliveries (
  id              INTEGER PRIMARY KEY,
  event_id        TEXT NOT NULL,
  pipeline        TEXT NOT NULL,
  stage           INTEGER NOT NULL DEFAULT 0,
  state           TEXT NOT NULL,      -- pending | done | dead | replayed
  attempts        INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL,
  first_failed_at INTEGER,
  last_error      TEXT,
  snapshot        TEXT,               -- Event JSON as it enters `stage`, when not the stored event
  claimed_by      TEXT,               -- boot id of the process running it
  updated_at      INTEGER NOT NULL
);
CREATE INDEX deliveries_due ON deliveries(next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_event ON deliveries(event_id);

CREATE TABLE dead_letters (
  id              TEXT PRIMARY KEY,
  delivery_id     INTEGER,
  event_id        TEXT NOT NULL,
  source          TEXT NOT NULL,
  pipeline        TEXT,
  stage_index     INTEGER,
  stage_name      TEXT,
  error           TEXT NOT NULL,
  attempts        INTEGER NOT NULL,
  first_failed_at INTEGER NOT NULL,
  last_failed_at  INTEGER NOT NULL,
  created_at      INTEGER NOT NULL,
  state           TEXT NOT NULL DEFAULT 'dead',   -- dead | replayed
  replayed_at     INTEGER,
  event           TEXT,               -- Event JSON as it entered the failed stage
  raw             BLOB                -- request body, when it could not be decoded
);
CREATE INDEX dead_letters_created ON dead_letters(created_at);

CREATE TABLE dedupe (
  source     TEXT NOT NULL,
  key        TEXT NOT NULL,
  event_id   TEXT NOT NULL,
  expires_at INTEGER NOT NULL,
  PRIMARY KEY (source, key)
) WITHOUT ROWID;
CREATE INDEX dedupe_expires ON dedupe(expires_at);
"#,
    // 2: the fast path. An event routed to pipelines keeps their names in `pipelines`
    // and needs no `deliveries` row while its first run is in flight: `progress.done_below`
    // is the rowid below which every such run has finished or has a row of its own, and a
    // start materialises rows for whatever lies above it. Deduplication keys move onto the
    // event row (their lookups are served from memory, rebuilt from `events_dedupe` at start),
    // so accepting an event writes no randomly placed index page.
    r#"
ALTER TABLE events ADD COLUMN pipelines TEXT;       -- JSON ["name", ...] routed on the fast path
ALTER TABLE events ADD COLUMN dedupe_key TEXT;
ALTER TABLE events ADD COLUMN dedupe_until INTEGER; -- unix ms
ALTER TABLE events ADD COLUMN dedupe_hash INTEGER;  -- first 8 bytes of SHA-256(source, 0, key)
-- Covers the start-up scan that rebuilds the in-memory keys: no event row is read.
CREATE INDEX events_dedupe ON events(dedupe_until, dedupe_hash) WHERE dedupe_hash IS NOT NULL;
-- A join, not correlated subqueries: `dedupe` has no index on event_id, and this runs
-- once over every key a v1 journal holds.
UPDATE events SET dedupe_key = d.key, dedupe_until = d.expires_at
  FROM dedupe d WHERE d.event_id = events.id AND d.source = events.source;
DROP TABLE dedupe;
CREATE TABLE progress (
  id         INTEGER PRIMARY KEY CHECK (id = 1),
  done_below INTEGER NOT NULL
);
INSERT INTO progress (id, done_below) SELECT 1, COALESCE(MAX(rowid), 0) + 1 FROM events;
"#,
    // 3: destinations that fail. A pending delivery can be parked (`held`: its pipeline is
    // paused, or its sink's circuit is open): out of the due index, so a parked backlog costs
    // the poller nothing. Ordered pipelines give their deliveries an `order_key`; a delivery
    // runs only after every earlier pending one with the same key.
    r#"
ALTER TABLE deliveries ADD COLUMN held TEXT;        -- paused | circuit
ALTER TABLE deliveries ADD COLUMN order_key TEXT;
DROP INDEX deliveries_due;
CREATE INDEX deliveries_due ON deliveries(next_attempt_at) WHERE state = 'pending' AND held IS NULL;
CREATE INDEX deliveries_held ON deliveries(pipeline, stage) WHERE held IS NOT NULL;
CREATE INDEX deliveries_pending ON deliveries(pipeline) WHERE state = 'pending';
CREATE INDEX deliveries_order ON deliveries(pipeline, order_key) WHERE state = 'pending' AND order_key IS NOT NULL;
CREATE TABLE paused (
  pipeline  TEXT PRIMARY KEY,
  paused_at INTEGER NOT NULL
) WITHOUT ROWID;
"#,
    // 4: event history. Every run that made an attempt adds a row: where it ended and how.
    // Appended in event-id order (ids are UUIDv7, time-ordered), so the index grows at its
    // end; pruned with the event.
    r#"
CREATE TABLE attempts (
  id          INTEGER PRIMARY KEY,
  event_id    TEXT NOT NULL,
  pipeline    TEXT NOT NULL,
  stage       INTEGER NOT NULL,
  stage_name  TEXT NOT NULL,
  at          INTEGER NOT NULL,      -- unix ms, when the run ended
  duration_us INTEGER NOT NULL,
  result      TEXT NOT NULL,         -- delivered | dropped | retry | dead
  error       TEXT
);
CREATE INDEX attempts_event ON attempts(event_id);
"#,
    // 5: bulk replay jobs, and unprocessable requests that can be re-run. A job's progress
    // is its cursor (an events rowid: it walks down from the newest event at its creation)
    // and its counts, written in the same commit as each batch's replays. A request that
    // passed verification but could not become an event is a dead letter without a
    // pipeline; it now keeps the headers an event would keep, and the event a re-run made.
    r#"
CREATE TABLE replay_jobs (
  id          TEXT PRIMARY KEY,
  state       TEXT NOT NULL,          -- running | done | cancelled | failed
  pipeline    TEXT NOT NULL,
  source      TEXT NOT NULL,
  from_failed INTEGER NOT NULL,
  filter      TEXT NOT NULL,          -- JSON: the event filters as given
  plan        TEXT NOT NULL,          -- JSON: the filters as run (absolute times)
  batch       INTEGER NOT NULL,
  max_pending INTEGER NOT NULL,
  cursor      INTEGER,                -- events rowid below which it goes on; NULL once done
  matched     INTEGER NOT NULL DEFAULT 0,
  replayed    INTEGER NOT NULL DEFAULT 0,
  skipped     INTEGER NOT NULL DEFAULT 0,
  reasons     TEXT NOT NULL DEFAULT '{}', -- JSON {"why": count} of the skipped
  errors      INTEGER NOT NULL DEFAULT 0,
  error       TEXT,
  lease_owner TEXT,
  lease_until INTEGER,                -- unix ms
  created_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL,
  finished_at INTEGER
);
CREATE INDEX replay_jobs_running ON replay_jobs(lease_until) WHERE state = 'running';
ALTER TABLE dead_letters ADD COLUMN headers TEXT;      -- JSON [[name, value], ...] of a request
ALTER TABLE dead_letters ADD COLUMN rerun_event TEXT;  -- the event a re-run made of it
CREATE INDEX dead_letters_requests ON dead_letters(pipeline) WHERE pipeline IS NULL;
"#,
    // 6: the name of the stage a delivery waits at, beside its position: a reload that
    // inserts, removes or reorders stages resumes it at the same stage (NULL: by position,
    // as rows written before this were).
    r#"
ALTER TABLE deliveries ADD COLUMN stage_name TEXT;
"#,
    // 7: an event's history written one row per settle, not one per run. The runs that end
    // together (an event's first runs through its pipelines) are one row; ten pipelines
    // wrote ten `attempts` rows and ten index entries per event, as many bytes as the event
    // itself. Rows written before this stay in `attempts` and are read before these.
    r#"
CREATE TABLE attempt_runs (
  id       INTEGER PRIMARY KEY,
  event_id TEXT NOT NULL,
  runs     TEXT NOT NULL  -- JSON [[pipeline, stage, stage_name, at (unix ms), duration_us, result, error], ...]
);
CREATE INDEX attempt_runs_event ON attempt_runs(event_id);
"#,
];

/// Migration 2's one step SQL cannot do: hash the dedupe keys it moved from the v1 table.
fn hash_v1_keys(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    let keys: Vec<(i64, String, String)> = tx
        .prepare("SELECT rowid, source, dedupe_key FROM events WHERE dedupe_key IS NOT NULL")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let mut update = tx.prepare("UPDATE events SET dedupe_hash = ?2 WHERE rowid = ?1")?;
    for (rowid, source, key) in keys {
        update.execute(rusqlite::params![
            rowid,
            super::dedupe::key_hash(&source, &key)
        ])?;
    }
    Ok(())
}

/// Whether the database's schema is older than the current one, or not there yet (a file
/// `hookline serve` has only just created).
pub(crate) fn is_behind(conn: &Connection) -> rusqlite::Result<bool> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    Ok(behind(version))
}

fn behind(version: i64) -> bool {
    version < MIGRATIONS.len() as i64
}

/// Bring the database to the current schema. Refuses a database from a newer Hookline, and,
/// unless `may_migrate`, one from an older Hookline: a command beside a running service
/// reads the journal as that service wrote it and never changes the schema under it.
pub(crate) fn migrate(conn: &mut Connection, may_migrate: bool) -> Result<(), String> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    let current = MIGRATIONS.len() as i64;
    if version > current {
        return Err(format!(
            "the journal has schema version {version}, newer than this hookline understands ({current}); upgrade hookline"
        ));
    }
    if behind(version) && !may_migrate {
        let holder = "another hookline process holds it (a running `hookline serve`, or a command bringing it up to date)";
        return Err(if version == 0 {
            format!(
                "the journal is not set up yet and {holder}: run this command again in a moment"
            )
        } else {
            format!(
                "the journal has schema version {version}, older than this hookline's ({current}), and {holder}: restart the service with this hookline (it brings the journal up to date as it starts), then run this command again"
            )
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction().map_err(|e| e.to_string())?;
        tx.execute_batch(sql)
            .map_err(|e| format!("migration {}: {e}", i + 1))?;
        if i + 1 == 2 {
            hash_v1_keys(&tx).map_err(|e| format!("migration 2: {e}"))?;
        }
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| e.to_string())?;
    }
    Ok(())
}
