//! Sinks against real peers: an HTTP receiver on loopback, verified with the off-the-shelf
//! Standard Webhooks library from PyPI; a file sink on a disk that fills up.

use std::time::Duration;

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

/// A `file` sink on a 256 KiB tmpfs, filled but for 32 KiB: the disk fills while 400
/// accepted events are being written (writes fail partway through a line, and are retried),
/// then it is made bigger. Every line of the output parses and every event is in it exactly
/// once: a failed write is rolled back, so the retry neither follows a half line nor repeats
/// a whole one. A half line found at start-up (as a crash leaves it) is cut, with a warning.
/// Skipped, with the reason printed, where a tmpfs cannot be mounted (not root).
#[tokio::test]
async fn a_full_disk_leaves_no_partial_or_repeated_line_in_a_file_sink() {
    // Dropped last: after hookline, which holds the file open.
    let Some(disk) = Tmpfs::mount("256k") else {
        return;
    };
    let out = disk.path().join("events.jsonl");
    let half = r#"{"id":"01J0000000000000000000000","sour"#;
    std::fs::write(&out, half).expect("half line");
    let config = format!(
        r#"{}
[[pipelines]]
name = "archive"
source = "leadshark"
stages = [
  {{ sink = "file", path = "{}", envelope = true, retry = {{ attempts = 50, initial = "100ms", max = "500ms" }} }},
]
"#,
        leadshark_source(),
        out.display()
    );
    let h = Hookline::start(&config);
    // Room for a few dozen lines, whatever their size.
    disk.fill(32 * 1024);
    assert!(
        h.log().contains("ended in a partial line")
            && h.log().contains(&format!("dropped_bytes={}", half.len())),
        "the crash's half line is cut at start-up, with a warning:\n{}",
        h.log()
    );

    // Accepted into the journal (on the normal disk) whether or not the sink can write.
    let load = Load::start(&h.url("/webhooks/leadshark"), "email.captured", 8, 50);
    wait_until("400 acknowledged events", || load.acked() == 400).await;
    let acked = load.finish().await;
    let full = "No space left on device";
    wait_until("the disk to fill", || h.log().contains(full)).await;
    // Let the failed deliveries be retried against the full disk a few times.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let failures = h
        .log()
        .lines()
        .filter(|l| l.contains("will retry") && l.contains(full))
        .count();

    disk.resize("16m");
    wait_until("every delivery done", || {
        let log = std::fs::read_to_string(&out).unwrap_or_default();
        log.lines().count() >= acked.len()
    })
    .await;
    // The journal marks a delivery done just after its line is written.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while get_json(&h.admin_url("/readyz")).await["pending"] != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "deliveries still pending"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dead = get_json(&h.admin_url("/api/v1/dead-letters")).await;
    assert_eq!(dead["total"], 0, "{dead}");

    let text = std::fs::read_to_string(&out).expect("sink file");
    assert!(text.ends_with('\n'));
    let mut seen = std::collections::HashMap::<String, usize>::new();
    for (n, line) in text.lines().enumerate() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("line {} is not JSON ({e}): {line}", n + 1));
        *seen
            .entry(v["id"].as_str().expect("id").to_string())
            .or_default() += 1;
    }
    println!(
        "{} lines, {} bytes; {failures} deliveries failed with a full disk and were retried",
        text.lines().count(),
        text.len()
    );
    assert!(text.len() > 32 * 1024, "more than the disk had room for");
    assert!(failures > 0);
    for id in &acked {
        assert_eq!(seen.get(id), Some(&1), "event {id} is written exactly once");
    }
    assert_eq!(seen.len(), acked.len(), "nothing but the accepted events");
}
