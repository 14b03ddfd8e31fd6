//! The consumers of each pipeline: created or updated to match the running config (at
//! start, and within a second of a reload), and their counts read for consumer lag,
//! `/readyz` and backpressure.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::context::ConsumerInfoErrorKind;

use super::{Consumers, Health, Pull, Work};
use crate::journal::JournalError;
use crate::journal::Routes;
use crate::journal::nats::err;
use crate::journal::nats::subjects::{events_consumer, retry_consumer};
use crate::metrics;

impl Work {
    /// The subject label of an event type: declared by its source, or `other`.
    pub(crate) fn type_label(&self, source: &str, event_type: &str) -> String {
        self.routes
            .get()
            .and_then(|r| {
                r.current()
                    .type_label(source, event_type)
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "other".into())
    }

    /// Create or update the consumers of every configured pipeline.
    pub(super) async fn sync(&self, routes: &dyn Routes) -> Result<(), JournalError> {
        let routes = routes.routes();
        let mut list = Vec::new();
        for p in &routes {
            let filters = self.subjects.pipeline_filters(p.source, p.events);
            let (filter_subject, filter_subjects) = match filters.as_slice() {
                [one] => (one.clone(), Vec::new()),
                _ => (String::new(), filters),
            };
            let events = self
                .ensure(pull::Config {
                    durable_name: Some(events_consumer(p.name)),
                    description: Some(format!("hookline pipeline {}: events", p.name)),
                    // Events published before the pipeline existed are not its events (as
                    // with the SQLite journal, routing happens when an event arrives).
                    deliver_policy: DeliverPolicy::New,
                    filter_subject,
                    filter_subjects,
                    ..self.consumer_defaults()
                })
                .await?;
            let retry = self
                .ensure(pull::Config {
                    durable_name: Some(retry_consumer(p.name)),
                    description: Some(format!("hookline pipeline {}: retries and replays", p.name)),
                    deliver_policy: DeliverPolicy::All,
                    filter_subject: self.subjects.retry(p.name),
                    ..self.consumer_defaults()
                })
                .await?;
            list.push(Arc::new(Consumers {
                pipeline: p.name.to_string(),
                events: Pull {
                    consumer: events,
                    health: self.health_of(p.name, "events"),
                },
                retry: Pull {
                    consumer: retry,
                    health: self.health_of(p.name, "retry"),
                },
            }));
        }
        self.consumers.store(Arc::new(list));
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        health.retain(|(pipeline, _), h| {
            let keep = routes.iter().any(|p| p.name == pipeline);
            if !keep {
                h.retire();
            }
            keep
        });
        Ok(())
    }

    /// The pull state of one consumer: the same across reloads.
    fn health_of(&self, pipeline: &str, consumer: &'static str) -> Arc<Health> {
        self.health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((pipeline.to_string(), consumer))
            .or_insert_with(|| Arc::new(Health::new(pipeline, consumer)))
            .clone()
    }

    fn consumer_defaults(&self) -> pull::Config {
        pull::Config {
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            // Attempts are counted by the stage's retry policy, not by JetStream.
            max_deliver: -1,
            max_ack_pending: self.max_ack_pending,
            ..Default::default()
        }
    }

    async fn ensure(&self, config: pull::Config) -> Result<PullConsumer, JournalError> {
        let name = config.durable_name.clone().unwrap_or_default();
        self.stream
            .create_consumer(config)
            .await
            .map_err(|e| err(&format!("cannot create the consumer `{name}`"), e))
    }

    pub(crate) async fn has_retry_consumer(&self, pipeline: &str) -> Result<bool, JournalError> {
        match self.stream.consumer_info(retry_consumer(pipeline)).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => Ok(false),
            Err(e) => Err(err("consumer info", e)),
        }
    }

    /// Read every consumer's counts: update consumer lag and the pending total.
    pub(crate) async fn refresh(&self) -> Result<u64, JournalError> {
        let list = self.consumers.load_full();
        let mut total = 0u64;
        for c in list.iter() {
            let events = c
                .events
                .consumer
                .get_info()
                .await
                .map_err(|e| err("consumer info", e))?;
            let retry = c
                .retry
                .consumer
                .get_info()
                .await
                .map_err(|e| err("consumer info", e))?;
            metrics::consumer_lag(&c.pipeline, events.num_pending + retry.num_pending);
            total += events.num_pending
                + retry.num_pending
                + events.num_ack_pending as u64
                + retry.num_ack_pending as u64;
        }
        self.pending.store(total, Ordering::Relaxed);
        Ok(total)
    }
}
