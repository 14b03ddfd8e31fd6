//! `shopify`: Shopify's own published example (no Shopify SDK signs), and bodies signed with
//! the `hmac` crate for the other cases.

use base64::prelude::{BASE64_STANDARD, Engine as _};
use serde_json::json;

use super::*;

const NEW: &str = "shpss_new_client_secret_0001";
/// The client secret of the published example, configured as the older of two.
const OLD: &str = "test_secret_key";
const SECRETS: &[&str] = &[NEW, OLD];
/// From Shopify's shopify-app-js tests (`validate.test.ts`).
const EXAMPLE_SIG: &str = "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g=";
const EXAMPLE_BODY: &str = r#"{"foo": "bar"}"#;

fn sign(secret: &str, body: &str) -> String {
    BASE64_STANDARD.encode(hmac_sha256(secret, body.as_bytes()))
}

#[tokio::test]
async fn shopify_published_example_and_rejections() {
    let source = format!(
        r#"
[[sources]]
name = "src"
path = "/webhooks/shopify"
verify = {{ scheme = "shopify", secrets = ["{NEW}", "{OLD}"] }}
"#
    );
    let h = start(&source, r#"["orders/create"]"#);
    let url = h.url("/webhooks/shopify");
    assert_eq!(
        sign(OLD, EXAMPLE_BODY),
        EXAMPLE_SIG,
        "our signer agrees with Shopify's"
    );
    let shop = |sig: &str, topic: &str, id: &str| -> Vec<(&'static str, String)> {
        vec![
            ("X-Shopify-Hmac-Sha256", sig.into()),
            ("X-Shopify-Topic", topic.into()),
            ("X-Shopify-Webhook-Id", id.into()),
            ("X-Shopify-Shop-Domain", "shop1.myshopify.io".into()),
        ]
    };
    let order = json!({"id": 820982911946154508_u64, "email": "jon@example.com"}).to_string();

    // The published example (signed with the second, older secret: rotation).
    send(
        &url,
        EXAMPLE_BODY,
        &shop(EXAMPLE_SIG, "products/create", "w-1"),
        200,
        "",
        SECRETS,
    )
    .await;
    let first = send(
        &url,
        &order,
        &shop(&sign(NEW, &order), "orders/create", "w-2"),
        200,
        "",
        SECRETS,
    )
    .await;
    // Shopify retries with the same X-Shopify-Webhook-Id.
    let again = send(
        &url,
        &order,
        &shop(&sign(NEW, &order), "orders/create", "w-2"),
        200,
        "",
        SECRETS,
    )
    .await;
    assert_eq!(again.json["duplicate"], true, "{}", again.json);
    assert_eq!(again.json["id"], first.json["id"]);

    let tampered = order.replace("jon@", "eve@");
    let says = "invalid signature";
    send(
        &url,
        &tampered,
        &shop(&sign(NEW, &order), "orders/create", "w-3"),
        401,
        says,
        SECRETS,
    )
    .await;
    let wrong = sign("not-the-client-secret", &order);
    send(
        &url,
        &order,
        &shop(&wrong, "orders/create", "w-3"),
        401,
        says,
        SECRETS,
    )
    .await;
    let says = "malformed X-Shopify-Hmac-Sha256 header: expected the base64";
    let hex = hex::encode(hmac_sha256(NEW, order.as_bytes()));
    send(
        &url,
        &order,
        &shop(&hex, "orders/create", "w-3"),
        401,
        says,
        SECRETS,
    )
    .await;
    let mut twice = shop(&sign(NEW, &order), "orders/create", "w-3");
    twice.push(("X-Shopify-Hmac-Sha256", wrong.clone()));
    send(&url, &order, &twice, 401, "sent more than once", SECRETS).await;
    let no_sig = &shop(&sign(NEW, &order), "orders/create", "w-3")[1..];
    send(
        &url,
        &order,
        no_sig,
        401,
        "missing X-Shopify-Hmac-Sha256 header",
        SECRETS,
    )
    .await;
    // Shopify signs no timestamp: nothing to expire.

    // Signed, but no topic: a dead letter (200), routed nowhere.
    let no_topic = [("X-Shopify-Hmac-Sha256", sign(NEW, &order))];
    send(&url, &order, &no_topic, 200, "", SECRETS).await;
    let errors = dead_letters(&h);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("X-Shopify-Topic header is missing")),
        "{errors:?}"
    );

    expect_events(&h, "routed.jsonl", &["orders/create"]).await;
    expect_events(&h, "all.jsonl", &["orders/create", "products/create"]).await;
}
