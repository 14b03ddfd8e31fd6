//! The webhook endpoint: acceptance, fan-out, and every rejection path.

use serde_json::{Value, json};

use crate::support::*;

fn fan_out_config() -> String {
    format!(
        r#"{}
[[pipelines]]
name = "emails"
source = "leadshark"
events = ["email.captured"]
stages = [{{ sink = "file", path = "emails.jsonl" }}]

[[pipelines]]
name = "engagement"
source = "leadshark"
events = ["new.*"]
stages = [{{ sink = "file", path = "engagement.jsonl" }}]

[[pipelines]]
name = "everything"
source = "leadshark"
stages = [{{ sink = "file", path = "all.jsonl", envelope = true }}]
"#,
        leadshark_source()
    )
}

#[tokio::test]
async fn signed_events_fan_out_to_every_matching_pipeline() {
    let h = Hookline::start(&fan_out_config());
    let url = h.url("/webhooks/leadshark");
    let types = [
        "email.captured",
        "new.profile.visit",
        "new.like",
        "new.comment",
        "lead.sent",
    ];
    let mut ids = Vec::new();
    for (i, t) in types.iter().enumerate() {
        let r = post_signed(&url, &sample(t, i as u64)).await;
        assert_eq!(r.status, 200, "{t}: {}", r.json);
        assert_eq!(r.json["received"], true);
        ids.push(r.json["id"].as_str().expect("id").to_string());
    }
    // An event type LeadShark may add later still flows, untyped.
    let unknown =
        json!({"event": "dm.sent", "timestamp": "2026-05-09T10:00:00Z", "data": {"x": 1}})
            .to_string();
    assert_eq!(post_signed(&url, &unknown).await.status, 200);

    let all = wait_for_lines(&h.path("all.jsonl"), 6).await;
    assert_eq!(all.len(), 6);
    let mut got: Vec<&str> = all
        .iter()
        .map(|e| e["type"].as_str().expect("type"))
        .collect();
    got.sort_unstable();
    assert_eq!(
        got,
        [
            "dm.sent",
            "email.captured",
            "lead.sent",
            "new.comment",
            "new.like",
            "new.profile.visit"
        ]
    );
    for e in &all {
        assert_eq!(e["source"], "leadshark");
        assert!(e["received_at"].is_string());
        assert_eq!(e["payload"]["event"], e["type"]);
    }
    assert!(
        all.iter().any(|e| e["id"] == ids[0].as_str()),
        "envelope carries the id answered to the sender"
    );

    let emails = wait_for_lines(&h.path("emails.jsonl"), 1).await;
    assert_eq!(emails.len(), 1);
    assert_eq!(
        emails[0],
        serde_json::from_str::<Value>(&sample("email.captured", 0)).expect("json")
    );
    let engagement = wait_for_lines(&h.path("engagement.jsonl"), 3).await;
    assert_eq!(engagement.len(), 3);
}

#[tokio::test]
async fn every_rejection_has_its_status_and_a_json_error() {
    let h = Hookline::start_with(&fan_out_config(), "max_body = \"2KiB\"", &[]);
    let url = h.url("/webhooks/leadshark");
    let body = sample("email.captured", 1);
    let good_sig = sign(SECRET, body.as_bytes());

    let cases: Vec<(&str, Reply)> = vec![
        ("missing signature", post(&url, body.clone(), &[]).await),
        (
            "wrong secret",
            post(
                &url,
                body.clone(),
                &[("x-webhook-signature", &sign("nope", body.as_bytes()))],
            )
            .await,
        ),
        (
            "malformed signature",
            post(&url, body.clone(), &[("x-webhook-signature", "zz-not-hex")]).await,
        ),
        (
            "tampered body",
            post(
                &url,
                body.replace("John", "Jahn"),
                &[("x-webhook-signature", &good_sig)],
            )
            .await,
        ),
        (
            "not json content type",
            post(
                &url,
                body.clone(),
                &[
                    ("x-webhook-signature", &good_sig),
                    ("content-type", "text/plain"),
                ],
            )
            .await,
        ),
        (
            "unknown path",
            post(
                &h.url("/webhooks/nope"),
                body.clone(),
                &[("x-webhook-signature", &good_sig)],
            )
            .await,
        ),
        (
            "too large",
            post(
                &url,
                format!("{{\"event\":\"x\",\"pad\":\"{}\"}}", "a".repeat(4096)),
                &[("x-webhook-signature", "00")],
            )
            .await,
        ),
    ];
    let expected = [401, 401, 401, 401, 415, 404, 413];
    for ((name, reply), status) in cases.iter().zip(expected) {
        assert_eq!(reply.status, status, "{name}: {}", reply.json);
        let msg = reply.json["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no JSON error body"));
        assert!(!msg.is_empty(), "{name}");
        assert!(!msg.contains(SECRET), "{name}: leaks the secret");
    }

    // Signed, but not processable: kept as a dead letter with the reason, and 200 (nothing
    // authenticated is lost; a retry by the sender would not help).
    let malformed = "{\"event\": \"email.captured\", ";
    let r = post_signed(&url, malformed).await;
    assert_eq!(r.status, 200, "{}", r.json);
    let no_event = json!({"data": {}}).to_string();
    assert_eq!(post_signed(&url, &no_event).await.status, 200);
    let out = h.cli(&["dlq", "list", "--json"]);
    let page: Value = serde_json::from_slice(&out.stdout).expect("dlq list --json");
    assert_eq!(page["total"], 2, "{page}");
    let errors: Vec<&str> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|d| d["error"].as_str().expect("error"))
        .collect();
    assert!(
        errors.iter().any(|e| e.to_lowercase().contains("json")),
        "{errors:?}"
    );
    assert!(errors.iter().any(|e| e.contains("event")), "{errors:?}");
    assert!(
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|d| d["raw"] == malformed),
        "raw body kept"
    );

    // X-Webhook-Event is not signed: a disagreement is refused and routes nothing.
    let like = sample("new.like", 2);
    let sig = sign(SECRET, like.as_bytes());
    let r = post(
        &url,
        like,
        &[
            ("x-webhook-signature", &sig),
            ("x-webhook-event", "email.captured"),
        ],
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.json);
    assert!(
        r.json["error"]
            .as_str()
            .expect("error")
            .contains("email.captured")
    );

    // Other methods: 405 with Allow.
    let resp = client().put(&url).body("{}").send().await.expect("put");
    let r = reply(resp).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.headers["allow"], "GET, HEAD, POST");
    assert!(r.json["error"].is_string());
    let resp = client().delete(&url).send().await.expect("delete");
    assert_eq!(resp.status(), 405);

    // Nothing rejected reached a sink; a good request afterwards does.
    assert_eq!(post_signed(&url, &body).await.status, 200);
    let all = wait_for_lines(&h.path("all.jsonl"), 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        read_lines(&h.path("all.jsonl")).len(),
        1,
        "only the good request was routed: {all:?}"
    );
}

#[tokio::test]
async fn get_is_a_test_ping_that_processes_nothing() {
    let h = Hookline::start(&fan_out_config());
    let url = h.url("/webhooks/leadshark");
    let resp = client()
        .get(format!("{url}?event=email.captured"))
        .send()
        .await
        .expect("get");
    let r = reply(resp).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json, json!({"received": true, "test": true}));
    // A trailing slash is the same source.
    let resp = client().get(format!("{url}/")).send().await.expect("get");
    assert_eq!(resp.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(read_lines(&h.path("all.jsonl")).is_empty());
    assert!(h.log().contains("test ping"), "counted in the log");
}

#[tokio::test]
async fn rotated_secrets_are_all_accepted() {
    let config = format!(
        r#"
[[sources]]
name = "leadshark"
path = "/webhooks/leadshark"
verify = {{ scheme = "leadshark", secrets = ["new-secret", "{SECRET}"] }}

[[pipelines]]
name = "all"
source = "leadshark"
stages = [{{ sink = "file", path = "all.jsonl" }}]
"#
    );
    let h = Hookline::start(&config);
    let url = h.url("/webhooks/leadshark");
    for (i, secret) in ["new-secret", SECRET].into_iter().enumerate() {
        let body = sample("new.like", 3 + i as u64);
        let sig = sign(secret, body.as_bytes());
        let r = post(&url, body.clone(), &[("x-webhook-signature", &sig)]).await;
        assert_eq!(r.status, 200, "{secret}");
    }
    let body = sample("new.like", 9);
    let sig = sign("retired-secret", body.as_bytes());
    assert_eq!(
        post(&url, body.clone(), &[("x-webhook-signature", &sig)])
            .await
            .status,
        401
    );
    assert_eq!(wait_for_lines(&h.path("all.jsonl"), 2).await.len(), 2);
}

#[tokio::test]
async fn arbitrary_bytes_never_take_the_service_down() {
    let h = Hookline::start(&fan_out_config());
    let url = h.url("/webhooks/leadshark");
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..200u32 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed % 300) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|j| (seed.rotate_left(j as u32) & 0xff) as u8)
            .collect();
        // Half of them carry a valid signature, so they get past verification.
        let sig = if i % 2 == 0 {
            sign(SECRET, &bytes)
        } else {
            "0".repeat(64)
        };
        let r = post(&url, bytes, &[("x-webhook-signature", &sig)]).await;
        assert!(matches!(r.status, 200 | 401), "status {}", r.status);
    }
    for odd in [
        "null",
        "[]",
        "\"str\"",
        "{\"event\": 7}",
        "{\"event\": null}",
        "1e999999",
    ] {
        // Signed but unprocessable: dead-lettered, not refused.
        let r = post_signed(&url, odd).await;
        assert_eq!(r.status, 200, "{odd}: {}", r.json);
    }
    let mut h = h;
    assert!(h.is_running());
    assert_eq!(post_signed(&url, &sample("new.like", 9)).await.status, 200);
}

#[tokio::test]
async fn filters_and_transforms_shape_what_sinks_get() {
    let config = format!(
        r#"{}
[[pipelines]]
name = "crm"
source = "leadshark"
events = ["email.captured"]

[[pipelines.stages]]
filter = "cel"
expr = "has(payload.data.lead.email) && !payload.data.lead.email.endsWith('@example.org')"

[[pipelines.stages]]
transform = "set"
fields = {{ "data.routed_by" = "hookline" }}

[[pipelines.stages]]
sink = "file"
path = "before.jsonl"

[[pipelines.stages]]
transform = "remove"
fields = ["data.lead.email"]

[[pipelines.stages]]
sink = "file"
path = "after.jsonl"
"#,
        leadshark_source()
    );
    let h = Hookline::start(&config);
    let url = h.url("/webhooks/leadshark");
    let keep = sample("email.captured", 1);
    let drop = keep.replace("@example.com", "@example.org");
    assert_eq!(post_signed(&url, &drop).await.status, 200);
    assert_eq!(post_signed(&url, &keep).await.status, 200);
    let before = wait_for_lines(&h.path("before.jsonl"), 1).await;
    let after = wait_for_lines(&h.path("after.jsonl"), 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        read_lines(&h.path("before.jsonl")).len(),
        1,
        "the filter dropped one"
    );
    assert_eq!(before[0]["data"]["routed_by"], "hookline");
    assert!(
        before[0]["data"]["lead"]["email"].is_string(),
        "sink passes the event on unchanged"
    );
    assert!(after[0]["data"]["lead"].get("email").is_none());
    assert_eq!(after[0]["data"]["routed_by"], "hookline");
}

#[tokio::test]
async fn a_failing_stage_is_reported_and_the_service_keeps_serving() {
    // Nothing listens on this port: the http sink fails (retryably) for every event.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let config = format!(
        r#"{}
[[pipelines]]
name = "to-crm"
source = "leadshark"
stages = [{{ sink = "http", url = "http://127.0.0.1:{port}/leads", timeout = "2s" }}]

[[pipelines]]
name = "archive"
source = "leadshark"
stages = [{{ sink = "file", path = "all.jsonl" }}]
"#,
        leadshark_source()
    );
    let h = Hookline::start(&config);
    let url = h.url("/webhooks/leadshark");
    let r = post_signed(&url, &sample("new.comment", 1)).await;
    assert_eq!(r.status, 200);
    let id = r.json["id"].as_str().expect("id").to_string();
    assert_eq!(
        wait_for_lines(&h.path("all.jsonl"), 1).await.len(),
        1,
        "other pipelines are unaffected"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !h.log().contains("stage failed") && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let log = h.log();
    let line = log
        .lines()
        .find(|l| l.contains("stage failed"))
        .expect("failure logged");
    assert!(line.contains(&id), "names the event: {line}");
    assert!(line.contains("to-crm"), "names the pipeline: {line}");
    assert!(line.contains("http"), "names the stage: {line}");
    assert_eq!(
        post_signed(&url, &sample("new.comment", 2)).await.status,
        200
    );
}
