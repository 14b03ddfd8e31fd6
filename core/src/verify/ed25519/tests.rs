use super::*;
use crate::verify::testing::*;
use ed25519_dalek::{Signer as _, SigningKey};
use proptest::prelude::*;

/// RFC 8032, section 7.1, TEST 1: the key pair and the signature of the empty message.
const RFC_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const RFC_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
const RFC_SIG: &str = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";

const T: i64 = 1_700_000_000;
const PING: &str = r#"{"id":"1234","type":1,"application_id":"99","version":1}"#;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn public_hex(k: &SigningKey) -> String {
    hex::encode(k.verifying_key().as_bytes())
}

fn config(keys: &[String]) -> Ed25519Config {
    serde_json::from_value(serde_json::json!({ "public_keys": keys })).expect("config")
}

fn verifier(keys: &[String]) -> Ed25519Verifier {
    Ed25519Verifier::build(&config(keys)).expect("builds")
}

fn sign(k: &SigningKey, ts: &str, body: &str) -> String {
    hex::encode(k.sign(format!("{ts}{body}").as_bytes()).to_bytes())
}

fn send(
    v: &Ed25519Verifier,
    sig: &str,
    ts: &str,
    body: &str,
    now: i64,
) -> Result<Verified, Rejection> {
    let h = [("X-Signature-Ed25519", sig), ("X-Signature-Timestamp", ts)];
    verify(v, &h, body.as_bytes(), at(now))
}

#[test]
fn rfc_8032_vector_verifies() {
    let keys = PublicKeys::parse("t", "k", &[RFC_PUBLIC.into()], None).expect("key");
    let mut sig = [0u8; 64];
    hex::decode_to_slice(RFC_SIG, &mut sig).expect("hex");
    assert!(keys.verify(b"", &[sig]));
    assert!(!keys.verify(b"x", &[sig]));
    let mut seed = [0u8; 32];
    hex::decode_to_slice(RFC_SEED, &mut seed).expect("hex");
    assert_eq!(public_hex(&SigningKey::from_bytes(&seed)), RFC_PUBLIC);
}

#[test]
fn discord_ping_verifies_with_numeric_type_and_id() {
    let k = key(7);
    let v = verifier(&[public_hex(&k)]);
    let ts = T.to_string();
    let ok = send(&v, &sign(&k, &ts, PING), &ts, PING, T).expect("valid");
    assert_eq!(ok.event_type, "1");
    assert_eq!(ok.idempotency_key.as_deref(), Some("1234"));
    assert_eq!(ok.payload["application_id"], "99");
    // Upper-case hex is hex too.
    let upper = sign(&k, &ts, PING).to_uppercase();
    assert!(send(&v, &upper, &ts, PING, T).is_ok());
    // No id: a hash of what was signed.
    let body = r#"{"type":"order.paid"}"#;
    let ok = send(&v, &sign(&k, &ts, body), &ts, body, T).expect("valid");
    assert_eq!(ok.event_type, "order.paid");
    assert_eq!(ok.idempotency_key.map(|k| k.len()), Some(64));
}

#[test]
fn rotation_base64_keys_and_empty_slots() {
    let (old, new) = (key(1), key(2));
    let b64 = BASE64_STANDARD.encode(new.verifying_key().as_bytes());
    let v = verifier(&[b64, String::new(), public_hex(&old)]);
    let ts = T.to_string();
    assert!(send(&v, &sign(&old, &ts, PING), &ts, PING, T).is_ok());
    assert!(send(&v, &sign(&new, &ts, PING), &ts, PING, T).is_ok());
    let r = send(&v, &sign(&key(3), &ts, PING), &ts, PING, T);
    assert_eq!(outcome(r, &[]), (401, "bad_signature"));
    assert_eq!(format!("{:?}", v.keys), "2 public key(s)");
}

#[test]
fn tampered_wrong_key_moved_stale_and_future_are_401() {
    let k = key(7);
    let v = verifier(&[public_hex(&k)]);
    let ts = T.to_string();
    let good = sign(&k, &ts, PING);
    let tampered = PING.replace("1234", "1235");
    assert_eq!(
        outcome(send(&v, &good, &ts, &tampered, T), &[]),
        (401, "bad_signature")
    );
    let r = rejected(
        send(&verifier(&[public_hex(&key(8))]), &good, &ts, PING, T),
        &[],
    );
    assert_eq!(r.to_string(), "invalid signature");
    // The timestamp is signed: moving it breaks the signature.
    let moved = (T + 1).to_string();
    assert_eq!(
        outcome(send(&v, &good, &moved, PING, T), &[]),
        (401, "bad_signature")
    );
    assert!(send(&v, &good, &ts, PING, T + 300).is_ok());
    assert_eq!(
        outcome(send(&v, &good, &ts, PING, T + 301), &[]),
        (401, "timestamp_expired")
    );
    assert_eq!(
        outcome(send(&v, &good, &ts, PING, T - 301), &[]),
        (401, "timestamp_in_future")
    );
}

#[test]
fn missing_malformed_and_repeated_headers() {
    let k = key(7);
    let v = verifier(&[public_hex(&k)]);
    let ts = T.to_string();
    let good = sign(&k, &ts, PING);
    let r = rejected(
        verify(
            &v,
            &[("X-Signature-Timestamp", &ts)],
            PING.as_bytes(),
            at(T),
        ),
        &[],
    );
    assert_eq!(
        (r.status(), r.to_string().as_str()),
        (401, "missing X-Signature-Ed25519 header")
    );
    let r = rejected(
        verify(
            &v,
            &[("X-Signature-Ed25519", &good)],
            PING.as_bytes(),
            at(T),
        ),
        &[],
    );
    assert_eq!((r.status(), r.reason()), (401, "missing_timestamp"));
    for bad in [&good[..126], "zz", "", &format!("{good}00")] {
        assert_eq!(
            outcome(send(&v, bad, &ts, PING, T), &[]),
            (401, "malformed_signature"),
            "{bad}"
        );
    }
    assert_eq!(
        outcome(send(&v, &good, "soon", PING, T), &[]),
        (401, "malformed_timestamp")
    );
    let h = [
        ("X-Signature-Ed25519", good.as_str()),
        ("X-Signature-Ed25519", good.as_str()),
        ("X-Signature-Timestamp", ts.as_str()),
    ];
    assert_eq!(
        outcome(verify(&v, &h, PING.as_bytes(), at(T)), &[]),
        (401, "malformed_signature")
    );
    // Signed, but no event type: authenticated, so dead-lettered rather than refused.
    let body = r#"{"kind":1}"#;
    let r = rejected(send(&v, &sign(&k, &ts, body), &ts, body, T), &[]);
    assert!(r.authenticated() && r.status() == 400, "{r}");
}

#[test]
fn custom_headers_base64_encoding_and_paths() {
    let k = key(9);
    let cfg: Ed25519Config = serde_json::from_value(serde_json::json!({
        "public_keys": [public_hex(&k)],
        "signature_header": "X-Sig",
        "timestamp_header": "X-Time",
        "encoding": "base64",
        "event_field": "data.kind",
        "id_field": "data.n",
        "tolerance": "1m",
    }))
    .expect("config");
    let v = Ed25519Verifier::build(&cfg).expect("builds");
    let body = r#"{"data":{"kind":"x","n":42}}"#;
    let ts = T.to_string();
    let sig = BASE64_STANDARD.encode(k.sign(format!("{ts}{body}").as_bytes()).to_bytes());
    let h = [("X-Sig", sig.as_str()), ("X-Time", ts.as_str())];
    let ok = verify(&v, &h, body.as_bytes(), at(T)).expect("valid");
    assert_eq!(
        (ok.event_type.as_str(), ok.idempotency_key.as_deref()),
        ("x", Some("42"))
    );
    assert_eq!(
        outcome(verify(&v, &h, body.as_bytes(), at(T + 61)), &[]),
        (401, "timestamp_expired")
    );
    assert_eq!(v.signature_headers(), ["x-sig"]);
}

#[test]
fn config_errors_name_the_key() {
    let build = |value: serde_json::Value| {
        Ed25519Verifier::build(&serde_json::from_value(value).expect("config"))
    };
    let err = build(serde_json::json!({"public_keys": [RFC_PUBLIC, "abc"]})).expect_err("bad key");
    assert_eq!(
        err,
        "ed25519: `public_keys[1]` is not a 32-byte Ed25519 public key in hex or base64"
    );
    let err = build(serde_json::json!({"public_keys": ["", ""]})).expect_err("none");
    assert!(err.contains("at least one non-empty public key"), "{err}");
    let err = build(serde_json::json!({"public_keys": [RFC_PUBLIC], "signature_header": "a b"}))
        .expect_err("header");
    assert!(err.contains("`signature_header`"), "{err}");
    let err = build(serde_json::json!({"public_keys": [RFC_PUBLIC], "event_field": ""}))
        .expect_err("field");
    assert!(err.contains("`event_field`"), "{err}");
    // A small-order point is no key.
    let weak = format!("01{}", "0".repeat(62));
    let err = build(serde_json::json!({"public_keys": [weak]})).expect_err("weak");
    assert!(err.contains("not a usable"), "{err}");
    assert!(
        serde_json::from_value::<Ed25519Config>(
            serde_json::json!({"public_keys": [], "secrets": []})
        )
        .is_err()
    );
    // Hookline cannot sign with a public key.
    let v = build(serde_json::json!({"public_keys": [RFC_PUBLIC]})).expect("builds");
    let s = Signing {
        body: b"{}",
        timestamp: T,
        id: "1",
        event: None,
        url: None,
    };
    assert!(v.sign(&s).is_err());
}

#[test]
fn scalars_at_paths() {
    let v = serde_json::json!({"a": 1, "b": "x", "c": "", "d": 1.5, "e": [{"f": -2}], "g": true});
    assert_eq!(scalar_at(&v, "a").as_deref(), Some("1"));
    assert_eq!(scalar_at(&v, "b").as_deref(), Some("x"));
    assert_eq!(scalar_at(&v, "e.0.f").as_deref(), Some("-2"));
    for none in ["c", "d", "g", "nope", "a.b"] {
        assert_eq!(scalar_at(&v, none), None, "{none}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn header_parsers_never_panic(
        sig in header_bytes(&["0", "a", "f", "Z", "=", " ", "e5564300c360ac72"]),
        ts in header_bytes(&["1700000000", "-", "1", " "]),
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let v = verifier(&[RFC_PUBLIC.into()]);
        let _ = v.parse_signature(&sig);
        never_panics(&v, &["X-Signature-Ed25519", "X-Signature-Timestamp"], &[sig, ts], &body);
    }
}

/// Re-running a kept request: its signature headers are not kept; decoding the body alone
/// gives what verification gave, and still refuses a body without the event type.
#[test]
fn a_kept_request_decodes_without_its_signature_headers() {
    let k = key(7);
    let v = verifier(&[public_hex(&k)]);
    let ts = T.to_string();
    let verified = send(&v, &sign(&k, &ts, PING), &ts, PING, T).expect("valid");
    let kept = |body: &str| {
        v.decode(&Unverified {
            headers: &headers(&[("content-type", "application/json")]),
            body: body.as_bytes(),
            target: None,
            now: at(T + 86_400),
        })
        .expect("ed25519 decodes")
    };
    let decoded = kept(PING).expect("decodes");
    assert_eq!(decoded.payload, verified.payload);
    assert_eq!(decoded.event_type, verified.event_type);
    assert_eq!(decoded.idempotency_key, verified.idempotency_key);
    let missing = kept(r#"{"id":"1"}"#).expect_err("no type");
    assert_eq!(missing.reason(), "missing_event");
}
