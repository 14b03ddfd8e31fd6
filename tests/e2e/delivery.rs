//! Delivery guarantees: a 2xx means the event is in the journal; retries are persisted;
//! what cannot be delivered becomes a dead letter that can be replayed.

use std::time::Duration;

use serde_json::Value;

use crate::support::*;

fn http_pipeline(url: &str, retry: &str) -> String {
    format!(
        r#"{}
[[pipelines]]
name = "crm"
source = "leadshark"

[[pipelines.stages]]
sink = "file"
path = "before.jsonl"

[[pipelines.stages]]
transform = "set"
fields = {{ "data.stamped" = true }}

[[pipelines.stages]]
sink = "http"
url = "{url}"
timeout = "2s"
envelope = true
retry = {retry}
"#,
        leadshark_source()
    )
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

#[tokio::test]
async fn a_retryable_failure_is_retried_until_it_succeeds() {
    let receiver = Receiver::start(vec![503, 429]).await;
    let h = Hookline::start(&http_pipeline(
        &receiver.url(),
        r#"{ attempts = 5, initial = "100ms", max = "200ms" }"#,
    ));
    assert_eq!(
        post_signed(&h.url("/webhooks/leadshark"), &sample("new.like", 1))
            .await
            .status,
        200
    );
    let got = receiver.wait_for(3).await;
    assert_eq!(got.len(), 3, "two failures, then delivered");
    let body: Value = serde_json::from_slice(&got[2].body).expect("json");
    assert_eq!(body["payload"]["data"]["stamped"], true);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.received.lock().expect("lock").len(),
        3,
        "nothing after success"
    );
    assert_eq!(
        read_lines(&h.path("before.jsonl")).len(),
        1,
        "earlier sink not repeated by retries"
    );
    assert_eq!(dead_letters(&h)["total"], 0);
    assert!(h.log().contains("will retry"));
}

#[tokio::test]
async fn exhausted_retries_dead_letter_and_replay_delivers_once_from_the_failed_stage() {
    let receiver = Receiver::start(vec![500, 500, 500]).await;
    let h = Hookline::start(&http_pipeline(
        &receiver.url(),
        r#"{ attempts = 3, initial = "50ms", max = "100ms" }"#,
    ));
    let r = post_signed(&h.url("/webhooks/leadshark"), &sample("email.captured", 2)).await;
    let id = r.json["id"].as_str().expect("id").to_string();
    assert_eq!(receiver.wait_for(3).await.len(), 3);
    let mut page = Value::Null;
    wait_until("the dead letter", || {
        page = dead_letters(&h);
        page["total"] == 1
    })
    .await;
    let dl = &page["items"][0];
    assert_eq!(dl["event_id"], id.as_str());
    assert_eq!(dl["pipeline"], "crm");
    assert_eq!(dl["stage_index"], 2);
    assert_eq!(dl["stage_name"], "http");
    assert_eq!(dl["attempts"], 3);
    assert!(dl["error"].as_str().expect("error").contains("500"), "{dl}");
    assert_eq!(
        dl["event"]["payload"]["data"]["stamped"], true,
        "the event as it entered the failed stage"
    );
    assert!(dl["first_failed_at"].is_string() && dl["last_failed_at"].is_string());

    let dl_id = dl["id"].as_str().expect("id").to_string();
    let out = h.cli(&["dlq", "show", &dl_id]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"stage_name\": \"http\""));

    let out = h.cli(&["dlq", "replay", &dl_id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = receiver.wait_for(4).await;
    assert_eq!(got.len(), 4, "replayed once, and delivered");
    let body: Value = serde_json::from_slice(&got[3].body).expect("json");
    assert_eq!(body["id"], id.as_str());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.received.lock().expect("lock").len(),
        4,
        "delivered exactly once after replay"
    );
    assert_eq!(
        read_lines(&h.path("before.jsonl")).len(),
        1,
        "the earlier sink was not hit again"
    );
    assert_eq!(dead_letters(&h)["total"], 0);
    let out = h.cli(&["dlq", "list", "--json", "--include-replayed"]);
    let all: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(all["items"][0]["state"], "replayed");
    // Replaying again is refused: it would deliver twice.
    assert!(!h.cli(&["dlq", "replay", &dl_id]).status.success());
}

#[tokio::test]
async fn a_fatal_4xx_dead_letters_at_once_and_the_admin_api_manages_it() {
    let receiver = Receiver::start(vec![400, 422]).await;
    let h = Hookline::start(&http_pipeline(
        &receiver.url(),
        r#"{ attempts = 8, initial = "50ms", max = "100ms" }"#,
    ));
    let url = h.url("/webhooks/leadshark");
    post_signed(&url, &sample("new.comment", 1)).await;
    post_signed(&url, &sample("new.comment", 2)).await;
    let c = client();
    let mut page = Value::Null;
    for _ in 0..200 {
        page = c
            .get(h.admin_url("/api/v1/dead-letters"))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        if page["total"] == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(page["total"], 2, "{page}");
    assert_eq!(
        receiver.received.lock().expect("lock").len(),
        2,
        "no retries after a 4xx"
    );
    assert_eq!(page["items"][0]["attempts"], 1);

    let filtered: Value = c
        .get(h.admin_url("/api/v1/dead-letters?reason=422&limit=1"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(filtered["total"], 1);
    let first = page["items"][0]["id"].as_str().expect("id").to_string();
    let second = page["items"][1]["id"].as_str().expect("id").to_string();
    let one: Value = c
        .get(h.admin_url(&format!("/api/v1/dead-letters/{first}")))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(one["id"], first.as_str());
    let missing = c
        .get(h.admin_url("/api/v1/dead-letters/nope"))
        .send()
        .await
        .expect("get");
    assert_eq!(missing.status(), 404);

    let replay = c
        .post(h.admin_url(&format!("/api/v1/dead-letters/{first}/replay")))
        .send()
        .await
        .expect("post");
    assert_eq!(replay.status(), 202);
    assert_eq!(
        receiver.wait_for(3).await.len(),
        3,
        "replayed delivery arrives"
    );
    let again = c
        .post(h.admin_url(&format!("/api/v1/dead-letters/{first}/replay")))
        .send()
        .await
        .expect("post");
    assert_eq!(again.status(), 409);

    let refused = c
        .delete(h.admin_url("/api/v1/dead-letters"))
        .send()
        .await
        .expect("delete");
    assert_eq!(
        refused.status(),
        400,
        "an unfiltered purge must say all=true"
    );
    let deleted = c
        .delete(h.admin_url(&format!("/api/v1/dead-letters/{second}")))
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), 204);
    let gone = c
        .get(h.admin_url(&format!("/api/v1/dead-letters/{second}")))
        .send()
        .await
        .expect("get");
    assert_eq!(gone.status(), 404);
    let health = c.get(h.admin_url("/healthz")).send().await.expect("get");
    assert_eq!(health.status(), 200);
    let ready: Value = c
        .get(h.admin_url("/readyz"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(ready["status"], "ready");
}

#[tokio::test]
async fn a_duplicate_body_is_answered_with_the_first_id_and_not_processed() {
    let config = format!(
        "{}\n[[pipelines]]\nname = \"all\"\nsource = \"leadshark\"\nstages = [{{ sink = \"file\", path = \"all.jsonl\" }}]\n",
        leadshark_source()
    );
    let h = Hookline::start(&config);
    let url = h.url("/webhooks/leadshark");
    let body = sample("new.like", 5);
    let first = post_signed(&url, &body).await;
    let second = post_signed(&url, &body).await;
    assert_eq!(first.status, 200);
    assert_eq!(second.status, 200);
    assert_eq!(second.json["id"], first.json["id"]);
    assert_eq!(second.json["duplicate"], true);
    // The same event pretty-printed is the same signed delivery.
    let pretty = serde_json::to_string_pretty(&serde_json::from_str::<Value>(&body).expect("json"))
        .expect("pretty");
    let sig = sign(SECRET, body.as_bytes());
    let third = post(&url, pretty, &[("x-webhook-signature", &sig)]).await;
    assert_eq!(third.json["id"], first.json["id"]);
    wait_for_lines(&h.path("all.jsonl"), 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(read_lines(&h.path("all.jsonl")).len(), 1);
}

#[tokio::test]
async fn backpressure_answers_503_with_retry_after_and_keeps_what_it_accepted() {
    let receiver = Receiver::start(vec![503; 10]).await;
    let h = Hookline::start_with(
        &http_pipeline(
            &receiver.url(),
            r#"{ attempts = 10, initial = "1h", max = "2h" }"#,
        ),
        "",
        &[],
    );
    // Only one pending delivery allowed.
    std::fs::write(
        &h.config_path,
        std::fs::read_to_string(&h.config_path)
            .expect("read")
            .replace("[admin]", "[storage]\nmax_pending = 1\n\n[admin]"),
    )
    .expect("write");
    let dir = h.crash();
    let mut h = Hookline::start_in(dir, &[]);
    let url = h.url("/webhooks/leadshark");
    let first = post_signed(&url, &sample("new.like", 1)).await;
    assert_eq!(first.status, 200);
    receiver.wait_for(1).await;
    let second = post_signed(&url, &sample("new.like", 2)).await;
    assert_eq!(second.status, 503, "{}", second.json);
    assert_eq!(second.headers["retry-after"], "1");
    assert!(
        second.json["error"]
            .as_str()
            .expect("error")
            .contains("retry")
    );
    // The accepted one is still pending in the journal, waiting for its retry.
    let ready: Value = client()
        .get(h.admin_url("/readyz"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(ready["pending"], 1);
    assert!(h.terminate());
}

#[tokio::test]
async fn a_journal_that_cannot_be_used_stops_start_up_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("dir");
    let config = |db: &str| {
        config_text(
            &format!("[storage]\npath = \"{db}\"\n{}", leadshark_source()),
            "",
        ) + "\n[[pipelines]]\nname = \"p\"\nsource = \"leadshark\"\nstages = [{ sink = \"stdout\" }]\n"
    };
    let serve = |text: String| {
        let path = dir.path().join("pipeline.toml");
        std::fs::write(&path, text).expect("write");
        run_cli(&["serve", "--config", path.to_str().expect("utf-8")], &[])
    };
    std::fs::write(dir.path().join("garbage.db"), vec![b'x'; 4096]).expect("write");
    let out = serve(config("garbage.db"));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a database"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    std::fs::create_dir(dir.path().join("a-directory.db")).expect("mkdir");
    let out = serve(config("a-directory.db"));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot open the journal"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Another hookline holds the journal.
    let h = Hookline::start(&format!(
        "{}\n[[pipelines]]\nname = \"p\"\nsource = \"leadshark\"\nstages = [{{ sink = \"stdout\" }}]\n",
        leadshark_source()
    ));
    let out = run_cli(
        &["serve", "--config", h.config_path.to_str().expect("utf-8")],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use by another hookline"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_retry_wait_survives_a_crash_and_a_removed_pipeline_dead_letters() {
    let port = Receiver::free_port();
    let h = Hookline::start(&http_pipeline(
        &format!("http://127.0.0.1:{port}/down"),
        r#"{ attempts = 5, initial = "3s", max = "3s" }"#,
    ));
    let r = post_signed(&h.url("/webhooks/leadshark"), &sample("new.like", 1)).await;
    let id = r.json["id"].as_str().expect("id").to_string();
    wait_until("the first attempt", || h.log().contains("will retry")).await;
    let dir = h.crash();
    let path = dir.path().join("pipeline.toml");
    let text = std::fs::read_to_string(&path)
        .expect("read")
        .replace("name = \"crm\"", "name = \"renamed\"");
    std::fs::write(&path, text).expect("write");
    let h = Hookline::start_in(dir, &[]);
    let ready: Value = client()
        .get(h.admin_url("/readyz"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(ready["pending"], 1, "the retry survived the crash");
    // When the persisted retry comes due, its pipeline is gone: a dead letter, not a loss.
    let mut page = Value::Null;
    wait_until("the dead letter", || {
        page = dead_letters(&h);
        page["total"] == 1
    })
    .await;
    assert_eq!(page["items"][0]["event_id"], id.as_str());
    assert!(
        page["items"][0]["error"]
            .as_str()
            .expect("error")
            .contains("no longer exists"),
        "{page}"
    );
}

#[tokio::test]
async fn every_acknowledged_event_survives_kill_9_and_reaches_the_receiver() {
    let port = Receiver::free_port();
    let h = Hookline::start(&format!(
        r#"{}
[[pipelines]]
name = "crm"
source = "leadshark"
stages = [{{ sink = "http", url = "http://127.0.0.1:{port}/leads", envelope = true, timeout = "2s", retry = {{ attempts = 1000, initial = "100ms", max = "300ms" }} }}]
"#,
        leadshark_source()
    ));
    // Send while the receiver is down; kill -9 the service mid-stream, once a good share of
    // the 4000 requests has been acknowledged.
    let load = Load::start(&h.url("/webhooks/leadshark"), "email.captured", 16, 250);
    wait_until("400 acknowledged events", || load.acked() >= 400).await;
    let dir = h.crash();
    let acked = load.finish().await;

    // Restart, then bring the receiver up.
    let _h = Hookline::start_in(dir, &[]);
    let receiver = Receiver::start_on(port, vec![]).await;
    let counts = wait_for_all(&receiver, &acked).await;
    let lost: Vec<&String> = acked
        .iter()
        .filter(|id| !counts.contains_key(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        lost.len(),
        lost.iter().take(5).collect::<Vec<_>>()
    );
}
