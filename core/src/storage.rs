//! Which journal backs a `serve` process, and what the process does (`--role`).
//!
//! With the SQLite journal one process does everything and holds a lock on the file. With
//! NATS JetStream any number of processes share the stream: `ingest` ones answer webhooks,
//! `worker` ones run pipelines, `all` does both (see docs/scale-out.md).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use arc_swap::ArcSwap;
use clap::ValueEnum;

use crate::config::Backend;
use crate::journal::{Journal, NatsJournal, Provision, SqliteJournal};
use crate::runtime::Runtime;

/// What a `serve` process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Role {
    /// Serve webhooks and the admin API; run no pipelines.
    Ingest,
    /// Run pipelines and serve the admin API; no webhook listener.
    Worker,
    /// Both (the only role the SQLite journal allows).
    #[default]
    All,
}

impl Role {
    pub(crate) fn ingests(self) -> bool {
        matches!(self, Role::Ingest | Role::All)
    }

    pub(crate) fn works(self) -> bool {
        matches!(self, Role::Worker | Role::All)
    }
}

/// The journal of a serving process.
#[derive(Debug)]
pub(crate) enum Store {
    Sqlite {
        journal: Arc<SqliteJournal>,
        /// Held for the life of the process.
        _lock: std::fs::File,
    },
    Nats(NatsJournal),
}

impl Store {
    /// Open the configured journal. `base_dir` resolves relative paths (NATS `creds`).
    pub(crate) async fn open(
        runtime: &Runtime,
        base_dir: &Path,
        role: Role,
    ) -> anyhow::Result<Store> {
        match (runtime.storage.backend, &runtime.storage.nats) {
            (Backend::Nats, Some(nats)) => {
                let limits = Provision {
                    retain: runtime.storage.retain,
                    duplicate_window: duplicate_window(runtime),
                };
                Ok(Store::Nats(
                    NatsJournal::provision(nats, base_dir, limits).await?,
                ))
            }
            (Backend::Nats, None) => bail!("`backend = \"nats\"` needs a `[storage.nats]` table"),
            (Backend::Sqlite, _) => {
                if role != Role::All {
                    bail!(
                        "`--role {}` needs `[storage] backend = \"nats\"`: with the SQLite journal one process both ingests and works",
                        role.to_possible_value()
                            .map(|v| v.get_name().to_string())
                            .unwrap_or_default()
                    );
                }
                let db = runtime.storage_path.clone();
                let lock = lock_journal(&db)?;
                Ok(Store::Sqlite {
                    journal: Arc::new(SqliteJournal::open(&db)?),
                    _lock: lock,
                })
            }
        }
    }

    pub(crate) fn journal(&self) -> Arc<dyn Journal> {
        match self {
            Store::Sqlite { journal, .. } => journal.clone(),
            Store::Nats(n) => Arc::new(n.clone()),
        }
    }

    /// Start what the journal runs beside the flow (NATS: consumers kept in step with the
    /// config, counts, ack deadlines). Before the first webhook is accepted, so every
    /// pipeline's consumer exists by the time an event for it is published.
    pub(crate) async fn attach(&self, runtime: Arc<ArcSwap<Runtime>>) -> anyhow::Result<()> {
        if let Store::Nats(n) = self {
            n.attach(runtime).await?;
        }
        Ok(())
    }

    /// At shutdown, after the workers drained: hand back what is still held.
    pub(crate) async fn release(&self) {
        match self {
            Store::Nats(n) => n.release().await,
            Store::Sqlite { journal, .. } => {
                if let Err(e) = journal.close().await {
                    tracing::warn!(error = %e, "could not close the journal cleanly (unfinished first runs or the final checkpoint); the next start finds everything anyway");
                }
            }
        }
    }
}

/// What the start-up log and `hookline check` say about the journal.
pub(crate) fn describe(runtime: &Runtime) -> String {
    match (&runtime.storage.backend, &runtime.storage.nats) {
        (Backend::Nats, Some(n)) => n.describe(),
        _ => runtime.storage_path.display().to_string(),
    }
}

/// JetStream has one duplicate window per stream: the longest of the sources' windows.
fn duplicate_window(runtime: &Runtime) -> Duration {
    runtime
        .sources
        .values()
        .map(|s| s.dedupe_window)
        .max()
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_secs(120))
}

/// One serving process per SQLite journal: a second would run the same deliveries twice.
fn lock_journal(db: &Path) -> anyhow::Result<std::fs::File> {
    match try_lock_journal(db)? {
        Some(lock) => Ok(lock),
        None => bail!(
            "the journal {} is in use by another hookline process: a `hookline serve`, or a command bringing the journal up to date after an upgrade (lock: {})",
            db.display(),
            lock_path(db).display()
        ),
    }
}

/// The SQLite journal's lock, held for as long as the file is kept: `None` while a serving
/// process holds it. A command beside the service (`hookline dlq`) asks this before it may
/// change the journal's schema.
pub(crate) fn try_lock_journal(db: &Path) -> anyhow::Result<Option<std::fs::File>> {
    if let Some(dir) = db.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let lock_path = lock_path(db);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open the journal lock {}", lock_path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", lock_path.display()))
        }
    }
}

fn lock_path(db: &Path) -> PathBuf {
    let mut path = db.as_os_str().to_owned();
    path.push(".lock");
    PathBuf::from(path)
}

/// Backpressure that follows what runs out: ingest refuses (`503`) while the SQLite
/// journal's file system has less than `min_free_disk` free, or the journal (file and WAL)
/// is larger than `max_size`. Checked once a second by a task, never per request. One
/// pipeline's backlog is not a reason: it waits in the journal.
#[derive(Debug, Default)]
pub(crate) struct Floor {
    /// 0: accepting; else a [`REASONS`] index + 1.
    refusing: std::sync::atomic::AtomicUsize,
}

/// Why ingest refuses: the `reason` label and the answer's words.
const REASONS: [(&str, &str); 2] = [
    (
        "disk",
        "the journal's disk is nearly full (under `min_free_disk`); retry later",
    ),
    (
        "journal_size",
        "the journal is at its `max_size`; retry later",
    ),
];

/// How often the floor is checked.
const FLOOR_INTERVAL: Duration = Duration::from_secs(1);

impl Floor {
    /// Watch the SQLite journal at `db` against the limits of the config in force; `None`
    /// for NATS, whose server enforces its own limits.
    pub(crate) fn watch(store: &Store, runtime: Arc<ArcSwap<Runtime>>) -> Arc<Floor> {
        let floor = Arc::new(Floor::default());
        if let Store::Sqlite { .. } = store {
            // Every reason's series exists from the start, at 0.
            for (label, _) in REASONS {
                crate::internal_events::ingest_refusing(label, false);
            }
            let db = runtime.load().storage_path.clone();
            let weak = Arc::downgrade(&floor);
            tokio::spawn(async move {
                loop {
                    let Some(floor) = weak.upgrade() else { return };
                    let storage = runtime.load().storage.clone();
                    let db = db.clone();
                    let measured = tokio::task::spawn_blocking(move || measure(&db)).await;
                    if let Ok(Ok((free, size))) = measured {
                        floor.update(&storage, free, size);
                    }
                    drop(floor);
                    tokio::time::sleep(FLOOR_INTERVAL).await;
                }
            });
        }
        floor
    }

    fn update(&self, storage: &crate::config::StorageConfig, free: u64, size: u64) {
        use std::sync::atomic::Ordering;
        crate::internal_events::journal_disk_free(free);
        let reason = if free < storage.min_free_disk.as_u64() {
            Some(0)
        } else if storage.max_size.is_some_and(|max| size >= max.as_u64()) {
            Some(1)
        } else {
            None
        };
        let now = reason.map_or(0, |i| i + 1);
        let before = self.refusing.swap(now, Ordering::Relaxed);
        if before == now {
            return;
        }
        for (i, (label, _)) in REASONS.iter().enumerate() {
            crate::internal_events::ingest_refusing(label, reason == Some(i));
        }
        match reason {
            Some(i) => tracing::warn!(
                reason = REASONS[i].0,
                free_bytes = free,
                journal_bytes = size,
                min_free_disk = %storage.min_free_disk,
                max_size = ?storage.max_size.map(|m| m.to_string()),
                "backpressure: ingest answers 503 until there is room"
            ),
            None => tracing::info!(
                free_bytes = free,
                journal_bytes = size,
                "backpressure over: ingest accepts again"
            ),
        }
    }

    /// Why ingest must refuse now, in words for the sender; `None`: accept.
    pub(crate) fn refusal(&self) -> Option<&'static str> {
        let i = self.refusing.load(std::sync::atomic::Ordering::Relaxed);
        i.checked_sub(1)
            .and_then(|i| REASONS.get(i))
            .map(|(_, words)| *words)
    }
}

/// Free bytes on the journal's file system, and the journal's size (file + WAL).
fn measure(db: &Path) -> std::io::Result<(u64, u64)> {
    let dir = db
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let stat = rustix::fs::statvfs(dir)?;
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    let size = |p: PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    Ok((free, size(db.to_path_buf()) + size(PathBuf::from(wal))))
}

#[cfg(test)]
mod floor_tests {
    use super::*;

    #[test]
    fn the_floor_refuses_under_the_free_space_or_over_the_size_and_recovers() {
        let floor = Floor::default();
        let storage = crate::config::StorageConfig {
            min_free_disk: bytesize::ByteSize::mib(100),
            max_size: Some(bytesize::ByteSize::mib(10)),
            ..Default::default()
        };
        floor.update(&storage, 200 << 20, 1 << 20);
        assert_eq!(floor.refusal(), None);
        floor.update(&storage, 50 << 20, 1 << 20);
        assert!(floor.refusal().is_some_and(|w| w.contains("min_free_disk")));
        floor.update(&storage, 200 << 20, 20 << 20);
        assert!(floor.refusal().is_some_and(|w| w.contains("max_size")));
        floor.update(&storage, 200 << 20, 1 << 20);
        assert_eq!(floor.refusal(), None);
    }

    #[test]
    fn measuring_reads_the_file_system_and_the_journal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("j.db");
        std::fs::write(&db, vec![0u8; 4096]).expect("write");
        std::fs::write(dir.path().join("j.db-wal"), vec![0u8; 1024]).expect("write");
        let (free, size) = measure(&db).expect("measure");
        assert!(free > 0);
        assert_eq!(size, 5120);
    }
}
