//! The live tail: what happens to events as it happens — each event accepted, each stage's
//! outcome — for whoever listens (`GET /api/v1/tail`, `hookline tail`), like `vector tap`.
//!
//! Publishing never waits and costs one atomic load while nobody listens: the internal
//! events ([`crate::internal_events`]) build a [`Tapped`] only when [`listening`] says so.
//! Listeners read from a ring of [`CAPACITY`] entries; one that falls behind (a slow
//! client) skips what was overwritten and is told how much, and the flow never slows.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use jiff::Timestamp;
use serde::Serialize;
use tokio::sync::broadcast;

/// Entries kept for listeners that fall behind.
pub(crate) const CAPACITY: usize = 4096;

/// Something that happened, as a listener reads it.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Tapped {
    /// An event was journaled (its 2xx is on its way) and routed.
    Accepted {
        at: Timestamp,
        event_id: String,
        source: String,
        #[serde(rename = "type")]
        event_type: String,
        /// Pipelines it was routed to.
        routed: usize,
    },
    /// A stage ran on an event.
    Stage {
        at: Timestamp,
        event_id: String,
        source: String,
        pipeline: String,
        stage: usize,
        stage_name: String,
        /// `passed`, `dropped` or `failed`.
        outcome: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        duration_us: u64,
    },
}

impl Tapped {
    pub(crate) fn source(&self) -> &str {
        match self {
            Tapped::Accepted { source, .. } | Tapped::Stage { source, .. } => source,
        }
    }

    /// The pipeline and stage name, for a stage's outcome.
    pub(crate) fn stage(&self) -> Option<(&str, &str)> {
        match self {
            Tapped::Accepted { .. } => None,
            Tapped::Stage {
                pipeline,
                stage_name,
                ..
            } => Some((pipeline, stage_name)),
        }
    }
}

struct Hub {
    tx: broadcast::Sender<Arc<Tapped>>,
    listeners: AtomicUsize,
}

fn hub() -> &'static Hub {
    static HUB: OnceLock<Hub> = OnceLock::new();
    HUB.get_or_init(|| Hub {
        tx: broadcast::channel(CAPACITY).0,
        listeners: AtomicUsize::new(0),
    })
}

/// Whether anyone listens: the only cost of the tail while nobody does.
pub(crate) fn listening() -> bool {
    hub().listeners.load(Ordering::Relaxed) > 0
}

/// Hand `tapped` to the listeners (never waits).
pub(crate) fn publish(tapped: Tapped) {
    let _ = hub().tx.send(Arc::new(tapped));
}

/// A listener; counted while it lives.
pub(crate) struct Listener {
    pub(crate) rx: broadcast::Receiver<Arc<Tapped>>,
}

impl Listener {
    pub(crate) fn new() -> Self {
        let hub = hub();
        hub.listeners.fetch_add(1, Ordering::Relaxed);
        Listener {
            rx: hub.tx.subscribe(),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        hub().listeners.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(n: usize) -> Tapped {
        Tapped::Stage {
            at: Timestamp::now(),
            event_id: format!("e{n}"),
            source: "s".into(),
            pipeline: "p".into(),
            stage: 0,
            stage_name: "file".into(),
            outcome: "passed",
            error: None,
            duration_us: 1,
        }
    }

    #[tokio::test]
    async fn a_listener_that_falls_behind_skips_and_never_blocks_the_publisher() {
        let mut slow = Listener::new();
        assert!(listening());
        // Far more than the ring holds: publishing never waits for the listener.
        for n in 0..CAPACITY * 3 {
            publish(stage(n));
        }
        match slow.rx.recv().await {
            Err(broadcast::error::RecvError::Lagged(skipped)) => {
                assert!(skipped >= (CAPACITY * 2) as u64, "{skipped}")
            }
            other => panic!("expected a lag, got {other:?}"),
        }
        // It then reads on from the oldest entry still kept.
        assert!(slow.rx.recv().await.is_ok());
        drop(slow);
    }
}
