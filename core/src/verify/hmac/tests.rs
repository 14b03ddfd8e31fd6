use proptest::prelude::*;

use super::*;
use crate::verify::testing::*;

const SECRET: &str = "generic-secret-1";
const BODY: &str = r#"{"event":{"type":"order.paid"},"id":"o_1"}"#;
const T: i64 = 1_700_000_000;

fn config(extra: &str) -> HmacConfig {
    let text = format!(
        "secrets = [\"{SECRET}\", \"generic-secret-2\"]\nheader = \"X-Sig\"\nevent_field = \"event.type\"\n{extra}"
    );
    toml::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn verifier(extra: &str) -> HmacVerifier {
    HmacVerifier::build(&config(extra)).expect("builds")
}

fn mac(algorithm: Algorithm, secret: &str, message: &str) -> Vec<u8> {
    let ring = Keyring::utf8("t", algorithm, &[Secret::new(secret)]).expect("key");
    ring.sign_with_first(&[message.as_bytes()])
}

fn hex_sig(secret: &str, message: &str) -> String {
    hex::encode(mac(Algorithm::Sha256, secret, message))
}

#[test]
fn body_signed_hex_by_default_with_rotation() {
    let v = verifier("");
    let ok = verify(
        &v,
        &[("X-Sig", &hex_sig(SECRET, BODY))],
        BODY.as_bytes(),
        at(T),
    )
    .expect("ok");
    assert_eq!(ok.event_type, "order.paid");
    assert_eq!(ok.idempotency_key, Some(digest_key(&[BODY.as_bytes()])));
    let second = hex_sig("generic-secret-2", BODY);
    assert!(verify(&v, &[("X-Sig", &second)], BODY.as_bytes(), at(T)).is_ok());
    let upper = hex_sig(SECRET, BODY).to_uppercase();
    assert!(verify(&v, &[("X-Sig", &upper)], BODY.as_bytes(), at(T)).is_ok());
}

#[test]
fn tampered_wrong_secret_missing_malformed_and_repeated() {
    let v = verifier(r#"prefix = "sha256=""#);
    let good = format!("sha256={}", hex_sig(SECRET, BODY));
    let tampered = BODY.replace("paid", "void");
    let r = verify(&v, &[("X-Sig", &good)], tampered.as_bytes(), at(T));
    assert_eq!(outcome(r, &[SECRET]), (401, "bad_signature"));
    let wrong = format!("sha256={}", hex_sig("other", BODY));
    let r = rejected(
        verify(&v, &[("X-Sig", &wrong)], BODY.as_bytes(), at(T)),
        &[SECRET],
    );
    assert_eq!(r.to_string(), "invalid signature");
    let r = rejected(verify(&v, &[], BODY.as_bytes(), at(T)), &[]);
    assert_eq!(
        (r.status(), r.to_string().as_str()),
        (401, "missing X-Sig header")
    );
    let no_prefix = hex_sig(SECRET, BODY);
    let r = rejected(
        verify(&v, &[("X-Sig", &no_prefix)], BODY.as_bytes(), at(T)),
        &[],
    );
    assert_eq!(
        r.to_string(),
        "malformed X-Sig header: does not start with the configured prefix"
    );
    for bad in [&good[..good.len() - 1], "sha256=zz", "sha256="] {
        let r = verify(&v, &[("X-Sig", bad)], BODY.as_bytes(), at(T));
        assert_eq!(outcome(r, &[SECRET]), (401, "malformed_signature"), "{bad}");
    }
    let twice = [("X-Sig", good.as_str()), ("X-Sig", "sha256=00")];
    let r = verify(&v, &twice, BODY.as_bytes(), at(T));
    assert_eq!(outcome(r, &[]), (401, "malformed_signature"));
}

#[test]
fn sha1_and_sha512_in_base64() {
    use base64::prelude::{BASE64_STANDARD, Engine as _};
    for (algorithm, name) in [(Algorithm::Sha1, "sha1"), (Algorithm::Sha512, "sha512")] {
        let v = verifier(&format!("algorithm = \"{name}\"\nencoding = \"base64\""));
        let sig = BASE64_STANDARD.encode(mac(algorithm, SECRET, BODY));
        assert!(
            verify(&v, &[("X-Sig", &sig)], BODY.as_bytes(), at(T)).is_ok(),
            "{name}"
        );
        let unpadded = sig.trim_end_matches('=');
        assert!(verify(&v, &[("X-Sig", unpadded)], BODY.as_bytes(), at(T)).is_ok());
        // A SHA-256 MAC has the wrong length for this algorithm.
        let other = BASE64_STANDARD.encode(mac(Algorithm::Sha256, SECRET, BODY));
        let r = verify(&v, &[("X-Sig", &other)], BODY.as_bytes(), at(T));
        assert_eq!(outcome(r, &[]), (401, "malformed_signature"));
    }
}

#[test]
fn timestamp_template_and_tolerance() {
    let v = verifier(
        "signed = \"{timestamp}.{body}\"\ntimestamp_header = \"X-Ts\"\ntolerance = \"5m\"",
    );
    let ts = T.to_string();
    let sig = hex_sig(SECRET, &format!("{T}.{BODY}"));
    let send = |sig: &str, ts: &str, now: i64| {
        verify(
            &v,
            &[("X-Sig", sig), ("X-Ts", ts)],
            BODY.as_bytes(),
            at(now),
        )
    };
    assert!(send(&sig, &ts, T).is_ok());
    assert!(send(&sig, &ts, T + 300).is_ok());
    assert_eq!(
        outcome(send(&sig, &ts, T + 301), &[]),
        (401, "timestamp_expired")
    );
    assert_eq!(
        outcome(send(&sig, &ts, T - 301), &[]),
        (401, "timestamp_in_future")
    );
    let moved = (T + 1).to_string();
    assert_eq!(outcome(send(&sig, &moved, T), &[]), (401, "bad_signature"));
    assert_eq!(
        outcome(send(&sig, "noon", T), &[]),
        (401, "malformed_timestamp")
    );
    let r = rejected(verify(&v, &[("X-Sig", &sig)], BODY.as_bytes(), at(T)), &[]);
    assert_eq!(
        (r.status(), r.to_string().as_str()),
        (401, "missing X-Ts header")
    );
}

#[test]
fn id_template_and_idempotency_key() {
    let v = verifier("signed = \"{id}:{body}\"\nid_header = \"X-Id\"");
    let sig = hex_sig(SECRET, &format!("d-1:{BODY}"));
    let ok = verify(
        &v,
        &[("X-Sig", &sig), ("X-Id", "d-1")],
        BODY.as_bytes(),
        at(T),
    )
    .expect("ok");
    assert_eq!(ok.idempotency_key.as_deref(), Some("d-1"));
    let r = verify(
        &v,
        &[("X-Sig", &sig), ("X-Id", "d-2")],
        BODY.as_bytes(),
        at(T),
    );
    assert_eq!(outcome(r, &[]), (401, "bad_signature"));
    let r = rejected(verify(&v, &[("X-Sig", &sig)], BODY.as_bytes(), at(T)), &[]);
    assert_eq!((r.status(), r.reason()), (401, "missing_header"));
    let v = verifier("signed = \"{{{body}}}\"");
    let sig = hex_sig(SECRET, &format!("{{{BODY}}}"));
    assert!(verify(&v, &[("X-Sig", &sig)], BODY.as_bytes(), at(T)).is_ok());
}

#[test]
fn event_header_must_agree_or_is_used_alone() {
    let v = verifier(r#"event_header = "X-Event""#);
    let sig = hex_sig(SECRET, BODY);
    let send = |v: &HmacVerifier, event: &str| {
        verify(
            v,
            &[("X-Sig", &sig), ("X-Event", event)],
            BODY.as_bytes(),
            at(T),
        )
    };
    assert!(send(&v, "order.paid").is_ok());
    let r = rejected(send(&v, "order.refunded"), &[]);
    assert_eq!((r.status(), r.reason()), (400, "event_mismatch"));
    assert!(
        r.to_string().contains("X-Event header \"order.refunded\""),
        "{r}"
    );

    let text = format!("secrets = [\"{SECRET}\"]\nheader = \"X-Sig\"\nevent_header = \"X-Event\"");
    let only_header = HmacVerifier::build(&toml::from_str(&text).expect("toml")).expect("builds");
    assert_eq!(
        send(&only_header, "custom").expect("ok").event_type,
        "custom"
    );
    let r = verify(&only_header, &[("X-Sig", &sig)], BODY.as_bytes(), at(T));
    assert_eq!(outcome(r, &[]), (400, "bad_event_header"));
}

#[test]
fn reproduces_slack_and_shopify_published_vectors() {
    let slack = HmacVerifier::build(&HmacConfig {
        secrets: vec![Secret::new("8f742231b10e8888abcd99yyyzzz85a5")],
        ..toml::from_str(
            "secrets = []\nheader = \"X-Slack-Signature\"\nprefix = \"v0=\"\nsigned = \"v0:{timestamp}:{body}\"\ntimestamp_header = \"X-Slack-Request-Timestamp\"\nevent_field = \"command\"",
        )
        .expect("toml")
    })
    .expect("builds");
    let body = "token=x&command=%2Fweb";
    let sig = format!(
        "v0={}",
        hex_sig(
            "8f742231b10e8888abcd99yyyzzz85a5",
            &format!("v0:1531420618:{body}")
        )
    );
    let h = [
        ("X-Slack-Signature", sig.as_str()),
        ("X-Slack-Request-Timestamp", "1531420618"),
    ];
    // The form body is not JSON: the signature passes, the decoding fails (400).
    assert_eq!(
        outcome(verify(&slack, &h, body.as_bytes(), at(0)), &[]),
        (400, "malformed_json")
    );

    let shopify: HmacConfig = toml::from_str(
        "secrets = [\"test_secret_key\"]\nheader = \"X-Shopify-Hmac-Sha256\"\nencoding = \"base64\"\nevent_header = \"X-Shopify-Topic\"",
    )
    .expect("toml");
    let shopify = HmacVerifier::build(&shopify).expect("builds");
    let h = [
        (
            "X-Shopify-Hmac-Sha256",
            "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g=",
        ),
        ("X-Shopify-Topic", "products/create"),
    ];
    let ok = verify(&shopify, &h, br#"{"foo": "bar"}"#, at(0)).expect("valid");
    assert_eq!(ok.event_type, "products/create");
}

#[test]
fn config_problems_are_build_errors_without_secrets() {
    let cases = [
        (
            "signed = \"{timestamp}\"\ntimestamp_header = \"X-Ts\"",
            "must include {body}",
        ),
        ("signed = \"{body}{nonce}\"", "unknown placeholder {nonce}"),
        ("signed = \"{body\"", "unclosed"),
        ("signed = \"}{body}\"", "unmatched"),
        ("signed = \"{timestamp}.{body}\"", "set `timestamp_header`"),
        ("signed = \"{id}.{body}\"", "set `id_header`"),
        (
            "timestamp_header = \"X-Ts\"\ntolerance = \"5m\"",
            "needs {timestamp}",
        ),
        ("event_header = \"bad header\"", "not a valid header name"),
    ];
    for (extra, expected) in cases {
        let err = HmacVerifier::build(&config(extra)).expect_err(extra);
        assert!(
            err.contains(expected) && !err.contains(SECRET),
            "{extra}: {err}"
        );
    }
    let text = format!("secrets = [\"{SECRET}\"]\nheader = \"X-Sig\"");
    let err = HmacVerifier::build(&toml::from_str(&text).expect("toml")).expect_err("no event");
    assert!(err.contains("event_field"), "{err}");
    let text = "secrets = [\"s\"]\nheader = \"X\"\nevent_field = \"t\"\nalgorithm = \"md5\"";
    assert!(toml::from_str::<HmacConfig>(text).is_err());
    let debug = format!("{:?} {:?}", config(""), verifier(""));
    assert!(!debug.contains(SECRET), "{debug}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parsers_never_panic(
        sig in header_bytes(&["sha256=", "0", "f", "A", "=", "+", "/", " "]),
        ts in header_bytes(&["1700000000", "-", " "]),
        template in ".{0,24}",
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let _ = parse_template(&template);
        let hex = verifier("prefix = \"sha256=\"\nsigned = \"{timestamp}.{body}\"\ntimestamp_header = \"X-Ts\"\ntolerance = \"5m\"");
        let b64 = verifier("encoding = \"base64\"\nalgorithm = \"sha512\"");
        for v in [&hex, &b64] {
            let _ = v.parse_signature(&sig);
            never_panics(v, &["X-Sig", "X-Ts"], &[sig.clone(), ts.clone()], &body);
        }
    }
}

/// Re-running a kept request: the steps after the signature check, on a body with no
/// signature header; they refuse what they refused at receipt.
#[test]
fn decode_takes_the_body_apart_without_a_signature() {
    let decode = |v: &HmacVerifier, pairs: &[(&str, &str)], body: &str| {
        v.decode(&Unverified {
            headers: &headers(pairs),
            body: body.as_bytes(),
            target: None,
            now: at(T),
        })
        .expect("the hmac scheme decodes")
    };
    let ok = decode(&verifier(""), &[], BODY).expect("decodes");
    assert_eq!(ok.event_type, "order.paid");
    assert_eq!(ok.idempotency_key, Some(digest_key(&[BODY.as_bytes()])));
    let missing =
        decode(&verifier(""), &[], r#"{"type":"order.paid"}"#).expect_err("no event.type");
    assert_eq!(missing.reason(), "missing_event");
    assert_eq!(
        decode(&verifier(""), &[], "{oops")
            .expect_err("not JSON")
            .reason(),
        "malformed_json"
    );
    // The event header must still agree with the payload.
    let v = verifier(r#"event_header = "X-Event""#);
    let mismatch = decode(&v, &[("X-Event", "order.refunded")], BODY).expect_err("mismatch");
    assert_eq!(mismatch.reason(), "event_mismatch");
}
