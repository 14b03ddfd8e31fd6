//! Event history on the JetStream journal: listing and searching the events stream, one
//! event with its recorded attempts, replay into a pipeline, and erasure.
//!
//! - **Listing** walks the events stream backward by sequence with direct gets (served by
//!   any replica), a few dozen at a time, newest first; the cursor is a stream sequence.
//!   Like the SQLite journal it looks at no more than 10 000 messages per page, and no more
//!   than 1 000 events' histories when it filters by pipeline or outcome (each is a read of
//!   the history stream) ([`list`]).
//! - **An event's page** finds the event by the stream sequence its history records, else
//!   by the time in its id (a UUIDv7) — a window of the stream around it — and reads its
//!   history ([`super::history`]). Outcomes come from [`pipeline_state`], the SQLite
//!   journal's rule.
//! - **Replay** publishes a retry message at stage 0 (or replays the pipeline's dead
//!   letter), as `hookline dlq replay` does, and records that it queued it.
//! - **Erasure** deletes the event's message and every retry message its history names
//!   (JetStream overwrites deleted messages in its file store), its history and its dead
//!   letters — unless a pipeline's events consumer may be running it (`busy`) ([`erase`]).

mod erase;
mod list;

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::message::StreamMessage;
use hookline_plugin_api::Event;
use jiff::Timestamp;
use serde::Deserialize;

use super::history::{History, Record, Records, not_found};
use super::subjects::{self, Progress, events_consumer};
use super::{NatsJournal, err};
use crate::journal::rules::pipeline_state;
use crate::journal::{
    Attempt, DeadLetterFilter, EventRecord, EventSummary, JournalError, Replayed, Routes,
};

/// How far before (after) the time in an event's id its message may be stamped: the clocks
/// of ingest hosts and NATS servers may differ, and a publish takes up to its timeout.
const BEFORE_ID: i64 = 10_000;
const AFTER_ID: i64 = 30_000;
/// Messages looked at, at most, to find an event by its time.
const NEAR_BUDGET: u64 = 10_000;
/// How long one listing, lookup or erasure may take.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What a listing reads of an event without its payload.
#[derive(Debug, Deserialize)]
struct Head {
    id: String,
    source: String,
    #[serde(rename = "type")]
    event_type: String,
    received_at: Timestamp,
}

impl From<&Event> for Head {
    fn from(e: &Event) -> Self {
        Head {
            id: e.id.clone(),
            source: e.source.clone(),
            event_type: e.event_type.clone(),
            received_at: e.received_at,
        }
    }
}

/// An events consumer's ack floor per pipeline, read once per request.
type Floors = HashMap<String, Option<u64>>;

impl NatsJournal {
    fn history(&self) -> Result<&History, JournalError> {
        self.inner.history.as_ref().ok_or_else(|| {
            JournalError::Unsupported(format!(
                "no history stream `{}` on NATS: run `hookline serve` of this version once to create it",
                History::stream_name(&self.inner.config.stream)
            ))
        })
    }

    fn events_prefix(&self) -> String {
        format!("{}.events.", self.inner.config.subject_prefix)
    }

    async fn bounded<T>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = Result<T, JournalError>>,
    ) -> Result<T, JournalError> {
        tokio::time::timeout(READ_TIMEOUT, f)
            .await
            .map_err(|_| JournalError::Nats(format!("{what} timed out")))?
    }

    /// Where an event stands in each pipeline: those its records name, and — with the
    /// running config — those that take it and whose consumer has not passed it yet (its
    /// first run is under way, or waits for a worker).
    async fn summarise(
        &self,
        routes: Option<&dyn Routes>,
        floors: &mut Floors,
        head: Head,
        seq: u64,
        records: &Records,
    ) -> EventSummary {
        let mut order: Vec<String> = Vec::new();
        if let Some(routes) = routes {
            for r in routes.routes() {
                if r.source != head.source
                    || routes.wants(r.name, &head.event_type) != Some(true)
                    || records.pipelines().iter().any(|p| p == r.name)
                {
                    continue;
                }
                if self.passed(floors, r.name, seq).await {
                    continue;
                }
                order.push(r.name.to_string());
            }
        }
        for p in records.pipelines() {
            if !order.contains(&p) {
                order.push(p);
            }
        }
        let attempts = records.attempts();
        let pipelines = order
            .iter()
            .map(|name| {
                let tried: Vec<&Attempt> =
                    attempts.iter().filter(|a| &a.pipeline == name).collect();
                pipeline_state(name, records.standing(name), &tried, true)
            })
            .collect();
        EventSummary {
            id: head.id,
            source: head.source,
            event_type: head.event_type,
            received_at: head.received_at,
            pipelines,
        }
    }

    /// Whether `pipeline`'s events consumer has acknowledged everything up to `seq` (or does
    /// not exist): then an event there without records was never run in it.
    async fn passed(&self, floors: &mut Floors, pipeline: &str, seq: u64) -> bool {
        if !floors.contains_key(pipeline) {
            let floor = self
                .inner
                .stream
                .consumer_info(events_consumer(pipeline))
                .await
                .ok()
                .map(|i| i.ack_floor.stream_sequence);
            floors.insert(pipeline.to_string(), floor);
        }
        floors
            .get(pipeline)
            .copied()
            .flatten()
            .is_none_or(|floor| floor >= seq)
    }

    pub(super) async fn get_event_nats(
        &self,
        id: String,
    ) -> Result<Option<EventRecord>, JournalError> {
        self.connected()?;
        let history = self.history()?.clone();
        self.bounded("reading the event", async {
            let records = history.read(&id).await?;
            let Some(Located { seq, event, .. }) = self.locate(&id, &records).await? else {
                return Ok(None);
            };
            let routes = self.inner.work.routes();
            let summary = self
                .summarise(
                    routes.as_deref(),
                    &mut Floors::new(),
                    Head::from(&event),
                    seq,
                    &records,
                )
                .await;
            let dead_letters = self
                .inner
                .dead
                .ids(&DeadLetterFilter {
                    event_id: Some(id.clone()),
                    include_replayed: true,
                    ..Default::default()
                })
                .await?;
            Ok(Some(EventRecord {
                summary,
                headers: event.headers,
                payload: event.payload,
                attempts: records.attempts(),
                dead_letters,
            }))
        })
        .await
    }

    /// An event's message in the stream: at the sequence its history names, else near the
    /// time in its id.
    async fn locate(&self, id: &str, records: &Records) -> Result<Option<Located>, JournalError> {
        if let Some(seq) = records.origin()
            && let Some(found) = self.event_at(id, seq).await?
        {
            return Ok(Some(found));
        }
        let Some(at) = id_time(id) else {
            return Ok(None);
        };
        self.near(id, at).await
    }

    /// The event `id` if it is the message at `seq`.
    async fn event_at(&self, id: &str, seq: u64) -> Result<Option<Located>, JournalError> {
        match self.inner.stream.direct_get(seq).await {
            Ok(m) => Ok(self.event_of(id, &m)),
            Err(e) if not_found(e.kind()) => Ok(None),
            Err(e) => Err(err("read the stream", e)),
        }
    }

    fn event_of(&self, id: &str, m: &StreamMessage) -> Option<Located> {
        let named = m
            .headers
            .get(subjects::header::EVENT_ID)
            .is_some_and(|v| v.as_str() == id);
        if !named || !m.subject.as_str().starts_with(&self.events_prefix()) {
            return None;
        }
        let event = serde_json::from_slice(&m.payload).ok()?;
        Some(Located {
            seq: m.sequence,
            subject: m.subject.to_string(),
            event,
        })
    }

    /// Find event `id` among the events stamped from [`BEFORE_ID`] before `at` to
    /// [`AFTER_ID`] after it: a binary search by time for the first, then a walk forward
    /// (at most [`NEAR_BUDGET`] messages).
    async fn near(&self, id: &str, at: i64) -> Result<Option<Located>, JournalError> {
        let events = format!("{}>", self.events_prefix());
        let stream = &self.inner.stream;
        let next = |seq: u64| {
            let events = events.clone();
            async move {
                match stream
                    .direct_get_next_for_subject(events, Some(seq.max(1)))
                    .await
                {
                    Ok(m) => Ok(Some(m)),
                    Err(e) if not_found(e.kind()) => Ok(None),
                    Err(e) => Err(err("read the stream", e)),
                }
            }
        };
        let state = stream
            .get_info()
            .await
            .map_err(|e| err("stream info", e))?
            .state;
        let (mut lo, mut hi) = (state.first_sequence.max(1), state.last_sequence + 1);
        let from = at - BEFORE_ID;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match next(mid).await? {
                Some(m) if millis(&m) < from => lo = m.sequence + 1,
                _ => hi = mid,
            }
        }
        let mut seq = lo;
        for _ in 0..NEAR_BUDGET {
            let Some(m) = next(seq).await? else {
                return Ok(None);
            };
            if millis(&m) > at + AFTER_ID {
                return Ok(None);
            }
            if let Some(found) = self.event_of(id, &m) {
                return Ok(Some(found));
            }
            seq = m.sequence + 1;
        }
        Ok(None)
    }

    pub(super) async fn replay_event_nats(
        &self,
        event_id: String,
        pipeline: String,
        from_failed: bool,
    ) -> Result<Replayed, JournalError> {
        self.connected()?;
        let history = self.history()?.clone();
        if from_failed {
            let letters = self
                .inner
                .dead
                .ids(&DeadLetterFilter {
                    event_id: Some(event_id.clone()),
                    pipeline: Some(pipeline.clone()),
                    ..Default::default()
                })
                .await?;
            return match letters.last() {
                Some(id) => self.replay_letter(id.clone(), false).await,
                None => Ok(Replayed::Skipped {
                    reason: format!(
                        "the event has no dead letter in `{pipeline}` to resume from; replay it from the first stage"
                    ),
                }),
            };
        }
        let records = history.read(&event_id).await?;
        let Some(Located { seq, event, .. }) = self
            .bounded("finding the event", self.locate(&event_id, &records))
            .await?
        else {
            return Ok(Replayed::NotFound);
        };
        if records.standing(&pipeline).is_some() {
            return Ok(Replayed::Skipped {
                reason: format!("the event is already waiting for delivery in `{pipeline}`"),
            });
        }
        self.queue(
            &event,
            &pipeline,
            (0, None),
            Some(seq),
            &format!("replay-event:{}", uuid::Uuid::now_v7()),
        )
        .await
    }

    /// Publish a retry message that runs `event` in `pipeline` from `stage` (its position and
    /// name), and record it.
    pub(super) async fn queue(
        &self,
        event: &Event,
        pipeline: &str,
        (stage, stage_name): (usize, Option<&str>),
        origin: Option<u64>,
        msg_id: &str,
    ) -> Result<Replayed, JournalError> {
        if !self.inner.work.has_retry_consumer(pipeline).await? {
            return Ok(Replayed::Skipped {
                reason: format!(
                    "pipeline `{pipeline}` has no consumer on NATS: is it in the config of a running `hookline serve`? (a reload creates it within a second)"
                ),
            });
        }
        let now = Timestamp::now();
        let progress = Progress {
            pipeline: pipeline.to_string(),
            stage,
            stage_name: stage_name.map(str::to_string),
            attempts: 0,
            first_failed_at: None,
            not_before: now.as_millisecond(),
            origin,
        };
        let retry_seq = self
            .inner
            .work
            .publish_retry(&progress, event, msg_id)
            .await?;
        if let Some(history) = &self.inner.history {
            let record = Record::Queued {
                pipeline: pipeline.to_string(),
                stage,
                at: now,
                origin,
                retry_seq,
            };
            // The replay is under way either way; only its line in the history is missing.
            if let Err(e) = history
                .append(&event.id, &record, &format!("{msg_id}:queued"))
                .await
            {
                tracing::warn!(event_id = %event.id, pipeline, error = %e, "replay queued, but not recorded in the event's history");
            }
        }
        Ok(Replayed::Queued {
            delivery_id: i64::try_from(retry_seq).unwrap_or(i64::MAX),
        })
    }
}

/// An event's message in the events stream.
struct Located {
    seq: u64,
    subject: String,
    event: Event,
}

fn millis(m: &StreamMessage) -> i64 {
    i64::try_from(m.time.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Unix milliseconds in a UUIDv7 event id.
fn id_time(id: &str) -> Option<i64> {
    let uuid = uuid::Uuid::parse_str(id).ok()?;
    let (secs, nanos) = uuid.get_timestamp()?.to_unix();
    i64::try_from(secs)
        .ok()?
        .checked_mul(1000)?
        .checked_add(i64::from(nanos / 1_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_carry_their_time() {
        let before = Timestamp::now().as_millisecond();
        let id = uuid::Uuid::now_v7().to_string();
        let at = id_time(&id).expect("a v7 id");
        assert!((at - before).abs() < 1_000, "{at} vs {before}");
        assert_eq!(id_time("not-an-id"), None);
        assert_eq!(id_time(&uuid::Uuid::nil().to_string()), None);
    }
}
