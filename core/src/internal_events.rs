//! Internal events, in the style of Vector's `internal_events`: each thing that happens to a
//! request, an event or a stage is one type whose `emit` writes its log line and counts its
//! metrics together, so the two never disagree and name things alike — a stage is
//! `stage` = its name and `stage_index` = its position, in logs, metrics and dead letters.
//!
//! The label handles of a source's and a stage's series are resolved once, when the runtime
//! is built ([`SourceTelemetry`], [`StageTelemetry`], [`PluginTelemetry`]): emitting an event
//! hashes no labels, and every series exists (at zero) from the start, so dashboards and
//! `rate()` see a source or stage before its first event. The series themselves are defined
//! in `metrics.rs`.

use std::collections::HashMap;
use std::time::Duration;

use prometheus::{Histogram, IntCounter};
use tracing::{debug, error, info, warn};

use crate::lograte;
use crate::metrics::{OUTCOME_DROPPED, OUTCOME_FAILED, OUTCOME_PASSED, metrics};
use crate::tap::{self, Tapped};

/// A source's series.
#[derive(Debug, Clone)]
pub(crate) struct SourceTelemetry {
    name: String,
    /// `hookline_events_accepted_total` by declared event type; the rest are `other`.
    accepted: HashMap<String, IntCounter>,
    accepted_other: IntCounter,
    duplicates: IntCounter,
    pings: IntCounter,
    /// `hookline_verification_failures_total` by reason.
    failures: Vec<(&'static str, IntCounter)>,
}

impl SourceTelemetry {
    pub(crate) fn new<'a>(name: &str, declared_types: impl IntoIterator<Item = &'a str>) -> Self {
        let m = metrics();
        SourceTelemetry {
            name: name.to_string(),
            accepted: declared_types
                .into_iter()
                .map(|t| {
                    (
                        t.to_string(),
                        m.events_accepted.with_label_values(&[name, t]),
                    )
                })
                .collect(),
            accepted_other: m.events_accepted.with_label_values(&[name, "other"]),
            duplicates: m.duplicates.with_label_values(&[name]),
            pings: m.test_pings.with_label_values(&[name]),
            failures: crate::verify::Rejection::REASONS
                .iter()
                .map(|r| (*r, m.verification_failures.with_label_values(&[name, r])))
                .collect(),
        }
    }
}

/// A request to a source that its verifier refused.
#[derive(Debug)]
pub(crate) struct RequestRejected<'a> {
    pub(crate) source: &'a SourceTelemetry,
    /// One of `Rejection::REASONS`.
    pub(crate) reason: &'static str,
    pub(crate) status: u16,
    /// What the sender is told (never a secret).
    pub(crate) message: &'a crate::verify::Rejection,
}

impl RequestRejected<'_> {
    pub(crate) fn emit(self) {
        let source = &self.source.name;
        match self.source.failures.iter().find(|(r, _)| *r == self.reason) {
            Some((_, c)) => c.inc(),
            None => metrics()
                .verification_failures
                .with_label_values(&[source, self.reason])
                .inc(),
        }
        if self.status == 401 {
            // Worth an operator's attention (a wrong or rotated secret), but never the
            // secret; a flood of them is one line per 10 s.
            if let Some(held_back) = lograte::allow(&format!("rejected:{source}:{}", self.reason)) {
                warn!(source = %source, reason = self.reason, held_back, "rejected: {}", self.message);
            }
        } else {
            debug!(source = %source, reason = self.reason, "rejected: {}", self.message);
        }
    }
}

/// A verified event made durable, routed to `routed` pipelines.
#[derive(Debug)]
pub(crate) struct EventAccepted<'a> {
    pub(crate) source: &'a SourceTelemetry,
    pub(crate) event_id: &'a str,
    pub(crate) event_type: &'a str,
    pub(crate) routed: usize,
}

impl EventAccepted<'_> {
    pub(crate) fn emit(self) {
        match self.source.accepted.get(self.event_type) {
            Some(c) => c.inc(),
            None => self.source.accepted_other.inc(),
        }
        // Debug, not info: one line per event costs more CPU than verifying it
        // (docs/performance.md); `hookline_events_accepted_total` counts them.
        debug!(event_id = %self.event_id, source = %self.source.name, event_type = %self.event_type, routed = self.routed, "accepted");
        if tap::listening() {
            tap::publish(Tapped::Accepted {
                at: jiff::Timestamp::now(),
                event_id: self.event_id.to_string(),
                source: self.source.name.clone(),
                event_type: self.event_type.to_string(),
                routed: self.routed,
            });
        }
    }
}

/// A copy of an event seen within its deduplication window.
#[derive(Debug)]
pub(crate) struct DuplicateReceived<'a> {
    pub(crate) source: &'a SourceTelemetry,
    pub(crate) first_id: &'a str,
}

impl DuplicateReceived<'_> {
    pub(crate) fn emit(self) {
        self.source.duplicates.inc();
        let source = &self.source.name;
        if let Some(held_back) = lograte::allow(&format!("duplicate:{source}")) {
            info!(source = %source, first_id = %self.first_id, held_back, "duplicate delivery; answered with the first event's id");
        }
    }
}

/// A GET or HEAD to a source (LeadShark's "Test webhook" button): answered, not processed.
#[derive(Debug)]
pub(crate) struct TestPingAnswered<'a> {
    pub(crate) source: &'a SourceTelemetry,
}

impl TestPingAnswered<'_> {
    pub(crate) fn emit(self) {
        self.source.pings.inc();
        let source = &self.source.name;
        if let Some(held_back) = lograte::allow(&format!("ping:{source}")) {
            info!(source = %source, held_back, "test ping (GET) answered; nothing processed");
        }
    }
}

/// A request that passed verification but could not be decoded: kept as a dead letter.
#[derive(Debug)]
pub(crate) struct UnprocessableDeadLettered<'a> {
    pub(crate) source: &'a str,
    pub(crate) event_id: &'a str,
    pub(crate) reason: &'a str,
}

impl UnprocessableDeadLettered<'_> {
    pub(crate) fn emit(self) {
        metrics()
            .dead_letters_created
            .with_label_values(&["ingest", "decode"])
            .inc();
        warn!(event_id = %self.event_id, source = %self.source, reason = %self.reason, "authenticated but unprocessable; dead-lettered");
    }
}

/// A source's `respond` body could not be rendered for an accepted event: the default
/// answer was sent (the event is committed all the same).
#[derive(Debug)]
pub(crate) struct ResponseRenderFailed<'a> {
    pub(crate) source: &'a str,
    pub(crate) event_id: &'a str,
    pub(crate) error: &'a str,
}

impl ResponseRenderFailed<'_> {
    pub(crate) fn emit(self) {
        if let Some(held_back) = lograte::allow(&format!("respond:{}", self.source)) {
            warn!(event_id = %self.event_id, source = %self.source, error = %self.error, held_back, "`respond` body could not be rendered; answered with the default");
        }
    }
}

/// A stage's series.
#[derive(Debug, Clone)]
pub(crate) struct StageTelemetry {
    pub(crate) source: String,
    pub(crate) pipeline: String,
    pub(crate) stage: String,
    pub(crate) index: usize,
    passed: IntCounter,
    dropped: IntCounter,
    failed: IntCounter,
    duration: Histogram,
    dead_letters: IntCounter,
    retries: IntCounter,
    /// A sink's attempts.
    attempts: Option<IntCounter>,
}

impl StageTelemetry {
    pub(crate) fn new(source: &str, pipeline: &str, stage: &str, index: usize, sink: bool) -> Self {
        let m = metrics();
        let outcome = |o: &str| m.stage_outcomes.with_label_values(&[pipeline, stage, o]);
        StageTelemetry {
            source: source.to_string(),
            pipeline: pipeline.to_string(),
            stage: stage.to_string(),
            index,
            passed: outcome(OUTCOME_PASSED),
            dropped: outcome(OUTCOME_DROPPED),
            failed: outcome(OUTCOME_FAILED),
            duration: m.stage_duration.with_label_values(&[pipeline, stage]),
            dead_letters: m.dead_letters_created.with_label_values(&[pipeline, stage]),
            retries: m.sink_retries.with_label_values(&[pipeline, stage]),
            attempts: sink.then(|| m.sink_attempts.with_label_values(&[pipeline, stage])),
        }
    }
}

/// How a stage's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StageOutcome {
    /// Handed one or more events on.
    Passed,
    /// Kept nothing (a filter said no, a transform returned nothing).
    Dropped,
    Failed,
}

/// A sink about to deliver.
#[derive(Debug)]
pub(crate) struct SinkAttempted<'a> {
    pub(crate) stage: &'a StageTelemetry,
}

impl SinkAttempted<'_> {
    pub(crate) fn emit(self) {
        if let Some(c) = &self.stage.attempts {
            c.inc();
        }
    }
}

/// A stage ran on an event.
#[derive(Debug)]
pub(crate) struct StageRan<'a> {
    pub(crate) stage: &'a StageTelemetry,
    pub(crate) outcome: StageOutcome,
    pub(crate) elapsed: Duration,
    /// For the live tail: the event's id (given only while [`tap::listening`]) and what
    /// failed.
    pub(crate) tapped: Option<(&'a str, Option<&'a hookline_plugin_api::StageError>)>,
}

impl StageRan<'_> {
    pub(crate) fn emit(self) {
        let s = self.stage;
        if let Some((event_id, error)) = self.tapped {
            tap::publish(Tapped::Stage {
                at: jiff::Timestamp::now(),
                event_id: event_id.to_string(),
                source: s.source.clone(),
                pipeline: s.pipeline.clone(),
                stage: s.index,
                stage_name: s.stage.clone(),
                outcome: match self.outcome {
                    StageOutcome::Passed => "passed",
                    StageOutcome::Dropped => "dropped",
                    StageOutcome::Failed => "failed",
                },
                error: error.map(ToString::to_string),
                duration_us: u64::try_from(self.elapsed.as_micros()).unwrap_or(u64::MAX),
            });
        }
        s.duration.observe(self.elapsed.as_secs_f64());
        match self.outcome {
            StageOutcome::Passed => {
                s.passed.inc();
                if s.attempts.is_some() {
                    debug!(stage = %s.stage, stage_index = s.index, "sink delivered");
                }
            }
            StageOutcome::Dropped => {
                s.dropped.inc();
                debug!(stage = %s.stage, stage_index = s.index, "dropped");
            }
            StageOutcome::Failed => s.failed.inc(),
        }
    }
}

/// A run of a pipeline reached its end on at least one branch.
#[derive(Debug)]
pub(crate) struct Delivered<'a> {
    pub(crate) event_id: &'a str,
    pub(crate) pipeline: &'a str,
}

impl Delivered<'_> {
    pub(crate) fn emit(self) {
        debug!(event_id = %self.event_id, pipeline = %self.pipeline, "delivered");
    }
}

/// A stage failed with a retryable error and has attempts left.
#[derive(Debug)]
pub(crate) struct RetryScheduled<'a> {
    pub(crate) stage: &'a StageTelemetry,
    pub(crate) event_id: &'a str,
    pub(crate) attempts: u32,
    pub(crate) next_attempt_at: &'a jiff::Timestamp,
    pub(crate) error: &'a str,
}

impl RetryScheduled<'_> {
    pub(crate) fn emit(self) {
        let s = self.stage;
        s.retries.inc();
        warn!(
            event_id = %self.event_id,
            pipeline = %s.pipeline,
            stage = %s.stage,
            stage_index = s.index,
            attempts = self.attempts,
            next_attempt_at = %self.next_attempt_at,
            error = %self.error,
            "stage failed; will retry"
        );
    }
}

/// A delivery given up at a stage: its dead letter holds the event.
#[derive(Debug)]
pub(crate) struct DeadLettered<'a> {
    /// The stage's series; `None` when the pipeline or stage no longer exists.
    pub(crate) stage: Option<&'a StageTelemetry>,
    pub(crate) pipeline: &'a str,
    pub(crate) stage_name: &'a str,
    pub(crate) stage_index: usize,
    pub(crate) event_id: &'a str,
    pub(crate) attempts: u32,
    pub(crate) error: &'a str,
}

impl DeadLettered<'_> {
    pub(crate) fn emit(self) {
        match self.stage {
            Some(s) => s.dead_letters.inc(),
            None => metrics()
                .dead_letters_created
                .with_label_values(&[self.pipeline, self.stage_name])
                .inc(),
        }
        error!(
            event_id = %self.event_id,
            pipeline = %self.pipeline,
            stage = %self.stage_name,
            stage_index = self.stage_index,
            attempts = self.attempts,
            error = %self.error,
            "stage failed; dead-lettered"
        );
    }
}

/// A WASM stage's series.
#[derive(Debug, Clone)]
pub(crate) struct PluginTelemetry {
    traps: IntCounter,
    timeouts: IntCounter,
}

impl PluginTelemetry {
    pub(crate) fn new(pipeline: &str, stage: &str) -> Self {
        let m = metrics();
        PluginTelemetry {
            traps: m.wasm_traps.with_label_values(&[pipeline, stage]),
            timeouts: m.wasm_timeouts.with_label_values(&[pipeline, stage]),
        }
    }
}

/// A WASM plugin was stopped; its instance is dropped.
#[derive(Debug)]
pub(crate) struct PluginTrapped<'a> {
    pub(crate) telemetry: &'a PluginTelemetry,
    pub(crate) plugin: &'a str,
    /// Stopped at the stage's `timeout` (counted apart from other traps).
    pub(crate) timeout: bool,
    pub(crate) message: &'a str,
}

impl PluginTrapped<'_> {
    pub(crate) fn emit(self) {
        match self.timeout {
            true => self.telemetry.timeouts.inc(),
            false => self.telemetry.traps.inc(),
        }
        debug!(plugin = %self.plugin, error = %self.message, "plugin instance discarded after a trap");
    }
}

/// A sink's circuit and hold series, resolved once when the stage is built.
#[derive(Debug, Clone)]
pub(crate) struct SinkTelemetry {
    pub(crate) pipeline: String,
    pub(crate) stage: String,
    state: prometheus::IntGauge,
    opened: IntCounter,
    held_circuit: IntCounter,
    held_rate: IntCounter,
    held_concurrency: IntCounter,
}

/// Why a delivery reached a sink and was not attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeldBy {
    Circuit,
    Rate,
    Concurrency,
}

/// The `hookline_sink_circuit_state` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CircuitGauge {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

impl SinkTelemetry {
    pub(crate) fn new(pipeline: &str, stage: &str) -> Self {
        let m = metrics();
        let held = |reason: &str| m.sink_held.with_label_values(&[pipeline, stage, reason]);
        let state = m.circuit_state.with_label_values(&[pipeline, stage]);
        state.set(CircuitGauge::Closed as i64);
        SinkTelemetry {
            pipeline: pipeline.to_string(),
            stage: stage.to_string(),
            state,
            opened: m.circuit_opened.with_label_values(&[pipeline, stage]),
            held_circuit: held("circuit"),
            held_rate: held("rate"),
            held_concurrency: held("concurrency"),
        }
    }

    pub(crate) fn held(&self, by: HeldBy) {
        match by {
            HeldBy::Circuit => &self.held_circuit,
            HeldBy::Rate => &self.held_rate,
            HeldBy::Concurrency => &self.held_concurrency,
        }
        .inc();
    }

    pub(crate) fn circuit(&self, state: CircuitGauge) {
        self.state.set(state as i64);
    }
}

/// A sink's circuit opened: its deliveries wait, without attempts, until a probe succeeds.
#[derive(Debug)]
pub(crate) struct CircuitOpened<'a> {
    pub(crate) sink: &'a SinkTelemetry,
    pub(crate) failures: u32,
    pub(crate) cooldown: Duration,
    pub(crate) error: &'a str,
}

impl CircuitOpened<'_> {
    pub(crate) fn emit(self) {
        let s = self.sink;
        s.opened.inc();
        s.circuit(CircuitGauge::Open);
        warn!(
            pipeline = %s.pipeline,
            stage = %s.stage,
            failures = self.failures,
            cooldown = %humantime::format_duration(self.cooldown),
            error = %self.error,
            "circuit opened: deliveries to this sink wait without attempts until a probe succeeds"
        );
    }
}

/// A probe went through: the circuit closed and the held deliveries run again.
#[derive(Debug)]
pub(crate) struct CircuitClosed<'a> {
    pub(crate) sink: &'a SinkTelemetry,
}

impl CircuitClosed<'_> {
    pub(crate) fn emit(self) {
        let s = self.sink;
        s.circuit(CircuitGauge::Closed);
        info!(pipeline = %s.pipeline, stage = %s.stage, "circuit closed: the probe was delivered; held deliveries resume");
    }
}

/// A pipeline was paused or resumed.
pub(crate) fn pipeline_paused(pipeline: &str, paused: bool) {
    metrics()
        .pipeline_paused
        .with_label_values(&[pipeline])
        .set(i64::from(paused));
}

/// Whether ingest refuses for `reason` (`disk`, `journal_size`, `pending`).
pub(crate) fn ingest_refusing(reason: &str, refusing: bool) {
    metrics()
        .ingest_refusing
        .with_label_values(&[reason])
        .set(i64::from(refusing));
}

/// The SQLite journal's deduplication keys in memory: how many, and their table's bytes.
pub(crate) fn journal_dedupe(keys: usize, bytes: usize) {
    let m = metrics();
    m.journal_dedupe_keys
        .set(i64::try_from(keys).unwrap_or(i64::MAX));
    m.journal_dedupe_bytes
        .set(i64::try_from(bytes).unwrap_or(i64::MAX));
}

pub(crate) fn journal_disk_free(bytes: u64) {
    metrics()
        .journal_disk_free
        .set(i64::try_from(bytes).unwrap_or(i64::MAX));
}
