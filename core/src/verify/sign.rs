//! Signing as a sender would, and explaining a failed check: the other side of every scheme.
//!
//! Each [`Verifier`] also signs ([`Verifier::sign`]), with the message built by the same
//! function its `verify` checks, so "what is signed" is one rule in one place. The signing
//! key is the verifier's first secret; [`VerifyConfig::with_secret`] builds a verifier for
//! one secret. `hookline send --scheme` signs through this; `hookline verify` uses it to say
//! what a request would have had to carry ([`Verifier::expected`]).
//!
//! A secret is named only by its [`fingerprint`], never shown.

use hookline_plugin_api::Secret;
use sha2::{Digest, Sha256};

#[cfg(test)]
use super::Verifier;
use super::VerifyConfig;

/// What a sender signs, besides the body: the scheme takes what it needs and ignores the
/// rest (LeadShark, GitHub and Shopify sign no timestamp).
#[derive(Debug, Clone, Copy)]
pub struct Signing<'a> {
    pub body: &'a [u8],
    /// Unix seconds.
    pub timestamp: i64,
    /// A delivery id (`webhook-id`, `X-GitHub-Delivery`, ...).
    pub id: &'a str,
    /// The event type, for schemes that send it in a header.
    pub event: Option<&'a str>,
    /// The URL the request is sent to, for schemes that sign it (Twilio): as
    /// [`super::Verifier::sender_url`] made it.
    pub url: Option<&'a str>,
}

/// A header to send, name as the provider spells it.
pub type Header = (String, String);

/// Names a secret without showing it: the first 8 hex digits of its SHA-256.
pub fn fingerprint(secret: &str) -> String {
    let digest = hex::encode(Sha256::digest(secret.as_bytes()));
    format!("sha256:{}", &digest[..8])
}

impl VerifyConfig {
    /// Every secret of the table, empty rotation slots included.
    pub fn secrets(&self) -> &[Secret] {
        match self {
            VerifyConfig::Leadshark(c) => &c.secrets,
            VerifyConfig::StandardWebhooks(c) => &c.secrets,
            VerifyConfig::Github(c) => &c.secrets,
            VerifyConfig::Stripe(c) => &c.secrets,
            VerifyConfig::Slack(c) => &c.secrets,
            VerifyConfig::Shopify(c) => &c.secrets,
            VerifyConfig::Hmac(c) => &c.secrets,
            VerifyConfig::Twilio(c) => &c.secrets,
            VerifyConfig::Ed25519(_) => &[],
        }
    }

    /// The same table with only `secret`: a verifier that checks (and signs) with it alone.
    /// A table without secrets (`ed25519`) is returned as it is: it cannot sign.
    pub fn with_secret(&self, secret: &Secret) -> VerifyConfig {
        let mut one = self.clone();
        let secrets = match &mut one {
            VerifyConfig::Ed25519(_) => return one,
            VerifyConfig::Leadshark(c) => &mut c.secrets,
            VerifyConfig::StandardWebhooks(c) => &mut c.secrets,
            VerifyConfig::Github(c) => &mut c.secrets,
            VerifyConfig::Stripe(c) => &mut c.secrets,
            VerifyConfig::Slack(c) => &mut c.secrets,
            VerifyConfig::Shopify(c) => &mut c.secrets,
            VerifyConfig::Hmac(c) => &mut c.secrets,
            VerifyConfig::Twilio(c) => &mut c.secrets,
        };
        *secrets = vec![secret.clone()];
        one
    }

    /// The table a bare `--scheme NAME --secret S` stands for: the scheme's defaults. The
    /// generic `hmac` scheme has no defaults of its own; here it means hex HMAC-SHA256 of
    /// the body in `X-Signature`, the event type in the payload's `event`.
    pub fn for_scheme(scheme: &str, secrets: &[String]) -> Result<VerifyConfig, String> {
        if scheme == "ed25519" {
            return Err(
                "ed25519: a source of this scheme holds only the sender's public keys, so Hookline cannot sign for it"
                    .into(),
            );
        }
        let mut table = serde_json::json!({ "scheme": scheme, "secrets": secrets });
        if scheme == "hmac" {
            table["header"] = "X-Signature".into();
            table["event_field"] = "event".into();
        }
        serde_json::from_value(table).map_err(|e| {
            format!(
                "{e} (schemes: leadshark, standard-webhooks, github, stripe, slack, shopify, hmac, twilio)"
            )
        })
    }

    /// Dotted path of the event type in the payload, for schemes that read it there.
    pub fn event_field(&self) -> Option<&str> {
        match self {
            VerifyConfig::Leadshark(_) => Some("event"),
            VerifyConfig::StandardWebhooks(c) => Some(&c.event_field),
            VerifyConfig::Stripe(_) | VerifyConfig::Slack(_) => Some("type"),
            VerifyConfig::Ed25519(c) => Some(&c.event_field),
            VerifyConfig::Hmac(c) => c.event_field.as_deref(),
            VerifyConfig::Twilio(c) => Some(c.event_field.as_deref().unwrap_or("EventType")),
            VerifyConfig::Github(_) | VerifyConfig::Shopify(_) => None,
        }
    }
}

/// A signer: `config`'s verifier for `secret` alone.
#[cfg(test)]
pub(crate) fn signer(config: &VerifyConfig, secret: &str) -> Result<Box<dyn Verifier>, String> {
    config.with_secret(&Secret::new(secret)).build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::Unverified;

    const SECRET: &str = "s3cret-for-signing";

    fn headers(pairs: &[Header]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (name, value) in pairs {
            h.append(
                http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                http::HeaderValue::from_str(value).expect("value"),
            );
        }
        h
    }

    /// Every scheme verifies what it signs, and refuses it under another secret.
    #[test]
    fn every_scheme_verifies_what_it_signs() {
        let now = jiff::Timestamp::from_second(1_700_000_000).expect("time");
        let body = br#"{"event":"new.like","type":"new.like","id":"evt_1"}"#;
        for scheme in [
            "leadshark",
            "standard-webhooks",
            "github",
            "stripe",
            "slack",
            "shopify",
            "hmac",
            "twilio",
        ] {
            let secret = match scheme {
                "standard-webhooks" => "whsec_c2lnbmluZy1rZXk=",
                _ => SECRET,
            };
            let config = VerifyConfig::for_scheme(scheme, &[secret.into()]).expect("table");
            let sender = signer(&config, secret).expect("signer");
            // Twilio signs the URL (with `bodySHA256`): the request goes where it says.
            let url = sender.sender_url("https://hooks.example.com/webhooks/src", body);
            let signed = sender
                .sign(&Signing {
                    body,
                    timestamp: now.as_second(),
                    id: "msg_1",
                    event: Some("new.like"),
                    url: Some(&url),
                })
                .expect("signs");
            let mut h = headers(&signed);
            h.insert("host", http::HeaderValue::from_static("hooks.example.com"));
            h.insert(
                "content-type",
                http::HeaderValue::from_static("application/json"),
            );
            let req = Unverified {
                headers: &h,
                body,
                target: url.strip_prefix("https://hooks.example.com"),
                now,
            };
            let verified = config.build().expect("builds").verify(&req);
            assert_eq!(
                verified.expect(scheme).event_type,
                "new.like",
                "{scheme}: {signed:?}"
            );
            let expected = signer(&config, secret).expect("signer").expected(&req);
            assert!(
                !expected.is_empty() && expected.iter().all(|e| signed.contains(e)),
                "{scheme}: {expected:?} in {signed:?}"
            );
            let other = match scheme {
                "standard-webhooks" => "whsec_b3RoZXI=",
                _ => "other",
            };
            let wrong = VerifyConfig::for_scheme(scheme, &[other.into()]).expect("table");
            let r = wrong.build().expect("builds").verify(&req);
            assert_eq!(r.expect_err(scheme).reason(), "bad_signature", "{scheme}");
        }
    }

    #[test]
    fn fingerprints_name_without_showing() {
        let f = fingerprint(SECRET);
        assert!(f.starts_with("sha256:") && f.len() == 15, "{f}");
        assert!(!f.contains(SECRET));
        assert_ne!(f, fingerprint("other"));
        assert!(VerifyConfig::for_scheme("nope", &[]).is_err());
    }
}
