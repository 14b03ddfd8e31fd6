//! Every signature scheme through the real binary over HTTP, signed by the providers' own
//! SDKs where one signs: `standardwebhooks` (PyPI and npm), `@octokit/webhooks-methods`,
//! the `stripe` package's test-header helper, `slack_sdk` and `twilio`'s `RequestValidator`;
//! Slack's and Shopify's published examples. For each scheme: valid, rotated secret, tampered body, wrong secret, expired and
//! future timestamps (where signed), malformed and missing headers, several signatures, and
//! where the event type and the idempotency key come from (routing and dedupe).
//!
//! The npm SDKs are pinned in `tests/node/package-lock.json` (`npm ci --prefix tests/node`,
//! done by `.ci/run`); `tests/node/sign.mjs` calls them.

mod ed25519;
mod generic;
mod github;
mod shopify;
mod slack;
mod standard_webhooks;
mod stripe;
mod twilio;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// Unix seconds now.
fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// Sign requests (`{provider, secret, body, timestamp?, id?}`) with the npm SDKs.
fn node_sign(requests: &[Value]) -> Vec<String> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/node");
    assert!(
        std::path::Path::new(root)
            .join("node_modules/stripe")
            .exists(),
        "the npm SDKs are not installed: run `npm ci --prefix tests/node`"
    );
    let mut child = Command::new("node")
        .arg(format!("{root}/sign.mjs"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node must be installed");
    let input = serde_json::to_vec(requests).expect("json");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), &input).expect("write");
    let out = child.wait_with_output().expect("node");
    assert!(
        out.status.success(),
        "sign.mjs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON array of headers")
}

/// Sign with a Python SDK: `script` reads the requests from stdin and prints a JSON array.
fn python_sign(script: &str, requests: &[Value]) -> Vec<String> {
    let input = serde_json::to_string(requests).expect("json");
    serde_json::from_str(&run_script("python3", script, &input, &[])).expect("JSON array")
}

/// HMAC with the `hmac` crate, for the generic scheme and Shopify bodies beyond the
/// published example (no Shopify SDK signs).
fn hmac_sha256(secret: &str, message: &[u8]) -> Vec<u8> {
    use ::hmac::{KeyInit, Mac};
    let mut mac = ::hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// A running Hookline with one source and two pipelines: `routed` (only `events`, to
/// `routed.jsonl`) and `all` (to `all.jsonl`), both writing envelopes.
fn start(source: &str, events: &str) -> Hookline {
    let config = format!(
        r#"{source}
[[pipelines]]
name = "routed"
source = "src"
events = {events}
stages = [{{ sink = "file", path = "routed.jsonl", envelope = true }}]

[[pipelines]]
name = "all"
source = "src"
stages = [{{ sink = "file", path = "all.jsonl", envelope = true }}]
"#
    );
    Hookline::start(&config)
}

/// POST and check the answer: `200` with an id, or `status` with an error naming `says`.
/// No answer may contain a secret.
async fn send(
    url: &str,
    body: &str,
    headers: &[(&str, impl AsRef<str>)],
    status: u16,
    says: &str,
    secrets: &[&str],
) -> Reply {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_ref())).collect();
    let r = post(url, body, &headers).await;
    let text = r.json.to_string();
    assert_eq!(r.status, status, "{says}: {text}");
    for secret in secrets {
        assert!(!text.contains(secret), "leaks a secret: {text}");
    }
    if status == 200 {
        assert_eq!(r.json["received"], true, "{text}");
        assert!(r.json["id"].is_string(), "{text}");
    } else {
        let error = r.json["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error: {text}"));
        assert!(error.contains(says), "expected {says:?} in {error:?}");
    }
    r
}

/// Wait for exactly `types` (in any order) in `file`, then check nothing more arrives.
async fn expect_events(h: &Hookline, file: &str, types: &[&str]) -> Vec<Value> {
    let lines = wait_for_lines(&h.path(file), types.len()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = if lines.len() == types.len() {
        read_lines(&h.path(file))
    } else {
        lines
    };
    let mut got: Vec<&str> = lines
        .iter()
        .map(|l| l["type"].as_str().expect("type"))
        .collect();
    let mut want = types.to_vec();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want, "{file}");
    lines
}

/// The dead letters' error texts.
fn dead_letters(h: &Hookline) -> Vec<String> {
    let out = h.cli(&["dlq", "list", "--json"]);
    let page: Value = serde_json::from_slice(&out.stdout).expect("dlq list --json");
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|d| d["error"].as_str().expect("error").to_string())
        .collect()
}
