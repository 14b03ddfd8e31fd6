//! Helpers for the schemes' unit tests.

use http::{HeaderMap, HeaderName, HeaderValue};

use super::{Rejection, Unverified, Verified, Verifier};

pub(crate) fn at(seconds: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(seconds).expect("in range")
}

/// Headers from name/value pairs (a name may repeat).
pub(crate) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        h.append(
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(value).expect("header value"),
        );
    }
    h
}

pub(crate) fn verify(
    v: &dyn Verifier,
    pairs: &[(&str, &str)],
    body: &[u8],
    now: jiff::Timestamp,
) -> Result<Verified, Rejection> {
    v.verify(&Unverified {
        headers: &headers(pairs),
        body,
        target: None,
        now,
    })
}

/// The rejection, after checking it is well-formed and its message shows none of `secrets`.
pub(crate) fn rejected(result: Result<Verified, Rejection>, secrets: &[&str]) -> Rejection {
    let r = result.expect_err("rejected");
    let message = r.to_string();
    for secret in secrets {
        assert!(!message.contains(secret), "{message}");
    }
    assert!(Rejection::REASONS.contains(&r.reason()));
    assert!(matches!(r.status(), 400 | 401));
    r
}

/// `(status, reason)` of a rejection, for compact assertions.
pub(crate) fn outcome(
    result: Result<Verified, Rejection>,
    secrets: &[&str],
) -> (u16, &'static str) {
    let r = rejected(result, secrets);
    (r.status(), r.reason())
}

/// Verify with arbitrary bytes as the values of `names` (those `http` accepts as header
/// values): whatever the outcome, nothing panics and a rejection is well-formed.
pub(crate) fn never_panics(v: &dyn Verifier, names: &[&str], values: &[Vec<u8>], body: &[u8]) {
    let mut h = HeaderMap::new();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (name, value) in names.iter().zip(values) {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                value,
            );
        }
    }
    for now in [at(0), at(1_700_000_000), jiff::Timestamp::MAX] {
        match v.verify(&Unverified {
            headers: &h,
            body,
            target: None,
            now,
        }) {
            Ok(verified) => assert!(verified.payload.is_object()),
            Err(r) => {
                assert!(matches!(r.status(), 400 | 401));
                assert!(Rejection::REASONS.contains(&r.reason()));
            }
        }
    }
}

/// A proptest strategy: mostly plausible header text, sometimes raw bytes.
pub(crate) fn header_bytes(
    plausible: &'static [&'static str],
) -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        proptest::collection::vec(proptest::sample::select(plausible), 0..8)
            .prop_map(|parts| parts.concat().into_bytes()),
    ]
}
