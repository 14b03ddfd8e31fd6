//! Workers: run journaled deliveries through their pipelines and settle the outcome in the
//! journal — delivered, retry later (persisted `next_attempt_at`), or dead letter.
//!
//! Fresh deliveries are handed over by ingest right after their commit; a poller claims the
//! rest from the journal (retries that came due, replays, and whatever a previous process
//! left unfinished). Runs in flight are bounded; shutdown waits for them up to a deadline and
//! leaves the rest pending for the next start.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures::{StreamExt, stream::FuturesUnordered};
use hookline_plugin_api::Event;
use hookline_plugin_api::StageError;
use jiff::Timestamp;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;
use tracing::{Instrument, Span, debug, error, info, info_span, warn};

use super::{Outcome, Pipeline, Runtime};
use crate::internal_events::{DeadLettered, Delivered, RetryScheduled};
use crate::journal::{
    Attempt, AttemptResult, Continuation, Delivery, Hold, Journal, NewDeadLetter, Release,
    Settlement,
};

/// How long the ended runs of an event wait for its other runs, to be settled with them in
/// one journal operation.
const SETTLE_TOGETHER: Duration = Duration::from_millis(25);
/// How often the poller looks for due deliveries when nothing wakes it.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How often the paused pipelines are read again from the journal.
const PAUSED_REFRESH: Duration = Duration::from_secs(1);
/// How long a paused delivery waits before NATS offers it again (SQLite parks it instead).
const PAUSED_RETRY: Duration = Duration::from_secs(5);
/// How often delivered events past retention are pruned.
const PRUNE_INTERVAL: Duration = Duration::from_secs(600);
/// Deliveries whose deferral failed, kept (as ids, 8 bytes each) for the poller to defer
/// again, at most.
const STRANDED_MAX: usize = 65_536;

#[derive(Debug, Clone)]
pub(crate) struct Workers {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Where pipeline runs execute: the stages' own threads (`runtime/threads.rs`).
    stages: tokio::runtime::Handle,
    journal: Arc<dyn Journal>,
    runtime: Arc<ArcSwap<Runtime>>,
    permits: Arc<Semaphore>,
    concurrency: usize,
    /// Pipeline run tasks: what a stop waits for, and what `in_flight` counts.
    tracker: TaskTracker,
    /// The poller and the pruner: they end when `stop` is cancelled.
    background: TaskTracker,
    wake: Notify,
    stop: tokio_util::sync::CancellationToken,
    /// Ids of accepted deliveries that found no run slot and could not be deferred.
    stranded: std::sync::Mutex<Vec<i64>>,
    /// Paused pipelines, as last read from the journal (which holds the truth: the CLI may
    /// change it beside a running service).
    paused: std::sync::RwLock<HashSet<String>>,
    /// Circuit holds the poller still has to let go: parked behind a circuit of a replaced
    /// runtime, or whose release failed.
    owed: std::sync::Mutex<Vec<Release>>,
}

impl Workers {
    pub(crate) fn new(
        journal: Arc<dyn Journal>,
        runtime: Arc<ArcSwap<Runtime>>,
        concurrency: usize,
    ) -> Self {
        Workers {
            inner: Arc::new(Inner {
                stages: super::threads::stage_threads(),
                journal,
                runtime,
                permits: Arc::new(Semaphore::new(concurrency.max(1))),
                concurrency: concurrency.max(1),
                tracker: TaskTracker::new(),
                background: TaskTracker::new(),
                wake: Notify::new(),
                stop: tokio_util::sync::CancellationToken::new(),
                stranded: std::sync::Mutex::default(),
                paused: std::sync::RwLock::default(),
                owed: std::sync::Mutex::default(),
            }),
        }
    }

    /// Run deliveries claimed by the poller, which claims no more than there are free run
    /// slots: the task waits for its slot only briefly. The deliveries of one event that
    /// the journal gave with one shared copy of it (first runs deferred together) run side
    /// by side in one task and one slot, and settle together, as fresh ones do.
    fn spawn(&self, deliveries: Vec<Delivery>) {
        let this = self.clone();
        self.inner.tracker.spawn_on(
            async move {
                let Ok(permit) = this.inner.permits.clone().acquire_owned().await else {
                    return;
                };
                match <[Delivery; 1]>::try_from(deliveries) {
                    Ok([one]) => this.run(one, permit).await,
                    Err(all) => this.run_all(all, permit).await,
                }
            },
            &self.inner.stages,
        );
    }

    /// Run an event's fresh deliveries now if a run slot is free; otherwise hand them back.
    /// Fresh deliveries come this way so that a backlog waits in the journal, not as tasks
    /// in memory. They take one slot and one task: the event's pipelines run side by side
    /// in it, sharing the one copy of the event, and the runs that end together are settled
    /// in one journal operation.
    pub(crate) fn try_start_all(&self, deliveries: Vec<Delivery>) -> Vec<Delivery> {
        if deliveries.is_empty() {
            return deliveries;
        }
        let Ok(permit) = self.inner.permits.clone().try_acquire_owned() else {
            return deliveries;
        };
        let this = self.clone();
        // One delivery (the common case) keeps the plain task: no grouping to pay for.
        match <[Delivery; 1]>::try_from(deliveries) {
            Ok([one]) => self.inner.tracker.spawn_on(
                async move { this.run(one, permit).await },
                &self.inner.stages,
            ),
            Err(all) => self.inner.tracker.spawn_on(
                async move { this.run_all(all, permit).await },
                &self.inner.stages,
            ),
        };
        Vec::new()
    }

    /// Run deliveries side by side and settle their outcomes together: once all have
    /// ended, or [`SETTLE_TOGETHER`] after the first of those still unsettled ended (a slow
    /// sink in one pipeline does not hold back the others' outcomes). The run slot is free
    /// once the last run's stages are done, not when the journal has the outcomes: those
    /// wait in the journal's queue, and a delivery counts as pending (under `max_pending`)
    /// until it is settled.
    async fn run_all(&self, runs: Vec<Delivery>, permit: OwnedSemaphorePermit) {
        let runtime = self.inner.runtime.load_full();
        // The runs are of one event: one span names it for all of them.
        let span = runs.first().map_or_else(
            Span::none,
            |d| info_span!("pipelines", event_id = %d.event.id),
        );
        let n = runs.len();
        let mut running: FuturesUnordered<_> = runs
            .into_iter()
            .map(|d| self.outcome(&runtime, d, &span))
            .collect();
        let mut permit = Some(permit);
        let mut ended = Vec::with_capacity(n);
        let mut settle_at: Option<tokio::time::Instant> = None;
        let mut settling = FuturesUnordered::new();
        loop {
            let wait = settle_at.unwrap_or_else(|| tokio::time::Instant::now() + SETTLE_TOGETHER);
            tokio::select! {
                Some(run) = running.next(), if !running.is_empty() => {
                    ended.push(run);
                    if running.is_empty() {
                        permit.take();
                        settle_at = None;
                        settling.push(self.settle(std::mem::take(&mut ended), &runtime));
                    } else if settle_at.is_none() {
                        settle_at = Some(tokio::time::Instant::now() + SETTLE_TOGETHER);
                    }
                }
                () = tokio::time::sleep_until(wait), if settle_at.is_some() => {
                    settle_at = None;
                    settling.push(self.settle(std::mem::take(&mut ended), &runtime));
                }
                Some(()) = settling.next(), if !settling.is_empty() => {}
                else => break,
            }
        }
    }

    /// Deliveries just accepted that found no run slot and whose deferral to the journal
    /// failed. They are committed, so they are not kept in memory, nor given a task each: the
    /// poller defers their ids again (up to [`STRANDED_MAX`]); any beyond that stay claimed
    /// by this process in the journal and run after the next start.
    pub(crate) fn defer_later(&self, ids: Vec<i64>) {
        let mut stranded = self.stranded();
        let room = STRANDED_MAX.saturating_sub(stranded.len());
        if ids.len() > room {
            error!(
                deliveries = ids.len() - room,
                "too many deliveries wait for a deferral; they stay in the journal and run after the next start"
            );
        }
        stranded.extend(ids.into_iter().take(room));
    }

    fn stranded(&self) -> std::sync::MutexGuard<'_, Vec<i64>> {
        self.inner
            .stranded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Try again to hand the journal the deliveries whose deferral failed.
    async fn defer_stranded(&self) {
        let ids = std::mem::take(&mut *self.stranded());
        if ids.is_empty() {
            return;
        }
        if let Err(e) = self.inner.journal.defer(ids.clone()).await {
            warn!(error = %e, deliveries = ids.len(), "could not defer deliveries to the journal; will try again");
            self.defer_later(ids);
        }
    }

    /// Whether `pipeline` is paused (as last read).
    pub(crate) fn is_paused(&self, pipeline: &str) -> bool {
        self.inner
            .paused
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(pipeline)
    }

    /// Read the paused pipelines from the journal. A pipeline resumed elsewhere (the CLI)
    /// may have had deliveries parked here after the resume, while this process still
    /// thought it paused: those are let go again.
    pub(crate) async fn refresh_paused(&self) {
        let names: HashSet<String> = match self.inner.journal.paused().await {
            Ok(names) => names.into_iter().collect(),
            Err(e) => {
                debug!(error = %e, "could not read the paused pipelines");
                return;
            }
        };
        let resumed: Vec<String> = {
            let mut set = self
                .inner
                .paused
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let resumed = set.difference(&names).cloned().collect();
            *set = names.clone();
            resumed
        };
        let runtime = self.inner.runtime.load();
        for p in &runtime.pipelines {
            crate::internal_events::pipeline_paused(&p.name, names.contains(&p.name));
        }
        for pipeline in resumed {
            let release = Release {
                hold: Hold::Paused,
                pipeline: Some(pipeline.clone()),
                stage: None,
                limit: None,
            };
            if let Err(e) = self.inner.journal.release(release).await {
                warn!(error = %e, pipeline, "could not release the deliveries of a resumed pipeline; will try again");
                // Still counted as paused here, so the next refresh sees the resume again.
                self.inner
                    .paused
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(pipeline);
            }
            self.wake();
        }
    }

    /// Pause or resume `pipeline`, durably. Returns whether its state changed.
    pub(crate) async fn set_paused(
        &self,
        pipeline: &str,
        paused: bool,
    ) -> Result<bool, crate::journal::JournalError> {
        let changed = self
            .inner
            .journal
            .set_paused(pipeline.to_string(), paused)
            .await?;
        {
            let mut set = self
                .inner
                .paused
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if paused {
                set.insert(pipeline.to_string());
            } else {
                set.remove(pipeline);
            }
        }
        crate::internal_events::pipeline_paused(pipeline, paused);
        info!(
            pipeline,
            paused,
            "pipeline {}",
            if paused { "paused" } else { "resumed" }
        );
        if !paused {
            self.wake();
        }
        Ok(changed)
    }

    /// Ask the poller to look now (after a replay, say).
    pub(crate) fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Start the poller and the pruner.
    pub(crate) fn start(&self) {
        let this = self.clone();
        self.inner
            .background
            .spawn(async move { this.poll_loop().await });
        let this = self.clone();
        self.inner
            .background
            .spawn(async move { this.prune_loop().await });
    }

    /// Stop claiming work and wait up to `timeout` for runs in flight. Anything unfinished
    /// stays pending in the journal and resumes at the next start.
    pub(crate) async fn shutdown(&self, timeout: Duration) -> bool {
        self.inner.stop.cancel();
        self.inner.tracker.close();
        self.inner.background.close();
        tokio::time::timeout(timeout, async {
            self.inner.background.wait().await;
            self.inner.tracker.wait().await;
        })
        .await
        .is_ok()
    }

    /// Pipeline run tasks still running (one task runs an event's first runs together).
    pub(crate) fn in_flight(&self) -> usize {
        self.inner.tracker.len()
    }

    async fn poll_loop(&self) {
        let mut backlog = false;
        let mut paused_read = Instant::now();
        self.refresh_paused().await;
        let mut runtime = self.inner.runtime.load_full();
        loop {
            if backlog {
                // More was due than there was room for (a backlog after a restart, or the
                // NATS journal, whose every delivery comes through here): claim again as
                // soon as a quarter of the runs have finished, not after a fixed wait.
                let batch = u32::try_from(self.inner.concurrency.div_ceil(4)).unwrap_or(1);
                tokio::select! {
                    () = self.inner.stop.cancelled() => return,
                    permits = self.inner.permits.acquire_many(batch.max(1)) => drop(permits),
                }
            } else {
                tokio::select! {
                    () = self.inner.stop.cancelled() => return,
                    () = tokio::time::sleep(POLL_INTERVAL) => {}
                    () = self.inner.wake.notified() => {}
                }
            }
            self.defer_stranded().await;
            if paused_read.elapsed() >= PAUSED_REFRESH {
                paused_read = Instant::now();
                self.refresh_paused().await;
            }
            runtime = self.tend_circuits(runtime).await;
            let room = self.inner.permits.available_permits();
            if room == 0 {
                // Wait in the semaphore's queue: slots that free up come here before
                // fresh deliveries can take them, so deferred work is not starved.
                backlog = true;
                continue;
            }
            let limit = room.min(512);
            match self.inner.journal.claim_due(Timestamp::now(), limit).await {
                Ok(due) => {
                    if !due.is_empty() {
                        debug!(count = due.len(), "claimed due deliveries");
                    }
                    backlog = due.len() >= limit;
                    for runs in by_event(due) {
                        self.spawn(runs);
                    }
                }
                Err(e) => {
                    backlog = false;
                    warn!(error = %e, "could not claim due deliveries; will try again")
                }
            }
        }
    }

    /// Let the deliveries that circuits hold go where the circuits allow: one as the probe
    /// of a circuit whose cooldown is over, all of a circuit that closed. After a reload the
    /// circuits are new (closed): everything held behind the old ones goes, and so does what
    /// a run begun before the reload parks behind an old circuit later (`settle` owes it).
    /// A release that fails is owed again (not a probe's: the circuit asks for it again).
    async fn tend_circuits(&self, seen: Arc<Runtime>) -> Arc<Runtime> {
        let current = self.inner.runtime.load_full();
        let mut releases = std::mem::take(&mut *self.owed());
        if !Arc::ptr_eq(&seen, &current) {
            releases.push(Release {
                hold: Hold::Circuit,
                pipeline: None,
                stage: None,
                limit: None,
            });
        }
        for p in &current.pipelines {
            for (i, stage) in p.stages.iter().enumerate() {
                let Some(gate) = &stage.gate else { continue };
                let limit = if gate.take_closed() {
                    None
                } else if gate.wants_probe() {
                    Some(1)
                } else {
                    continue;
                };
                releases.push(Release {
                    hold: Hold::Circuit,
                    pipeline: Some(p.name.clone()),
                    stage: Some(i),
                    limit,
                });
            }
        }
        for r in releases {
            if let Err(e) = self.inner.journal.release(r.clone()).await {
                warn!(error = %e, "could not release deliveries held by a circuit; will try again");
                if r.limit.is_none() {
                    self.owed().push(r);
                }
            }
        }
        current
    }

    fn owed(&self) -> std::sync::MutexGuard<'_, Vec<Release>> {
        self.inner
            .owed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn prune_loop(&self) {
        let mut first = true;
        loop {
            let wait = if first {
                Duration::from_secs(5)
            } else {
                PRUNE_INTERVAL
            };
            first = false;
            tokio::select! {
                () = self.inner.stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            let retain = self.inner.runtime.load().storage.retain;
            let now = Timestamp::now();
            let before = crate::time::earlier(now, retain);
            match self.inner.journal.prune(before, now).await {
                Ok(0) => {}
                Ok(n) => info!(events = n, "pruned delivered events past retention"),
                Err(e) => warn!(error = %e, "pruning the journal failed"),
            }
        }
    }

    async fn run(&self, d: Delivery, permit: OwnedSemaphorePermit) {
        let runtime = self.inner.runtime.load_full();
        let span = info_span!("pipeline", event_id = %d.event.id, pipeline = %d.pipeline);
        let run = self.outcome(&runtime, d, &span).await;
        drop(permit);
        self.settle(vec![run], &runtime).await;
    }

    /// Run a delivery through its pipeline: how it ended, for the journal. The stages run in
    /// `span` (what they log names the event); the outcome's own log lines name it anyway.
    async fn outcome(&self, runtime: &Runtime, mut d: Delivery, span: &Span) -> Ended {
        let mut finished = Vec::new();
        let mut run_took = Duration::ZERO;
        // False when the stage the delivery waited at is gone: its dead letter is then
        // reported under the name it had, not under the stage now at its position.
        let mut stage_found = true;
        let continuations = match runtime.pipeline(&d.pipeline) {
            Some(_) if self.is_paused(&d.pipeline) => vec![(paused(&d), false)],
            None => vec![(
                dead(
                    &d,
                    None,
                    d.stage,
                    Event::clone(&d.event),
                    format!("pipeline `{}` no longer exists", d.pipeline),
                ),
                true,
            )],
            Some(p) => match p.resume_at(d.stage, d.stage_name.as_deref()) {
                Err(gone) => {
                    stage_found = false;
                    // Recorded in the event's history under the name it had: the stage now
                    // at its position is another one.
                    finished.push(Attempt {
                        stage_name: d.stage_name.clone().unwrap_or_default(),
                        ..attempt(
                            &d,
                            p,
                            d.stage,
                            AttemptResult::Dead,
                            Some(gone.clone()),
                            run_took,
                        )
                    });
                    let mut letter = dead(&d, None, d.stage, Event::clone(&d.event), gone);
                    if let Continuation::Dead(l) = &mut letter {
                        l.stage_name = d.stage_name.clone();
                    }
                    vec![(letter, true)]
                }
                Ok(at) => {
                    // Where a reload moved its stage; the attempts made there still count.
                    d.stage = at;
                    // The run shares the event (no copy). Every failure carries its own event.
                    // Where a transform edits in place and no other run shares the event,
                    // the run takes it, to own it alone; what stays in `d` then only names
                    // the event, which is all that is read from it below.
                    let event = if Arc::strong_count(&d.event) == 1 && p.edits_in_place_from(at) {
                        let named = Arc::new(d.event.identity());
                        std::mem::replace(&mut d.event, named)
                    } else {
                        Arc::clone(&d.event)
                    };
                    let started = Instant::now();
                    let outcomes = p.run(event, d.stage).instrument(span.clone()).await;
                    let took = started.elapsed();
                    run_took = took;
                    finished.reserve_exact(outcomes.len());
                    for o in &outcomes {
                        let (stage, result) = match o {
                            Outcome::Completed => {
                                (p.stages.len().saturating_sub(1), AttemptResult::Delivered)
                            }
                            Outcome::Dropped { stage } => (*stage, AttemptResult::Dropped),
                            _ => continue,
                        };
                        finished.push(attempt(&d, p, stage, result, None, took));
                    }
                    if outcomes.iter().any(|o| matches!(o, Outcome::Completed)) {
                        Delivered {
                            event_id: &d.event.id,
                            pipeline: &d.pipeline,
                        }
                        .emit();
                    }
                    outcomes
                        .into_iter()
                        .filter_map(|o| match o {
                            Outcome::Failed {
                                stage,
                                error,
                                event,
                            } => Some((continuation(&d, p, stage, &error, *event), true)),
                            Outcome::Held {
                                stage,
                                event,
                                until,
                                error,
                            } => Some((
                                waiting(&d, p, stage, *event, until, Some(Hold::Circuit), error),
                                false,
                            )),
                            Outcome::Later { stage, event, wait } => Some((
                                waiting(
                                    &d,
                                    p,
                                    stage,
                                    *event,
                                    crate::time::later(Timestamp::now(), wait),
                                    None,
                                    "waiting for the sink's rate or concurrency".into(),
                                ),
                                false,
                            )),
                            Outcome::Completed | Outcome::Dropped { .. } => None,
                        })
                        .collect()
                }
            },
        };
        // Only attempts are reported (logged, counted) and recorded in the event's history:
        // a delivery that waits made none.
        let pipeline = runtime.pipeline(&d.pipeline).filter(|_| stage_found);
        let mut attempts = finished;
        let continuations: Vec<Continuation> = continuations
            .into_iter()
            .map(|(c, attempted)| {
                if attempted {
                    report(&d, pipeline, &c);
                    if let Some(p) = pipeline {
                        attempts.push(failed_attempt(&d, p, &c, run_took));
                    }
                }
                c
            })
            .collect();
        Ended {
            event_id: d.event.id.clone(),
            pipeline: d.pipeline,
            settlement: Settlement {
                delivery: d.id,
                continuations,
                attempts,
            },
        }
    }

    /// Tell the journal how runs ended; until it knows, the deliveries stay claimed.
    ///
    /// A run on a runtime that a reload has replaced may park its delivery behind that
    /// runtime's circuit after the poller let everything held by the old circuits go: once
    /// such a hold is in the journal, the poller owes it a release. Whether the runtime is
    /// still current is asked after the commit, so a reload after that question is one the
    /// poller sees itself.
    async fn settle(&self, runs: Vec<Ended>, runtime: &Runtime) {
        let held: Vec<Release> = runs
            .iter()
            .flat_map(|r| {
                r.settlement.continuations.iter().filter_map(|c| match c {
                    Continuation::Retry {
                        held: Some(Hold::Circuit),
                        stage,
                        ..
                    } => Some(Release {
                        hold: Hold::Circuit,
                        pipeline: Some(r.pipeline.clone()),
                        stage: Some(*stage),
                        limit: None,
                    }),
                    _ => None,
                })
            })
            .collect();
        let (names, mut settlements): (Vec<_>, Vec<_>) = runs
            .into_iter()
            .map(|r| ((r.event_id, r.pipeline), r.settlement))
            .unzip();
        let mut wait = Duration::from_millis(50);
        loop {
            match self.inner.journal.settle_many(&mut settlements).await {
                Ok(()) => {
                    let replaced = !std::ptr::eq(runtime, &**self.inner.runtime.load());
                    if replaced && !held.is_empty() {
                        let mut owed = self.owed();
                        for r in held {
                            // One release lets every hold at that stage go.
                            if !owed
                                .iter()
                                .any(|o| o.pipeline == r.pipeline && o.stage == r.stage)
                            {
                                owed.push(r);
                            }
                        }
                        drop(owed);
                        self.wake();
                    }
                    return;
                }
                Err(e) => {
                    for (event_id, pipeline) in names.iter().rev().take(settlements.len()) {
                        error!(%event_id, %pipeline, error = %e, "could not record a delivery's outcome; retrying");
                    }
                    if self.inner.stop.is_cancelled() {
                        return;
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// Claimed deliveries grouped by the copy of the event they share (the journal gives the
/// deliveries of one event one copy where it can), in the order the first of each came.
fn by_event(due: Vec<Delivery>) -> Vec<Vec<Delivery>> {
    let mut groups: Vec<Vec<Delivery>> = Vec::new();
    let mut index: HashMap<*const Event, usize> = HashMap::new();
    for d in due {
        match index.entry(Arc::as_ptr(&d.event)) {
            std::collections::hash_map::Entry::Occupied(at) => groups[*at.get()].push(d),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(groups.len());
                groups.push(vec![d]);
            }
        }
    }
    groups
}

/// How a run ended, named for the logs.
struct Ended {
    event_id: String,
    pipeline: String,
    settlement: Settlement,
}

/// A run of `d` that ended at `stage`, for the event's history.
fn attempt(
    d: &Delivery,
    p: &Pipeline,
    stage: usize,
    result: AttemptResult,
    error: Option<String>,
    took: Duration,
) -> Attempt {
    Attempt {
        event_id: d.event.id.clone(),
        pipeline: d.pipeline.clone(),
        stage,
        stage_name: p.stage_name(stage).unwrap_or_default(),
        at: Timestamp::now(),
        duration_us: u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
        result,
        error,
    }
}

/// The attempt behind a continuation that made one: a retry or a dead letter.
fn failed_attempt(d: &Delivery, p: &Pipeline, c: &Continuation, took: Duration) -> Attempt {
    match c {
        Continuation::Retry { stage, error, .. } => attempt(
            d,
            p,
            *stage,
            AttemptResult::Retry,
            Some(error.clone()),
            took,
        ),
        Continuation::Dead(letter) => attempt(
            d,
            p,
            letter.stage_index.unwrap_or(d.stage),
            AttemptResult::Dead,
            Some(letter.error.clone()),
            took,
        ),
    }
}

/// A delivery of a paused pipeline: parked where it is, without an attempt.
fn paused(d: &Delivery) -> Continuation {
    let now = Timestamp::now();
    Continuation::Retry {
        stage: d.stage,
        stage_name: d.stage_name.clone(),
        event: Event::clone(&d.event),
        attempts: d.attempts,
        next_attempt_at: crate::time::later(now, PAUSED_RETRY),
        error: "the pipeline is paused".into(),
        first_failed_at: d.first_failed_at.unwrap_or(now),
        held: Some(Hold::Paused),
    }
}

/// A delivery that reached `stage` and was not attempted (an open circuit, no rate or call
/// slot): it waits there, its attempts untouched.
fn waiting(
    d: &Delivery,
    p: &Pipeline,
    stage: usize,
    event: hookline_plugin_api::Event,
    until: Timestamp,
    held: Option<Hold>,
    error: String,
) -> Continuation {
    let same_stage = stage == d.stage;
    Continuation::Retry {
        stage,
        stage_name: p.stage_name(stage),
        event,
        attempts: if same_stage { d.attempts } else { 0 },
        next_attempt_at: until,
        error,
        first_failed_at: if same_stage {
            d.first_failed_at.unwrap_or_else(Timestamp::now)
        } else {
            Timestamp::now()
        },
        held,
    }
}

/// What to do after `stage` failed with `error` on this run of `d`.
fn continuation(
    d: &Delivery,
    p: &Pipeline,
    stage: usize,
    error: &StageError,
    event: hookline_plugin_api::Event,
) -> Continuation {
    let now = Timestamp::now();
    let same_stage = stage == d.stage;
    let attempts = if same_stage { d.attempts + 1 } else { 1 };
    let first_failed_at = if same_stage {
        d.first_failed_at.unwrap_or(now)
    } else {
        now
    };
    let policy = p
        .stages
        .get(stage)
        .map(|s| s.retry.clone())
        .unwrap_or_default();
    match error {
        StageError::Retryable {
            message,
            retry_after,
        } if policy.allows_another(attempts) => {
            let delay = policy.delay(attempts, *retry_after, rand::random::<f64>());
            Continuation::Retry {
                stage,
                stage_name: p.stage_name(stage),
                event,
                attempts,
                next_attempt_at: crate::time::later(now, delay),
                error: message.clone(),
                first_failed_at,
                held: None,
            }
        }
        StageError::Retryable { message, .. } => {
            let mut letter = dead(
                d,
                Some(p),
                stage,
                event,
                format!("gave up after {attempts} attempts: {message}"),
            );
            if let Continuation::Dead(l) = &mut letter {
                l.attempts = attempts;
                l.first_failed_at = first_failed_at;
            }
            letter
        }
        StageError::Fatal { message } => {
            let mut letter = dead(d, Some(p), stage, event, message.clone());
            if let Continuation::Dead(l) = &mut letter {
                l.attempts = attempts;
                l.first_failed_at = first_failed_at;
            }
            letter
        }
    }
}

/// A dead letter for `d` at `stage`, holding `event`: the event as it entered that stage,
/// which after a run comes from the run's outcome (`d.event` may then only name it).
fn dead(
    d: &Delivery,
    p: Option<&Pipeline>,
    stage: usize,
    event: hookline_plugin_api::Event,
    error: String,
) -> Continuation {
    let now = Timestamp::now();
    Continuation::Dead(NewDeadLetter {
        event_id: d.event.id.clone(),
        source: d.event.source.clone(),
        pipeline: Some(d.pipeline.clone()),
        stage_index: Some(stage),
        stage_name: p.and_then(|p| p.stage_name(stage)),
        error,
        attempts: d.attempts,
        first_failed_at: d.first_failed_at.unwrap_or(now),
        last_failed_at: now,
        event: Some(event),
        raw: None,
    })
}

/// What a run that did not complete leaves: a retry or a dead letter, logged and counted.
fn report(d: &Delivery, pipeline: Option<&Pipeline>, c: &Continuation) {
    let telemetry = |i: usize| pipeline.and_then(|p| p.telemetry(i));
    match c {
        Continuation::Retry {
            stage,
            attempts,
            next_attempt_at,
            error,
            ..
        } => {
            if let Some(t) = telemetry(*stage) {
                RetryScheduled {
                    stage: t,
                    event_id: &d.event.id,
                    attempts: *attempts,
                    next_attempt_at,
                    error,
                }
                .emit();
            }
        }
        Continuation::Dead(l) => {
            let index = l.stage_index.unwrap_or(0);
            let stage = telemetry(index);
            DeadLettered {
                stage,
                pipeline: &d.pipeline,
                stage_name: l
                    .stage_name
                    .as_deref()
                    .or(stage.map(|t| t.stage.as_str()))
                    .unwrap_or("?"),
                stage_index: index,
                event_id: &d.event.id,
                attempts: l.attempts,
                error: &l.error,
            }
            .emit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(id: i64, pipeline: &str, event: &Arc<Event>) -> Delivery {
        Delivery {
            id,
            pipeline: pipeline.into(),
            stage: 0,
            stage_name: None,
            attempts: 0,
            first_failed_at: None,
            event: Arc::clone(event),
        }
    }

    /// Sets `payload.bumped` in place; counts whether it was asked to edit or to apply.
    #[derive(Debug, Default)]
    struct Bump {
        edits: std::sync::atomic::AtomicUsize,
        applies: std::sync::atomic::AtomicUsize,
    }
    impl hookline_plugin_api::Transform for Bump {
        fn apply(&self, mut e: Event) -> Result<Vec<Event>, hookline_plugin_api::StageError> {
            self.applies
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            e.payload["bumped"] = true.into();
            Ok(vec![e])
        }
        fn edits_in_place(&self) -> bool {
            true
        }
        fn edit(&self, e: &mut Event) -> Result<(), hookline_plugin_api::StageError> {
            self.edits
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            e.payload["bumped"] = true.into();
            Ok(())
        }
    }

    /// A fresh delivery, handed over as ingest hands it (its event held by nothing else),
    /// reaches a transform that edits in place with its event owned by the run alone: it is
    /// edited, not copied. The delivery keeps only its name meanwhile.
    #[tokio::test]
    async fn a_fresh_run_owns_its_event_alone_and_edits_it_in_place() {
        use crate::journal::{Accepted, Journal, NewEvent};
        use std::sync::atomic::Ordering::Relaxed;
        let dir = tempfile::tempdir().expect("dir");
        let config = dir.path().join("pipeline.toml");
        std::fs::write(
            &config,
            r#"[storage]
path = "j.db"
[[sources]]
name = "s"
path = "/in"
verify = { scheme = "leadshark", secrets = ["a-secret-of-some-length-here"] }
[[pipelines]]
name = "p"
source = "s"
stages = [{ transform = "bump" }]
[[pipelines]]
name = "q"
source = "s"
stages = [{ transform = "bump" }, { sink = "refuse" }]
"#,
        )
        .expect("config");
        let bump = Arc::new(Bump::default());
        let mut registry = hookline_builtin::registry();
        let stage = bump.clone();
        registry.transform("bump", move |_, _| Ok(stage.clone()));
        registry.sink("refuse", |_, _| Ok(Arc::new(Refuse)));
        let runtime = super::super::load::load(&config, &registry)
            .expect("config loads")
            .runtime;
        let journal = Arc::new(
            crate::journal::SqliteJournal::open(&dir.path().join("j.db")).expect("journal"),
        );
        let event = Event {
            id: "e1".into(),
            source: "s".into(),
            event_type: "t".into(),
            received_at: Timestamp::now(),
            headers: vec![],
            payload: serde_json::json!({"n": 1}),
        };
        let new = NewEvent {
            event: event.clone(),
            dedupe_key: None,
            dedupe_until: Timestamp::now(),
            pipelines: vec!["p".into()],
            order_keys: Vec::new(),
        };
        let Accepted::New { deliveries, .. } = journal.accept(&new).await.expect("accept") else {
            panic!("new");
        };
        let workers = Workers::new(
            journal,
            Arc::new(arc_swap::ArcSwap::from_pointee(runtime)),
            4,
        );
        let mut d = delivery(deliveries[0].id, "p", &Arc::new(event));
        d.pipeline = deliveries[0].pipeline.clone();
        assert!(workers.try_start_all(vec![d]).is_empty(), "a run slot");
        let deadline = Instant::now() + Duration::from_secs(10);
        while bump.edits.load(Relaxed) + bump.applies.load(Relaxed) == 0 {
            assert!(
                Instant::now() < deadline,
                "the run did not reach the transform"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            (bump.edits.load(Relaxed), bump.applies.load(Relaxed)),
            (1, 0),
            "edited in place, not copied"
        );

        // A run that took its event and then fails: the dead letter holds the whole event
        // as the edit left it, not the name the delivery kept meanwhile.
        let event = Event {
            id: "e2".into(),
            headers: vec![("x-kept".into(), "yes".into())],
            payload: serde_json::json!({"n": 2}),
            ..new.event.clone()
        };
        let new = NewEvent {
            event: event.clone(),
            pipelines: vec!["q".into()],
            ..new
        };
        let Accepted::New { deliveries, .. } =
            workers.inner.journal.accept(&new).await.expect("accept")
        else {
            panic!("new");
        };
        let d = delivery(deliveries[0].id, "q", &Arc::new(event));
        assert!(workers.try_start_all(vec![d]).is_empty(), "a run slot");
        let deadline = Instant::now() + Duration::from_secs(10);
        let letter = loop {
            let ids = workers
                .inner
                .journal
                .dead_ids(crate::journal::DeadLetterFilter::default())
                .await
                .expect("dead letters");
            if let Some(id) = ids.into_iter().next() {
                break workers
                    .inner
                    .journal
                    .get_dead(id)
                    .await
                    .expect("read")
                    .expect("there");
            }
            assert!(Instant::now() < deadline, "no dead letter");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(bump.edits.load(Relaxed), 2, "edited in place again");
        let kept = letter.event.expect("the event");
        assert_eq!(kept.payload, serde_json::json!({"n": 2, "bumped": true}));
        assert_eq!(
            kept.headers,
            vec![("x-kept".to_string(), "yes".to_string())]
        );
    }

    #[derive(Debug)]
    struct Refuse;
    #[async_trait::async_trait]
    impl hookline_plugin_api::Sink for Refuse {
        async fn deliver(&self, _: &Event) -> Result<(), hookline_plugin_api::StageError> {
            Err(hookline_plugin_api::StageError::fatal("refused"))
        }
    }

    /// Claimed deliveries that share one copy of their event run as one group; equal events
    /// in copies of their own (a retry's snapshot) do not join it.
    #[test]
    fn claimed_deliveries_are_grouped_by_the_copy_of_the_event_they_share() {
        let event = |id: &str| {
            Arc::new(Event {
                id: id.into(),
                source: "s".into(),
                event_type: "t".into(),
                received_at: Timestamp::UNIX_EPOCH,
                headers: vec![],
                payload: serde_json::Value::Null,
            })
        };
        let (a, b, a_again) = (event("a"), event("b"), event("a"));
        let groups = by_event(vec![
            delivery(1, "p", &a),
            delivery(2, "p", &b),
            delivery(3, "q", &a),
            delivery(4, "q", &a_again),
            delivery(5, "r", &a),
        ]);
        let ids: Vec<Vec<i64>> = groups
            .iter()
            .map(|g| g.iter().map(|d| d.id).collect())
            .collect();
        assert_eq!(ids, vec![vec![1, 3, 5], vec![2], vec![4]]);
    }
}
