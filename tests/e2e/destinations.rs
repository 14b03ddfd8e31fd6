//! When destinations fail: circuit breakers, rates and concurrency, pause and resume,
//! isolation between pipelines, per-key order. Real receivers on 127.0.0.1.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

/// A counter series from the admin `/metrics`, summed over the series whose labels contain
/// every one of `labels`.
async fn metric(h: &Hookline, name: &str, labels: &[&str]) -> f64 {
    let text = client()
        .get(h.admin_url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn pipeline_view(h: &Hookline, name: &str) -> Value {
    get_json(&h.admin_url(&format!("/api/v1/pipelines/{name}"))).await
}

/// A LeadShark `new.like` whose lead is `key`, numbered `seq` (in `data.seq`).
fn keyed(key: &str, seq: u64) -> String {
    let mut v: Value = serde_json::from_str(&sample("new.like", seq)).expect("json");
    v["data"]["lead"]["linkedin_url"] = json!(key);
    v["data"]["seq"] = json!(seq);
    v.to_string()
}

fn dead_letters(h: &Hookline) -> u64 {
    let out = h.cli(&["dlq", "list", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("dlq json");
    v["total"].as_u64().expect("total")
}

#[tokio::test]
async fn a_dead_sink_opens_its_circuit_and_waits_without_using_up_attempts_until_a_probe_succeeds()
{
    let port = Receiver::free_port();
    let h = Hookline::start(&format!(
        r#"{}
[[pipelines]]
name = "crm"
source = "leadshark"

[[pipelines.stages]]
sink = "http"
url = "http://127.0.0.1:{port}/hook"
timeout = "1s"
envelope = true
retry = {{ attempts = 4, initial = "100ms", max = "200ms" }}
circuit = {{ failures = 3, cooldown = "1s", max_cooldown = "2s" }}
"#,
        leadshark_source()
    ));
    let url = h.url("/webhooks/leadshark");
    let mut acked = Vec::new();
    for i in 0..30 {
        let r = post_signed(&url, &sample("new.like", i)).await;
        assert_eq!(r.status, 200, "{}", r.json);
        acked.push(r.json["id"].as_str().expect("id").to_string());
    }
    // The circuit opens after three failures in a row, and stays open while probes fail.
    let mut seen_open = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let v = pipeline_view(&h, "crm").await;
        if v["stages"][0]["circuit"]["state"] == "open" {
            seen_open = true;
            assert!(
                v["stages"][0]["circuit"]["last_error"]
                    .as_str()
                    .is_some_and(|e| !e.is_empty()),
                "{v}"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen_open, "the circuit never opened");
    assert_eq!(
        metric(&h, "hookline_sink_circuit_state", &["pipeline=\"crm\""]).await,
        1.0
    );
    // Let it stay down for a few cooldowns: 30 events × 4 attempts would be 120 calls and 30
    // dead letters without a circuit. With it: the three that opened it, then one probe per
    // cooldown.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let attempts = metric(&h, "hookline_sink_attempts_total", &["pipeline=\"crm\""]).await;
    assert!(
        attempts <= 12.0,
        "{attempts} calls to a dead destination in 5 s: an open circuit must hold deliveries back"
    );
    assert!(
        metric(&h, "hookline_sink_held_total", &["reason=\"circuit\""]).await >= 1.0,
        "no delivery was held by the circuit"
    );
    // A probe fails only its own attempt: up to now nothing is dead-lettered.
    assert_eq!(dead_letters(&h), 0);

    // The destination comes back: the next probe closes the circuit, every event arrives,
    // and none was given up.
    let receiver = Receiver::start_on(port, vec![]).await;
    let counts = wait_for_all(&receiver, &acked).await;
    assert!(
        acked.iter().all(|id| counts.contains_key(id)),
        "missing events after the destination came back"
    );
    assert_eq!(dead_letters(&h), 0);
    assert_eq!(
        pipeline_view(&h, "crm").await["stages"][0]["circuit"]["state"],
        "closed"
    );
    assert!(h.log().contains("circuit opened"));
    assert!(h.log().contains("circuit closed"));
}

/// A run that started before a reload can reach its sink's old circuit, still open, after
/// the reload let everything held by circuits go. What it parks there is let go once that
/// run has settled: the new circuit, closed, would never release it.
#[tokio::test]
async fn a_delivery_parked_behind_an_old_circuit_during_a_reload_is_let_go() {
    let slow = Counting::start(Duration::from_secs(2)).await;
    let port = Receiver::free_port();
    let h = Hookline::start(&format!(
        r#"{}
[[pipelines]]
name = "crm"
source = "leadshark"

[[pipelines.stages]]
name = "audit"
sink = "http"
url = "http://{}/audit"
timeout = "5s"
circuit = false

[[pipelines.stages]]
name = "crm"
sink = "http"
url = "http://127.0.0.1:{port}/hook"
timeout = "1s"
envelope = true
retry = {{ attempts = 20, initial = "100ms", max = "200ms" }}
circuit = {{ failures = 1, cooldown = "5m", max_cooldown = "5m" }}
"#,
        leadshark_source(),
        slow.addr
    ));
    let url = h.url("/webhooks/leadshark");
    // The first event opens the circuit of `crm`, whose receiver is not there yet.
    let first = post_signed(&url, &sample("new.like", 1)).await;
    assert_eq!(first.status, 200, "{}", first.json);
    let deadline = Instant::now() + Duration::from_secs(20);
    while pipeline_view(&h, "crm").await["stages"][1]["circuit"]["state"] != "open" {
        assert!(Instant::now() < deadline, "the circuit never opened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The receiver comes up; the old circuit stays open for its cooldown.
    let receiver = Receiver::start_on(port, vec![]).await;
    // The second event is in `audit` (2 s) when the configuration is reloaded: it reaches
    // the old, open circuit after the reload's release.
    let second = post_signed(&url, &sample("new.like", 2)).await;
    assert_eq!(second.status, 200, "{}", second.json);
    wait_until("the second event at `audit`", || slow.arrivals().len() >= 2).await;
    // Twice in a row, as a SIGHUP and an edit noticed by the watcher can: the poller may
    // see only the last runtime.
    for _ in 0..2 {
        let reload = client()
            .post(h.admin_url("/api/v1/reload"))
            .send()
            .await
            .expect("reload");
        assert_eq!(reload.status(), 200);
    }
    let ids: Vec<String> = [&first, &second]
        .iter()
        .map(|r| r.json["id"].as_str().expect("id").to_string())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = received_ids(&receiver);
        if ids.iter().all(|id| got.contains_key(id)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not delivered after the reload: {ids:?}, received {got:?}; held: {}",
            metric(&h, "hookline_sink_held_total", &["reason=\"circuit\""]).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        pipeline_view(&h, "crm").await["stages"][1]["circuit"]["state"],
        "closed"
    );
}

/// A receiver that answers after `delay`, recording when each call arrived and the most
/// calls it had in flight at once.
struct Counting {
    addr: SocketAddr,
    arrivals: Arc<Mutex<Vec<SystemTime>>>,
    most_in_flight: Arc<AtomicUsize>,
    _task: tokio::task::JoinHandle<()>,
}

impl Counting {
    async fn start(delay: Duration) -> Counting {
        let arrivals: Arc<Mutex<Vec<SystemTime>>> = Arc::default();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (a, f, m) = (arrivals.clone(), in_flight.clone(), most.clone());
        let app = axum::Router::new().fallback(move || {
            let (a, f, m) = (a.clone(), f.clone(), m.clone());
            async move {
                a.lock().expect("lock").push(SystemTime::now());
                let now = f.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                f.fetch_sub(1, Ordering::SeqCst);
                StatusCode::OK
            }
        });
        let (addr, task) = serve_on_loopback(app).await;
        Counting {
            addr,
            arrivals,
            most_in_flight: most,
            _task: task,
        }
    }

    fn arrivals(&self) -> Vec<SystemTime> {
        self.arrivals.lock().expect("lock").clone()
    }
}

#[tokio::test]
async fn a_sink_never_exceeds_its_rate_or_concurrency_as_the_receiver_counts() {
    let fast = Counting::start(Duration::from_millis(150)).await;
    let slow = Counting::start(Duration::from_millis(10)).await;
    let h = Hookline::start(&format!(
        r#"{}
[[pipelines]]
name = "few-at-once"
source = "leadshark"
stages = [{{ sink = "http", url = "http://{}/hook", concurrency = 3 }}]

[[pipelines]]
name = "rated"
source = "leadshark"
stages = [{{ sink = "http", url = "http://{}/hook", rate = "10/s" }}]
"#,
        leadshark_source(),
        fast.addr,
        slow.addr
    ));
    let url = h.url("/webhooks/leadshark");
    let n = 40;
    let sends: Vec<_> = (0..n)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move { post_signed(&url, &sample("new.like", i)).await.status })
        })
        .collect();
    for s in sends {
        assert_eq!(s.await.expect("send"), 200);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while (fast.arrivals().len() < n as usize || slow.arrivals().len() < n as usize)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(fast.arrivals().len(), n as usize);
    assert_eq!(slow.arrivals().len(), n as usize);
    let most = fast.most_in_flight.load(Ordering::SeqCst);
    assert!(
        most <= 3,
        "{most} calls in flight at once with `concurrency = 3`"
    );
    assert!(
        most >= 2,
        "the calls did not overlap at all ({most}): the test shows nothing"
    );
    // Per second of the receiver's clock, as a receiver's own limiter counts.
    let mut per_second: HashMap<u64, usize> = HashMap::new();
    for t in slow.arrivals() {
        let s = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        *per_second.entry(s).or_default() += 1;
    }
    let busiest = per_second.values().copied().max().unwrap_or(0);
    println!("rate: per second {per_second:?}");
    assert!(
        busiest <= 10,
        "{busiest} calls in one second with `rate = \"10/s\"`"
    );
    let first = slow.arrivals().into_iter().min().expect("arrivals");
    let last = slow.arrivals().into_iter().max().expect("arrivals");
    let span = last.duration_since(first).expect("order");
    assert!(
        span >= Duration::from_millis(3500),
        "40 calls at 10/s took only {span:?}"
    );
    // Waiting for the rate is no failure: nothing was retried or dead-lettered.
    assert_eq!(
        metric(&h, "hookline_sink_retries_total", &["pipeline=\"rated\""]).await,
        0.0
    );
    assert_eq!(dead_letters(&h), 0);
}

#[tokio::test]
async fn a_paused_pipeline_journals_its_events_across_a_restart_and_delivers_them_on_resume() {
    let held = Receiver::start(vec![]).await;
    let other = Receiver::start(vec![]).await;
    let h = Hookline::start(&format!(
        r#"{}
[[pipelines]]
name = "crm"
source = "leadshark"
stages = [{{ sink = "http", url = "{}", envelope = true }}]

[[pipelines]]
name = "slack"
source = "leadshark"
stages = [{{ sink = "http", url = "{}", envelope = true }}]
"#,
        leadshark_source(),
        held.url(),
        other.url()
    ));
    // Paused from the admin API.
    let r = client()
        .post(h.admin_url("/api/v1/pipelines/crm/pause"))
        .send()
        .await
        .expect("pause");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["paused"], true);
    assert_eq!(v["changed"], true);
    let unknown = client()
        .post(h.admin_url("/api/v1/pipelines/nope/pause"))
        .send()
        .await
        .expect("pause");
    assert_eq!(unknown.status(), 404);
    let url = h.url("/webhooks/leadshark");
    let mut acked = Vec::new();
    for i in 0..10 {
        let r = post_signed(&url, &sample("new.like", i)).await;
        assert_eq!(r.status, 200);
        acked.push(r.json["id"].as_str().expect("id").to_string());
    }
    // The other pipeline is unaffected.
    wait_for_all(&other, &acked).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(held.received.lock().expect("lock").len(), 0);
    assert_eq!(pipeline_view(&h, "crm").await["paused"], true);
    assert_eq!(
        metric(&h, "hookline_pipeline_paused", &["pipeline=\"crm\""]).await,
        1.0
    );

    // A restart keeps it paused.
    let mut h = h;
    assert!(h.terminate());
    let h = Hookline::start_in(h.crash(), &[]);
    let listed = h.cli(&["pipelines", "list", "--json"]);
    assert!(listed.status.success(), "{listed:?}");
    let listed: Value = serde_json::from_slice(&listed.stdout).expect("json");
    assert_eq!(
        listed,
        json!([{"name": "crm", "paused": true}, {"name": "slack", "paused": false}])
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(held.received.lock().expect("lock").len(), 0);
    // More arrive while paused after the restart.
    for i in 10..15 {
        let r = post_signed(&h.url("/webhooks/leadshark"), &sample("new.like", i)).await;
        assert_eq!(r.status, 200);
        acked.push(r.json["id"].as_str().expect("id").to_string());
    }
    // Resumed from the CLI, beside the running service: everything is delivered.
    let out = h.cli(&["pipelines", "resume", "crm"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("resumed `crm`"));
    let counts = wait_for_all(&held, &acked).await;
    assert!(acked.iter().all(|id| counts.contains_key(id)));
    assert_eq!(pipeline_view(&h, "crm").await["paused"], false);
    let again = h.cli(&["pipelines", "resume", "crm"]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("was not paused"));
    let bad = h.cli(&["pipelines", "pause", "nope"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no pipeline `nope`"));
}

/// A receiver for ordered events: it fails the first two calls for `fail_key`'s first
/// event, and records `(key, seq)` of each call it answers 2xx, in arrival order.
struct Ordered {
    addr: SocketAddr,
    delivered: Arc<Mutex<Vec<(String, u64)>>>,
    failures: Arc<AtomicUsize>,
    _task: tokio::task::JoinHandle<()>,
}

impl Ordered {
    /// Refuses `fail_key`'s event `fail_seq` (503) until `release_after` others were
    /// delivered, whatever the time that takes: a slow machine cannot reorder the test.
    async fn start(fail_key: &'static str, fail_seq: u64, release_after: usize) -> Ordered {
        let delivered: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
        let failures = Arc::new(AtomicUsize::new(0));
        let (d, f) = (delivered.clone(), failures.clone());
        let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
            let (d, f) = (d.clone(), f.clone());
            async move {
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let p = &v["payload"];
                let key = p["data"]["lead"]["linkedin_url"]
                    .as_str()
                    .unwrap_or("?")
                    .to_string();
                let seq = p["data"]["seq"].as_u64().unwrap_or(u64::MAX);
                if key == fail_key && seq == fail_seq {
                    f.fetch_add(1, Ordering::SeqCst);
                    if d.lock().expect("lock").len() < release_after {
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                d.lock().expect("lock").push((key, seq));
                StatusCode::OK
            }
        });
        let (addr, task) = serve_on_loopback(app).await;
        Ordered {
            addr,
            delivered,
            failures,
            _task: task,
        }
    }
}

#[tokio::test]
async fn events_with_one_order_key_arrive_in_order_and_a_failing_one_holds_only_its_key() {
    // lead-a's first event fails until the other keys' twelve are delivered: they must not
    // wait for it. Retries every 300 ms, up to 40 times.
    let receiver = Ordered::start("lead-a", 0, 12).await;
    let h = Hookline::start(&format!(
        r#"{}
[[pipelines]]
name = "crm"
source = "leadshark"
order_key = "data.lead.linkedin_url"
stages = [{{ sink = "http", url = "http://{}/hook", envelope = true, retry = {{ schedule = [{}] }} }}]
"#,
        leadshark_source(),
        receiver.addr,
        vec!["\"300ms\""; 40].join(", ")
    ));
    let url = h.url("/webhooks/leadshark");
    // Interleaved keys, sent one after the other so the acceptance order is known.
    let keys = ["lead-a", "lead-b", "lead-c"];
    let per_key = 6u64;
    for i in 0..per_key {
        for (k, key) in keys.iter().enumerate() {
            let seq = i * 3 + k as u64;
            let body = if *key == "lead-a" && i == 0 {
                keyed(key, 0)
            } else {
                keyed(key, seq + 100)
            };
            let r = post_signed(&url, &body).await;
            assert_eq!(r.status, 200, "{}", r.json);
        }
    }
    let total = keys.len() * per_key as usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    while receiver.delivered.lock().expect("lock").len() < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let delivered = receiver.delivered.lock().expect("lock").clone();
    assert_eq!(delivered.len(), total, "{delivered:?}");
    for key in keys {
        let seqs: Vec<u64> = delivered
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, s)| *s)
            .collect();
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        assert_eq!(seqs, sorted, "`{key}` arrived out of order: {seqs:?}");
        assert_eq!(seqs.len(), per_key as usize, "`{key}`: {seqs:?}");
    }
    // lead-a's first event failed until the other keys were through: they did not wait for
    // it, and it did fail at least once.
    assert!(receiver.failures.load(Ordering::SeqCst) >= 1);
    let a_first = delivered
        .iter()
        .position(|(k, s)| k == "lead-a" && *s == 0)
        .expect("lead-a's first event");
    let others_before = delivered[..a_first]
        .iter()
        .filter(|(k, _)| k != "lead-a")
        .count();
    assert_eq!(
        others_before,
        2 * per_key as usize,
        "other keys waited for lead-a's failing event: {delivered:?}"
    );
    assert_eq!(dead_letters(&h), 0);
}

#[test]
fn order_key_is_refused_on_the_nats_journal_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("pipeline.toml");
    std::fs::write(
        &config,
        format!(
            r#"[storage]
backend = "nats"
[storage.nats]
url = "nats://127.0.0.1:4222"
{}
[[pipelines]]
name = "crm"
source = "leadshark"
order_key = "data.lead.linkedin_url"
stages = [{{ sink = "stdout" }}]
"#,
            leadshark_source()
        ),
    )
    .expect("write");
    let out = run_cli(&["check", "--config", config.to_str().expect("path")], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`order_key` needs the SQLite journal"),
        "{err}"
    );
}

#[tokio::test]
async fn a_backlog_behind_one_dead_destination_never_refuses_another_source() {
    // Past the 100 000 pending deliveries at which every source used to be refused.
    const BACKLOG: u64 = 100_500;
    let port = Receiver::free_port();
    let h = Hookline::start(&format!(
        r#"
[[sources]]
name = "down"
path = "/webhooks/down"
verify = {{ scheme = "leadshark", secrets = ["{SECRET}"] }}

[[sources]]
name = "up"
path = "/webhooks/up"
verify = {{ scheme = "leadshark", secrets = ["{SECRET}"] }}

[[pipelines]]
name = "crm"
source = "down"
stages = [{{ sink = "http", url = "http://127.0.0.1:{port}/hook", timeout = "1s" }}]

[[pipelines]]
name = "archive"
source = "up"
stages = [{{ sink = "file", path = "up.jsonl" }}]
"#
    ));
    let down = h.url("/webhooks/down");
    let flood = tokio::task::spawn_blocking(move || {
        run_cli(
            &[
                "send",
                "--url",
                &down,
                "--secret",
                SECRET,
                "--event",
                "new.like",
                "--count",
                &BACKLOG.to_string(),
                "--concurrency",
                "32",
                "--json",
            ],
            &[],
        )
    });
    let up = h.url("/webhooks/up");
    let mut sent_up = 0u64;
    while !flood.is_finished() {
        let r = post_signed(&up, &sample("new.comment", sent_up)).await;
        assert_eq!(
            r.status, 200,
            "the other source was refused while `crm` backed up: {}",
            r.json
        );
        sent_up += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = flood.await.expect("send");
    let sent = summary(&out);
    assert_eq!(sent["statuses"]["200"], BACKLOG, "{sent}");
    // Well past the old cap, the other source still gets 2xx and its events arrive.
    let ready = get_json(&h.admin_url("/readyz")).await;
    assert!(
        ready["pending"].as_u64().expect("pending") >= BACKLOG,
        "{ready}"
    );
    for i in 0..20 {
        let r = post_signed(&up, &sample("new.comment", 1_000_000 + i)).await;
        assert_eq!(r.status, 200, "{}", r.json);
        sent_up += 1;
    }
    let lines = wait_for_lines(&h.path("up.jsonl"), sent_up as usize).await;
    assert_eq!(lines.len() as u64, sent_up);
    println!(
        "backlog {BACKLOG} pending behind a dead sink; {sent_up} events to the other source, all 2xx"
    );
}

#[tokio::test]
async fn ingest_refuses_only_when_the_journals_disk_is_under_its_floor() {
    // No disk has 100 TiB free: the floor is always under water.
    let h = Hookline::start(&format!(
        r#"{}
[storage]
min_free_disk = "100TiB"

[[pipelines]]
name = "archive"
source = "leadshark"
stages = [{{ sink = "file", path = "out.jsonl" }}]
"#,
        leadshark_source()
    ));
    let url = h.url("/webhooks/leadshark");
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let r = post_signed(&url, &sample("new.like", 1)).await;
        if r.status == 503 || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(refused.status, 503, "{}", refused.json);
    assert_eq!(refused.headers["retry-after"], "1");
    assert!(
        refused.json["error"]
            .as_str()
            .is_some_and(|e| e.contains("min_free_disk")),
        "{}",
        refused.json
    );
    assert_eq!(
        metric(&h, "hookline_ingest_refusing", &["reason=\"disk\""]).await,
        1.0
    );
    assert!(metric(&h, "hookline_journal_disk_free_bytes", &[]).await > 0.0);
    assert!(h.log().contains("backpressure: ingest answers 503"));
}
