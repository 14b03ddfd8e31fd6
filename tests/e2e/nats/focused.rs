//! One behaviour each on the NATS journal: dedupe through the message id, a retry resuming
//! at the failed stage, the roles, consumer lag, and start-up errors.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::*;
use crate::support::*;

fn file_pipeline(path: &str) -> String {
    format!(
        "[[pipelines]]\nname = \"all\"\nsource = \"leadshark\"\nstages = [{{ sink = \"file\", path = \"{path}\" }}]\n"
    )
}

#[tokio::test]
async fn a_duplicate_is_recognised_by_its_message_id_on_any_ingest_process() {
    let nats = NatsServer::start();
    let dir = config_dir(&nats_config(&nats.url(), &file_pipeline("all.jsonl"), ""));
    let a = Node::start(dir.path(), "ingest", "a");
    let b = Node::start(dir.path(), "ingest", "b");
    let _w = Node::start(dir.path(), "worker", "w");
    let body = sample("new.like", 5);
    let first = post_signed(&a.url("/webhooks/leadshark"), &body).await;
    assert_eq!(first.status, 200, "{}", first.json);
    assert!(first.json.get("duplicate").is_none());
    let id = first.json["id"].as_str().expect("id").to_string();
    // The same signed delivery on the other ingest process.
    let second = post_signed(&b.url("/webhooks/leadshark"), &body).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.json["duplicate"], true, "{}", second.json);
    assert_eq!(second.json["id"], id.as_str(), "the first event's id");
    // Pretty-printed, it is still the same signed delivery (the key the SQLite journal uses).
    let pretty = serde_json::to_string_pretty(&serde_json::from_str::<Value>(&body).expect("json"))
        .expect("pretty");
    let sig = sign(SECRET, body.as_bytes());
    let third = post(
        &a.url("/webhooks/leadshark"),
        pretty,
        &[("x-webhook-signature", &sig)],
    )
    .await;
    assert_eq!(third.json["id"], id.as_str());
    // Another event is new.
    let other = post_signed(&b.url("/webhooks/leadshark"), &sample("new.like", 6)).await;
    assert_ne!(other.json["id"], id.as_str());
    assert!(other.json.get("duplicate").is_none());

    let out = dir.path().join("all.jsonl");
    wait_for_lines(&out, 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lines = read_lines(&out);
    assert_eq!(lines.len(), 2, "each event processed once: {lines:?}");
    let dup = scrape(&b).await;
    assert_eq!(metric(&dup, "hookline_duplicates_total", &[]), Some(1.0));
}

#[tokio::test]
async fn a_retry_resumes_at_the_failed_stage_on_any_worker() {
    let nats = NatsServer::start();
    let receiver = Receiver::start(vec![503, 429]).await;
    let body = format!(
        r#"[[pipelines]]
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
url = "{}"
timeout = "2s"
envelope = true
retry = {{ attempts = 5, initial = "200ms", max = "300ms" }}
"#,
        receiver.url()
    );
    let dir = config_dir(&nats_config(&nats.url(), &body, ""));
    let ingest = Node::start(dir.path(), "ingest", "ingest");
    let w1 = Node::start(dir.path(), "worker", "w1");
    let w2 = Node::start(dir.path(), "worker", "w2");
    let r = post_signed(&ingest.url("/webhooks/leadshark"), &sample("new.like", 1)).await;
    assert_eq!(r.status, 200);
    let got = receiver.wait_for(3).await;
    assert_eq!(got.len(), 3, "two failures, then delivered");
    let delivered: Value = serde_json::from_slice(&got[2].body).expect("json");
    assert_eq!(delivered["id"], r.json["id"]);
    assert_eq!(delivered["payload"]["data"]["stamped"], true);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        receiver.received.lock().expect("lock").len(),
        3,
        "nothing after success"
    );
    assert_eq!(
        read_lines(&dir.path().join("before.jsonl")).len(),
        1,
        "the earlier sink is not hit again by retries"
    );
    let logs = w1.log() + w2.log().as_str();
    assert!(logs.contains("will retry"), "{logs}");
    let out = cli_in(dir.path(), &["dlq", "list", "--json"]);
    let page: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(page["total"], 0);
    let m = scrape(&w1).await + scrape(&w2).await.as_str();
    assert_eq!(
        metric(&m, "hookline_sink_retries_total", &[("stage", "http")]),
        Some(2.0)
    );
}

/// On NATS too a retry message carries its stage's name (`Hookline-Stage-Name`): a restart
/// on a config that moved the stage resumes it there; one without it dead-letters it.
#[tokio::test]
async fn a_retry_message_resumes_at_its_stage_by_name_after_stages_move() {
    let nats = NatsServer::start();
    let url = nats.url();
    crate::delivery::a_waiting_retry_resumes_at_its_stage_by_name(|pipelines| {
        nats_config(&url, pipelines, "")
    })
    .await;
}

#[tokio::test]
async fn roles_split_ingest_from_work_and_consumer_lag_shows_the_backlog() {
    let nats = NatsServer::start();
    let port = Receiver::free_port();
    let text = nats_config(&nats.url(), &file_pipeline("out.jsonl"), "").replacen(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
        1,
    );
    let dir = config_dir(&text);

    // A worker does not bind the webhook listener...
    let mut worker = Node::start(dir.path(), "worker", "worker");
    assert!(worker.addr.is_none());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "a worker must not listen for webhooks"
    );
    let ready: Value = get_json(&worker.admin_url("/readyz")).await;
    assert_eq!(ready["status"], "ready", "the admin API runs on workers");
    worker.kill();

    // ...an ingest process does, and runs no pipelines.
    let ingest = Node::start(dir.path(), "ingest", "ingest");
    assert_eq!(ingest.addr.map(|a| a.port()), Some(port));
    for i in 0..3 {
        let r = post_signed(
            &ingest.url("/webhooks/leadshark"),
            &sample("new.comment", i),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let out = dir.path().join("out.jsonl");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(read_lines(&out).is_empty(), "ingest ran a pipeline");
    let text = scrape(&ingest).await;
    assert_eq!(
        metric(&text, "hookline_consumer_lag", &[("pipeline", "all")]),
        Some(3.0),
        "{text}"
    );
    let ready: Value = get_json(&ingest.admin_url("/readyz")).await;
    assert_eq!(ready["pending"], 3);

    // A worker started later takes the backlog.
    let worker = Node::start(dir.path(), "worker", "worker2");
    assert_eq!(wait_for_lines(&out, 3).await.len(), 3);
    let mut drained = false;
    for _ in 0..100 {
        let text = scrape(&worker).await;
        if metric(&text, "hookline_consumer_lag", &[("pipeline", "all")]) == Some(0.0) {
            drained = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(drained, "consumer lag back to 0");
}

#[tokio::test]
async fn what_a_killed_worker_held_is_redelivered_to_another_worker() {
    let nats = NatsServer::start();
    // A peer that accepts connections and never answers: the first worker's runs hang.
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = hang.local_addr().expect("addr").port();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    let holder = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = hang.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            open.push(socket);
        }
    });
    let body = format!(
        "[[pipelines]]\nname = \"crm\"\nsource = \"leadshark\"\nstages = [{{ sink = \"http\", url = \"http://127.0.0.1:{port}/hook\", envelope = true, timeout = \"30s\" }}]\n"
    );
    let dir = config_dir(&nats_config(&nats.url(), &body, ""));
    let ingest = Node::start(dir.path(), "ingest", "ingest");
    let mut first = Node::start(dir.path(), "worker", "first");
    let mut ids = Vec::new();
    for i in 0..3 {
        let r = post_signed(&ingest.url("/webhooks/leadshark"), &sample("new.like", i)).await;
        ids.push(r.json["id"].as_str().expect("id").to_string());
    }
    wait_until_secs("three runs in flight", 10, || {
        accepted.load(std::sync::atomic::Ordering::SeqCst) >= 3
    })
    .await;
    // Held past several ack waits: progress acks keep them with the live worker.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let second = Node::start(dir.path(), "worker", "second");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !second.log().contains("running a redelivered message"),
        "a live worker keeps its messages"
    );
    first.kill();
    holder.abort();
    let _ = holder.await;
    let receiver = Receiver::start_on(port, vec![]).await;
    let got = receiver.wait_for(3).await;
    let mut delivered: Vec<String> = got
        .iter()
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).expect("json")["id"]
                .as_str()
                .expect("id")
                .to_string()
        })
        .collect();
    delivered.sort();
    ids.sort();
    assert_eq!(delivered, ids);
    assert_eq!(
        second
            .log()
            .matches("running a redelivered message")
            .count(),
        3,
        "{}",
        second.log()
    );
}

#[test]
fn other_roles_need_the_nats_journal() {
    let dir = config_dir(&config_text(
        &format!("{}\n{}", leadshark_source(), file_pipeline("x.jsonl")),
        "",
    ));
    for role in ["ingest", "worker"] {
        let out = cli_in(dir.path(), &["serve", "--role", role]);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!(
                "`--role {role}` needs `[storage] backend = \"nats\"`"
            )),
            "{stderr}"
        );
    }
}

#[test]
fn an_unreachable_or_tls_mismatched_server_stops_start_up_without_a_panic() {
    let nats = NatsServer::start();
    let nobody = Receiver::free_port();
    for (url, expect) in [
        (
            format!("nats://127.0.0.1:{nobody}"),
            "cannot connect to NATS",
        ),
        // TLS against a plain server: the TLS stack is built (one crypto provider, so no
        // rustls panic) and the handshake fails cleanly.
        (
            format!("tls://127.0.0.1:{}", nats.port),
            "cannot connect to NATS",
        ),
    ] {
        let dir = config_dir(&nats_config(&url, &file_pipeline("x.jsonl"), ""));
        let out = cli_in(dir.path(), &["serve"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(expect), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        if url.starts_with("tls") {
            // rustls sent its ClientHello and read the plain server's INFO back.
            assert!(stderr.contains("corrupt message"), "{stderr}");
        }
    }
}

#[tokio::test]
async fn credentials_reach_the_server_and_wrong_ones_are_refused() {
    let by_token = NatsServer::start_with(&["--auth", "t0ken-for-tests"]);
    let by_user = NatsServer::start_with(&["--user", "hook", "--pass", "pa55word"]);
    for (server, good, bad) in [
        (
            &by_token,
            "token = \"${T:-t0ken-for-tests}\"",
            "token = \"wrong\"",
        ),
        (
            &by_user,
            "user = \"hook\"\npassword = \"${P:-pa55word}\"",
            "user = \"hook\"\npassword = \"wrong\"",
        ),
    ] {
        let dir = config_dir(&nats_config(
            &server.url(),
            &file_pipeline("out.jsonl"),
            good,
        ));
        let node = Node::start(dir.path(), "all", "node");
        let r = post_signed(&node.url("/webhooks/leadshark"), &sample("new.like", 1)).await;
        assert_eq!(r.status, 200, "{}", r.json);
        assert_eq!(
            wait_for_lines(&dir.path().join("out.jsonl"), 1).await.len(),
            1
        );
        let log = node.log();
        assert!(
            !log.contains("t0ken-for-tests") && !log.contains("pa55word"),
            "a secret in the log"
        );
        let wrong = config_dir(&nats_config(
            &server.url(),
            &file_pipeline("out.jsonl"),
            bad,
        ));
        let out = cli_in(wrong.path(), &["serve"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains("cannot connect to NATS"), "{stderr}");
    }
}

#[tokio::test]
async fn ingest_answers_503_above_max_pending() {
    let nats = NatsServer::start();
    let text = nats_config(&nats.url(), &file_pipeline("out.jsonl"), "")
        .replace("concurrency = 64", "concurrency = 64\nmax_pending = 2");
    let dir = config_dir(&text);
    let ingest = Node::start(dir.path(), "ingest", "ingest");
    let url = ingest.url("/webhooks/leadshark");
    for i in 0..2 {
        assert_eq!(post_signed(&url, &sample("new.like", i)).await.status, 200);
    }
    // The count is refreshed once a second.
    let mut refused = None;
    for i in 2..60 {
        let r = post_signed(&url, &sample("new.like", i)).await;
        if r.status == 503 {
            refused = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = refused.expect("a 503 once two deliveries are pending");
    assert_eq!(refused.headers["retry-after"], "1");
    // A worker drains the backlog; ingest accepts again.
    let _worker = Node::start(dir.path(), "worker", "worker");
    let mut accepted = false;
    for i in 100..200 {
        if post_signed(&url, &sample("new.like", i)).await.status == 200 {
            accepted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(accepted, "accepting again once the backlog drained");
}

#[test]
fn check_describes_the_nats_journal_with_secrets_masked() {
    let dir = config_dir(&nats_config(
        "nats://127.0.0.1:4222",
        &file_pipeline("x.jsonl"),
        "user = \"hook\"\npassword = \"${NATS_PW:-pw-not-shown}\"\nreplicas = 3",
    ));
    let out = cli_in(dir.path(), &["check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            "journal nats nats://127.0.0.1:4222 stream HOOKLINE replicas 3 user hook password ***"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("pw-not-shown"));

    let bad = config_dir(&nats_config(
        "http://x",
        &file_pipeline("x.jsonl"),
        "token = \"t\"\nuser = \"u\"",
    ));
    let out = cli_in(bad.path(), &["check"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("storage.nats.url"), "{stderr}");
    assert!(stderr.contains("one way to authenticate"), "{stderr}");
}

#[tokio::test]
async fn routing_holds_across_configs_that_declare_different_types_and_across_reloads() {
    let nats = NatsServer::start();
    let pipeline = |events: &str| {
        format!(
            "[[pipelines]]\nname = \"likes\"\nsource = \"leadshark\"\nevents = [{events}]\nstages = [{{ sink = \"file\", path = \"out.jsonl\", envelope = true }}]\n"
        )
    };
    // A declares `new.like` (LeadShark's documented types, by default); B declares only
    // `email.captured`, so it publishes `new.like` events as `other`.
    let a_dir = config_dir(&nats_config(&nats.url(), &pipeline("\"new.like\""), ""));
    let b_text = nats_config(&nats.url(), &pipeline("\"new.like\""), "")
        .replace("verify = {", "events = [\"email.captured\"]\nverify = {");
    let b_dir = config_dir(&b_text);
    let worker = Node::start(a_dir.path(), "worker", "worker");
    let a = Node::start(a_dir.path(), "ingest", "a");
    let b = Node::start(b_dir.path(), "ingest", "b");
    let from_a = post_signed(&a.url("/webhooks/leadshark"), &sample("new.like", 1)).await;
    let from_b = post_signed(&b.url("/webhooks/leadshark"), &sample("new.like", 2)).await;
    let skipped = post_signed(&b.url("/webhooks/leadshark"), &sample("email.captured", 3)).await;
    assert_eq!(skipped.status, 200);
    let out = a_dir.path().join("out.jsonl");
    let lines = wait_for_lines(&out, 2).await;
    let ids: Vec<&str> = lines.iter().filter_map(|l| l["id"].as_str()).collect();
    assert!(
        ids.contains(&from_a.json["id"].as_str().expect("id")),
        "{lines:?}"
    );
    assert!(
        ids.contains(&from_b.json["id"].as_str().expect("id")),
        "{lines:?}"
    );

    // Reload A's file (worker and ingest): the pipeline now takes `email.captured` only.
    let text = std::fs::read_to_string(a_dir.path().join("pipeline.toml")).expect("read");
    std::fs::write(
        a_dir.path().join("pipeline.toml"),
        text.replace("events = [\"new.like\"]", "events = [\"email.captured\"]"),
    )
    .expect("write");
    wait_until_secs("both processes reloaded", 20, || {
        worker.log().contains("configuration reloaded")
            && a.log().contains("configuration reloaded")
    })
    .await;
    wait_until_secs("the worker's consumers updated", 60, || {
        worker.log().contains("NATS consumers updated")
    })
    .await;
    let like = post_signed(&a.url("/webhooks/leadshark"), &sample("new.like", 4)).await;
    let email = post_signed(&a.url("/webhooks/leadshark"), &sample("email.captured", 5)).await;
    // Routing on NATS is decided when a worker consumes: the `email.captured` posted to B
    // before the reload may or may not be taken too, depending on whether the consumer had
    // scanned past it. What must hold: the email after the reload arrives, the like does not.
    wait_until_secs("the email after the reload", 60, || {
        read_lines(&out).iter().any(|l| l["id"] == email.json["id"])
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lines_now = read_lines(&out);
    assert!(
        lines_now.iter().all(|l| l["id"] != like.json["id"]),
        "{lines_now:?}"
    );
}
