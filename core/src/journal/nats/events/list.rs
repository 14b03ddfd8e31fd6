//! Listing and searching events: the events stream walked backward by sequence.

use futures::future::join_all;
use hookline_plugin_api::Event;

use super::{Floors, Head};
use crate::journal::nats::history::{History, not_found};
use crate::journal::nats::subjects::token;
use crate::journal::nats::{NatsJournal, err};
use crate::journal::{EventFilter, EventOutcome, EventPage, JournalError};

/// Messages a listing looks at, at most, before it answers with what it found and a cursor
/// (the SQLite journal's budget).
const SCAN_BUDGET: u64 = 10_000;
/// Events whose history a listing reads, at most, when it filters by pipeline or outcome.
const HISTORY_BUDGET: u64 = 1_000;
/// Direct gets in flight at once while walking the stream.
const CHUNK: u64 = 64;
/// Events received this long before `since` end a listing (events are in the stream in the
/// order they arrived, within a clock's difference).
const SINCE_SLACK: i64 = 60_000;

impl NatsJournal {
    pub(in crate::journal::nats) async fn list_events_nats(
        &self,
        filter: EventFilter,
        cursor: Option<String>,
        limit: u64,
    ) -> Result<EventPage, JournalError> {
        self.connected()?;
        let history = self.history()?.clone();
        if let Some(why) = filter.outcome.and_then(no_such_outcome) {
            return Err(JournalError::Invalid(why.into()));
        }
        let below = match cursor.as_deref() {
            None => None,
            Some(c) => Some(c.parse::<u64>().ok().filter(|s| *s > 0).ok_or_else(|| {
                JournalError::Invalid(format!(
                    "`{c}` is not a cursor: pass the `next` of the previous page"
                ))
            })?),
        };
        self.bounded(
            "listing events",
            self.walk(&history, &filter, below, limit.clamp(1, 1000)),
        )
        .await
    }

    async fn walk(
        &self,
        history: &History,
        filter: &EventFilter,
        below: Option<u64>,
        limit: u64,
    ) -> Result<EventPage, JournalError> {
        let state = self
            .inner
            .stream
            .get_info()
            .await
            .map_err(|e| err("stream info", e))?
            .state;
        let first = state.first_sequence.max(1);
        let mut next = below.unwrap_or(state.last_sequence.saturating_add(1));
        let routes = self.inner.work.routes();
        let mut floors = Floors::new();
        let by_outcome = filter.pipeline.is_some() || filter.outcome.is_some();
        let prefix = self.events_prefix();
        let source_token = filter.source.as_deref().map(token);
        let (mut items, mut scanned, mut histories) = (Vec::new(), 0u64, 0u64);
        let mut exhausted = false;
        'walk: while next > first && scanned < SCAN_BUDGET {
            let low = next
                .saturating_sub(CHUNK)
                .max(first)
                .max(next.saturating_sub(SCAN_BUDGET - scanned));
            let seqs: Vec<u64> = (low..next).rev().collect();
            let got = join_all(seqs.iter().map(|s| self.inner.stream.direct_get(*s))).await;
            for (seq, got) in seqs.into_iter().zip(got) {
                scanned += 1;
                next = seq;
                let m = match got {
                    Ok(m) => m,
                    Err(e) if not_found(e.kind()) => continue,
                    Err(e) => return Err(err("read the stream", e)),
                };
                let Some(rest) = m.subject.as_str().strip_prefix(&prefix) else {
                    continue; // a retry message
                };
                if let Some(want) = &source_token
                    && rest.split('.').next() != Some(want.as_str())
                {
                    continue;
                }
                let (head, event) = match &filter.matcher {
                    Some(_) => match serde_json::from_slice::<Event>(&m.payload) {
                        Ok(e) => (Head::from(&e), Some(e)),
                        Err(_) => continue,
                    },
                    None => match serde_json::from_slice::<Head>(&m.payload) {
                        Ok(h) => (h, None),
                        Err(_) => continue,
                    },
                };
                if let Some(since) = filter.since
                    && head.received_at < since
                {
                    if head.received_at.as_millisecond() < since.as_millisecond() - SINCE_SLACK {
                        exhausted = true;
                        break 'walk;
                    }
                    continue;
                }
                if filter.until.is_some_and(|u| head.received_at >= u)
                    || filter.source.as_ref().is_some_and(|s| &head.source != s)
                    || filter
                        .event_type
                        .as_ref()
                        .is_some_and(|t| &head.event_type != t)
                {
                    continue;
                }
                if let (Some(matcher), Some(event)) = (&filter.matcher, &event)
                    && !matcher(event)
                {
                    continue;
                }
                histories += 1;
                let records = history.read(&head.id).await?;
                let summary = self
                    .summarise(routes.as_deref(), &mut floors, head, seq, &records)
                    .await;
                if filter.selects(&summary) {
                    items.push(summary);
                    if items.len() as u64 == limit {
                        break 'walk;
                    }
                }
                if by_outcome && histories >= HISTORY_BUDGET {
                    break 'walk;
                }
            }
        }
        let more = !exhausted && next > first;
        Ok(EventPage {
            items,
            next: more.then(|| next.to_string()),
            scanned,
        })
    }
}

/// Outcomes no event has on NATS, and why (a filter by them is refused rather than
/// answered with an empty list that looks like a search result).
fn no_such_outcome(outcome: EventOutcome) -> Option<&'static str> {
    match outcome {
        EventOutcome::Paused => Some(
            "outcome `paused` cannot be filtered by with the NATS journal: pipelines cannot be paused there (docs/scale-out.md#event-history)",
        ),
        EventOutcome::Finished => Some(
            "outcome `finished` cannot be filtered by with the NATS journal: it marks events the SQLite journal finished before it kept history (docs/scale-out.md#event-history)",
        ),
        _ => None,
    }
}
