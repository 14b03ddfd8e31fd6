//! Dead letters in a JetStream key-value bucket, one entry per letter (key = its id,
//! value = the letter as JSON). A bucket rather than a stream of letters because a letter
//! changes state (`dead` → `replayed`, with a compare-and-set on its revision so two replays
//! cannot both win) and is purged one by one. Purging removes the key's messages outright,
//! so the bucket holds exactly the letters that exist.
//!
//! Listing reads every letter (one ordered consumer over the bucket, latest value per key)
//! and filters in memory: dead letters are meant to be few and short-lived.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv};
use futures::StreamExt;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::err;
use crate::journal::{
    DeadLetter, DeadLetterFilter, JournalError, LetterState, NewDeadLetter, Page,
};

/// How long reading the whole bucket may take.
const SCAN_TIMEOUT: Duration = Duration::from_secs(30);

/// A letter as stored: the API's shape plus where the original event is in the stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Stored {
    #[serde(flatten)]
    pub(crate) letter: DeadLetter,
    /// Stream sequence of the event as first published (for `--from-start`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) origin_seq: Option<u64>,
}

#[derive(Debug)]
pub(crate) struct DeadLetters {
    kv: kv::Store,
    client: async_nats::Client,
}

/// Keys the bucket accepts; anything else (from a URL, say) cannot name a letter.
fn valid_key(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && !id.ends_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '='))
}

impl DeadLetters {
    pub(crate) async fn provision(
        js: &jetstream::Context,
        bucket: &str,
        replicas: usize,
    ) -> Result<Self, JournalError> {
        let kv = match js.get_key_value(bucket).await {
            Ok(kv) => kv,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: bucket.to_string(),
                    description: "Hookline dead letters".into(),
                    history: 1,
                    num_replicas: replicas,
                    storage: jetstream::stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(|e| err(&format!("cannot create the bucket `{bucket}`"), e))?,
        };
        Ok(DeadLetters {
            kv,
            client: js.client(),
        })
    }

    pub(crate) async fn open(js: &jetstream::Context, bucket: &str) -> Result<Self, JournalError> {
        let kv = js.get_key_value(bucket).await.map_err(|e| {
            err(
                &format!(
                    "no dead-letter bucket `{bucket}` on NATS (has `hookline serve` run with this config?)"
                ),
                e,
            )
        })?;
        Ok(DeadLetters {
            kv,
            client: js.client(),
        })
    }

    /// Write a new letter under `id` (idempotent: the same id writes the same letter).
    pub(crate) async fn insert(
        &self,
        id: &str,
        l: &NewDeadLetter,
        origin_seq: Option<u64>,
    ) -> Result<(), JournalError> {
        let stored = Stored {
            letter: DeadLetter {
                id: id.to_string(),
                event_id: l.event_id.clone(),
                source: l.source.clone(),
                pipeline: l.pipeline.clone(),
                stage_index: l.stage_index,
                stage_name: l.stage_name.clone(),
                error: l.error.clone(),
                attempts: l.attempts,
                first_failed_at: l.first_failed_at,
                last_failed_at: l.last_failed_at,
                created_at: Timestamp::now(),
                state: LetterState::Dead,
                replayed_at: None,
                event: l.event.clone(),
                raw: l
                    .raw
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned()),
            },
            origin_seq,
        };
        let value = serde_json::to_vec(&stored).map_err(|e| err("encode dead letter", e))?;
        self.kv
            .put(id, value.into())
            .await
            .map_err(|e| err("store dead letter", e))?;
        Ok(())
    }

    /// A letter and its revision.
    pub(crate) async fn get(&self, id: &str) -> Result<Option<(Stored, u64)>, JournalError> {
        if !valid_key(id) {
            return Ok(None);
        }
        let entry = self
            .kv
            .entry(id)
            .await
            .map_err(|e| err("read dead letter", e))?;
        match entry {
            Some(e) if e.operation == kv::Operation::Put => {
                let stored = serde_json::from_slice(&e.value)
                    .map_err(|e| JournalError::Corrupt(format!("dead letter {id}: {e}")))?;
                Ok(Some((stored, e.revision)))
            }
            _ => Ok(None),
        }
    }

    /// Mark replayed, unless someone changed the letter since `revision`.
    pub(crate) async fn mark_replayed(
        &self,
        id: &str,
        mut stored: Stored,
        revision: u64,
    ) -> Result<(), JournalError> {
        stored.letter.state = LetterState::Replayed;
        stored.letter.replayed_at = Some(Timestamp::now());
        let value = serde_json::to_vec(&stored).map_err(|e| err("encode dead letter", e))?;
        self.kv
            .update(id, value.into(), revision)
            .await
            .map_err(|e| err("mark dead letter replayed", e))?;
        Ok(())
    }

    /// Every letter (latest value of every key).
    async fn scan(&self) -> Result<Vec<Stored>, JournalError> {
        tokio::time::timeout(SCAN_TIMEOUT, self.scan_inner())
            .await
            .map_err(|_| JournalError::Nats("reading the dead letters timed out".into()))?
    }

    async fn scan_inner(&self) -> Result<Vec<Stored>, JournalError> {
        let consumer = self
            .kv
            .stream
            .create_consumer(consumer::push::OrderedConfig {
                deliver_subject: self.client.new_inbox(),
                description: Some("hookline dead-letter scan".into()),
                filter_subject: format!("{}>", self.kv.prefix),
                deliver_policy: consumer::DeliverPolicy::LastPerSubject,
                replay_policy: consumer::ReplayPolicy::Instant,
                ..Default::default()
            })
            .await
            .map_err(|e| err("scan dead letters", e))?;
        let mut out = Vec::new();
        if consumer.cached_info().num_pending == 0 {
            return Ok(out);
        }
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| err("scan dead letters", e))?;
        while let Some(message) = messages.next().await {
            let message = message.map_err(|e| err("scan dead letters", e))?;
            let pending = message.info().map(|i| i.pending).unwrap_or(0);
            let is_put = message
                .headers
                .as_ref()
                .and_then(|h| h.get("KV-Operation"))
                .is_none();
            if is_put {
                match serde_json::from_slice::<Stored>(&message.payload) {
                    Ok(s) => out.push(s),
                    Err(e) => {
                        tracing::warn!(subject = %message.subject, error = %e, "skipping a dead letter that cannot be read")
                    }
                }
            }
            if pending == 0 {
                break;
            }
        }
        Ok(out)
    }

    pub(crate) async fn list(
        &self,
        filter: &DeadLetterFilter,
        offset: u64,
        limit: u64,
    ) -> Result<Page<DeadLetter>, JournalError> {
        let mut all: Vec<DeadLetter> = self
            .scan()
            .await?
            .into_iter()
            .map(|s| s.letter)
            .filter(|l| filter.matches(l))
            .map(|mut l| {
                if filter.summaries {
                    if let Some(e) = &mut l.event {
                        e.payload = serde_json::Value::Null;
                        e.headers.clear();
                    }
                    l.raw = l.raw.map(|_| String::new());
                }
                l
            })
            .collect();
        all.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        let total = all.len() as u64;
        let items = all
            .into_iter()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .collect();
        Ok(Page {
            items,
            total,
            offset,
            limit,
        })
    }

    /// Ids matching a filter, oldest first.
    pub(crate) async fn ids(&self, filter: &DeadLetterFilter) -> Result<Vec<String>, JournalError> {
        let mut all: Vec<DeadLetter> = self
            .scan()
            .await?
            .into_iter()
            .map(|s| s.letter)
            .filter(|l| filter.matches(l))
            .collect();
        all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(all.into_iter().map(|l| l.id).collect())
    }

    /// Ids of every letter, replayed or not, that `keep` selects.
    pub(crate) async fn all_ids(
        &self,
        keep: impl Fn(&DeadLetter) -> bool,
    ) -> Result<Vec<String>, JournalError> {
        Ok(self
            .scan()
            .await?
            .into_iter()
            .filter(|s| keep(&s.letter))
            .map(|s| s.letter.id)
            .collect())
    }

    pub(crate) async fn count_dead(&self) -> Result<u64, JournalError> {
        Ok(self
            .scan()
            .await?
            .iter()
            .filter(|s| s.letter.state == LetterState::Dead)
            .count() as u64)
    }

    /// Remove letters outright (no delete marker stays behind).
    pub(crate) async fn purge(&self, ids: &[String]) -> Result<u64, JournalError> {
        let mut n = 0;
        for id in ids {
            if self.get(id).await?.is_none() {
                continue;
            }
            self.kv
                .stream
                .purge()
                .filter(format!("{}{id}", self.kv.prefix))
                .await
                .map_err(|e| err("purge dead letter", e))?;
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::rules::tests::letter;

    #[test]
    fn only_bucket_keys_can_name_a_letter() {
        assert!(valid_key("01927b4e-7c1a-7d3e-9f00-0123456789ab"));
        for bad in ["", "a b", "a.*", ">", "../x", ".x", "x.", &"a".repeat(200)] {
            assert!(!valid_key(bad), "{bad}");
        }
    }

    #[test]
    fn stored_letters_round_trip() {
        let s = Stored {
            letter: letter("dead", Some((0, "file")), "e", 5),
            origin_seq: Some(7),
        };
        let back: Stored =
            serde_json::from_slice(&serde_json::to_vec(&s).expect("json")).expect("parse");
        assert_eq!(back.origin_seq, Some(7));
        assert_eq!(back.letter.stage_name.as_deref(), Some("file"));
    }
}
