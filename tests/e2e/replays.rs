//! Bulk replay jobs (`/api/v1/replays`, `hookline events replay` without an id) and
//! unprocessable requests re-run through ingest (`/api/v1/requests`), over a real service
//! delivering to a loopback receiver.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

/// `email.captured` sample `i` whose lead's email is `email`.
fn lead(i: u64, email: &str) -> String {
    let mut v: Value = serde_json::from_str(&sample("email.captured", i)).expect("json");
    v["data"]["lead"]["email"] = json!(email);
    v.to_string()
}

/// A leadshark source whose events go to `archive` (a file); `crm` (an HTTP sink to `url`)
/// takes only `new.like`, so what reaches it of `email.captured` is what a replay sends.
fn config(url: &str) -> String {
    format!(
        r#"{}
[[pipelines]]
name = "archive"
source = "leadshark"
stages = [{{ sink = "file", path = "archive.jsonl" }}]

[[pipelines]]
name = "crm"
source = "leadshark"
events = ["new.like"]
stages = [{{ sink = "http", url = "{url}", envelope = true, timeout = "10s" }}]
"#,
        leadshark_source()
    )
}

/// Send `n` leads, every third at `@acme.com`; returns (all ids, the acme ones).
async fn send_leads(h: &Hookline, n: u64) -> (Vec<String>, Vec<String>) {
    let url = h.url("/webhooks/leadshark");
    let (mut all, mut acme) = (Vec::new(), Vec::new());
    for i in 0..n {
        let email = if i % 3 == 0 {
            format!("p{i}@acme.com")
        } else {
            format!("p{i}@example.com")
        };
        let r = post_signed(&url, &lead(i, &email)).await;
        assert_eq!(r.status, 200, "{}", r.json);
        let id = r.json["id"].as_str().expect("id").to_string();
        if i % 3 == 0 {
            acme.push(id.clone());
        }
        all.push(id);
    }
    (all, acme)
}

async fn create_job(h: &Hookline, query: &str) -> Value {
    let r = client()
        .post(h.admin_url(&format!("/api/v1/replays?{query}")))
        .send()
        .await
        .expect("post");
    let r = reply(r).await;
    assert_eq!(r.status, 202, "{}", r.json);
    r.json
}

async fn job(h: &Hookline, id: &str) -> Value {
    get_json(&h.admin_url(&format!("/api/v1/replays/{id}"))).await
}

/// Poll the job until `done(job)`, for at most `secs`.
async fn wait_job(h: &Hookline, id: &str, secs: u64, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let j = job(h, id).await;
        if done(&j) {
            return j;
        }
        assert!(Instant::now() < deadline, "job did not get there: {j}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Pause or resume the `crm` pipeline.
async fn crm(h: &Hookline, verb: &str) {
    let r = reply(
        client()
            .post(h.admin_url(&format!("/api/v1/pipelines/crm/{verb}")))
            .send()
            .await
            .expect(verb),
    )
    .await;
    assert_eq!(r.status, 200, "{verb}: {}", r.json);
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// A receiver that takes `delay` over each request, recording the event ids it got.
async fn slow_receiver(delay: Duration) -> (String, Arc<Mutex<Vec<String>>>, impl Drop) {
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = got.clone();
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let seen = seen.clone();
        async move {
            tokio::time::sleep(delay).await;
            if let Some(id) = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["id"].as_str().map(str::to_string))
            {
                seen.lock().expect("lock").push(id);
            }
            "ok"
        }
    });
    let (addr, task) = serve_on_loopback(app).await;
    struct Abort(tokio::task::JoinHandle<()>);
    impl Drop for Abort {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    (format!("http://{addr}/hook"), got, Abort(task))
}

#[tokio::test]
async fn a_bulk_replay_by_a_filter_reaches_the_receiver_for_exactly_the_matching_events() {
    let receiver = Receiver::start(vec![]).await;
    let h = Hookline::start(&config(&receiver.url()));
    let (_, acme) = send_leads(&h, 9).await;
    let q: String =
        url::form_urlencoded::byte_serialize(br#"payload.data.lead.email.endsWith("@acme.com")"#)
            .collect();
    let created = create_job(
        &h,
        &format!("pipeline=crm&type=email.captured&q={q}&batch=2"),
    )
    .await;
    let id = created["id"].as_str().expect("id").to_string();
    assert_eq!(created["state"], "running", "{created}");
    assert_eq!(created["pipeline"], "crm");
    let done = wait_job(&h, &id, 30, |j| j["state"] != "running").await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(
        (
            done["matched_so_far"].clone(),
            done["replayed"].clone(),
            done["skipped"].clone()
        ),
        (json!(3), json!(3), json!(0)),
        "{done}"
    );
    assert_eq!(
        done["filter"]["q"],
        r#"payload.data.lead.email.endsWith("@acme.com")"#
    );
    assert!(done["finished_at"].is_string(), "{done}");
    receiver.wait_for(3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counts = received_ids(&receiver);
    assert_eq!(
        sorted(counts.keys().cloned().collect()),
        sorted(acme.clone()),
        "exactly the matching events"
    );
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    // Listed, newest first.
    let jobs = get_json(&h.admin_url("/api/v1/replays")).await;
    assert_eq!(jobs["items"][0]["id"], id.as_str(), "{jobs}");
    // Refused at once: a pipeline that does not exist, a bad filter.
    let r = reply(
        client()
            .post(h.admin_url("/api/v1/replays?pipeline=nope"))
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.json);
    let r = reply(
        client()
            .post(h.admin_url("/api/v1/replays?pipeline=crm&outcome=lost"))
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.json);
    let r = reply(
        client()
            .get(h.admin_url("/api/v1/replays/nope"))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn cancel_stops_a_long_job_and_its_counts_stop() {
    let (url, got, _server) = slow_receiver(Duration::from_millis(150)).await;
    let h = Hookline::start(&config(&url));
    let (all, _) = send_leads(&h, 60).await;
    // Two at a time, waiting while two are pending: about 60 × 150 ms.
    let created = create_job(&h, "pipeline=crm&batch=2&max_pending=2").await;
    let id = created["id"].as_str().expect("id").to_string();
    wait_job(&h, &id, 30, |j| j["replayed"].as_u64() >= Some(4)).await;
    let r = reply(
        client()
            .delete(h.admin_url(&format!("/api/v1/replays/{id}")))
            .send()
            .await
            .expect("delete"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["state"], "cancelled", "{}", r.json);
    let at_cancel = job(&h, &id).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = job(&h, &id).await;
    assert_eq!(later["state"], "cancelled");
    assert_eq!(later["replayed"], at_cancel["replayed"], "{later}");
    assert_eq!(later["matched_so_far"], at_cancel["matched_so_far"]);
    let replayed = later["replayed"].as_u64().expect("replayed");
    assert!(replayed < all.len() as u64, "the job went on: {later}");
    // What was replayed is delivered; nothing more.
    let deadline = Instant::now() + Duration::from_secs(30);
    while (got.lock().expect("lock").len() as u64) < replayed && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(got.lock().expect("lock").len() as u64, replayed);
    // Cancelling twice is harmless; the POST form works too.
    let r = reply(
        client()
            .post(h.admin_url(&format!("/api/v1/replays/{id}/cancel")))
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_eq!(
        (r.status, r.json["state"].clone()),
        (200, json!("cancelled"))
    );
}

/// `kill -9` while a job runs: the restarted service resumes it from its stored cursor,
/// and every matching event is replayed, and delivered, exactly once. The pipeline is
/// paused meanwhile so that no delivery is cut off by the kill (that would be redelivered:
/// at-least-once), which leaves the job waiting for room, mid-way.
#[tokio::test]
async fn a_job_survives_kill_9_and_replays_every_event_exactly_once() {
    let receiver = Receiver::start(vec![]).await;
    let h = Hookline::start(&config(&receiver.url()));
    let (all, _) = send_leads(&h, 30).await;
    crm(&h, "pause").await;
    let created = create_job(
        &h,
        "pipeline=crm&type=email.captured&batch=4&max_pending=10",
    )
    .await;
    let id = created["id"].as_str().expect("id").to_string();
    let mid = wait_job(&h, &id, 30, |j| j["replayed"].as_u64() >= Some(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mid_after = job(&h, &id).await;
    assert_eq!(mid_after["state"], "running", "{mid_after}");
    assert_eq!(mid_after["replayed"], mid["replayed"], "it waits for room");
    let dir = h.crash();
    let h = Hookline::start_in(dir, &[]);
    let resumed = job(&h, &id).await;
    assert_eq!(resumed["state"], "running", "{resumed}");
    assert_eq!(resumed["replayed"], mid["replayed"], "{resumed}");
    crm(&h, "resume").await;
    let done = wait_job(&h, &id, 60, |j| j["state"] != "running").await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(
        (done["matched_so_far"].clone(), done["replayed"].clone()),
        (json!(30), json!(30)),
        "{done}"
    );
    let counts = wait_for_all(&receiver, &all).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counts = {
        let again = received_ids(&receiver);
        assert_eq!(again, counts, "deliveries went on after all had arrived");
        again
    };
    assert_eq!(counts.len(), all.len(), "{counts:?}");
    assert!(
        counts.values().all(|n| *n == 1),
        "an event was replayed more than once: {counts:?}"
    );
}

#[tokio::test]
async fn the_cli_creates_and_follows_a_job() {
    let receiver = Receiver::start(vec![]).await;
    let h = Hookline::start(&config(&receiver.url()));
    let (_, acme) = send_leads(&h, 6).await;
    let config = h.config_path.to_str().expect("utf-8").to_string();
    let out = tokio::task::spawn_blocking(move || {
        run_cli(
            &[
                "events",
                "replay",
                "--pipeline",
                "crm",
                "-q",
                r#"payload.data.lead.email.endsWith("@acme.com")"#,
                "--batch",
                "1",
                "--json",
                "--config",
                &config,
            ],
            &[],
        )
    })
    .await
    .expect("cli");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let finished = summary(&out);
    assert_eq!(finished["state"], "done", "{finished}");
    assert_eq!(finished["replayed"], 2, "{finished}");
    // Not a terminal: a plain line per batch on stderr.
    assert!(stderr.contains("replayed 1"), "{stderr}");
    assert!(stderr.contains("done: matched 2"), "{stderr}");
    receiver.wait_for(2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        sorted(received_ids(&receiver).keys().cloned().collect()),
        sorted(acme)
    );
    let jobs = h.cli(&["events", "jobs"]);
    let text = String::from_utf8_lossy(&jobs.stdout);
    assert!(text.contains("done") && text.contains("into crm"), "{text}");
    let id = finished["id"].as_str().expect("id");
    let cancel = h.cli(&["events", "cancel", id]);
    assert!(!cancel.status.success(), "a finished job is not cancelled");
}

fn acme_config(event_field: &str, url: &str) -> String {
    format!(
        r#"{}
[[pipelines]]
name = "orders"
source = "acme"
stages = [{{ sink = "http", url = "{url}", envelope = true, timeout = "5s" }}]
"#,
        acme_source(event_field, "")
    )
}

/// A genuine request the config cannot process (its `event_field` is not in the body) is
/// kept and listed with its reason; re-run under the same config it is still refused (422);
/// after a reload that points `event_field` at the body's field, a re-run delivers it once,
/// and a second re-run delivers nothing more.
#[tokio::test]
async fn an_unprocessable_request_is_listed_and_rerun_once_the_config_can_process_it() {
    let receiver = Receiver::start(vec![]).await;
    let h = Hookline::start(&acme_config("kind", &receiver.url()));
    let body = r#"{"type":"order.paid","order":{"id":7}}"#;
    let sig = sign(ACME_SECRET, body.as_bytes());
    let r = post(
        &h.url("/webhooks/acme"),
        body,
        &[("x-acme-signature", &sig), ("x-acme-trace", "t-1")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.json);
    let id = r.json["id"].as_str().expect("id").to_string();

    let list = get_json(&h.admin_url("/api/v1/requests")).await;
    let item = &list["items"][0];
    assert_eq!(item["id"], id.as_str(), "{list}");
    assert_eq!(item["source"], "acme");
    assert_eq!(item["state"], "unprocessable");
    assert!(
        item["reason"].as_str().expect("reason").contains("kind"),
        "{item}"
    );
    let shown = get_json(&h.admin_url(&format!("/api/v1/requests/{id}"))).await;
    assert_eq!(shown["body"], body, "{shown}");
    let headers = shown["headers"].as_array().expect("headers");
    assert!(headers.contains(&json!(["x-acme-trace", "t-1"])), "{shown}");
    assert!(
        !headers.iter().any(|h| h[0] == "x-acme-signature"),
        "signature headers are never kept: {shown}"
    );

    let rerun = || async {
        reply(
            client()
                .post(h.admin_url(&format!("/api/v1/requests/{id}/rerun")))
                .send()
                .await
                .expect("rerun"),
        )
        .await
    };
    let refused = rerun().await;
    assert_eq!(refused.status, 422, "{}", refused.json);
    assert!(
        refused.json["error"]
            .as_str()
            .expect("error")
            .contains("kind"),
        "{}",
        refused.json
    );
    assert!(received_ids(&receiver).is_empty());

    std::fs::write(
        &h.config_path,
        config_text(&acme_config("type", &receiver.url()), ""),
    )
    .expect("rewrite config");
    let reloaded = reply(
        client()
            .post(h.admin_url("/api/v1/reload"))
            .send()
            .await
            .expect("reload"),
    )
    .await;
    assert_eq!(reloaded.status, 200, "{}", reloaded.json);

    let done = rerun().await;
    assert_eq!(done.status, 200, "{}", done.json);
    assert_eq!(done.json["rerun"], true, "{}", done.json);
    let event_id = done.json["event_id"]
        .as_str()
        .expect("event id")
        .to_string();
    let got = receiver.wait_for(1).await;
    assert_eq!(got.len(), 1);
    let delivered: Value = serde_json::from_slice(&got[0].body).expect("json");
    assert_eq!(delivered["id"], event_id.as_str(), "{delivered}");
    assert_eq!(delivered["type"], "order.paid", "{delivered}");

    let again = rerun().await;
    assert_eq!(again.status, 200, "{}", again.json);
    assert_eq!(
        (
            again.json["already"].clone(),
            again.json["event_id"].clone()
        ),
        (json!(true), json!(event_id)),
        "{}",
        again.json
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(receiver.received.lock().expect("lock").len(), 1);
    let shown = get_json(&h.admin_url(&format!("/api/v1/requests/{id}"))).await;
    assert_eq!(
        (shown["state"].clone(), shown["event_id"].clone()),
        (json!("rerun"), json!(event_id))
    );
    let event = get_json(&h.admin_url(&format!("/api/v1/events/{event_id}"))).await;
    assert_eq!(event["source"], "acme", "{event}");
    // The CLI sees it too.
    let out = h.cli(&["events", "requests"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&id) && text.contains("rerun"), "{text}");
    let out = h.cli(&["events", "rerun", &id]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("re-run before"),
        "{text}"
    );
}

/// Ctrl-C in `hookline events replay` stops between batches and lets the job go, running at
/// its cursor; the running service takes it over and finishes it, each event once.
#[tokio::test]
async fn ctrl_c_leaves_a_cli_job_to_the_running_service() {
    let receiver = Receiver::start(vec![]).await;
    let h = Hookline::start(&config(&receiver.url()));
    let (all, _) = send_leads(&h, 12).await;
    crm(&h, "pause").await;
    let cli = std::process::Command::new(bin())
        .args(["events", "replay", "--pipeline", "crm", "--batch", "2"])
        .args(["--max-pending", "4", "--config"])
        .arg(&h.config_path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the CLI");
    // The CLI holds the job and waits for room in the paused pipeline.
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        let jobs = get_json(&h.admin_url("/api/v1/replays")).await;
        let j = &jobs["items"][0];
        if j["replayed"].as_u64() >= Some(4) {
            let owner = j["lease_owner"].as_str().unwrap_or_default();
            assert!(owner.starts_with("cli:"), "{j}");
            break j["id"].as_str().expect("id").to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the CLI's job made no progress: {jobs}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let status = std::process::Command::new("kill")
        .arg("-INT")
        .arg(cli.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
    let out = tokio::task::spawn_blocking(move || cli.wait_with_output())
        .await
        .expect("join")
        .expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("stays running"), "{stderr}");
    // The service takes it over at once and, once the pipeline runs, finishes it.
    let taken = wait_job(&h, &id, 10, |j| {
        j["lease_owner"]
            .as_str()
            .is_some_and(|o| o.starts_with("serve:"))
    })
    .await;
    assert_eq!(taken["state"], "running", "{taken}");
    crm(&h, "resume").await;
    let done = wait_job(&h, &id, 60, |j| j["state"] != "running").await;
    assert_eq!(
        (done["state"].clone(), done["replayed"].clone()),
        (json!("done"), json!(12)),
        "{done}"
    );
    let counts = wait_for_all(&receiver, &all).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(received_ids(&receiver), counts);
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
}
