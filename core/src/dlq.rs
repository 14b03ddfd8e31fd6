//! `hookline dlq`: list, show, replay and purge dead letters, straight on the journal (the
//! SQLite file, or the NATS bucket with `backend = "nats"`). It works whether or not `serve`
//! is running; a running service picks replayed deliveries up within a fraction of a
//! second, a stopped one at its next start.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use crate::config::ConfigFile;
use crate::config::{Backend, StorageConfig};
use crate::journal::{DeadLetter, DeadLetterFilter, Journal, NatsJournal, Replayed, SqliteJournal};

#[derive(Debug, Args)]
pub struct DlqArgs {
    #[command(flatten)]
    pub(crate) journal: JournalArgs,
    #[command(subcommand)]
    pub(crate) command: DlqCommand,
}

/// Where the commands that work straight on the journal (`dlq`, `events`) find it.
#[derive(Debug, Args)]
pub struct JournalArgs {
    /// Config whose `[storage]` names the journal.
    #[arg(
        long,
        short,
        default_value = "pipeline.toml",
        env = "HOOKLINE_CONFIG",
        global = true
    )]
    pub(crate) config: PathBuf,
    /// The journal file itself (instead of reading it from the config).
    #[arg(long, global = true)]
    pub(crate) db: Option<PathBuf>,
}

impl JournalArgs {
    /// The journal, opened beside a service that may be running.
    pub(crate) async fn open(&self) -> anyhow::Result<Box<dyn Journal>> {
        open_journal(&self.config, self.db.as_deref()).await
    }
}

#[derive(Debug, Args, Default)]
pub(crate) struct Filters {
    /// Only this pipeline.
    #[arg(long)]
    pub(crate) pipeline: Option<String>,
    /// Only this stage (name or index).
    #[arg(long)]
    pub(crate) stage: Option<String>,
    /// Only errors containing this text (case-insensitive).
    #[arg(long)]
    pub(crate) reason: Option<String>,
    /// Only failures since this RFC 3339 time, or this long ago (`1h`, `7d`).
    #[arg(long)]
    pub(crate) since: Option<String>,
}

impl Filters {
    fn to_filter(&self, include_replayed: bool) -> anyhow::Result<DeadLetterFilter> {
        Ok(DeadLetterFilter {
            pipeline: self.pipeline.clone(),
            stage: self.stage.clone(),
            reason: self.reason.clone(),
            since: self
                .since
                .as_deref()
                .map(crate::journal::parse_since)
                .transpose()
                .map_err(anyhow::Error::msg)?,
            include_replayed,
            event_id: None,
            summaries: false,
        })
    }

    fn is_empty(&self) -> bool {
        self.pipeline.is_none()
            && self.stage.is_none()
            && self.reason.is_none()
            && self.since.is_none()
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum DlqCommand {
    /// List dead letters, newest first.
    List {
        #[command(flatten)]
        filters: Filters,
        /// Also list ones already replayed.
        #[arg(long)]
        include_replayed: bool,
        #[arg(long, default_value_t = 20)]
        limit: u64,
        /// 1-based page of `limit` items.
        #[arg(long, default_value_t = 1)]
        page: u64,
        #[arg(long)]
        json: bool,
    },
    /// Show a dead letter: reason, stage, attempts, and the event as it entered the stage.
    /// Give its id, or an event id (as logs and the 2xx answer name it) for every dead
    /// letter of that event, one JSON object each.
    Show {
        /// Dead letter id or event id.
        id: String,
    },
    /// Send dead letters back into their pipelines, at the stage that failed.
    Replay {
        /// One dead letter; or use --all with filters.
        id: Option<String>,
        #[arg(long, conflicts_with = "id")]
        all: bool,
        #[command(flatten)]
        filters: Filters,
        /// Start again at the pipeline's first stage (earlier sinks deliver again).
        #[arg(long)]
        from_start: bool,
    },
    /// Delete dead letters.
    Purge {
        id: Option<String>,
        #[arg(long, conflicts_with = "id")]
        all: bool,
        #[command(flatten)]
        filters: Filters,
    },
}

/// The journal `config` names (or the SQLite file `db`), opened beside a service that may
/// be running.
pub(crate) async fn open_journal(
    config: &Path,
    db: Option<&Path>,
) -> anyhow::Result<Box<dyn Journal>> {
    let db = match db {
        Some(db) => db.to_path_buf(),
        None => {
            let (storage, base_dir) = storage_config(config)?;
            if let (Backend::Nats, Some(nats)) = (storage.backend, &storage.nats) {
                return Ok(Box::new(NatsJournal::open_existing(nats, &base_dir).await?));
            }
            if storage.path.is_absolute() {
                storage.path
            } else {
                base_dir.join(storage.path)
            }
        }
    };
    if !db.exists() {
        bail!(
            "no journal at {} (has `hookline serve` run with this config?)",
            db.display()
        );
    }
    // A journal from an older hookline is brought up to date only while no `hookline serve`
    // holds its lock: beside a running service it is read as that service wrote it, and its
    // schema is not changed under it. The lock is taken only then, and let go once the
    // journal is open.
    let lock = if SqliteJournal::is_behind(&db)? {
        crate::storage::try_lock_journal(&db)?
    } else {
        None
    };
    let journal = SqliteJournal::open_shared(&db, lock.is_some())?;
    drop(lock);
    Ok(Box::new(journal))
}

pub async fn run(args: DlqArgs) -> anyhow::Result<()> {
    let journal = args.journal.open().await?;
    let journal = journal.as_ref();
    match args.command {
        DlqCommand::List {
            filters,
            include_replayed,
            limit,
            page,
            json,
        } => {
            let limit = limit.clamp(1, 1000);
            let offset = page.saturating_sub(1) * limit;
            let result = journal
                .list_dead(filters.to_filter(include_replayed)?, offset, limit)
                .await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&result)?);
                return Ok(());
            }
            if result.items.is_empty() {
                outln!(
                    "no dead letters{}",
                    if filters.is_empty() { "" } else { " match" }
                );
                return Ok(());
            }
            outln!(
                "{:<36}  {:<20}  {:<16}  {:<14}  {:>3}  error",
                "id",
                "failed",
                "pipeline",
                "stage",
                "try"
            );
            for dl in &result.items {
                outln!(
                    "{:<36}  {:<20}  {:<16}  {:<14}  {:>3}  {}",
                    dl.id,
                    dl.last_failed_at.strftime("%Y-%m-%d %H:%M:%S"),
                    dl.pipeline.as_deref().unwrap_or("(ingest)"),
                    stage_label(dl),
                    dl.attempts,
                    one_line(&dl.error, 80)
                );
            }
            let pages = result.total.div_ceil(limit);
            outln!("page {page} of {pages} ({} dead letters)", result.total);
        }
        DlqCommand::Show { id } => match journal.get_dead(id.clone()).await? {
            Some(dl) => outln!("{}", serde_json::to_string_pretty(&dl)?),
            None => {
                let filter = DeadLetterFilter {
                    event_id: Some(id.clone()),
                    include_replayed: true,
                    ..DeadLetterFilter::default()
                };
                let letters = journal.list_dead(filter, 0, 1000).await?;
                if letters.items.is_empty() {
                    bail!("no dead letter {id}, and no dead letter of an event with that id");
                }
                for dl in &letters.items {
                    outln!("{}", serde_json::to_string_pretty(dl)?);
                }
            }
        },
        DlqCommand::Replay {
            id,
            all,
            filters,
            from_start,
        } => {
            let ids = select(journal, id, all, &filters).await?;
            let bar = progress(ids.len());
            let (mut queued, mut skipped) = (0u64, Vec::new());
            for id in ids {
                match journal.replay(id.clone(), from_start).await? {
                    Replayed::Queued { .. } => queued += 1,
                    Replayed::NotFound => skipped.push(format!("{id}: not found")),
                    Replayed::Skipped { reason } => skipped.push(format!("{id}: {reason}")),
                }
                if let Some(b) = &bar {
                    b.inc(1);
                }
            }
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            outln!(
                "queued {queued} for delivery; a running `hookline serve` picks them up now, a stopped one at its next start"
            );
            for s in &skipped {
                outln!("skipped {s}");
            }
            if queued == 0 && !skipped.is_empty() {
                bail!("nothing replayed");
            }
        }
        DlqCommand::Purge { id, all, filters } => {
            let ids = select(journal, id, all, &filters).await?;
            let n = journal.purge(ids).await?;
            outln!("purged {n} dead letters");
        }
    }
    Ok(())
}

async fn select(
    journal: &dyn Journal,
    id: Option<String>,
    all: bool,
    filters: &Filters,
) -> anyhow::Result<Vec<String>> {
    match (id, all) {
        (Some(id), _) => Ok(vec![id]),
        (None, true) => Ok(journal.dead_ids(filters.to_filter(false)?).await?),
        (None, false) => bail!(
            "name a dead letter ID, or use --all (optionally with --pipeline, --stage, --reason, --since)"
        ),
    }
}

fn progress(n: usize) -> Option<indicatif::ProgressBar> {
    (n >= 50).then(|| {
        let bar = indicatif::ProgressBar::new(n as u64);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("replaying {bar:40} {pos}/{len} eta {eta}")
        {
            bar.set_style(style);
        }
        bar
    })
}

fn stage_label(dl: &DeadLetter) -> String {
    match (&dl.stage_name, dl.stage_index) {
        (Some(name), Some(i)) => format!("{i}:{name}"),
        (None, Some(i)) => i.to_string(),
        _ => "-".into(),
    }
}

fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() > max {
        format!("{}…", flat.chars().take(max).collect::<String>())
    } else {
        flat
    }
}

/// The `[storage]` section of a config and the directory its paths resolve against, without
/// validating the rest (an operator inspecting dead letters need not have every secret in
/// their environment; only the ones `[storage]` uses).
fn storage_config(config: &Path) -> anyhow::Result<(StorageConfig, PathBuf)> {
    section(config, "storage")
}

/// One top-level section of a config (`[storage]`, `[admin]`), its variables expanded, and
/// the directory its paths resolve against — without validating the rest of the file, so
/// only the secrets that section uses need be set. A missing section is its default.
pub(crate) fn section<T: serde::de::DeserializeOwned + Default>(
    config: &Path,
    name: &str,
) -> anyhow::Result<(T, PathBuf)> {
    let file = ConfigFile::read(config)?;
    let mut doc = toml::de::DeTable::parse(&file.text)
        .map_err(|e| anyhow::anyhow!("{}: {}", config.display(), e.message()))?
        .into_inner();
    let outcome = crate::config::interpolate_table(
        &mut doc,
        &|name| std::env::var(name).ok(),
        &file.base_dir(),
    );
    let Some((_, table)) = doc.iter().find(|(k, _)| k.get_ref() == name) else {
        return Ok((T::default(), file.base_dir()));
    };
    let span = table.span();
    if let Some((_, e)) = outcome
        .errors
        .iter()
        .find(|(at, _)| at.start >= span.start && at.end <= span.end)
    {
        bail!("{}: [{name}]: {e}", config.display());
    }
    let parsed = T::deserialize(toml::de::ValueDeserializer::from(table.clone()))
        .map_err(|e| anyhow::anyhow!("{}: [{name}]: {}", config.display(), e.message().trim()))
        .with_context(|| format!("reading the [{name}] settings"))?;
    Ok((parsed, file.base_dir()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `hookline dlq` on a journal from an older Hookline: refused while a service holds the
    /// journal's lock (the schema is not changed under it), brought up to date once none
    /// does.
    #[tokio::test]
    async fn a_journal_behind_is_migrated_only_while_no_service_holds_it() {
        let dir = tempfile::tempdir().expect("dir");
        let db = dir.path().join("hookline.db");
        SqliteJournal::write_previous_schema(&db);
        let previous = SqliteJournal::schema_version(&db);
        let config = dir.path().join("pipeline.toml");
        let service = crate::storage::try_lock_journal(&db)
            .expect("lock")
            .expect("free");
        let Err(e) = open_journal(&config, Some(&db)).await else {
            panic!("opened beside the service");
        };
        let msg = format!("{e:#}");
        assert!(msg.contains("running `hookline serve`"), "{msg}");
        assert_eq!(SqliteJournal::schema_version(&db), previous);
        drop(service);
        open_journal(&config, Some(&db)).await.expect("migrated");
        assert!(SqliteJournal::schema_version(&db) > previous);
        // The lock was let go: a service can start.
        assert!(
            crate::storage::try_lock_journal(&db)
                .expect("lock")
                .is_some()
        );

        // A file a starting service has only just created has no schema yet: not set up
        // beside it either.
        let fresh = dir.path().join("fresh.db");
        std::fs::write(&fresh, b"").expect("file");
        let service = crate::storage::try_lock_journal(&fresh)
            .expect("lock")
            .expect("free");
        let Err(e) = open_journal(&config, Some(&fresh)).await else {
            panic!("set up beside the service");
        };
        assert!(format!("{e:#}").contains("not set up yet"), "{e:#}");
        drop(service);
    }
}
