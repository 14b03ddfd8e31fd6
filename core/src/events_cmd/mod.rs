//! `hookline events`: search the retained events and show one with its history, straight on
//! the journal (whether or not `serve` is running), with the filters of
//! `GET /api/v1/events`.

use std::path::Path;

use anyhow::bail;
use clap::{Args, Subcommand};
use hookline_plugin_api::Registry;

mod jobs;
mod requests;

use crate::admin::events::EventsQuery;
use crate::journal::{EventOutcome, EventRecord, EventSummary, PipelineState, Replayed};

#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pub(crate) journal: crate::dlq::JournalArgs,
    #[command(subcommand)]
    pub(crate) command: EventsCommand,
}

/// The event filters `list`, `erase` and a bulk `replay` share (those of
/// `GET /api/v1/events` but the source and the pipeline, which `replay` names itself).
#[derive(Debug, Args, Default)]
pub(crate) struct Selection {
    /// Only events of this type.
    #[arg(long = "type")]
    pub(crate) event_type: Option<String>,
    /// Only events with this outcome (in `--pipeline`, if given): delivered, dropped,
    /// retrying, paused, dead_lettered, in_flight, finished.
    #[arg(long)]
    pub(crate) outcome: Option<String>,
    /// Received since this RFC 3339 time, or this long ago (`1h`, `7d`).
    #[arg(long)]
    pub(crate) since: Option<String>,
    /// Received before this RFC 3339 time, or this long ago.
    #[arg(long)]
    pub(crate) until: Option<String>,
    /// A CEL expression over the event, as the `cel` filter takes it:
    /// `payload.data.lead.email.endsWith("@acme.com")`.
    #[arg(long, short)]
    pub(crate) q: Option<String>,
}

impl Selection {
    /// No filter given (they select the events of a job; one event needs none).
    pub(crate) fn is_empty(&self) -> bool {
        [
            &self.event_type,
            &self.outcome,
            &self.since,
            &self.until,
            &self.q,
        ]
        .iter()
        .all(|v| v.is_none())
    }
}

/// The filters of `list` and `erase` (those of `GET /api/v1/events`).
#[derive(Debug, Args, Default)]
pub(crate) struct EventFilters {
    /// Only events of this source.
    #[arg(long)]
    source: Option<String>,
    /// Only events routed to this pipeline.
    #[arg(long)]
    pipeline: Option<String>,
    #[command(flatten)]
    selection: Selection,
}

impl EventFilters {
    fn query(self, cursor: Option<String>, limit: Option<u64>, all: bool) -> EventsQuery {
        let Selection {
            event_type,
            outcome,
            since,
            until,
            q,
        } = self.selection;
        EventsQuery {
            source: self.source,
            event_type,
            pipeline: self.pipeline,
            outcome,
            since,
            until,
            q,
            cursor,
            limit,
            all,
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum EventsCommand {
    /// List retained events, newest first, with where each stands in its pipelines.
    List {
        #[command(flatten)]
        filters: EventFilters,
        #[arg(long, default_value_t = 20)]
        limit: u64,
        /// Go on from an earlier listing (the cursor it printed).
        #[arg(long)]
        cursor: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show an event: headers as stored, payload, and per pipeline its outcome and attempts.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Send a retained event into a pipeline of its source again, or for the first time
    /// (a pipeline added after it arrived). Without an id, every event the filters select,
    /// as a bulk replay job run here with its progress on stderr (see `jobs`, `cancel`).
    Replay {
        /// One event; without it, a job over the filters.
        id: Option<String>,
        /// The pipeline to send it into.
        #[arg(long)]
        pipeline: String,
        /// Resume at the stage where it was dead-lettered in that pipeline, instead of the
        /// first stage.
        #[arg(long)]
        from_failed: bool,
        #[command(flatten)]
        filters: Selection,
        #[command(flatten)]
        options: jobs::JobOptions,
    },
    /// List bulk replay jobs, newest first, with their progress.
    Jobs {
        #[arg(long)]
        json: bool,
    },
    /// Cancel a bulk replay job: no batch runs after the one under way.
    Cancel { job: String },
    /// List requests that passed verification but could not become events, newest first.
    Requests {
        #[arg(long, default_value_t = 20)]
        limit: u64,
        /// Go on from an earlier listing (the cursor it printed).
        #[arg(long)]
        cursor: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show an unprocessable request: reason, headers as stored, raw body.
    Request {
        /// The id its answer named.
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Run an unprocessable request through its source again under the config now in
    /// force (the signature was checked when it arrived); an event on success.
    Rerun { id: String },
    /// Delete matching events and everything kept of them (history, deliveries, dead
    /// letters), e.g. to forget a person: `--q 'payload.data.lead.email == "ada@acme.com"'`.
    Erase {
        #[command(flatten)]
        filters: EventFilters,
        /// Every event, when no filter is given.
        #[arg(long)]
        all: bool,
    },
}

pub async fn run(args: EventsArgs, registry: &Registry) -> anyhow::Result<()> {
    let journal = args.journal.open().await?;
    match args.command {
        EventsCommand::List {
            filters,
            limit,
            cursor,
            json,
        } => {
            let query = filters.query(cursor, Some(limit), false);
            let filter = query.to_filter(registry).map_err(anyhow::Error::msg)?;
            let page = journal
                .list_events(filter, query.cursor.clone(), limit.clamp(1, 500))
                .await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&page)?);
                return Ok(());
            }
            if page.items.is_empty() {
                outln!("no events match (looked at {})", page.scanned);
            } else {
                outln!(
                    "{:<36}  {:<19}  {:<14}  {:<22}  pipelines",
                    "id",
                    "received",
                    "source",
                    "type"
                );
                for e in &page.items {
                    outln!(
                        "{:<36}  {:<19}  {:<14}  {:<22}  {}",
                        e.id,
                        e.received_at.strftime("%Y-%m-%d %H:%M:%S"),
                        e.source,
                        e.event_type,
                        outcomes(e)
                    );
                }
            }
            if let Some(next) = page.next {
                outln!("more: --cursor {next}");
            }
        }
        EventsCommand::Show { id, json } => {
            let Some(event) = journal.get_event(id.clone()).await? else {
                bail!("no event {id} (never received, or pruned after `retain`)");
            };
            if json {
                outln!("{}", serde_json::to_string_pretty(&event)?);
            } else {
                show(&event)?;
            }
        }
        EventsCommand::Replay {
            id: None,
            pipeline,
            from_failed,
            filters,
            options,
        } => {
            let source = check_pipeline(&args.journal.config, &pipeline, None)?;
            jobs::replay(
                journal.as_ref(),
                registry,
                &source,
                pipeline,
                from_failed,
                filters,
                options,
            )
            .await?;
        }
        EventsCommand::Jobs { json } => jobs::list(journal.as_ref(), json).await?,
        EventsCommand::Cancel { job } => jobs::cancel(journal.as_ref(), job).await?,
        EventsCommand::Requests {
            limit,
            cursor,
            json,
        } => requests::list(journal.as_ref(), cursor, limit, json).await?,
        EventsCommand::Request { id, json } => requests::show(journal.as_ref(), id, json).await?,
        EventsCommand::Rerun { id } => {
            requests::rerun(journal.as_ref(), &args.journal.config, registry, id).await?
        }
        EventsCommand::Replay {
            id: Some(id),
            pipeline,
            from_failed,
            filters,
            ..
        } => {
            if !filters.is_empty() {
                bail!(
                    "filters select the events of a bulk replay: give them without an event id, or the id alone"
                );
            }
            let Some(event) = journal.get_event(id.clone()).await? else {
                bail!("no event {id} (never received, or pruned after `retain`)");
            };
            check_pipeline(&args.journal.config, &pipeline, Some(&event.summary.source))?;
            match journal
                .replay_event(id.clone(), pipeline.clone(), from_failed)
                .await?
            {
                Replayed::Queued { .. } => outln!(
                    "queued {id} for `{pipeline}`; a running `hookline serve` picks it up now, a stopped one at its next start"
                ),
                Replayed::NotFound => bail!("no event {id}"),
                Replayed::Skipped { reason } => bail!("not replayed: {reason}"),
            }
        }
        EventsCommand::Erase { filters, all } => {
            let query = filters.query(None, None, all);
            if query.is_unfiltered() && !all {
                bail!(
                    "name what to erase with --source, --type, --pipeline, --outcome, --since, --until or -q; or --all for every event"
                );
            }
            let filter = query.to_filter(registry).map_err(anyhow::Error::msg)?;
            let ids = crate::admin::events::select_ids(journal.as_ref(), filter).await?;
            let erased = journal.erase_events(ids).await?;
            outln!(
                "erased {} events and {} dead letters",
                erased.events,
                erased.dead_letters
            );
            if erased.busy > 0 {
                bail!(
                    "{} matching events had a delivery under way and were left; run this again in a moment",
                    erased.busy
                );
            }
        }
    }
    Ok(())
}

/// The pipeline must be in the config and take the event's source (read from the file alone,
/// so no secret is needed); returns the source it takes.
fn check_pipeline(config: &Path, pipeline: &str, source: Option<&str>) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(config)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", config.display()))?;
    let doc: toml::Table = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {}", config.display(), e.message()))?;
    let found = doc
        .get("pipelines")
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten()
        .find(|p| p.get("name").and_then(toml::Value::as_str) == Some(pipeline));
    let Some(found) = found else {
        bail!("{} has no pipeline `{pipeline}`", config.display());
    };
    let takes = found
        .get("source")
        .and_then(toml::Value::as_str)
        .unwrap_or_default();
    if let Some(source) = source.filter(|s| *s != takes) {
        bail!(
            "pipeline `{pipeline}` takes events of source `{takes}`, and this event came from `{source}`"
        );
    }
    Ok(takes.to_string())
}

/// `leads: delivered, archive: dropped at 0:only-new`.
fn outcomes(e: &EventSummary) -> String {
    if e.pipelines.is_empty() {
        return "(none)".into();
    }
    e.pipelines
        .iter()
        .map(|p| format!("{}: {}", p.pipeline, state_text(p)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where an event stands in one pipeline, in words: `delivered`, `dropped at 0:only-new`,
/// `dead-lettered at 2:http` (also `hookline test --from-journal`'s "was").
pub(crate) fn state_text(p: &PipelineState) -> String {
    let word = outcome_word(p.outcome);
    match (p.outcome, p.stage, &p.stage_name) {
        (EventOutcome::Delivered | EventOutcome::Finished, ..) | (EventOutcome::InFlight, ..) => {
            word.to_string()
        }
        (_, Some(i), Some(name)) => format!("{word} at {i}:{name}"),
        (_, Some(i), None) => format!("{word} at {i}"),
        _ => word.to_string(),
    }
}

fn outcome_word(o: EventOutcome) -> &'static str {
    match o {
        EventOutcome::Delivered => "delivered",
        EventOutcome::Dropped => "dropped",
        EventOutcome::Retrying => "retrying",
        EventOutcome::Paused => "paused",
        EventOutcome::DeadLettered => "dead-lettered",
        EventOutcome::InFlight => "in flight",
        EventOutcome::Finished => "finished",
    }
}

fn show(e: &EventRecord) -> anyhow::Result<()> {
    let s = &e.summary;
    outln!("event     {}", s.id);
    outln!("source    {}", s.source);
    outln!("type      {}", s.event_type);
    outln!("received  {}", s.received_at);
    outln!("headers");
    for (name, value) in &e.headers {
        outln!("  {name}: {value}");
    }
    outln!("pipelines");
    for p in &s.pipelines {
        let mut line = format!("  {:<16} {}", p.pipeline, outcome_word(p.outcome));
        if let Some(i) = p.stage {
            line.push_str(&format!(
                " at stage {i}{}",
                p.stage_name
                    .as_deref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default()
            ));
        }
        line.push_str(&format!(
            ", {} attempt{}",
            p.attempts,
            if p.attempts == 1 { "" } else { "s" }
        ));
        if let Some(next) = p.next_attempt_at {
            line.push_str(&format!(", next at {next}"));
        }
        if let Some(error) = &p.error {
            line.push_str(&format!(": {error}"));
        }
        outln!("{line}");
    }
    if !e.attempts.is_empty() {
        outln!("attempts");
        for a in &e.attempts {
            outln!(
                "  {}  {:<16} stage {} ({})  {:?}  {:.1} ms{}",
                a.at.strftime("%Y-%m-%d %H:%M:%S%.3f"),
                a.pipeline,
                a.stage,
                a.stage_name,
                a.result,
                a.duration_us as f64 / 1000.0,
                a.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            );
        }
    }
    if !e.dead_letters.is_empty() {
        outln!("dead letters  {}", e.dead_letters.join(", "));
    }
    outln!("payload");
    outln!("{}", serde_json::to_string_pretty(&e.payload)?);
    Ok(())
}
