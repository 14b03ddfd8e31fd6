//! The `github` scheme: `X-Hub-Signature-256: sha256=<hex>`, the HMAC-SHA256 of the body
//! keyed with the webhook's secret (UTF-8). The older `X-Hub-Signature` (SHA-1) is ignored.
//!
//! ```toml
//! [[sources]]
//! name = "github"
//! path = "/webhooks/github"
//! verify = { scheme = "github", secrets = ["${GITHUB_WEBHOOK_SECRET}"] }
//! ```
//!
//! The event type is the `X-GitHub-Event` header (`push`, `pull_request`, `ping`): GitHub
//! puts it nowhere in the payload, and the signature does not cover it, so this is the one
//! place a header decides routing (held to 1–128 visible ASCII characters). The payload's
//! own `action` (`opened`, `closed`) is in the payload for filters. The idempotency key is
//! `X-GitHub-Delivery`, which GitHub keeps when it redelivers; without it, a hash of the
//! body. GitHub signs no timestamp, so there is no tolerance to configure. Deliveries must
//! use the content type `application/json`.

use super::common::{BodySigned, SecretsConfig, prefixed_hex_tag};

/// `verify = { scheme = "github", secrets = [...] }`: every webhook secret accepted.
pub type GithubConfig = SecretsConfig;

/// GitHub signs the body; the event and the delivery id are headers.
pub(crate) const GITHUB: BodySigned = BodySigned {
    name: "github",
    signature_header: "X-Hub-Signature-256",
    event_header: "X-GitHub-Event",
    id_header: "X-GitHub-Delivery",
    parse: parse_signature,
    format: |tag| format!("sha256={}", hex::encode(tag)),
};

/// `sha256=` and 64 hex digits (either case).
pub(crate) fn parse_signature(value: &[u8]) -> Result<[u8; 32], &'static str> {
    prefixed_hex_tag(
        value,
        b"sha256=",
        "expected `sha256=` and 64 hexadecimal characters",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::common::BodySignedVerifier;
    use crate::verify::common::{Algorithm, Keyring, digest_key};
    use crate::verify::{Rejection, Verified};
    use hookline_plugin_api::Secret;

    const SIGNATURE_HEADER: &str = GITHUB.signature_header;
    const EVENT_HEADER: &str = GITHUB.event_header;
    const DELIVERY_HEADER: &str = GITHUB.id_header;
    use crate::verify::testing::*;
    use proptest::prelude::*;

    const SECRET: &str = "It's a Secret to Everybody";
    const BODY: &str = r#"{"action":"opened","number":1,"repository":{"full_name":"o/r"}}"#;

    fn verifier(secrets: &[&str]) -> BodySignedVerifier {
        BodySignedVerifier::build(
            &GITHUB,
            &GithubConfig {
                secrets: secrets.iter().map(|s| Secret::new(*s)).collect(),
            },
        )
        .expect("builds")
    }

    fn sign(secret: &str, body: &str) -> String {
        let ring = Keyring::utf8("t", Algorithm::Sha256, &[Secret::new(secret)]).expect("key");
        format!(
            "sha256={}",
            hex::encode(ring.sign_with_first(&[body.as_bytes()]))
        )
    }

    fn send(v: &BodySignedVerifier, sig: &str, body: &str) -> Result<Verified, Rejection> {
        let h = [
            (SIGNATURE_HEADER, sig),
            (EVENT_HEADER, "pull_request"),
            (DELIVERY_HEADER, "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ];
        verify(v, &h, body.as_bytes(), at(0))
    }

    #[test]
    fn official_vector_verifies() {
        // docs.github.com, "Validating webhook deliveries".
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(sign(SECRET, "Hello, World!"), sig);
        // Good signature, but not JSON: 400, not 401.
        let r = send(&verifier(&[SECRET]), sig, "Hello, World!");
        assert_eq!(outcome(r, &[SECRET]), (400, "malformed_json"));
    }

    #[test]
    fn valid_and_rotated_secrets_route_by_the_event_header() {
        let v = verifier(&["new-secret", SECRET]);
        let ok = send(&v, &sign(SECRET, BODY), BODY).expect("valid");
        assert_eq!(ok.event_type, "pull_request");
        assert_eq!(
            ok.idempotency_key.as_deref(),
            Some("72d3162e-cc78-11e3-81ab-4c9367dc0958")
        );
        assert_eq!(ok.payload["action"], "opened");
        assert!(send(&v, &sign("new-secret", BODY), BODY).is_ok());
        // Upper-case hex is the same signature.
        let upper = format!("sha256={}", sign(SECRET, BODY)[7..].to_uppercase());
        assert!(send(&v, &upper, BODY).is_ok());
        // No delivery id: a hash of the body.
        let h = [
            (SIGNATURE_HEADER, sign(SECRET, BODY)),
            (EVENT_HEADER, "push".into()),
        ];
        let h: Vec<_> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let ok = verify(&v, &h, BODY.as_bytes(), at(0)).expect("valid");
        assert_eq!(ok.idempotency_key, Some(digest_key(&[BODY.as_bytes()])));
    }

    #[test]
    fn tampered_and_wrong_secret_are_401() {
        let v = verifier(&[SECRET]);
        let tampered = BODY.replace("opened", "closed");
        assert_eq!(
            outcome(send(&v, &sign(SECRET, BODY), &tampered), &[SECRET]),
            (401, "bad_signature")
        );
        let r = rejected(send(&v, &sign("other", BODY), BODY), &[SECRET]);
        assert_eq!(
            (r.status(), r.to_string().as_str()),
            (401, "invalid signature")
        );
    }

    #[test]
    fn missing_malformed_and_repeated_signatures_are_401() {
        let v = verifier(&[SECRET]);
        let h = [(EVENT_HEADER, "push")];
        let r = rejected(verify(&v, &h, BODY.as_bytes(), at(0)), &[]);
        assert_eq!(
            (r.status(), r.to_string().as_str()),
            (401, "missing X-Hub-Signature-256 header")
        );
        let good = sign(SECRET, BODY);
        for sig in [
            &good[7..],
            "sha1=abc",
            "sha256=",
            &good[..70],
            "sha256=zz",
            "SHA256=00",
        ] {
            let r = rejected(send(&v, sig, BODY), &[SECRET]);
            assert_eq!(
                (r.status(), r.reason()),
                (401, "malformed_signature"),
                "{sig}"
            );
            assert!(r.to_string().contains("`sha256=`"), "{r}");
        }
        // Sent twice (one of them valid) is refused: GitHub sends one.
        let h = [
            (SIGNATURE_HEADER, good.as_str()),
            (SIGNATURE_HEADER, "sha256=00"),
            (EVENT_HEADER, "push"),
        ];
        let r = rejected(verify(&v, &h, BODY.as_bytes(), at(0)), &[]);
        assert_eq!(
            r.to_string(),
            "malformed X-Hub-Signature-256 header: sent more than once"
        );
        // The legacy SHA-1 header beside a valid SHA-256 one is ignored, whatever it holds.
        let h = [
            (SIGNATURE_HEADER, good.as_str()),
            ("X-Hub-Signature", "sha1=00"),
            (EVENT_HEADER, "push"),
        ];
        assert!(verify(&v, &h, BODY.as_bytes(), at(0)).is_ok());
    }

    #[test]
    fn the_event_header_is_required_and_plain() {
        let v = verifier(&[SECRET]);
        let sig = sign(SECRET, BODY);
        let r = rejected(
            verify(&v, &[(SIGNATURE_HEADER, &sig)], BODY.as_bytes(), at(0)),
            &[],
        );
        assert_eq!((r.status(), r.reason()), (400, "bad_event_header"));
        assert_eq!(
            r.to_string(),
            "X-GitHub-Event header is missing: it names the event type"
        );
        let long = "x".repeat(129);
        for bad in ["a b", long.as_str()] {
            let h = [(SIGNATURE_HEADER, sig.as_str()), (EVENT_HEADER, bad)];
            assert_eq!(
                outcome(verify(&v, &h, BODY.as_bytes(), at(0)), &[]),
                (400, "bad_event_header")
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn header_parser_never_panics(
            sig in header_bytes(&["sha256=", "sha1=", "0", "f", "g", "757107ea0eb2509f", " "]),
            event in header_bytes(&["push", " ", "\u{e9}"]),
            body in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let _ = parse_signature(&sig);
            never_panics(&verifier(&[SECRET]), &[SIGNATURE_HEADER, EVENT_HEADER], &[sig, event], &body);
        }
    }
}
