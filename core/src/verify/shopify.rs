//! The `shopify` scheme: `X-Shopify-Hmac-Sha256`, the base64 HMAC-SHA256 of the body keyed
//! with the app's client secret (UTF-8).
//!
//! ```toml
//! [[sources]]
//! name = "shopify"
//! path = "/webhooks/shopify"
//! verify = { scheme = "shopify", secrets = ["${SHOPIFY_CLIENT_SECRET}"] }
//! ```
//!
//! The event type is the `X-Shopify-Topic` header (`orders/create`): Shopify puts the topic
//! nowhere in the payload and the signature does not cover it, so the header is used as
//! is (held to 1–128 visible ASCII characters). The idempotency key is
//! `X-Shopify-Webhook-Id`, which Shopify keeps when it retries; without it, a hash of the
//! body. Shopify signs no timestamp, so there is no tolerance to configure.

use super::common::{BodySigned, SecretsConfig};
use base64::prelude::{BASE64_STANDARD, Engine as _};

/// `verify = { scheme = "shopify", secrets = [...] }`: every client secret accepted (the old
/// one too while Shopify rotates it).
pub type ShopifyConfig = SecretsConfig;

/// Shopify signs the body; the topic and the webhook id are headers.
pub(crate) const SHOPIFY: BodySigned = BodySigned {
    name: "shopify",
    signature_header: "X-Shopify-Hmac-Sha256",
    event_header: "X-Shopify-Topic",
    id_header: "X-Shopify-Webhook-Id",
    parse: parse_signature,
    format: |tag| BASE64_STANDARD.encode(tag),
};

/// Standard base64 of 32 bytes (44 characters with padding).
pub(crate) fn parse_signature(value: &[u8]) -> Result<[u8; 32], &'static str> {
    let mut tag = [0u8; 32];
    match BASE64_STANDARD.decode_slice(value, &mut tag) {
        Ok(32) => Ok(tag),
        _ => Err("expected the base64 of an HMAC-SHA256 (44 characters)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::common::BodySignedVerifier;
    use crate::verify::common::{Algorithm, Keyring, digest_key};
    use crate::verify::{Rejection, Verified};
    use hookline_plugin_api::Secret;

    const SIGNATURE_HEADER: &str = SHOPIFY.signature_header;
    const TOPIC_HEADER: &str = SHOPIFY.event_header;
    const WEBHOOK_ID_HEADER: &str = SHOPIFY.id_header;
    use crate::verify::testing::*;
    use proptest::prelude::*;

    /// From Shopify's own library tests (shopify-app-js, `validate.test.ts`): Shopify's docs
    /// publish no vector.
    const SECRET: &str = "test_secret_key";
    const SIG: &str = "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g=";
    const BODY: &str = r#"{"foo": "bar"}"#;

    fn verifier(secrets: &[&str]) -> BodySignedVerifier {
        BodySignedVerifier::build(
            &SHOPIFY,
            &ShopifyConfig {
                secrets: secrets.iter().map(|s| Secret::new(*s)).collect(),
            },
        )
        .expect("builds")
    }

    fn sign(secret: &str, body: &str) -> String {
        let ring = Keyring::utf8("t", Algorithm::Sha256, &[Secret::new(secret)]).expect("key");
        BASE64_STANDARD.encode(ring.sign_with_first(&[body.as_bytes()]))
    }

    fn send(v: &BodySignedVerifier, sig: &str, body: &str) -> Result<Verified, Rejection> {
        let h = [
            (SIGNATURE_HEADER, sig),
            (TOPIC_HEADER, "products/create"),
            ("X-Shopify-Shop-Domain", "shop1.myshopify.io"),
            (WEBHOOK_ID_HEADER, "123456789"),
        ];
        verify(v, &h, body.as_bytes(), at(0))
    }

    #[test]
    fn published_vector_verifies() {
        assert_eq!(sign(SECRET, BODY), SIG);
        let ok = send(&verifier(&[SECRET]), SIG, BODY).expect("valid");
        assert_eq!(ok.event_type, "products/create");
        assert_eq!(ok.idempotency_key.as_deref(), Some("123456789"));
        assert_eq!(ok.payload["foo"], "bar");
    }

    #[test]
    fn rotated_tampered_and_wrong_secret() {
        let v = verifier(&["new-client-secret", SECRET]);
        assert!(send(&v, SIG, BODY).is_ok(), "second secret");
        assert!(send(&v, &sign("new-client-secret", BODY), BODY).is_ok());
        let tampered = r#"{"foo": "baz"}"#;
        assert_eq!(
            outcome(send(&v, SIG, tampered), &[SECRET]),
            (401, "bad_signature")
        );
        let r = rejected(send(&verifier(&["other"]), SIG, BODY), &[SECRET]);
        assert_eq!(r.to_string(), "invalid signature");
        // No webhook id: a hash of the body.
        let h = [(SIGNATURE_HEADER, SIG), (TOPIC_HEADER, "orders/create")];
        let ok = verify(&v, &h, BODY.as_bytes(), at(0)).expect("valid");
        assert_eq!(ok.idempotency_key, Some(digest_key(&[BODY.as_bytes()])));
    }

    #[test]
    fn missing_malformed_and_repeated_headers() {
        let v = verifier(&[SECRET]);
        let r = rejected(
            verify(
                &v,
                &[(TOPIC_HEADER, "orders/create")],
                BODY.as_bytes(),
                at(0),
            ),
            &[],
        );
        assert_eq!(
            (r.status(), r.to_string().as_str()),
            (401, "missing X-Shopify-Hmac-Sha256 header")
        );
        let hex = "076dedd5ceb5d60674a8858d46b82dcc113d5d20e8e7269abbac1f9a1bb76bb8";
        for sig in [
            &SIG[..43],
            "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g",
            hex,
            "!!!!",
            "",
        ] {
            let r = rejected(send(&v, sig, BODY), &[SECRET]);
            assert_eq!(
                (r.status(), r.reason()),
                (401, "malformed_signature"),
                "{sig}"
            );
            assert!(r.to_string().contains("base64"), "{r}");
        }
        let h = [
            (SIGNATURE_HEADER, SIG),
            (SIGNATURE_HEADER, "AAAA"),
            (TOPIC_HEADER, "orders/create"),
        ];
        assert_eq!(
            outcome(verify(&v, &h, BODY.as_bytes(), at(0)), &[]),
            (401, "malformed_signature")
        );
        let r = rejected(
            verify(&v, &[(SIGNATURE_HEADER, SIG)], BODY.as_bytes(), at(0)),
            &[],
        );
        assert_eq!((r.status(), r.reason()), (400, "bad_event_header"));
        assert_eq!(
            r.to_string(),
            "X-Shopify-Topic header is missing: it names the event type"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn header_parser_never_panics(
            sig in header_bytes(&["B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g", "=", "+", "/", "A", " "]),
            topic in header_bytes(&["orders/create", " "]),
            body in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let _ = parse_signature(&sig);
            never_panics(&verifier(&[SECRET]), &[SIGNATURE_HEADER, TOPIC_HEADER], &[sig, topic], &body);
        }
    }
}
