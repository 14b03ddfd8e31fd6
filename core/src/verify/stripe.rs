//! The `stripe` scheme: `Stripe-Signature: t=<unix seconds>,v1=<hex>,v1=<hex>`, each `v1`
//! the HMAC-SHA256 of `{t}.{body}` keyed with the endpoint's signing secret (`whsec_...`,
//! used as is). While Stripe rolls a secret it signs with both, hence several `v1`; `v0`
//! and other schemes are ignored.
//!
//! ```toml
//! [[sources]]
//! name = "stripe"
//! path = "/webhooks/stripe"
//! verify = { scheme = "stripe", secrets = ["${STRIPE_WEBHOOK_SECRET}"], tolerance = "5m" }
//! ```
//!
//! The event type is the signed payload's `type` (`payment_intent.succeeded`) and the
//! idempotency key its `id` (`evt_...`), which Stripe keeps across retries.

use super::common::{
    TimedKeys, TimedSecretsConfig, check_age, digest_key, event_at, json_object, malformed,
    signature_header, string_at, unix_seconds,
};
use super::sign::{self, Signing};
use super::{Rejection, Unverified, Verified, Verifier};

pub(crate) const SIGNATURE_HEADER: &str = "Stripe-Signature";
const TIMESTAMP_LOCATION: &str = "t= timestamp in the Stripe-Signature header";

/// `verify = { scheme = "stripe", secrets = [...], tolerance = "5m" }`: every endpoint signing
/// secret accepted (`whsec_...`).
pub type StripeConfig = TimedSecretsConfig;

#[derive(Debug, Clone)]
pub(crate) struct StripeVerifier(TimedKeys);

impl StripeVerifier {
    pub(crate) fn build(config: &StripeConfig) -> Result<Self, String> {
        config.timed_keys("stripe").map(StripeVerifier)
    }
}

/// What Stripe signs: `{t}.{body}`.
fn message<'a>(t: &'a str, body: &'a [u8]) -> [&'a [u8]; 3] {
    [t.as_bytes(), b".", body]
}

impl StripeVerifier {
    /// `t=<t>,v1=<hex>` with the first secret.
    fn header(&self, t: i64, body: &[u8]) -> String {
        let t = t.to_string();
        let v1 = hex::encode(self.0.keys.sign_with_first(&message(&t, body)));
        format!("t={t},v1={v1}")
    }
}

impl Verifier for StripeVerifier {
    fn sign(&self, s: &Signing<'_>) -> Result<Vec<sign::Header>, String> {
        Ok(vec![(
            SIGNATURE_HEADER.into(),
            self.header(s.timestamp, s.body),
        )])
    }

    fn expected(&self, req: &Unverified<'_>) -> Vec<sign::Header> {
        signature_header(req.headers, SIGNATURE_HEADER)
            .and_then(parse_header)
            .map(|h| vec![(SIGNATURE_HEADER.into(), self.header(h.timestamp, req.body))])
            .unwrap_or_default()
    }

    fn verify(&self, req: &Unverified<'_>) -> Result<Verified, Rejection> {
        let header = parse_header(signature_header(req.headers, SIGNATURE_HEADER)?)?;
        // Stripe's libraries sign the timestamp as they print an integer.
        let t = header.timestamp.to_string();
        let candidates: Vec<&[u8]> = header.signatures.iter().map(|s| s.as_slice()).collect();
        if !self.0.keys.matches(&message(&t, req.body), &candidates) {
            return Err(Rejection::BadSignature);
        }
        check_age(header.timestamp, req.now, self.0.tolerance)?;
        decoded(req)
    }

    fn decode(&self, req: &Unverified<'_>) -> Option<Result<Verified, Rejection>> {
        Some(decoded(req))
    }
}

/// Everything after the signature check: the event object, its `type` and `id`.
fn decoded(req: &Unverified<'_>) -> Result<Verified, Rejection> {
    let payload = json_object(req.body)?;
    let event_type = event_at(&payload, "type")?;
    let idempotency_key = match string_at(&payload, "id") {
        Some(id) => id.to_string(),
        None => digest_key(&[req.body]),
    };
    Ok(Verified {
        payload,
        event_type,
        idempotency_key: Some(idempotency_key),
    })
}

/// A `Stripe-Signature` value, read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Header {
    pub(crate) timestamp: i64,
    pub(crate) signatures: Vec<[u8; 32]>,
}

/// `t=...` once, and at least one `v1=<64 hex>`. Other elements, and `v1` values that are
/// not 64 hex digits, are skipped (they can match nothing), as Stripe's libraries do.
pub(crate) fn parse_header(value: &[u8]) -> Result<Header, Rejection> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for element in value.split(|b| *b == b',') {
        let element = element.trim_ascii();
        let Some(eq) = element.iter().position(|b| *b == b'=') else {
            continue;
        };
        let (key, value) = (&element[..eq], &element[eq + 1..]);
        match key {
            b"t" => {
                let bad = |problem| Rejection::MalformedTimestamp {
                    location: TIMESTAMP_LOCATION.into(),
                    problem,
                };
                if timestamp.is_some() {
                    return Err(bad("given more than once"));
                }
                timestamp = Some(unix_seconds(value).ok_or(bad("expected Unix time in seconds"))?);
            }
            b"v1" => {
                let mut tag = [0u8; 32];
                if value.len() == 64 && hex::decode_to_slice(value, &mut tag).is_ok() {
                    signatures.push(tag);
                }
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(Rejection::MissingTimestamp {
        location: TIMESTAMP_LOCATION.into(),
    })?;
    if signatures.is_empty() {
        return Err(malformed(
            SIGNATURE_HEADER,
            "expected `t=<timestamp>,v1=<64 hexadecimal characters>`",
        ));
    }
    Ok(Header {
        timestamp,
        signatures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::common::default_tolerance;
    use crate::verify::common::{Algorithm, Keyring};
    use crate::verify::testing::*;
    use hookline_plugin_api::Secret;
    use proptest::prelude::*;

    const SECRET: &str = "whsec_test_secret_0123456789";
    const BODY: &str = r#"{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1"}}}"#;
    const T: i64 = 1_700_000_000;

    fn verifier(secrets: &[&str]) -> StripeVerifier {
        StripeVerifier::build(&StripeConfig {
            secrets: secrets.iter().map(|s| Secret::new(*s)).collect(),
            tolerance: default_tolerance(),
        })
        .expect("builds")
    }

    fn v1(secret: &str, t: i64, body: &str) -> String {
        let ring = Keyring::utf8("t", Algorithm::Sha256, &[Secret::new(secret)]).expect("key");
        hex::encode(ring.sign_with_first(&[format!("{t}.{body}").as_bytes()]))
    }

    fn send(v: &StripeVerifier, header: &str, body: &str, now: i64) -> Result<Verified, Rejection> {
        verify(v, &[(SIGNATURE_HEADER, header)], body.as_bytes(), at(now))
    }

    #[test]
    fn valid_rotated_and_several_signatures() {
        let v = verifier(&["whsec_new", SECRET]);
        let header = format!("t={T},v1={}", v1(SECRET, T, BODY));
        let ok = send(&v, &header, BODY, T).expect("valid");
        assert_eq!(ok.event_type, "payment_intent.succeeded");
        assert_eq!(
            ok.idempotency_key.as_deref(),
            Some("evt_1NG8Du2eZvKYlo2CUI79vXWy")
        );
        let header = format!("t={T},v1={}", v1("whsec_new", T, BODY));
        assert!(send(&v, &header, BODY, T).is_ok(), "second secret");
        // What Stripe sends while rolling a secret: one v1 per secret, plus a v0.
        let header = format!(
            "t={T}, v1={}, v1={}, v0={}, v1=nothex",
            v1("whsec_retired", T, BODY),
            v1(SECRET, T, BODY),
            v1(SECRET, T, BODY)
        );
        assert!(send(&verifier(&[SECRET]), &header, BODY, T).is_ok());
    }

    #[test]
    fn tampered_wrong_secret_expired_and_future_are_401() {
        let v = verifier(&[SECRET]);
        let header = format!("t={T},v1={}", v1(SECRET, T, BODY));
        let tampered = BODY.replace("succeeded", "failed");
        assert_eq!(
            outcome(send(&v, &header, &tampered, T), &[SECRET]),
            (401, "bad_signature")
        );
        let wrong = format!("t={T},v1={}", v1("whsec_other", T, BODY));
        let r = rejected(send(&v, &wrong, BODY, T), &[SECRET]);
        assert_eq!(r.to_string(), "invalid signature");
        // The timestamp is signed: moving it breaks the signature.
        let moved = format!("t={},v1={}", T + 1, v1(SECRET, T, BODY));
        assert_eq!(
            outcome(send(&v, &moved, BODY, T), &[]),
            (401, "bad_signature")
        );

        assert!(send(&v, &header, BODY, T + 300).is_ok());
        assert!(send(&v, &header, BODY, T - 300).is_ok());
        let r = rejected(send(&v, &header, BODY, T + 3600), &[]);
        assert_eq!(r.reason(), "timestamp_expired");
        assert_eq!(
            r.to_string(),
            "timestamp expired: signed 3600 s ago, more than the 300 s tolerance"
        );
        assert_eq!(
            outcome(send(&v, &header, BODY, T - 301), &[]),
            (401, "timestamp_in_future")
        );
    }

    #[test]
    fn missing_and_malformed_headers_are_401() {
        let v = verifier(&[SECRET]);
        let r = rejected(verify(&v, &[], BODY.as_bytes(), at(T)), &[]);
        assert_eq!(
            (r.status(), r.to_string().as_str()),
            (401, "missing Stripe-Signature header")
        );
        let sig = v1(SECRET, T, BODY);
        let cases = [
            (format!("v1={sig}"), "missing_timestamp"),
            (format!("t=,v1={sig}"), "malformed_timestamp"),
            (format!("t=soon,v1={sig}"), "malformed_timestamp"),
            (format!("t={T},t={T},v1={sig}"), "malformed_timestamp"),
            (format!("t={T}"), "malformed_signature"),
            (format!("t={T},v1={}", &sig[..63]), "malformed_signature"),
            (format!("t={T},v0={sig}"), "malformed_signature"),
            (sig.clone(), "missing_timestamp"),
            (String::new(), "missing_timestamp"),
        ];
        for (header, reason) in cases {
            let r = rejected(send(&v, &header, BODY, T), &[SECRET]);
            assert_eq!((r.status(), r.reason()), (401, reason), "{header}");
        }
        let r = rejected(send(&v, &format!("t={T}"), BODY, T), &[]);
        assert!(r.to_string().contains("t=<timestamp>,v1="), "{r}");
        let header = format!("t={T},v1={sig}");
        let twice = [
            (SIGNATURE_HEADER, header.as_str()),
            (SIGNATURE_HEADER, header.as_str()),
        ];
        assert_eq!(
            outcome(verify(&v, &twice, BODY.as_bytes(), at(T)), &[]),
            (401, "malformed_signature")
        );
    }

    #[test]
    fn type_and_id_come_from_the_signed_payload() {
        let v = verifier(&[SECRET]);
        for (body, reason) in [
            ("{}", "missing_event"),
            ("[]", "not_an_object"),
            ("x", "malformed_json"),
        ] {
            let header = format!("t={T},v1={}", v1(SECRET, T, body));
            assert_eq!(outcome(send(&v, &header, body, T), &[]), (400, reason));
        }
        let body = r#"{"type":"charge.refunded"}"#;
        let header = format!("t={T},v1={}", v1(SECRET, T, body));
        let ok = send(&v, &header, body, T).expect("valid");
        assert_eq!(ok.idempotency_key, Some(digest_key(&[body.as_bytes()])));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn header_parser_never_panics(
            header in header_bytes(&["t=", "v1=", "v0=", ",", "=", "1700000000", "ab", " "]),
            body in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let _ = parse_header(&header);
            never_panics(&verifier(&[SECRET]), &[SIGNATURE_HEADER], &[header], &body);
        }
    }
}
