//! Dead letters on the NATS journal: a fatal failure becomes a dead letter in JetStream that
//! `hookline dlq` and the admin API of any process list, show, replay and purge.

use std::time::Duration;

use serde_json::Value;

use super::*;
use crate::support::*;

fn pipeline(url: &str) -> String {
    format!(
        r#"[[pipelines]]
name = "crm"
source = "leadshark"

[[pipelines.stages]]
sink = "file"
path = "before.jsonl"

[[pipelines.stages]]
sink = "http"
url = "{url}"
timeout = "2s"
envelope = true
retry = {{ attempts = 3, initial = "100ms", max = "100ms" }}
"#
    )
}

fn dlq_json(dir: &std::path::Path, args: &[&str]) -> Value {
    let out = cli_in(dir, args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

#[tokio::test]
async fn fatal_failures_dead_letter_into_jetstream_and_replay_from_the_cli_and_the_api() {
    let nats = NatsServer::start();
    // 400 and 422: fatal. Then a 500 three times: retries exhausted.
    let receiver = Receiver::start(vec![400, 422, 500, 500, 500]).await;
    let dir = config_dir(&nats_config(&nats.url(), &pipeline(&receiver.url()), ""));
    let ingest = Node::start(dir.path(), "ingest", "ingest");
    let worker = Node::start(dir.path(), "worker", "worker");
    let url = ingest.url("/webhooks/leadshark");
    let first = post_signed(&url, &sample("new.comment", 1)).await;
    receiver.wait_for(1).await;
    let second = post_signed(&url, &sample("new.comment", 2)).await;
    receiver.wait_for(2).await;
    let third = post_signed(&url, &sample("new.comment", 3)).await;
    assert_eq!(receiver.wait_for(5).await.len(), 5);

    let mut page = Value::Null;
    wait_until_secs("three dead letters", 20, || {
        page = dlq_json(dir.path(), &["dlq", "list", "--json"]);
        page["total"] == 3
    })
    .await;
    // Newest first.
    let items = page["items"].as_array().expect("items");
    assert_eq!(items[0]["event_id"], third.json["id"]);
    assert_eq!(items[0]["attempts"], 3);
    assert!(
        items[0]["error"]
            .as_str()
            .expect("error")
            .contains("gave up after 3 attempts")
    );
    assert_eq!(items[2]["event_id"], first.json["id"]);
    assert_eq!(items[2]["attempts"], 1, "no retries after a fatal 4xx");
    assert_eq!(items[2]["stage_index"], 1);
    assert_eq!(items[2]["stage_name"], "http");
    assert_eq!(items[2]["pipeline"], "crm");
    assert_eq!(items[2]["event"]["id"], first.json["id"]);
    // Not a bare `422`: the reason names the receiver's address, whose port may hold it.
    let filtered = dlq_json(
        dir.path(),
        &["dlq", "list", "--json", "--reason", "answered 422"],
    );
    assert_eq!(filtered["total"], 1);
    assert_eq!(filtered["items"][0]["event_id"], second.json["id"]);

    // The admin API of the ingest process sees the same letters.
    let c = client();
    let api: Value = get_json(&ingest.admin_url("/api/v1/dead-letters?stage=http")).await;
    assert_eq!(api["total"], 3);
    let first_dl = items[2]["id"].as_str().expect("id").to_string();
    let second_dl = items[1]["id"].as_str().expect("id").to_string();
    let third_dl = items[0]["id"].as_str().expect("id").to_string();
    let one: Value = get_json(&worker.admin_url(&format!("/api/v1/dead-letters/{first_dl}"))).await;
    assert_eq!(one["id"], first_dl.as_str());
    let missing = c
        .get(ingest.admin_url("/api/v1/dead-letters/no.such*id"))
        .send()
        .await
        .expect("get");
    assert_eq!(missing.status(), 404);
    let shown = cli_in(dir.path(), &["dlq", "show", &first_dl]);
    assert!(String::from_utf8_lossy(&shown.stdout).contains("\"stage_name\": \"http\""));

    // Replay from the CLI: resumes at the failed stage, delivered once.
    let out = cli_in(dir.path(), &["dlq", "replay", &first_dl]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = receiver.wait_for(6).await;
    assert_eq!(got.len(), 6);
    let body: Value = serde_json::from_slice(&got[5].body).expect("json");
    assert_eq!(body["id"], first.json["id"]);
    assert!(
        !cli_in(dir.path(), &["dlq", "replay", &first_dl])
            .status
            .success(),
        "replayed once only"
    );

    // Replay through the admin API.
    let r = c
        .post(ingest.admin_url(&format!("/api/v1/dead-letters/{second_dl}/replay")))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 202);
    let again = c
        .post(worker.admin_url(&format!("/api/v1/dead-letters/{second_dl}/replay")))
        .send()
        .await
        .expect("post");
    assert_eq!(again.status(), 409);
    assert_eq!(receiver.wait_for(7).await.len(), 7);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.received.lock().expect("lock").len(),
        7,
        "each replay delivered once"
    );
    assert_eq!(
        read_lines(&dir.path().join("before.jsonl")).len(),
        3,
        "replays did not hit the earlier sink again"
    );

    // From the start: the earlier sink runs again, on the original event.
    let out = cli_in(dir.path(), &["dlq", "replay", "--from-start", &third_dl]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(receiver.wait_for(8).await.len(), 8);
    wait_for_lines(&dir.path().join("before.jsonl"), 4).await;

    let all = dlq_json(dir.path(), &["dlq", "list", "--json", "--include-replayed"]);
    assert_eq!(all["total"], 3);
    assert!(
        all["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|i| i["state"] == "replayed")
    );
    assert_eq!(dlq_json(dir.path(), &["dlq", "list", "--json"])["total"], 0);
    let ready: Value = get_json(&worker.admin_url("/readyz")).await;
    assert_eq!(ready["dead_letters"], 0);

    // Purge: unfiltered needs all=true; one by id; the rest from the CLI.
    let refused = c
        .delete(ingest.admin_url("/api/v1/dead-letters"))
        .send()
        .await
        .expect("delete");
    assert_eq!(refused.status(), 400);
    let deleted = c
        .delete(ingest.admin_url(&format!("/api/v1/dead-letters/{first_dl}")))
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), 204);
    let gone = c
        .get(worker.admin_url(&format!("/api/v1/dead-letters/{first_dl}")))
        .send()
        .await
        .expect("get");
    assert_eq!(gone.status(), 404);
    let out = cli_in(dir.path(), &["dlq", "purge", &second_dl]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("purged 1"));
    let left = dlq_json(dir.path(), &["dlq", "list", "--json", "--include-replayed"]);
    assert_eq!(left["total"], 1);
    assert_eq!(left["items"][0]["id"], third_dl.as_str());
}

#[tokio::test]
async fn a_signed_but_undecodable_request_is_a_dead_letter_in_jetstream() {
    let nats = NatsServer::start();
    let dir = config_dir(&nats_config(
        &nats.url(),
        "[[pipelines]]\nname = \"p\"\nsource = \"leadshark\"\nstages = [{ sink = \"stdout\" }]\n",
        "",
    ));
    let ingest = Node::start(dir.path(), "ingest", "ingest");
    let body = "{not json";
    let sig = sign(SECRET, body.as_bytes());
    let r = post(
        &ingest.url("/webhooks/leadshark"),
        body,
        &[("x-webhook-signature", &sig)],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.json);
    let page = dlq_json(dir.path(), &["dlq", "list", "--json"]);
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"][0]["raw"], body);
    assert_eq!(page["items"][0]["event_id"], r.json["id"]);
    let out = cli_in(dir.path(), &["dlq", "replay", "--all"]);
    assert!(
        !out.status.success(),
        "cannot be replayed: the sender must resend"
    );
}
