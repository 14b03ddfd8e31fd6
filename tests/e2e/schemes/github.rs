//! `github`, signed by `@octokit/webhooks-methods`.

use serde_json::{Value, json};

use super::*;

const NEW: &str = "gh-webhook-secret-2026";
const OLD: &str = "It's a Secret to Everybody";
const SECRETS: &[&str] = &[NEW, OLD];

fn req(secret: &str, body: &str) -> Value {
    json!({"provider": "github", "secret": secret, "body": body})
}

#[tokio::test]
async fn github_signed_by_octokit() {
    let source = format!(
        r#"
[[sources]]
name = "src"
path = "/webhooks/github"
verify = {{ scheme = "github", secrets = ["{NEW}", "{OLD}"] }}
"#
    );
    let h = start(&source, r#"["pull_request"]"#);
    let url = h.url("/webhooks/github");
    let opened =
        json!({"action": "opened", "number": 7, "pull_request": {"title": "Fix"}}).to_string();
    let push = json!({"ref": "refs/heads/main", "after": "abc"}).to_string();
    let edited = opened.replace("Fix", "Fix it");
    let sig = node_sign(&[
        req(NEW, &opened),
        req(OLD, &push),
        req("not-the-secret", &opened),
        req(NEW, &edited),
        req(NEW, "Hello, World!"),
        req(
            NEW,
            &json!({"zen": "Keep it logically awesome."}).to_string(),
        ),
    ]);
    // Octokit and GitHub's published example agree.
    let vector = node_sign(&[req(OLD, "Hello, World!")]);
    assert_eq!(
        vector[0],
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    );
    let gh = |sig: &str, event: &str, delivery: &str| -> Vec<(&'static str, String)> {
        vec![
            ("X-Hub-Signature-256", sig.into()),
            ("X-GitHub-Event", event.into()),
            ("X-GitHub-Delivery", delivery.into()),
        ]
    };

    // Valid; rotated (second secret); the event type is the X-GitHub-Event header.
    let first = send(
        &url,
        &opened,
        &gh(&sig[0], "pull_request", "d-1"),
        200,
        "",
        SECRETS,
    )
    .await;
    send(&url, &push, &gh(&sig[1], "push", "d-2"), 200, "", SECRETS).await;
    // A redelivery keeps X-GitHub-Delivery: deduplicated on it, even with another body...
    let again = send(
        &url,
        &edited,
        &gh(&sig[3], "pull_request", "d-1"),
        200,
        "",
        SECRETS,
    )
    .await;
    assert_eq!(again.json["duplicate"], true, "{}", again.json);
    assert_eq!(again.json["id"], first.json["id"]);
    // ...and the same body under another delivery id is another event.
    send(
        &url,
        &opened,
        &gh(&sig[0], "pull_request", "d-3"),
        200,
        "",
        SECRETS,
    )
    .await;
    // GitHub also sends the legacy SHA-1 header: ignored, whatever it holds.
    let mut legacy = gh(&sig[1], "push", "d-4");
    legacy.push((
        "X-Hub-Signature",
        "sha1=0000000000000000000000000000000000000000".into(),
    ));
    send(&url, &push, &legacy, 200, "", SECRETS).await;

    let tampered = opened.replace("Fix", "Pwn");
    let says = "invalid signature";
    send(
        &url,
        &tampered,
        &gh(&sig[0], "pull_request", "d-5"),
        401,
        says,
        SECRETS,
    )
    .await;
    send(
        &url,
        &opened,
        &gh(&sig[2], "pull_request", "d-5"),
        401,
        says,
        SECRETS,
    )
    .await;
    let says = "malformed X-Hub-Signature-256 header: expected `sha256=`";
    let hex_only = sig[0].trim_start_matches("sha256=");
    send(
        &url,
        &opened,
        &gh(hex_only, "pull_request", "d-5"),
        401,
        says,
        SECRETS,
    )
    .await;
    send(
        &url,
        &opened,
        &gh("sha256=xyz", "pull_request", "d-5"),
        401,
        says,
        SECRETS,
    )
    .await;
    let mut twice = gh(&sig[0], "pull_request", "d-5");
    twice.push(("X-Hub-Signature-256", sig[2].clone()));
    let says = "malformed X-Hub-Signature-256 header: sent more than once";
    send(&url, &opened, &twice, 401, says, SECRETS).await;
    let no_sig = &gh(&sig[0], "pull_request", "d-5")[1..];
    let says = "missing X-Hub-Signature-256 header";
    send(&url, &opened, no_sig, 401, says, SECRETS).await;
    // GitHub signs no timestamp: nothing to expire.

    // Signed, but no event type or no JSON: kept as dead letters (200), routed nowhere.
    let ping = json!({"zen": "Keep it logically awesome."}).to_string();
    let no_event = [("X-Hub-Signature-256", sig[5].as_str())];
    send(&url, &ping, &no_event, 200, "", SECRETS).await;
    let not_json = [
        ("X-Hub-Signature-256", sig[4].as_str()),
        ("X-GitHub-Event", "ping"),
    ];
    send(&url, "Hello, World!", &not_json, 200, "", SECRETS).await;
    let errors = dead_letters(&h);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("X-GitHub-Event header is missing")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("malformed JSON")),
        "{errors:?}"
    );

    expect_events(&h, "routed.jsonl", &["pull_request", "pull_request"]).await;
    expect_events(
        &h,
        "all.jsonl",
        &["pull_request", "pull_request", "push", "push"],
    )
    .await;
}
