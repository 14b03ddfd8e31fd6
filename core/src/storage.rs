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
    if let Some(dir) = db.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut lock_path = db.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open the journal lock {}", lock_path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "the journal {} is in use by another hookline process (lock: {})",
            db.display(),
            lock_path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", lock_path.display()))
        }
    }
}
