//! Host tests against the real first-party and hostile plugins, built by
//! `plugins/wasm/build.sh` into `plugins/wasm/dist` (`.ci/run` builds them first).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookline_plugin_api::{BuildContext, Event, PluginConfig, StageKind};
use serde_json::json;

use super::cache::Origin;
use super::stage::{WasmFilter, WasmTransform, build_filter, build_sink, build_transform};
use super::{Plugin, PluginSet};

/// A built plugin from `plugins/wasm/dist`.
pub(crate) fn dist(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/wasm/dist")
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run plugins/wasm/build.sh (needs `rustup target add wasm32-wasip2`)",
        path.display()
    );
    path
}

/// A cache shared by tests (and test runs): each component compiles once. Tests about the
/// cache itself use a fresh folder.
fn shared_cache() -> PathBuf {
    std::env::temp_dir().join("hookline-test-wasm-cache")
}

fn load(name: &str, cache: &Path) -> Arc<Plugin> {
    Arc::new(Plugin::load(name, &dist(name), cache).expect("plugin loads"))
}

fn ctx() -> BuildContext {
    BuildContext::new(".", "p", "s")
}

fn transform(name: &str, toml: &str) -> Arc<WasmTransform> {
    let cfg = PluginConfig::from_toml(name, toml).expect("toml");
    build_transform(&load(name, &shared_cache()), &cfg, &ctx()).expect("builds")
}

fn event(payload: serde_json::Value) -> Event {
    Event {
        id: "0190-test".into(),
        source: "leadshark".into(),
        event_type: payload["event"].as_str().unwrap_or("x").into(),
        received_at: jiff::Timestamp::UNIX_EPOCH,
        headers: vec![("user-agent".into(), "t".into())],
        payload,
    }
}

fn sample(kind: &str) -> Event {
    event(hookline_leadshark::samples::sample(kind, 7).expect("sample"))
}

use hookline_plugin_api::{Filter as _, Sink as _, Transform as _};

#[test]
fn redact_masks_emails_and_names_and_counts() {
    let t = transform("redact", "keep_domain = true\n");
    let out = t.apply(sample("email.captured")).expect("applies");
    assert_eq!(out.len(), 1);
    let lead = &out[0].payload["data"]["lead"];
    let email = lead["email"].as_str().expect("email");
    assert!(email.ends_with("***@example.com"), "{email}");
    assert!(
        !lead["name"].as_str().expect("name").contains("Doe"),
        "{lead}"
    );
    assert_eq!(out[0].id, "0190-test", "identity kept");
    let masked = super::counters()
        .into_iter()
        .find(|(p, n, _)| p == "wasm:redact" && n == "fields_masked");
    assert!(matches!(masked, Some((_, _, n)) if n >= 2), "{masked:?}");
}

#[test]
fn lead_score_adds_a_score_and_an_error_result_is_fatal() {
    let t = transform("lead-score", "");
    let out = t.apply(sample("email.captured")).expect("applies");
    // email.captured (50) + "Senior Marketing Manager" (15 + 5)
    assert_eq!(out[0].payload["data"]["score"], 70);
    let before = t.0.instances_created();
    let err = t
        .apply(event(json!({"not": "leadshark"})))
        .expect_err("not LeadShark");
    assert!(!err.is_retryable());
    assert!(err.message().starts_with("wasm:lead-score: "), "{err}");
    // An error result recycles the instance; the next event gets a fresh one and works.
    assert!(t.apply(sample("new.like")).is_ok());
    assert_eq!(t.0.instances_created(), before + 1);
}

#[test]
fn changes_are_merged_into_the_payload_the_host_holds() {
    // lead-score (SDK, `transform-changes` world) returns only `{"data": {"score": n}}`.
    let t = transform("lead-score", "field = \"rank\"\n");
    let input = sample("email.captured");
    let out = t.apply(input.clone()).expect("applies");
    let mut expected = input;
    expected.payload["data"]["rank"] = json!(70);
    assert_eq!(out, vec![expected], "only data.rank added, key order kept");
    assert_eq!(t.0.instances_created(), 1);
}

/// The host hands each call's event over in the previous call's buffers: nothing of an
/// earlier event (a longer id, more headers, a bigger payload) may leak into the next.
#[test]
fn each_call_sees_exactly_its_own_event() {
    let t = transform("whole-stamp", "");
    let mut big = sample("email.captured");
    big.id = "a-much-longer-event-id-than-the-next-one".into();
    big.event_type = "email.captured".into();
    big.headers = vec![
        (
            "user-agent".into(),
            "LeadShark-Webhooks/1.0 with a long tail".into(),
        ),
        ("x-webhook-event".into(), "email.captured".into()),
        ("x-request-id".into(), "r-1".into()),
    ];
    let mut small = event(json!({"event": "new.like", "n": 1}));
    small.id = "e2".into();
    small.headers = vec![("ua".into(), "x".into())];
    for input in [big.clone(), small.clone(), big, small] {
        let out = t.apply(input.clone()).expect("applies");
        let mut expected = input;
        expected.payload["stamped"] = json!(true);
        assert_eq!(out, vec![expected]);
    }
}

#[test]
fn a_plugin_of_the_transform_world_returns_whole_events() {
    // whole-stamp: wit-bindgen alone, against `transform`, as another toolchain would.
    let plugin = load("whole-stamp", &shared_cache());
    assert_eq!(plugin.world(), Some(StageKind::Transform));
    let t = transform("whole-stamp", "");
    let input = sample("new.like");
    let out = t.apply(input.clone()).expect("applies");
    let mut expected = input;
    expected.payload["stamped"] = json!(true);
    assert_eq!(out, vec![expected]);
}

#[test]
fn a_patch_that_is_not_json_is_fatal_and_a_change_sets_type_and_headers() {
    use super::bindings::Changes;
    let e = sample("new.like");
    let bad = Changes {
        type_: None,
        headers: None,
        payload_patch: Some("{".into()),
    };
    let err = super::stage::changed("wasm:x", e.clone(), bad).expect_err("not JSON");
    assert!(!err.is_retryable());
    assert!(
        err.message()
            .contains("wasm:x returned a payload patch that is not JSON")
    );
    let change = Changes {
        type_: Some("scored".into()),
        headers: Some(vec![]),
        payload_patch: Some(r#"{"event": null, "data": {"lead": null}}"#.into()),
    };
    let out = super::stage::changed("wasm:x", e.clone(), change).expect("changes");
    assert_eq!(out.event_type, "scored");
    assert!(out.headers.is_empty());
    assert!(out.payload.get("event").is_none());
    assert!(out.payload["data"].get("lead").is_none());
    assert_eq!((out.id, out.source), (e.id, e.source), "identity kept");
}

#[test]
fn min_score_is_a_filter() {
    let cfg = PluginConfig::from_toml("min-score", "min = 40\n").expect("toml");
    let f: Arc<WasmFilter> =
        build_filter(&load("min-score", &shared_cache()), &cfg, &ctx()).expect("builds");
    let mut e = sample("new.like");
    e.payload["data"]["score"] = json!(55);
    assert!(f.keep(&e).expect("keeps"));
    e.payload["data"]["score"] = json!(10);
    assert!(!f.keep(&e).expect("drops"));
}

#[test]
fn a_plugin_rejecting_its_config_is_a_located_error() {
    let text = "keep_domian = true\n";
    let cfg = PluginConfig::from_toml("redact", text).expect("toml");
    let err = build_transform(&load("redact", &shared_cache()), &cfg, &ctx()).expect_err("typo");
    assert!(
        err.message.contains("rejected its config"),
        "{}",
        err.message
    );
    assert!(err.message.contains("keep_domian"), "{}", err.message);
    assert!(err.span.is_some());
}

#[test]
fn an_infinite_loop_times_out_and_the_next_call_gets_a_new_instance() {
    let t = transform("hostile-spin", "timeout = \"50ms\"\n");
    for round in 1..=2 {
        let started = Instant::now();
        let err = t.apply(sample("new.like")).expect_err("never returns");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the deadline stopped it"
        );
        assert!(!err.is_retryable());
        assert!(
            err.message().contains("wasm:hostile-spin timed out"),
            "{err}"
        );
        assert!(err.message().contains("50ms"), "{err}");
        // The instance that trapped is dropped; each call here needed a fresh one (the
        // first was made at build time).
        assert_eq!(
            t.0.instances_created(),
            round,
            "one fresh instance per trap"
        );
    }
}

#[test]
fn fuel_bounds_work_per_call() {
    let t = transform("hostile-spin", "timeout = \"10s\"\nfuel = 100000\n");
    let started = Instant::now();
    let err = t.apply(sample("new.like")).expect_err("out of fuel");
    assert!(err.message().contains("ran out of fuel"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // A well-behaved plugin under the same fuel does fine, call after call (fuel is reset).
    let ok = transform("redact", "fuel = 10000000\n");
    for _ in 0..3 {
        ok.apply(sample("email.captured")).expect("enough fuel");
    }
}

#[test]
fn a_memory_bomb_hits_the_cap() {
    let t = transform("hostile-bomb", "memory = \"16MiB\"\n");
    let err = t.apply(sample("new.like")).expect_err("bomb");
    assert!(!err.is_retryable());
    assert!(
        err.message()
            .contains("wasm:hostile-bomb exceeded its memory limit of 16 MiB"),
        "{err}"
    );
    assert!(
        t.apply(sample("new.like")).is_err(),
        "and again, on a fresh instance"
    );
    assert_eq!(t.0.instances_created(), 2);
}

#[test]
fn a_panic_is_reported_with_its_message() {
    let t = transform("hostile-panic", "");
    let err = t.apply(sample("new.like")).expect_err("panics");
    assert!(
        err.message().contains("wasm:hostile-panic panicked"),
        "{err}"
    );
    assert!(
        err.message()
            .contains("hostile-panic refuses event 0190-test"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_plugins_on_async_workers_do_not_take_the_worker_down() {
    // Filters and transforms run on Tokio's workers: a panic writing to stderr there must
    // not reach for a runtime (see wasi.rs).
    let t = transform("hostile-panic", "");
    let err = t.apply(sample("new.like")).expect_err("panics");
    assert!(err.message().contains("panicked"), "{err}");
    let b = transform("hostile-bomb", "memory = \"8MiB\"\n");
    assert!(b.apply(sample("new.like")).is_err());
}

#[test]
fn instances_are_reused_then_recycled_after_n_calls() {
    let t = transform("redact", "recycle_after = 3\n");
    for _ in 0..7 {
        t.apply(sample("email.captured")).expect("applies");
    }
    // 1 at build; recycled after calls 3 and 6.
    assert_eq!(t.0.instances_created(), 3);
    let reused = transform("redact", "");
    for _ in 0..50 {
        reused.apply(sample("email.captured")).expect("applies");
    }
    assert_eq!(
        reused.0.instances_created(),
        1,
        "one instance serves every event"
    );
}

#[test]
fn an_instance_past_the_memory_high_water_mark_is_recycled() {
    let t = transform("redact", "memory = \"8MiB\"\ntimeout = \"10s\"\n");
    t.apply(sample("email.captured")).expect("small");
    t.apply(sample("email.captured")).expect("small");
    assert_eq!(t.0.instances_created(), 1);
    // ~700 KB of payload, parsed, grows the instance's memory past half the cap (4 MiB).
    let big: Vec<String> = (0..30_000)
        .map(|i| format!("user{i}@example.com"))
        .collect();
    let mut e = sample("email.captured");
    e.payload["data"]["list"] = json!(big);
    t.apply(e).expect("big");
    t.apply(sample("email.captured")).expect("small again");
    assert_eq!(t.0.instances_created(), 2, "recycled after the big event");
}

#[test]
fn compiled_components_are_cached_on_disk() {
    let cache = tempfile::tempdir().expect("temp dir");
    let first = Plugin::load("redact", &dist("redact"), cache.path()).expect("loads");
    assert_eq!(first.origin, Origin::Compiled);
    let bytes = std::fs::read(dist("redact")).expect("read");
    let entry = super::cache::cache_path(cache.path(), &bytes, super::engine::Metering::Off);
    assert!(entry.is_file(), "cache file written: {}", entry.display());
    let compiles = super::compiles();
    let second = Plugin::load("redact", &dist("redact"), cache.path()).expect("loads");
    assert_eq!(second.origin, Origin::Cached);
    assert_eq!(
        super::compiles(),
        compiles,
        "no compile for the second load"
    );
    // A different file is a different key.
    let other = Plugin::load("slack", &dist("slack"), cache.path()).expect("loads");
    assert_eq!(other.origin, Origin::Compiled);
}

#[test]
fn fuel_metering_is_compiled_only_for_stages_with_fuel() {
    let cache = tempfile::tempdir().expect("temp dir");
    let plugin = Arc::new(Plugin::load("redact", &dist("redact"), cache.path()).expect("loads"));
    let bytes = std::fs::read(dist("redact")).expect("read");
    let metered = super::cache::cache_path(cache.path(), &bytes, super::engine::Metering::Fuel);
    let unmetered = super::cache::cache_path(cache.path(), &bytes, super::engine::Metering::Off);
    assert_ne!(metered, unmetered);
    let build = |toml: &str| {
        let cfg = PluginConfig::from_toml("redact", toml).expect("toml");
        build_transform(&plugin, &cfg, &ctx()).expect("builds")
    };
    let plain = build("");
    assert!(
        unmetered.is_file() && !metered.is_file(),
        "no metered compile yet"
    );
    let fueled = build("fuel = 10000000\n");
    assert!(
        metered.is_file(),
        "a stage with `fuel` compiles (and caches) a metered copy"
    );
    // The same plugin serves both stages, and both give the same result.
    let e = sample("email.captured");
    assert_eq!(
        plain.apply(e.clone()).expect("plain"),
        fueled.apply(e).expect("fueled")
    );
}

#[test]
fn a_corrupt_cache_entry_is_recompiled() {
    let cache = tempfile::tempdir().expect("temp dir");
    let bytes = std::fs::read(dist("redact")).expect("read");
    let entry = super::cache::cache_path(cache.path(), &bytes, super::engine::Metering::Off);
    std::fs::create_dir_all(cache.path()).expect("dir");
    std::fs::write(&entry, b"not native code").expect("write");
    let p = Plugin::load("redact", &dist("redact"), cache.path()).expect("loads");
    assert_eq!(p.origin, Origin::Compiled);
    let again = Plugin::load("redact", &dist("redact"), cache.path()).expect("loads");
    assert_eq!(again.origin, Origin::Cached, "the entry was rewritten");
}

#[test]
fn wrong_world_missing_export_and_bad_files_are_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = dir.path().join("cache");
    let redact = load("redact", &cache);
    let err = redact.check(StageKind::Filter).expect_err("a transform");
    assert!(err.contains("is a transform plugin"), "{err}");
    assert!(err.contains("redact.wasm"), "{err}");
    // An empty component exports nothing.
    let empty = dir.path().join("empty.wasm");
    std::fs::write(&empty, b"\0asm\x0d\0\x01\0").expect("write");
    let p = Plugin::load("empty", &empty, &cache).expect("valid component");
    let err = p.check(StageKind::Transform).expect_err("no exports");
    assert!(err.contains("missing the export `init`"), "{err}");
    assert!(err.contains("empty.wasm"), "{err}");
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").expect("write");
    let err = Plugin::load("core", &core, &cache).expect_err("core module");
    assert!(err.contains("core WebAssembly module"), "{err}");
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm\x0d\0\x01\0garbage").expect("write");
    let err = Plugin::load("junk", &junk, &cache).expect_err("junk");
    assert!(err.contains("junk.wasm does not compile"), "{err}");
}

#[test]
fn the_plugin_set_registers_every_wasm_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(dist("redact"), dir.path().join("redact.wasm")).expect("copy");
    std::fs::write(dir.path().join("ignored.cwasm"), b"native").expect("write");
    let set = PluginSet::scan(dir.path(), &dir.path().join("cache")).expect("scan");
    assert_eq!(set.names().collect::<Vec<_>>(), ["redact"]);
    let mut registry = hookline_plugin_api::Registry::new();
    set.register(&mut registry);
    let factory = registry.get_transform("wasm:redact").expect("registered");
    let cfg = PluginConfig::from_toml("wasm:redact", "").expect("toml");
    let t = factory(&cfg, &ctx()).expect("builds");
    assert!(t.apply(sample("email.captured")).is_ok());
    let missing = PluginSet::scan(&dir.path().join("nope"), dir.path()).expect("empty");
    assert_eq!(missing.names().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_posts_only_to_allowed_hosts() {
    use axum::routing::post;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let app = axum::Router::new().route(
        "/hook",
        post(move |body: String| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let slack = load("slack", &shared_cache());

    let allowed = format!("url = \"http://{addr}/hook\"\nallowed_hosts = [\"{addr}\"]\n");
    let cfg = PluginConfig::from_toml("slack", &allowed).expect("toml");
    let sink = build_sink(&slack, &cfg, &ctx()).expect("builds");
    sink.deliver(&sample("email.captured"))
        .await
        .expect("delivered");
    let body = rx.recv().await.expect("posted");
    assert!(body.contains("email.captured"), "{body}");

    let refused = format!("url = \"http://{addr}/hook\"\nallowed_hosts = [\"hooks.slack.com\"]\n");
    let cfg = PluginConfig::from_toml("slack", &refused).expect("toml");
    let sink = build_sink(&slack, &cfg, &ctx()).expect("builds");
    let err = sink
        .deliver(&sample("email.captured"))
        .await
        .expect_err("refused");
    assert!(!err.is_retryable());
    assert!(err.message().contains("not in allowed_hosts"), "{err}");
    assert!(rx.try_recv().is_err(), "nothing reached the receiver");
}
