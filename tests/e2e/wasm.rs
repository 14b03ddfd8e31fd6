//! WASM plugins in the real binary: first-party transforms and sinks in pipelines, hostile
//! plugins that must not take the service down, `check` on bad plugins, and the scaffold.
//! The plugins come from `plugins/wasm/dist` (built by `plugins/wasm/build.sh`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

pub fn dist(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/wasm/dist")
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run plugins/wasm/build.sh",
        path.display()
    );
    path
}

/// One compiled-plugin cache for every test: each component compiles once per run.
fn cache_dir() -> String {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("e2e-wasm-cache")
        .display()
        .to_string()
}

/// A temp dir holding `plugins/<name>.wasm` for each name and a config with `body`.
pub fn setup(plugins: &[&str], body: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::create_dir_all(dir.path().join("plugins")).expect("plugins dir");
    for p in plugins {
        std::fs::copy(
            dist(p),
            dir.path().join("plugins").join(format!("{p}.wasm")),
        )
        .expect("copy plugin");
    }
    let body = format!(
        "[plugins]\ndir = \"plugins\"\ncache_dir = {:?}\n\n{}{body}",
        cache_dir(),
        leadshark_source()
    );
    std::fs::write(dir.path().join("pipeline.toml"), config_text(&body, "")).expect("config");
    dir
}

fn dead_letters(h: &Hookline) -> Value {
    let out = h.cli(&["dlq", "list", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

async fn wait_for_dead_letters(h: &Hookline, n: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = dead_letters(h);
        if page["total"].as_u64() >= Some(n) || Instant::now() > deadline {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What a plugin logs while it handles an event names the event: for an event of one
/// pipeline and for one whose pipelines run side by side (the worker gives each run task a
/// span with the event's id; the plugin's line carries it in `span`).
#[tokio::test]
async fn a_plugin_log_line_names_its_event() {
    let dir = setup(
        &["lead-score", "min-score"],
        r#"
[[pipelines]]
name = "hot"
source = "leadshark"
stages = [
  { transform = "wasm:lead-score" },
  { filter = "wasm:min-score", min = 1000 },
  { sink = "file", path = "hot.jsonl" },
]

[[pipelines]]
name = "emails"
source = "leadshark"
events = ["email.captured"]
stages = [{ sink = "file", path = "emails.jsonl" }]
"#,
    );
    let h = Hookline::start_in(dir, &[("HOOKLINE_LOG_FORMAT", "json")]);
    let mut ids = Vec::new();
    // `new.like` goes to one pipeline, `email.captured` to two.
    for (kind, i) in [("new.like", 1), ("email.captured", 2)] {
        let r = post_signed(&h.url("/webhooks/leadshark"), &sample(kind, i)).await;
        assert_eq!(r.status, 200, "{}", r.json);
        ids.push(r.json["id"].as_str().expect("id").to_string());
    }
    wait_for_lines(&h.path("emails.jsonl"), 1).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let lines: Vec<Value> = h
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|l: &Value| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("dropped: score"))
            })
            .collect();
        if lines.len() >= 2 {
            for id in &ids {
                assert!(
                    lines.iter().any(|l| l["span"]["event_id"] == id.as_str()),
                    "no plugin line names {id}: {lines:#?}"
                );
            }
            assert!(
                lines.iter().all(|l| l["plugin"] == "wasm:min-score"),
                "{lines:#?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the plugin's lines never came:\n{}",
            h.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn redact_and_lead_score_transform_events_into_a_file() {
    let dir = setup(
        &["redact", "lead-score", "min-score"],
        r#"
[[pipelines]]
name = "leads"
source = "leadshark"
stages = [
  { transform = "wasm:redact", keep_domain = true },
  { transform = "wasm:lead-score" },
  { sink = "file", path = "scored.jsonl" },
  { filter = "wasm:min-score", min = 50 },
  { sink = "file", path = "hot.jsonl" },
]
"#,
    );
    let h = Hookline::start_in(dir, &[]);
    for (kind, i) in [("email.captured", 1), ("new.like", 2)] {
        let r = post_signed(&h.url("/webhooks/leadshark"), &sample(kind, i)).await;
        assert_eq!(r.status, 200, "{}", r.json);
    }
    let scored = wait_for_lines(&h.path("scored.jsonl"), 2).await;
    assert_eq!(scored.len(), 2, "log:\n{}", h.log());
    let email = scored
        .iter()
        .find(|e| e["event"] == "email.captured")
        .expect("email.captured");
    let lead = &email["data"]["lead"];
    let address = lead["email"].as_str().expect("email");
    assert!(address.contains("***@"), "masked: {address}");
    assert!(
        !lead["name"].as_str().expect("name").contains("Doe"),
        "{lead}"
    );
    assert_eq!(
        email["data"]["score"], 70,
        "50 for the email + 20 for a senior manager"
    );
    let like = scored
        .iter()
        .find(|e| e["event"] == "new.like")
        .expect("like");
    assert_eq!(
        like["data"]["score"], 40,
        "10 for a like + 30 for a director"
    );
    let hot = wait_for_lines(&h.path("hot.jsonl"), 1).await;
    assert_eq!(hot.len(), 1);
    assert_eq!(
        hot[0]["event"], "email.captured",
        "the filter dropped the like"
    );
    assert_eq!(dead_letters(&h)["total"], 0);
}

#[tokio::test]
async fn the_slack_sink_posts_to_allowed_hosts_and_is_refused_elsewhere() {
    let slack = Receiver::start(vec![]).await;
    let elsewhere = Receiver::start(vec![]).await;
    let body = format!(
        r#"
[[pipelines]]
name = "notify"
source = "leadshark"
stages = [{{ sink = "wasm:slack", url = "{allowed}", allowed_hosts = ["{allowed_host}"], prefix = "New lead" }}]

[[pipelines]]
name = "misconfigured"
source = "leadshark"
stages = [{{ sink = "wasm:slack", url = "{other}", allowed_hosts = ["hooks.slack.com"] }}]

[[pipelines]]
name = "exfiltrate"
source = "leadshark"
stages = [{{ sink = "wasm:hostile-exfil", target = "{other}", allowed_hosts = ["hooks.slack.com"] }}]
"#,
        allowed = slack.url(),
        allowed_host = slack.addr,
        other = elsewhere.url(),
    );
    let h = Hookline::start_in(setup(&["slack", "hostile-exfil"], &body), &[]);
    let r = post_signed(&h.url("/webhooks/leadshark"), &sample("email.captured", 3)).await;
    assert_eq!(r.status, 200);
    let got = slack.wait_for(1).await;
    assert_eq!(got.len(), 1, "log:\n{}", h.log());
    let message: Value = serde_json::from_slice(&got[0].body).expect("json");
    let text = message["text"].as_str().expect("text");
    assert!(text.starts_with("New lead email.captured: "), "{text}");
    let page = wait_for_dead_letters(&h, 2).await;
    assert_eq!(page["total"], 2, "{page}");
    for item in page["items"].as_array().expect("items") {
        let error = item["error"].as_str().expect("error");
        assert!(error.contains("not in allowed_hosts"), "{error}");
        assert!(error.contains("denied"), "{error}");
    }
    assert!(
        elsewhere.received.lock().expect("lock").is_empty(),
        "nothing reached the host that is not allowed"
    );
}

#[tokio::test]
async fn hostile_plugins_dead_letter_the_event_and_the_service_keeps_serving() {
    let body = r#"
[[pipelines]]
name = "spin"
source = "leadshark"
stages = [{ transform = "wasm:hostile-spin", timeout = "100ms" }]

[[pipelines]]
name = "bomb"
source = "leadshark"
stages = [{ transform = "wasm:hostile-bomb", memory = "16MiB" }]

[[pipelines]]
name = "panic"
source = "leadshark"
stages = [{ transform = "wasm:hostile-panic" }]

[[pipelines]]
name = "healthy"
source = "leadshark"
stages = [{ transform = "wasm:redact" }, { sink = "file", path = "healthy.jsonl" }]
"#;
    let plugins = ["hostile-spin", "hostile-bomb", "hostile-panic", "redact"];
    let h = Hookline::start_in(setup(&plugins, body), &[]);
    let first = post_signed(&h.url("/webhooks/leadshark"), &sample("new.like", 1)).await;
    assert_eq!(first.status, 200);
    let page = wait_for_dead_letters(&h, 3).await;
    assert_eq!(page["total"], 3, "{page}");
    let reason = |pipeline: &str| -> String {
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|i| i["pipeline"] == pipeline)
            .and_then(|i| i["error"].as_str())
            .unwrap_or_else(|| panic!("no dead letter for {pipeline}: {page}"))
            .to_string()
    };
    let spin = reason("spin");
    assert!(
        spin.contains("wasm:hostile-spin timed out") && spin.contains("100ms"),
        "{spin}"
    );
    let bomb = reason("bomb");
    assert!(
        bomb.contains("wasm:hostile-bomb exceeded its memory limit of 16 MiB"),
        "{bomb}"
    );
    let panic = reason("panic");
    assert!(panic.contains("wasm:hostile-panic panicked"), "{panic}");
    assert!(panic.contains("hostile-panic refuses event"), "{panic}");

    // The next event is answered and processed the same way: fresh instances, same limits.
    let second = post_signed(&h.url("/webhooks/leadshark"), &sample("new.like", 2)).await;
    assert_eq!(second.status, 200, "{}", second.json);
    assert_eq!(wait_for_dead_letters(&h, 6).await["total"], 6);
    assert_eq!(wait_for_lines(&h.path("healthy.jsonl"), 2).await.len(), 2);
    let health = client()
        .get(h.admin_url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);

    // Metrics count what happened: two timeouts, four traps (memory and panic), and the
    // counter the redact plugin increments itself.
    let text = client()
        .get(h.admin_url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let value = |prefix: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(
        value("hookline_wasm_timeouts_total{pipeline=\"spin\""),
        2.0,
        "{text}"
    );
    assert_eq!(
        value("hookline_wasm_traps_total{pipeline=\"bomb\""),
        2.0,
        "{text}"
    );
    assert_eq!(
        value("hookline_wasm_traps_total{pipeline=\"panic\""),
        2.0,
        "{text}"
    );
    assert_eq!(
        value("hookline_wasm_traps_total{pipeline=\"healthy\""),
        0.0,
        "series exist from the start: {text}"
    );
    assert!(
        value("hookline_wasm_plugin_counter_total{name=\"fields_masked\",plugin=\"wasm:redact\"}")
            > 0.0,
        "{text}"
    );
}

fn check(dir: &Path) -> (bool, String) {
    let config = dir.join("pipeline.toml");
    let out = run_cli(&["check", "--config", config.to_str().expect("utf-8")], &[]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn check_loads_every_referenced_plugin_and_names_the_broken_ones() {
    let body = r#"
[[pipelines]]
name = "p"
source = "leadshark"
stages = [
  { filter = "wasm:redact" },
  { transform = "wasm:junk" },
  { transform = "wasm:empty" },
  { transform = "wasm:nope" },
  { transform = "wasm:redact", keep_domian = false },
]
"#;
    let dir = setup(&["redact"], body);
    let plugins = dir.path().join("plugins");
    std::fs::write(plugins.join("junk.wasm"), b"\0asm\x0d\0\x01\0junk").expect("write");
    std::fs::write(plugins.join("empty.wasm"), b"\0asm\x0d\0\x01\0").expect("write");
    let (ok, out) = check(dir.path());
    assert!(!ok, "{out}");
    let config = dir.path().join("pipeline.toml").display().to_string();
    let line = |needle: &str| -> String {
        out.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no `{needle}` in:\n{out}"))
            .to_string()
    };
    // Each is located at the stage's plugin name (lines 20-24 of the written config).
    let wrong = line("is a transform plugin");
    assert!(wrong.contains(&format!("{config}:")), "{wrong}");
    assert!(wrong.contains("plugins/redact.wasm"), "{wrong}");
    assert!(wrong.contains("not a filter"), "{wrong}");
    let junk = line("junk.wasm does not compile");
    assert!(junk.contains(&format!("{config}:")), "{junk}");
    let empty = line("missing the export `init`");
    assert!(empty.contains("plugins/empty.wasm"), "{empty}");
    let nope = line("`wasm:nope`");
    assert!(nope.contains("nope.wasm in the plugins folder"), "{nope}");
    let typo = line("rejected its config");
    assert!(typo.contains("keep_domian"), "{typo}");
    let lines: Vec<u32> = [&wrong, &junk, &empty, &nope]
        .iter()
        .map(|l| {
            let at = l.find(&config).expect("located") + config.len() + 1;
            l[at..]
                .split(':')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no line number: {l}"))
        })
        .collect();
    let first = lines[0];
    assert_eq!(
        lines,
        [first, first + 1, first + 2, first + 3],
        "one per stage line"
    );

    // The good one alone passes, and `check` says it loaded it.
    let good = setup(
        &["redact"],
        "[[pipelines]]\nname = \"p\"\nsource = \"leadshark\"\nstages = [{ transform = \"wasm:redact\" }]\n",
    );
    let (ok, out) = check(good.path());
    assert!(ok, "{out}");
    assert!(
        out.contains("plugins/redact.wasm: loaded and instantiated"),
        "{out}"
    );
}

#[test]
fn plugin_new_scaffolds_projects_that_build_and_load() {
    let work = tempfile::tempdir().expect("dir");
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk");
    let guest_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/wasm");
    let projects = work.path().join("projects");
    std::fs::create_dir_all(&projects).expect("dir");
    let plugins = work.path().join("plugins");
    std::fs::create_dir_all(&plugins).expect("dir");
    for (name, kind) in [
        ("my-filter", "filter"),
        ("my-transform", "transform"),
        ("my-sink", "sink"),
    ] {
        let out = run_cli(
            &[
                "plugin",
                "new",
                name,
                "--kind",
                kind,
                "--dir",
                projects.to_str().expect("utf-8"),
                "--sdk",
                sdk.to_str().expect("utf-8"),
            ],
            &[],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let root = projects.join(name);
        // Same dependency versions as the first-party plugins, and their target folder, so
        // the build reuses what is already compiled.
        std::fs::copy(guest_root.join("Cargo.lock"), root.join("Cargo.lock")).expect("lock");
        let build = std::process::Command::new(env!("CARGO"))
            .args(["build", "--release"])
            .current_dir(&root)
            .env("CARGO_TARGET_DIR", guest_root.join("target"))
            .output()
            .expect("cargo");
        assert!(
            build.status.success(),
            "{name} does not build:\n{}",
            String::from_utf8_lossy(&build.stderr)
        );
        let built = guest_root
            .join("target/wasm32-wasip2/release")
            .join(format!("{}.wasm", name.replace('-', "_")));
        std::fs::copy(&built, plugins.join(format!("{name}.wasm"))).expect("copy");
    }
    let body = format!(
        "[plugins]\ndir = \"plugins\"\ncache_dir = {:?}\n\n{}\n[[pipelines]]\nname = \"p\"\nsource = \"leadshark\"\nstages = [\n  {{ filter = \"wasm:my-filter\", event_type = \"new.like\" }},\n  {{ transform = \"wasm:my-transform\", field = \"seen\" }},\n  {{ sink = \"wasm:my-sink\", url = \"https://example.com/hook\", allowed_hosts = [\"example.com\"] }},\n]\n",
        cache_dir(),
        leadshark_source()
    );
    std::fs::write(work.path().join("pipeline.toml"), config_text(&body, "")).expect("config");
    let (ok, out) = check(work.path());
    assert!(ok, "{out}");
    assert!(
        out.contains("my-sink.wasm: loaded and instantiated"),
        "{out}"
    );
}

#[tokio::test]
async fn a_plugin_file_dropped_into_the_folder_is_reloaded() {
    let body = r#"
[[pipelines]]
name = "scored"
source = "leadshark"
stages = [{ transform = "wasm:scorer" }, { sink = "file", path = "out.jsonl" }]
"#;
    // `scorer` starts out as the redact plugin...
    let dir = setup(&["redact"], body);
    std::fs::rename(
        dir.path().join("plugins/redact.wasm"),
        dir.path().join("plugins/scorer.wasm"),
    )
    .expect("rename");
    let h = Hookline::start_in(dir, &[]);
    let url = h.url("/webhooks/leadshark");
    assert_eq!(
        post_signed(&url, &sample("email.captured", 1)).await.status,
        200
    );
    let first = wait_for_lines(&h.path("out.jsonl"), 1).await;
    assert!(first[0]["data"].get("score").is_none(), "{}", first[0]);
    // ...then lead-score is copied over it: the folder is watched, the set rebuilt and swapped.
    let tmp = h.path("plugins/.scorer.tmp");
    std::fs::copy(dist("lead-score"), &tmp).expect("copy");
    std::fs::rename(&tmp, h.path("plugins/scorer.wasm")).expect("rename");
    wait_until("the plugin reload", || {
        h.log().contains("configuration reloaded")
    })
    .await;
    assert_eq!(
        post_signed(&url, &sample("email.captured", 2)).await.status,
        200
    );
    let lines = wait_for_lines(&h.path("out.jsonl"), 2).await;
    assert!(
        lines[1].to_string().contains("score"),
        "the new plugin runs: {}",
        lines[1]
    );
}
