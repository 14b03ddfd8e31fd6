//! The JetStream journal (`[storage] backend = "nats"`): any number of ingest and worker
//! processes share one replicated log instead of one SQLite file.
//!
//! - **Ingest** publishes each verified event to `<prefix>.events.<source>.<type>` in the
//!   stream and answers 2xx only on JetStream's publish ack. The source and idempotency key
//!   go in `Nats-Msg-Id`, so JetStream's duplicate window dedupes exactly what the SQLite
//!   journal's dedupe table would; a duplicate's ack names the first message, whose
//!   `Hookline-Event-Id` header is the id the sender is answered with.
//! - **Workers** pull from two durable consumers per pipeline ([`work`]): fresh events, and
//!   the pipeline's retries. A message is acknowledged only after its run has settled. A
//!   retry is a new message on `<prefix>.retry.<pipeline>` carrying the stage, attempts and
//!   the event as it enters that stage (headers + body), so it resumes at the failed stage
//!   and earlier sinks are not hit again; it waits for its time through `nak` with a delay.
//!   A worker that dies leaves its messages unacknowledged: JetStream hands them to another
//!   worker after `ack_wait`. Long runs extend `ack_wait` with progress acks.
//! - **Dead letters** live in the key-value bucket `<stream>_dead_letters` ([`dead`]), so
//!   `hookline dlq` and the admin API work the same on every machine.
//! - **Event history**: workers record each run's attempt in the stream `<stream>_history`
//!   ([`history`]); listing, showing, replaying and erasing events is [`events`].

mod dead;
mod events;
mod history;
mod subjects;
mod work;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage, stream};
use jiff::Timestamp;

use super::{
    Accepted, Attempt, Continuation, DeadLetter, DeadLetterFilter, Delivery, Depths, Erased,
    EventFilter, EventPage, EventRecord, Journal, JournalError, LiveRoutes, NewDeadLetter,
    NewEvent, Page, Replayed,
};
use crate::config::NatsConfig;

pub(crate) use subjects::{Subjects, message_id, token};

/// How long JetStream API calls (not publishes) may take.
const API_TIMEOUT: Duration = Duration::from_secs(10);

fn err(what: &str, e: impl std::fmt::Display) -> JournalError {
    JournalError::Nats(format!("{what}: {e}"))
}

/// Limits of the stream that follow from the rest of the config.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Provision {
    /// `[storage] retain`: how long events stay in the stream.
    pub(crate) retain: Duration,
    /// The longest `dedupe_window` of any source.
    pub(crate) duplicate_window: Duration,
}

/// The JetStream journal. Cheap to clone.
#[derive(Clone)]
pub(crate) struct NatsJournal {
    inner: Arc<Inner>,
}

struct Inner {
    config: NatsConfig,
    client: async_nats::Client,
    /// For publishes that answer a webhook: bounded by `publish_timeout`.
    publisher: jetstream::Context,
    stream: stream::Stream,
    subjects: Subjects,
    dead: dead::DeadLetters,
    /// `None` when `serve` of a version without event history on NATS made the deployment.
    history: Option<history::History>,
    work: Arc<work::Work>,
}

impl std::fmt::Debug for NatsJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsJournal")
            .field("stream", &self.inner.config.stream)
            .finish()
    }
}

impl NatsJournal {
    /// Connect, and create or update the stream and the dead-letter bucket (`serve`).
    pub(crate) async fn provision(
        config: &NatsConfig,
        base_dir: &Path,
        limits: Provision,
    ) -> Result<Self, JournalError> {
        let client = connect(config, base_dir).await?;
        let api = context(&client, API_TIMEOUT);
        let subjects = Subjects::new(&config.subject_prefix);
        let stream_config = stream::Config {
            name: config.stream.clone(),
            description: Some("Hookline: webhook events and their retries".into()),
            subjects: subjects.stream_subjects(),
            retention: stream::RetentionPolicy::Limits,
            max_age: limits.retain,
            duplicate_window: limits.duplicate_window.min(limits.retain),
            num_replicas: config.replicas,
            storage: stream::StorageType::File,
            allow_direct: true,
            ..Default::default()
        };
        api.create_or_update_stream(stream_config)
            .await
            .map_err(|e| err(&format!("cannot create the stream `{}`", config.stream), e))?;
        let dead = dead::DeadLetters::provision(&api, &bucket(config), config.replicas).await?;
        let history = history::History::provision(
            &api,
            &config.stream,
            &config.subject_prefix,
            config.replicas,
            limits.retain,
        )
        .await?;
        Self::assemble(config, client, api, subjects, dead, Some(history)).await
    }

    /// Connect to a stream and bucket that `serve` created (`hookline dlq`).
    pub(crate) async fn open_existing(
        config: &NatsConfig,
        base_dir: &Path,
    ) -> Result<Self, JournalError> {
        let client = connect(config, base_dir).await?;
        let api = context(&client, API_TIMEOUT);
        let dead = dead::DeadLetters::open(&api, &bucket(config)).await?;
        let subjects = Subjects::new(&config.subject_prefix);
        let history = history::History::open(&api, &config.stream, &config.subject_prefix).await;
        Self::assemble(config, client, api, subjects, dead, history).await
    }

    async fn assemble(
        config: &NatsConfig,
        client: async_nats::Client,
        api: jetstream::Context,
        subjects: Subjects,
        dead: dead::DeadLetters,
        history: Option<history::History>,
    ) -> Result<Self, JournalError> {
        let stream = api.get_stream(&config.stream).await.map_err(|e| {
            err(
                &format!(
                    "no stream `{}` on NATS (has `hookline serve` run with this config?)",
                    config.stream
                ),
                e,
            )
        })?;
        let publisher = context(&client, config.publish_timeout);
        let work = Arc::new(work::Work::new(
            config,
            api,
            stream.clone(),
            subjects.clone(),
            history.clone(),
        ));
        Ok(NatsJournal {
            inner: Arc::new(Inner {
                config: config.clone(),
                client,
                publisher,
                stream,
                subjects,
                dead,
                history,
                work,
            }),
        })
    }

    /// Create this config's consumers now, keep them in step with reloads, and keep the
    /// consumer-lag and pending counts fresh. `work` also extends the ack deadline of runs
    /// in flight.
    pub(crate) async fn attach(&self, routes: Arc<dyn LiveRoutes>) -> Result<(), JournalError> {
        self.inner.work.attach(routes).await
    }

    /// Hand back messages still held (at shutdown), so other workers take them at once
    /// instead of after `ack_wait`.
    pub(crate) async fn release(&self) {
        self.inner.work.release().await;
    }

    fn connected(&self) -> Result<(), JournalError> {
        match self.inner.client.connection_state() {
            async_nats::connection::State::Disconnected => Err(JournalError::Nats(
                "not connected to NATS (reconnecting)".into(),
            )),
            _ => Ok(()),
        }
    }

    /// The first message's event id, for a duplicate whose ack names it by sequence.
    async fn first_id(&self, sequence: u64) -> String {
        match self.inner.stream.get_raw_message(sequence).await {
            Ok(m) => m
                .headers
                .get(subjects::header::EVENT_ID)
                .map(|v| v.as_str().to_string())
                .unwrap_or_else(|| format!("{}/{sequence}", self.inner.config.stream)),
            Err(e) => {
                tracing::warn!(sequence, error = %e, "duplicate: the first message could not be read; answering with its stream sequence");
                format!("{}/{sequence}", self.inner.config.stream)
            }
        }
    }
}

fn bucket(config: &NatsConfig) -> String {
    format!("{}_dead_letters", config.stream)
}

fn context(client: &async_nats::Client, timeout: Duration) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(timeout)
        .build(client.clone())
}

async fn connect(config: &NatsConfig, base_dir: &Path) -> Result<async_nats::Client, JournalError> {
    // async-nats is built with ring only, the provider the rest of Hookline uses.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut options = async_nats::ConnectOptions::new()
        .name("hookline")
        .connection_timeout(Duration::from_secs(5))
        .reconnect_delay_callback(|attempts| Duration::from_millis(100 * attempts.min(20) as u64))
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Disconnected => {
                    tracing::warn!(
                        "NATS connection lost; reconnecting (ingest answers 503 meanwhile)"
                    )
                }
                async_nats::Event::Connected => tracing::info!("connected to NATS"),
                other => tracing::info!(event = %other, "NATS"),
            }
        });
    if let (Some(user), Some(password)) = (&config.user, &config.password) {
        options = options.user_and_password(user.clone(), password.expose().to_string());
    }
    if let Some(token) = &config.token {
        options = options.token(token.expose().to_string());
    }
    if let Some(creds) = &config.creds {
        let path = if creds.is_absolute() {
            creds.clone()
        } else {
            base_dir.join(creds)
        };
        options = options.credentials_file(&path).await.map_err(|e| {
            JournalError::Open(format!(
                "cannot read the NATS credentials {}: {e}",
                path.display()
            ))
        })?;
    }
    let urls = config.url.list();
    options.connect(urls.clone()).await.map_err(|e| {
        JournalError::Open(format!(
            "cannot connect to NATS at {}: {e}",
            urls.join(", ")
        ))
    })
}

#[async_trait::async_trait]
impl Journal for NatsJournal {
    async fn accept(&self, new: &NewEvent) -> Result<Accepted, JournalError> {
        self.connected()?;
        let event = &new.event;
        let label = self.inner.work.type_label(&event.source, &event.event_type);
        let subject = self.inner.subjects.event(&event.source, &label);
        let body = serde_json::to_vec(event).map_err(|e| err("encode event", e))?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(subjects::header::EVENT_ID, event.id.as_str());
        let mut publish = PublishMessage::build()
            .payload(body.into())
            .headers(headers);
        if let Some(key) = &new.dedupe_key {
            publish = publish.message_id(message_id(&event.source, key));
        }
        let ack = self
            .inner
            .publisher
            .send_publish(subject, publish)
            .await
            .map_err(|e| err("publish", e))?
            .await
            .map_err(|e| err("publish ack", e))?;
        if ack.duplicate {
            return Ok(Accepted::Duplicate {
                first_id: self.first_id(ack.sequence).await,
            });
        }
        // Workers anywhere take it from the stream; nothing runs in this process.
        Ok(Accepted::New {
            deliveries: Vec::new(),
            queued: 0,
        })
    }

    async fn dead_letter(&self, letter: NewDeadLetter) -> Result<String, JournalError> {
        self.connected()?;
        let id = uuid::Uuid::now_v7().to_string();
        self.inner.dead.insert(&id, &letter, None).await?;
        Ok(id)
    }

    async fn claim_due(&self, now: Timestamp, limit: usize) -> Result<Vec<Delivery>, JournalError> {
        self.inner.work.claim(now, limit, &self.inner.dead).await
    }

    async fn settle_recorded(
        &self,
        delivery: i64,
        continuations: Vec<Continuation>,
        attempts: Vec<Attempt>,
    ) -> Result<(), JournalError> {
        self.inner
            .work
            .settle(delivery, &continuations, &attempts, &self.inner.dead)
            .await
    }

    async fn depths(&self) -> Result<Depths, JournalError> {
        // Fail at once while reconnecting, rather than after every request's timeout.
        self.connected()?;
        let pending = self.inner.work.refresh().await?;
        let dead = self.inner.dead.count_dead().await?;
        Ok(Depths { pending, dead })
    }

    fn pending_hint(&self) -> u64 {
        self.inner.work.pending_hint()
    }

    fn stalled(&self) -> Option<String> {
        self.inner.work.stalled()
    }

    async fn list_dead(
        &self,
        filter: DeadLetterFilter,
        offset: u64,
        limit: u64,
    ) -> Result<Page<DeadLetter>, JournalError> {
        self.inner.dead.list(&filter, offset, limit).await
    }

    async fn get_dead(&self, id: String) -> Result<Option<DeadLetter>, JournalError> {
        Ok(self.inner.dead.get(&id).await?.map(|(s, _)| s.letter))
    }

    async fn replay(&self, id: String, from_start: bool) -> Result<Replayed, JournalError> {
        self.replay_letter(id, from_start).await
    }

    async fn purge(&self, ids: Vec<String>) -> Result<u64, JournalError> {
        self.inner.dead.purge(&ids).await
    }

    async fn dead_ids(&self, filter: DeadLetterFilter) -> Result<Vec<String>, JournalError> {
        self.inner.dead.ids(&filter).await
    }

    async fn prune(&self, _before: Timestamp, _now: Timestamp) -> Result<u64, JournalError> {
        // The stream's `max_age` (= `retain`) does this inside JetStream.
        Ok(0)
    }

    async fn list_events(
        &self,
        filter: EventFilter,
        cursor: Option<String>,
        limit: u64,
    ) -> Result<EventPage, JournalError> {
        self.list_events_nats(filter, cursor, limit).await
    }

    async fn get_event(&self, id: String) -> Result<Option<EventRecord>, JournalError> {
        self.get_event_nats(id).await
    }

    async fn replay_event(
        &self,
        event_id: String,
        pipeline: String,
        from_failed: bool,
    ) -> Result<Replayed, JournalError> {
        self.replay_event_nats(event_id, pipeline, from_failed)
            .await
    }

    async fn erase_events(&self, ids: Vec<String>) -> Result<Erased, JournalError> {
        self.erase_events_nats(ids).await
    }
}

impl NatsJournal {
    /// Send a dead letter back into its pipeline (`hookline dlq replay`): at the failed
    /// stage, or from the start with the original event while the stream holds it.
    async fn replay_letter(&self, id: String, from_start: bool) -> Result<Replayed, JournalError> {
        self.connected()?;
        let Some((stored, revision)) = self.inner.dead.get(&id).await? else {
            return Ok(Replayed::NotFound);
        };
        let dl = &stored.letter;
        let from = match crate::journal::rules::replayable(dl) {
            Ok(from) => from,
            Err(skipped) => return Ok(skipped),
        };
        let original = match from_start {
            true => self.original(stored.origin_seq).await,
            false => None,
        };
        let start = match crate::journal::rules::replay_start(dl, &from, from_start, original) {
            Ok(start) => start,
            Err(skipped) => return Ok(skipped),
        };
        let replayed = self
            .queue(
                &start.event,
                from.pipeline,
                (start.stage, start.stage_name.as_deref()),
                stored.origin_seq,
                &format!("replay:{id}"),
            )
            .await?;
        if matches!(replayed, Replayed::Queued { .. }) {
            self.inner
                .dead
                .mark_replayed(&id, stored.clone(), revision)
                .await?;
        }
        Ok(replayed)
    }

    /// The event as first published, while the stream still holds it.
    async fn original(&self, origin: Option<u64>) -> Option<hookline_plugin_api::Event> {
        let m = self.inner.stream.get_raw_message(origin?).await.ok()?;
        serde_json::from_slice(&m.payload).ok()
    }
}

#[cfg(test)]
mod tests {
    /// rustls panics at run time when two crypto providers are compiled in and none is
    /// installed (async-nats' default `ring` beside reqwest's `aws-lc-rs`). Hookline builds
    /// every TLS user with ring only; nextest runs this in a fresh process, where no
    /// provider has been installed yet, so a second provider would panic here.
    #[test]
    fn one_crypto_provider_is_compiled_in() {
        let _ = rustls::ClientConfig::builder();
    }
}
