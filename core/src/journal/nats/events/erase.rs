//! Erasure: an event's messages, history and dead letters, unless its first run may be
//! under way.

use std::collections::HashSet;

use futures::StreamExt;

use super::Located;
use crate::journal::nats::history::Record;
use crate::journal::nats::subjects;
use crate::journal::nats::{NatsJournal, err};
use crate::journal::{Erased, JournalError};

impl NatsJournal {
    pub(in crate::journal::nats) async fn erase_events_nats(
        &self,
        ids: Vec<String>,
    ) -> Result<Erased, JournalError> {
        self.connected()?;
        let history = self.history()?.clone();
        let positions = self.positions().await?;
        let mut out = Erased::default();
        let mut erased: HashSet<&str> = HashSet::new();
        for id in &ids {
            let records = history.read(id).await?;
            let located = self
                .bounded("finding the event", self.locate(id, &records))
                .await?;
            if let Some(l) = &located
                && positions.iter().any(|p| p.running(l))
            {
                out.busy += 1;
                continue;
            }
            let mut seqs: Vec<u64> = records.0.iter().flat_map(Record::sequences).collect();
            seqs.extend(located.as_ref().map(|l| l.seq));
            seqs.sort_unstable();
            seqs.dedup();
            for seq in seqs {
                match self.inner.stream.delete_message(seq).await {
                    Ok(_) => {}
                    // Gone already (pruned, or erased before).
                    Err(e) if e.to_string().contains("no message found") => {}
                    Err(e) => return Err(err(&format!("erase message {seq}"), e)),
                }
            }
            let purged = history.erase(id).await?;
            if located.is_some() || purged > 0 {
                out.events += 1;
            }
            erased.insert(id.as_str());
        }
        let letters = self
            .inner
            .dead
            .all_ids(|l| erased.contains(l.event_id.as_str()))
            .await?;
        out.dead_letters = self.inner.dead.purge(&letters).await?;
        Ok(out)
    }

    /// Where every pipeline's events consumer stands, read once per erasure.
    async fn positions(&self) -> Result<Vec<Position>, JournalError> {
        let mut out = Vec::new();
        let mut list = self.inner.stream.consumers();
        while let Some(info) = list.next().await {
            let info = info.map_err(|e| err("list consumers", e))?;
            if !info.name.starts_with("events-") {
                continue;
            }
            let mut filters = info.config.filter_subjects.clone();
            if !info.config.filter_subject.is_empty() {
                filters.push(info.config.filter_subject.clone());
            }
            out.push(Position {
                filters,
                floor: info.ack_floor.stream_sequence,
                delivered: info.delivered.stream_sequence,
            });
        }
        Ok(out)
    }
}

/// A pipeline's events consumer: what it takes, everything acknowledged up to `floor`, and
/// the last message handed to a worker.
struct Position {
    filters: Vec<String>,
    floor: u64,
    delivered: u64,
}

impl Position {
    /// Whether the event may be in its first run here right now: handed out, and not every
    /// message up to it acknowledged. (A run of a retry cannot be told from a retry that
    /// waits for its time; erasure does not wait for those.)
    fn running(&self, l: &Located) -> bool {
        self.floor < l.seq
            && l.seq <= self.delivered
            && (self.filters.is_empty()
                || self
                    .filters
                    .iter()
                    .any(|f| subjects::subject_matches(f, &l.subject)))
    }
}
