//! The read side: a few read-only connections for everything that only reads — dead-letter
//! listings, lookups, replay and purge selection, counts.
//!
//! They never go through the writer thread, so a slow or huge read (a listing filtered by a
//! substring of the error over millions of letters, say) costs a reader and never delays an
//! accept or a commit. In WAL mode a reader sees the last commit and blocks no writer. The
//! readers are bounded: at most [`READERS`] connections, each read on Tokio's blocking
//! pool while it holds one of [`READERS`] permits; more readers wait for a permit.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};
use tokio::sync::Semaphore;

use crate::journal::JournalError;

/// Most read-only connections open at once (and reads running at once).
pub(crate) const READERS: usize = 4;

/// Whether the journal's file has been found corrupt, and why. Shared by the writer and the
/// readers: whichever meets `SQLITE_CORRUPT` or `SQLITE_NOTADB` first marks it, and
/// `/readyz` reports it from then on.
#[derive(Debug)]
pub(crate) struct Health {
    path: PathBuf,
    corrupt: OnceLock<String>,
}

impl Health {
    pub(crate) fn new(path: &Path) -> Self {
        Health {
            path: path.to_path_buf(),
            corrupt: OnceLock::new(),
        }
    }

    pub(crate) fn corrupt(&self) -> Option<&str> {
        self.corrupt.get().map(String::as_str)
    }

    /// Mark the journal corrupt if `e` says the file is damaged. Logged once.
    pub(crate) fn check(&self, e: &rusqlite::Error) {
        if !is_corrupt(e) || self.corrupt.get().is_some() {
            return;
        }
        let why = corrupt_message(&self.path, &e.to_string());
        if self.corrupt.set(why.clone()).is_ok() {
            tracing::error!(error = %e, path = %self.path.display(), "the journal is corrupt; /readyz reports not ready");
        }
    }

    pub(crate) fn check_journal(&self, e: &JournalError) {
        if let JournalError::Sqlite(e) = e {
            self.check(e);
        }
    }
}

/// `SQLITE_CORRUPT` or `SQLITE_NOTADB`: the file is damaged, not merely busy or full.
pub(crate) fn is_corrupt(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

/// What an operator reads when the journal's file is damaged: which file, and what to do.
pub(crate) fn corrupt_message(path: &Path, detail: &str) -> String {
    // `quick_check` reports on several lines; an error message is one.
    let detail = detail.split_whitespace().collect::<Vec<_>>().join(" ");
    format!(
        "the journal {} is corrupt ({detail}); stop hookline and restore it from a backup, or move it aside (with its -wal and -shm files) to start with an empty journal — see docs/operations.md",
        path.display()
    )
}

pub(crate) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
    health: Arc<Health>,
    /// Tests hold reads here to show what a long read does (and does not) block.
    #[cfg(test)]
    pub(crate) gate: Arc<tokio::sync::RwLock<()>>,
}

impl Readers {
    pub(crate) fn new(path: &Path, health: Arc<Health>) -> Self {
        Readers {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(READERS)),
            health,
            #[cfg(test)]
            gate: Arc::default(),
        }
    }

    /// Run `f` on a read-only connection inside one read transaction (one snapshot), on
    /// the blocking pool, once a reader is free.
    pub(crate) async fn run<R, F>(self: &Arc<Self>, f: F) -> Result<R, JournalError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, JournalError> + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| JournalError::Closed)?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let out = this.run_blocking(f);
            if let Err(e) = &out {
                this.health.check_journal(e);
            }
            out
        })
        .await
        .map_err(|e| JournalError::Open(format!("a journal read did not finish: {e}")))?
    }

    fn run_blocking<R>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, JournalError>,
    ) -> Result<R, JournalError> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match idle {
            Some(c) => c,
            None => open_reader(&self.path)?,
        };
        conn.execute_batch("BEGIN")?;
        let out = f(&conn);
        // The read transaction stays open here while a test holds the gate.
        #[cfg(test)]
        drop(self.gate.blocking_read());
        // A read transaction only ends; nothing to roll back. A connection whose
        // transaction will not end is dropped rather than reused.
        if conn.execute_batch("COMMIT").is_ok() {
            self.idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(conn);
        }
        out
    }
}

fn open_reader(path: &Path) -> Result<Connection, JournalError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    super::rows::register_functions(&conn)?;
    Ok(conn)
}
