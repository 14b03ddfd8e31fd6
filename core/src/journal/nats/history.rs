//! Event history on JetStream: the stream `<stream>_history`, one subject per event
//! (`<prefix>.history.<event id>`), one message per record. Workers record each run's
//! attempt when they settle it (before the run's message is acknowledged); a replay records
//! that it queued the event. The stream has the events stream's `max_age`, so `retain`
//! prunes an event's history with the event.
//!
//! A record also says where the event's messages are — the original's stream sequence and
//! each retry's — so that showing, replaying and erasing an event finds them without
//! scanning the stream.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::err;
use super::subjects::token;
use crate::journal::rules::Standing;
use crate::journal::{Attempt, AttemptResult, JournalError};

/// How long JetStream remembers a record's id, so a settle that is tried again does not
/// record its attempt twice.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// Records read of one event, at most (a delivery that retried for days has many).
const MAX_RECORDS: usize = 1_000;

/// One thing that happened to an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Record {
    /// A run that made an attempt.
    Attempt {
        #[serde(flatten)]
        attempt: Attempt,
        /// Stream sequence of the event as first published.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<u64>,
        /// The retry message the run published (`result = retry`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_seq: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next_attempt_at: Option<Timestamp>,
    },
    /// A replay sent the event into `pipeline` at `stage` (message `retry_seq`).
    Queued {
        pipeline: String,
        stage: usize,
        at: Timestamp,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<u64>,
        retry_seq: u64,
    },
}

impl Record {
    fn pipeline(&self) -> &str {
        match self {
            Record::Attempt { attempt, .. } => &attempt.pipeline,
            Record::Queued { pipeline, .. } => pipeline,
        }
    }

    fn origin(&self) -> Option<u64> {
        match self {
            Record::Attempt { origin, .. } | Record::Queued { origin, .. } => *origin,
        }
    }

    /// Every stream sequence of the events stream this record names.
    pub(crate) fn sequences(&self) -> impl Iterator<Item = u64> {
        let retry = match self {
            Record::Attempt { retry_seq, .. } => *retry_seq,
            Record::Queued { retry_seq, .. } => Some(*retry_seq),
        };
        self.origin().into_iter().chain(retry)
    }
}

/// An event's records, oldest first.
#[derive(Debug, Clone, Default)]
pub(crate) struct Records(pub(crate) Vec<Record>);

impl Records {
    /// The stream sequence of the event as first published, if a record names it.
    pub(crate) fn origin(&self) -> Option<u64> {
        self.0.iter().find_map(Record::origin)
    }

    pub(crate) fn attempts(&self) -> Vec<Attempt> {
        self.0
            .iter()
            .filter_map(|r| match r {
                Record::Attempt { attempt, .. } => Some(attempt.clone()),
                Record::Queued { .. } => None,
            })
            .collect()
    }

    /// Pipelines named, in the order they first appear.
    pub(crate) fn pipelines(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in &self.0 {
            if !out.iter().any(|p| p == r.pipeline()) {
                out.push(r.pipeline().to_string());
            }
        }
        out
    }

    /// What waits in `pipeline` besides its attempts: a queued replay not run yet, or a
    /// retry scheduled by the last attempt. (A dead letter is the last attempt's `dead`.)
    pub(crate) fn standing(&self, pipeline: &str) -> Option<Standing> {
        match self.0.iter().rev().find(|r| r.pipeline() == pipeline)? {
            Record::Queued { stage, at, .. } => Some(Standing::Waiting {
                stage: *stage,
                stage_name: None,
                error: None,
                hold: None,
                next_attempt_at: Some(*at),
            }),
            Record::Attempt {
                attempt,
                next_attempt_at,
                ..
            } if attempt.result == AttemptResult::Retry => Some(Standing::Waiting {
                stage: attempt.stage,
                stage_name: Some(attempt.stage_name.clone()),
                error: attempt.error.clone(),
                hold: None,
                next_attempt_at: *next_attempt_at,
            }),
            Record::Attempt { .. } => None,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct History {
    stream: stream::Stream,
    api: jetstream::Context,
    prefix: String,
}

impl History {
    pub(crate) fn stream_name(events_stream: &str) -> String {
        format!("{events_stream}_history")
    }

    /// Create or update the history stream (`serve`).
    pub(crate) async fn provision(
        api: &jetstream::Context,
        events_stream: &str,
        prefix: &str,
        replicas: usize,
        retain: Duration,
    ) -> Result<Self, JournalError> {
        let name = Self::stream_name(events_stream);
        api.create_or_update_stream(stream::Config {
            name: name.clone(),
            description: Some("Hookline: event history (attempts and replays)".into()),
            subjects: vec![format!("{prefix}.history.>")],
            retention: stream::RetentionPolicy::Limits,
            max_age: retain,
            duplicate_window: DUPLICATE_WINDOW.min(retain),
            num_replicas: replicas,
            storage: stream::StorageType::File,
            allow_direct: true,
            ..Default::default()
        })
        .await
        .map_err(|e| err(&format!("cannot create the stream `{name}`"), e))?;
        let stream = api
            .get_stream(&name)
            .await
            .map_err(|e| err(&format!("cannot open the stream `{name}`"), e))?;
        Ok(History {
            stream,
            api: api.clone(),
            prefix: prefix.to_string(),
        })
    }

    /// The history stream `serve` created; `None` if there is none (a `serve` older than
    /// event history on NATS made this deployment).
    pub(crate) async fn open(
        api: &jetstream::Context,
        events_stream: &str,
        prefix: &str,
    ) -> Option<Self> {
        let stream = api
            .get_stream(Self::stream_name(events_stream))
            .await
            .ok()?;
        Some(History {
            stream,
            api: api.clone(),
            prefix: prefix.to_string(),
        })
    }

    fn subject(&self, event_id: &str) -> String {
        format!("{}.history.{}", self.prefix, token(event_id))
    }

    /// Append a record to an event's history; `msg_id` makes a repeated append a no-op.
    pub(crate) async fn append(
        &self,
        event_id: &str,
        record: &Record,
        msg_id: &str,
    ) -> Result<(), JournalError> {
        let body = serde_json::to_vec(record).map_err(|e| err("encode history record", e))?;
        let publish = jetstream::message::PublishMessage::build()
            .payload(body.into())
            .message_id(msg_id);
        self.api
            .send_publish(self.subject(event_id), publish)
            .await
            .map_err(|e| err("record history", e))?
            .await
            .map_err(|e| err("record history ack", e))?;
        Ok(())
    }

    /// An event's records, oldest first (one direct get each, from any replica).
    pub(crate) async fn read(&self, event_id: &str) -> Result<Records, JournalError> {
        let subject = self.subject(event_id);
        let mut out = Vec::new();
        let mut from = 1u64;
        while out.len() < MAX_RECORDS {
            let m = match self
                .stream
                .direct_get_next_for_subject(subject.as_str(), Some(from))
                .await
            {
                Ok(m) => m,
                Err(e) if not_found(e.kind()) => break,
                Err(e) => return Err(err("read history", e)),
            };
            from = m.sequence + 1;
            match serde_json::from_slice::<Record>(&m.payload) {
                Ok(r) => out.push(r),
                Err(e) => {
                    tracing::warn!(event_id, sequence = m.sequence, error = %e, "skipping a history record that cannot be read")
                }
            }
        }
        Ok(Records(out))
    }

    /// Remove an event's history outright.
    pub(crate) async fn erase(&self, event_id: &str) -> Result<u64, JournalError> {
        let purged = self
            .stream
            .purge()
            .filter(self.subject(event_id))
            .await
            .map_err(|e| err("erase history", e))?;
        Ok(purged.purged)
    }
}

/// A direct get that found no message (none at that sequence, or none left on a subject).
pub(crate) fn not_found(kind: async_nats::jetstream::stream::DirectGetErrorKind) -> bool {
    use async_nats::jetstream::stream::DirectGetErrorKind;
    match kind {
        DirectGetErrorKind::NotFound => true,
        DirectGetErrorKind::ErrorResponse(status, _) => status.as_u16() == 404,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::EventOutcome;
    use crate::journal::rules::pipeline_state;

    fn attempt(pipeline: &str, stage: usize, result: AttemptResult, at: i64) -> Attempt {
        Attempt {
            event_id: "e".into(),
            pipeline: pipeline.into(),
            stage,
            stage_name: "http".into(),
            at: Timestamp::from_second(at).expect("time"),
            duration_us: 5,
            result,
            error: None,
        }
    }

    fn recorded(a: Attempt, retry_seq: Option<u64>) -> Record {
        Record::Attempt {
            next_attempt_at: retry_seq.map(|_| Timestamp::from_second(99).expect("time")),
            attempt: a,
            origin: Some(7),
            retry_seq,
        }
    }

    #[test]
    fn records_round_trip_with_their_kind() {
        let r = recorded(attempt("crm", 1, AttemptResult::Retry, 5), Some(9));
        let json = serde_json::to_value(&r).expect("json");
        assert_eq!(json["kind"], "attempt");
        assert_eq!(json["result"], "retry");
        let back: Record = serde_json::from_value(json).expect("parse");
        assert_eq!(back, r);
        let q = Record::Queued {
            pipeline: "crm".into(),
            stage: 0,
            at: Timestamp::from_second(3).expect("time"),
            origin: Some(7),
            retry_seq: 11,
        };
        let back: Record =
            serde_json::from_slice(&serde_json::to_vec(&q).expect("json")).expect("parse");
        assert_eq!(back, q);
        assert_eq!(back.sequences().collect::<Vec<_>>(), [7, 11]);
    }

    /// The outcome follows from the records through the rule the SQLite journal uses.
    #[test]
    fn outcomes_follow_from_the_records() {
        let state = |records: &Records, p: &str| {
            let attempts = records.attempts();
            let tried: Vec<&Attempt> = attempts.iter().filter(|a| a.pipeline == p).collect();
            pipeline_state(p, records.standing(p), &tried, true)
        };
        let mut records = Records(vec![
            recorded(attempt("crm", 1, AttemptResult::Retry, 1), Some(8)),
            recorded(attempt("archive", 0, AttemptResult::Delivered, 1), None),
        ]);
        let crm = state(&records, "crm");
        assert_eq!(crm.outcome, EventOutcome::Retrying);
        assert!(crm.next_attempt_at.is_some());
        assert_eq!(state(&records, "archive").outcome, EventOutcome::Delivered);
        assert_eq!(state(&records, "new").outcome, EventOutcome::InFlight);
        records
            .0
            .push(recorded(attempt("crm", 1, AttemptResult::Dead, 2), None));
        let crm = state(&records, "crm");
        assert_eq!((crm.outcome, crm.attempts), (EventOutcome::DeadLettered, 2));
        records.0.push(Record::Queued {
            pipeline: "crm".into(),
            stage: 1,
            at: Timestamp::from_second(3).expect("time"),
            origin: Some(7),
            retry_seq: 12,
        });
        assert_eq!(state(&records, "crm").outcome, EventOutcome::Retrying);
        assert_eq!(records.origin(), Some(7));
        assert_eq!(records.pipelines(), ["crm", "archive"]);
    }
}
