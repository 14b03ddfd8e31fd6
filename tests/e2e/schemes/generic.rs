//! The generic `hmac` scheme (a timestamped, id-carrying sender), and LeadShark's optional
//! timestamp tolerance. Signatures come from the `hmac` crate, not from Hookline's code.

use serde_json::json;

use super::*;

const NEW: &str = "acme-secret-new";
const OLD: &str = "acme-secret-old";
const SECRETS: &[&str] = &[NEW, OLD];

fn acme(secret: &str, ts: i64, id: &str, body: &str) -> String {
    let message = format!("{ts}.{id}.{body}");
    format!(
        "v1={}",
        hex::encode(hmac_sha256(secret, message.as_bytes()))
    )
}

#[tokio::test]
async fn generic_hmac_with_timestamp_id_and_event_header() {
    let source = format!(
        r#"
[[sources]]
name = "src"
path = "/webhooks/acme"
verify = {{ scheme = "hmac", secrets = ["{NEW}", "{OLD}"], header = "X-Acme-Signature", prefix = "v1=", signed = "{{timestamp}}.{{id}}.{{body}}", timestamp_header = "X-Acme-Timestamp", id_header = "X-Acme-Delivery", tolerance = "5m", event_field = "event.type", event_header = "X-Acme-Event" }}
"#
    );
    let h = start(&source, r#"["order.paid"]"#);
    let url = h.url("/webhooks/acme");
    let t = now();
    let paid = json!({"event": {"type": "order.paid"}, "order": 1}).to_string();
    let shipped = json!({"event": {"type": "order.shipped"}, "order": 2}).to_string();
    let hdr = |sig: &str, ts: i64, id: &str| -> Vec<(&'static str, String)> {
        vec![
            ("X-Acme-Signature", sig.into()),
            ("X-Acme-Timestamp", ts.to_string()),
            ("X-Acme-Delivery", id.into()),
        ]
    };

    let first = send(
        &url,
        &paid,
        &hdr(&acme(NEW, t, "a-1", &paid), t, "a-1"),
        200,
        "",
        SECRETS,
    )
    .await;
    send(
        &url,
        &shipped,
        &hdr(&acme(OLD, t, "a-2", &shipped), t, "a-2"),
        200,
        "",
        SECRETS,
    )
    .await;
    // Re-sent later under the same delivery id: a duplicate.
    let again = hdr(&acme(NEW, t + 5, "a-1", &paid), t + 5, "a-1");
    let again = send(&url, &paid, &again, 200, "", SECRETS).await;
    assert_eq!(again.json["duplicate"], true, "{}", again.json);
    assert_eq!(again.json["id"], first.json["id"]);
    // The unsigned event header may repeat the payload's type, never contradict it.
    let mut agreeing = hdr(&acme(NEW, t, "a-3", &paid), t, "a-3");
    agreeing.push(("X-Acme-Event", "order.paid".into()));
    send(&url, &paid, &agreeing, 200, "", SECRETS).await;
    let mut steering = hdr(&acme(NEW, t, "a-4", &shipped), t, "a-4");
    steering.push(("X-Acme-Event", "order.paid".into()));
    let says =
        "X-Acme-Event header \"order.paid\" disagrees with the payload's event \"order.shipped\"";
    send(&url, &shipped, &steering, 400, says, SECRETS).await;

    let good = acme(NEW, t, "a-5", &paid);
    let tampered = paid.replace("\"order\":1", "\"order\":7");
    send(
        &url,
        &tampered,
        &hdr(&good, t, "a-5"),
        401,
        "invalid signature",
        SECRETS,
    )
    .await;
    send(
        &url,
        &paid,
        &hdr(&good, t, "a-6"),
        401,
        "invalid signature",
        SECRETS,
    )
    .await;
    let wrong = acme("not-configured", t, "a-5", &paid);
    send(
        &url,
        &paid,
        &hdr(&wrong, t, "a-5"),
        401,
        "invalid signature",
        SECRETS,
    )
    .await;
    let old = acme(NEW, t - 3600, "a-5", &paid);
    send(
        &url,
        &paid,
        &hdr(&old, t - 3600, "a-5"),
        401,
        "timestamp expired",
        SECRETS,
    )
    .await;
    let ahead = acme(NEW, t + 3600, "a-5", &paid);
    send(
        &url,
        &paid,
        &hdr(&ahead, t + 3600, "a-5"),
        401,
        "in the future",
        SECRETS,
    )
    .await;
    let says = "malformed X-Acme-Signature header: does not start with the configured prefix";
    send(&url, &paid, &hdr(&good[3..], t, "a-5"), 401, says, SECRETS).await;
    let mut twice = hdr(&good, t, "a-5");
    twice.push(("X-Acme-Signature", wrong));
    send(&url, &paid, &twice, 401, "sent more than once", SECRETS).await;
    let all = hdr(&good, t, "a-5");
    let says = "missing X-Acme-Signature header";
    send(&url, &paid, &all[1..], 401, says, SECRETS).await;
    let says = "missing X-Acme-Timestamp header";
    send(
        &url,
        &paid,
        &[all[0].clone(), all[2].clone()],
        401,
        says,
        SECRETS,
    )
    .await;
    send(
        &url,
        &paid,
        &all[..2],
        401,
        "missing X-Acme-Delivery header",
        SECRETS,
    )
    .await;

    expect_events(&h, "routed.jsonl", &["order.paid", "order.paid"]).await;
    expect_events(
        &h,
        "all.jsonl",
        &["order.paid", "order.paid", "order.shipped"],
    )
    .await;
}

#[tokio::test]
async fn leadshark_tolerance_checks_the_signed_payload_timestamp() {
    let source = format!(
        r#"
[[sources]]
name = "src"
path = "/webhooks/leadshark"
verify = {{ scheme = "leadshark", secrets = ["{SECRET}"], tolerance = "1h" }}
"#
    );
    let h = start(&source, r#"["new.like"]"#);
    let url = h.url("/webhooks/leadshark");
    let at = |offset: i64| {
        let ts = jiff::Timestamp::from_second(now() + offset).expect("time");
        let mut like: serde_json::Value =
            serde_json::from_str(&sample("new.like", 1)).expect("json");
        like["timestamp"] = json!(ts.to_string());
        like.to_string()
    };
    assert_eq!(post_signed(&url, &at(-60)).await.status, 200);
    for (offset, says) in [(-7200, "timestamp expired"), (7200, "in the future")] {
        let r = post_signed(&url, &at(offset)).await;
        assert_eq!(r.status, 401, "{}", r.json);
        assert!(
            r.json["error"].as_str().expect("error").contains(says),
            "{}",
            r.json
        );
    }
    let mut undated: serde_json::Value =
        serde_json::from_str(&sample("new.like", 2)).expect("json");
    undated.as_object_mut().expect("object").remove("timestamp");
    let r = post_signed(&url, &undated.to_string()).await;
    assert_eq!(r.status, 401, "{}", r.json);
    assert_eq!(
        r.json["error"],
        "missing \"timestamp\" field in the payload"
    );
    expect_events(&h, "all.jsonl", &["new.like"]).await;
}
