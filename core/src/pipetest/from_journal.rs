//! `hookline test --from-journal N`: try a config on real traffic. The newest N retained
//! events of the journal (read through the history API, on the journal's readers, whether
//! or not `serve` runs) go through the config's pipelines as `serve` builds them, with every
//! sink replaced by a recorder: nothing is sent anywhere and nothing is written to the
//! journal. The report says, per pipeline, how many would be delivered, dropped or fail, the
//! first failures, and for every event whose outcome differs from the one recorded in its
//! history, a diff line.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::bail;
use clap::Args;
use hookline_plugin_api::{Event, Registry};
use jiff::Timestamp;
use serde::Serialize;

use super::compare::{Now, Verdict, compare, diff_line};
use crate::admin::events::EventsQuery;
use crate::journal::{EventSummary, Journal, JournalError, PipelineState};
use crate::runtime::{Pipeline, Runtime, StageOp};

/// The most events one run replays: enough for a day of most services, small enough to
/// finish in seconds and to keep every event's summary in memory.
pub(crate) const MAX_EVENTS: u64 = 10_000;
/// Failures listed per pipeline.
const FIRST_FAILURES: usize = 3;
/// Events asked of the journal per page (its largest page).
const PAGE: u64 = 500;

/// `hookline test --from-journal N` and its options.
#[derive(Debug, Args, Default)]
pub struct FromJournalArgs {
    /// Instead of the TOML tests, run the config's pipelines over the newest N retained events
    /// of its journal (sinks recorded, nothing sent) and report what would change (at most
    /// 10000).
    #[arg(long, value_name = "N")]
    pub(crate) from_journal: Option<u64>,
    /// The journal file to read (default: the one the tested config's `[storage]` names).
    #[arg(long, requires = "from_journal")]
    pub(crate) db: Option<PathBuf>,
    /// Only events of this source.
    #[arg(long, requires = "from_journal")]
    pub(crate) source: Option<String>,
    /// Only events of this type.
    #[arg(long = "type", requires = "from_journal")]
    pub(crate) event_type: Option<String>,
    /// Only events received since this RFC 3339 time, or this long ago (`1h`, `7d`).
    #[arg(long, requires = "from_journal")]
    pub(crate) since: Option<String>,
    /// Print the report as JSON.
    #[arg(long, requires = "from_journal")]
    pub(crate) json: bool,
    /// Exit with status 1 when any outcome changed.
    #[arg(long, requires = "from_journal")]
    pub(crate) fail_on_change: bool,
}

/// The whole report (`--json` prints it as is).
#[derive(Debug, Default, Serialize)]
pub(crate) struct Report {
    /// N as asked.
    pub(crate) requested: u64,
    /// Events run (fewer than asked when the journal holds fewer).
    pub(crate) events: u64,
    /// Listed but pruned before they could be read.
    pub(crate) vanished: u64,
    /// `--source`, `--type` or `--since` narrowed the sample.
    pub(crate) filtered: bool,
    pub(crate) oldest: Option<Timestamp>,
    pub(crate) newest: Option<Timestamp>,
    /// The tested config's pipelines in config order, then those only in the history.
    pub(crate) pipelines: Vec<PipelineReport>,
    /// Every changed outcome, newest event first.
    pub(crate) changes: Vec<Change>,
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct PipelineReport {
    pub(crate) pipeline: String,
    /// In the tested config (`false`: only in the history: it would receive nothing now).
    pub(crate) in_config: bool,
    /// No sampled event went there before: counts, no diff.
    pub(crate) new: bool,
    /// Events the tested config routes here.
    pub(crate) routed: u64,
    pub(crate) delivered: u64,
    pub(crate) dropped: u64,
    pub(crate) failed: u64,
    pub(crate) failed_retryable: u64,
    pub(crate) failed_fatal: u64,
    /// Outcomes that differ from the recorded ones.
    pub(crate) changed: u64,
    /// Recorded outcomes not yet settled (paused, in flight), or none (a new pipeline).
    pub(crate) not_compared: u64,
    pub(crate) first_failures: Vec<Failure>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Failure {
    pub(crate) event_id: String,
    pub(crate) stage: usize,
    pub(crate) stage_name: String,
    pub(crate) retryable: bool,
    pub(crate) error: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct Change {
    pub(crate) event_id: String,
    pub(crate) pipeline: String,
    /// The recorded state (`null`: it was not routed there).
    pub(crate) was: Option<PipelineState>,
    /// The tested outcome (`null`: the tested config does not route it there).
    pub(crate) now: Option<Now>,
    /// The diff line as printed.
    pub(crate) line: String,
}

impl FromJournalArgs {
    /// Whether any option of `--from-journal` was given (they need it).
    pub(crate) fn is_requested(&self) -> bool {
        self.from_journal.is_some()
    }
}

/// Run `--from-journal`: print the report; `Ok(changes)`.
pub(crate) async fn run(
    config: &Path,
    runtime: &Runtime,
    args: &FromJournalArgs,
    registry: &Registry,
) -> anyhow::Result<usize> {
    let n = args.from_journal.unwrap_or(0);
    if n == 0 || n > MAX_EVENTS {
        bail!(
            "--from-journal {n}: give between 1 and {MAX_EVENTS} events (narrow a larger sample with --since, --source or --type)"
        );
    }
    let query = EventsQuery {
        source: args.source.clone(),
        event_type: args.event_type.clone(),
        since: args.since.clone(),
        ..EventsQuery::default()
    };
    let filter = query.to_filter(registry).map_err(anyhow::Error::msg)?;
    let journal = crate::dlq::open_journal(config, args.db.as_deref()).await?;
    let sample = newest(journal.as_ref(), filter, n).await?;
    let mut report = replay(journal.as_ref(), runtime, n, &sample).await?;
    report.filtered = !query.is_unfiltered();
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print(&report)?;
    }
    Ok(report.changes.len())
}

/// What a journal without history says, as the command's error.
fn history_error(e: JournalError) -> anyhow::Error {
    match e {
        JournalError::Unsupported(why) => {
            anyhow::anyhow!("--from-journal reads the journal's event history: {why}")
        }
        other => other.into(),
    }
}

/// The newest `n` retained events matching `filter`, newest first (summaries only).
async fn newest(
    journal: &dyn Journal,
    filter: crate::journal::EventFilter,
    n: u64,
) -> anyhow::Result<Vec<EventSummary>> {
    let mut found: Vec<EventSummary> = Vec::new();
    let mut cursor = None;
    loop {
        let want = (n - found.len() as u64).min(PAGE);
        let page = journal
            .list_events(filter.clone(), cursor, want)
            .await
            .map_err(history_error)?;
        found.extend(page.items);
        if found.len() as u64 >= n {
            found.truncate(n as usize);
            return Ok(found);
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(found),
        }
    }
}

/// Run every sampled event, one at a time (only its summary stays in memory), and build the
/// report.
async fn replay(
    journal: &dyn Journal,
    runtime: &Runtime,
    requested: u64,
    sample: &[EventSummary],
) -> anyhow::Result<Report> {
    let pipelines = super::with_recorders(runtime)?;
    let known: BTreeSet<&str> = sample
        .iter()
        .flat_map(|e| e.pipelines.iter().map(|p| p.pipeline.as_str()))
        .collect();
    let mut report = Report {
        requested,
        newest: sample.first().map(|e| e.received_at),
        oldest: sample.last().map(|e| e.received_at),
        ..Report::default()
    };
    report.pipelines = pipelines
        .iter()
        .map(|p| PipelineReport {
            pipeline: p.name.clone(),
            in_config: true,
            new: !known.contains(p.name.as_str()),
            ..PipelineReport::default()
        })
        .collect();
    for gone in known
        .iter()
        .filter(|k| !pipelines.iter().any(|p| p.name == **k))
    {
        report.pipelines.push(PipelineReport {
            pipeline: gone.to_string(),
            ..PipelineReport::default()
        });
    }
    for summary in sample {
        let Some(record) = journal
            .get_event(summary.id.clone())
            .await
            .map_err(history_error)?
        else {
            report.vanished += 1;
            continue;
        };
        report.events += 1;
        let event = Event {
            id: record.summary.id,
            source: record.summary.source,
            event_type: record.summary.event_type,
            received_at: record.summary.received_at,
            headers: record.headers,
            payload: record.payload,
        };
        for (i, p) in pipelines.iter().enumerate() {
            let routed = p.source == event.source && p.matches(&event.event_type);
            let now = match routed {
                true => Some(run_one(p, &event).await),
                false => None,
            };
            let was = summary.pipelines.iter().find(|s| s.pipeline == p.name);
            tally(&mut report, i, p, &event.id, was, now);
        }
        // Pipelines of the history that the tested config no longer has.
        for was in &summary.pipelines {
            if let Some(i) = report
                .pipelines
                .iter()
                .position(|r| !r.in_config && r.pipeline == was.pipeline)
            {
                report.pipelines[i].changed += 1;
                report.changes.push(Change {
                    event_id: event.id.clone(),
                    pipeline: was.pipeline.clone(),
                    line: diff_line(&event.id, &was.pipeline, Some(was), None),
                    was: Some(was.clone()),
                    now: None,
                });
            }
        }
    }
    Ok(report)
}

/// The event through one pipeline, from its first stage.
async fn run_one(pipeline: &Pipeline, event: &Event) -> Now {
    let outcomes = pipeline.run(event.clone(), 0).await;
    Now::of(&outcomes, |i| {
        pipeline
            .stages
            .get(i)
            .map(|s| s.name.clone())
            .unwrap_or_default()
    })
}

/// Count one event's outcome in pipeline `index` of the report and note a change.
fn tally(
    report: &mut Report,
    index: usize,
    pipeline: &Arc<Pipeline>,
    event_id: &str,
    was: Option<&PipelineState>,
    now: Option<Now>,
) {
    let r = &mut report.pipelines[index];
    let is_sink = |name: &str| {
        pipeline
            .stages
            .iter()
            .any(|s| s.name == name && matches!(s.op, StageOp::Sink(_)))
    };
    match &now {
        None => {}
        Some(Now::Delivered) => r.delivered += 1,
        Some(Now::Dropped { .. }) => r.dropped += 1,
        Some(Now::Failed {
            stage,
            stage_name,
            retryable,
            error,
        }) => {
            r.failed += 1;
            match retryable {
                true => r.failed_retryable += 1,
                false => r.failed_fatal += 1,
            }
            if r.first_failures.len() < FIRST_FAILURES {
                r.first_failures.push(Failure {
                    event_id: event_id.to_string(),
                    stage: *stage,
                    stage_name: stage_name.clone(),
                    retryable: *retryable,
                    error: error.clone(),
                });
            }
        }
    }
    if now.is_some() {
        r.routed += 1;
    }
    match compare(was, now.as_ref(), !r.new, is_sink) {
        Verdict::Same => {}
        Verdict::NotCompared => r.not_compared += 1,
        Verdict::Changed => {
            r.changed += 1;
            report.changes.push(Change {
                event_id: event_id.to_string(),
                pipeline: pipeline.name.clone(),
                line: diff_line(event_id, &pipeline.name, was, now.as_ref()),
                was: was.cloned(),
                now,
            });
        }
    }
}

/// Text that stays on one line (an error may hold newlines or control characters).
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn print(r: &Report) -> anyhow::Result<()> {
    let span = match (r.oldest, r.newest) {
        (Some(o), Some(n)) => format!(
            ", received {} to {}",
            o.strftime("%Y-%m-%d %H:%M:%S"),
            n.strftime("%Y-%m-%d %H:%M:%S")
        ),
        _ => String::new(),
    };
    let fewer = match (r.events + r.vanished < r.requested, r.filtered) {
        (false, _) => "",
        (true, false) => " (the journal holds no more)",
        (true, true) => " (no more match the filters)",
    };
    outln!(
        "ran {} of the newest {} journaled events{fewer}{span}; sinks recorded, nothing sent",
        r.events,
        r.requested
    );
    if r.vanished > 0 {
        outln!(
            "{} listed events were pruned before they could be read",
            r.vanished
        );
    }
    for p in &r.pipelines {
        let tag = match (p.in_config, p.new) {
            (false, _) => " (not in the tested config)",
            (true, true) => " (new: no history in the sample, not compared)",
            (true, false) => "",
        };
        let mut line = format!(
            "pipeline {}{tag}: {} routed: {} delivered, {} dropped, {} failed ({} retryable, {} fatal); {} changed",
            p.pipeline,
            p.routed,
            p.delivered,
            p.dropped,
            p.failed,
            p.failed_retryable,
            p.failed_fatal,
            p.changed
        );
        if p.not_compared > 0 && !p.new {
            line.push_str(&format!(", {} not settled, not compared", p.not_compared));
        }
        outln!("{line}");
        for f in &p.first_failures {
            outln!(
                "  failure  {}  at {}:{} ({}): {}",
                f.event_id,
                f.stage,
                f.stage_name,
                if f.retryable { "retryable" } else { "fatal" },
                one_line(&f.error)
            );
        }
    }
    if !r.changes.is_empty() {
        outln!("changes:");
        for c in &r.changes {
            outln!("  {}", one_line(&c.line));
        }
    }
    let events: BTreeSet<&str> = r.changes.iter().map(|c| c.event_id.as_str()).collect();
    outln!(
        "{} outcome{} changed in {} event{}",
        r.changes.len(),
        if r.changes.len() == 1 { "" } else { "s" },
        events.len(),
        if events.len() == 1 { "" } else { "s" }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_without_history_is_a_clear_error_naming_the_option() {
        let e = history_error(JournalError::Unsupported(crate::journal::NO_HISTORY.into()));
        let text = e.to_string();
        assert!(
            text.starts_with("--from-journal reads the journal's event history: "),
            "{text}"
        );
        assert!(text.contains("keeps no event history"), "{text}");
        let other = history_error(JournalError::Closed).to_string();
        assert_eq!(other, "journal is closed");
    }

    #[test]
    fn one_line_keeps_an_error_on_its_line() {
        assert_eq!(one_line("a\nb\r\tc"), "a b  c");
    }
}
