//! The worker side of the JetStream journal: two durable pull consumers per pipeline
//! (`events-<pipeline>` for fresh events, `retry-<pipeline>` for retries and replays), the
//! messages this process holds while their runs are in flight, and settling them.
//!
//! `claim` pulls what the workers have room for and turns each message into a [`Delivery`];
//! `settle` publishes what a run left to do (a retry message, or a dead letter) and only then
//! acknowledges the message. Whatever is not acknowledged — the process died, NATS was away —
//! JetStream redelivers after `ack_wait`, to this worker or another: at least once. While a
//! run is in flight its message's deadline is pushed out with progress acks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

mod consumers;
mod health;

use arc_swap::ArcSwap;
use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::message::{AckKind, Acker, PublishMessage};
use async_nats::jetstream::{self, stream};
use futures::StreamExt;
use hookline_plugin_api::Event;
use jiff::Timestamp;
use tracing::{debug, warn};

use super::dead::DeadLetters;
use super::err;
use super::history::{History, Record};
use super::subjects::{Progress, Subjects};
use crate::config::NatsConfig;
use crate::journal::{
    Attempt, AttemptResult, Continuation, Delivery, JournalError, LiveRoutes, NewDeadLetter, Routes,
};
use health::Health;

/// How often consumers are matched to a reloaded config, and counts refreshed.
const SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// Every how many sync intervals consumers that keep failing are created again.
const RESYNC_EVERY: u64 = 5;
/// How long one pull may take, from the request to the last message of its batch. A pull
/// is a request whose answer can be lost for good: the server restarted after it arrived,
/// the consumer's leader died, the connection dropped. Nothing else ends such a pull, so
/// without this a worker waits for it forever and stops pulling (issue 13). A healthy
/// server answers a no-wait pull in milliseconds.
const PULL_TIMEOUT: Duration = Duration::from_secs(5);
/// Tries of a settled run's acknowledgement before the message is let go.
const ACK_ATTEMPTS: u32 = 2;
/// How long one of them waits for the server's confirmation.
const ACK_CONFIRM: Duration = Duration::from_secs(2);
/// How long one acknowledgement (or nak) may wait for room in the client's write buffer
/// while the connection is down. One that does not go is redelivered after `ack_wait`.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// One consumer of a pipeline, with its pull state.
struct Pull {
    consumer: PullConsumer,
    health: Arc<Health>,
}

/// One pipeline's consumers.
struct Consumers {
    pipeline: String,
    events: Pull,
    retry: Pull,
}

/// A message this process holds while its run is in flight.
struct Held {
    acker: Acker,
    pipeline: String,
    origin: Option<u64>,
    /// Unique per message delivery: the base of the ids of what settling publishes, so a
    /// settle that is retried does not publish twice.
    key: String,
    dead_ids: OnceLock<Vec<String>>,
    /// Acknowledgements of this message that got no confirmation.
    ack_failures: AtomicU32,
}

pub(crate) struct Work {
    api: jetstream::Context,
    stream: stream::Stream,
    subjects: Subjects,
    /// Where settled runs' attempts are recorded (`None`: an older deployment's stream set).
    history: Option<History>,
    ack_wait: Duration,
    max_ack_pending: i64,
    stalled_after: Duration,
    routes: OnceLock<Arc<dyn LiveRoutes>>,
    consumers: ArcSwap<Vec<Arc<Consumers>>>,
    /// Pull state by (pipeline, consumer), kept across reloads.
    health: Mutex<HashMap<(String, &'static str), Arc<Health>>>,
    held: Mutex<HashMap<i64, Arc<Held>>>,
    next_id: AtomicI64,
    pending: AtomicU64,
    cursor: AtomicUsize,
    /// Settled messages let go without a confirmed ack since the last report.
    unconfirmed: AtomicU64,
}

impl std::fmt::Debug for Work {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Work").finish_non_exhaustive()
    }
}

impl Work {
    pub(crate) fn new(
        config: &NatsConfig,
        api: jetstream::Context,
        stream: stream::Stream,
        subjects: Subjects,
        history: Option<History>,
    ) -> Self {
        Work {
            api,
            stream,
            subjects,
            history,
            ack_wait: config.ack_wait,
            max_ack_pending: config.max_ack_pending,
            stalled_after: config.stalled_after,
            routes: OnceLock::new(),
            consumers: ArcSwap::from_pointee(Vec::new()),
            health: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
            next_id: AtomicI64::new(1),
            pending: AtomicU64::new(0),
            cursor: AtomicUsize::new(0),
            unconfirmed: AtomicU64::new(0),
        }
    }

    pub(crate) async fn attach(
        self: &Arc<Self>,
        routes: Arc<dyn LiveRoutes>,
    ) -> Result<(), JournalError> {
        let current = routes.current();
        self.sync(current.as_ref()).await?;
        let _ = self.routes.set(routes.clone());
        let _ = self.refresh().await;
        let this = self.clone();
        tokio::spawn(async move {
            let mut synced = current;
            let mut tick = 0u64;
            loop {
                tokio::time::sleep(SYNC_INTERVAL).await;
                tick += 1;
                let now = routes.current();
                // Consumers whose pulls keep failing while the connection is up may be gone
                // (a server that lost its store): create them again, every few seconds.
                let recreate =
                    tick.is_multiple_of(RESYNC_EVERY) && this.failing() && this.connected();
                if !Arc::ptr_eq(&now, &synced) || recreate {
                    match this.sync(now.as_ref()).await {
                        Ok(()) if Arc::ptr_eq(&now, &synced) => {
                            debug!("NATS consumers ensured again after failed pulls")
                        }
                        Ok(()) => {
                            tracing::info!("NATS consumers updated for the new configuration");
                            synced = now;
                        }
                        Err(e) => {
                            warn!(error = %e, "could not update the NATS consumers for the new config; will try again")
                        }
                    }
                }
                if !this.connected() {
                    // Not a pull that failed, but none can succeed: the same for the metrics
                    // and /readyz, also while every run slot is busy and nothing pulls.
                    this.unreachable();
                    continue;
                }
                let unconfirmed = this.unconfirmed.swap(0, Ordering::Relaxed);
                if unconfirmed > 0 {
                    warn!(
                        messages = unconfirmed,
                        "acknowledgements not confirmed by NATS; those messages were let go and JetStream redelivers any whose ack was lost (at least once)"
                    );
                }
                if let Err(e) = this.refresh().await {
                    debug!(error = %e, "could not read consumer counts");
                }
            }
        });
        let this = self.clone();
        let every = (self.ack_wait / 3).max(Duration::from_millis(300));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let held: Vec<Arc<Held>> = this.lock().values().cloned().collect();
                for h in held {
                    let _ = timeout(h.acker.ack_with(AckKind::Progress)).await;
                }
            }
        });
        Ok(())
    }

    /// The routes in force, once `attach` has run (`serve`); `None` in the CLI.
    pub(crate) fn routes(&self) -> Option<Arc<dyn Routes>> {
        self.routes.get().map(|r| r.current())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Arc<Held>>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pull up to `limit` deliveries that are due: retries first (they are late already),
    /// then fresh events; the budget is shared between pipelines, and what one pipeline
    /// leaves unused goes to those that have more.
    pub(crate) async fn claim(
        &self,
        now: Timestamp,
        limit: usize,
        dead: &DeadLetters,
    ) -> Result<Vec<Delivery>, JournalError> {
        let list = self.consumers.load_full();
        if list.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        if !self.connected() {
            self.unreachable();
            return Ok(Vec::new());
        }
        let started = Instant::now();
        let start = self.cursor.fetch_add(1, Ordering::Relaxed) % list.len();
        let rotated: Vec<Arc<Consumers>> = list[start..]
            .iter()
            .chain(&list[..start])
            .cloned()
            .collect();
        let mut out = Vec::new();
        let mut budget = limit;
        for retry in [true, false] {
            let mut candidates: Vec<Arc<Consumers>> = rotated
                .iter()
                .filter(|c| c.pull(retry).health.due(started))
                .cloned()
                .collect();
            for _round in 0..3 {
                if budget == 0 || candidates.is_empty() {
                    break;
                }
                let per = (budget / candidates.len()).max(1);
                let pulls = candidates
                    .iter()
                    .take(budget)
                    .map(|c| async move { (c.clone(), fetch(&c.pull(retry).consumer, per).await) });
                let mut more = Vec::new();
                for (c, fetched) in futures::future::join_all(pulls).await {
                    let health = &c.pull(retry).health;
                    let messages = match fetched {
                        Ok(m) => {
                            health.answered();
                            m
                        }
                        Err(e) => {
                            health.failed(&e.to_string());
                            continue;
                        }
                    };
                    budget = budget.saturating_sub(messages.len());
                    if messages.len() >= per {
                        more.push(c.clone());
                    }
                    for m in messages {
                        if let Some(d) = self.take(&c, retry, m, now, dead).await {
                            out.push(d);
                        }
                    }
                }
                candidates = more;
            }
        }
        Ok(out)
    }

    /// Turn a message into a delivery, or deal with it here (not due yet, not this
    /// pipeline's, unreadable).
    async fn take(
        &self,
        c: &Consumers,
        retry: bool,
        message: jetstream::Message,
        now: Timestamp,
        dead: &DeadLetters,
    ) -> Option<Delivery> {
        let (sequence, delivered) = match message.info() {
            Ok(i) => (i.stream_sequence, i.delivered),
            Err(_) => (0, 0),
        };
        let (message, acker) = message.split();
        let progress = if retry {
            match message.headers.as_ref().and_then(Progress::from_headers) {
                Some(p) => Some(p),
                None => {
                    self.unreadable(
                        c,
                        acker,
                        &message.payload,
                        "a retry message without its progress headers",
                        dead,
                    )
                    .await;
                    return None;
                }
            }
        } else {
            None
        };
        if let Some(p) = &progress {
            let wait = p.not_before - now.as_millisecond();
            if wait > 0 {
                let delay = Duration::from_millis(u64::try_from(wait).unwrap_or(0));
                let _ = timeout(acker.ack_with(AckKind::Nak(Some(delay)))).await;
                return None;
            }
        }
        let event: Event = match serde_json::from_slice(&message.payload) {
            Ok(e) => e,
            Err(e) => {
                self.unreadable(
                    c,
                    acker,
                    &message.payload,
                    &format!("a stored event that is not valid: {e}"),
                    dead,
                )
                .await;
                return None;
            }
        };
        if !retry && !self.wants(&c.pipeline, &event.event_type) {
            // The subject filter was wider than the pipeline's globs.
            let _ = timeout(acker.ack()).await;
            return None;
        }
        if delivered > 1 {
            debug!(event_id = %event.id, pipeline = %c.pipeline, delivered, "running a redelivered message");
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (stage, stage_name, attempts, first_failed_at, origin) = match &progress {
            Some(p) => (
                p.stage,
                p.stage_name.clone(),
                p.attempts,
                p.first_failed_at
                    .and_then(|t| Timestamp::from_millisecond(t).ok()),
                p.origin,
            ),
            None => (0, None, 0, None, Some(sequence)),
        };
        self.lock().insert(
            id,
            Arc::new(Held {
                acker,
                pipeline: c.pipeline.clone(),
                origin,
                key: format!("{}:{sequence}:{delivered}", super::token(&c.pipeline)),
                dead_ids: OnceLock::new(),
                ack_failures: AtomicU32::new(0),
            }),
        );
        Some(Delivery {
            id,
            pipeline: c.pipeline.clone(),
            stage,
            stage_name,
            attempts,
            first_failed_at,
            event: event.into(),
        })
    }

    fn wants(&self, pipeline: &str, event_type: &str) -> bool {
        self.routes
            .get()
            .and_then(|r| r.current().wants(pipeline, event_type))
            .unwrap_or(true)
    }

    /// A message no run can use: keep it as a dead letter (nothing authenticated is lost)
    /// and acknowledge it.
    async fn unreadable(
        &self,
        c: &Consumers,
        acker: Acker,
        raw: &[u8],
        why: &str,
        dead: &DeadLetters,
    ) {
        let now = Timestamp::now();
        let source = self
            .routes
            .get()
            .and_then(|r| r.current().source_of(&c.pipeline).map(str::to_string))
            .unwrap_or_default();
        let letter = NewDeadLetter {
            event_id: String::new(),
            source,
            pipeline: Some(c.pipeline.clone()),
            stage_index: None,
            stage_name: None,
            error: format!("NATS held {why}"),
            attempts: 0,
            first_failed_at: now,
            last_failed_at: now,
            event: None,
            raw: Some(raw.to_vec()),
        };
        let id = uuid::Uuid::now_v7().to_string();
        match dead.insert(&id, &letter, None).await {
            Ok(()) => {
                warn!(pipeline = %c.pipeline, dead_letter = %id, "{why}: dead-lettered");
                let _ = timeout(acker.ack()).await;
            }
            Err(e) => {
                warn!(pipeline = %c.pipeline, error = %e, "{why}, and it could not be dead-lettered; it will come back")
            }
        }
    }

    /// Publish a retry (or replay) of a pipeline; returns its stream sequence.
    pub(crate) async fn publish_retry(
        &self,
        progress: &Progress,
        event: &Event,
        msg_id: &str,
    ) -> Result<u64, JournalError> {
        let body = serde_json::to_vec(event).map_err(|e| err("encode event", e))?;
        let publish = PublishMessage::build()
            .payload(body.into())
            .headers(progress.to_headers())
            .message_id(msg_id);
        let ack = self
            .api
            .send_publish(self.subjects.retry(&progress.pipeline), publish)
            .await
            .map_err(|e| err("publish retry", e))?
            .await
            .map_err(|e| err("publish retry ack", e))?;
        Ok(ack.sequence)
    }

    /// Record how a run ended (and its attempts, in the event's history), then acknowledge
    /// its message.
    pub(crate) async fn settle(
        &self,
        delivery: i64,
        continuations: &[Continuation],
        attempts: &[Attempt],
        dead: &DeadLetters,
    ) -> Result<(), JournalError> {
        let Some(held) = self.lock().get(&delivery).cloned() else {
            return Ok(());
        };
        if !self.connected() {
            // Nothing can be published or acknowledged now; the caller tries again.
            return Err(JournalError::Nats(
                "not connected to NATS (reconnecting)".into(),
            ));
        }
        let ids = held.dead_ids.get_or_init(|| {
            continuations
                .iter()
                .map(|_| uuid::Uuid::now_v7().to_string())
                .collect()
        });
        let mut retries: Vec<(usize, u64, Timestamp)> = Vec::new();
        for (i, c) in continuations.iter().enumerate() {
            match c {
                Continuation::Retry {
                    stage,
                    stage_name,
                    event,
                    attempts,
                    next_attempt_at,
                    first_failed_at,
                    ..
                } => {
                    let progress = Progress {
                        pipeline: held.pipeline.clone(),
                        stage: *stage,
                        stage_name: stage_name.clone(),
                        attempts: *attempts,
                        first_failed_at: Some(first_failed_at.as_millisecond()),
                        not_before: next_attempt_at.as_millisecond(),
                        origin: held.origin,
                    };
                    let seq = self
                        .publish_retry(&progress, event, &format!("retry:{}:{i}", held.key))
                        .await?;
                    retries.push((*stage, seq, *next_attempt_at));
                }
                Continuation::Dead(letter) => {
                    let id = ids.get(i).cloned().unwrap_or_default();
                    dead.insert(&id, letter, held.origin).await?;
                }
            }
        }
        self.record(&held, attempts, &retries).await;
        // What the run left to do is stored; now the message can go. An acknowledgement
        // whose confirmation does not come in time (the server restarted since the message
        // was delivered and no longer answers for it, the consumer's leader moved) is tried
        // again, then let go: the run's slot is not held for long, and if the ack was lost
        // JetStream redelivers the message (at least once).
        let confirmed = tokio::time::timeout(ACK_CONFIRM, held.acker.double_ack()).await;
        let failure = match confirmed {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("no confirmation within {}s", ACK_CONFIRM.as_secs())),
        };
        if let Some(e) = failure {
            if held.ack_failures.fetch_add(1, Ordering::Relaxed) + 1 < ACK_ATTEMPTS {
                return Err(JournalError::Nats(format!("acknowledge: {e}")));
            }
            debug!(pipeline = %held.pipeline, error = %e, "acknowledgement not confirmed after {ACK_ATTEMPTS} tries; letting the message go (JetStream redelivers it if the ack was lost)");
            self.unconfirmed.fetch_add(1, Ordering::Relaxed);
        }
        self.lock().remove(&delivery);
        Ok(())
    }

    /// Add a settled run's attempts to their events' histories, each with the messages it
    /// left (the original's sequence, the retry's), before the message is acknowledged.
    async fn record(&self, held: &Held, attempts: &[Attempt], retries: &[(usize, u64, Timestamp)]) {
        let Some(history) = &self.history else {
            return;
        };
        for (i, attempt) in attempts.iter().enumerate() {
            let retry = match attempt.result {
                AttemptResult::Retry => retries
                    .iter()
                    .find(|r| r.0 == attempt.stage)
                    .or(retries.first()),
                _ => None,
            };
            let record = Record::Attempt {
                attempt: attempt.clone(),
                origin: held.origin,
                retry_seq: retry.map(|r| r.1),
                next_attempt_at: retry.map(|r| r.2),
            };
            let id = format!("attempt:{}:{i}", held.key);
            if let Err(e) = history.append(&attempt.event_id, &record, &id).await {
                // History is a record of deliveries, not a condition of them: a history
                // stream that cannot be written (deleted, full) does not stop the flow.
                warn!(event_id = %attempt.event_id, pipeline = %held.pipeline, error = %e, "attempt not recorded in the event's history");
            }
        }
    }

    /// Give back every held message (shutdown): redelivered to others at once.
    pub(crate) async fn release(&self) {
        let held: Vec<Arc<Held>> = self.lock().drain().map(|(_, h)| h).collect();
        for h in held {
            let _ = timeout(h.acker.ack_with(AckKind::Nak(None))).await;
        }
    }

    fn connected(&self) -> bool {
        !matches!(
            self.api.client().connection_state(),
            async_nats::connection::State::Disconnected
        )
    }

    /// No consumer can be pulled from: the connection is down.
    fn unreachable(&self) {
        let now = Instant::now();
        for c in self.consumers.load().iter() {
            for pull in [&c.events, &c.retry] {
                if pull.health.due(now) {
                    pull.health.failed("not connected to NATS (reconnecting)");
                }
            }
        }
    }

    /// Whether any consumer's pulls are failing now.
    fn failing(&self) -> bool {
        self.consumers
            .load()
            .iter()
            .any(|c| c.events.health.failing() || c.retry.health.failing())
    }

    /// Why this worker cannot pull: every consumer whose pulls have failed for longer than
    /// `stalled_after`, or `None`.
    pub(crate) fn stalled(&self) -> Option<String> {
        let list = self.consumers.load_full();
        let why: Vec<String> = list
            .iter()
            .flat_map(|c| [&c.events, &c.retry])
            .filter_map(|p| p.health.stalled(self.stalled_after))
            .collect();
        (!why.is_empty()).then(|| why.join("; "))
    }

    pub(crate) fn pending_hint(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }
}

impl Consumers {
    fn pull(&self, retry: bool) -> &Pull {
        if retry { &self.retry } else { &self.events }
    }
}

/// An acknowledgement bounded by [`ACK_TIMEOUT`].
async fn timeout<T>(
    ack: impl std::future::Future<Output = Result<T, async_nats::Error>>,
) -> Result<T, JournalError> {
    match tokio::time::timeout(ACK_TIMEOUT, ack).await {
        Ok(r) => r.map_err(|e| err("acknowledge", e)),
        Err(_) => Err(JournalError::Nats(
            "acknowledge: no room to send it in time (connection down?)".into(),
        )),
    }
}

/// Whatever is there now, up to `max` messages, without waiting; an error when the server
/// does not answer within [`PULL_TIMEOUT`].
async fn fetch(
    consumer: &PullConsumer,
    max: usize,
) -> Result<Vec<jetstream::Message>, JournalError> {
    match tokio::time::timeout(PULL_TIMEOUT, fetch_now(consumer, max)).await {
        Ok(r) => r,
        Err(_) => Err(JournalError::Nats(format!(
            "pull: no answer from the server within {}s",
            PULL_TIMEOUT.as_secs()
        ))),
    }
}

async fn fetch_now(
    consumer: &PullConsumer,
    max: usize,
) -> Result<Vec<jetstream::Message>, JournalError> {
    let mut batch = consumer
        .fetch()
        .max_messages(max)
        .messages()
        .await
        .map_err(|e| err("fetch", e))?;
    let mut out = Vec::new();
    while let Some(m) = batch.next().await {
        match m {
            Ok(m) => out.push(m),
            Err(e) => {
                if out.is_empty() {
                    return Err(err("fetch", e));
                }
                break;
            }
        }
    }
    Ok(out)
}
