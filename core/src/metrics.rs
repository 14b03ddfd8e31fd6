//! Every metric Hookline exposes, defined in one place, with one small function per thing
//! that happens. Labels come only from names in the config (source, pipeline, stage) and
//! closed sets (status codes, rejection reasons, outcomes, a source's declared event types
//! with everything else counted as `other`) — never from payload values.
//!
//! `docs/metrics.md` lists them all; a test compares that list with a real scrape.

use std::sync::LazyLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The registry and every metric in it.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) requests: IntCounterVec,
    pub(crate) verification_failures: IntCounterVec,
    pub(crate) test_pings: IntCounterVec,
    pub(crate) events_accepted: IntCounterVec,
    pub(crate) duplicates: IntCounterVec,
    pub(crate) stage_outcomes: IntCounterVec,
    pub(crate) stage_duration: HistogramVec,
    pub(crate) sink_attempts: IntCounterVec,
    pub(crate) sink_retries: IntCounterVec,
    pub(crate) dead_letters_created: IntCounterVec,
    pub(crate) dead_letters_replayed: IntCounter,
    pub(crate) dead_letters: IntGauge,
    pub(crate) pending_deliveries: IntGauge,
    pub(crate) journal_commits: IntCounter,
    pub(crate) journal_batch_size: prometheus::Histogram,
    pub(crate) wasm_traps: IntCounterVec,
    pub(crate) wasm_timeouts: IntCounterVec,
    pub(crate) wasm_plugin_counter: IntCounterVec,
    pub(crate) config_reloads: IntCounterVec,
    pub(crate) consumer_lag: IntGaugeVec,
    pub(crate) consumer_pulling: IntGaugeVec,
    pub(crate) consumer_last_pull: IntGaugeVec,
    pub(crate) circuit_state: IntGaugeVec,
    pub(crate) circuit_opened: IntCounterVec,
    pub(crate) sink_held: IntCounterVec,
    pub(crate) pipeline_paused: IntGaugeVec,
    pub(crate) ingest_refusing: IntGaugeVec,
    pub(crate) journal_disk_free: IntGauge,
    pub(crate) journal_dedupe_keys: IntGauge,
    pub(crate) journal_dedupe_bytes: IntGauge,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
    registry
        .register(Box::new(c.clone()))
        .unwrap_or_else(|e| unreachable!("register {name}: {e}"));
    c
}

impl Metrics {
    fn new() -> Metrics {
        let r = Registry::new();
        let reg = |c: Box<dyn prometheus::core::Collector>| {
            r.register(c)
                .unwrap_or_else(|e| unreachable!("register: {e}"));
        };
        let stage_duration = HistogramVec::new(
            HistogramOpts::new(
                "hookline_stage_duration_seconds",
                "Time one stage took for one event, by pipeline and stage.",
            )
            .buckets(vec![
                0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
                30.0,
            ]),
            &["pipeline", "stage"],
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        reg(Box::new(stage_duration.clone()));
        let journal_batch_size = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "hookline_journal_batch_size",
                "Journal operations committed together in one transaction (group commit).",
            )
            .buckets(vec![
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0,
            ]),
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        reg(Box::new(journal_batch_size.clone()));
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).unwrap_or_else(|e| unreachable!("{e}"));
            reg(Box::new(g.clone()));
            g
        };
        let plain = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).unwrap_or_else(|e| unreachable!("{e}"));
            reg(Box::new(c.clone()));
            c
        };
        let build_info = IntGaugeVec::new(
            Opts::new(
                "hookline_build_info",
                "Always 1; the labels say which build is running.",
            ),
            &["version"],
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        reg(Box::new(build_info.clone()));
        let consumer_lag = IntGaugeVec::new(
            Opts::new(
                "hookline_consumer_lag",
                "Messages in the NATS stream not yet delivered to a pipeline's consumers (NATS journal only).",
            ),
            &["pipeline"],
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        reg(Box::new(consumer_lag.clone()));
        let consumer_gauge = |name: &str, help: &str| {
            let g = IntGaugeVec::new(Opts::new(name, help), &["pipeline", "consumer"])
                .unwrap_or_else(|e| unreachable!("{e}"));
            reg(Box::new(g.clone()));
            g
        };
        let consumer_pulling = consumer_gauge(
            "hookline_consumer_pulling",
            "1 while this worker's pulls from a pipeline's consumer (`events` or `retry`) are answered, 0 while they fail (NATS journal, worker role).",
        );
        let consumer_last_pull = consumer_gauge(
            "hookline_consumer_last_pull_timestamp_seconds",
            "When a pull from a pipeline's consumer was last answered, in Unix seconds (NATS journal, worker role).",
        );
        let circuit_state = IntGaugeVec::new(
            Opts::new(
                "hookline_sink_circuit_state",
                "A sink's circuit: 0 closed (calls go through), 1 open (deliveries wait, no calls), 2 half-open (one probe in flight).",
            ),
            &["pipeline", "stage"],
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        reg(Box::new(circuit_state.clone()));
        let pipeline_paused = IntGaugeVec::new(
            Opts::new(
                "hookline_pipeline_paused",
                "1 while a pipeline is paused (its events are journaled, not delivered).",
            ),
            &["pipeline"],
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        reg(Box::new(pipeline_paused.clone()));
        let ingest_refusing = IntGaugeVec::new(
            Opts::new(
                "hookline_ingest_refusing",
                "1 while ingest answers 503 for this reason (`disk`: free space under `min_free_disk`; `journal_size`: journal over `max_size`). Refusals for `max_pending` are answered per request: see `hookline_pending_deliveries`.",
            ),
            &["reason"],
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        reg(Box::new(ingest_refusing.clone()));
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        #[cfg(target_os = "linux")]
        reg(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));

        Metrics {
            requests: counter(
                &r,
                "hookline_http_requests_total",
                "Webhook requests answered, by source and HTTP status.",
                &["source", "status"],
            ),
            verification_failures: counter(
                &r,
                "hookline_verification_failures_total",
                "Requests refused by verification, by source and reason.",
                &["source", "reason"],
            ),
            test_pings: counter(
                &r,
                "hookline_test_pings_total",
                "GET test pings answered (e.g. LeadShark's Test webhook button).",
                &["source"],
            ),
            events_accepted: counter(
                &r,
                "hookline_events_accepted_total",
                "Events journaled, by source and event type (types the source does not declare count as `other`).",
                &["source", "event_type"],
            ),
            duplicates: counter(
                &r,
                "hookline_duplicates_total",
                "Deliveries recognised as duplicates and not processed again.",
                &["source"],
            ),
            stage_outcomes: counter(
                &r,
                "hookline_stage_outcomes_total",
                "Stage runs by pipeline, stage and outcome (passed, dropped, failed).",
                &["pipeline", "stage", "outcome"],
            ),
            stage_duration,
            sink_attempts: counter(
                &r,
                "hookline_sink_attempts_total",
                "Deliveries attempted by sink stages.",
                &["pipeline", "stage"],
            ),
            sink_retries: counter(
                &r,
                "hookline_sink_retries_total",
                "Retries scheduled after a retryable failure.",
                &["pipeline", "stage"],
            ),
            dead_letters_created: counter(
                &r,
                "hookline_dead_letters_created_total",
                "Dead letters created, by pipeline and stage (`ingest`/`decode` for requests that could not be decoded).",
                &["pipeline", "stage"],
            ),
            dead_letters_replayed: plain(
                "hookline_dead_letters_replayed_total",
                "Dead letters sent back into their pipeline through the admin API.",
            ),
            dead_letters: gauge(
                "hookline_dead_letters",
                "Dead letters currently waiting (not replayed or purged).",
            ),
            pending_deliveries: gauge(
                "hookline_pending_deliveries",
                "Deliveries in the journal not yet delivered or dead-lettered.",
            ),
            journal_commits: plain(
                "hookline_journal_commits_total",
                "Journal transactions committed.",
            ),
            journal_batch_size,
            wasm_traps: counter(
                &r,
                "hookline_wasm_traps_total",
                "WASM plugin calls that trapped (including memory exhaustion).",
                &["pipeline", "stage"],
            ),
            wasm_timeouts: counter(
                &r,
                "hookline_wasm_timeouts_total",
                "WASM plugin calls stopped at their deadline.",
                &["pipeline", "stage"],
            ),
            wasm_plugin_counter: counter(
                &r,
                "hookline_wasm_plugin_counter_total",
                "Counters that WASM plugins increment, by plugin and counter name.",
                &["plugin", "name"],
            ),
            config_reloads: counter(
                &r,
                "hookline_config_reloads_total",
                "Configuration reloads, by result (success, failure).",
                &["result"],
            ),
            consumer_lag,
            consumer_pulling,
            consumer_last_pull,
            circuit_state,
            circuit_opened: counter(
                &r,
                "hookline_sink_circuit_opened_total",
                "Times a sink's circuit opened (after `failures` retryable failures in a row, or a failed probe).",
                &["pipeline", "stage"],
            ),
            sink_held: counter(
                &r,
                "hookline_sink_held_total",
                "Deliveries that reached a sink and were held back without an attempt, by reason (circuit, rate, concurrency).",
                &["pipeline", "stage", "reason"],
            ),
            pipeline_paused,
            ingest_refusing,
            journal_disk_free: gauge(
                "hookline_journal_disk_free_bytes",
                "Free space on the journal's file system (SQLite journal), as last checked.",
            ),
            journal_dedupe_keys: gauge(
                "hookline_journal_dedupe_keys",
                "Deduplication key slots the SQLite journal holds in memory (every keyed event since the oldest key still inside its window), as of its last batch.",
            ),
            journal_dedupe_bytes: gauge(
                "hookline_journal_dedupe_bytes",
                "Bytes of memory the SQLite journal's deduplication keys take, as of its last batch.",
            ),
            registry: r,
        }
    }

    /// Prometheus text exposition of everything.
    pub(crate) fn encode(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

pub(crate) fn metrics() -> &'static Metrics {
    &METRICS
}

/// Stage outcomes: the closed set of the `outcome` label.
pub(crate) const OUTCOME_PASSED: &str = "passed";
pub(crate) const OUTCOME_DROPPED: &str = "dropped";
pub(crate) const OUTCOME_FAILED: &str = "failed";

/// A stage's runs since this process started, by outcome, as `hookline_stage_outcomes_total`
/// counts them: the admin API shows them per stage, and the console turns two readings into
/// a rate and an error rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub(crate) struct StageRuns {
    pub(crate) passed: u64,
    pub(crate) dropped: u64,
    pub(crate) failed: u64,
}

pub(crate) fn stage_runs(pipeline: &str, stage: &str) -> StageRuns {
    let count = |o: &str| {
        metrics()
            .stage_outcomes
            .with_label_values(&[pipeline, stage, o])
            .get()
    };
    StageRuns {
        passed: count(OUTCOME_PASSED),
        dropped: count(OUTCOME_DROPPED),
        failed: count(OUTCOME_FAILED),
    }
}

pub(crate) fn request(source: &str, status: u16) {
    metrics()
        .requests
        .with_label_values(&[source, status.to_string().as_str()])
        .inc();
}

pub(crate) fn dead_letter_replayed() {
    metrics().dead_letters_replayed.inc();
}

pub(crate) fn depths(pending: u64, dead: u64) {
    let m = metrics();
    m.pending_deliveries
        .set(i64::try_from(pending).unwrap_or(i64::MAX));
    m.dead_letters.set(i64::try_from(dead).unwrap_or(i64::MAX));
}

/// Messages waiting for a pipeline's consumers (NATS journal).
pub(crate) fn consumer_lag(pipeline: &str, pending: u64) {
    metrics()
        .consumer_lag
        .with_label_values(&[pipeline])
        .set(i64::try_from(pending).unwrap_or(i64::MAX));
}

/// The pull-state series of one consumer of a pipeline (NATS journal), resolved once.
pub(crate) fn consumer_pull_gauges(pipeline: &str, consumer: &str) -> (IntGauge, IntGauge) {
    let m = metrics();
    (
        m.consumer_pulling.with_label_values(&[pipeline, consumer]),
        m.consumer_last_pull
            .with_label_values(&[pipeline, consumer]),
    )
}

/// A consumer left the config: its series go.
pub(crate) fn forget_consumer(pipeline: &str, consumer: &str) {
    let m = metrics();
    let _ = m
        .consumer_pulling
        .remove_label_values(&[pipeline, consumer]);
    let _ = m
        .consumer_last_pull
        .remove_label_values(&[pipeline, consumer]);
}

pub(crate) fn journal_commit(batch: usize) {
    let m = metrics();
    m.journal_commits.inc();
    m.journal_batch_size.observe(batch as f64);
}

pub(crate) fn wasm_plugin_counter(plugin: &str, name: &str, by: u64) {
    metrics()
        .wasm_plugin_counter
        .with_label_values(&[plugin, name])
        .inc_by(by);
}

pub(crate) fn config_reload(ok: bool) {
    metrics()
        .config_reloads
        .with_label_values(&[if ok { "success" } else { "failure" }])
        .inc();
}

/// The zero-valued series every config has.
pub(crate) fn preregister_common() {
    let m = metrics();
    m.dead_letters_created
        .with_label_values(&["ingest", "decode"]);
    m.config_reloads.with_label_values(&["success"]);
    m.config_reloads.with_label_values(&["failure"]);
}
