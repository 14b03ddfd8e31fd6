//! `hookline events replay --pipeline P <filters>` (no event id): a bulk replay job, created
//! in the journal and run by this command itself under the job's lease, with its progress on
//! stderr. Ctrl-C stops it between batches and lets the lease go: the job stays `running`
//! at its cursor, and a running `hookline serve` carries on with it within a second (a
//! stopped one at its next start). If this command dies without letting go, the service
//! takes the job over when the lease runs out. `hookline events jobs` lists jobs,
//! `hookline events cancel JOB` cancels one.

use std::io::IsTerminal;

use anyhow::bail;
use clap::Args;
use hookline_plugin_api::Registry;
use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use super::Selection;
use crate::admin::replays::{LEASE, ReplaysQuery};
use crate::journal::{JobState, Journal, Lease, ReplayJob};

/// How a bulk replay runs.
#[derive(Debug, Args)]
pub(crate) struct JobOptions {
    /// Events per batch (each batch's replays and the job's progress commit together).
    #[arg(long, default_value_t = crate::admin::replays::DEFAULT_BATCH)]
    batch: u32,
    /// Wait before a batch while the pipeline has this many deliveries pending.
    #[arg(long, default_value_t = crate::admin::replays::DEFAULT_MAX_PENDING)]
    max_pending: u64,
    /// Print the finished job as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// Create a job and run it here, following its progress.
pub(crate) async fn replay(
    journal: &dyn Journal,
    registry: &Registry,
    source: &str,
    pipeline: String,
    from_failed: bool,
    filters: Selection,
    options: JobOptions,
) -> anyhow::Result<()> {
    let owner = format!("cli:{}", uuid::Uuid::now_v7());
    let query = ReplaysQuery {
        pipeline: Some(pipeline),
        event_type: filters.event_type,
        outcome: filters.outcome,
        since: filters.since,
        until: filters.until,
        q: filters.q,
        from: from_failed.then(|| "failed".to_string()),
        batch: Some(options.batch),
        max_pending: Some(options.max_pending),
        ..Default::default()
    };
    let new = query
        .to_job(registry, source, Some(owner.clone()))
        .map_err(anyhow::Error::msg)?;
    let job = journal.create_replay_job(new).await?;
    let id = job.id.clone();
    eprintln_safe(&format!(
        "replay job {id}: into `{}`; Ctrl-C stops following and leaves it to `hookline serve`",
        job.pipeline
    ));
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.cancel();
        }
    });
    let mut follower = Follower::new();
    let lease = Lease {
        owner,
        until: Timestamp::now() + LEASE,
        take_from: None,
    };
    let last =
        crate::admin::replays::run(journal, registry, &id, lease, &stop, &|| {}, &mut |job| {
            follower.show(job)
        })
        .await?;
    follower.finish();
    let job = match last {
        Some(job) => job,
        None => journal
            .get_replay_job(id.clone())
            .await?
            .ok_or_else(|| anyhow::anyhow!("the replay job {id} is gone"))?,
    };
    if options.json {
        outln!("{}", serde_json::to_string_pretty(&job)?);
    } else {
        outln!("{}", describe(&job));
    }
    match job.state {
        JobState::Done => Ok(()),
        JobState::Running => {
            eprintln_safe(&format!(
                "stopped following: job {id} stays running at its cursor; a running `hookline serve` carries on with it (a stopped one at its next start); `hookline events cancel {id}` cancels it"
            ));
            Ok(())
        }
        JobState::Cancelled => bail!("replay job {id} was cancelled"),
        JobState::Failed => bail!(
            "replay job {id} failed: {}",
            job.error.as_deref().unwrap_or("(no error recorded)")
        ),
    }
}

/// `hookline events jobs`.
pub(crate) async fn list(journal: &dyn Journal, json: bool) -> anyhow::Result<()> {
    let jobs = journal.list_replay_jobs(50).await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&jobs)?);
        return Ok(());
    }
    if jobs.is_empty() {
        outln!("no replay jobs");
        return Ok(());
    }
    for job in &jobs {
        outln!("{}", describe(job));
    }
    Ok(())
}

/// `hookline events cancel JOB`.
pub(crate) async fn cancel(journal: &dyn Journal, id: String) -> anyhow::Result<()> {
    let Some(job) = journal.cancel_replay_job(id.clone()).await? else {
        bail!("no replay job {id}");
    };
    if job.state != JobState::Cancelled {
        bail!("replay job {id} is {} already", job.state.as_str());
    }
    outln!("{}", describe(&job));
    Ok(())
}

/// One line: `<id>  done  into leads: matched 120, replayed 118, skipped 2 (…)`.
fn describe(job: &ReplayJob) -> String {
    let mut line = format!(
        "{}  {:<9}  into {}: {}",
        job.id,
        job.state.as_str(),
        job.pipeline,
        counts(job)
    );
    if !job.skipped_reasons.is_empty() {
        let why: Vec<String> = job
            .skipped_reasons
            .iter()
            .map(|(reason, n)| format!("{n}× {reason}"))
            .collect();
        line.push_str(&format!(" ({})", why.join("; ")));
    }
    if let Some(error) = &job.error {
        line.push_str(&format!("; last error: {error}"));
    }
    line
}

fn counts(job: &ReplayJob) -> String {
    format!(
        "matched {}, replayed {}, skipped {}, errors {}",
        job.matched_so_far, job.replayed, job.skipped, job.errors
    )
}

/// The progress on stderr: a spinner at a terminal, a plain line per batch otherwise.
struct Follower {
    bar: Option<indicatif::ProgressBar>,
}

impl Follower {
    fn new() -> Follower {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}")
            {
                bar.set_style(style);
            }
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        });
        Follower { bar }
    }

    fn show(&mut self, job: &ReplayJob) {
        let text = format!("{}: {}", job.state.as_str(), counts(job));
        match &self.bar {
            Some(bar) => bar.set_message(text),
            None => eprintln_safe(&text),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// A line on stderr; a closed stderr is no reason to stop.
fn eprintln_safe(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{text}");
}
