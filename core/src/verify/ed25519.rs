//! The `ed25519` scheme, for senders that sign with a key pair and publish the public key
//! (Discord's interactions endpoint): the signature header holds the Ed25519 signature of
//! `{timestamp}{body}` (the timestamp header's text, then the raw body, nothing between:
//! Discord's rule), hex-encoded by default.
//!
//! ```toml
//! [[sources]]
//! name = "discord"
//! path = "/webhooks/discord"
//! verify = { scheme = "ed25519", public_keys = ["${DISCORD_PUBLIC_KEY}"], tolerance = "5m" }
//! # Discord checks the endpoint with a signed PING (`{"type":1}`) and wants `{"type":1}` back.
//! respond = { body = '''{% if payload.type == 1 %}{"type":1}{% else %}{"type":5}{% endif %}''' }
//! ```
//!
//! Only public keys are configured: Hookline can verify, never sign, for this scheme
//! (`hookline send --scheme ed25519` refuses). Several keys may be listed, for rotation;
//! empty entries (`"${OLD_KEY:-}"`) are skipped. A key is 32 bytes as 64 hex digits
//! (Discord's "Public Key") or base64.
//!
//! The event type is the payload's `event_field` (default `type`), a string or an integer
//! (Discord's interaction types are numbers: `1` is PING, `2` an application command); the
//! idempotency key is `id_field` (default `id`, Discord's interaction id), else a hash of
//! what was signed. Both are covered by the signature.

use std::time::Duration;

use base64::prelude::{BASE64_STANDARD, BASE64_STANDARD_NO_PAD, Engine as _};
use ed25519_dalek::{Signature, VerifyingKey};
use http::HeaderName;
use serde::Deserialize;
use serde_json::Value;

use super::common::{
    check_age, default_tolerance, digest_key, json_object, malformed, signature_header,
    timestamp_header,
};
use super::hmac::Encoding;
use super::sign::{Header, Signing};
use super::{Rejection, Unverified, Verified, Verifier, clip};

const SCHEME: &str = "ed25519";

/// `verify = { scheme = "ed25519", public_keys = [...], ... }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ed25519Config {
    /// Every public key accepted: 32 bytes, hex (64 digits) or base64. Empty entries are
    /// skipped (an unset rotation slot); at least one key is required.
    pub(crate) public_keys: Vec<String>,
    /// The header holding the signature. Default `X-Signature-Ed25519` (Discord).
    #[serde(default = "default_signature_header")]
    pub(crate) signature_header: String,
    /// The header holding the signed Unix timestamp. Default `X-Signature-Timestamp`.
    #[serde(default = "default_timestamp_header")]
    pub(crate) timestamp_header: String,
    /// How the signature is written: `hex` (default, Discord) or `base64`.
    #[serde(default)]
    pub(crate) encoding: Encoding,
    /// How far the signed timestamp may be from now, either way. Default 5 minutes.
    #[serde(default = "default_tolerance", with = "humantime_serde")]
    pub(crate) tolerance: Duration,
    /// Dotted path of the event type in the payload (a string or an integer). Default `type`.
    #[serde(default = "default_event_field")]
    pub(crate) event_field: String,
    /// Dotted path of the delivery id in the payload: the idempotency key. Default `id`.
    #[serde(default = "default_id_field")]
    pub(crate) id_field: String,
}

fn default_signature_header() -> String {
    "X-Signature-Ed25519".into()
}

fn default_timestamp_header() -> String {
    "X-Signature-Timestamp".into()
}

fn default_event_field() -> String {
    "type".into()
}

fn default_id_field() -> String {
    "id".into()
}

/// Public keys, decoded and checked once. Verification needs no secret, so comparing in
/// constant time is not a concern here; every key is still tried.
#[derive(Clone)]
pub(crate) struct PublicKeys(Vec<VerifyingKey>);

impl std::fmt::Debug for PublicKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} public key(s)", self.0.len())
    }
}

impl PublicKeys {
    /// Keys from their text; `prefix` (`whpk_`) is stripped when present. Empty entries
    /// are skipped; `what` names the list in errors (`public_keys`).
    pub(crate) fn parse(
        scheme: &str,
        what: &str,
        keys: &[String],
        prefix: Option<&str>,
    ) -> Result<PublicKeys, String> {
        let mut out = Vec::new();
        for (i, text) in keys.iter().enumerate() {
            if text.is_empty() {
                continue;
            }
            let text = prefix.and_then(|p| text.strip_prefix(p)).unwrap_or(text);
            let key = decode_key(text).ok_or_else(|| {
                format!(
                    "{scheme}: `{what}[{i}]` is not a 32-byte Ed25519 public key in hex or base64{}",
                    prefix.map(|p| format!(" (after `{p}`)")).unwrap_or_default()
                )
            })?;
            let key = VerifyingKey::from_bytes(&key)
                .ok()
                .filter(|k| !k.is_weak())
                .ok_or_else(|| {
                    format!("{scheme}: `{what}[{i}]` is not a usable Ed25519 public key")
                })?;
            out.push(key);
        }
        if out.is_empty() {
            return Err(format!(
                "{scheme}: `{what}` must list at least one non-empty public key (are their environment variables set?)"
            ));
        }
        Ok(PublicKeys(out))
    }

    /// Whether any key verifies any of `signatures` over `message` (strict verification:
    /// no malleable or small-order forms, as libsodium).
    pub(crate) fn verify(&self, message: &[u8], signatures: &[[u8; 64]]) -> bool {
        signatures.iter().any(|sig| {
            let sig = Signature::from_bytes(sig);
            self.0
                .iter()
                .any(|key| key.verify_strict(message, &sig).is_ok())
        })
    }
}

/// 32 bytes from 64 hex digits or base64 (padding optional).
fn decode_key(text: &str) -> Option<[u8; 32]> {
    let mut key = [0u8; 32];
    if text.len() == 64 && hex::decode_to_slice(text, &mut key).is_ok() {
        return Some(key);
    }
    let bytes = BASE64_STANDARD
        .decode(text)
        .or_else(|_| BASE64_STANDARD_NO_PAD.decode(text))
        .ok()?;
    bytes.try_into().ok()
}

#[derive(Debug, Clone)]
pub(crate) struct Ed25519Verifier {
    keys: PublicKeys,
    signature_header: String,
    timestamp_header: String,
    encoding: Encoding,
    tolerance: Duration,
    event_field: String,
    id_field: String,
}

impl Ed25519Verifier {
    pub(crate) fn build(c: &Ed25519Config) -> Result<Self, String> {
        let keys = PublicKeys::parse(SCHEME, "public_keys", &c.public_keys, None)?;
        for (key, name) in [
            ("signature_header", &c.signature_header),
            ("timestamp_header", &c.timestamp_header),
        ] {
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(format!(
                    "{SCHEME}: `{key}` {:?} is not a valid header name",
                    clip(name)
                ));
            }
        }
        for (key, path) in [("event_field", &c.event_field), ("id_field", &c.id_field)] {
            if path.is_empty() {
                return Err(format!("{SCHEME}: `{key}` must not be empty"));
            }
        }
        Ok(Ed25519Verifier {
            keys,
            signature_header: c.signature_header.clone(),
            timestamp_header: c.timestamp_header.clone(),
            encoding: c.encoding,
            tolerance: c.tolerance,
            event_field: c.event_field.clone(),
            id_field: c.id_field.clone(),
        })
    }

    /// The 64 signature bytes from the header's text.
    pub(crate) fn parse_signature(&self, value: &[u8]) -> Result<[u8; 64], &'static str> {
        let mut sig = [0u8; 64];
        match self.encoding {
            Encoding::Hex
                if value.len() == 128 && hex::decode_to_slice(value, &mut sig).is_ok() =>
            {
                Ok(sig)
            }
            Encoding::Hex => Err("expected 128 hexadecimal characters (an Ed25519 signature)"),
            Encoding::Base64 => BASE64_STANDARD
                .decode(value)
                .or_else(|_| BASE64_STANDARD_NO_PAD.decode(value))
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or("expected the base64 of a 64-byte Ed25519 signature"),
        }
    }
}

impl Verifier for Ed25519Verifier {
    fn sign(&self, _: &Signing<'_>) -> Result<Vec<Header>, String> {
        Err(format!(
            "{SCHEME}: Hookline holds only the sender's public keys, so it cannot sign for this scheme"
        ))
    }

    /// Nothing: only the sender's private key gives the signature.
    fn expected(&self, _: &Unverified<'_>) -> Vec<Header> {
        Vec::new()
    }

    fn verify(&self, req: &Unverified<'_>) -> Result<Verified, Rejection> {
        let name = self.signature_header.as_str();
        let sig = self
            .parse_signature(signature_header(req.headers, name)?)
            .map_err(|problem| malformed(name, problem))?;
        let (timestamp, signed_at) = timestamp_header(req.headers, &self.timestamp_header)?;
        let message = [timestamp, req.body].concat();
        if !self.keys.verify(&message, &[sig]) {
            return Err(Rejection::BadSignature);
        }
        check_age(signed_at, req.now, self.tolerance)?;
        self.decoded(req, &message)
    }

    /// A kept request has no signature timestamp (its header is a signature header): its
    /// key, when the payload has no id, is the body's digest.
    fn decode(&self, req: &Unverified<'_>) -> Option<Result<Verified, Rejection>> {
        Some(self.decoded(req, req.body))
    }

    fn signature_headers(&self) -> Vec<String> {
        vec![self.signature_header.to_ascii_lowercase()]
    }
}

impl Ed25519Verifier {
    /// Everything after the signature check; `signed` (the signed message) keys an event
    /// whose payload has no id.
    fn decoded(&self, req: &Unverified<'_>, signed: &[u8]) -> Result<Verified, Rejection> {
        let payload = json_object(req.body)?;
        let event_type =
            scalar_at(&payload, &self.event_field).ok_or_else(|| Rejection::MissingEvent {
                field: self.event_field.clone().into(),
            })?;
        let idempotency_key =
            scalar_at(&payload, &self.id_field).unwrap_or_else(|| digest_key(&[signed]));
        Ok(Verified {
            payload,
            event_type,
            idempotency_key: Some(idempotency_key),
        })
    }
}

/// The non-empty string or the integer at a dotted path, as text (`"1"` for Discord's PING).
pub(crate) fn scalar_at(payload: &Value, path: &str) -> Option<String> {
    let found = path.split('.').try_fold(payload, |v, key| match v {
        Value::Object(map) => map.get(key),
        Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })?;
    match found {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
