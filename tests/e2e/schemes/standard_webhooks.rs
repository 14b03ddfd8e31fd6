//! `standard-webhooks`, signed by the `standardwebhooks` SDKs from PyPI and npm.

use serde_json::{Value, json};

use super::*;

const NEW: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OLD: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
/// Not configured: base64 of "this-secret-was-retired".
const RETIRED: &str = "whsec_dGhpcy1zZWNyZXQtd2FzLXJldGlyZWQ=";
const SECRETS: &[&str] = &[NEW, OLD, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"];

/// The PyPI package's `Webhook.sign(msg_id, timestamp, payload)`.
const PYTHON: &str = r#"
import json, sys
from datetime import datetime, timezone
from standardwebhooks import Webhook
out = [Webhook(r['secret']).sign(r['id'], datetime.fromtimestamp(r['timestamp'], tz=timezone.utc), r['body'])
       for r in json.load(sys.stdin)]
print(json.dumps(out))
"#;

fn req(secret: &str, id: &str, timestamp: i64, body: &str) -> Value {
    json!({"provider": "standard-webhooks", "secret": secret, "id": id, "timestamp": timestamp, "body": body})
}

#[tokio::test]
async fn standard_webhooks_signed_by_the_sdks() {
    let source = format!(
        r#"
[[sources]]
name = "src"
path = "/webhooks/sw"
verify = {{ scheme = "standard-webhooks", secrets = ["{NEW}", "{OLD}"] }}
"#
    );
    let h = start(&source, r#"["invoice.paid"]"#);
    let url = h.url("/webhooks/sw");
    let t = now();
    let paid = json!({"type": "invoice.paid", "data": {"invoice": 1}}).to_string();
    let created = json!({"type": "invoice.created", "data": {"invoice": 2}}).to_string();
    let py = python_sign(
        PYTHON,
        &[
            req(NEW, "msg_1", t, &paid),
            req(OLD, "msg_2", t, &created),
            req(NEW, "msg_1", t + 1, &paid),
            req(RETIRED, "msg_3", t, &paid),
            req(NEW, "msg_4", t - 3600, &paid),
            req(NEW, "msg_5", t + 3600, &paid),
            req(NEW, "msg_6", t, &created),
            req(NEW, "msg_8", t, &paid),
        ],
    );
    let js = node_sign(&[
        req(NEW, "msg_7", t, &created),
        req(RETIRED, "msg_6", t, &created),
        req(NEW, "msg_1", t, &paid),
    ]);
    assert_eq!(js[2], py[0], "the npm and PyPI SDKs sign alike");
    let (ts, later) = (t.to_string(), (t + 1).to_string());
    let h3 = |id: &'static str, ts: &str, sig: &str| -> [(&'static str, String); 3] {
        [
            ("webhook-id", id.into()),
            ("webhook-timestamp", ts.into()),
            ("webhook-signature", sig.into()),
        ]
    };
    // Valid, rotated (second secret), and npm-signed.
    let first = send(&url, &paid, &h3("msg_1", &ts, &py[0]), 200, "", SECRETS).await;
    send(&url, &created, &h3("msg_2", &ts, &py[1]), 200, "", SECRETS).await;
    send(&url, &created, &h3("msg_7", &ts, &js[0]), 200, "", SECRETS).await;
    // A retry keeps webhook-id and is re-signed later: deduplicated on webhook-id.
    let retry = send(&url, &paid, &h3("msg_1", &later, &py[2]), 200, "", SECRETS).await;
    assert_eq!(retry.json["duplicate"], true, "{}", retry.json);
    assert_eq!(retry.json["id"], first.json["id"]);
    // The same body under another webhook-id is another event.
    let other = send(&url, &paid, &h3("msg_8", &ts, &py[7]), 200, "", SECRETS).await;
    assert_ne!(other.json["id"], first.json["id"]);
    // Several signatures, one of them valid (the sender rotating its secret).
    let several = format!("{} {}", js[1], py[6]);
    send(
        &url,
        &created,
        &h3("msg_6", &ts, &several),
        200,
        "",
        SECRETS,
    )
    .await;

    let tampered = paid.replace("\"invoice\":1", "\"invoice\":9");
    send(
        &url,
        &tampered,
        &h3("msg_1", &ts, &py[0]),
        401,
        "invalid signature",
        SECRETS,
    )
    .await;
    send(
        &url,
        &paid,
        &h3("msg_3", &ts, &py[3]),
        401,
        "invalid signature",
        SECRETS,
    )
    .await;
    let (old, ahead) = ((t - 3600).to_string(), (t + 3600).to_string());
    send(
        &url,
        &paid,
        &h3("msg_4", &old, &py[4]),
        401,
        "timestamp expired",
        SECRETS,
    )
    .await;
    send(
        &url,
        &paid,
        &h3("msg_5", &ahead, &py[5]),
        401,
        "in the future",
        SECRETS,
    )
    .await;
    let says = "malformed webhook-signature header";
    send(
        &url,
        &paid,
        &h3("msg_1", &ts, "v1,not base64!"),
        401,
        says,
        SECRETS,
    )
    .await;
    send(
        &url,
        &paid,
        &h3("msg_1", &ts, "sha256=00"),
        401,
        says,
        SECRETS,
    )
    .await;
    let says = "malformed webhook-timestamp header";
    send(
        &url,
        &paid,
        &h3("msg_1", "yesterday", &py[0]),
        401,
        says,
        SECRETS,
    )
    .await;
    let all = h3("msg_1", &ts, &py[0]);
    for (skip, says) in [
        (0, "missing webhook-id header"),
        (1, "missing webhook-timestamp header"),
        (2, "missing webhook-signature header"),
    ] {
        let mut headers = all.to_vec();
        headers.remove(skip);
        send(&url, &paid, &headers, 401, says, SECRETS).await;
    }

    // Routing by the signed `type`; the duplicate and the rejected never reach a sink.
    expect_events(&h, "routed.jsonl", &["invoice.paid", "invoice.paid"]).await;
    let types = [
        "invoice.paid",
        "invoice.paid",
        "invoice.created",
        "invoice.created",
        "invoice.created",
    ];
    expect_events(&h, "all.jsonl", &types).await;
}
