//! `hookline verify` (issue 20): whether a request verifies and, if not, exactly why — with
//! the secret named by its fingerprint only. LeadShark's Node and Python re-serialisations
//! are computed here by real `node` and `python3`, not by the code under test.

use std::path::Path;

use serde_json::Value;

use crate::support::*;

/// What the user has: a body file and a header file, as captured.
fn capture(dir: &Path, body: &[u8], headers: &[(&str, &str)]) -> (String, String) {
    let body_path = dir.join("body.json");
    std::fs::write(&body_path, body).expect("body");
    let lines: String = headers.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
    let headers_path = dir.join("headers.txt");
    std::fs::write(
        &headers_path,
        format!("POST /webhooks/leadshark HTTP/1.1\n{lines}"),
    )
    .expect("headers");
    (path_str(&body_path), path_str(&headers_path))
}

fn path_str(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

fn verify(args: &[&str]) -> (bool, String) {
    let out = run_cli(&[&["verify"], args].concat(), &[]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `hookline verify --json`'s report.
fn report(args: &[&str]) -> (bool, Value) {
    let out = run_cli(&[&["verify", "--json"], args].concat(), &[]);
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), json)
}

fn fingerprint(secret: &str) -> String {
    use sha2::Digest;
    format!(
        "sha256:{}",
        &hex::encode(sha2::Sha256::digest(secret.as_bytes()))[..8]
    )
}

const WRONG: &str = "wrong-secret-9876543210";

#[test]
fn a_good_request_verifies_from_the_config_or_a_scheme() {
    let dir = tempfile::tempdir().expect("dir");
    let body = sample("email.captured", 1);
    let sig = sign(SECRET, body.as_bytes());
    let (body_file, headers_file) = capture(
        dir.path(),
        body.as_bytes(),
        &[
            ("X-Webhook-Signature", &sig),
            ("X-Webhook-Event", "email.captured"),
        ],
    );
    let config = dir.path().join("pipeline.toml");
    std::fs::write(&config, config_text(&leadshark_source(), "")).expect("config");
    let (ok, text) = verify(&[
        "--config",
        &path_str(&config),
        "--source",
        "leadshark",
        "--body",
        &body_file,
        "--headers-file",
        &headers_file,
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("OK: source `leadshark`"), "{text}");
    assert!(
        text.contains("verifies: a `email.captured` event"),
        "{text}"
    );
    assert!(text.contains(&fingerprint(SECRET)), "{text}");
    assert!(!text.contains(SECRET), "the secret is never shown: {text}");

    let header = format!("X-Webhook-Signature: {sig}");
    let (ok, r) = report(&[
        "--scheme",
        "leadshark",
        "--secret",
        SECRET,
        "--body",
        &body_file,
        "-H",
        &header,
    ]);
    assert!(ok, "{r}");
    assert_eq!(
        (r["verified"].as_bool(), r["reason"].as_str()),
        (Some(true), None)
    );
    assert!(!r.to_string().contains(SECRET));
}

#[test]
fn a_wrong_secret_says_what_the_configured_one_would_have_signed() {
    let dir = tempfile::tempdir().expect("dir");
    let body = sample("new.like", 2);
    let sig = sign(SECRET, body.as_bytes());
    let (body_file, headers_file) = capture(
        dir.path(),
        body.as_bytes(),
        &[("X-Webhook-Signature", &sig)],
    );
    let args = [
        "--scheme",
        "leadshark",
        "--secret",
        WRONG,
        "--body",
        &body_file,
        "--headers-file",
        &headers_file,
    ];
    let (ok, text) = verify(&args);
    assert!(!ok, "exit code non-zero: {text}");
    assert!(text.contains("FAILED"), "{text}");
    assert!(text.contains("401 bad_signature"), "{text}");
    assert!(text.contains(&fingerprint(WRONG)), "{text}");
    assert!(
        text.contains(&sign(WRONG, body.as_bytes())),
        "expected: {text}"
    );
    assert!(text.contains(&sig), "what was sent: {text}");
    assert!(!text.contains(WRONG), "the secret is never shown: {text}");

    let (ok, r) = report(&args);
    assert!(!ok);
    assert_eq!(r["status"], 401);
    assert_eq!(r["secrets"][0]["fingerprint"], fingerprint(WRONG));
    assert_eq!(r["secrets"][0]["signature_ok"], false);
    assert_eq!(r["expected"][0]["form"], "raw");
    assert_eq!(r["expected"][0]["value"], sign(WRONG, body.as_bytes()));
    assert!(!r.to_string().contains(WRONG));
}

/// A pretty-printed body with non-ASCII text, signed as LeadShark's Python snippet signs:
/// it verifies, and with a wrong secret every form tried is listed with what it needed.
#[test]
fn a_python_signed_leadshark_body_lists_every_form_tried() {
    let dir = tempfile::tempdir().expect("dir");
    let mut payload: Value = serde_json::from_str(&sample("new.comment", 3)).expect("json");
    payload["data"]["lead"]["name"] = "Zoë Ångström".into();
    let body = serde_json::to_string_pretty(&payload).expect("pretty");
    let python = run_script(
        "python3",
        "import json, sys; sys.stdout.write(json.dumps(json.loads(sys.stdin.read()), separators=(',',':')))",
        &body,
        &[],
    );
    let node = run_script(
        "node",
        "process.stdout.write(JSON.stringify(JSON.parse(require('fs').readFileSync(0, 'utf8'))))",
        &body,
        &[],
    );
    assert_ne!(python, node, "the snippets disagree on non-ASCII text");
    let sig = sign(SECRET, python.as_bytes());
    let (body_file, headers_file) = capture(
        dir.path(),
        body.as_bytes(),
        &[("X-Webhook-Signature", &sig)],
    );
    let common = ["--body", &body_file, "--headers-file", &headers_file];

    let (ok, r) = report(&[&["--scheme", "leadshark", "--secret", SECRET][..], &common].concat());
    assert!(ok, "signed Python-style, it verifies: {r}");
    assert_eq!(r["signed_over"]["form"], "python", "{r}");
    assert_eq!(r["signed_over"]["secret"], fingerprint(SECRET), "{r}");

    let (ok, r) = report(&[&["--scheme", "leadshark", "--secret", WRONG][..], &common].concat());
    assert!(!ok);
    let forms: Vec<(&str, &str, u64)> = r["expected"]
        .as_array()
        .expect("expected")
        .iter()
        .map(|e| {
            (
                e["form"].as_str().expect("form"),
                e["value"].as_str().expect("value"),
                e["bytes"].as_u64().expect("bytes"),
            )
        })
        .collect();
    let raw = sign(WRONG, body.as_bytes());
    let node_sig = sign(WRONG, node.as_bytes());
    let python_sig = sign(WRONG, python.as_bytes());
    assert_eq!(
        forms,
        [
            ("raw", raw.as_str(), body.len() as u64),
            ("node", node_sig.as_str(), node.len() as u64),
            ("python", python_sig.as_str(), python.len() as u64),
        ],
        "{r}"
    );
    let (_, text) = verify(&[&["--scheme", "leadshark", "--secret", WRONG][..], &common].concat());
    for described in [
        "the raw body bytes",
        "Node-style re-serialisation",
        "Python-style re-serialisation",
    ] {
        assert!(text.contains(described), "{described}: {text}");
    }
    assert!(!text.contains(WRONG) && !r.to_string().contains(WRONG));
}

#[test]
fn a_stale_timestamp_is_named_as_such() {
    use hmac::{KeyInit, Mac};
    let dir = tempfile::tempdir().expect("dir");
    let secret = "whsec_stripe_e2e";
    let body = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;
    let t: i64 = 1_700_000_000;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let header = format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()));
    let (body_file, headers_file) = capture(dir.path(), body, &[("Stripe-Signature", &header)]);
    let at = jiff::Timestamp::from_second(t + 3 * 3600)
        .expect("time")
        .to_string();
    let args = [
        "--scheme",
        "stripe",
        "--secret",
        secret,
        "--body",
        &body_file,
        "--headers-file",
        &headers_file,
        "--at",
        &at,
    ];
    let (ok, text) = verify(&args);
    assert!(!ok, "{text}");
    assert!(
        text.contains("signature good but timestamp 3h old, tolerance 5m"),
        "{text}"
    );
    assert!(text.contains("timestamp_expired"), "{text}");
    assert!(!text.contains(secret), "{text}");
    let (_, r) = report(&args);
    assert_eq!(r["signature_ok"], true, "{r}");
    assert_eq!(r["secrets"][0]["signature_ok"], true, "{r}");

    let fresh = jiff::Timestamp::from_second(t + 60)
        .expect("time")
        .to_string();
    let (ok, text) = verify(&[&args[..8], &["--at", &fresh][..]].concat());
    assert!(ok, "within tolerance: {text}");
}

/// Twilio signs the URL: the target comes from the captured request line (or `--target`),
/// the URL from `public_url` (or `Host`). Signed by twilio-python's `RequestValidator`.
#[test]
fn a_twilio_request_verifies_with_its_target_and_a_wrong_token_shows_the_expected_signature() {
    let dir = tempfile::tempdir().expect("dir");
    let public = "https://hooks.example.com/twilio/sms";
    let body = "MessageSid=SM1&SmsStatus=received&Body=hello+there&From=%2B15005550006";
    let script = r#"
import json, sys
from urllib.parse import parse_qsl
from twilio.request_validator import RequestValidator
r = json.load(sys.stdin)
params = dict(parse_qsl(r['body'], keep_blank_values=True))
print(json.dumps([RequestValidator(t).compute_signature(r['url'], params) for t in r['tokens']]))
"#;
    let input = serde_json::json!({
        "body": body, "url": format!("{public}?tenant=acme"), "tokens": [SECRET, WRONG],
    });
    let sigs: Vec<String> =
        serde_json::from_str(&run_script("python3", script, &input.to_string(), &[]))
            .expect("signatures");
    let body_file = dir.path().join("body.txt");
    std::fs::write(&body_file, body).expect("body");
    let headers_file = dir.path().join("headers.txt");
    std::fs::write(
        &headers_file,
        format!(
            "POST /webhooks/twilio?tenant=acme HTTP/1.1\nHost: 127.0.0.1:8080\nContent-Type: application/x-www-form-urlencoded\nX-Twilio-Signature: {}\n",
            sigs[0]
        ),
    )
    .expect("headers");
    let config = dir.path().join("pipeline.toml");
    let source = format!(
        "[[sources]]\nname = \"twilio\"\npath = \"/webhooks/twilio\"\nverify = {{ scheme = \"twilio\", secrets = [\"{SECRET}\"], public_url = \"{public}\" }}\n"
    );
    std::fs::write(&config, config_text(&source, "")).expect("config");
    let (body_file, headers_file) = (path_str(&body_file), path_str(&headers_file));
    let (ok, text) = verify(&[
        "--config",
        &path_str(&config),
        "--source",
        "twilio",
        "--body",
        &body_file,
        "--headers-file",
        &headers_file,
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("verifies: a `received` event"), "{text}");

    // Without public_url the URL is Host + target: given here, and the token is wrong.
    let (ok, r) = report(&[
        "--scheme",
        "twilio",
        "--secret",
        WRONG,
        "--body",
        &body_file,
        "-H",
        "Host: hooks.example.com",
        "-H",
        "Content-Type: application/x-www-form-urlencoded",
        "-H",
        &format!("X-Twilio-Signature: {}", sigs[0]),
        "--target",
        "/twilio/sms?tenant=acme",
    ]);
    assert!(!ok, "{r}");
    assert_eq!(
        (r["status"].as_u64(), r["reason"].as_str()),
        (Some(401), Some("bad_signature"))
    );
    assert_eq!(r["expected"][0]["value"], sigs[1].as_str(), "{r}");
    assert!(!r.to_string().contains(WRONG));
}
