//! The native stage chain, per event: a `cel` filter and a `set` transform (built from TOML
//! through the registry, exactly as `serve` builds them) in front of a sink. With a sink
//! that discards, this is the engine's own cost per event: stage dispatch, the tracing
//! span, the per-stage metrics and the plugins. With the `file` sink on /dev/null it adds
//! the sink's encoding and its trip through tokio's blocking pool.
//!
//! A `tracing` subscriber at `info` (writing nowhere) is installed, as `serve` installs one,
//! so spans cost what they cost in production.
//!
//! `cargo bench -p hookline --bench pipeline`

mod common;

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use hookline::runtime::{Pipeline, Stage, StageOp};
use hookline_plugin_api::{Event, Sink, StageError, async_trait};

#[derive(Debug)]
struct Discard;

#[async_trait]
impl Sink for Discard {
    async fn deliver(&self, event: &Event) -> Result<(), StageError> {
        std::hint::black_box(event);
        Ok(())
    }
}

const CONFIG: &str = r#"
[storage]
path = "unused.db"

[[sources]]
name = "leadshark"
path = "/webhooks/leadshark"
verify = { scheme = "leadshark", secrets = ["bench-secret"] }

[[pipelines]]
name = "chain"
source = "leadshark"
events = ["*"]
stages = [
  { filter = "cel", expr = "has(payload.data.lead.email) && !payload.data.lead.email.endsWith('@test.invalid')" },
  { transform = "set", fields = { "data.source" = "leadshark" } },
  { sink = "file", path = "/dev/null", envelope = true },
]
"#;

fn chain(c: &mut Criterion) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_writer(std::io::sink)
        .try_init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("{e}"),
    };
    let built = common::runtime("pipeline", CONFIG.to_string());
    let file_chain = Arc::clone(&built.pipelines[0]);
    let mut stages: Vec<Stage> = file_chain.stages[..2].to_vec();
    stages.push(Stage::new(
        "discard",
        "discard",
        StageOp::Sink(Arc::new(Discard)),
    ));
    let discard_chain = match Pipeline::new("chain", "leadshark", &["*".into()], stages) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    };
    let event = common::event();

    let mut group = c.benchmark_group("stage_chain");
    group.bench_function("cel+set+discard", |b| {
        b.iter(|| rt.block_on(discard_chain.run(event.clone(), 0)))
    });
    group.bench_function("cel+set+file(/dev/null)", |b| {
        b.iter(|| rt.block_on(file_chain.run(event.clone(), 0)))
    });
    group.bench_function("event_clone_only", |b| b.iter(|| event.clone()));
    group.finish();
}

criterion_group!(benches, chain);
criterion_main!(benches);
