//! Operating the service: metrics (checked by a real promtool and scraped by a real
//! Prometheus), health, graceful shutdown under load, live reload, logs, admin auth.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

fn archive_config(extra: &str) -> String {
    format!(
        r#"{}
[[pipelines]]
name = "archive"
source = "leadshark"
stages = [
  {{ filter = "cel", expr = "payload.event != 'new.profile.visit'" }},
  {{ sink = "file", path = "all.jsonl" }},
]
{extra}
"#,
        leadshark_source()
    )
}

async fn scrape(h: &Hookline) -> String {
    let resp = client()
        .get(h.admin_url("/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/plain")
    );
    resp.text().await.expect("text")
}

/// Metric family names in a scrape (`# TYPE name kind`).
fn families(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// The value of one series, by name and label subset.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .reduce(|a, b| a + b)
}

#[tokio::test]
async fn metrics_match_the_docs_and_pass_promtool() {
    let receiver = Receiver::start(vec![400]).await;
    let h = Hookline::start(&archive_config(&format!(
        "[[pipelines]]\nname = \"crm\"\nsource = \"leadshark\"\nevents = [\"email.captured\"]\nstages = [{{ sink = \"http\", url = \"{}\" }}]\n",
        receiver.url()
    )));
    let url = h.url("/webhooks/leadshark");
    let email = sample("email.captured", 1);
    assert_eq!(post_signed(&url, &email).await.status, 200);
    assert_eq!(post_signed(&url, &email).await.json["duplicate"], true);
    assert_eq!(
        post_signed(&url, &sample("new.profile.visit", 2))
            .await
            .status,
        200
    );
    assert_eq!(
        post(
            &url,
            sample("new.like", 3),
            &[("x-webhook-signature", &"0".repeat(64))]
        )
        .await
        .status,
        401
    );
    assert_eq!(post_signed(&url, "{not json").await.status, 200);
    let dm = serde_json::json!({"event": "dm.sent", "data": {}}).to_string();
    assert_eq!(post_signed(&url, &dm).await.status, 200);
    let custom = serde_json::json!({"event": "some.new.type", "data": {}}).to_string();
    assert_eq!(post_signed(&url, &custom).await.status, 200);
    client().get(&url).send().await.expect("ping");
    client().get(h.url("/nope")).send().await.expect("404");
    // A dead letter, then its replay through the admin API.
    let mut page = Value::Null;
    for _ in 0..200 {
        page = get_json(&h.admin_url("/api/v1/dead-letters?pipeline=crm")).await;
        if page["total"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let id = page["items"][0]["id"]
        .as_str()
        .expect("dead letter")
        .to_string();
    let r = client()
        .post(h.admin_url(&format!("/api/v1/dead-letters/{id}/replay")))
        .send()
        .await
        .expect("replay");
    assert_eq!(r.status(), 202);
    receiver.wait_for(2).await;
    // One good and one failed reload.
    assert_eq!(
        client()
            .post(h.admin_url("/api/v1/reload"))
            .send()
            .await
            .expect("reload")
            .status(),
        200
    );
    std::fs::write(&h.config_path, "[server]\nlisten = 1\n").expect("write");
    let bad = client()
        .post(h.admin_url("/api/v1/reload"))
        .send()
        .await
        .expect("reload");
    assert_eq!(bad.status(), 422);
    let body: Value = bad.json().await.expect("json");
    assert!(
        body["problems"][0]
            .as_str()
            .expect("problem")
            .contains("pipeline.toml:2:"),
        "{body}"
    );

    let text = scrape(&h).await;
    // promtool, from Prometheus itself, lints the exposition.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed by .ci/run (Debian package prometheus)");
    use std::io::Write;
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = promtool.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The docs list exactly what is exposed (WASM-only metrics need a WASM stage).
    let docs = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/metrics.md"),
    )
    .expect("docs");
    let mut documented = BTreeSet::new();
    let mut wasm_only = BTreeSet::new();
    for line in docs.lines().filter(|l| l.starts_with("| `")) {
        let name = line
            .trim_start_matches("| `")
            .split('`')
            .next()
            .expect("name")
            .to_string();
        if line.contains("WASM stages only") || line.contains("NATS only") {
            wasm_only.insert(name.clone());
        }
        documented.insert(name);
    }
    let exposed = families(&text);
    let undocumented: Vec<_> = exposed.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "exposed but not in docs/metrics.md: {undocumented:?}"
    );
    let missing: Vec<_> = documented
        .difference(&exposed)
        .filter(|n| !wasm_only.contains(*n))
        .collect();
    assert!(
        missing.is_empty(),
        "in docs/metrics.md but not exposed: {missing:?}"
    );

    // And the values say what happened.
    let v = |name, labels: &[(&str, &str)]| value(&text, name, labels).unwrap_or(-1.0);
    assert_eq!(
        v(
            "hookline_events_accepted_total",
            &[("event_type", "email.captured")]
        ),
        1.0
    );
    assert_eq!(
        v(
            "hookline_events_accepted_total",
            &[("event_type", "dm.sent")]
        ),
        1.0
    );
    assert_eq!(
        v("hookline_events_accepted_total", &[("event_type", "other")]),
        1.0,
        "undeclared types are `other`"
    );
    assert!(
        !text.contains("some.new.type"),
        "payload values never become labels"
    );
    assert_eq!(v("hookline_duplicates_total", &[]), 1.0);
    assert_eq!(
        v(
            "hookline_verification_failures_total",
            &[("reason", "bad_signature")]
        ),
        1.0
    );
    assert_eq!(v("hookline_http_requests_total", &[("status", "401")]), 1.0);
    assert_eq!(
        v(
            "hookline_http_requests_total",
            &[("source", "unknown"), ("status", "404")]
        ),
        1.0
    );
    assert_eq!(v("hookline_test_pings_total", &[]), 1.0);
    assert_eq!(
        v(
            "hookline_stage_outcomes_total",
            &[
                ("pipeline", "archive"),
                ("stage", "cel"),
                ("outcome", "dropped")
            ]
        ),
        1.0
    );
    assert_eq!(
        v(
            "hookline_dead_letters_created_total",
            &[("pipeline", "ingest")]
        ),
        1.0
    );
    assert_eq!(
        v(
            "hookline_dead_letters_created_total",
            &[("pipeline", "crm"), ("stage", "http")]
        ),
        1.0
    );
    assert_eq!(v("hookline_dead_letters_replayed_total", &[]), 1.0);
    assert_eq!(
        v("hookline_sink_attempts_total", &[("pipeline", "crm")]),
        2.0
    );
    assert_eq!(
        v("hookline_config_reloads_total", &[("result", "success")]),
        1.0
    );
    assert_eq!(
        v("hookline_config_reloads_total", &[("result", "failure")]),
        1.0
    );
    assert_eq!(
        v("hookline_dead_letters", &[]),
        1.0,
        "the ingest dead letter is still waiting"
    );
    assert!(v("hookline_journal_commits_total", &[]) >= 1.0);
    // email.captured and new.profile.visit at least were accepted with their keys.
    let keys = v("hookline_journal_dedupe_keys", &[]);
    assert!(keys >= 2.0, "{keys} dedupe keys");
    assert!(v("hookline_journal_dedupe_bytes", &[]) >= 8.0 * keys);
    assert_eq!(v("hookline_build_info", &[]), 1.0);
}

#[tokio::test]
async fn a_real_prometheus_scrapes_hookline() {
    let h = Hookline::start(&archive_config(""));
    let prom_port = Receiver::free_port();
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: hookline\n    static_configs:\n      - targets: ['{}']\n",
            h.admin_addr
        ),
    )
    .expect("write");
    let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
    let prom = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("prometheus is installed by .ci/run (Debian package prometheus)");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _prom = Kill(prom);

    let url = h.url("/webhooks/leadshark");
    for i in 0..7 {
        assert_eq!(post_signed(&url, &sample("new.like", i)).await.status, 200);
    }
    let query = format!(
        "http://127.0.0.1:{prom_port}/api/v1/query?query=sum(hookline_events_accepted_total%7Bsource%3D%22leadshark%22%7D)"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = Value::Null;
    loop {
        if let Ok(resp) = client().get(&query).send().await
            && let Ok(v) = resp.json::<Value>().await
        {
            last = v;
            if last["data"]["result"][0]["value"][1] == "7" {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never saw 7 events: {last}\n{}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn health_and_readiness() {
    let h = Hookline::start(&archive_config(""));
    assert_eq!(get_json(&h.admin_url("/healthz")).await["status"], "ok");
    let ready = get_json(&h.admin_url("/readyz")).await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["pending"], 0);
}

#[tokio::test]
async fn sigterm_under_load_loses_no_acknowledged_event() {
    let port = Receiver::free_port();
    let h = Hookline::start(&format!(
        r#"{}
[[pipelines]]
name = "crm"
source = "leadshark"
stages = [{{ sink = "http", url = "http://127.0.0.1:{port}/leads", envelope = true, timeout = "1s", retry = {{ attempts = 1000, initial = "100ms", max = "200ms" }} }}]
"#,
        leadshark_source()
    ));
    let load = Load::start(&h.url("/webhooks/leadshark"), "new.comment", 8, 100_000);
    wait_until("some load", || load.acked() >= 300).await;
    let mut h = h;
    let started = Instant::now();
    h.signal("TERM");
    let exited = h.terminate();
    let acked = load.finish().await;
    assert!(
        exited,
        "hookline exits cleanly on SIGTERM; log:\n{}",
        h.log()
    );
    println!("stopped in {:?}", started.elapsed());
    assert!(h.log().contains("SIGTERM"));
    let dir = h.crash();
    let _h = Hookline::start_in(dir, &[]);
    let receiver = Receiver::start_on(port, vec![]).await;
    let counts = wait_for_all(&receiver, &acked).await;
    let lost: Vec<_> = acked
        .iter()
        .filter(|id| !counts.contains_key(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged events lost",
        lost.len(),
        acked.len()
    );
}

#[tokio::test]
async fn reload_swaps_secrets_and_pipelines_and_keeps_the_old_config_when_the_new_one_is_bad() {
    let h = Hookline::start(&archive_config(""));
    let url = h.url("/webhooks/leadshark");
    assert_eq!(post_signed(&url, &sample("new.like", 1)).await.status, 200);

    // SIGHUP: a rotated secret and a new pipeline.
    let rotated = std::fs::read_to_string(&h.config_path)
        .expect("read")
        .replace(SECRET, "rotated-secret-abcdef")
        + "\n[[pipelines]]\nname = \"likes\"\nsource = \"leadshark\"\nevents = [\"new.like\"]\nstages = [{ sink = \"file\", path = \"likes.jsonl\" }]\n";
    std::fs::write(&h.config_path, &rotated).expect("write");
    h.signal("HUP");
    let body = sample("new.like", 2);
    let sig = sign("rotated-secret-abcdef", body.as_bytes());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = post(&url, body.clone(), &[("x-webhook-signature", &sig)]).await;
        if r.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "reload never took effect");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        post_signed(&url, &sample("new.like", 3)).await.status,
        401,
        "the old secret is gone"
    );
    assert_eq!(
        wait_for_lines(&h.path("likes.jsonl"), 1).await.len(),
        1,
        "the new pipeline runs"
    );

    // A broken file (saved by an editor: the watcher notices) keeps the running config.
    std::fs::write(
        &h.config_path,
        rotated.replace("[[pipelines]]", "[[pipelines]]\nbogus = 1"),
    )
    .expect("write");
    wait_until("the failed reload to be logged", || {
        h.log().contains("reload failed")
    })
    .await;
    let body = sample("new.like", 4);
    let sig = sign("rotated-secret-abcdef", body.as_bytes());
    assert_eq!(
        post(&url, body, &[("x-webhook-signature", &sig)])
            .await
            .status,
        200,
        "still running the last good config"
    );
    assert!(h.log().contains("bogus"), "the log says what is wrong");
    let text = scrape(&h).await;
    assert!(
        value(
            &text,
            "hookline_config_reloads_total",
            &[("result", "failure")]
        )
        .unwrap_or(0.0)
            >= 1.0
    );
}

#[tokio::test]
async fn json_logs_carry_event_ids_and_never_a_secret() {
    let receiver = Receiver::start(vec![500, 500]).await;
    let token = "admin-token-0123456789abcdef";
    let h = Hookline::start_with(
        &format!(
            r#"{}
[[pipelines]]
name = "crm"
source = "leadshark"
stages = [{{ sink = "http", url = "{}", signing = {{ secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }}, headers = {{ authorization = "Bearer crm-token-secret" }}, retry = {{ attempts = 2, initial = "10ms", max = "10ms" }} }}]
"#,
            leadshark_source(),
            receiver.url()
        )
        .replace("[[sources]]", &format!("[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{token}\"\n\n[[sources]]")),
        "",
        &[("HOOKLINE_LOG_FORMAT", "json")],
    );
    let url = h.url("/webhooks/leadshark");
    let r = post_signed(&url, &sample("email.captured", 1)).await;
    let id = r.json["id"].as_str().expect("id").to_string();
    post(
        &url,
        sample("new.like", 1),
        &[("x-webhook-signature", &sign("wrong", b"x"))],
    )
    .await;
    receiver.wait_for(2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = h.log();
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() > 3);
    assert!(
        lines
            .iter()
            .any(|l| l["event_id"] == id.as_str() && l["message"] == "accepted")
    );
    assert!(
        lines.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.contains("dead-lettered"))
            && (l["event_id"] == id.as_str() || l["span"]["event_id"] == id.as_str())),
        "the failure names the event"
    );
    for secret in [
        SECRET,
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "crm-token-secret",
        token,
    ] {
        assert!(!log.contains(secret), "the log contains a secret");
    }
}

#[tokio::test]
async fn the_admin_api_requires_its_token() {
    let token = "admin-token-0123456789abcdef";
    let config = archive_config("").replace(
        "[[sources]]",
        &format!("[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{token}\"\n\n[[sources]]"),
    );
    let h = Hookline::start(&config);
    let c = client();
    let r = c
        .get(h.admin_url("/api/v1/dead-letters"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = c
        .get(h.admin_url("/metrics"))
        .bearer_auth("wrong")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 401);
    let r = c
        .get(h.admin_url("/api/v1/dead-letters"))
        .bearer_auth(token)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);

    // Off loopback without a token, the config is refused.
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("pipeline.toml");
    std::fs::write(
        &path,
        archive_config("").replace(
            "[[sources]]",
            "[admin]\nlisten = \"0.0.0.0:0\"\n\n[[sources]]",
        ),
    )
    .expect("write");
    let out = run_cli(&["check", "--config", path.to_str().expect("utf-8")], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("without a `token`"));
}

#[test]
fn the_grafana_dashboard_queries_only_documented_metrics() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("examples/grafana/hookline.json")).expect("dashboard"),
    )
    .expect("dashboard is JSON");
    let docs = std::fs::read_to_string(root.join("docs/metrics.md")).expect("docs");
    let mut exprs = 0;
    for panel in dash["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            exprs += 1;
            let names: Vec<&str> = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("hookline_") || w.starts_with("process_"))
                .collect();
            assert!(!names.is_empty(), "{expr}");
            for name in names {
                let family = name.trim_end_matches("_bucket");
                assert!(
                    docs.contains(&format!("`{family}`")),
                    "{name} in the dashboard is not a documented metric"
                );
            }
        }
    }
    assert!(exprs >= 10);
}

/// 4 KiB of garbage over the journal's third or fourth page used to go unnoticed: `serve`
/// started, `/readyz` said ready, and every webhook got 503. Now `serve` refuses to start,
/// naming the file and what to do.
#[tokio::test]
async fn a_corrupt_journal_is_refused_at_start() {
    use std::io::{Seek, SeekFrom, Write};
    for page in [2u64, 3] {
        let mut h = Hookline::start(&archive_config(""));
        for i in 0..20 {
            let r = post_signed(&h.url("/webhooks/leadshark"), &sample("new.like", i)).await;
            assert_eq!(r.status, 200);
        }
        wait_for_lines(&h.path("all.jsonl"), 20).await;
        assert!(h.terminate(), "clean stop");
        let db = h.path("data/hookline.db");
        assert!(
            !h.path("data/hookline.db-wal").exists()
                || std::fs::metadata(h.path("data/hookline.db-wal"))
                    .map(|m| m.len())
                    .unwrap_or(0)
                    == 0,
            "a clean stop leaves everything in the main file"
        );
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&db)
            .expect("open journal");
        f.seek(SeekFrom::Start(page * 4096)).expect("seek");
        let garbage: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        f.write_all(&garbage).expect("write");
        drop(f);
        let config = h.config_path.to_str().expect("utf-8").to_string();
        let mut serve = Command::new(bin())
            .args(["serve", "--config", &config])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = serve.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = serve.kill();
                panic!("serve started on a corrupt journal (page {page})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let out = serve.wait_with_output().expect("output");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!status.success(), "page {page}: {stderr}");
        for needle in ["hookline.db", "corrupt", "backup", "move it aside"] {
            assert!(
                stderr.contains(needle),
                "page {page}: no `{needle}` in {stderr}"
            );
        }
    }
}

/// The same damage while `serve` runs: the webhooks it cannot store get 503, and `/readyz`
/// stops saying ready and says why.
#[tokio::test]
async fn a_journal_damaged_at_run_time_makes_readyz_fail() {
    use std::io::{Seek, SeekFrom, Write};
    let h = Hookline::start(&archive_config(""));
    for i in 0..20 {
        let r = post_signed(&h.url("/webhooks/leadshark"), &sample("new.like", i)).await;
        assert_eq!(r.status, 200);
    }
    wait_for_lines(&h.path("all.jsonl"), 20).await;
    let db = h.path("data/hookline.db");
    rusqlite::Connection::open(&db)
        .expect("open")
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("checkpoint");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&db)
        .expect("open journal");
    f.seek(SeekFrom::Start(4096)).expect("seek");
    let garbage: Vec<u8> = (0..3 * 4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    f.write_all(&garbage).expect("write");
    f.sync_all().expect("sync");
    drop(f);
    let mut refused = 0;
    for i in 20..40 {
        let r = post_signed(&h.url("/webhooks/leadshark"), &sample("new.like", i)).await;
        if r.status == 503 {
            refused += 1;
        }
    }
    assert!(refused > 0, "webhooks into damaged pages are refused");
    let resp = client()
        .get(h.admin_url("/readyz"))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.expect("json");
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("corrupt") && reason.contains("hookline.db"),
        "{body}"
    );
}
