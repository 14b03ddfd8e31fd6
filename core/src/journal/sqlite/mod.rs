//! The embedded journal: one SQLite file in WAL mode with `synchronous = FULL`.
//!
//! One writer thread owns the connection. Callers send it jobs; it takes every job waiting
//! (up to [`MAX_BATCH`]), runs each in its own savepoint inside one transaction, commits
//! once, and only then answers each caller. That is group commit: under load, one fsync
//! covers many requests, so durability does not cost throughput. A failing job rolls back
//! its savepoint alone.
//!
//! Everything that only reads — dead-letter listings and lookups, replay and purge
//! selection, counts — runs on a few read-only connections instead ([`read`]), so no read
//! ever waits in the writer's queue or holds up a commit. The writer's queue is bounded
//! ([`JOB_QUEUE`]): callers wait for room, they never fail for want of it.
//!
//! The common case writes little: accepting an event inserts its row (its deduplication
//! key with it, looked up in memory) and nothing else; a first run that is delivered
//! writes only its attempt to the event's history ([`history`]), one appended row. See
//! [`fast`] for how that stays crash-safe.

mod dead;
pub(crate) mod dedupe;
mod deliveries;
mod events;
pub(crate) mod fast;
mod history;
mod jobs;
mod maintenance;
mod read;
mod requests;
mod rows;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot};

use read::{Health, Readers};

use super::{
    Accepted, Attempt, Continuation, DeadLetter, DeadLetterFilter, Delivery, Depths, Erased,
    EventFilter, EventPage, EventRecord, Hold, JobBatch, Journal, JournalError, Lease,
    NewDeadLetter, NewEvent, NewReplayJob, Page, Release, ReplayJob, Replayed, RequestPage, Rerun,
    RerunEvent, Settlement, UnprocessableRequest,
};

/// Most jobs committed together.
pub(crate) const MAX_BATCH: usize = 512;

/// Jobs waiting for the writer, at most. A caller finding it full waits for room (async),
/// so a burst queues in the callers — whose own bounds (connections, run slots) hold —
/// rather than in an ever-growing channel.
pub(crate) const JOB_QUEUE: usize = 4096;

/// Rows (events, then delivery rows) a prune deletes per statement:
/// each batch is a writer job of its own, so accepts commit between batches.
pub(crate) const PRUNE_BATCH: usize = 1000;

/// How often the dead-letter count is checked against the file (for changes made by
/// another process, such as `hookline dlq`), at most.
const DEAD_RESYNC: Duration = Duration::from_secs(1);

type Reply = Box<dyn FnOnce(Option<&str>) + Send>;

/// What the writer thread owns: the connection and the in-memory state that goes with it.
pub(crate) struct Ctx {
    pub(crate) conn: Connection,
    pub(crate) fast: fast::FastPath,
    pub(crate) dedupe: dedupe::Dedupe,
    pub(crate) boot: String,
    /// The serving process (it holds the journal's lock): the only one that recovers first
    /// runs at open and moves the watermark. The `hookline dlq` commands open the journal
    /// beside a running service and must do neither.
    pub(crate) owner: bool,
    pub(crate) health: Arc<Health>,
}

/// A unit of work for the writer thread.
trait Job: Send {
    /// Run inside the batch's transaction; the reply is sent after the commit.
    fn run(self: Box<Self>, ctx: &mut Ctx) -> Reply;
    /// The batch could not start: answer without running.
    fn fail(self: Box<Self>, error: &str);
}

struct Call<I, R, F> {
    /// What the job reads and the caller made: sent back with the reply, so that it is
    /// freed on the caller's thread. Freed here, every block of it would go back to the
    /// caller's malloc arena under that arena's lock, against the callers allocating in it
    /// (8.7 % of a load run's CPU samples waited on those locks).
    input: I,
    f: F,
    /// Writes SQL: runs in a savepoint of its own. Jobs that only read or touch memory
    /// skip the two statements.
    savepoint: bool,
    tx: oneshot::Sender<(I, Result<R, JournalError>)>,
}

impl<I, R, F> Job for Call<I, R, F>
where
    I: Send + 'static,
    R: Send + 'static,
    F: FnOnce(&mut Ctx, &I) -> Result<R, JournalError> + Send + 'static,
{
    fn run(self: Box<Self>, ctx: &mut Ctx) -> Reply {
        let Call {
            input,
            f,
            savepoint,
            tx,
        } = *self;
        let result = if savepoint {
            in_savepoint(ctx, |ctx| f(ctx, &input))
        } else {
            f(ctx, &input)
        };
        if let Err(e) = &result {
            ctx.health.check_journal(e);
        }
        Box::new(move |commit_error: Option<&str>| {
            let out = match (result, commit_error) {
                (Ok(v), None) => Ok(v),
                (Ok(_), Some(e)) => Err(JournalError::Open(format!("journal commit failed: {e}"))),
                (Err(e), _) => Err(e),
            };
            let _ = tx.send((input, out));
        })
    }

    fn fail(self: Box<Self>, error: &str) {
        let Call { input, tx, .. } = *self;
        let _ = tx.send((
            input,
            Err(JournalError::Open(format!(
                "journal transaction failed: {error}"
            ))),
        ));
    }
}

/// SQLite journal. Cheap to clone; all clones share the writer thread.
#[derive(Clone)]
pub struct SqliteJournal {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    jobs: mpsc::Sender<Box<dyn Job>>,
    readers: Arc<Readers>,
    health: Arc<Health>,
    boot: String,
    pending: AtomicU64,
    dead: Mutex<DeadCount>,
    /// Group commits so far; read by tests (`commits`).
    #[cfg_attr(not(test), allow(dead_code))]
    commits: Arc<AtomicU64>,
}

/// Dead letters waiting, as this process counts them: kept current by its own writes and
/// checked against the file at most every [`DEAD_RESYNC`] for other processes' changes.
struct DeadCount {
    n: u64,
    /// Bumped by every local change, so a recount that raced one is not stored.
    changes: u64,
    checked: Instant,
}

impl std::fmt::Debug for SqliteJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteJournal")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl SqliteJournal {
    /// Open (creating if needed), migrate and recover, for the process that serves from it
    /// (the caller holds the journal's lock). Errors say what is wrong with the file.
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        Self::open_as(path, true, true)
    }

    /// Open beside a service that may be running (`hookline dlq`): dead letters only; no
    /// recovery, the watermark left alone. The schema is brought up to date only if
    /// `may_migrate` (no service holds the journal); else an older schema is refused.
    pub(crate) fn open_shared(path: &Path, may_migrate: bool) -> Result<Self, JournalError> {
        Self::open_as(path, false, may_migrate)
    }

    /// Whether the journal at `path` has a schema older than this hookline's (one that
    /// opening it with `may_migrate` would change).
    pub(crate) fn is_behind(path: &Path) -> Result<bool, JournalError> {
        let read = || {
            let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
            conn.busy_timeout(BUSY_TIMEOUT)?;
            schema::is_behind(&conn)
        };
        read().map_err(|e| open_error(path, &e.to_string()))
    }

    fn open_as(path: &Path, owner: bool, may_migrate: bool) -> Result<Self, JournalError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                JournalError::Open(format!(
                    "cannot create the journal's directory {}: {e}",
                    parent.display()
                ))
            })?;
        }
        let mut conn = open_connection(path).map_err(|e| open_error(path, &e.to_string()))?;
        // Only the serving process checks the whole file: `hookline dlq` may still salvage
        // dead letters from a journal that is partly damaged.
        if owner {
            quick_check(&conn, path)?;
        }
        schema::migrate(&mut conn, may_migrate).map_err(|e| open_error(path, &e))?;
        if owner {
            // Circuits start closed: what an earlier process parked behind one is due again.
            deliveries::release(
                &conn,
                &Release {
                    hold: Hold::Circuit,
                    pipeline: None,
                    stage: None,
                    limit: None,
                },
            )
            .map_err(|e| open_error(path, &e.to_string()))?;
        }
        let now = Timestamp::now();
        let (fast, dedupe) = if owner {
            events::recover(&mut conn, now).map_err(|e| open_error(path, &e.to_string()))?
        } else {
            Default::default()
        };
        let pending =
            deliveries::count_pending(&conn).map_err(|e| open_error(path, &e.to_string()))?;
        let dead = dead::count_dead(&conn).map_err(|e| open_error(path, &e.to_string()))?;
        let boot = uuid::Uuid::now_v7().to_string();
        let health = Arc::new(Health::new(path));
        let ctx = Ctx {
            conn,
            fast,
            dedupe,
            boot: boot.clone(),
            owner,
            health: health.clone(),
        };
        let (tx, rx) = mpsc::channel::<Box<dyn Job>>(JOB_QUEUE);
        let commits = Arc::new(AtomicU64::new(0));
        let counter = commits.clone();
        std::thread::Builder::new()
            .name("hookline-journal".into())
            .spawn(move || writer(ctx, rx, &counter))
            .map_err(|e| JournalError::Open(format!("cannot start the journal writer: {e}")))?;
        Ok(SqliteJournal {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                jobs: tx,
                readers: Arc::new(Readers::new(path, health.clone())),
                health,
                boot,
                pending: AtomicU64::new(pending),
                dead: Mutex::new(DeadCount {
                    n: dead,
                    changes: 0,
                    checked: Instant::now(),
                }),
                commits,
            }),
        })
    }

    /// Pending deliveries as this process counts them (no query): for backpressure.
    pub(crate) fn pending_now(&self) -> u64 {
        self.inner.pending.load(Ordering::Relaxed)
    }

    /// At shutdown, once the workers have stopped: record every first run still unfinished
    /// as a delivery row, so the next start runs exactly those again.
    /// Then fold the WAL into the main file, so that after a clean stop the journal is that
    /// one file (what a copy, a backup or an integrity check at the next start sees).
    pub(crate) async fn close(&self) -> Result<(), JournalError> {
        self.call_ctx(true, |ctx| events::advance(ctx, true))
            .await?;
        let path = self.inner.path.clone();
        tokio::task::spawn_blocking(move || checkpoint(&path))
            .await
            .map_err(|e| JournalError::Open(format!("the final checkpoint did not finish: {e}")))?
    }

    /// A new journal file at `path` as the Hookline one migration before this one left it:
    /// the schema of every migration but the last (tests of what opening it does).
    #[cfg(test)]
    pub(crate) fn write_previous_schema(path: &Path) {
        let conn = Connection::open(path).expect("open");
        let previous = schema::MIGRATIONS.len() - 1;
        for sql in &schema::MIGRATIONS[..previous] {
            conn.execute_batch(sql).expect("an earlier migration");
        }
        conn.pragma_update(None, "user_version", previous as i64)
            .expect("user_version");
    }

    /// The journal's schema version (`PRAGMA user_version`).
    #[cfg(test)]
    pub(crate) fn schema_version(path: &Path) -> i64 {
        Connection::open(path)
            .expect("open")
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("user_version")
    }

    /// Transactions committed so far (group commits, not jobs).
    #[cfg(test)]
    pub(crate) fn commits(&self) -> u64 {
        self.inner.commits.load(Ordering::Relaxed)
    }

    /// Run `f` on the writer thread inside the current batch's transaction.
    async fn call<R, F>(&self, f: F) -> Result<R, JournalError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, JournalError> + Send + 'static,
    {
        self.call_ctx(true, move |ctx| f(&ctx.conn)).await
    }

    /// Run `f` on the writer thread with its state, in a savepoint if `savepoint`.
    async fn call_ctx<R, F>(&self, savepoint: bool, f: F) -> Result<R, JournalError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Ctx) -> Result<R, JournalError> + Send + 'static,
    {
        self.call_with(savepoint, (), move |ctx, ()| f(ctx)).await
    }

    /// [`Self::call_ctx`] for a job that reads `input`, which this caller allocated: the
    /// writer hands it back and it is freed here, not on the writer thread (see [`Call`]).
    async fn call_with<I, R, F>(&self, savepoint: bool, input: I, f: F) -> Result<R, JournalError>
    where
        I: Send + 'static,
        R: Send + 'static,
        F: FnOnce(&mut Ctx, &I) -> Result<R, JournalError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(Call {
            input,
            f,
            savepoint,
            tx,
        });
        self.inner
            .jobs
            .send(job)
            .await
            .map_err(|_| JournalError::Closed)?;
        let (input, result) = rx.await.map_err(|_| JournalError::Closed)?;
        drop(input);
        result
    }

    /// Run `f` on a read-only connection, never on the writer thread.
    async fn read<R, F>(&self, f: F) -> Result<R, JournalError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, JournalError> + Send + 'static,
    {
        self.inner.readers.run(f).await
    }

    fn dead_count(&self) -> std::sync::MutexGuard<'_, DeadCount> {
        self.inner
            .dead
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// This process wrote (`n > 0`) or removed (`n < 0`) dead letters.
    fn add_dead(&self, n: i64) {
        let mut dead = self.dead_count();
        dead.n = dead.n.saturating_add_signed(n);
        dead.changes += 1;
    }

    /// Recount dead letters in the background if the last count is older than
    /// [`DEAD_RESYNC`]: `/metrics` and `/readyz` never wait for a count.
    fn resync_dead(&self) {
        let changes = {
            let mut dead = self.dead_count();
            if dead.checked.elapsed() < DEAD_RESYNC {
                return;
            }
            dead.checked = Instant::now();
            dead.changes
        };
        let this = self.clone();
        tokio::spawn(async move {
            match this.read(|c| Ok(dead::count_dead(c)?)).await {
                Ok(n) => {
                    let mut dead = this.dead_count();
                    if dead.changes == changes {
                        dead.n = n;
                    }
                }
                Err(e) => tracing::debug!(error = %e, "could not recount dead letters"),
            }
        });
    }

    /// Prune `batch` rows per writer job, yielding between jobs, so that accepts commit
    /// between batches however much there is to delete. Returns the events removed and
    /// the number of batches that took.
    async fn prune_in_batches(
        &self,
        before: Timestamp,
        now: Timestamp,
        batch: usize,
    ) -> Result<(u64, usize), JournalError> {
        let (mut removed, mut batches) = (0u64, 0usize);
        let mut after = maintenance::PruneCursor::default();
        loop {
            let (n, next) = self
                .call(move |c| maintenance::prune_events(c, before, now, after, batch))
                .await?;
            removed += n as u64;
            batches += 1;
            match next {
                Some(next) if n >= batch => after = next,
                _ => break,
            }
            tokio::task::yield_now().await;
        }
        let mut after = 0i64;
        loop {
            let (n, last) = self
                .call(move |c| maintenance::prune_deliveries(c, before, after, batch))
                .await?;
            if n < batch {
                break;
            }
            after = last;
            tokio::task::yield_now().await;
        }
        // Which keys are still inside their window is read on the side; the writer only
        // forgets those below it (keys it adds meanwhile are above).
        let live = self
            .read(move |c| maintenance::live_dedupe_from(c, now))
            .await?;
        self.call_ctx(false, move |ctx| {
            ctx.dedupe.expire_below(live);
            Ok(())
        })
        .await?;
        Ok((removed, batches))
    }

    fn add_pending(&self, n: i64) {
        if n >= 0 {
            self.inner.pending.fetch_add(n as u64, Ordering::Relaxed);
        } else {
            let _ = self
                .inner
                .pending
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                    Some(p.saturating_sub(n.unsigned_abs()))
                });
        }
    }
}

/// How long a connection waits for another's lock on the file before it gives up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Reading the header is what detects "file is not a database".
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "could not switch to WAL mode (got {mode})"
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // The statement journal behind each job's savepoint grows through a batch's transaction
    // and, on disk, cost a `pwrite` per page (a sixth of the writer thread under fan-out).
    // In memory it holds the pages one transaction changes; durability is the WAL's.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    rows::register_functions(&conn)?;
    Ok(conn)
}

/// `PRAGMA quick_check` over the whole file: a damaged page is found at start, not by the
/// first webhook it refuses.
fn quick_check(conn: &Connection, path: &Path) -> Result<(), JournalError> {
    let checked = (|| -> rusqlite::Result<Vec<String>> {
        let mut stmt = conn.prepare("PRAGMA quick_check(5)")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.collect()
    })();
    match checked {
        Ok(rows) if rows.len() == 1 && rows[0] == "ok" => Ok(()),
        Ok(rows) => Err(JournalError::Open(read::corrupt_message(
            path,
            &rows.join("; "),
        ))),
        Err(e) if read::is_corrupt(&e) => Err(JournalError::Open(read::corrupt_message(
            path,
            &e.to_string(),
        ))),
        Err(e) => Err(open_error(path, &e.to_string())),
    }
}

/// `PRAGMA wal_checkpoint(TRUNCATE)` from a connection of its own: the writer's is always
/// inside a transaction when it runs a job. Best effort: a reader still open leaves the
/// WAL for the next start.
fn checkpoint(path: &Path) -> Result<(), JournalError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(())
}

fn open_error(path: &Path, e: &str) -> JournalError {
    JournalError::Open(format!("cannot open the journal {}: {e}", path.display()))
}

/// Run a statement the writer runs for every job or batch from the statement cache:
/// `execute_batch` would parse it again each time.
fn exec_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn in_savepoint<R>(
    ctx: &mut Ctx,
    f: impl FnOnce(&mut Ctx) -> Result<R, JournalError>,
) -> Result<R, JournalError> {
    exec_cached(&ctx.conn, "SAVEPOINT job")?;
    // Jobs change `ctx.fast` only after their last fallible statement, so a job that
    // fails leaves it as it found it, like its SQL.
    match f(ctx) {
        Ok(v) => {
            exec_cached(&ctx.conn, "RELEASE job")?;
            Ok(v)
        }
        Err(e) => {
            let _ = ctx.conn.execute_batch("ROLLBACK TO job; RELEASE job");
            Err(e)
        }
    }
}

/// The serving journal's dedupe keys on `/metrics` (`hookline dlq`'s shared open holds
/// none and says nothing).
fn publish_dedupe(ctx: &Ctx) {
    if ctx.owner {
        crate::internal_events::journal_dedupe(ctx.dedupe.len(), ctx.dedupe.allocation_size());
    }
}

fn writer(mut ctx: Ctx, mut jobs: mpsc::Receiver<Box<dyn Job>>, commits: &AtomicU64) {
    publish_dedupe(&ctx);
    while let Some(first) = jobs.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = exec_cached(&ctx.conn, "BEGIN IMMEDIATE") {
            ctx.health.check(&e);
            let msg = e.to_string();
            for job in batch {
                job.fail(&msg);
            }
            continue;
        }
        let size = batch.len();
        // The fast path changes with the batch's SQL; a failed commit puts it back.
        ctx.fast.begin();
        let replies: Vec<Reply> = batch.into_iter().map(|job| job.run(&mut ctx)).collect();
        let progress = events::advance(&mut ctx, false).err().map(|e| {
            ctx.health.check_journal(&e);
            e.to_string()
        });
        let commit = match progress {
            Some(e) => Some(e),
            None => exec_cached(&ctx.conn, "COMMIT").err().map(|e| {
                ctx.health.check(&e);
                e.to_string()
            }),
        };
        if commit.is_some() {
            let _ = ctx.conn.execute_batch("ROLLBACK");
            ctx.fast.rollback();
        } else {
            ctx.fast.commit();
            commits.fetch_add(1, Ordering::Relaxed);
            crate::metrics::journal_commit(size);
        }
        // Memory may have changed either way (a rolled-back batch keeps its slots).
        publish_dedupe(&ctx);
        for reply in replies {
            reply(commit.as_deref());
        }
    }
}

#[async_trait::async_trait]
impl Journal for SqliteJournal {
    async fn accept(&self, new: &NewEvent) -> Result<Accepted, JournalError> {
        let boot = self.inner.boot.clone();
        // Encoded here, on the caller's thread, in parallel: the writer thread is the one
        // step every event goes through in turn. The writer gets the rest without the
        // payload and headers it no longer needs.
        let encoded = events::Encoded::new(&new.event)?;
        let event = NewEvent {
            event: new.event.identity(),
            dedupe_key: new.dedupe_key.clone(),
            dedupe_until: new.dedupe_until,
            pipelines: new.pipelines.clone(),
            order_keys: new.order_keys.clone(),
        };
        // On the fast path accepting writes one statement, atomic by itself: no savepoint.
        let savepoint = event.pipelines.len() > fast::MAX_PIPELINES;
        let accepted = self
            .call_with(savepoint, (event, encoded), move |ctx, (event, encoded)| {
                events::accept(ctx, event, encoded, &boot)
            })
            .await?;
        if let Accepted::New { deliveries, queued } = &accepted {
            self.add_pending((deliveries.len() + queued) as i64);
        }
        Ok(accepted)
    }

    async fn dead_letter(&self, letter: NewDeadLetter) -> Result<String, JournalError> {
        let id = self
            .call(move |c| dead::insert_dead_letter(c, None, &letter))
            .await?;
        self.add_dead(1);
        Ok(id)
    }

    async fn claim_due(&self, now: Timestamp, limit: usize) -> Result<Vec<Delivery>, JournalError> {
        let boot = self.inner.boot.clone();
        self.call(move |c| deliveries::claim_due(c, now, limit, &boot))
            .await
    }

    async fn defer(&self, deliveries: Vec<i64>) -> Result<(), JournalError> {
        self.call_ctx(true, move |ctx| deliveries::defer(ctx, &deliveries))
            .await
    }

    async fn settle_recorded(
        &self,
        delivery: i64,
        continuations: Vec<Continuation>,
        attempts: Vec<Attempt>,
    ) -> Result<(), JournalError> {
        self.settle_many(&mut vec![Settlement {
            delivery,
            continuations,
            attempts,
        }])
        .await
    }

    /// One writer job for all of `runs`: an event's first runs through ten pipelines cost one
    /// queueing, one savepoint and one reply, not ten.
    async fn settle_many(&self, runs: &mut Vec<Settlement>) -> Result<(), JournalError> {
        if runs.is_empty() {
            return Ok(());
        }
        let continued = runs.iter().flat_map(|r| &r.continuations);
        let (retries, dead) = continued.fold((0i64, 0i64), |(r, d), c| match c {
            Continuation::Retry { .. } => (r + 1, d),
            Continuation::Dead(_) => (r, d + 1),
        });
        let settled = runs.len() as i64;
        // A first run that was delivered writes one history row, a statement atomic by
        // itself: no savepoint.
        let savepoint = match runs.as_slice() {
            [one] => !one.continuations.is_empty() || fast::split_virtual(one.delivery).is_none(),
            _ => true,
        };
        // One history row per event, however many of its runs ended here.
        let history = history::encode(runs.iter().flat_map(|r| &r.attempts))?;
        // Shared with the writer job, not copied: only a failed batch, handed back, is
        // taken out again (and copied only if the job still holds it).
        let batch = Arc::new(std::mem::take(runs));
        let result = self
            .call_with(
                savepoint,
                (history, Arc::clone(&batch)),
                |ctx, (history, batch)| {
                    history::record(&ctx.conn, history)?;
                    deliveries::settle(ctx, batch)
                },
            )
            .await;
        if let Err(e) = result {
            *runs = Arc::try_unwrap(batch).unwrap_or_else(|shared| Vec::clone(&shared));
            return Err(e);
        }
        // The settled deliveries stop being pending; each retry continuation is pending.
        self.add_pending(retries - settled);
        if dead > 0 {
            self.add_dead(dead);
        }
        Ok(())
    }

    /// Counters, no query: `/metrics` and `/readyz` call this on every request.
    async fn depths(&self) -> Result<Depths, JournalError> {
        self.resync_dead();
        Ok(Depths {
            pending: self.pending_now(),
            dead: self.dead_count().n,
        })
    }

    fn pending_hint(&self) -> u64 {
        self.pending_now()
    }

    /// A journal found corrupt at run time is not ready: it would refuse every webhook.
    fn stalled(&self) -> Option<String> {
        if let Some(why) = self.inner.health.corrupt() {
            return Some(why.to_string());
        }
        // `/readyz` no longer sends the writer a job; it still must not say ready without it.
        self.inner
            .jobs
            .is_closed()
            .then(|| "the journal's writer thread has stopped".to_string())
    }

    async fn list_dead(
        &self,
        filter: DeadLetterFilter,
        offset: u64,
        limit: u64,
    ) -> Result<Page<DeadLetter>, JournalError> {
        self.read(move |c| dead::list_dead(c, &filter, offset, limit))
            .await
    }

    async fn get_dead(&self, id: String) -> Result<Option<DeadLetter>, JournalError> {
        self.read(move |c| dead::get_dead(c, &id)).await
    }

    async fn list_events(
        &self,
        filter: EventFilter,
        cursor: Option<String>,
        limit: u64,
    ) -> Result<EventPage, JournalError> {
        self.read(move |c| history::list_events(c, &filter, cursor.as_deref(), limit))
            .await
    }

    async fn get_event(&self, id: String) -> Result<Option<EventRecord>, JournalError> {
        self.read(move |c| history::get_event(c, &id)).await
    }

    async fn replay_event(
        &self,
        event_id: String,
        pipeline: String,
        from_failed: bool,
    ) -> Result<Replayed, JournalError> {
        let replayed = self
            .call(move |c| history::replay_event(c, &event_id, &pipeline, from_failed))
            .await?;
        if matches!(replayed, Replayed::Queued { .. }) {
            self.add_pending(1);
            if from_failed {
                self.add_dead(-1);
            }
        }
        Ok(replayed)
    }

    async fn erase_events(&self, ids: Vec<String>) -> Result<Erased, JournalError> {
        let mut total = Erased::default();
        // A batch per writer job, so accepts commit in between.
        for batch in ids.chunks(PRUNE_BATCH) {
            let batch = batch.to_vec();
            let (erased, pending, dead) = self
                .call_ctx(true, move |ctx| history::erase(ctx, &batch))
                .await?;
            self.add_pending(-pending);
            self.add_dead(-dead);
            total.events += erased.events;
            total.dead_letters += erased.dead_letters;
            total.busy += erased.busy;
        }
        Ok(total)
    }

    async fn replay(&self, id: String, from_start: bool) -> Result<Replayed, JournalError> {
        let replayed = self.call(move |c| dead::replay(c, &id, from_start)).await?;
        if matches!(replayed, Replayed::Queued { .. }) {
            self.add_pending(1);
            self.add_dead(-1);
        }
        Ok(replayed)
    }

    async fn purge(&self, ids: Vec<String>) -> Result<u64, JournalError> {
        let (purged, dead) = self.call(move |c| dead::purge(c, &ids)).await?;
        self.add_dead(-(dead as i64));
        Ok(purged)
    }

    async fn dead_ids(&self, filter: DeadLetterFilter) -> Result<Vec<String>, JournalError> {
        self.read(move |c| dead::dead_ids(c, &filter)).await
    }

    async fn prune(&self, before: Timestamp, now: Timestamp) -> Result<u64, JournalError> {
        Ok(self.prune_in_batches(before, now, PRUNE_BATCH).await?.0)
    }

    async fn release(&self, release: Release) -> Result<u64, JournalError> {
        self.call(move |c| deliveries::release(c, &release)).await
    }

    async fn set_paused(&self, pipeline: String, paused: bool) -> Result<bool, JournalError> {
        self.call(move |c| deliveries::set_paused(c, &pipeline, paused))
            .await
    }

    async fn paused(&self) -> Result<Vec<String>, JournalError> {
        self.read(deliveries::paused).await
    }

    async fn dead_letter_request(
        &self,
        letter: NewDeadLetter,
        headers: Vec<(String, String)>,
    ) -> Result<String, JournalError> {
        let id = self
            .call(move |c| requests::insert(c, &letter, &headers))
            .await?;
        self.add_dead(1);
        Ok(id)
    }

    async fn list_requests(
        &self,
        cursor: Option<String>,
        limit: u64,
    ) -> Result<RequestPage, JournalError> {
        self.read(move |c| requests::list(c, cursor.as_deref(), limit))
            .await
    }

    async fn get_request(&self, id: String) -> Result<Option<UnprocessableRequest>, JournalError> {
        self.read(move |c| requests::get(c, &id)).await
    }

    async fn rerun_request(&self, id: String, event: RerunEvent) -> Result<Rerun, JournalError> {
        let rerun = self.call(move |c| requests::rerun(c, &id, &event)).await?;
        if let Rerun::Accepted { pipelines, .. } = &rerun {
            self.add_pending(*pipelines as i64);
            self.add_dead(-1);
        }
        Ok(rerun)
    }

    async fn create_replay_job(&self, job: NewReplayJob) -> Result<ReplayJob, JournalError> {
        self.call(move |c| jobs::create(c, &job)).await
    }

    async fn list_replay_jobs(&self, limit: u64) -> Result<Vec<ReplayJob>, JournalError> {
        self.read(move |c| jobs::list(c, limit)).await
    }

    async fn get_replay_job(&self, id: String) -> Result<Option<ReplayJob>, JournalError> {
        self.read(move |c| jobs::get(c, &id)).await
    }

    async fn cancel_replay_job(&self, id: String) -> Result<Option<ReplayJob>, JournalError> {
        self.call(move |c| jobs::cancel(c, &id)).await
    }

    async fn lease_replay_job(
        &self,
        id: String,
        lease: Lease,
    ) -> Result<Option<ReplayJob>, JournalError> {
        self.call(move |c| jobs::lease(c, &id, &lease)).await
    }

    async fn release_replay_job(&self, id: String, owner: String) -> Result<(), JournalError> {
        self.call(move |c| jobs::release(c, &id, &owner)).await
    }

    async fn claimable_replay_jobs(
        &self,
        now: Timestamp,
        take_from: Option<String>,
    ) -> Result<Vec<String>, JournalError> {
        self.read(move |c| jobs::claimable(c, now, take_from.as_deref()))
            .await
    }

    async fn replay_batch(&self, batch: JobBatch) -> Result<Option<ReplayJob>, JournalError> {
        let done = self.call(move |c| jobs::run_batch(c, &batch)).await?;
        self.add_pending(done.queued as i64);
        self.add_dead(-(done.revived as i64));
        Ok(done.job)
    }

    async fn replay_job_error(
        &self,
        id: String,
        owner: String,
        error: String,
        fatal: bool,
    ) -> Result<(), JournalError> {
        self.call(move |c| jobs::error(c, &id, &owner, &error, fatal))
            .await
    }

    async fn pending_in(&self, pipeline: String) -> Result<u64, JournalError> {
        self.read(move |c| jobs::pending_in(c, &pipeline)).await
    }
}

#[cfg(test)]
mod tests;
