//! The journal's group commit: accepting N events (event row, dedupe key, one delivery row)
//! concurrently — they queue for the writer thread and share one transaction and one
//! fsync — against one at a time (N commits, N fsyncs). SQLite in WAL mode with
//! `synchronous = FULL`, on the disk that holds the system temp dir.
//!
//! `cargo bench -p hookline --bench journal`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hookline::journal::{Journal, NewEvent, SqliteJournal};
use hookline_plugin_api::Event;

static NEXT: AtomicU64 = AtomicU64::new(0);

fn new_event(payload: &serde_json::Value) -> NewEvent {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let now = jiff::Timestamp::now();
    NewEvent {
        event: Event {
            id: uuid::Uuid::now_v7().to_string(),
            source: "leadshark".into(),
            event_type: "email.captured".into(),
            received_at: now,
            headers: vec![("x-webhook-event".into(), "email.captured".into())],
            payload: payload.clone(),
        },
        dedupe_key: Some(format!("{n:064x}")),
        dedupe_until: now + jiff::SignedDuration::from_hours(24),
        pipelines: vec!["archive".into()],
        order_keys: Vec::new(),
    }
}

fn group_commit(c: &mut Criterion) {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("{e}"),
    };
    let dir = match tempfile::Builder::new()
        .prefix("hookline-bench-journal")
        .tempdir_in(
            std::env::var_os("BENCH_JOURNAL_DIR").map_or_else(std::env::temp_dir, Into::into),
        ) {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    let journal: Arc<dyn Journal> = match SqliteJournal::open(&dir.path().join("bench.db")) {
        Ok(j) => Arc::new(j),
        Err(e) => panic!("{e}"),
    };
    let payload = hookline_leadshark::samples::sample("email.captured", 7)
        .unwrap_or_else(|| panic!("sample"));

    let mut group = c.benchmark_group("journal_accept");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    for n in [1usize, 16, 64, 256] {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("concurrent", n), &n, |b, &n| {
            b.iter(|| {
                rt.block_on(async {
                    let events: Vec<_> = (0..n).map(|_| new_event(&payload)).collect();
                    let accepts = events.iter().map(|e| journal.accept(e));
                    for r in futures::future::join_all(accepts).await {
                        if let Err(e) = r {
                            panic!("{e}");
                        }
                    }
                })
            })
        });
    }
    let n = 16;
    group.throughput(Throughput::Elements(n as u64));
    group.bench_with_input(BenchmarkId::new("one_at_a_time", n), &n, |b, &n| {
        b.iter(|| {
            rt.block_on(async {
                for _ in 0..n {
                    if let Err(e) = journal.accept(&new_event(&payload)).await {
                        panic!("{e}");
                    }
                }
            })
        })
    });
    group.finish();
}

criterion_group!(benches, group_commit);
criterion_main!(benches);
