//! Bulk replay jobs and unprocessable requests, as the journal keeps them.
//!
//! A replay job sends every retained event a filter selects into one pipeline, in bounded
//! batches. Its state lives in the journal, so it survives a restart: each batch's replays
//! and the job's progress (counts and cursor) are one commit, so a job resumed from its
//! cursor never replays an event twice nor skips one. One runner works a job at a time: it
//! holds a lease it renews with every batch; a lease that has run out may be taken over.
//!
//! An unprocessable request is a verified request that could not become an event (not
//! JSON, no event type, a required field missing): it is kept, with its raw body and the
//! headers an event would keep, until the config can process it and it is re-run.

use std::collections::BTreeMap;

use hookline_plugin_api::Event;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Where a replay job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Working, or waiting for a runner (after a restart, or a runner that stopped).
    Running,
    /// Went through every event the filter selects.
    Done,
    /// Cancelled: no batch runs after the one under way.
    Cancelled,
    /// Stopped on an error it could not get past (`error` says which).
    Failed,
}

impl JobState {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Cancelled => "cancelled",
            JobState::Failed => "failed",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<JobState> {
        Some(match s {
            "running" => JobState::Running,
            "done" => JobState::Done,
            "cancelled" => JobState::Cancelled,
            "failed" => JobState::Failed,
            _ => return None,
        })
    }
}

/// A replay job to create.
#[derive(Debug, Clone)]
pub struct NewReplayJob {
    /// The pipeline every selected event is sent into.
    pub pipeline: String,
    /// That pipeline's source: only its events are selected.
    pub source: String,
    /// Resume each event at the stage where it was dead-lettered in `pipeline`.
    pub from_failed: bool,
    /// The event filters as given (shown back).
    pub filter: serde_json::Value,
    /// The filters as the runner applies them: relative times made absolute at creation, so
    /// that a job resumed tomorrow selects what it selected today.
    pub plan: serde_json::Value,
    /// Events per batch.
    pub batch: u32,
    /// The runner waits while the pipeline has more deliveries than this pending.
    pub max_pending: u64,
    /// Who runs it first (holds the lease from creation), until `lease_until`.
    pub owner: Option<String>,
    pub lease_until: Timestamp,
}

/// A replay job with its progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplayJob {
    pub id: String,
    pub state: JobState,
    pub pipeline: String,
    pub source: String,
    pub from_failed: bool,
    /// The event filters as given.
    pub filter: serde_json::Value,
    #[serde(skip)]
    pub plan: serde_json::Value,
    pub batch: u32,
    pub max_pending: u64,
    /// Events the filter selected so far.
    pub matched_so_far: u64,
    /// Of those, sent into the pipeline.
    pub replayed: u64,
    /// Of those, left alone; `skipped_reasons` counts why.
    pub skipped: u64,
    pub skipped_reasons: BTreeMap<String, u64>,
    /// Batches that failed (and were tried again, or failed the job).
    pub errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Where the job goes on: events older than this are still to look at.
    pub cursor: Option<String>,
    /// Who holds the lease (`serve:<boot>` or `cli:<id>`), and until when.
    pub lease_owner: Option<String>,
    pub lease_until: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

/// One batch of a job, to commit with its progress.
#[derive(Debug, Clone)]
pub struct JobBatch {
    pub job: String,
    /// The runner: the batch commits only while it holds the job's lease.
    pub owner: String,
    /// The lease, renewed by the batch.
    pub lease_until: Timestamp,
    /// The events of the batch the filter selected.
    pub ids: Vec<String>,
    /// Where the job goes on after this batch; `None`: nothing older is left (done).
    pub next: Option<String>,
}

/// How a runner takes a job's lease.
#[derive(Debug, Clone)]
pub struct Lease {
    pub owner: String,
    pub until: Timestamp,
    /// Also take it from a holder whose owner starts with this, its lease notwithstanding:
    /// a serving process takes over what an earlier serving process held (only one serves a
    /// journal at a time, so that one is gone).
    pub take_from: Option<String>,
}

/// A verified request that could not be processed, kept as it arrived.
#[derive(Debug, Clone, Serialize)]
pub struct UnprocessableRequest {
    /// The id its 2xx answer named.
    pub id: String,
    /// Its dead letter.
    pub dead_letter: String,
    pub source: String,
    pub received_at: Timestamp,
    /// Why it could not be processed.
    pub reason: String,
    /// `unprocessable`, or `rerun` once it became an event.
    pub state: RequestState,
    /// The event a re-run made of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rerun_at: Option<Timestamp>,
    /// The headers an event would keep (never signature headers or credentials); empty
    /// for requests kept before they were stored.
    pub headers: Vec<(String, String)>,
    /// The raw body as text (lossy), `None` in listings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(skip)]
    pub raw: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestState {
    Unprocessable,
    Rerun,
}

/// A page of unprocessable requests, newest first; `next` continues it.
#[derive(Debug, Clone, Serialize)]
pub struct RequestPage {
    pub items: Vec<UnprocessableRequest>,
    pub next: Option<String>,
}

/// What a re-run of a request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rerun {
    /// Journaled as this event, with a pending delivery for each of these pipelines.
    Accepted {
        event_id: String,
        pipelines: usize,
    },
    /// Re-run before: the event it became.
    Already {
        event_id: String,
    },
    NotFound,
}

/// The event a request becomes on a re-run, with where it goes.
#[derive(Debug, Clone)]
pub struct RerunEvent {
    pub event: Event,
    pub pipelines: Vec<String>,
    pub order_keys: Vec<Option<String>>,
}
