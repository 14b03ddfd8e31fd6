//! `slack`, signed by `slack_sdk` (`SignatureVerifier.generate_signature`), and Slack's
//! published example.

use serde_json::{Value, json};

use super::*;

const NEW: &str = "slack-signing-secret-new-0001";
/// Slack's published example secret, configured as the older of two.
const OLD: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const SECRETS: &[&str] = &[NEW, OLD];
const FORM: &str = "application/x-www-form-urlencoded";

/// From Slack's "Verifying requests from Slack" (also python-slack-sdk's tests).
const EXAMPLE_TS: &str = "1531420618";
const EXAMPLE_SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
const EXAMPLE_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";

const PYTHON: &str = r#"
import json, sys
from slack_sdk.signature import SignatureVerifier
out = [SignatureVerifier(r['secret']).generate_signature(timestamp=str(r['timestamp']), body=r['body'])
       for r in json.load(sys.stdin)]
print(json.dumps(out))
"#;

fn req(secret: &str, timestamp: i64, body: &str) -> Value {
    json!({"secret": secret, "timestamp": timestamp, "body": body})
}

#[tokio::test]
async fn slack_signed_by_slack_sdk_in_json_and_form_bodies() {
    // A second source with a tolerance wide enough for the 2018 example.
    let source = format!(
        r#"
[[sources]]
name = "src"
path = "/webhooks/slack"
verify = {{ scheme = "slack", secrets = ["{NEW}", "{OLD}"] }}

[[sources]]
name = "example"
path = "/webhooks/slack-example"
verify = {{ scheme = "slack", secrets = ["{OLD}"], tolerance = "20years" }}

[[pipelines]]
name = "example"
source = "example"
stages = [{{ sink = "file", path = "example.jsonl", envelope = true }}]
"#
    );
    let h = start(&source, r#"["app_mention"]"#);
    let url = h.url("/webhooks/slack");
    let t = now();
    let command = "token=x&team_id=T1&command=%2Fdeploy&text=prod&trigger_id=13345224609.738474920.8088930838d88f008e0";
    let mention = json!({"type": "event_callback", "event_id": "Ev1", "event": {"type": "app_mention", "text": "<@U1> hi"}}).to_string();
    let interaction = format!(
        "payload={}",
        form_urlencoded::byte_serialize(
            json!({"type": "block_actions", "trigger_id": "tr-9", "actions": [{"value": "approve"}]})
                .to_string()
                .as_bytes()
        )
        .collect::<String>()
    );
    let sig = python_sign(
        PYTHON,
        &[
            req(NEW, t, command),
            req(OLD, t, &mention),
            req(NEW, t + 1, &mention),
            req(NEW, t, &interaction),
            req("not-the-signing-secret", t, command),
            req(NEW, t - 3600, command),
            req(NEW, t + 3600, command),
        ],
    );
    let slack = |sig: &str, ts: i64, content_type: &str| -> Vec<(&'static str, String)> {
        vec![
            ("X-Slack-Signature", sig.into()),
            ("X-Slack-Request-Timestamp", ts.to_string()),
            ("Content-Type", content_type.into()),
        ]
    };
    let json_type = "application/json";

    // Valid form (slash command), rotated JSON (Events API), interactivity form.
    send(&url, command, &slack(&sig[0], t, FORM), 200, "", SECRETS).await;
    let first = send(
        &url,
        &mention,
        &slack(&sig[1], t, json_type),
        200,
        "",
        SECRETS,
    )
    .await;
    // Slack retries an event with the same event_id, signed anew: a duplicate.
    let mut retry = slack(&sig[2], t + 1, json_type);
    retry.push(("X-Slack-Retry-Num", "1".into()));
    let again = send(&url, &mention, &retry, 200, "", SECRETS).await;
    assert_eq!(again.json["duplicate"], true, "{}", again.json);
    assert_eq!(again.json["id"], first.json["id"]);
    send(
        &url,
        &interaction,
        &slack(&sig[3], t, FORM),
        200,
        "",
        SECRETS,
    )
    .await;

    let tampered = command.replace("prod", "staging");
    send(
        &url,
        &tampered,
        &slack(&sig[0], t, FORM),
        401,
        "invalid signature",
        SECRETS,
    )
    .await;
    send(
        &url,
        command,
        &slack(&sig[4], t, FORM),
        401,
        "invalid signature",
        SECRETS,
    )
    .await;
    send(
        &url,
        command,
        &slack(&sig[5], t - 3600, FORM),
        401,
        "timestamp expired",
        SECRETS,
    )
    .await;
    send(
        &url,
        command,
        &slack(&sig[6], t + 3600, FORM),
        401,
        "in the future",
        SECRETS,
    )
    .await;
    let says = "malformed X-Slack-Signature header: expected `v0=`";
    let v1 = sig[0].replacen("v0=", "v1=", 1);
    send(&url, command, &slack(&v1, t, FORM), 401, says, SECRETS).await;
    let mut bad_ts = slack(&sig[0], t, FORM);
    bad_ts[1].1 = "soon".into();
    let says = "malformed X-Slack-Request-Timestamp header";
    send(&url, command, &bad_ts, 401, says, SECRETS).await;
    let all = slack(&sig[0], t, FORM);
    let says = "missing X-Slack-Signature header";
    send(&url, command, &all[1..], 401, says, SECRETS).await;
    let says = "missing X-Slack-Request-Timestamp header";
    send(
        &url,
        command,
        &[all[0].clone(), all[2].clone()],
        401,
        says,
        SECRETS,
    )
    .await;
    // Slack sends one signature: two, one of them valid, are refused.
    let mut twice = slack(&sig[0], t, FORM);
    twice.push(("X-Slack-Signature", sig[4].clone()));
    send(&url, command, &twice, 401, "sent more than once", SECRETS).await;
    // Forms are accepted for Slack only; other types are still 415.
    let r = post(&url, command.to_string(), &[("Content-Type", "text/plain")]).await;
    assert_eq!(r.status, 415, "{}", r.json);

    // The published example: stale here, valid where the tolerance allows 2018.
    let example = [
        ("X-Slack-Signature", EXAMPLE_SIG),
        ("X-Slack-Request-Timestamp", EXAMPLE_TS),
        ("Content-Type", FORM),
    ];
    send(
        &url,
        EXAMPLE_BODY,
        &example,
        401,
        "timestamp expired",
        SECRETS,
    )
    .await;
    let example_url = h.url("/webhooks/slack-example");
    send(&example_url, EXAMPLE_BODY, &example, 200, "", SECRETS).await;
    let lines = expect_events(&h, "example.jsonl", &["/webhook-collect"]).await;
    assert_eq!(lines[0]["payload"]["user_name"], "roadrunner");

    expect_events(&h, "routed.jsonl", &["app_mention"]).await;
    let lines = expect_events(
        &h,
        "all.jsonl",
        &["/deploy", "app_mention", "block_actions"],
    )
    .await;
    let actions = lines
        .iter()
        .find(|l| l["type"] == "block_actions")
        .expect("interaction");
    assert_eq!(
        actions["payload"]["payload"]["actions"][0]["value"],
        "approve"
    );
}

#[tokio::test]
async fn slacks_url_verification_challenge_is_answered_after_verification_and_never_journaled() {
    let source = format!(
        r#"
[[sources]]
name = "src"
path = "/webhooks/slack"
verify = {{ scheme = "slack", secrets = ["{NEW}"] }}
"#
    );
    let h = start(&source, r#"["app_mention"]"#);
    let url = h.url("/webhooks/slack");
    let t = now();
    // What Slack sends when a Request URL is entered in the app's settings.
    let challenge = json!({
        "token": "Jhj5dZrVaK7ZwHHjRyZWjbDl",
        "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
        "type": "url_verification"
    })
    .to_string();
    let mention = json!({"type": "event_callback", "event_id": "Ev9", "event": {"type": "app_mention", "text": "hi"}}).to_string();
    let sig = python_sign(
        PYTHON,
        &[
            req(NEW, t, &challenge),
            req("not-the-signing-secret", t, &challenge),
            req(NEW, t, &mention),
        ],
    );
    let headers = |sig: &str| {
        vec![
            ("X-Slack-Signature", sig.to_string()),
            ("X-Slack-Request-Timestamp", t.to_string()),
            ("Content-Type", "application/json".to_string()),
        ]
    };
    let signed = headers(&sig[0]);
    let pairs: Vec<(&str, &str)> = signed.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = post(&url, challenge.clone(), &pairs).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(
        r.json,
        json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
    );
    // Never before verification: a wrong secret or a tampered challenge gets no answer.
    let wrong = send(
        &url,
        &challenge,
        &headers(&sig[1]),
        401,
        "invalid signature",
        &[NEW],
    )
    .await;
    assert!(wrong.json.get("challenge").is_none(), "{}", wrong.json);
    let tampered = challenge.replace("3eZbrw1a", "attacker");
    let r = send(
        &url,
        &tampered,
        &headers(&sig[0]),
        401,
        "invalid signature",
        &[NEW],
    )
    .await;
    assert!(!r.json.to_string().contains("attacker"), "{}", r.json);
    // The handshake is not an event: only the mention reaches the pipelines.
    send(&url, &mention, &headers(&sig[2]), 200, "", &[NEW]).await;
    expect_events(&h, "all.jsonl", &["app_mention"]).await;
    let out = h.cli(&["dlq", "list", "--json"]);
    let dlq: Value = serde_json::from_slice(&out.stdout).expect("dlq json");
    assert_eq!(dlq["total"], 0, "{dlq}");
}
