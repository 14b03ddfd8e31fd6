//! The ceiling Hookline is measured against (`docs/performance.md`): the smallest axum
//! server that does what any webhook receiver must — read the body, check LeadShark's
//! signature (hex HMAC-SHA256 of the body in `X-Webhook-Signature`) in constant time,
//! append the body to a file, answer 200. No journal, no routing, no metrics, no logs.
//!
//! With `--durable`, it also answers only once the body is on disk, the least any
//! receiver that promises not to lose an acknowledged webhook must do. Requests hand their
//! bodies to one writer thread, which takes whatever has queued up, makes it durable in one
//! sync and then answers every one of them (a group commit, as Hookline's journal does):
//! - `--durable log`: appends the bodies to the `--out` file and `fdatasync`s it;
//! - `--durable sqlite`: inserts one row per body into `--db` (SQLite, WAL,
//!   `synchronous = FULL`, one transaction per group), then appends them to `--out`;
//! - `--durable sqlite-rows`: the same, with the rows Hookline's journal writes for an event
//!   of one pipeline: its `events` row (UUIDv7 id, kept headers, deduplication key) with its
//!   three indexes, and, in the next group's transaction, its history row (`attempt_runs`
//!   and its index) and the progress watermark. The same SQL, none of Hookline's machinery.
//!
//! ```sh
//! bench-baseline --listen 127.0.0.1:0 --secret S --out /tmp/baseline.jsonl [--durable log|sqlite|sqlite-rows --db FILE]
//! ```
//!
//! Prints `baseline listening on http://ADDR` once it accepts connections.

use std::fs::File;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::{Receiver, Sender, channel};
use tokio::sync::oneshot;

/// Bodies waiting for the writer; a request waits (on its task) when it is full.
const QUEUE: usize = 4096;
/// At most this many bodies a group.
const GROUP: usize = 1024;

struct App {
    /// Keyed once; cloned per request.
    key: Hmac<Sha256>,
    out: Out,
    /// `--durable sqlite-rows`.
    rows: bool,
}

/// What Hookline keeps of a request's headers: text values, minus signatures and length.
fn kept_headers(headers: &HeaderMap) -> String {
    let kept: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(name, _)| {
            !name.as_str().contains("signature") && name.as_str() != "content-length"
        })
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
        .collect();
    serde_json::to_string(&kept).unwrap_or_default()
}

enum Out {
    /// One `write` per request, under a lock so lines never interleave.
    File(Mutex<File>),
    /// The writer thread's queue; each body comes back answered once it is durable.
    Durable(Sender<Job>),
}

struct Job {
    line: Vec<u8>,
    /// `sqlite-rows`: the kept headers, as JSON.
    headers: Option<String>,
    done: oneshot::Sender<bool>,
}

async fn receive(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut tag = [0u8; 32];
    let decoded = headers
        .get("x-webhook-signature")
        .is_some_and(|v| hex::decode_to_slice(v.as_bytes(), &mut tag).is_ok());
    let mut mac = app.key.clone();
    mac.update(&body);
    // `verify_slice` compares in constant time.
    if !decoded || mac.verify_slice(&tag).is_err() {
        return StatusCode::UNAUTHORIZED;
    }
    let mut line = Vec::with_capacity(body.len() + 1);
    line.extend_from_slice(&body);
    line.push(b'\n');
    let written = match &app.out {
        Out::File(out) => match out.lock() {
            Ok(mut file) => file.write_all(&line).is_ok(),
            Err(_) => false,
        },
        Out::Durable(queue) => {
            let (done, answer) = oneshot::channel();
            let headers = app.rows.then(|| kept_headers(&headers));
            match queue
                .send(Job {
                    line,
                    headers,
                    done,
                })
                .await
            {
                Ok(()) => answer.await.unwrap_or(false),
                Err(_) => false,
            }
        }
    };
    if written {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

/// The next group: blocks for the first body, then takes what has queued behind it.
fn next_group(queue: &mut Receiver<Job>, group: &mut Vec<Job>) -> bool {
    let Some(first) = queue.blocking_recv() else {
        return false;
    };
    group.push(first);
    while group.len() < GROUP {
        match queue.try_recv() {
            Ok(job) => group.push(job),
            Err(_) => break,
        }
    }
    true
}

fn answer(group: &mut Vec<Job>, ok: bool) {
    for job in group.drain(..) {
        let _ = job.done.send(ok);
    }
}

/// `--durable log`: append each group and `fdatasync` it.
fn log_writer(mut file: File, mut queue: Receiver<Job>) {
    let mut group = Vec::with_capacity(GROUP);
    let mut buf = Vec::new();
    while next_group(&mut queue, &mut group) {
        buf.clear();
        for job in &group {
            buf.extend_from_slice(&job.line);
        }
        let ok = file.write_all(&buf).and_then(|()| file.sync_data()).is_ok();
        answer(&mut group, ok);
    }
}

/// `--durable sqlite` and `sqlite-rows`: one row per body (or Hookline's rows), one
/// transaction per group; the file after.
fn sqlite_writer(
    mut db: rusqlite::Connection,
    rows: bool,
    mut file: File,
    mut queue: Receiver<Job>,
) {
    let mut group = Vec::with_capacity(GROUP);
    let mut buf = Vec::new();
    // `sqlite-rows`: the events of the last group, settled in the next one.
    let mut settle: Vec<String> = Vec::new();
    let mut last_rowid = 0;
    while next_group(&mut queue, &mut group) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let committed = (|| -> rusqlite::Result<()> {
            let tx = db.transaction()?;
            if !rows {
                let mut insert =
                    tx.prepare_cached("INSERT INTO events (received_at, payload) VALUES (?1, ?2)")?;
                for job in &group {
                    insert.execute(rusqlite::params![now, &job.line[..job.line.len() - 1]])?;
                }
                drop(insert);
                return tx.commit();
            }
            {
                let mut history =
                    tx.prepare_cached("INSERT INTO attempt_runs (event_id, runs) VALUES (?1, ?2)")?;
                for id in settle.drain(..) {
                    let runs = format!(r#"[["archive",0,"file",{now},12,"delivered",null]]"#);
                    history.execute(rusqlite::params![id, runs])?;
                }
                tx.prepare_cached("UPDATE progress SET done_below = ?1 WHERE id = 1")?
                    .execute([last_rowid + 1])?;
                let mut insert = tx.prepare_cached(
                    "INSERT INTO events (id, source, type, received_at, headers, payload, pipelines, dedupe_key, dedupe_until, dedupe_hash)
                     VALUES (?1, 'leadshark', 'email.captured', ?2, ?3, ?4, '[\"archive\"]', ?5, ?6, ?7)",
                )?;
                for job in &group {
                    let id = uuid::Uuid::now_v7().to_string();
                    let body = &job.line[..job.line.len() - 1];
                    let digest = Sha256::digest(body);
                    let key = hex::encode(&digest[..16]);
                    let hash = i64::from_le_bytes(digest[16..24].try_into().unwrap_or_default());
                    insert.execute(rusqlite::params![
                        id,
                        now,
                        job.headers.as_deref().unwrap_or("[]"),
                        body,
                        key,
                        now + 86_400_000,
                        hash
                    ])?;
                    last_rowid = tx.last_insert_rowid();
                    settle.push(id);
                }
            }
            tx.commit()
        })();
        buf.clear();
        for job in &group {
            buf.extend_from_slice(&job.line);
        }
        answer(&mut group, committed.is_ok());
        if committed.is_ok() {
            let _ = file.write_all(&buf);
        }
    }
}

fn open_db(path: &str, rows: bool) -> rusqlite::Result<rusqlite::Connection> {
    let db = rusqlite::Connection::open(path)?;
    db.pragma_update(None, "journal_mode", "WAL")?;
    db.pragma_update(None, "synchronous", "FULL")?;
    db.execute_batch(if rows {
        // The tables and indexes of Hookline's journal (core/src/journal/sqlite/schema.rs)
        // that accepting and settling an event of one pipeline writes.
        "CREATE TABLE IF NOT EXISTS events (
           id TEXT PRIMARY KEY, source TEXT NOT NULL, type TEXT NOT NULL,
           received_at INTEGER NOT NULL, headers TEXT NOT NULL, payload TEXT NOT NULL,
           pipelines TEXT, dedupe_key TEXT, dedupe_until INTEGER, dedupe_hash INTEGER
         );
         CREATE INDEX IF NOT EXISTS events_received ON events(received_at);
         CREATE INDEX IF NOT EXISTS events_dedupe ON events(dedupe_until, dedupe_hash)
           WHERE dedupe_hash IS NOT NULL;
         CREATE TABLE IF NOT EXISTS progress (
           id INTEGER PRIMARY KEY CHECK (id = 1), done_below INTEGER NOT NULL
         );
         INSERT OR IGNORE INTO progress (id, done_below) VALUES (1, 1);
         CREATE TABLE IF NOT EXISTS attempt_runs (
           id INTEGER PRIMARY KEY, event_id TEXT NOT NULL, runs TEXT NOT NULL
         );
         CREATE INDEX IF NOT EXISTS attempt_runs_event ON attempt_runs(event_id);"
    } else {
        "CREATE TABLE IF NOT EXISTS events (
           id          INTEGER PRIMARY KEY,
           received_at INTEGER NOT NULL,
           payload     BLOB NOT NULL
         );"
    })?;
    Ok(db)
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let listen = arg(&args, "--listen").unwrap_or_else(|| "127.0.0.1:0".into());
    let secret = arg(&args, "--secret")
        .or_else(|| std::env::var("LEADSHARK_SECRET").ok())
        .ok_or("--secret (or LEADSHARK_SECRET) is required")?;
    let out = arg(&args, "--out").ok_or("--out FILE is required")?;
    let file = File::options().create(true).append(true).open(&out)?;
    let durable = arg(&args, "--durable");
    let rows = durable.as_deref() == Some("sqlite-rows");
    let out = match durable.as_deref() {
        None => Out::File(Mutex::new(file)),
        Some(mode @ ("log" | "sqlite" | "sqlite-rows")) => {
            let (queue, jobs) = channel(QUEUE);
            let writer = std::thread::Builder::new().name("writer".into());
            if mode == "log" {
                writer.spawn(move || log_writer(file, jobs))?;
            } else {
                let db = arg(&args, "--db").ok_or("--durable sqlite needs --db FILE")?;
                let db = open_db(&db, rows)?;
                writer.spawn(move || sqlite_writer(db, rows, file, jobs))?;
            }
            Out::Durable(queue)
        }
        Some(other) => {
            return Err(format!("--durable {other}: expected log, sqlite or sqlite-rows").into());
        }
    };
    let app = Arc::new(App {
        key: Hmac::new_from_slice(secret.as_bytes())?,
        out,
        rows,
    });
    let router = Router::new()
        .route("/webhooks/leadshark", post(receive))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("baseline listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    axum::serve(listener, router).await?;
    Ok(())
}
