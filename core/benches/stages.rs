//! Each native stage alone, per event, against a pass-through of the same kind: the filters
//! against a filter that keeps everything, the transforms against one that returns the event
//! unchanged (a transform takes the event by value, so every transform row, the pass-through
//! included, pays for one clone of the event). Each stage is built from TOML through the
//! registry, exactly as `serve` builds it, and runs on a LeadShark `email.captured` sample.
//!
//! The cost a stage adds is its row minus the pass-through row of its kind. The `stage, in
//! place` rows are the transforms that edit in place (`set`, `remove`, `rename`) as the
//! runner calls them on an event its run holds alone: without the clone.
//!
//! The `sink encode` rows are what a sink with `envelope = true` encodes per delivery: the
//! envelope built as a JSON value (a copy of the payload), the borrowed form, and the
//! borrowed form into a presized buffer, which is what the built-in sinks do.
//!
//! `cargo bench -p hookline --bench stages`

mod common;

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use hookline::runtime::StageOp;
use hookline_plugin_api::{Event, Filter, StageError, Transform};

/// One pipeline per stage; the pipeline's name is the row's name.
const STAGES: &[(&str, &str)] = &[
    (
        "event",
        r#"{ filter = "event", events = ["email.captured", "new.*"] }"#,
    ),
    (
        "field",
        r#"{ filter = "field", path = "event", in = ["email.captured", "new.like"] }"#,
    ),
    (
        "cel",
        r#"{ filter = "cel", expr = "has(payload.data.lead.email) && !payload.data.lead.email.endsWith('@test.invalid')" }"#,
    ),
    (
        "set",
        r#"{ transform = "set", fields = { "data.source" = "leadshark", "meta.version" = 2 } }"#,
    ),
    (
        "remove",
        r#"{ transform = "remove", fields = ["data.lead.email", "data.lead.linkedin_url"] }"#,
    ),
    (
        "rename",
        r#"{ transform = "rename", fields = { "data.lead.email" = "data.contact.email" } }"#,
    ),
    (
        "template",
        r#"{ transform = "template", template = '''{"text": {{ ("New lead: " ~ payload.data.lead.name) | tojson }}}''' }"#,
    ),
];

fn config() -> String {
    let mut text = String::from(
        r#"
[storage]
path = "unused.db"

[[sources]]
name = "leadshark"
path = "/webhooks/leadshark"
verify = { scheme = "leadshark", secrets = ["bench-secret"] }
"#,
    );
    for (name, stage) in STAGES {
        text.push_str(&format!(
            "\n[[pipelines]]\nname = \"{name}\"\nsource = \"leadshark\"\nevents = [\"*\"]\nstages = [\n  {stage},\n  {{ sink = \"stdout\" }},\n]\n"
        ));
    }
    text
}

#[derive(Debug)]
struct KeepAll;

impl Filter for KeepAll {
    fn keep(&self, event: &Event) -> Result<bool, StageError> {
        std::hint::black_box(event);
        Ok(true)
    }
}

#[derive(Debug)]
struct Identity;

impl Transform for Identity {
    fn apply(&self, event: Event) -> Result<Vec<Event>, StageError> {
        Ok(vec![event])
    }
}

fn run(op: &StageOp, event: &Event) {
    match op {
        StageOp::Filter(f) => {
            let kept = f.keep(event);
            assert!(matches!(kept, Ok(true)), "the sample must pass: {kept:?}");
        }
        StageOp::Transform(t) => {
            let out = t.apply(event.clone());
            assert!(matches!(&out, Ok(v) if v.len() == 1), "{out:?}");
            let _ = std::hint::black_box(out);
        }
        StageOp::Sink(_) => unreachable!("only filters and transforms are measured"),
    }
}

fn stages(c: &mut Criterion) {
    let built = common::runtime("stages", config());
    let event = common::event();
    let mut group = c.benchmark_group("stage");
    let keep_all = StageOp::Filter(Arc::new(KeepAll));
    let identity = StageOp::Transform(Arc::new(Identity));
    group.bench_function("filter pass-through", |b| b.iter(|| run(&keep_all, &event)));
    group.bench_function("transform pass-through", |b| {
        b.iter(|| run(&identity, &event))
    });
    for pipeline in &built.pipelines {
        let op = &pipeline.stages[0].op;
        let name = pipeline.stages[0].plugin.clone();
        group.bench_function(name.as_str(), |b| b.iter(|| run(op, &event)));
    }
    group.finish();

    // A transform that edits in place, on an event its run holds alone: no copy. The copy
    // (made outside the measurement here) and its freeing are what the rows above add.
    let mut group = c.benchmark_group("stage, in place");
    for pipeline in &built.pipelines {
        let StageOp::Transform(t) = &pipeline.stages[0].op else {
            continue;
        };
        if !t.edits_in_place() {
            continue;
        }
        let name = pipeline.stages[0].plugin.clone();
        group.bench_function(name.as_str(), |b| {
            b.iter_batched(
                || event.clone(),
                |mut e| {
                    let edited = t.edit(&mut e);
                    assert!(edited.is_ok(), "{edited:?}");
                    e
                },
                criterion::BatchSize::SmallInput,
            )
        });
    }
    group.finish();

    // What a sink with `envelope = true` encodes per delivery: the envelope built as a JSON
    // value (a copy of the payload) against the borrowed form the sinks encode.
    let mut group = c.benchmark_group("sink encode");
    let event = std::hint::black_box(&event);
    group.bench_function("envelope, built as a value", |b| {
        b.iter(|| serde_json::to_vec(&event.envelope()))
    });
    group.bench_function("envelope, borrowed", |b| {
        b.iter(|| serde_json::to_vec(&event.envelope_ref()))
    });
    // What the built-in sinks do (`support::encode`): the same, into a buffer with room
    // for a typical webhook, so it does not grow by reallocating.
    group.bench_function("envelope, borrowed, into 1 KiB", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(1024);
            serde_json::to_writer(&mut out, &event.envelope_ref()).map(|()| out)
        })
    });
    group.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
