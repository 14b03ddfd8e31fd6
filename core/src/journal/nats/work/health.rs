//! Whether each consumer can be pulled from. A pull that gets no answer, a connection that
//! is down, a consumer whose leader is gone: every failed pull starts (or extends) an
//! episode; the first pull answered ends it. The state feeds the metrics
//! (`hookline_consumer_pulling`, `hookline_consumer_last_pull_timestamp_seconds`), `/readyz`
//! (not ready once an episode is older than `stalled_after`) and the log (one line when an
//! episode starts, one when it passes `stalled_after`, one when it ends).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use prometheus::IntGauge;
use tracing::{error, info, warn};

use crate::metrics;

/// The longest wait between pulls of a consumer that keeps failing.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The first wait after a failed pull.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// One consumer's pull state.
#[derive(Debug)]
pub(super) struct Health {
    pipeline: String,
    /// `events` or `retry`.
    consumer: &'static str,
    pulling: IntGauge,
    last_pull: IntGauge,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// When the current episode of failed pulls began; `None` while pulls are answered.
    failing_since: Option<Instant>,
    /// Failed pulls in this episode (for the backoff).
    failures: u32,
    /// No pull before this (backoff).
    next_try: Option<Instant>,
    /// This episode has been logged as stalled.
    stalled_logged: bool,
}

impl Health {
    pub(super) fn new(pipeline: &str, consumer: &'static str) -> Health {
        let (pulling, last_pull) = metrics::consumer_pull_gauges(pipeline, consumer);
        pulling.set(1);
        Health {
            pipeline: pipeline.to_string(),
            consumer,
            pulling,
            last_pull,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a pull may be tried now (not backing off after failures).
    pub(super) fn due(&self, now: Instant) -> bool {
        self.lock().next_try.is_none_or(|t| now >= t)
    }

    /// Whether the last pull failed.
    pub(super) fn failing(&self) -> bool {
        self.lock().failing_since.is_some()
    }

    /// A pull was answered (with messages or without).
    pub(super) fn answered(&self) {
        self.last_pull.set(Timestamp::now().as_second());
        let mut s = self.lock();
        if let Some(since) = s.failing_since.take() {
            info!(
                pipeline = %self.pipeline,
                consumer = self.consumer,
                after_secs = format!("{:.1}", since.elapsed().as_secs_f64()),
                "NATS consumer answering again; pulling resumed"
            );
            self.pulling.set(1);
        }
        *s = State::default();
    }

    /// A pull failed (no answer in time, not connected, an error from the server).
    pub(super) fn failed(&self, why: &str) {
        let now = Instant::now();
        let mut s = self.lock();
        if s.failing_since.is_none() {
            warn!(
                pipeline = %self.pipeline,
                consumer = self.consumer,
                error = why,
                "cannot pull from the NATS consumer; retrying with backoff"
            );
            s.failing_since = Some(now);
            self.pulling.set(0);
        }
        let backoff = FIRST_BACKOFF
            .saturating_mul(1u32 << s.failures.min(10))
            .min(MAX_BACKOFF);
        s.failures = s.failures.saturating_add(1);
        s.next_try = Some(now + backoff);
    }

    /// Why this consumer counts as stalled (failing for longer than `after`), logged once
    /// per episode; `None` when it is pulling or has failed for less.
    pub(super) fn stalled(&self, after: Duration) -> Option<String> {
        let mut s = self.lock();
        let since = s.failing_since?;
        let for_ = since.elapsed();
        if for_ < after {
            return None;
        }
        let why = format!(
            "pipeline `{}`: its `{}` consumer has not been pulled from for {:.0}s",
            self.pipeline,
            self.consumer,
            for_.as_secs_f64()
        );
        if !s.stalled_logged {
            s.stalled_logged = true;
            error!(
                pipeline = %self.pipeline,
                consumer = self.consumer,
                "NATS consumer stalled: no pull answered for longer than `stalled_after`; /readyz reports not ready until it is"
            );
        }
        Some(why)
    }

    /// The consumer left the config: drop its series.
    pub(super) fn retire(&self) {
        metrics::forget_consumer(&self.pipeline, self.consumer);
    }
}
