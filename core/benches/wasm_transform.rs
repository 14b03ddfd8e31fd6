//! The same transform, native and as a WASM plugin, on a LeadShark event.
//!
//! `lead-score` types the payload as a LeadShark event, scores it from the event kind and
//! the person's title, and writes `data.score`. The native twin runs the same scoring source
//! file (`plugins/wasm/lead-score/src/score.rs`) on the payload the engine already holds;
//! the WASM stage adds what a plugin costs: the payload serialised for the boundary, the
//! call into a pooled instance under a deadline, the guest's parse and typing of the
//! payload, and the host's merge of what the plugin returns (`lead-score` returns only its
//! change, `{"data": {"score": n}}`, through the `transform-changes` world). A second WASM
//! stage sets `fuel`, so the plugin runs compiled with fuel metering: what that costs.
//!
//! Needs `plugins/wasm/build.sh` first. Run: `cargo bench -p hookline --bench wasm_transform`.

use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use hookline::wasm::PluginSet;
use hookline_leadshark as leadshark;
use hookline_plugin_api::{BuildContext, Event, PluginConfig, Registry, StageError, Transform};

#[path = "../../plugins/wasm/lead-score/src/score.rs"]
mod score;

/// `lead-score`, natively.
#[derive(Debug)]
struct NativeLeadScore;

impl Transform for NativeLeadScore {
    fn apply(&self, mut event: Event) -> Result<Vec<Event>, StageError> {
        let typed =
            leadshark::LeadSharkEvent::from_value(&event.payload).map_err(StageError::fatal)?;
        let score = score::score(&typed);
        match event
            .payload
            .get_mut("data")
            .and_then(|d| d.as_object_mut())
        {
            Some(data) => {
                data.insert("score".into(), score.into());
            }
            None => return Err(StageError::fatal("payload has no `data` object")),
        }
        Ok(vec![event])
    }
}

fn event() -> Event {
    Event {
        id: "01940000-0000-7000-8000-000000000000".into(),
        source: "leadshark".into(),
        event_type: "email.captured".into(),
        received_at: jiff::Timestamp::UNIX_EPOCH,
        headers: vec![("user-agent".into(), "LeadShark-Webhooks/1.0".into())],
        payload: leadshark::samples::sample("email.captured", 42).expect("sample"),
    }
}

fn wasm_transform(dir: &Path, name: &str) -> Arc<dyn Transform> {
    wasm_stage(dir, name, "")
}

fn wasm_stage(dir: &Path, name: &str, toml: &str) -> Arc<dyn Transform> {
    let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/wasm/dist");
    assert!(
        plugins.join(format!("{name}.wasm")).is_file(),
        "run plugins/wasm/build.sh first"
    );
    let set = PluginSet::scan(&plugins, dir).expect("scan");
    let mut registry = Registry::new();
    set.register(&mut registry);
    let factory = registry
        .get_transform(&format!("wasm:{name}"))
        .expect("registered");
    let cfg = PluginConfig::from_toml(name, toml).expect("toml");
    factory(&cfg, &BuildContext::new(".", "bench", name)).expect("builds")
}

fn bench(c: &mut Criterion) {
    let cache = tempfile::tempdir().expect("dir");
    let native: Arc<dyn Transform> = Arc::new(NativeLeadScore);
    let wasm = wasm_transform(cache.path(), "lead-score");
    let metered = wasm_stage(cache.path(), "lead-score", "fuel = 100000000\n");
    let input = event();
    let (a, b, m) = (
        native.apply(input.clone()).expect("native"),
        wasm.apply(input.clone()).expect("wasm"),
        metered.apply(input.clone()).expect("wasm with fuel"),
    );
    assert_eq!(a, b, "both produce the same event");
    assert_eq!(a, m, "with fuel too");

    let mut group = c.benchmark_group("lead-score");
    group.bench_function("native", |b| {
        b.iter(|| native.apply(input.clone()).expect("applies"))
    });
    // What the WASM stage does, natively: the payload to text for the boundary, the guest's
    // parse, typing and patch, and the host's merge of the patch.
    group.bench_function("native-from-text", |b| {
        b.iter(|| {
            let text = input.payload.to_string();
            let payload: serde_json::Value = serde_json::from_str(&text).expect("json");
            let typed = leadshark::LeadSharkEvent::from_value(&payload).expect("typed");
            let patch = serde_json::json!({ "data": { "score": score::score(&typed) } });
            let patch = serde_json::from_str(&patch.to_string()).expect("json");
            let mut out = input.clone();
            hookline_plugin_api::merge_patch(&mut out.payload, patch);
            out
        })
    });
    group.bench_function("wasm", |b| {
        b.iter(|| wasm.apply(input.clone()).expect("applies"))
    });
    group.bench_function("wasm-with-fuel", |b| {
        b.iter(|| metered.apply(input.clone()).expect("applies"))
    });
    group.finish();

    // The part of the WASM cost that is the contract itself (the payload crosses as JSON
    // text): the host's serialisation for the call and its parse of the result.
    c.bench_function("payload-json-round-trip/native", |b| {
        b.iter(|| {
            let text = input.payload.to_string();
            serde_json::from_str::<serde_json::Value>(&text).expect("json")
        })
    });

    // For scale: redact walks and rewrites every string of the payload.
    let redact = wasm_transform(cache.path(), "redact");
    c.bench_function("redact/wasm", |b| {
        b.iter(|| redact.apply(input.clone()).expect("applies"))
    });

    summary(&native, &wasm, &metered, &input);
}

/// On a shared machine criterion's means move with the neighbours' load. The best of many
/// short batches, taken in alternation, is stable: that is what docs/plugins.md quotes.
fn summary(
    native: &Arc<dyn Transform>,
    wasm: &Arc<dyn Transform>,
    metered: &Arc<dyn Transform>,
    input: &Event,
) {
    const ROUNDS: usize = 300;
    const BATCH: u32 = 500;
    let batch = |t: &Arc<dyn Transform>| {
        let started = std::time::Instant::now();
        for _ in 0..BATCH {
            std::hint::black_box(t.apply(input.clone()).expect("applies"));
        }
        started.elapsed().as_secs_f64() * 1e6 / f64::from(BATCH)
    };
    let (mut best_native, mut best_wasm, mut best_metered) = (f64::MAX, f64::MAX, f64::MAX);
    for _ in 0..ROUNDS {
        best_native = best_native.min(batch(native));
        best_wasm = best_wasm.min(batch(wasm));
        best_metered = best_metered.min(batch(metered));
    }
    println!(
        "summary (best of {ROUNDS} batches of {BATCH}): lead-score native {best_native:.2} µs, wasm {best_wasm:.2} µs, added {:.2} µs, ratio {:.1}x",
        best_wasm - best_native,
        best_wasm / best_native
    );
    println!(
        "with `fuel` set (plugin compiled with fuel metering): wasm {best_metered:.2} µs, metering adds {:.2} µs",
        best_metered - best_wasm
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(60).measurement_time(std::time::Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
