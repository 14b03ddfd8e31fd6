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

use hookline_plugin_api::Secret;
use serde::Deserialize;

use super::common::{
    Algorithm, Keyring, digest_key, event_from_header, id_from_header, json_object, malformed,
    signature_header,
};
use super::sign::{Header, Signing};
use super::{Rejection, Unverified, Verified, Verifier};

pub const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";
pub const EVENT_HEADER: &str = "X-GitHub-Event";
pub const DELIVERY_HEADER: &str = "X-GitHub-Delivery";

/// `verify = { scheme = "github", secrets = [...] }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubConfig {
    /// Every webhook secret accepted.
    pub secrets: Vec<Secret>,
}

#[derive(Debug, Clone)]
pub struct GithubVerifier {
    keys: Keyring,
}

impl GithubVerifier {
    pub fn build(config: &GithubConfig) -> Result<Self, String> {
        Ok(GithubVerifier {
            keys: Keyring::utf8("github", Algorithm::Sha256, &config.secrets)?,
        })
    }
}

impl GithubVerifier {
    /// `sha256=<hex>` of the body with the first secret.
    fn signature(&self, body: &[u8]) -> String {
        format!("sha256={}", hex::encode(self.keys.sign_with_first(&[body])))
    }
}

impl Verifier for GithubVerifier {
    fn sign(&self, s: &Signing<'_>) -> Result<Vec<Header>, String> {
        let mut headers = vec![(SIGNATURE_HEADER.into(), self.signature(s.body))];
        if let Some(event) = s.event {
            headers.push((EVENT_HEADER.into(), event.into()));
        }
        headers.push((DELIVERY_HEADER.into(), s.id.into()));
        Ok(headers)
    }

    fn expected(&self, req: &Unverified<'_>) -> Vec<Header> {
        vec![(SIGNATURE_HEADER.into(), self.signature(req.body))]
    }

    fn verify(&self, req: &Unverified<'_>) -> Result<Verified, Rejection> {
        let tag = parse_signature(signature_header(req.headers, SIGNATURE_HEADER)?)
            .map_err(|problem| malformed(SIGNATURE_HEADER, problem))?;
        if !self.keys.matches(&[req.body], &[&tag]) {
            return Err(Rejection::BadSignature);
        }
        let payload = json_object(req.body)?;
        let event_type = event_from_header(req.headers, EVENT_HEADER)?;
        let idempotency_key =
            id_from_header(req.headers, DELIVERY_HEADER).unwrap_or_else(|| digest_key(&[req.body]));
        Ok(Verified {
            payload,
            event_type,
            idempotency_key: Some(idempotency_key),
        })
    }
}

/// `sha256=` and 64 hex digits (either case).
pub fn parse_signature(value: &[u8]) -> Result<[u8; 32], &'static str> {
    const PROBLEM: &str = "expected `sha256=` and 64 hexadecimal characters";
    let hex_text = value.strip_prefix(b"sha256=").ok_or(PROBLEM)?;
    let mut tag = [0u8; 32];
    if hex_text.len() != 64 || hex::decode_to_slice(hex_text, &mut tag).is_err() {
        return Err(PROBLEM);
    }
    Ok(tag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::testing::*;
    use proptest::prelude::*;

    const SECRET: &str = "It's a Secret to Everybody";
    const BODY: &str = r#"{"action":"opened","number":1,"repository":{"full_name":"o/r"}}"#;

    fn verifier(secrets: &[&str]) -> GithubVerifier {
        GithubVerifier::build(&GithubConfig {
            secrets: secrets.iter().map(|s| Secret::new(*s)).collect(),
        })
        .expect("builds")
    }

    fn sign(secret: &str, body: &str) -> String {
        let ring = Keyring::utf8("t", Algorithm::Sha256, &[Secret::new(secret)]).expect("key");
        format!(
            "sha256={}",
            hex::encode(ring.sign_with_first(&[body.as_bytes()]))
        )
    }

    fn send(v: &GithubVerifier, sig: &str, body: &str) -> Result<Verified, Rejection> {
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
