//! Hands accepted events to their pipelines, with bounded work in flight.
//!
//! This is the in-memory runner: an event is accepted once it is on its way. The durable
//! journal replaces it, keeping the same shape (accept → run → settle).

use std::sync::Arc;
use std::time::Duration;

use hookline_plugin_api::Event;
use tokio::sync::Semaphore;
use tracing::{debug, error};

use super::{Outcome, Pipeline};

/// Too much work in flight: the caller answers 503 and the sender retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

#[derive(Debug, Clone)]
pub struct Dispatcher {
    permits: Arc<Semaphore>,
    capacity: u32,
}

impl Dispatcher {
    /// `capacity`: most pipeline runs in flight at once.
    pub fn new(capacity: u32) -> Self {
        Dispatcher {
            permits: Arc::new(Semaphore::new(capacity as usize)),
            capacity,
        }
    }

    /// Start `event` on each pipeline, or refuse all of them if there is no room.
    pub fn dispatch(&self, event: Event, pipelines: &[Arc<Pipeline>]) -> Result<(), Busy> {
        if pipelines.is_empty() {
            return Ok(());
        }
        let n = u32::try_from(pipelines.len()).map_err(|_| Busy)?;
        let permits = self
            .permits
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| Busy)?;
        let mut permits = Some(permits);
        for (i, pipeline) in pipelines.iter().enumerate() {
            let permit = if i + 1 == pipelines.len() {
                permits.take()
            } else {
                permits.as_mut().and_then(|p| p.split(1))
            };
            let pipeline = pipeline.clone();
            let event = event.clone();
            tokio::spawn(async move {
                let id = event.id.clone();
                for outcome in pipeline.run(event, 0).await {
                    report(&pipeline, &id, outcome);
                }
                drop(permit);
            });
        }
        Ok(())
    }

    /// Wait until nothing is in flight, up to `timeout`. Returns whether it drained.
    pub async fn drain(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.permits.acquire_many(self.capacity))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Pipeline runs in flight now.
    pub fn in_flight(&self) -> usize {
        self.capacity as usize - self.permits.available_permits()
    }
}

fn report(pipeline: &Pipeline, event_id: &str, outcome: Outcome) {
    match outcome {
        Outcome::Completed => debug!(event_id, pipeline = %pipeline.name, "delivered"),
        Outcome::Dropped { stage } => {
            let stage = pipeline
                .stages
                .get(stage)
                .map(|s| s.name.as_str())
                .unwrap_or("?");
            debug!(event_id, pipeline = %pipeline.name, stage, "dropped by filter");
        }
        Outcome::Failed { stage, error, .. } => {
            let stage_name = pipeline
                .stages
                .get(stage)
                .map(|s| s.name.as_str())
                .unwrap_or("?");
            error!(
                event_id,
                pipeline = %pipeline.name,
                stage = stage_name,
                stage_index = stage,
                retryable = error.is_retryable(),
                error = %error,
                "stage failed"
            );
        }
    }
}
