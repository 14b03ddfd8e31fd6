//! `stripe`, signed by the `stripe` package's `webhooks.generateTestHeaderString`.

use serde_json::{Value, json};

use super::*;

const NEW: &str = "whsec_stripe_new_0123456789abcdef";
const OLD: &str = "whsec_stripe_old_fedcba9876543210";
const SECRETS: &[&str] = &[NEW, OLD];

fn req(secret: &str, timestamp: i64, body: &str) -> Value {
    json!({"provider": "stripe", "secret": secret, "timestamp": timestamp, "body": body})
}

fn event(id: &str, kind: &str) -> String {
    json!({"id": id, "object": "event", "type": kind, "livemode": false,
           "data": {"object": {"id": "pi_3MtwBwLkdIwHu7ix28a3tqPa", "amount": 2000}}})
    .to_string()
}

#[tokio::test]
async fn stripe_signed_by_the_stripe_package() {
    let source = format!(
        r#"
[[sources]]
name = "src"
path = "/webhooks/stripe"
verify = {{ scheme = "stripe", secrets = ["{NEW}", "{OLD}"], tolerance = "5m" }}
"#
    );
    let h = start(&source, r#"["payment_intent.succeeded"]"#);
    let url = h.url("/webhooks/stripe");
    let t = now();
    let succeeded = event("evt_1", "payment_intent.succeeded");
    let failed = event("evt_2", "payment_intent.payment_failed");
    let retried = succeeded.replace("\"livemode\":false", "\"livemode\":false,\"retry\":1");
    let sig = node_sign(&[
        req(NEW, t, &succeeded),
        req(OLD, t, &failed),
        req(NEW, t + 2, &retried),
        req("whsec_not_configured", t, &succeeded),
        req(NEW, t - 3600, &succeeded),
        req(NEW, t + 3600, &succeeded),
        req(NEW, t, &event("evt_3", "payment_intent.succeeded")),
        req(
            "whsec_not_configured",
            t,
            &event("evt_3", "payment_intent.succeeded"),
        ),
    ]);
    let s =
        |header: &str| -> Vec<(&'static str, String)> { vec![("Stripe-Signature", header.into())] };

    // Valid; rotated (second secret); type and id from the signed payload.
    let first = send(&url, &succeeded, &s(&sig[0]), 200, "", SECRETS).await;
    send(&url, &failed, &s(&sig[1]), 200, "", SECRETS).await;
    // A later delivery of the same event id is a duplicate.
    let again = send(&url, &retried, &s(&sig[2]), 200, "", SECRETS).await;
    assert_eq!(again.json["duplicate"], true, "{}", again.json);
    assert_eq!(again.json["id"], first.json["id"]);
    // Several v1 signatures (Stripe rolling a secret), one of them valid.
    let v1 = |header: &str| {
        header
            .split(',')
            .find_map(|e| e.strip_prefix("v1="))
            .map(str::to_string)
    };
    let several = format!(
        "t={t},v1={},v1={}",
        v1(&sig[7]).expect("v1"),
        v1(&sig[6]).expect("v1")
    );
    send(
        &url,
        &event("evt_3", "payment_intent.succeeded"),
        &s(&several),
        200,
        "",
        SECRETS,
    )
    .await;

    let tampered = succeeded.replace("2000", "1");
    send(
        &url,
        &tampered,
        &s(&sig[0]),
        401,
        "invalid signature",
        SECRETS,
    )
    .await;
    send(
        &url,
        &succeeded,
        &s(&sig[3]),
        401,
        "invalid signature",
        SECRETS,
    )
    .await;
    send(
        &url,
        &succeeded,
        &s(&sig[4]),
        401,
        "timestamp expired",
        SECRETS,
    )
    .await;
    send(&url, &succeeded, &s(&sig[5]), 401, "in the future", SECRETS).await;
    let no_v1 = format!("t={t}");
    let says = "malformed Stripe-Signature header";
    send(&url, &succeeded, &s(&no_v1), 401, says, SECRETS).await;
    let bad_t = sig[0].replacen(&format!("t={t}"), "t=soon", 1);
    let says = "malformed t= timestamp in the Stripe-Signature header";
    send(&url, &succeeded, &s(&bad_t), 401, says, SECRETS).await;
    let no_t = format!("v1={}", v1(&sig[0]).expect("v1"));
    let says = "missing t= timestamp in the Stripe-Signature header";
    send(&url, &succeeded, &s(&no_t), 401, says, SECRETS).await;
    let none: [(&str, &str); 0] = [];
    send(
        &url,
        &succeeded,
        &none,
        401,
        "missing Stripe-Signature header",
        SECRETS,
    )
    .await;

    expect_events(&h, "routed.jsonl", &["payment_intent.succeeded"; 2]).await;
    let types = [
        "payment_intent.succeeded",
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
    ];
    let lines = expect_events(&h, "all.jsonl", &types).await;
    assert!(lines.iter().any(|l| l["payload"]["id"] == "evt_3"));
}
