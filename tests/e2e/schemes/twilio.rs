//! `twilio`, signed by Twilio's own library: twilio-python's
//! `RequestValidator(token).compute_signature(url, params)`, over form fields and, for a
//! JSON body, over the URL carrying `bodySHA256` (`compute_hash`). Hookline listens on
//! loopback while the signed URL is the public one a proxy would forward.

use serde_json::{Value, json};
use sha2::Digest as _;

use super::*;

const NEW: &str = "twilio-auth-token-new-000000001";
/// The secondary Auth Token while Twilio rotates it.
const OLD: &str = "twilio-auth-token-old-000000002";
const SECRETS: &[&str] = &[NEW, OLD];
const FORM: &str = "application/x-www-form-urlencoded";
const PUBLIC: &str = "https://hooks.example.com/twilio/sms";

/// Each request `{token, url, params: [[name, value], ...]}` (a form) or `{token, url,
/// body}` (JSON: `bodySHA256` is added to the URL as Twilio adds it). Prints
/// `[{signature, url}]`; the repeated names go in as a MultiDict does (`getall`).
const PYTHON: &str = r#"
import json, sys
from twilio.request_validator import RequestValidator

class Fields(dict):
    def __init__(self, pairs):
        super().__init__(pairs)
        self.pairs = pairs
    def getall(self, name):
        return [v for n, v in self.pairs if n == name]

out = []
for r in json.load(sys.stdin):
    v = RequestValidator(r['token'])
    url = r['url']
    if 'body' in r:
        url += ('&' if '?' in url else '?') + 'bodySHA256=' + v.compute_hash(r['body'])
        sig = v.compute_signature(url, {})
        assert v.validate(url, r['body'], sig)
    else:
        sig = v.compute_signature(url, Fields(r['params']))
    out.append({'signature': sig, 'url': url})
print(json.dumps(out))
"#;

fn form_req(token: &str, url: &str, params: &[(&str, &str)]) -> Value {
    json!({"token": token, "url": url, "params": params})
}

fn json_req(token: &str, url: &str, body: &str) -> Value {
    json!({"token": token, "url": url, "body": body})
}

fn encode(params: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

/// `(signature, signed URL)` per request.
fn twilio_sign(requests: &[Value]) -> Vec<(String, String)> {
    let input = serde_json::to_string(requests).expect("json");
    let out: Vec<Value> =
        serde_json::from_str(&run_script("python3", PYTHON, &input, &[])).expect("JSON array");
    out.iter()
        .map(|o| {
            (
                o["signature"].as_str().expect("signature").to_string(),
                o["url"].as_str().expect("url").to_string(),
            )
        })
        .collect()
}

/// The path and query Hookline receives for a signed public URL: the proxy forwards the
/// query as is to the source's path.
fn forwarded(h: &Hookline, signed_url: &str, path: &str) -> String {
    match signed_url.split_once('?') {
        Some((_, query)) => h.url(&format!("{path}?{query}")),
        None => h.url(path),
    }
}

fn headers(sig: &str, content_type: &str) -> Vec<(&'static str, String)> {
    vec![
        ("X-Twilio-Signature", sig.to_string()),
        ("Content-Type", content_type.to_string()),
        ("I-Twilio-Idempotency-Token", "idem-1".to_string()),
    ]
}

#[tokio::test]
async fn twilio_signed_by_twilio_python_behind_a_proxy_forms_json_and_rejections() {
    let source = format!(
        r#"
[[sources]]
name = "src"
path = "/webhooks/twilio"
verify = {{ scheme = "twilio", secrets = ["{NEW}", "{OLD}"], public_url = "{PUBLIC}" }}

[[sources]]
name = "direct"
path = "/webhooks/twilio-direct"
verify = {{ scheme = "twilio", secrets = ["{NEW}"] }}

[[pipelines]]
name = "direct"
source = "direct"
stages = [{{ sink = "file", path = "direct.jsonl", envelope = true }}]
"#
    );
    let h = start(&source, r#"["received"]"#);
    let path = "/webhooks/twilio";
    let inbound: &[(&str, &str)] = &[
        ("MessageSid", "SM0000000000000000000000000000001"),
        ("SmsStatus", "received"),
        ("From", "+15005550006"),
        ("To", "+15005550001"),
        ("Body", "Hello & good day: 100% sure?"),
        ("NumMedia", "2"),
        ("MediaUrl", "https://api.twilio.com/m/2"),
        ("MediaUrl", "https://api.twilio.com/m/1"),
    ];
    let status: &[(&str, &str)] = &[
        ("MessageSid", "SM0000000000000000000000000000002"),
        ("MessageStatus", "delivered"),
        ("SmsStatus", "delivered"),
    ];
    let event =
        json!({"EventType": "onMessageAdded", "ConversationSid": "CH1", "Body": "hi"}).to_string();
    let query_url = format!("{PUBLIC}?tenant=acme&x=a%20b");
    let direct = h.url("/webhooks/twilio-direct");
    let port_url = PUBLIC.replace(".com/", ".com:443/");
    let signed = twilio_sign(&[
        form_req(NEW, &query_url, inbound),
        form_req(OLD, PUBLIC, status),
        json_req(NEW, PUBLIC, &event),
        form_req("not-the-auth-token", PUBLIC, status),
        form_req(NEW, "https://hooks.example.com/twilio/other", status),
        form_req(NEW, &direct, status),
        form_req(
            NEW,
            &port_url,
            &[("CallSid", "CA1"), ("CallStatus", "ringing")],
        ),
    ]);
    let inbound_body = encode(inbound);
    let status_body = encode(status);

    // Valid form with a query Twilio signed (as forwarded), a rotated token, valid JSON.
    let (sig, url) = &signed[0];
    let first = send(
        &forwarded(&h, url, path),
        &inbound_body,
        &headers(sig, FORM),
        200,
        "",
        SECRETS,
    )
    .await;
    let (sig, url) = &signed[1];
    send(
        &forwarded(&h, url, path),
        &status_body,
        &headers(sig, FORM),
        200,
        "",
        SECRETS,
    )
    .await;
    let (json_sig, json_url) = &signed[2];
    let json_at = forwarded(&h, json_url, path);
    send(
        &json_at,
        &event,
        &headers(json_sig, "application/json"),
        200,
        "",
        SECRETS,
    )
    .await;
    // Signed with `:443` in the URL: accepted, as Twilio's validators accept it.
    let (sig, url) = &signed[6];
    let call = encode(&[("CallSid", "CA1"), ("CallStatus", "ringing")]);
    send(
        &forwarded(&h, url, path),
        &call,
        &headers(sig, FORM),
        200,
        "",
        SECRETS,
    )
    .await;

    // The same delivery again (a retry, another idempotency token): a duplicate.
    let (sig, url) = &signed[0];
    let mut retry = headers(sig, FORM);
    retry[2].1 = "idem-2".into();
    let again = send(
        &forwarded(&h, url, path),
        &inbound_body,
        &retry,
        200,
        "",
        SECRETS,
    )
    .await;
    assert_eq!(again.json["duplicate"], true, "{}", again.json);
    assert_eq!(again.json["id"], first.json["id"]);

    // Tampered form body, tampered query, tampered JSON body, tampered bodySHA256.
    let tampered = inbound_body.replace("Hello", "Jello");
    let at = forwarded(&h, url, path);
    send(
        &at,
        &tampered,
        &headers(sig, FORM),
        401,
        "invalid signature",
        SECRETS,
    )
    .await;
    let moved = at.replace("tenant=acme", "tenant=evil");
    send(
        &moved,
        &inbound_body,
        &headers(sig, FORM),
        401,
        "invalid signature",
        SECRETS,
    )
    .await;
    let changed = event.replace("hi", "ho");
    let says = "the body's SHA-256 is not the signed bodySHA256";
    send(
        &json_at,
        &changed,
        &headers(json_sig, "application/json"),
        401,
        says,
        SECRETS,
    )
    .await;
    let (base, _) = json_at.split_once('?').expect("query");
    let rehashed = format!(
        "{base}?bodySHA256={}",
        hex::encode(sha2::Sha256::digest(changed.as_bytes()))
    );
    let says = "invalid signature";
    send(
        &rehashed,
        &changed,
        &headers(json_sig, "application/json"),
        401,
        says,
        SECRETS,
    )
    .await;
    let unhashed = h.url(path);
    let says = "no bodySHA256 query parameter";
    let ring_sig = {
        use ::hmac::{KeyInit, Mac};
        use base64::prelude::{BASE64_STANDARD, Engine as _};
        let mut mac = ::hmac::Hmac::<sha1::Sha1>::new_from_slice(NEW.as_bytes()).expect("key");
        mac.update(PUBLIC.as_bytes());
        BASE64_STANDARD.encode(mac.finalize().into_bytes())
    };
    send(
        &unhashed,
        &event,
        &headers(&ring_sig, "application/json"),
        401,
        says,
        SECRETS,
    )
    .await;

    // Wrong token, wrong URL (not the public_url), missing header.
    let (sig, _) = &signed[3];
    let at = h.url(path);
    send(
        &at,
        &status_body,
        &headers(sig, FORM),
        401,
        "invalid signature",
        SECRETS,
    )
    .await;
    let (sig, _) = &signed[4];
    send(
        &at,
        &status_body,
        &headers(sig, FORM),
        401,
        "invalid signature",
        SECRETS,
    )
    .await;
    let (sig, _) = &signed[1];
    let no_sig = headers(sig, FORM);
    let says = "missing X-Twilio-Signature header";
    send(&at, &status_body, &no_sig[1..], 401, says, SECRETS).await;
    // Twilio sends forms and JSON; anything else is 415.
    let r = post(&at, status_body.clone(), &[("Content-Type", "text/plain")]).await;
    assert_eq!(r.status, 415, "{}", r.json);

    // Without public_url: the URL is the Host and path as received (here no proxy).
    let (sig, _) = &signed[5];
    send(&direct, &status_body, &headers(sig, FORM), 200, "", &[NEW]).await;
    let lines = expect_events(&h, "direct.jsonl", &["delivered"]).await;
    assert_eq!(lines[0]["payload"]["MessageStatus"], "delivered");

    // Routing by the event type; form fields as a JSON object, repeated names as arrays.
    let lines = expect_events(&h, "routed.jsonl", &["received"]).await;
    let payload = &lines[0]["payload"];
    assert_eq!(payload["Body"], "Hello & good day: 100% sure?");
    assert_eq!(
        payload["MediaUrl"],
        json!(["https://api.twilio.com/m/2", "https://api.twilio.com/m/1"])
    );
    let lines = expect_events(
        &h,
        "all.jsonl",
        &["received", "delivered", "onMessageAdded", "ringing"],
    )
    .await;
    let json_event = lines
        .iter()
        .find(|l| l["type"] == "onMessageAdded")
        .expect("JSON event");
    assert_eq!(json_event["payload"]["ConversationSid"], "CH1");
    assert!(dead_letters(&h).is_empty());
}

/// HTTP/2 names the host in `:authority` and sends no Host header: without `public_url`,
/// the signed URL is built from it as from Host over HTTP/1.1.
#[tokio::test]
async fn over_http2_the_url_is_built_from_the_authority() {
    let config = format!(
        r#"
[[sources]]
name = "direct"
path = "/webhooks/twilio"
verify = {{ scheme = "twilio", secrets = ["{NEW}"] }}

[[pipelines]]
name = "direct"
source = "direct"
stages = [{{ sink = "file", path = "direct.jsonl", envelope = true }}]
"#
    );
    let h = Hookline::start_with(&config, "http2 = true", &[]);
    let url = h.url("/webhooks/twilio");
    let status: &[(&str, &str)] = &[
        ("MessageSid", "SM0000000000000000000000000000003"),
        ("MessageStatus", "delivered"),
    ];
    let signed = twilio_sign(&[form_req(NEW, &url, status)]);
    let h2 = h2c_client(Duration::from_secs(10));
    let mut request = h2.post(&url).body(encode(status));
    for (name, value) in headers(&signed[0].0, FORM) {
        request = request.header(name, value);
    }
    let r = request.send().await.expect("an answer over h2c");
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let code = r.status();
    assert_eq!(code, 200, "{}", r.text().await.unwrap_or_default());
    let lines = expect_events(&h, "direct.jsonl", &["delivered"]).await;
    assert_eq!(lines[0]["payload"]["MessageSid"], status[0].1);
}
