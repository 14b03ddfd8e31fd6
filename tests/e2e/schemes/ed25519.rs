//! Ed25519 signatures, made by PyNaCl (libsodium, what Discord's own examples verify with):
//! the `ed25519` scheme as Discord signs its interactions (answering the PING with a PONG
//! through `respond`), Standard Webhooks `v1a` entries on a `standard-webhooks` source, and
//! the `http` sink's `v1a` signing checked by PyNaCl on the receiving end.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use super::*;

/// Seeds (hex) of the senders' key pairs: the current one, the previous one (still
/// configured: rotation) and one that is configured nowhere.
const NEW: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const OLD: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const STRANGER: &str = "3333333333333333333333333333333333333333333333333333333333333333";

/// PyNaCl signs each `{seed, message}` and gives the signature and public key, hex and base64.
const PYNACL_SIGN: &str = r#"
import base64, json, sys
from nacl.signing import SigningKey
out = []
for r in json.load(sys.stdin):
    k = SigningKey(bytes.fromhex(r['seed']))
    sig = k.sign(r['message'].encode()).signature
    pk = k.verify_key.encode()
    out.append({'hex': sig.hex(), 'b64': base64.b64encode(sig).decode(),
                'public_hex': pk.hex(), 'public_b64': base64.b64encode(pk).decode(),
                'private_b64': base64.b64encode(bytes(k)).decode()})
print(json.dumps(out))
"#;

/// PyNaCl's signatures (and the signers' public keys) for `(seed, message)` pairs.
fn pynacl(requests: &[(&str, String)]) -> Vec<Value> {
    let input: Vec<Value> = requests
        .iter()
        .map(|(seed, message)| json!({"seed": seed, "message": message}))
        .collect();
    let out = run_script("python3", PYNACL_SIGN, &Value::from(input).to_string(), &[]);
    serde_json::from_str(&out).expect("a JSON array")
}

fn public_hex(seed: &str) -> String {
    pynacl(&[(seed, String::new())])[0]["public_hex"]
        .as_str()
        .expect("hex")
        .to_string()
}

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().expect(key).to_string()
}

/// What Discord's PING and an application command look like (trimmed).
fn ping() -> String {
    json!({"id": "1150000000000000001", "application_id": "99", "type": 1, "version": 1})
        .to_string()
}

fn command(id: &str) -> String {
    json!({"id": id, "application_id": "99", "type": 2, "token": "tok", "data": {"name": "hello"}})
        .to_string()
}

#[tokio::test]
async fn discord_interactions_signed_by_pynacl_and_the_ping_answered_with_a_pong() {
    let (new_pk, old_pk) = (public_hex(NEW), public_hex(OLD));
    let source = format!(
        r#"
[[sources]]
name = "src"
path = "/webhooks/discord"
verify = {{ scheme = "ed25519", public_keys = ["{new_pk}", "", "{old_pk}"] }}
respond = {{ body = '''{{% if payload.type == 1 %}}{{"type": 1}}{{% else %}}{{"type": 4, "data": {{"content": "Received {{{{ payload.data.name }}}}"}}}}{{% endif %}}''' }}
"#
    );
    let h = start(&source, r#"["2"]"#);
    let url = h.url("/webhooks/discord");
    let t = now();
    let (ts, stale, ahead) = (
        t.to_string(),
        (t - 3600).to_string(),
        (t + 3600).to_string(),
    );
    let (ping, cmd, cmd2) = (
        ping(),
        command("1150000000000000002"),
        command("1150000000000000003"),
    );
    let signed = pynacl(&[
        (NEW, format!("{ts}{ping}")),
        (OLD, format!("{ts}{cmd}")),
        (NEW, format!("{}{cmd}", t + 1)),
        (STRANGER, format!("{ts}{cmd2}")),
        (NEW, format!("{stale}{cmd2}")),
        (NEW, format!("{ahead}{cmd2}")),
        (NEW, format!("{ts}{cmd2}")),
    ]);
    let sig = |i: usize| text(&signed[i], "hex");
    let discord = |sig: String, ts: &str| {
        vec![
            ("X-Signature-Ed25519", sig),
            ("X-Signature-Timestamp", ts.to_string()),
        ]
    };

    // The PING, signed with the current key: answered with the PONG, as Discord requires.
    let r = post_with(&url, &ping, &discord(sig(0), &ts)).await;
    assert_eq!(
        (r.status, r.json.clone()),
        (200, json!({"type": 1})),
        "{}",
        r.json
    );
    assert_eq!(r.headers["content-type"], "application/json");
    // A command signed with the previous key (rotation): the template's other answer.
    let reply = json!({"type": 4, "data": {"content": "Received hello"}});
    let r = post_with(&url, &cmd, &discord(sig(1), &ts)).await;
    assert_eq!((r.status, r.json.clone()), (200, reply.clone()));
    // Discord's retry of the same interaction (same id, signed anew): a duplicate, same answer.
    let later = (t + 1).to_string();
    let r = post_with(&url, &cmd, &discord(sig(2), &later)).await;
    assert_eq!((r.status, r.json.clone()), (200, reply.clone()));

    // Refusals: never the PONG, and nothing journaled.
    let tampered = cmd2.replace("hello", "admin");
    let cases: Vec<(String, Headers, &str)> = vec![
        (tampered, discord(sig(6), &ts), "invalid signature"),
        (cmd2.clone(), discord(sig(3), &ts), "invalid signature"),
        (cmd2.clone(), discord(sig(4), &stale), "timestamp expired"),
        (cmd2.clone(), discord(sig(5), &ahead), "in the future"),
        (cmd2.clone(), discord(sig(6), &later), "invalid signature"),
        (
            cmd2.clone(),
            vec![("X-Signature-Timestamp", ts.clone())],
            "missing X-Signature-Ed25519 header",
        ),
        (
            cmd2.clone(),
            vec![("X-Signature-Ed25519", sig(6))],
            "missing X-Signature-Timestamp header",
        ),
        (
            cmd2.clone(),
            discord(sig(6)[..100].to_string(), &ts),
            "malformed X-Signature-Ed25519",
        ),
    ];
    for (body, headers, says) in &cases {
        send(&url, body, headers, 401, says, &[]).await;
    }
    // The base64 form of the same signature is refused: this source expects hex.
    send(
        &url,
        &cmd2,
        &discord(text(&signed[6], "b64"), &ts),
        401,
        "malformed",
        &[],
    )
    .await;
    // Finally the valid one.
    let r = post_with(&url, &cmd2, &discord(sig(6), &ts)).await;
    assert_eq!(r.status, 200, "{}", r.json);

    // The PING and the two commands were journaled once each; type "2" is routed.
    let all = expect_events(&h, "all.jsonl", &["1", "2", "2"]).await;
    assert!(all.iter().all(|e| e["source"] == "src"));
    assert_eq!(all[0]["payload"]["application_id"], "99");
    expect_events(&h, "routed.jsonl", &["2", "2"]).await;
}

/// Header names and values, owned.
type Headers = Vec<(&'static str, String)>;

/// POST with owned header values.
async fn post_with(url: &str, body: &str, headers: &[(&str, String)]) -> Reply {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    post(url, body, &headers).await
}

#[tokio::test]
async fn standard_webhooks_v1a_signed_by_pynacl() {
    let keys = pynacl(&[(NEW, String::new()), (OLD, String::new())]);
    let (new_pk, old_pk) = (text(&keys[0], "public_b64"), text(&keys[1], "public_b64"));
    let hmac_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let source = format!(
        r#"
[[sources]]
name = "src"
path = "/webhooks/sw"
verify = {{ scheme = "standard-webhooks", public_keys = ["whpk_{new_pk}", "whpk_{old_pk}"] }}

[[sources]]
name = "both"
path = "/webhooks/both"
verify = {{ scheme = "standard-webhooks", secrets = ["{hmac_secret}"], public_keys = ["whpk_{new_pk}"] }}
"#
    );
    let h = start(&source, r#"["invoice.paid"]"#);
    let url = h.url("/webhooks/sw");
    let t = now();
    let (ts, stale) = (t.to_string(), (t - 3600).to_string());
    let paid = json!({"type": "invoice.paid", "data": {"invoice": 1}}).to_string();
    let created = json!({"type": "invoice.created", "data": {"invoice": 2}}).to_string();
    let m = |id: &str, ts: &str, body: &str| format!("{id}.{ts}.{body}");
    let signed = pynacl(&[
        (NEW, m("msg_1", &ts, &paid)),
        (OLD, m("msg_2", &ts, &created)),
        (STRANGER, m("msg_3", &ts, &paid)),
        (NEW, m("msg_4", &stale, &paid)),
        (NEW, m("msg_5", &ts, &paid)),
        (NEW, m("msg_6", &ts, &created)),
    ]);
    let v1a = |i: usize| format!("v1a,{}", text(&signed[i], "b64"));
    let h3 = |id: &str, ts: &str, sig: String| -> Vec<(&'static str, String)> {
        vec![
            ("webhook-id", id.to_string()),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", sig),
        ]
    };
    // Valid with the current key; rotated (the previous key).
    let first = send(&url, &paid, &h3("msg_1", &ts, v1a(0)), 200, "", &[]).await;
    send(&url, &created, &h3("msg_2", &ts, v1a(1)), 200, "", &[]).await;
    // Several entries, the good one last: a `v1` this source has no secret for, a stranger's.
    let several = format!(
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= {} {}",
        v1a(2),
        v1a(5)
    );
    send(&url, &created, &h3("msg_6", &ts, several), 200, "", &[]).await;
    // The same webhook-id again: a duplicate.
    let again = send(&url, &paid, &h3("msg_1", &ts, v1a(0)), 200, "", &[]).await;
    assert_eq!(
        (again.json["duplicate"].clone(), again.json["id"].clone()),
        (json!(true), first.json["id"].clone())
    );

    let tampered = paid.replace("1}", "2}");
    send(
        &url,
        &tampered,
        &h3("msg_5", &ts, v1a(4)),
        401,
        "invalid signature",
        &[],
    )
    .await;
    send(
        &url,
        &paid,
        &h3("msg_3", &ts, v1a(2)),
        401,
        "invalid signature",
        &[],
    )
    .await;
    send(
        &url,
        &paid,
        &h3("msg_4", &stale, v1a(3)),
        401,
        "timestamp expired",
        &[],
    )
    .await;
    // The id is signed: another id with the same signature fails.
    send(
        &url,
        &paid,
        &h3("msg_9", &ts, v1a(4)),
        401,
        "invalid signature",
        &[],
    )
    .await;
    let no_sig = vec![
        ("webhook-id", "msg_5".to_string()),
        ("webhook-timestamp", ts.clone()),
    ];
    send(
        &url,
        &paid,
        &no_sig,
        401,
        "missing webhook-signature header",
        &[],
    )
    .await;
    send(
        &url,
        &paid,
        &h3("msg_5", &ts, "v1a,!!!".into()),
        401,
        "malformed webhook-signature",
        &[],
    )
    .await;

    // A source with both a secret and a public key takes either kind of entry.
    let both = h.url("/webhooks/both");
    send(&both, &paid, &h3("msg_5", &ts, v1a(4)), 200, "", &[]).await;
    let hmac_sig = {
        let key = BASE64
            .decode(&hmac_secret["whsec_".len()..])
            .expect("base64");
        use ::hmac::{KeyInit, Mac};
        let mut mac = ::hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("key");
        mac.update(m("msg_7", &ts, &paid).as_bytes());
        format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
    };
    send(&both, &paid, &h3("msg_7", &ts, hmac_sig), 200, "", &[]).await;

    // `both` feeds no pipeline; `src` gave three events, one of them routed.
    expect_events(
        &h,
        "all.jsonl",
        &["invoice.paid", "invoice.created", "invoice.created"],
    )
    .await;
    expect_events(&h, "routed.jsonl", &["invoice.paid"]).await;
}

/// PyNaCl verifies each `{public_b64, message, signature}` (the `webhook-signature` value):
/// true when one of its `v1a` entries is the key's signature of the message.
const PYNACL_VERIFY: &str = r#"
import base64, json, sys
from nacl.signing import VerifyKey
from nacl.exceptions import BadSignatureError
out = []
for r in json.load(sys.stdin):
    key = VerifyKey(base64.b64decode(r['public_b64']))
    ok = False
    for entry in r['signature'].split(' '):
        version, _, sig = entry.partition(',')
        if version != 'v1a':
            continue
        try:
            key.verify(r['message'].encode(), base64.b64decode(sig))
            ok = True
        except BadSignatureError:
            pass
    out.append(ok)
print(json.dumps(out))
"#;

#[tokio::test]
async fn http_sink_v1a_signatures_verify_with_pynacl() {
    let keys = pynacl(&[(NEW, String::new()), (STRANGER, String::new())]);
    let private = text(&keys[0], "private_b64");
    let receiver = Receiver::start(vec![]).await;
    let config = format!(
        r#"{}
[[pipelines]]
name = "out"
source = "leadshark"
stages = [{{ sink = "http", url = "{}", signing = {{ secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", private_key = "${{SINK_PRIVATE_KEY}}" }} }}]
"#,
        leadshark_source(),
        receiver.url()
    );
    // The private key is a secret: here read from a file (`file:`), named by a variable.
    let keys_dir = tempfile::tempdir().expect("dir");
    let key_file = keys_dir.path().join("sink.key");
    std::fs::write(&key_file, format!("whsk_{private}\n")).expect("write key");
    let reference = format!("file:{}", key_file.display());
    let h = Hookline::start_with(&config, "", &[("SINK_PRIVATE_KEY", &reference)]);
    let url = h.url("/webhooks/leadshark");
    for i in 0..2 {
        let r = post_signed(&url, &sample("email.captured", i)).await;
        assert_eq!(r.status, 200, "{}", r.json);
    }
    let got = receiver.wait_for(2).await;
    assert_eq!(got.len(), 2);
    let mut checks = Vec::new();
    for r in &got {
        let header = |n: &str| r.headers[n].to_str().expect("ascii").to_string();
        let signature = header("webhook-signature");
        assert!(
            signature.starts_with("v1,") && signature.contains(" v1a,"),
            "{signature}"
        );
        let message = format!(
            "{}.{}.{}",
            header("webhook-id"),
            header("webhook-timestamp"),
            String::from_utf8_lossy(&r.body)
        );
        checks.push(json!({"public_b64": text(&keys[0], "public_b64"), "message": message, "signature": signature}));
        // Controls: another key, and a changed message, must not verify.
        checks.push(json!({"public_b64": text(&keys[1], "public_b64"), "message": message, "signature": signature}));
        checks.push(json!({"public_b64": text(&keys[0], "public_b64"), "message": format!("{message} "), "signature": signature}));
    }
    let out = run_script(
        "python3",
        PYNACL_VERIFY,
        &Value::from(checks).to_string(),
        &[],
    );
    let verdicts: Vec<bool> = serde_json::from_str(&out).expect("JSON array");
    assert_eq!(verdicts, [true, false, false, true, false, false]);
    assert!(!h.log().contains(&private), "the private key is logged");
}
