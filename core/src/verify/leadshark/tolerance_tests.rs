//! The optional `tolerance` against the signed payload's `timestamp`.

use std::time::Duration;

use hookline_plugin_api::Secret;

use hookline_leadshark::sign;

use super::{LeadsharkConfig, LeadsharkVerifier};
use crate::verify::testing::*;

const SECRET: &str = "leadshark-secret";
/// 2025-09-15T11:37:21Z
const T: i64 = 1_757_936_241;

fn verifier(tolerance: Option<&str>) -> LeadsharkVerifier {
    LeadsharkVerifier::build(&LeadsharkConfig {
        secrets: vec![Secret::new("next-secret"), Secret::new(SECRET)],
        reserialize: true,
        tolerance: tolerance.map(|t| humantime::parse_duration(t).expect("duration")),
    })
    .expect("builds")
}

fn body(timestamp: &str) -> String {
    format!(r#"{{"event":"new.like","timestamp":{timestamp},"data":{{}}}}"#)
}

fn send(
    v: &LeadsharkVerifier,
    body: &str,
    now: i64,
) -> Result<crate::verify::Verified, crate::verify::Rejection> {
    let sig = sign(SECRET, body.as_bytes());
    verify(
        v,
        &[("X-Webhook-Signature", &sig)],
        body.as_bytes(),
        at(now),
    )
}

#[test]
fn off_by_default_so_retries_with_the_original_timestamp_pass() {
    let b = body(r#""2025-09-15T11:37:21.709Z""#);
    let v = verifier(None);
    assert!(send(&v, &b, T + 86_400 * 30).is_ok());
    assert!(send(&v, &body("null"), T).is_ok(), "no timestamp needed");
}

#[test]
fn expired_future_and_within_tolerance() {
    let v = verifier(Some("10m"));
    for ts in [
        r#""2025-09-15T11:37:21.709Z""#,
        r#""2025-09-15T11:37:21.709+00:00""#,
    ] {
        let b = body(ts);
        assert!(send(&v, &b, T).is_ok(), "{ts}");
        assert!(send(&v, &b, T + 600).is_ok());
        let r = rejected(send(&v, &b, T + 601), &[SECRET]);
        assert_eq!((r.status(), r.reason()), (401, "timestamp_expired"));
        assert_eq!(
            r.to_string(),
            "timestamp expired: signed 601 s ago, more than the 600 s tolerance"
        );
        assert_eq!(
            outcome(send(&v, &b, T - 601), &[]),
            (401, "timestamp_in_future")
        );
    }
    // A tampered timestamp breaks the signature before its age is looked at.
    let b = body(r#""2025-09-15T11:37:21.709Z""#);
    let sig = sign(SECRET, b.as_bytes());
    let moved = b.replace("11:37", "11:38");
    let r = verify(
        &v,
        &[("X-Webhook-Signature", &sig)],
        moved.as_bytes(),
        at(T),
    );
    assert_eq!(outcome(r, &[]), (401, "bad_signature"));
}

#[test]
fn missing_and_malformed_timestamps_are_401_when_a_tolerance_is_set() {
    let v = verifier(Some("1h"));
    let r = rejected(send(&v, r#"{"event":"new.like"}"#, T), &[]);
    assert_eq!(
        (r.status(), r.to_string().as_str()),
        (401, "missing \"timestamp\" field in the payload")
    );
    for ts in [r#""yesterday""#, "1757936241", r#""2025-09-15""#] {
        let r = rejected(send(&v, &body(ts), T), &[]);
        assert_eq!(
            (r.status(), r.reason()),
            (401, "malformed_timestamp"),
            "{ts}"
        );
    }
    assert_eq!(
        verifier(Some("1h")).tolerance,
        Some(Duration::from_secs(3600))
    );
}
