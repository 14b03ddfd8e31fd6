//! Delivery guarantees: a 2xx means the event is in the journal; retries are persisted;
//! what cannot be delivered becomes a dead letter that can be replayed.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::history::outcome;
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

    // Not a bare `422`: the reason names the receiver's address, whose port may hold it.
    let filtered: Value = c
        .get(h.admin_url("/api/v1/dead-letters?reason=answered%20422&limit=1"))
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

/// An event's runs through its pipelines share one task and settle together when they end
/// together; a pipeline whose sink hangs does not hold back the settle of the others.
#[tokio::test]
async fn a_hanging_sink_does_not_hold_back_the_outcome_of_the_events_other_pipelines() {
    // A peer that takes the connection and never answers.
    let hang = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let h = Hookline::start(&format!(
        r#"{}
[[pipelines]]
name = "archive"
source = "leadshark"
stages = [{{ sink = "file", path = "archive.jsonl" }}]

[[pipelines]]
name = "likes"
source = "leadshark"
stages = [
  {{ filter = "event", events = ["new.like"] }},
  {{ sink = "file", path = "likes.jsonl" }},
]

[[pipelines]]
name = "hung"
source = "leadshark"
stages = [{{ sink = "http", url = "http://{}/", timeout = "60s" }}]
"#,
        leadshark_source(),
        hang.local_addr().expect("addr"),
    ));
    let r = post_signed(&h.url("/webhooks/leadshark"), &sample("email.captured", 1)).await;
    assert_eq!(r.status, 200, "{}", r.json);
    let id = r.json["id"].as_str().expect("id").to_string();
    wait_for_lines(&h.path("archive.jsonl"), 1).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let event = loop {
        let e = get_json(&h.admin_url(&format!("/api/v1/events/{id}"))).await;
        if e["pipelines"].as_array().is_some_and(|p| {
            p.iter()
                .any(|p| p["pipeline"] == "archive" && p["outcome"] == "delivered")
        }) {
            break e;
        }
        assert!(
            Instant::now() < deadline,
            "the archive's outcome was not recorded: {e}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(outcome(&event, "likes")["outcome"], "dropped", "{event}");
    // Still in its first run: in flight, with no attempt recorded. Also once the run is
    // older than 250 ms and has a delivery row of its own: waiting untried is not retrying.
    let hung = outcome(&event, "hung");
    assert_eq!(hung["outcome"], "in_flight", "{event}");
    assert_eq!(hung["attempts"], 0, "still in its first attempt: {event}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let event = get_json(&h.admin_url(&format!("/api/v1/events/{id}"))).await;
    let hung = outcome(&event, "hung");
    assert_eq!(hung["outcome"], "in_flight", "past 250 ms: {event}");
    assert_eq!(hung["attempts"], 0, "{event}");
    drop(hang);
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

/// Two pipelines whose retries wait at their `http` stage (stage 2); `moved` and `removed`
/// are what the config puts after it (`HTTP` stands for that stage). Pipelines only: the
/// caller adds the rest of the config.
fn two_waiting_pipelines(url: &str, moved: &str, removed: &str) -> String {
    let pipeline = |name: &str, after: &str| {
        format!(
            r#"
[[pipelines]]
name = "{name}"
source = "leadshark"
stages = [
  {{ sink = "file", path = "before-{name}.jsonl" }},
  {{ transform = "set", fields = {{ "data.stamped" = true }} }},
  {after}
]
"#
        )
    };
    let http = format!(
        r#"{{ sink = "http", url = "{url}", timeout = "2s", retry = {{ attempts = 5, initial = "2s", max = "2s" }} }}"#
    );
    format!(
        "{}{}",
        pipeline("moved", &moved.replace("HTTP", &http)),
        pipeline("removed", &removed.replace("HTTP", &http))
    )
}

/// The event `id` from the admin API once each of `outcomes` (pipeline, outcome) holds;
/// fails after 30 s with the last answer.
async fn event_once(h: &Hookline, id: &str, outcomes: &[(&str, &str)]) -> Value {
    let url = h.admin_url(&format!("/api/v1/events/{id}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let event = get_json(&url).await;
        let holds = |(name, state): &(&str, &str)| {
            event["pipelines"].as_array().is_some_and(|ps| {
                ps.iter()
                    .any(|p| p["pipeline"] == *name && p["outcome"] == *state)
            })
        };
        if outcomes.iter().all(holds) {
            return event;
        }
        assert!(Instant::now() < deadline, "{event}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A retry waits at its stage by name, not by position: restarted on a config that puts a
/// stage in front of it, it resumes at that same stage (the new one does not see it, the
/// earlier ones do not run again); when its stage is gone, it becomes a dead letter naming
/// the stage, never a run of whichever stage now has its position. `config` makes the
/// whole `pipeline.toml` from the pipelines: it picks the journal.
pub(crate) async fn a_waiting_retry_resumes_at_its_stage_by_name(config: impl Fn(&str) -> String) {
    let receiver = Receiver::start(vec![503, 503]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |pipelines: String| {
        std::fs::write(dir.path().join("pipeline.toml"), config(&pipelines)).expect("write")
    };
    write(two_waiting_pipelines(&receiver.url(), "HTTP", "HTTP"));
    let h = Hookline::start_in(dir, &[]);
    let r = post_signed(&h.url("/webhooks/leadshark"), &sample("new.like", 1)).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let id = r.json["id"].as_str().expect("id").to_string();
    // Both retries stored (not just logged: a crash before the settle commits would run
    // the first run again, from the first stage, as at-least-once allows).
    event_once(&h, &id, &[("moved", "retrying"), ("removed", "retrying")]).await;
    // NATS acknowledges the original message just after recording the retry.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dir = h.crash();
    assert_eq!(receiver.received.lock().expect("lock").len(), 2);
    std::fs::write(
        dir.path().join("pipeline.toml"),
        config(&two_waiting_pipelines(
            &receiver.url(),
            r#"{ sink = "file", name = "audit", path = "audit.jsonl" }, HTTP"#,
            r#"{ sink = "file", name = "other", path = "other.jsonl" }"#,
        )),
    )
    .expect("write");
    let h = Hookline::start_in(dir, &[]);
    let got = receiver.wait_for(3).await;
    assert_eq!(got.len(), 3, "the retry in `moved` reached its http stage");
    let body: Value = serde_json::from_slice(&got[2].body).expect("json");
    assert_eq!(body["data"]["stamped"], true, "{body}");
    assert_eq!(
        read_lines(&h.path("audit.jsonl")).len(),
        0,
        "the stage inserted at the retry's old position ran it"
    );
    let mut page = Value::Null;
    wait_until("the dead letter of `removed`", || {
        page = dead_letters(&h);
        page["total"] == 1
    })
    .await;
    let letter = &page["items"][0];
    assert_eq!(letter["event_id"], id.as_str());
    assert_eq!(letter["pipeline"], "removed");
    assert_eq!(letter["stage_name"], "http", "{letter}");
    let error = letter["error"].as_str().expect("error");
    assert!(
        error.contains("the stage `http`") && error.contains("no longer in pipeline `removed`"),
        "{error}"
    );
    // The event's history says so too: not retrying for ever, but dead at `http`.
    let event = event_once(&h, &id, &[("removed", "dead_lettered")]).await;
    let removed = outcome(&event, "removed");
    assert_eq!(removed["stage_name"], "http", "{event}");
    assert_eq!(
        removed["attempts"], 2,
        "the failed attempt and the dead one: {event}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received.lock().expect("lock").len(), 3);
    for file in ["audit.jsonl", "other.jsonl"] {
        assert_eq!(
            read_lines(&h.path(file)).len(),
            0,
            "{file}: a stage at the retry's old position ran it"
        );
    }
    for name in ["moved", "removed"] {
        assert_eq!(
            read_lines(&h.path(&format!("before-{name}.jsonl"))).len(),
            1,
            "{name}: the stages before the retry's did not run again"
        );
    }
}

#[tokio::test]
async fn a_waiting_retry_resumes_at_its_stage_when_a_reload_moves_or_removes_it() {
    a_waiting_retry_resumes_at_its_stage_by_name(|pipelines| {
        config_text(&format!("{}{pipelines}", leadshark_source()), "")
    })
    .await;
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
    wait_until("1000 acknowledged events", || load.acked() >= 1000).await;
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

#[tokio::test]
async fn unprocessable_events_and_plugin_errors_become_dead_letters_the_cli_can_filter_replay_and_purge()
 {
    let receiver = Receiver::start(vec![]).await;
    let h = Hookline::start(&format!(
        r#"{}
[[pipelines]]
name = "crm"
source = "leadshark"
events = ["email.captured"]
stages = [
  {{ transform = "template", strict = true, template = '{{"campaign": "{{{{ payload.data.automation.name }}}}"}}' }},
  {{ sink = "http", url = "{}" }},
]

[[pipelines]]
name = "likes"
source = "leadshark"
events = ["new.like"]
stages = [{{ filter = "cel", expr = "payload.data.lead.missing == 'x'" }}, {{ sink = "file", path = "likes.jsonl" }}]
"#,
        leadshark_source(),
        receiver.url()
    ));
    let url = h.url("/webhooks/leadshark");
    // LeadShark documents data.lead.email as required on email.captured: signed but
    // unprocessable, so a 200 and a dead letter with the raw body.
    let no_email = serde_json::json!({"event": "email.captured", "timestamp": "2026-05-09T10:00:00Z", "data": {"lead": {"name": "No Email"}}}).to_string();
    assert_eq!(post_signed(&url, &no_email).await.status, 200);
    // v2 with a null automation: the strict template fails — a plugin error.
    let v2 = serde_json::json!({"event": "email.captured", "payload_version": 2, "data": {"lead": {"name": "A", "email": "a@b.io"}, "automation": null}}).to_string();
    assert_eq!(post_signed(&url, &v2).await.status, 200);
    // A CEL error (missing key without has()) on three likes.
    for i in 0..3 {
        assert_eq!(post_signed(&url, &sample("new.like", i)).await.status, 200);
    }
    let mut page = Value::Null;
    for _ in 0..200 {
        page = dead_letters(&h);
        if page["total"] == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(page["total"], 5, "{page:#}\n{}", h.log());
    let errors: Vec<&str> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|d| d["error"].as_str().expect("error"))
        .collect();
    assert!(
        errors.iter().any(|e| e.contains("data.lead.email")),
        "{errors:?}"
    );
    assert!(
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|d| d["raw"] == no_email.as_str())
    );

    let list = |args: &[&str]| -> Value {
        let mut all = vec!["dlq", "list", "--json"];
        all.extend_from_slice(args);
        let out = h.cli(&all);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("json")
    };
    assert_eq!(list(&["--pipeline", "likes"])["total"], 3);
    assert_eq!(list(&["--stage", "template"])["total"], 1);
    assert_eq!(
        list(&["--reason", "DATA.LEAD.EMAIL"])["total"],
        1,
        "reason is case-insensitive text"
    );
    assert_eq!(list(&["--since", "1h"])["total"], 5);
    assert_eq!(list(&["--since", "2099-01-01T00:00:00Z"])["total"], 0);
    let page2 = list(&["--pipeline", "likes", "--limit", "2", "--page", "2"]);
    assert_eq!(
        page2["items"].as_array().expect("items").len(),
        1,
        "{page2}"
    );
    let text = String::from_utf8_lossy(
        &h.cli(&["dlq", "list", "--pipeline", "likes", "--limit", "2"])
            .stdout,
    )
    .to_string();
    assert!(text.contains("page 1 of 2"), "{text}");

    // Fix the pipeline (a reload), then bulk-replay the likes from the start.
    let fixed = std::fs::read_to_string(&h.config_path)
        .expect("read")
        .replace(
            "payload.data.lead.missing == 'x'",
            "payload.data.lead.connection_status == 'Connected'",
        );
    std::fs::write(&h.config_path, fixed).expect("write");
    h.signal("HUP");
    wait_until("the reload", || h.log().contains("configuration reloaded")).await;
    let out = h.cli(&[
        "dlq",
        "replay",
        "--all",
        "--pipeline",
        "likes",
        "--from-start",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("queued 3"));
    assert_eq!(wait_for_lines(&h.path("likes.jsonl"), 3).await.len(), 3);

    // Purge what is left: the ingest dead letter cannot be replayed.
    let ingest_id = list(&["--reason", "data.lead.email"])["items"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let out = h.cli(&["dlq", "replay", &ingest_id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("failed before routing"));
    let out = h.cli(&["dlq", "purge", "--all"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("purged 2"));
    assert_eq!(list(&[])["total"], 0);
}

/// A 2xx waits for a commit synced to disk: `fdatasync` on the WAL (the data and the file's
/// size; SQLite's amalgamation falls back to `fsync` unless built with `HAVE_FDATASYNC`,
/// which `.cargo/config.toml` sets). Watched with strace(1) attached to the running server.
#[tokio::test]
async fn an_acknowledged_commit_is_synced_with_fdatasync() {
    let h = Hookline::start(&leadshark_source());
    let trace = h.path("syscalls.txt");
    let mut strace = std::process::Command::new("strace")
        .args(["-f", "-qq", "-y", "-e", "trace=fsync,fdatasync", "-o"])
        .arg(&trace)
        .args(["-p", &h.pid().to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("strace runs (apt-get install strace; .ci/run does)");
    // Attached once every thread of the server shows a tracer; strace gone means it could
    // not attach (ptrace not permitted: run as root, or kernel.yama.ptrace_scope = 0).
    wait_until("strace attached to every thread", || {
        if let Ok(Some(status)) = strace.try_wait() {
            let mut why = String::new();
            if let Some(mut err) = strace.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut err, &mut why);
            }
            panic!("strace exited ({status}) without attaching: {why}");
        }
        let tasks: Vec<_> = std::fs::read_dir(format!("/proc/{}/task", h.pid()))
            .expect("the server is running")
            .flatten()
            .collect();
        !tasks.is_empty()
            && tasks.iter().all(|task| {
                std::fs::read_to_string(task.path().join("status"))
                    .unwrap_or_default()
                    .lines()
                    .any(|l| l.starts_with("TracerPid:") && l.trim_end() != "TracerPid:\t0")
            })
    })
    .await;
    let r = post_signed(&h.url("/webhooks/leadshark"), &sample("new.like", 1)).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    // Detach (SIGINT), then read what it saw.
    let _ = std::process::Command::new("kill")
        .args(["-INT", &strace.id().to_string()])
        .status();
    let _ = strace.wait();
    let seen = std::fs::read_to_string(&trace).expect("strace output");
    let on_journal = |call: &str| {
        seen.lines()
            .filter(|l| l.contains(&format!(" {call}(")) && l.contains("hookline.db"))
            .count()
    };
    assert!(
        on_journal("fdatasync") >= 1,
        "the commit behind the 200 was synced with fdatasync; saw:\n{seen}"
    );
    assert_eq!(
        on_journal("fsync"),
        0,
        "no fsync on the journal; saw:\n{seen}"
    );
}
