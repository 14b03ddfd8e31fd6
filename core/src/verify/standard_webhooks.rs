//! The `standard-webhooks` scheme ([Standard Webhooks], what Svix sends): three headers,
//! `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`, a
//! space-separated list of `v1,<base64>` entries, each the HMAC-SHA256 of
//! `{webhook-id}.{webhook-timestamp}.{body}` keyed with the base64-decoded secret (the part
//! after `whsec_`). Several entries let the sender rotate its secret; one match is enough.
//! Svix's `svix-id`, `svix-timestamp` and `svix-signature` are read the same way when the
//! `webhook-*` ones are absent.
//!
//! Asymmetric signatures (`v1a`) are accepted too when the source lists the sender's
//! public keys, `public_keys = ["whpk_<base64>"]`: a `v1a,<base64>` entry is the Ed25519
//! signature of the same `{webhook-id}.{webhook-timestamp}.{body}`. A source may list
//! secrets, public keys or both; any one entry that matches any one key is enough.
//!
//! ```toml
//! [[sources]]
//! name = "billing"
//! path = "/webhooks/billing"
//! verify = { scheme = "standard-webhooks", secrets = ["${BILLING_WHSEC}"], tolerance = "5m", event_field = "type" }
//! ```
//!
//! The event type is the payload's `type` (or the dotted `event_field`); the idempotency
//! key is `webhook-id`, which the signature covers and which a retry keeps.
//!
//! [Standard Webhooks]: https://www.standardwebhooks.com/

use std::time::Duration;

use base64::prelude::{BASE64_STANDARD, Engine as _};
use hookline_plugin_api::Secret;
use serde::Deserialize;

use super::common::{
    Algorithm, Keyring, check_age, default_tolerance, digest_key, event_at, json_object, malformed,
    one_header, signature_header, timestamp_header,
};
use super::ed25519::PublicKeys;
use super::sign::{Header, Signing};
use super::{Rejection, Unverified, Verified, Verifier, check_secrets};

/// `verify = { scheme = "standard-webhooks", ... }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandardWebhooksConfig {
    /// Every secret accepted, `whsec_<base64>` (the prefix is optional): `v1` entries.
    #[serde(default)]
    pub(crate) secrets: Vec<Secret>,
    /// Every public key accepted, `whpk_<base64>` (the prefix is optional): `v1a` entries.
    #[serde(default)]
    pub(crate) public_keys: Vec<String>,
    /// How far `webhook-timestamp` may be from now, either way. Default 5 minutes.
    #[serde(default = "default_tolerance", with = "humantime_serde")]
    pub(crate) tolerance: Duration,
    /// Dotted path of the event type in the payload. Default `type`.
    #[serde(default = "default_event_field")]
    pub(crate) event_field: String,
}

fn default_event_field() -> String {
    "type".into()
}

/// Header names: the standard's, or Svix's older ones.
#[derive(Debug, Clone, Copy)]
struct Names {
    id: &'static str,
    timestamp: &'static str,
    signature: &'static str,
}

const STANDARD: Names = Names {
    id: "webhook-id",
    timestamp: "webhook-timestamp",
    signature: "webhook-signature",
};

const SVIX: Names = Names {
    id: "svix-id",
    timestamp: "svix-timestamp",
    signature: "svix-signature",
};

#[derive(Debug, Clone)]
pub(crate) struct StandardWebhooksVerifier {
    /// `v1`: HMAC secrets; none when the source lists only public keys.
    keys: Option<Keyring>,
    /// `v1a`: Ed25519 public keys.
    public_keys: Option<PublicKeys>,
    tolerance: Duration,
    event_field: String,
}

impl StandardWebhooksVerifier {
    pub(crate) fn build(config: &StandardWebhooksConfig) -> Result<Self, String> {
        const SCHEME: &str = "standard-webhooks";
        let public_keys = match config.public_keys.is_empty() {
            true => None,
            false => Some(PublicKeys::parse(
                SCHEME,
                "public_keys",
                &config.public_keys,
                Some("whpk_"),
            )?),
        };
        let keys = if public_keys.is_some() && config.secrets.is_empty() {
            None
        } else {
            let keys = check_secrets(SCHEME, &config.secrets)
                .map_err(|e| format!("{e} (or `public_keys`, for `v1a` signatures)"))?
                .into_iter()
                .enumerate()
                .map(|(i, s)| decode_secret(s.expose()).ok_or_else(|| bad_secret(i)))
                .collect::<Result<Vec<_>, _>>()?;
            let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
            Some(Keyring::from_bytes(SCHEME, Algorithm::Sha256, &keys)?)
        };
        if config.event_field.is_empty() {
            return Err(format!("{SCHEME}: `event_field` must not be empty"));
        }
        Ok(StandardWebhooksVerifier {
            keys,
            public_keys,
            tolerance: config.tolerance,
            event_field: config.event_field.clone(),
        })
    }
}

fn bad_secret(i: usize) -> String {
    format!(
        "standard-webhooks: secret #{} is not `whsec_` followed by base64",
        i + 1
    )
}

/// The HMAC key: the base64 after an optional `whsec_`.
fn decode_secret(secret: &str) -> Option<Vec<u8>> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    BASE64_STANDARD
        .decode(encoded)
        .ok()
        .filter(|key| !key.is_empty())
}

/// What is signed: `{id}.{timestamp}.{body}`.
fn message<'a>(id: &'a [u8], timestamp: &'a [u8], body: &'a [u8]) -> [&'a [u8]; 5] {
    [id, b".", timestamp, b".", body]
}

/// The standard's header names, or Svix's when only those are sent.
fn names(headers: &http::HeaderMap) -> Names {
    if headers.contains_key(STANDARD.signature) || !headers.contains_key(SVIX.signature) {
        STANDARD
    } else {
        SVIX
    }
}

impl StandardWebhooksVerifier {
    /// `v1,<base64>` with the first secret; `None` without secrets (public keys only).
    fn signature(&self, id: &[u8], timestamp: i64, body: &[u8]) -> Option<String> {
        let timestamp = timestamp.to_string();
        let tag = self
            .keys
            .as_ref()?
            .sign_with_first(&message(id, timestamp.as_bytes(), body));
        Some(format!("v1,{}", BASE64_STANDARD.encode(tag)))
    }
}

impl Verifier for StandardWebhooksVerifier {
    fn sign(&self, s: &Signing<'_>) -> Result<Vec<Header>, String> {
        let signature = self
            .signature(s.id.as_bytes(), s.timestamp, s.body)
            .ok_or("standard-webhooks: this source lists only public keys (`v1a`), so Hookline cannot sign for it")?;
        Ok(vec![
            (STANDARD.id.into(), s.id.into()),
            (STANDARD.timestamp.into(), s.timestamp.to_string()),
            (STANDARD.signature.into(), signature),
        ])
    }

    fn expected(&self, req: &Unverified<'_>) -> Vec<Header> {
        let names = names(req.headers);
        match (
            one_header(req.headers, names.id),
            timestamp_header(req.headers, names.timestamp),
        ) {
            (Ok(Some(id)), Ok((_, t))) if !id.is_empty() => self
                .signature(id, t, req.body)
                .map(|sig| vec![(names.signature.into(), sig)])
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    fn verify(&self, req: &Unverified<'_>) -> Result<Verified, Rejection> {
        let names = names(req.headers);
        let value = signature_header(req.headers, names.signature)?;
        let (signatures, asymmetric) = (v1_entries(value), v1a_entries(value));
        if signatures.is_empty() && asymmetric.is_empty() {
            return Err(malformed(
                names.signature,
                "expected space-separated `v1,<base64>` or `v1a,<base64>` entries",
            ));
        }
        let id = match one_header(req.headers, names.id) {
            Ok(Some(id)) if !id.is_empty() => id,
            Ok(_) => {
                return Err(Rejection::MissingHeader {
                    header: names.id.into(),
                });
            }
            Err(()) => return Err(malformed(names.id, "sent more than once")),
        };
        let (_, signed_at) = timestamp_header(req.headers, names.timestamp)?;
        // The libraries sign the timestamp as they print an integer, so do the same.
        let timestamp = signed_at.to_string();
        let candidates: Vec<&[u8]> = signatures.iter().map(|s| s.as_slice()).collect();
        let parts = message(id, timestamp.as_bytes(), req.body);
        let symmetric = self
            .keys
            .as_ref()
            .is_some_and(|keys| keys.matches(&parts, &candidates));
        let asymmetric = !symmetric
            && !asymmetric.is_empty()
            && self
                .public_keys
                .as_ref()
                .is_some_and(|keys| keys.verify(&parts.concat(), &asymmetric));
        if !(symmetric || asymmetric) {
            return Err(Rejection::BadSignature);
        }
        check_age(signed_at, req.now, self.tolerance)?;
        self.decoded(req, Some(id))
    }

    fn decode(&self, req: &Unverified<'_>) -> Option<Result<Verified, Rejection>> {
        let id = match one_header(req.headers, names(req.headers).id) {
            Ok(Some(id)) if !id.is_empty() => Some(id),
            _ => None,
        };
        Some(self.decoded(req, id))
    }
}

impl StandardWebhooksVerifier {
    /// Everything after the signature check; the message id is the idempotency key (the
    /// body's digest without one: a kept request re-run without its headers).
    fn decoded(&self, req: &Unverified<'_>, id: Option<&[u8]>) -> Result<Verified, Rejection> {
        let payload = json_object(req.body)?;
        let event_type = event_at(&payload, &self.event_field)?;
        let idempotency_key = match id {
            Some(id) => String::from_utf8_lossy(id).into_owned(),
            None => digest_key(&[req.body]),
        };
        Ok(Verified {
            payload,
            event_type,
            idempotency_key: Some(idempotency_key),
        })
    }
}

/// Every `v1,<base64>` entry of a signature header. Entries of other versions (`v1a` is an
/// asymmetric signature) and undecodable ones are skipped; none usable is malformed.
pub(crate) fn parse_signatures(value: &[u8]) -> Result<Vec<[u8; 32]>, &'static str> {
    let signatures = v1_entries(value);
    if signatures.is_empty() {
        return Err("expected space-separated `v1,<base64 HMAC-SHA256>` entries");
    }
    Ok(signatures)
}

/// The decoded `{version},<base64>` entries of `N` bytes; others are skipped.
fn entries<const N: usize>(value: &[u8], version: &[u8]) -> Vec<[u8; N]> {
    value
        .split(|b| *b == b' ')
        .filter_map(|entry| {
            let (v, signature) = entry.split_at(entry.iter().position(|b| *b == b',')?);
            if v != version {
                return None;
            }
            // Room for more than expected, so that a longer value is refused, not cut.
            let mut buf = [0u8; 72];
            match BASE64_STANDARD.decode_slice(&signature[1..], &mut buf) {
                Ok(n) if n == N => buf[..N].try_into().ok(),
                _ => None,
            }
        })
        .collect()
}

/// `v1,<base64 HMAC-SHA256>` entries.
fn v1_entries(value: &[u8]) -> Vec<[u8; 32]> {
    entries(value, b"v1")
}

/// `v1a,<base64 Ed25519 signature>` entries.
pub(crate) fn v1a_entries(value: &[u8]) -> Vec<[u8; 64]> {
    entries(value, b"v1a")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::testing::*;
    use proptest::prelude::*;

    /// Official vectors: the Standard Webhooks libraries' own tests (Python, JavaScript, Rust).
    const VECTORS: [(&str, &str, i64, &str, &str); 2] = [
        (
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            r#"{"test": 2432232314}"#,
        ),
        (
            "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
            r#"{"email":"test@example.com","username":"test_user"}"#,
        ),
    ];
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const OTHER: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const BODY: &str = r#"{"type":"invoice.paid","data":{"id":"in_1","kind":"x"}}"#;
    const T: i64 = 1_700_000_000;

    fn verifier(secrets: &[&str], event_field: &str) -> StandardWebhooksVerifier {
        StandardWebhooksVerifier::build(&StandardWebhooksConfig {
            secrets: secrets.iter().map(|s| Secret::new(*s)).collect(),
            public_keys: Vec::new(),
            tolerance: default_tolerance(),
            event_field: event_field.into(),
        })
        .expect("builds")
    }

    fn sign(secret: &str, id: &str, ts: i64, body: &str) -> String {
        let key = decode_secret(secret).expect("secret");
        let ring = Keyring::from_bytes("t", Algorithm::Sha256, &[&key]).expect("key");
        let tag = ring.sign_with_first(&[format!("{id}.{ts}.{body}").as_bytes()]);
        format!("v1,{}", BASE64_STANDARD.encode(tag))
    }

    fn send(
        v: &StandardWebhooksVerifier,
        sig: &str,
        ts: &str,
        body: &str,
        now: i64,
    ) -> Result<Verified, Rejection> {
        let h = [
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", ts),
            ("webhook-signature", sig),
        ];
        verify(v, &h, body.as_bytes(), at(now))
    }

    #[test]
    fn official_vectors_verify() {
        for (i, (secret, id, ts, sig, body)) in VECTORS.into_iter().enumerate() {
            assert_eq!(sign(secret, id, ts, body), sig, "our signer agrees");
            let ts = ts.to_string();
            let h = [
                ("webhook-id", id),
                ("webhook-timestamp", ts.as_str()),
                ("webhook-signature", sig),
            ];
            let now = at(VECTORS[i].2);
            // Neither payload has a `type`: the signature passes, so what fails is the
            // event type (400, not 401).
            let r = verify(&verifier(&[secret], "type"), &h, body.as_bytes(), now);
            assert_eq!(outcome(r, &[secret]), (400, "missing_event"));
            if i == 1 {
                let v = verifier(&[secret], "username");
                let ok = verify(&v, &h, body.as_bytes(), now).expect("valid");
                assert_eq!(ok.event_type, "test_user");
                assert_eq!(ok.idempotency_key.as_deref(), Some(id));
            }
        }
    }

    #[test]
    fn valid_rotated_and_several_signatures() {
        let v = verifier(&[OTHER, SECRET], "type");
        let good = sign(SECRET, "msg_1", T, BODY);
        let ok = send(&v, &good, &T.to_string(), BODY, T).expect("valid");
        assert_eq!(ok.event_type, "invoice.paid");
        assert_eq!(ok.idempotency_key.as_deref(), Some("msg_1"));
        assert_eq!(ok.payload["data"]["id"], "in_1");
        // The second configured secret signed it: rotation.
        assert!(send(&verifier(&[OTHER], "type"), &good, &T.to_string(), BODY, T).is_err());
        // Several entries, one good, others of another version or garbage.
        let wrong = sign("whsec_d3Jvbmc=", "msg_1", T, BODY);
        let several = format!("{wrong} v1a,c2lnbmF0dXJl v1,!!! {good}");
        assert!(send(&v, &several, &T.to_string(), BODY, T).is_ok());
        let dotted = verifier(&[SECRET], "data.kind");
        assert_eq!(
            send(&dotted, &good, &T.to_string(), BODY, T)
                .expect("ok")
                .event_type,
            "x"
        );
        // Svix's header names.
        let h = [
            ("svix-id", "msg_1"),
            ("svix-timestamp", &T.to_string()),
            ("svix-signature", &good),
        ];
        assert!(verify(&v, &h, BODY.as_bytes(), at(T)).is_ok());
    }

    #[test]
    fn tampered_wrong_secret_expired_and_future_are_401() {
        let v = verifier(&[SECRET], "type");
        let good = sign(SECRET, "msg_1", T, BODY);
        let ts = T.to_string();
        let tampered = BODY.replace("in_1", "in_2");
        assert_eq!(
            outcome(send(&v, &good, &ts, &tampered, T), &[SECRET]),
            (401, "bad_signature")
        );
        let wrong = sign(OTHER, "msg_1", T, BODY);
        let r = rejected(send(&v, &wrong, &ts, BODY, T), &[SECRET]);
        assert_eq!(
            (r.status(), r.to_string().as_str()),
            (401, "invalid signature")
        );
        // The id and the timestamp are signed too.
        let h = [
            ("webhook-id", "msg_2"),
            ("webhook-timestamp", &ts),
            ("webhook-signature", &good),
        ];
        assert_eq!(
            outcome(verify(&v, &h, BODY.as_bytes(), at(T)), &[]),
            (401, "bad_signature")
        );
        let later = (T + 1).to_string();
        assert_eq!(
            outcome(send(&v, &good, &later, BODY, T), &[]),
            (401, "bad_signature")
        );

        assert!(send(&v, &good, &ts, BODY, T + 300).is_ok());
        assert!(send(&v, &good, &ts, BODY, T - 300).is_ok());
        assert_eq!(
            outcome(send(&v, &good, &ts, BODY, T + 301), &[]),
            (401, "timestamp_expired")
        );
        assert_eq!(
            outcome(send(&v, &good, &ts, BODY, T - 301), &[]),
            (401, "timestamp_in_future")
        );
    }

    #[test]
    fn missing_and_malformed_headers_are_401() {
        let v = verifier(&[SECRET], "type");
        let good = sign(SECRET, "msg_1", T, BODY);
        let ts = T.to_string();
        let all = [
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", ts.as_str()),
            ("webhook-signature", good.as_str()),
        ];
        for (skip, reason, message) in [
            (2, "missing_signature", "missing webhook-signature header"),
            (0, "missing_header", "missing webhook-id header"),
            (1, "missing_timestamp", "missing webhook-timestamp header"),
        ] {
            let h: Vec<_> = all
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, p)| *p)
                .collect();
            let r = rejected(verify(&v, &h, BODY.as_bytes(), at(T)), &[SECRET]);
            assert_eq!(
                (r.status(), r.reason(), r.to_string().as_str()),
                (401, reason, message)
            );
        }
        for sig in [
            "",
            "v1",
            "v1,",
            "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "v1,abc",
            "sha256=00",
        ] {
            let r = rejected(send(&v, sig, &ts, BODY, T), &[SECRET]);
            assert_eq!(
                (r.status(), r.reason()),
                (401, "malformed_signature"),
                "{sig:?}"
            );
            assert!(r.to_string().contains("v1,<base64"), "{r}");
        }
        for ts in ["", "soon", "-1", "1.5", "99999999999999999999"] {
            let r = rejected(send(&v, &good, ts, BODY, T), &[SECRET]);
            assert_eq!(
                (r.status(), r.reason()),
                (401, "malformed_timestamp"),
                "{ts:?}"
            );
        }
        let twice = [all[0], all[1], all[2], all[2]];
        assert_eq!(
            outcome(verify(&v, &twice, BODY.as_bytes(), at(T)), &[]),
            (401, "malformed_signature")
        );
    }

    #[test]
    fn signed_but_unusable_payloads_are_400() {
        let v = verifier(&[SECRET], "type");
        for (body, reason) in [
            ("{", "malformed_json"),
            ("[1]", "not_an_object"),
            ("{}", "missing_event"),
            (r#"{"type":""}"#, "missing_event"),
        ] {
            let sig = sign(SECRET, "msg_1", T, body);
            assert_eq!(
                outcome(send(&v, &sig, &T.to_string(), body, T), &[]),
                (400, reason),
                "{body}"
            );
        }
    }

    #[test]
    fn secrets_must_be_base64_and_are_never_printed() {
        for bad in ["whsec_not base64!", "whsec_", "hunter2!"] {
            let err = StandardWebhooksVerifier::build(&StandardWebhooksConfig {
                secrets: vec![Secret::new(SECRET), Secret::new(bad)],
                public_keys: Vec::new(),
                tolerance: default_tolerance(),
                event_field: "type".into(),
            })
            .expect_err("not base64");
            assert_eq!(
                err,
                "standard-webhooks: secret #2 is not `whsec_` followed by base64"
            );
        }
        // Without the prefix, the same key.
        let bare = SECRET.trim_start_matches("whsec_");
        let good = sign(SECRET, "msg_1", T, BODY);
        assert!(send(&verifier(&[bare], "type"), &good, &T.to_string(), BODY, T).is_ok());
        let debug = format!("{:?}", verifier(&[SECRET], "type"));
        assert!(!debug.contains(bare), "{debug}");
    }

    fn v1a(k: &ed25519_dalek::SigningKey, id: &str, ts: i64, body: &str) -> String {
        use ed25519_dalek::Signer as _;
        let sig = k.sign(format!("{id}.{ts}.{body}").as_bytes());
        format!("v1a,{}", BASE64_STANDARD.encode(sig.to_bytes()))
    }

    fn whpk(k: &ed25519_dalek::SigningKey) -> String {
        format!(
            "whpk_{}",
            BASE64_STANDARD.encode(k.verifying_key().as_bytes())
        )
    }

    fn asymmetric(
        secrets: &[&str],
        public_keys: &[String],
    ) -> Result<StandardWebhooksVerifier, String> {
        StandardWebhooksVerifier::build(&StandardWebhooksConfig {
            secrets: secrets.iter().map(|s| Secret::new(*s)).collect(),
            public_keys: public_keys.to_vec(),
            tolerance: default_tolerance(),
            event_field: "type".into(),
        })
    }

    #[test]
    fn v1a_entries_verify_with_public_keys() {
        let (k, other) = (
            ed25519_dalek::SigningKey::from_bytes(&[5; 32]),
            ed25519_dalek::SigningKey::from_bytes(&[6; 32]),
        );
        let ts = T.to_string();
        let good = v1a(&k, "msg_1", T, BODY);
        // Public keys only; the prefix is optional; rotation with an empty slot.
        let bare = whpk(&k).trim_start_matches("whpk_").to_string();
        for keys in [
            vec![whpk(&k)],
            vec![bare],
            vec![whpk(&other), String::new(), whpk(&k)],
        ] {
            let v = asymmetric(&[], &keys).expect("builds");
            let ok = send(&v, &good, &ts, BODY, T).expect("valid");
            assert_eq!(
                (ok.event_type.as_str(), ok.idempotency_key.as_deref()),
                ("invoice.paid", Some("msg_1"))
            );
        }
        let v = asymmetric(&[], &[whpk(&k)]).expect("builds");
        // Several entries: one good is enough, whatever the others are.
        let hmac = sign(SECRET, "msg_1", T, BODY);
        let several = format!("{hmac} {} v1a,!!! {good}", v1a(&other, "msg_1", T, BODY));
        assert!(send(&v, &several, &ts, BODY, T).is_ok());
        // A v1 entry alone cannot pass a source without secrets.
        assert_eq!(
            outcome(send(&v, &hmac, &ts, BODY, T), &[]),
            (401, "bad_signature")
        );
        // Tampered body, another key, a moved id or timestamp, a stale timestamp.
        let tampered = BODY.replace("in_1", "in_2");
        assert_eq!(
            outcome(send(&v, &good, &ts, &tampered, T), &[]),
            (401, "bad_signature")
        );
        let wrong = v1a(&other, "msg_1", T, BODY);
        assert_eq!(
            outcome(send(&v, &wrong, &ts, BODY, T), &[]),
            (401, "bad_signature")
        );
        let later = (T + 1).to_string();
        assert_eq!(
            outcome(send(&v, &good, &later, BODY, T), &[]),
            (401, "bad_signature")
        );
        let h = [
            ("webhook-id", "msg_2"),
            ("webhook-timestamp", ts.as_str()),
            ("webhook-signature", good.as_str()),
        ];
        assert_eq!(
            outcome(verify(&v, &h, BODY.as_bytes(), at(T)), &[]),
            (401, "bad_signature")
        );
        assert_eq!(
            outcome(send(&v, &good, &ts, BODY, T + 301), &[]),
            (401, "timestamp_expired")
        );
        // A signature cut short or too long is no entry at all.
        let short = format!("v1a,{}", BASE64_STANDARD.encode([1u8; 63]));
        let long = format!("v1a,{}", BASE64_STANDARD.encode([1u8; 65]));
        for bad in [short, long] {
            assert_eq!(
                outcome(send(&v, &bad, &ts, BODY, T), &[]),
                (401, "malformed_signature")
            );
        }
        // Secrets and public keys together: either kind of entry passes.
        let both = asymmetric(&[SECRET], &[whpk(&k)]).expect("builds");
        assert!(send(&both, &hmac, &ts, BODY, T).is_ok());
        assert!(send(&both, &good, &ts, BODY, T).is_ok());
        // Hookline signs `v1` with a secret, and refuses to sign with public keys only.
        let s = Signing {
            body: BODY.as_bytes(),
            timestamp: T,
            id: "msg_1",
            event: None,
            url: None,
        };
        assert!(v.sign(&s).is_err());
        assert!(
            v.expected(&Unverified {
                headers: &headers(&h),
                body: BODY.as_bytes(),
                now: at(T),
                target: None,
            })
            .is_empty()
        );
        assert!(both.sign(&s).is_ok());
    }

    #[test]
    fn public_keys_are_checked_at_build() {
        let err = asymmetric(&[], &["whpk_c2hvcnQ=".into()]).expect_err("short");
        assert_eq!(
            err,
            "standard-webhooks: `public_keys[0]` is not a 32-byte Ed25519 public key in hex or base64 (after `whpk_`)"
        );
        let err = asymmetric(&[], &[]).expect_err("nothing");
        assert!(
            err.contains("`secrets` must list at least one secret")
                && err.contains("`public_keys`"),
            "{err}"
        );
        let err = asymmetric(&[], &[String::new()]).expect_err("only empty");
        assert!(err.contains("at least one non-empty public key"), "{err}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn header_parsers_never_panic(
            sig in header_bytes(&["v1,", "v1a,", "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", " ", ",", "=", "\u{e9}"]),
            ts in header_bytes(&["1", "7", "0", "-", " ", "9999999999"]),
            id in header_bytes(&["msg_", "1", "."]),
            body in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let _ = parse_signatures(&sig);
            let v = verifier(&[SECRET, OTHER], "type");
            never_panics(&v, &["webhook-signature", "webhook-timestamp", "webhook-id"], &[sig, ts, id], &body);
        }
    }
}
