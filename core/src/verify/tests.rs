//! The `verify` table of every scheme, and the rejection set.

use std::time::Duration;

use super::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Source {
    verify: VerifyConfig,
}

fn parse(toml_text: &str) -> Result<VerifyConfig, String> {
    toml::from_str::<Source>(toml_text)
        .map(|s| s.verify)
        .map_err(|e| e.to_string())
}

#[test]
fn leadshark_table_parses_with_defaults() {
    let cfg =
        parse(r#"verify = { scheme = "leadshark", secrets = ["s3cret", "old"] }"#).expect("parses");
    let VerifyConfig::Leadshark(c) = &cfg else {
        panic!("{cfg:?}")
    };
    assert_eq!(c.secrets.len(), 2);
    assert_eq!(c.secrets[1].expose(), "old");
    assert!(c.reserialize && c.tolerance.is_none());
    assert_eq!(cfg.scheme(), "leadshark");

    let cfg = parse("[verify]\nscheme = \"leadshark\"\nsecrets = [\"s\"]\nreserialize = false\n")
        .expect("parses");
    assert!(matches!(cfg, VerifyConfig::Leadshark(c) if !c.reserialize));
    let cfg = parse(r#"verify = { scheme = "leadshark", secrets = ["s"], tolerance = "1h" }"#)
        .expect("parses");
    assert!(
        matches!(cfg, VerifyConfig::Leadshark(c) if c.tolerance == Some(Duration::from_secs(3600)))
    );
}

#[test]
fn unknown_keys_and_schemes_are_errors() {
    let err = parse(r#"verify = { scheme = "leadshark", secrets = ["s"], secret = "x" }"#)
        .expect_err("unknown key");
    assert!(err.contains("secret"), "{err}");
    let err =
        parse(r#"verify = { scheme = "leadshork", secrets = ["s"] }"#).expect_err("unknown scheme");
    assert!(err.contains("leadshork"), "{err}");
    let err = parse(r#"verify = { secrets = ["s"] }"#).expect_err("no scheme");
    assert!(err.contains("scheme"), "{err}");
    let err = parse(r#"verify = { scheme = "leadshark" }"#).expect_err("no secrets");
    assert!(err.contains("secrets"), "{err}");
}

#[test]
fn build_rejects_empty_secrets_without_printing_them() {
    let cfg = parse(r#"verify = { scheme = "leadshark", secrets = [] }"#).expect("parses");
    let err = cfg.build().expect_err("empty list");
    assert!(err.contains("at least one"), "{err}");

    // An empty rotation slot (`"${OLD:-}"`) is skipped, and never verifies anything.
    let cfg =
        parse(r#"verify = { scheme = "leadshark", secrets = ["hunter2", ""] }"#).expect("parses");
    let verifier = cfg.build().expect("an empty slot is skipped");
    let body = br#"{"event":"new.like"}"#;
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "x-webhook-signature",
        hookline_leadshark::sign("", body).parse().expect("header"),
    );
    let unverified = Unverified {
        headers: &headers,
        body,
        target: None,
        now: jiff::Timestamp::now(),
    };
    assert!(
        verifier.verify(&unverified).is_err(),
        "the empty key is not a key"
    );
    let cfg = parse(r#"verify = { scheme = "leadshark", secrets = ["", ""] }"#).expect("parses");
    let err = cfg.build().expect_err("only empty secrets");
    assert!(err.contains("every secret is empty"), "{err}");

    let cfg = parse(r#"verify = { scheme = "leadshark", secrets = ["hunter2"] }"#).expect("parses");
    let verifier = cfg.build().expect("builds");
    for debug in [format!("{cfg:?}"), format!("{verifier:?}")] {
        assert!(!debug.contains("hunter2"), "{debug}");
    }
}

#[test]
fn reasons_are_a_closed_set_with_statuses() {
    let json_err = serde_json::from_slice::<serde_json::Value>(b"{").expect_err("bad json");
    let all = [
        Rejection::MissingSignature {
            header: "X-Webhook-Signature".into(),
        },
        Rejection::MalformedSignature {
            header: "X-Webhook-Signature".into(),
            problem: "p",
        },
        Rejection::BadSignature,
        Rejection::MissingHeader {
            header: "webhook-id".into(),
        },
        Rejection::MissingTimestamp {
            location: "webhook-timestamp header".into(),
        },
        Rejection::MalformedTimestamp {
            location: "webhook-timestamp header".into(),
            problem: "p",
        },
        Rejection::TimestampExpired {
            age_secs: 301,
            tolerance_secs: 300,
        },
        Rejection::TimestampInFuture {
            ahead_secs: 301,
            tolerance_secs: 300,
        },
        Rejection::NotWhatWasSigned("the value at `data.n` is not the one that was signed".into()),
        Rejection::UnsignedBody("the body was changed"),
        Rejection::MalformedJson(json_err),
        Rejection::NotAnObject,
        Rejection::MissingEvent {
            field: "event".into(),
        },
        Rejection::BadEventHeader {
            header: "X-GitHub-Event".into(),
            problem: "is missing: it names the event type",
        },
        Rejection::EventMismatch {
            header: "X-Webhook-Event".into(),
            header_value: "a".into(),
            payload_value: "b".into(),
        },
    ];
    let reasons: Vec<_> = all.iter().map(Rejection::reason).collect();
    assert_eq!(reasons, Rejection::REASONS);
    let statuses: Vec<_> = all.iter().map(Rejection::status).collect();
    assert_eq!(
        statuses,
        [
            401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 400, 400, 400, 400, 400
        ]
    );
    let messages: Vec<_> = all.iter().map(ToString::to_string).collect();
    assert_eq!(messages[3], "missing webhook-id header");
    assert_eq!(messages[4], "missing webhook-timestamp header");
    assert_eq!(
        messages[7],
        "timestamp is 301 s in the future, more than the 300 s tolerance"
    );
    assert_eq!(
        messages[13],
        "X-GitHub-Event header is missing: it names the event type"
    );
}

#[test]
fn clip_keeps_short_values_and_cuts_long_ones_on_char_boundaries() {
    assert_eq!(clip("new.like"), "new.like");
    let long = "é".repeat(100);
    let clipped = clip(&long);
    assert_eq!(clipped.chars().count(), CLIP_CHARS + 1);
    assert!(clipped.ends_with('…'));
}

/// One `verify` table per scheme, minimal, with `secret` as its only secret.
fn tables(secret: &str) -> Vec<(&'static str, String)> {
    let s = secret;
    vec![
        (
            "leadshark",
            format!(r#"{{ scheme = "leadshark", secrets = ["{s}"] }}"#),
        ),
        (
            "standard-webhooks",
            format!(r#"{{ scheme = "standard-webhooks", secrets = ["{s}"] }}"#),
        ),
        (
            "github",
            format!(r#"{{ scheme = "github", secrets = ["{s}"] }}"#),
        ),
        (
            "stripe",
            format!(r#"{{ scheme = "stripe", secrets = ["{s}"] }}"#),
        ),
        (
            "slack",
            format!(r#"{{ scheme = "slack", secrets = ["{s}"] }}"#),
        ),
        (
            "shopify",
            format!(r#"{{ scheme = "shopify", secrets = ["{s}"] }}"#),
        ),
        (
            "hmac",
            format!(
                r#"{{ scheme = "hmac", secrets = ["{s}"], header = "X-Sig", event_field = "type" }}"#
            ),
        ),
        (
            "twilio",
            format!(
                r#"{{ scheme = "twilio", secrets = ["{s}"], public_url = "https://h.example/t" }}"#
            ),
        ),
    ]
}

#[test]
fn every_scheme_parses_builds_and_hides_its_secrets() {
    // Base64, so that it is also a valid Standard Webhooks secret.
    let secret = "whsec_aHVudGVyMi1zZWNyZXQ=";
    for (scheme, table) in tables(secret) {
        let cfg = parse(&format!("verify = {table}")).expect(scheme);
        assert_eq!(cfg.scheme(), scheme);
        let verifier = cfg.build().unwrap_or_else(|e| panic!("{scheme}: {e}"));
        for debug in [format!("{cfg:?}"), format!("{verifier:?}")] {
            assert!(!debug.contains("aHVudGVyMi1zZWNyZXQ"), "{debug}");
        }
        let json = verifier.accepts_content_type("application/json");
        let form = verifier.accepts_content_type("application/x-www-form-urlencoded");
        assert!(
            json && form == matches!(scheme, "slack" | "twilio"),
            "{scheme}"
        );
    }
}

#[test]
fn every_scheme_rejects_unknown_keys_and_empty_secrets() {
    for (scheme, table) in tables("s3cret") {
        let typo = table.replacen("secrets", "secert = 1, secrets", 1);
        let err = parse(&format!("verify = {typo}")).expect_err(scheme);
        assert!(err.contains("secert"), "{scheme}: {err}");
        for empty in [r#"secrets = []"#, r#"secrets = ["", ""]"#] {
            let table = table.replace(r#"secrets = ["s3cret"]"#, empty);
            let cfg = parse(&format!("verify = {table}")).expect(scheme);
            let err = cfg.build().expect_err(scheme);
            assert!(err.starts_with(scheme) && !err.contains("s3cret"), "{err}");
        }
    }
    let err = parse(r#"verify = { scheme = "standard_webhooks", secrets = ["s"] }"#)
        .expect_err("kebab-case");
    assert!(err.contains("standard_webhooks"), "{err}");
}

#[test]
fn every_scheme_rejects_whitespace_around_or_as_a_secret() {
    for (scheme, table) in tables("s3cret") {
        for (bad, says) in [
            (r#"secrets = ["  "]"#, "only whitespace"),
            (r#"secrets = ["s3cret\n"]"#, "ends with a newline"),
            (
                r#"secrets = ["", "s3cret\r\n"]"#,
                "`secrets[1]` ends with a newline",
            ),
            (r#"secrets = ["s3cret "]"#, "ends with whitespace"),
            (r#"secrets = [" s3cret"]"#, "starts with whitespace"),
        ] {
            let table = table.replace(r#"secrets = ["s3cret"]"#, bad);
            let cfg = parse(&format!("verify = {table}")).expect(scheme);
            let err = cfg.build().expect_err(scheme);
            assert!(err.contains(says), "{scheme} {bad}: {err}");
            assert!(!err.contains("s3cret"), "the secret is not printed: {err}");
        }
    }
}

#[test]
fn tolerances_default_to_five_minutes_and_parse_human_durations() {
    let cfg = parse(r#"verify = { scheme = "stripe", secrets = ["s"] }"#).expect("parses");
    let VerifyConfig::Stripe(c) = cfg else {
        panic!("{cfg:?}")
    };
    assert_eq!(c.tolerance, Duration::from_secs(300));
    let cfg = parse(r#"verify = { scheme = "slack", secrets = ["s"], tolerance = "90s" }"#)
        .expect("parses");
    assert!(matches!(cfg, VerifyConfig::Slack(c) if c.tolerance == Duration::from_secs(90)));
    let text = r#"verify = { scheme = "standard-webhooks", secrets = ["whsec_AA=="] }"#;
    let VerifyConfig::StandardWebhooks(c) = parse(text).expect("parses") else {
        panic!("variant")
    };
    assert_eq!(
        (c.tolerance.as_secs(), c.event_field.as_str()),
        (300, "type")
    );
    let err = parse(r#"verify = { scheme = "slack", secrets = ["s"], tolerance = "soon" }"#)
        .expect_err("not a duration");
    assert!(err.contains("tolerance") || err.contains("soon"), "{err}");
}

#[test]
fn twilio_table_parses_and_describes_itself() {
    let cfg = parse(
        r#"verify = { scheme = "twilio", secrets = ["tok", "old"], public_url = "https://hooks.example.com/twilio/sms", event_field = "CallStatus" }"#,
    )
    .expect("parses");
    assert_eq!(cfg.scheme(), "twilio");
    assert_eq!(cfg.event_field(), Some("CallStatus"));
    assert_eq!(
        cfg.describe(),
        "twilio signature, secrets *** (2 secrets), no timestamp check"
    );
    assert!(cfg.build().is_ok());
    let cfg = parse(r#"verify = { scheme = "twilio", secrets = ["tok"] }"#).expect("parses");
    assert_eq!(cfg.event_field(), Some("EventType"));
    let err = parse(r#"verify = { scheme = "twilio", secrets = ["t"], url = "https://x/y" }"#)
        .expect_err("unknown key");
    assert!(err.contains("url"), "{err}");
    let cfg = parse(r#"verify = { scheme = "twilio", secrets = ["t"], public_url = "x" }"#)
        .expect("parses");
    let err = cfg.build().expect_err("not a URL");
    assert!(err.contains("`public_url`"), "{err}");
}

/// Re-running a kept request (`rerun`): every scheme but Twilio (whose payload comes from the
/// URL it was sent to, not kept) decodes the stored body and the headers an event keeps —
/// no signature header — into what verification gave at receipt.
#[test]
fn every_scheme_but_twilio_decodes_a_kept_request_as_it_verified_it() {
    use super::sign::Signing;
    use super::testing::{at, headers};
    let secret = "whsec_aHVudGVyMi1zZWNyZXQ=";
    let body = br#"{"type":"order.paid","event":"email.captured","id":"evt_1","timestamp":"2026-12-02T07:00:00Z","data":{"lead":{"email":"a@b.example"}}}"#;
    // ed25519 verifies with public keys only (Hookline cannot sign for it): its decode is
    // tested in its module.
    for (scheme, table) in tables(secret) {
        let v = parse(&format!("verify = {table}"))
            .expect(scheme)
            .build()
            .expect(scheme);
        let now = 1_796_194_800; // 2026-12-02T07:00:00Z
        if scheme == "twilio" {
            let kept = Unverified {
                headers: &headers(&[("content-type", "application/json")]),
                body,
                target: None,
                now: at(now),
            };
            assert!(
                v.decode(&kept).is_none(),
                "twilio cannot decode without its URL"
            );
            continue;
        }
        let sent = v
            .sign(&Signing {
                body,
                timestamp: now,
                id: "msg_1",
                // LeadShark's type is the payload's `event`; the others' its `type`.
                event: Some(if scheme == "leadshark" {
                    "email.captured"
                } else {
                    "order.paid"
                }),
                url: None,
            })
            .expect(scheme);
        let mut pairs: Vec<(&str, &str)> =
            sent.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        pairs.push(("content-type", "application/json"));
        let verified = v
            .verify(&Unverified {
                headers: &headers(&pairs),
                body,
                target: None,
                now: at(now),
            })
            .unwrap_or_else(|e| panic!("{scheme}: {e}"));
        let signature_headers = v.signature_headers();
        let kept: Vec<(&str, &str)> = pairs
            .iter()
            .filter(|(n, _)| {
                let n = n.to_ascii_lowercase();
                !n.contains("signature") && !signature_headers.contains(&n)
            })
            .copied()
            .collect();
        let decoded = v.decode(&Unverified {
            headers: &headers(&kept),
            body,
            target: None,
            now: at(now + 86_400),
        });
        match decoded {
            Some(Ok(d)) => {
                assert_eq!(d.payload, verified.payload, "{scheme}");
                assert_eq!(d.event_type, verified.event_type, "{scheme}");
            }
            other => panic!("{scheme}: {other:?}"),
        }
    }
}

/// `levels` objects, each inside the one before: `{"a":{"a":…{}}}`.
fn nested(levels: usize) -> serde_json::Value {
    (1..levels).fold(
        serde_json::json!({}),
        |inner, _| serde_json::json!({ "a": inner }),
    )
}

#[test]
fn payloads_nested_past_the_limit_are_found() {
    assert!(!deeper_than(&nested(MAX_PAYLOAD_DEPTH), MAX_PAYLOAD_DEPTH));
    assert!(deeper_than(
        &nested(MAX_PAYLOAD_DEPTH + 1),
        MAX_PAYLOAD_DEPTH
    ));
    let arrays =
        (1..=MAX_PAYLOAD_DEPTH).fold(serde_json::json!(1), |inner, _| serde_json::json!([inner]));
    assert!(!deeper_than(&arrays, MAX_PAYLOAD_DEPTH));
    assert!(deeper_than(
        &serde_json::json!({ "list": [arrays] }),
        MAX_PAYLOAD_DEPTH
    ));
    assert!(!deeper_than(
        &serde_json::json!({ "a": 1, "b": [1, 2, {}] }),
        3
    ));
    assert!(deeper_than(
        &serde_json::json!({ "a": 1, "b": [1, 2, {}] }),
        2
    ));
}
