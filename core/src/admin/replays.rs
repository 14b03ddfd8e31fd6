//! Bulk replay jobs: `POST /api/v1/replays?<event filters>&pipeline=P[&from=failed]` sends
//! every retained event the filters select into `P`, as a job whose state lives in the
//! journal; `GET /api/v1/replays[/{id}]` shows jobs and their progress, and
//! `DELETE /api/v1/replays/{id}` (or `POST …/cancel`) cancels one.
//!
//! A job is worked by one runner at a time, holding a lease it renews with every batch: the
//! service's ([`Runner`], which also resumes, at start and every second, any running job
//! whose lease ran out or was held by an earlier serving process), or `hookline events
//! replay`'s, which runs the job it creates itself. Each batch reads up to `batch` matching
//! events below the job's cursor on a read connection, then replays them and moves the cursor
//! in one commit ([`Journal::replay_batch`]), the single-event rules deciding each one
//! ([`Journal::replay_event`]). Before each batch the runner waits while the pipeline has
//! `max_pending` deliveries or more pending, so a large replay never floods it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hookline_plugin_api::Registry;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::events::EventsQuery;
use super::{AdminState, internal};
use crate::ingest::ApiError;
use crate::journal::{
    EventFilter, JobBatch, JobState, Journal, JournalError, Lease, NewReplayJob, ReplayJob,
};
use crate::runtime::Workers;

/// Events a batch replays by default, and at most.
pub(crate) const DEFAULT_BATCH: u32 = 100;
const MAX_BATCH: u32 = 1000;
/// Deliveries the pipeline may have pending before the runner waits, by default.
pub(crate) const DEFAULT_MAX_PENDING: u64 = 1000;
/// How long a lease lasts without being renewed: a runner that dies is replaced this soon.
pub(crate) const LEASE: Duration = Duration::from_secs(10);
/// How often the service looks for jobs to take, and a paced runner for room.
const SCAN: Duration = Duration::from_secs(1);
const PACE: Duration = Duration::from_millis(200);
/// Batches in a row that may fail before the job does.
const MAX_ERRORS_IN_A_ROW: u32 = 5;

/// Query string of `POST /api/v1/replays`: the filters of `GET /api/v1/events`, the
/// pipeline to replay into, and how.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReplaysQuery {
    /// The pipeline every selected event is sent into (one of its source's). With
    /// `outcome`, also the pipeline whose outcome is matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) pipeline: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) source: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub(crate) event_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) outcome: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) until: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) q: Option<String>,
    /// `start` (default) or `failed`: resume where each event was dead-lettered in the
    /// pipeline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) batch: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_pending: Option<u64>,
}

impl ReplaysQuery {
    /// The job this query asks for, to replay into a pipeline of `source`; `Err` says which
    /// value is wrong.
    pub(crate) fn to_job(
        &self,
        registry: &Registry,
        source: &str,
        owner: Option<String>,
    ) -> Result<NewReplayJob, String> {
        let pipeline =
            given(&self.pipeline).ok_or("`pipeline` names the pipeline to replay into")?;
        if let Some(asked) = given(&self.source).filter(|s| s != source) {
            return Err(format!(
                "pipeline `{pipeline}` takes events of source `{source}`, not `{asked}`"
            ));
        }
        let from_failed = match given(&self.from).as_deref() {
            None | Some("start") => false,
            Some("failed") => true,
            Some(other) => return Err(format!("`from` is `start` or `failed`, not `{other}`")),
        };
        let batch = self.batch.unwrap_or(DEFAULT_BATCH);
        if !(1..=MAX_BATCH).contains(&batch) {
            return Err(format!("`batch` is 1 to {MAX_BATCH} events"));
        }
        let max_pending = self.max_pending.unwrap_or(DEFAULT_MAX_PENDING).max(1);
        let now = Timestamp::now();
        let absolute = |v: &Option<String>, name: &str| -> Result<Option<String>, String> {
            given(v)
                .map(|s| {
                    crate::journal::parse_since(&s)
                        .map(|t| t.to_string())
                        .map_err(|e| e.replace("`since`", &format!("`{name}`")))
                })
                .transpose()
        };
        let plan = EventsQuery {
            source: Some(source.to_string()),
            event_type: given(&self.event_type),
            pipeline: given(&self.outcome).map(|_| pipeline.clone()),
            outcome: given(&self.outcome),
            since: absolute(&self.since, "since")?,
            until: absolute(&self.until, "until")?,
            q: given(&self.q),
            ..Default::default()
        };
        // Checked now (a bad `q` or outcome is refused at once, not by the runner).
        plan.to_filter(registry)?;
        let filter = ReplaysQuery {
            batch: None,
            max_pending: None,
            from: None,
            ..self.clone()
        };
        Ok(NewReplayJob {
            pipeline,
            source: source.to_string(),
            from_failed,
            filter: serde_json::to_value(&filter).map_err(|e| e.to_string())?,
            plan: serde_json::to_value(plan).map_err(|e| e.to_string())?,
            batch,
            max_pending,
            lease_until: now + LEASE,
            owner,
        })
    }
}

fn given(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
}

/// The filter a job runs with.
fn plan_filter(job: &ReplayJob, registry: &Registry) -> Result<EventFilter, String> {
    let plan: EventsQuery = serde_json::from_value(job.plan.clone())
        .map_err(|e| format!("the job's stored filter is not valid: {e}"))?;
    plan.to_filter(registry)
}

/// What a runner tells its follower after each batch.
pub(crate) type Progress<'a> = &'a mut (dyn FnMut(&ReplayJob) + Send);

/// Work a job until it is finished, cancelled, taken by another runner, or `stop`; returns
/// the job as last seen (`None`: it could not be taken). On `stop` the lease is let go at
/// once, so that another runner (a running service) can go on from the cursor.
pub(crate) async fn run(
    journal: &dyn Journal,
    registry: &Registry,
    id: &str,
    lease: Lease,
    stop: &CancellationToken,
    wake: &(dyn Fn() + Send + Sync),
    progress: Progress<'_>,
) -> Result<Option<ReplayJob>, JournalError> {
    let owner = lease.owner.clone();
    let renew = |until: Timestamp| Lease {
        owner: owner.clone(),
        until,
        take_from: None,
    };
    let Some(mut job) = journal
        .lease_replay_job(id.to_string(), lease.clone())
        .await?
    else {
        return Ok(None);
    };
    progress(&job);
    let filter = match plan_filter(&job, registry) {
        Ok(f) => f,
        Err(e) => {
            journal
                .replay_job_error(id.to_string(), owner.clone(), e, true)
                .await?;
            return journal.get_replay_job(id.to_string()).await;
        }
    };
    let mut failures = 0u32;
    loop {
        if stop.is_cancelled() {
            journal
                .release_replay_job(id.to_string(), owner.clone())
                .await?;
            return journal.get_replay_job(id.to_string()).await;
        }
        // Room in the pipeline first: the lease is renewed while waiting for it.
        match journal.pending_in(job.pipeline.clone()).await {
            Ok(pending) if pending >= job.max_pending => {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = tokio::time::sleep(PACE) => {}
                }
                match journal
                    .lease_replay_job(id.to_string(), renew(Timestamp::now() + LEASE))
                    .await?
                {
                    Some(j) => job = j,
                    None => return journal.get_replay_job(id.to_string()).await,
                }
                continue;
            }
            _ => {}
        }
        let step = async {
            let page = journal
                .list_events(filter.clone(), job.cursor.clone(), u64::from(job.batch))
                .await?;
            journal
                .replay_batch(JobBatch {
                    job: id.to_string(),
                    owner: owner.clone(),
                    lease_until: Timestamp::now() + LEASE,
                    ids: page.items.into_iter().map(|e| e.id).collect(),
                    next: page.next,
                })
                .await
        };
        match step.await {
            Ok(Some(next)) => {
                failures = 0;
                job = next;
                wake();
                progress(&job);
                if job.state != JobState::Running {
                    return Ok(Some(job));
                }
            }
            // Cancelled, or taken over: the journal has the last word.
            Ok(None) => return journal.get_replay_job(id.to_string()).await,
            Err(e) => {
                failures += 1;
                let fatal = failures >= MAX_ERRORS_IN_A_ROW;
                tracing::warn!(job = %id, error = %e, fatal, "a replay job's batch failed");
                journal
                    .replay_job_error(id.to_string(), owner.clone(), e.to_string(), fatal)
                    .await?;
                if fatal {
                    return journal.get_replay_job(id.to_string()).await;
                }
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = tokio::time::sleep(SCAN) => {}
                }
            }
        }
    }
}

/// The service's runner: starts the jobs created through the API, and takes over running
/// jobs nobody holds (created by a CLI that stopped, or left by an earlier process).
#[derive(Clone)]
pub(crate) struct Runner {
    journal: Arc<dyn Journal>,
    registry: Registry,
    workers: Workers,
    /// `serve:<id>`: this process, as a lease holder.
    owner: String,
    running: Arc<Mutex<HashSet<String>>>,
    stop: CancellationToken,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("owner", &self.owner)
            .finish()
    }
}

/// Lease holders that are serving processes start with this.
const SERVE: &str = "serve:";

impl Runner {
    pub(crate) fn new(
        journal: Arc<dyn Journal>,
        registry: Registry,
        workers: Workers,
        stop: CancellationToken,
    ) -> Runner {
        Runner {
            journal,
            registry,
            workers,
            owner: format!("{SERVE}{}", uuid::Uuid::now_v7()),
            running: Arc::default(),
            stop,
        }
    }

    /// Look for jobs to take now and every [`SCAN`] until stopped. A journal without jobs
    /// (NATS) ends this at once.
    pub(crate) async fn supervise(self) {
        loop {
            // Only one process serves a journal: what an earlier one held is free.
            match self
                .journal
                .claimable_replay_jobs(Timestamp::now(), Some(SERVE.to_string()))
                .await
            {
                Ok(ids) => {
                    for id in ids {
                        self.start(id);
                    }
                }
                Err(JournalError::Unsupported(_)) => return,
                Err(e) => {
                    if let Some(held_back) = crate::lograte::allow("replay-jobs") {
                        tracing::warn!(error = %e, held_back, "could not look for replay jobs");
                    }
                }
            }
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(SCAN) => {}
            }
        }
    }

    /// Run a job in the background, unless this process runs it already.
    pub(crate) fn start(&self, id: String) {
        if !self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone())
        {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let lease = Lease {
                owner: this.owner.clone(),
                until: Timestamp::now() + LEASE,
                take_from: Some(SERVE.to_string()),
            };
            let workers = this.workers.clone();
            let wake = move || workers.wake();
            let result = run(
                this.journal.as_ref(),
                &this.registry,
                &id,
                lease,
                &this.stop,
                &wake,
                &mut |_| {},
            )
            .await;
            match result {
                Ok(Some(job)) => tracing::info!(
                    job = %id,
                    state = job.state.as_str(),
                    replayed = job.replayed,
                    skipped = job.skipped,
                    "replay job stopped"
                ),
                Ok(None) => {}
                Err(e) => tracing::warn!(job = %id, error = %e, "replay job runner stopped"),
            }
            this.running
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
        });
    }
}

fn journal_error(e: JournalError) -> ApiError {
    match e {
        JournalError::Unsupported(why) => ApiError::new(StatusCode::NOT_IMPLEMENTED, why),
        JournalError::Invalid(why) => ApiError::new(StatusCode::BAD_REQUEST, why),
        e => internal(e),
    }
}

pub(super) async fn create(
    State(s): State<AdminState>,
    q: Result<Query<ReplaysQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let pipeline = given(&q.pipeline).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "`pipeline` names the pipeline to replay into",
        )
    })?;
    let source = {
        let runtime = s.runtime.load();
        let p = runtime.pipeline(&pipeline).ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, format!("no pipeline `{pipeline}`"))
        })?;
        p.source.clone()
    };
    let new = q
        .to_job(&s.registry, &source, None)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    let job = s
        .journal
        .create_replay_job(new)
        .await
        .map_err(journal_error)?;
    tracing::info!(job = %job.id, pipeline = %job.pipeline, "replay job created");
    if let Some(runner) = &s.replays {
        runner.start(job.id.clone());
    }
    Ok((StatusCode::ACCEPTED, axum::Json(job)).into_response())
}

pub(super) async fn list(State(s): State<AdminState>) -> Result<Response, ApiError> {
    let jobs = s
        .journal
        .list_replay_jobs(100)
        .await
        .map_err(journal_error)?;
    Ok(axum::Json(json!({ "items": jobs })).into_response())
}

pub(super) async fn show(
    State(s): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match s.journal.get_replay_job(id).await.map_err(journal_error)? {
        Some(job) => Ok(axum::Json(job).into_response()),
        None => Err(no_job()),
    }
}

pub(super) async fn cancel(
    State(s): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match s
        .journal
        .cancel_replay_job(id)
        .await
        .map_err(journal_error)?
    {
        Some(job) => Ok(axum::Json(job).into_response()),
        None => Err(no_job()),
    }
}

fn no_job() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such replay job")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> ReplaysQuery {
        let text = pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        serde_urlencoded_like(&text)
    }

    /// The query string as axum's `Query` reads it (serde over `key=value` pairs).
    fn serde_urlencoded_like(text: &str) -> ReplaysQuery {
        let map: serde_json::Map<String, serde_json::Value> = text
            .split('&')
            .filter(|p| !p.is_empty())
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| {
                let v = match k {
                    "batch" | "max_pending" => json!(v.parse::<u64>().expect("number")),
                    _ => json!(v),
                };
                (k.to_string(), v)
            })
            .collect();
        serde_json::from_value(serde_json::Value::Object(map)).expect("query")
    }

    #[test]
    fn a_job_is_checked_and_its_times_fixed_when_created() {
        let registry = hookline_builtin::registry();
        let job = query(&[
            ("pipeline", "crm"),
            ("since", "1h"),
            ("outcome", "dead_lettered"),
        ])
        .to_job(&registry, "leadshark", None)
        .expect("valid");
        assert_eq!(job.pipeline, "crm");
        assert_eq!(job.source, "leadshark");
        assert!(!job.from_failed);
        assert_eq!(
            (job.batch, job.max_pending),
            (DEFAULT_BATCH, DEFAULT_MAX_PENDING)
        );
        // As given, and as run: an absolute time, the source, and the outcome's pipeline.
        assert_eq!(job.filter["since"], "1h");
        let since = job.plan["since"].as_str().expect("since");
        assert!(since.parse::<Timestamp>().is_ok(), "{since}");
        assert_eq!(job.plan["source"], "leadshark");
        assert_eq!(job.plan["pipeline"], "crm");
        let plain = query(&[("pipeline", "crm"), ("from", "failed")])
            .to_job(&registry, "leadshark", Some("cli:1".into()))
            .expect("valid");
        assert!(plain.from_failed);
        assert_eq!(plain.plan["pipeline"], serde_json::Value::Null);
        assert_eq!(plain.owner.as_deref(), Some("cli:1"));

        let refused = |pairs: &[(&str, &str)], needle: &str| {
            let err = query(pairs)
                .to_job(&registry, "leadshark", None)
                .expect_err("refused");
            assert!(err.contains(needle), "{err}");
        };
        refused(&[], "pipeline");
        refused(&[("pipeline", "crm"), ("source", "github")], "github");
        refused(&[("pipeline", "crm"), ("from", "middle")], "from");
        refused(&[("pipeline", "crm"), ("batch", "0")], "batch");
        refused(&[("pipeline", "crm"), ("batch", "5000")], "batch");
        refused(&[("pipeline", "crm"), ("outcome", "lost")], "lost");
        refused(&[("pipeline", "crm"), ("q", "paylod.x == 1")], "paylod");
        refused(&[("pipeline", "crm"), ("until", "soonish")], "until");
    }
}
