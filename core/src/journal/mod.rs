//! The journal: where an event is made durable before its 2xx, and where every delivery's
//! state lives — current stage, attempts, next attempt time, last error — so that a crash, a
//! restart or a five-hour backoff loses nothing. Dead letters live here too.
//!
//! [`Journal`] is the seam between the flow and the store: [`SqliteJournal`] is the
//! embedded default, [`NatsJournal`] the scale-out one (NATS JetStream).

mod nats;
mod replays;
mod rules;
mod sqlite;

use hookline_plugin_api::Event;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

pub(crate) use nats::{NatsJournal, Provision};
pub use replays::{
    JobBatch, JobState, Lease, NewReplayJob, ReplayJob, RequestPage, RequestState, Rerun,
    RerunEvent, UnprocessableRequest,
};
pub use rules::LetterState;
pub(crate) use rules::{DeliveryState, parse_since};
pub use sqlite::SqliteJournal;

/// An event to make durable, with one delivery per pipeline it was routed to.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event: Event,
    /// Same source + same key within `dedupe_until` → a duplicate, not processed again.
    pub dedupe_key: Option<String>,
    /// Until when this event's key marks later copies as duplicates.
    pub dedupe_until: Timestamp,
    pub pipelines: Vec<String>,
    /// For each pipeline, the event's ordering key there (`order_key`), or `None`. A
    /// delivery with a key runs only after every earlier pending delivery with the same key
    /// in that pipeline; it is not handed back to run at once. Empty: no keys.
    pub order_keys: Vec<Option<String>>,
}

impl NewEvent {
    /// The ordering key of the delivery to `pipelines[index]`.
    pub(crate) fn order_key(&self, index: usize) -> Option<&str> {
        self.order_keys.get(index).and_then(Option::as_deref)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Journaled; these deliveries are claimed by this process and should run now. `queued`
    /// more wait their turn in the journal (ordered deliveries), for the poller.
    New {
        deliveries: Vec<DeliveryRef>,
        queued: usize,
    },
    /// Seen before: the first event's id.
    Duplicate { first_id: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRef {
    pub id: i64,
    pub pipeline: String,
}

/// A delivery ready to run: the event as it enters `stage`.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: i64,
    pub pipeline: String,
    pub stage: usize,
    /// The name of the stage at `stage` when the delivery was stored to wait there: a reload
    /// that moves stages cannot send it to another one (`Pipeline::resume_at`). `None` for a
    /// first run, and for a retry stored before names were kept (resumed by position).
    pub stage_name: Option<String>,
    /// Attempts already made at `stage`.
    pub attempts: u32,
    pub first_failed_at: Option<Timestamp>,
    /// Shared, not copied, between the runs of one event through its pipelines.
    pub event: std::sync::Arc<Event>,
}

/// How one run ended, for [`Journal::settle_many`]: no continuations means delivered.
#[derive(Debug, Clone)]
pub struct Settlement {
    pub delivery: i64,
    pub continuations: Vec<Continuation>,
    /// The run's attempts, for its event's history.
    pub attempts: Vec<Attempt>,
}

/// What happened to one branch of a delivery's run that did not complete.
#[derive(Debug, Clone)]
pub enum Continuation {
    /// Try again at `stage` from `next_attempt_at`.
    Retry {
        stage: usize,
        /// The name of the stage at `stage`, kept with the retry (see [`Delivery::stage_name`]).
        stage_name: Option<String>,
        event: Event,
        attempts: u32,
        next_attempt_at: Timestamp,
        error: String,
        first_failed_at: Timestamp,
        /// Parked rather than due at `next_attempt_at`: out of the poller's way until
        /// released (the SQLite journal; NATS redelivers at `next_attempt_at`).
        held: Option<Hold>,
    },
    /// Give up: a dead letter.
    Dead(NewDeadLetter),
}

/// One run of a delivery that made an attempt, for its event's history: the stage the run
/// ended at and how. Runs that made no attempt (a paused pipeline, an open circuit, no rate
/// to spare) are not recorded; the delivery's state says where it waits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub event_id: String,
    pub pipeline: String,
    /// The stage the run ended at: the last one when delivered.
    pub stage: usize,
    pub stage_name: String,
    /// When the run ended.
    pub at: Timestamp,
    /// How long the run took, from the stage it started at to the one it ended at.
    pub duration_us: u64,
    pub result: AttemptResult,
    /// Why it failed (`retry`, `dead`).
    pub error: Option<String>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptResult {
    /// Went through every stage.
    Delivered,
    /// A filter (or a transform returning nothing) dropped it.
    Dropped,
    /// A stage failed; another attempt is scheduled.
    Retry,
    /// A stage failed for good: a dead letter.
    Dead,
}

impl AttemptResult {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AttemptResult::Delivered => "delivered",
            AttemptResult::Dropped => "dropped",
            AttemptResult::Retry => "retry",
            AttemptResult::Dead => "dead",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "delivered" => AttemptResult::Delivered,
            "dropped" => AttemptResult::Dropped,
            "retry" => AttemptResult::Retry,
            "dead" => AttemptResult::Dead,
            _ => return None,
        })
    }
}

/// Which events to list (`GET /api/v1/events`, `hookline events list`). Every condition
/// given must hold.
#[derive(Clone, Default)]
pub struct EventFilter {
    pub source: Option<String>,
    pub event_type: Option<String>,
    /// Routed to this pipeline (and, with `outcome`, with that outcome there).
    pub pipeline: Option<String>,
    pub outcome: Option<EventOutcome>,
    /// Received at or after.
    pub since: Option<Timestamp>,
    /// Received before.
    pub until: Option<Timestamp>,
    /// A condition on the whole event (the `q` CEL expression), evaluated by the reader on
    /// each candidate: an error counts as no match.
    pub matcher: Option<Matcher>,
}

/// A condition on a whole event, such as a compiled CEL expression.
pub type Matcher = std::sync::Arc<dyn Fn(&Event) -> bool + Send + Sync>;

impl std::fmt::Debug for EventFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventFilter")
            .field("source", &self.source)
            .field("event_type", &self.event_type)
            .field("pipeline", &self.pipeline)
            .field("outcome", &self.outcome)
            .field("since", &self.since)
            .field("until", &self.until)
            .field("matcher", &self.matcher.is_some())
            .finish()
    }
}

/// Where an event stands in one pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventOutcome {
    /// Went through every stage.
    Delivered,
    /// A filter dropped it at `stage`.
    Dropped,
    /// Failed at `stage`; another attempt is scheduled (or it waits for the sink's circuit).
    Retrying,
    /// Waits for its paused pipeline.
    Paused,
    /// Failed for good at `stage`: a dead letter.
    DeadLettered,
    /// Its first run is under way.
    InFlight,
    /// Finished (delivered or dropped) before this journal kept history.
    Finished,
}

impl EventOutcome {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "delivered" => EventOutcome::Delivered,
            "dropped" => EventOutcome::Dropped,
            "retrying" => EventOutcome::Retrying,
            "paused" => EventOutcome::Paused,
            "dead_lettered" | "dead" => EventOutcome::DeadLettered,
            "in_flight" => EventOutcome::InFlight,
            "finished" => EventOutcome::Finished,
            _ => return None,
        })
    }

    /// The words [`EventOutcome::parse`] takes, for error messages.
    pub const NAMES: &'static str =
        "delivered, dropped, retrying, paused, dead_lettered, in_flight, finished";
}

/// An event's state in one pipeline it was routed to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PipelineState {
    pub pipeline: String,
    pub outcome: EventOutcome,
    /// Where it was dropped, waits or failed; the last stage when delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Attempts recorded in this pipeline.
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Timestamp>,
}

/// One event in a listing.
#[derive(Debug, Clone, Serialize)]
pub struct EventSummary {
    pub id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub received_at: Timestamp,
    pub pipelines: Vec<PipelineState>,
}

/// One event with everything the journal keeps of it.
#[derive(Debug, Clone, Serialize)]
pub struct EventRecord {
    #[serde(flatten)]
    pub summary: EventSummary,
    /// As stored: signature headers are never stored.
    pub headers: Vec<(String, String)>,
    pub payload: serde_json::Value,
    /// Every recorded attempt, oldest first.
    pub attempts: Vec<Attempt>,
    /// Ids of its dead letters.
    pub dead_letters: Vec<String>,
}

/// A page of events, newest first. `next` continues the listing where this page stopped;
/// `None` when nothing older is left. A page can hold fewer than asked (even none) when
/// the reader stopped at its scan budget: follow `next`.
#[derive(Debug, Clone, Serialize)]
pub struct EventPage {
    pub items: Vec<EventSummary>,
    pub next: Option<String>,
    /// Events looked at for this page.
    pub scanned: u64,
}

/// Why a pending delivery is parked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Its pipeline is paused.
    Paused,
    /// Its sink's circuit is open.
    Circuit,
}

impl Hold {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Hold::Paused => "paused",
            Hold::Circuit => "circuit",
        }
    }
}

/// Which held deliveries to let go.
#[derive(Debug, Clone)]
pub struct Release {
    pub hold: Hold,
    /// `None`: every pipeline.
    pub pipeline: Option<String>,
    /// `None`: every stage.
    pub stage: Option<usize>,
    /// `Some(1)`: one delivery, a circuit's probe.
    pub limit: Option<u32>,
}

/// A dead letter about to be written.
#[derive(Debug, Clone)]
pub struct NewDeadLetter {
    pub event_id: String,
    pub source: String,
    /// `None` for a request that failed before routing (malformed but signed).
    pub pipeline: Option<String>,
    pub stage_index: Option<usize>,
    pub stage_name: Option<String>,
    pub error: String,
    pub attempts: u32,
    pub first_failed_at: Timestamp,
    pub last_failed_at: Timestamp,
    /// The event as it entered the failed stage.
    pub event: Option<Event>,
    /// The raw request body, when the event could not be decoded.
    pub raw: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetter {
    pub id: String,
    pub event_id: String,
    pub source: String,
    pub pipeline: Option<String>,
    pub stage_index: Option<usize>,
    pub stage_name: Option<String>,
    pub error: String,
    pub attempts: u32,
    pub first_failed_at: Timestamp,
    pub last_failed_at: Timestamp,
    pub created_at: Timestamp,
    /// `dead`, or `replayed` once sent back into its pipeline.
    pub state: LetterState,
    pub replayed_at: Option<Timestamp>,
    pub event: Option<Event>,
    /// Raw body as text (lossy) when the request could not be decoded.
    pub raw: Option<String>,
}

/// Which dead letters to list, replay or purge.
#[derive(Debug, Clone, Default)]
pub struct DeadLetterFilter {
    pub pipeline: Option<String>,
    pub stage: Option<String>,
    /// Substring of the error.
    pub reason: Option<String>,
    pub since: Option<Timestamp>,
    /// Include ones already replayed.
    pub include_replayed: bool,
    /// Only the letters of this event (the id logs and the 2xx name).
    pub event_id: Option<String>,
    /// For lists: leave out what can be large — the event's payload and headers (`null`,
    /// `[]`) and the raw body (empty when there is one) — so a page of letters with 1 MiB
    /// bodies costs no more memory than one without. The SQLite journal does this in its
    /// query; the NATS journal after reading each letter.
    pub summaries: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
    pub offset: u64,
    pub limit: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Replayed {
    /// A new pending delivery was created.
    Queued {
        delivery_id: i64,
    },
    NotFound,
    /// Already replayed, or not replayable (no event snapshot and no pipeline).
    Skipped {
        reason: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("journal is closed")]
    Closed,
    #[error("journal: stored data is not valid: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Open(String),
    #[error("journal (NATS): {0}")]
    Nats(String),
    #[error("{0}")]
    Unsupported(String),
    /// A request the journal cannot take as given (a bad cursor).
    #[error("{0}")]
    Invalid(String),
}

/// Counts the journal keeps current, for backpressure and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Depths {
    pub pending: u64,
    pub dead: u64,
}

/// One pipeline as the journal sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Route<'a> {
    pub(crate) name: &'a str,
    pub(crate) source: &'a str,
    /// Its `events` globs.
    pub(crate) events: &'a [String],
}

/// What a journal needs to know of the pipelines in force (NATS keeps consumers per
/// pipeline and labels subjects by event type). The runtime implements it, so the journal
/// never reaches up into the engine.
pub(crate) trait Routes: Send + Sync {
    /// Every pipeline, in config order.
    fn routes(&self) -> Vec<Route<'_>>;
    /// Whether `pipeline` takes events of `event_type`; `None`: no such pipeline.
    fn wants(&self, pipeline: &str, event_type: &str) -> Option<bool>;
    /// The source that feeds `pipeline`.
    fn source_of(&self, pipeline: &str) -> Option<&str>;
    /// The `event_type` label of a source's event: declared by the source, or `other`;
    /// `None`: no such source.
    fn type_label<'a>(&'a self, source: &str, event_type: &'a str) -> Option<&'a str>;
}

/// The routes in force now: a new value after each reload.
pub(crate) trait LiveRoutes: Send + Sync {
    fn current(&self) -> std::sync::Arc<dyn Routes>;
}

/// The store behind ingest and the workers.
#[async_trait::async_trait]
pub trait Journal: Send + Sync + std::fmt::Debug {
    /// Durably record an event and its deliveries (or detect a duplicate). Returns only after
    /// the commit: the caller may answer 2xx.
    async fn accept(&self, event: &NewEvent) -> Result<Accepted, JournalError>;
    /// Record a request that passed verification but cannot be processed.
    async fn dead_letter(&self, letter: NewDeadLetter) -> Result<String, JournalError>;
    /// Claim up to `limit` pending deliveries due by `now` that no live run holds.
    async fn claim_due(&self, now: Timestamp, limit: usize) -> Result<Vec<Delivery>, JournalError>;
    /// Deliveries just accepted that this process has no room to run now: keep them in the
    /// journal, claimable by the poller, instead of in memory. (NATS never hands any out.)
    async fn defer(&self, deliveries: Vec<i64>) -> Result<(), JournalError> {
        let _ = deliveries;
        Ok(())
    }
    /// Record how a run ended: no continuations means delivered.
    async fn settle(
        &self,
        delivery: i64,
        continuations: Vec<Continuation>,
    ) -> Result<(), JournalError> {
        self.settle_recorded(delivery, continuations, Vec::new())
            .await
    }
    /// [`Journal::settle`], and add the run's attempts to its event's history in the same
    /// commit.
    async fn settle_recorded(
        &self,
        delivery: i64,
        continuations: Vec<Continuation>,
        attempts: Vec<Attempt>,
    ) -> Result<(), JournalError>;
    /// Settle several runs (an event's first runs through its pipelines, say). Each run that
    /// is settled leaves `runs`, so that after an error the caller tries again with only what
    /// is left. SQLite settles them all in one operation; by default, one at a time.
    async fn settle_many(&self, runs: &mut Vec<Settlement>) -> Result<(), JournalError> {
        while let Some(run) = runs.first() {
            self.settle_recorded(
                run.delivery,
                run.continuations.clone(),
                run.attempts.clone(),
            )
            .await?;
            runs.remove(0);
        }
        Ok(())
    }
    /// Counts for `/metrics` and `/readyz`, asked on every request to them: SQLite answers
    /// from counters without a query.
    async fn depths(&self) -> Result<Depths, JournalError>;
    /// Pending deliveries as last counted, without a query: cheap enough for every request.
    fn pending_hint(&self) -> u64;
    /// Why this process cannot take work from the journal — its workers cannot pull for
    /// longer than the store allows (NATS), or the journal's file is corrupt (SQLite) —
    /// so that `/readyz` reports not ready; `None` when it can.
    fn stalled(&self) -> Option<String> {
        None
    }
    async fn list_dead(
        &self,
        filter: DeadLetterFilter,
        offset: u64,
        limit: u64,
    ) -> Result<Page<DeadLetter>, JournalError>;
    async fn get_dead(&self, id: String) -> Result<Option<DeadLetter>, JournalError>;
    /// Send a dead letter back into its pipeline at the failed stage (or stage 0).
    async fn replay(&self, id: String, from_start: bool) -> Result<Replayed, JournalError>;
    /// Delete dead letters by id; returns how many were deleted.
    async fn purge(&self, ids: Vec<String>) -> Result<u64, JournalError>;
    /// Ids of dead letters matching a filter (for bulk replay and purge).
    async fn dead_ids(&self, filter: DeadLetterFilter) -> Result<Vec<String>, JournalError>;
    /// Delete delivered events received before `before`, and expired dedupe keys.
    async fn prune(&self, before: Timestamp, now: Timestamp) -> Result<u64, JournalError>;
    /// Let held deliveries go: due now, claimable again. Returns how many.
    async fn release(&self, release: Release) -> Result<u64, JournalError> {
        let _ = release;
        Ok(0)
    }
    /// Pause or resume a pipeline, durably: a paused pipeline's pending deliveries are held,
    /// and resuming releases them. Returns whether its state changed.
    async fn set_paused(&self, pipeline: String, paused: bool) -> Result<bool, JournalError> {
        let _ = (pipeline, paused);
        Err(JournalError::Unsupported(
            "pausing a pipeline needs the SQLite journal; with NATS, stop its workers (`--role`) instead".into(),
        ))
    }
    /// The paused pipelines.
    async fn paused(&self) -> Result<Vec<String>, JournalError> {
        Ok(Vec::new())
    }
    /// Retained events matching `filter`, newest first, from `cursor` (a page's `next`).
    async fn list_events(
        &self,
        filter: EventFilter,
        cursor: Option<String>,
        limit: u64,
    ) -> Result<EventPage, JournalError> {
        let _ = (filter, cursor, limit);
        Err(JournalError::Unsupported(NO_HISTORY.into()))
    }
    /// One retained event with its history; `None` if unknown or pruned.
    async fn get_event(&self, id: String) -> Result<Option<EventRecord>, JournalError> {
        let _ = id;
        Err(JournalError::Unsupported(NO_HISTORY.into()))
    }
    /// Send a retained event into `pipeline` (one of its source's, perhaps added after it
    /// arrived): from the first stage, or (`from_failed`) from the stage where it was
    /// dead-lettered in that pipeline.
    async fn replay_event(
        &self,
        event_id: String,
        pipeline: String,
        from_failed: bool,
    ) -> Result<Replayed, JournalError> {
        let _ = (event_id, pipeline, from_failed);
        Err(JournalError::Unsupported(NO_HISTORY.into()))
    }
    /// Delete these events and everything kept of them: history, deliveries, dead letters.
    async fn erase_events(&self, ids: Vec<String>) -> Result<Erased, JournalError> {
        let _ = ids;
        Err(JournalError::Unsupported(NO_HISTORY.into()))
    }
    /// [`Journal::dead_letter`] for a request that passed verification but could not become
    /// an event, keeping the headers an event would keep so that it can be re-run.
    async fn dead_letter_request(
        &self,
        letter: NewDeadLetter,
        headers: Vec<(String, String)>,
    ) -> Result<String, JournalError> {
        let _ = headers;
        self.dead_letter(letter).await
    }
    /// Unprocessable requests, newest first, from `cursor` (a page's `next`).
    async fn list_requests(
        &self,
        cursor: Option<String>,
        limit: u64,
    ) -> Result<RequestPage, JournalError> {
        let _ = (cursor, limit);
        Err(JournalError::Unsupported(REQUESTS_NEED_SQLITE.into()))
    }
    /// One unprocessable request (by the id its answer named), with its body.
    async fn get_request(&self, id: String) -> Result<Option<UnprocessableRequest>, JournalError> {
        let _ = id;
        Err(JournalError::Unsupported(REQUESTS_NEED_SQLITE.into()))
    }
    /// Journal the event a request became and its pending deliveries, and mark the request
    /// re-run, in one commit; a request re-run before is left as it is.
    async fn rerun_request(&self, id: String, event: RerunEvent) -> Result<Rerun, JournalError> {
        let _ = (id, event);
        Err(JournalError::Unsupported(REQUESTS_NEED_SQLITE.into()))
    }
    /// Create a bulk replay job, running (held by `job.owner` when given).
    async fn create_replay_job(&self, job: NewReplayJob) -> Result<ReplayJob, JournalError> {
        let _ = job;
        Err(JournalError::Unsupported(JOBS_NEED_SQLITE.into()))
    }
    /// The most recent replay jobs, newest first.
    async fn list_replay_jobs(&self, limit: u64) -> Result<Vec<ReplayJob>, JournalError> {
        let _ = limit;
        Err(JournalError::Unsupported(JOBS_NEED_SQLITE.into()))
    }
    async fn get_replay_job(&self, id: String) -> Result<Option<ReplayJob>, JournalError> {
        let _ = id;
        Err(JournalError::Unsupported(JOBS_NEED_SQLITE.into()))
    }
    /// Cancel a running job: no batch commits after this. A finished job is left as it is.
    async fn cancel_replay_job(&self, id: String) -> Result<Option<ReplayJob>, JournalError> {
        let _ = id;
        Err(JournalError::Unsupported(JOBS_NEED_SQLITE.into()))
    }
    /// Take or renew a running job's lease; `None` when it is not running or another
    /// runner holds it.
    async fn lease_replay_job(
        &self,
        id: String,
        lease: Lease,
    ) -> Result<Option<ReplayJob>, JournalError> {
        let _ = (id, lease);
        Err(JournalError::Unsupported(JOBS_NEED_SQLITE.into()))
    }
    /// Let a job's lease go at once (its runner stops), so that another may take it.
    async fn release_replay_job(&self, id: String, owner: String) -> Result<(), JournalError> {
        let _ = (id, owner);
        Err(JournalError::Unsupported(JOBS_NEED_SQLITE.into()))
    }
    /// Running jobs a runner could take now: no lease, a lease run out, or (`take_from`)
    /// one held by an earlier serving process.
    async fn claimable_replay_jobs(
        &self,
        now: Timestamp,
        take_from: Option<String>,
    ) -> Result<Vec<String>, JournalError> {
        let _ = (now, take_from);
        Err(JournalError::Unsupported(JOBS_NEED_SQLITE.into()))
    }
    /// Replay a batch and record the job's progress in one commit, if `batch.owner` still
    /// holds the running job; `None` when it does not (cancelled, or taken over).
    async fn replay_batch(&self, batch: JobBatch) -> Result<Option<ReplayJob>, JournalError> {
        let _ = batch;
        Err(JournalError::Unsupported(JOBS_NEED_SQLITE.into()))
    }
    /// Count a failed batch on the job; with `fatal`, the job fails with `error`.
    async fn replay_job_error(
        &self,
        id: String,
        owner: String,
        error: String,
        fatal: bool,
    ) -> Result<(), JournalError> {
        let _ = (id, owner, error, fatal);
        Err(JournalError::Unsupported(JOBS_NEED_SQLITE.into()))
    }
    /// Deliveries pending in a pipeline (waiting, retrying or held).
    async fn pending_in(&self, pipeline: String) -> Result<u64, JournalError> {
        let _ = pipeline;
        Err(JournalError::Unsupported(JOBS_NEED_SQLITE.into()))
    }
}

/// What a journal without replay jobs says.
pub(crate) const JOBS_NEED_SQLITE: &str = "bulk replay jobs need the SQLite journal; with NATS, replay events one at a time (`hookline events replay ID`) or dead letters (`hookline dlq replay --all`)";

/// What a journal without kept requests says.
pub(crate) const REQUESTS_NEED_SQLITE: &str = "listing and re-running unprocessable requests needs the SQLite journal; with NATS they are dead letters (`hookline dlq list`): have the sender resend them";

/// What an erasure did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Erased {
    /// Events deleted, with their history, deliveries and dead letters.
    pub events: u64,
    /// Dead letters deleted with them.
    pub dead_letters: u64,
    /// Events left alone because a run of theirs was under way: erase again in a moment.
    pub busy: u64,
}

/// What a journal without event history says (both journals keep it).
pub(crate) const NO_HISTORY: &str =
    "this journal keeps no event history; list dead letters (`hookline dlq`) instead";
