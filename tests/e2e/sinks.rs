//! Sinks against real peers: an HTTP receiver on loopback, verified with the off-the-shelf
//! Standard Webhooks library from PyPI.

use serde_json::Value;

use crate::support::*;

const SIGNING_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[tokio::test]
async fn http_sink_delivers_and_signs_in_standard_webhooks_format() {
    let receiver = Receiver::start(vec![]).await;
    let config = format!(
        r#"{}
[[pipelines]]
name = "crm"
source = "leadshark"
stages = [
  {{ sink = "http", url = "{}", headers = {{ "x-tenant" = "acme" }}, signing = {{ secret = "{SIGNING_SECRET}" }} }},
]
"#,
        leadshark_source(),
        receiver.url()
    );
    let h = Hookline::start(&config);
    let body = sample("email.captured", 4);
    let r = post_signed(&h.url("/webhooks/leadshark"), &body).await;
    assert_eq!(r.status, 200);
    let id = r.json["id"].as_str().expect("id").to_string();

    let got = receiver.wait_for(1).await;
    assert_eq!(got.len(), 1);
    let req = &got[0];
    assert_eq!(
        serde_json::from_slice::<Value>(&req.body).expect("json"),
        serde_json::from_str::<Value>(&body).expect("json")
    );
    assert_eq!(req.headers["x-tenant"], "acme");
    assert_eq!(req.headers["content-type"], "application/json");
    assert_eq!(
        req.headers["webhook-id"],
        id.as_str(),
        "receivers deduplicate on the event id"
    );

    // The standardwebhooks package (PyPI) verifies what we sent.
    let headers: serde_json::Map<String, Value> =
        ["webhook-id", "webhook-timestamp", "webhook-signature"]
            .iter()
            .map(|k| {
                (
                    k.to_string(),
                    Value::String(req.headers[*k].to_str().expect("ascii").to_string()),
                )
            })
            .collect();
    let input = serde_json::json!({ "headers": headers, "body": String::from_utf8(req.body.clone()).expect("utf-8") }).to_string();
    let script = r#"
import json, os, sys
from standardwebhooks.webhooks import Webhook
inp = json.load(sys.stdin)
Webhook(os.environ['SW_SECRET']).verify(inp['body'], inp['headers'])
print('verified')
"#;
    let out = tokio::task::spawn_blocking(move || {
        run_script("python3", script, &input, &[("SW_SECRET", SIGNING_SECRET)])
    })
    .await
    .expect("join");
    assert_eq!(out.trim(), "verified");

    // The log never shows the signing secret.
    assert!(!h.log().contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
    assert!(!h.log().contains(SECRET));
}

#[tokio::test]
async fn http_sink_failure_statuses_are_reported_with_the_stage() {
    let receiver = Receiver::start(vec![404]).await;
    let config = format!(
        r#"{}
[[pipelines]]
name = "crm"
source = "leadshark"
stages = [{{ sink = "http", url = "{}" }}, {{ sink = "file", path = "after.jsonl" }}]
"#,
        leadshark_source(),
        receiver.url()
    );
    let h = Hookline::start(&config);
    let url = h.url("/webhooks/leadshark");
    assert_eq!(post_signed(&url, &sample("new.like", 1)).await.status, 200);
    assert_eq!(receiver.wait_for(1).await.len(), 1);
    // The failed event does not continue to the next stage; the next one does.
    assert_eq!(post_signed(&url, &sample("new.like", 2)).await.status, 200);
    let after = wait_for_lines(&h.path("after.jsonl"), 1).await;
    assert_eq!(after.len(), 1);
    assert_eq!(
        after[0],
        serde_json::from_str::<Value>(&sample("new.like", 2)).expect("json")
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !h.log().contains("stage failed") && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        h.log().contains("404"),
        "the status is in the reported error"
    );
}
