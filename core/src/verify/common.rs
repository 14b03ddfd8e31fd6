//! What the schemes share: keyed HMAC over several secrets, header look-ups, timestamps
//! and tolerance, payload decoding (JSON or a form), event types from dotted paths.

use std::borrow::Cow;
use std::time::Duration;

use ::hmac::{Hmac, KeyInit, Mac};
use hookline_plugin_api::Secret;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use super::{Rejection, Unverified, Verified, check_secrets};

/// The hash under the HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Algorithm {
    /// Only for senders that offer nothing stronger (e.g. older `X-Hub-Signature`).
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    /// Length of the MAC in bytes.
    pub(crate) fn output_len(self) -> usize {
        match self {
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 => 32,
            Algorithm::Sha512 => 64,
        }
    }
}

/// One secret's HMAC state, keyed once at build time and cloned per check.
#[derive(Clone)]
enum Key {
    Sha1(Hmac<Sha1>),
    Sha256(Hmac<Sha256>),
    Sha512(Hmac<Sha512>),
}

impl Key {
    fn new(algorithm: Algorithm, secret: &[u8]) -> Option<Key> {
        Some(match algorithm {
            Algorithm::Sha1 => Key::Sha1(Hmac::new_from_slice(secret).ok()?),
            Algorithm::Sha256 => Key::Sha256(Hmac::new_from_slice(secret).ok()?),
            Algorithm::Sha512 => Key::Sha512(Hmac::new_from_slice(secret).ok()?),
        })
    }

    fn tag(&self, parts: &[&[u8]]) -> Vec<u8> {
        fn run<M: Mac + Clone>(mac: &M, parts: &[&[u8]]) -> Vec<u8> {
            let mut mac = mac.clone();
            for part in parts {
                mac.update(part);
            }
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            Key::Sha1(m) => run(m, parts),
            Key::Sha256(m) => run(m, parts),
            Key::Sha512(m) => run(m, parts),
        }
    }
}

/// Every accepted secret of a source, ready to MAC. `Debug` shows only how many.
#[derive(Clone)]
pub(crate) struct Keyring {
    keys: Vec<Key>,
}

/// `verify = { scheme = "...", secrets = [...] }` for the schemes keyed by their secrets
/// alone (GitHub, Shopify).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// Every secret accepted (the old one too while the provider rotates it).
    pub(crate) secrets: Vec<Secret>,
}

impl SecretsConfig {
    /// The secrets as HMAC-SHA256 keys of their UTF-8 bytes.
    pub(crate) fn keyring(&self, scheme: &str) -> Result<Keyring, String> {
        Keyring::utf8(scheme, Algorithm::Sha256, &self.secrets)
    }
}

/// The same, for schemes that sign a timestamp too (Stripe, Slack).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimedSecretsConfig {
    /// Every signing secret accepted.
    pub(crate) secrets: Vec<Secret>,
    /// How far the signed timestamp may be from now, either way. Default 5 minutes, as
    /// the providers' own libraries.
    #[serde(default = "default_tolerance", with = "humantime_serde")]
    pub(crate) tolerance: Duration,
}

impl TimedSecretsConfig {
    /// The secrets as HMAC-SHA256 keys of their UTF-8 bytes, with the tolerance.
    pub(crate) fn timed_keys(&self, scheme: &str) -> Result<TimedKeys, String> {
        Ok(TimedKeys {
            keys: Keyring::utf8(scheme, Algorithm::Sha256, &self.secrets)?,
            tolerance: self.tolerance,
        })
    }
}

/// What a scheme that signs a timestamp verifies with.
#[derive(Debug, Clone)]
pub(crate) struct TimedKeys {
    pub(crate) keys: Keyring,
    pub(crate) tolerance: Duration,
}

/// Schemes that sign the body alone (HMAC-SHA256) and name the event and the delivery in
/// headers: GitHub and Shopify differ only in the names and in how the tag is written.
#[derive(Debug)]
pub(crate) struct BodySigned {
    /// The scheme's name in errors (`github`).
    pub(crate) name: &'static str,
    pub(crate) signature_header: &'static str,
    pub(crate) event_header: &'static str,
    pub(crate) id_header: &'static str,
    pub(crate) parse: fn(&[u8]) -> Result<[u8; 32], &'static str>,
    /// The tag as the header carries it (the inverse of `parse`).
    pub(crate) format: fn(&[u8]) -> String,
}

impl BodySigned {
    pub(crate) fn verify(
        &self,
        keys: &Keyring,
        req: &Unverified<'_>,
    ) -> Result<Verified, Rejection> {
        let tag = (self.parse)(signature_header(req.headers, self.signature_header)?)
            .map_err(|problem| malformed(self.signature_header, problem))?;
        if !keys.matches(&[req.body], &[&tag]) {
            return Err(Rejection::BadSignature);
        }
        self.decode(req)
    }

    /// Everything after the signature check.
    pub(crate) fn decode(&self, req: &Unverified<'_>) -> Result<Verified, Rejection> {
        let payload = json_object(req.body)?;
        let event_type = event_from_header(req.headers, self.event_header)?;
        let idempotency_key =
            id_from_header(req.headers, self.id_header).unwrap_or_else(|| digest_key(&[req.body]));
        Ok(Verified {
            payload,
            event_type,
            idempotency_key: Some(idempotency_key),
        })
    }
}

/// The verifier of a [`BodySigned`] scheme.
#[derive(Debug, Clone)]
pub(crate) struct BodySignedVerifier {
    keys: Keyring,
    scheme: &'static BodySigned,
}

impl BodySignedVerifier {
    /// The signature header the first secret gives `body`.
    fn expected_for(&self, body: &[u8]) -> Vec<super::sign::Header> {
        let tag = self.keys.sign_with_first(&[body]);
        vec![(
            self.scheme.signature_header.into(),
            (self.scheme.format)(&tag),
        )]
    }

    pub(crate) fn build(
        scheme: &'static BodySigned,
        config: &SecretsConfig,
    ) -> Result<Self, String> {
        Ok(BodySignedVerifier {
            keys: config.keyring(scheme.name)?,
            scheme,
        })
    }
}

impl super::Verifier for BodySignedVerifier {
    fn sign(&self, s: &super::sign::Signing<'_>) -> Result<Vec<super::sign::Header>, String> {
        let scheme = self.scheme;
        let mut headers = self.expected_for(s.body);
        if let Some(event) = s.event {
            headers.push((scheme.event_header.into(), event.into()));
        }
        headers.push((scheme.id_header.into(), s.id.into()));
        Ok(headers)
    }

    fn expected(&self, req: &Unverified<'_>) -> Vec<super::sign::Header> {
        self.expected_for(req.body)
    }

    fn signature_headers(&self) -> Vec<String> {
        vec![self.scheme.signature_header.to_ascii_lowercase()]
    }

    fn verify(&self, req: &Unverified<'_>) -> Result<Verified, Rejection> {
        self.scheme.verify(&self.keys, req)
    }

    fn decode(&self, req: &Unverified<'_>) -> Option<Result<Verified, Rejection>> {
        Some(self.scheme.decode(req))
    }
}

/// Five minutes, as Stripe's, Slack's and Standard Webhooks' libraries.
pub(crate) fn default_tolerance() -> Duration {
    Duration::from_secs(300)
}

/// `prefix` and 64 hex digits (either case): a SHA-256 tag as GitHub and Slack write it.
pub(crate) fn prefixed_hex_tag(
    value: &[u8],
    prefix: &[u8],
    problem: &'static str,
) -> Result<[u8; 32], &'static str> {
    let hex_text = value.strip_prefix(prefix).ok_or(problem)?;
    let mut tag = [0u8; 32];
    if hex_text.len() != 64 || hex::decode_to_slice(hex_text, &mut tag).is_err() {
        return Err(problem);
    }
    Ok(tag)
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} secret(s)", self.keys.len())
    }
}

impl Keyring {
    /// Keys from the secrets' UTF-8 bytes (what every scheme but Standard Webhooks uses).
    pub(crate) fn utf8(
        scheme: &str,
        algorithm: Algorithm,
        secrets: &[Secret],
    ) -> Result<Self, String> {
        let secrets = check_secrets(scheme, secrets)?;
        let raw: Vec<&[u8]> = secrets.iter().map(|s| s.expose().as_bytes()).collect();
        Self::from_bytes(scheme, algorithm, &raw)
    }

    pub(crate) fn from_bytes(
        scheme: &str,
        algorithm: Algorithm,
        keys: &[&[u8]],
    ) -> Result<Self, String> {
        let keys = keys
            .iter()
            .map(|k| Key::new(algorithm, k).ok_or_else(|| format!("{scheme}: HMAC key rejected")))
            .collect::<Result<_, _>>()?;
        Ok(Keyring { keys })
    }

    /// Whether any secret's MAC over `parts` (concatenated) equals any of `candidates`.
    /// Every pair is compared, each in constant time, so timing tells nothing about which
    /// secret or which candidate matched, or how close a wrong one came.
    pub(crate) fn matches(&self, parts: &[&[u8]], candidates: &[&[u8]]) -> bool {
        let mut matched = subtle::Choice::from(0);
        for key in &self.keys {
            let tag = key.tag(parts);
            for candidate in candidates {
                matched |= tag.as_slice().ct_eq(candidate);
            }
        }
        matched.into()
    }

    /// The MAC of `parts` with the first secret (what a sender with it signs).
    pub(crate) fn sign_with_first(&self, parts: &[&[u8]]) -> Vec<u8> {
        self.keys.first().map(|k| k.tag(parts)).unwrap_or_default()
    }
}

/// A header's one value: `Ok(None)` if absent, `Err(())` if sent more than once.
pub(crate) fn one_header<'a>(
    headers: &'a http::HeaderMap,
    name: &str,
) -> Result<Option<&'a [u8]>, ()> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(());
    }
    Ok(Some(first.as_bytes().trim_ascii()))
}

/// The one value of a required signature header.
pub(crate) fn signature_header<'a>(
    headers: &'a http::HeaderMap,
    name: &str,
) -> Result<&'a [u8], Rejection> {
    match one_header(headers, name) {
        Ok(Some(value)) => Ok(value),
        Ok(None) => Err(Rejection::MissingSignature {
            header: name.to_string().into(),
        }),
        Err(()) => Err(malformed(name, "sent more than once")),
    }
}

/// A 401 for a signature header (or a header the signature covers) that cannot be read.
pub(crate) fn malformed(header: &str, problem: &'static str) -> Rejection {
    Rejection::MalformedSignature {
        header: header.to_string().into(),
        problem,
    }
}

/// Unix seconds as a decimal integer (what every scheme here sends): ASCII digits only.
pub(crate) fn unix_seconds(text: &[u8]) -> Option<i64> {
    if text.is_empty() || text.len() > 18 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// A timestamp header holding Unix seconds.
pub(crate) fn timestamp_header<'a>(
    headers: &'a http::HeaderMap,
    name: &str,
) -> Result<(&'a [u8], i64), Rejection> {
    let location = || Cow::Owned(format!("{name} header"));
    let value = match one_header(headers, name) {
        Ok(Some(value)) => value,
        Ok(None) => {
            return Err(Rejection::MissingTimestamp {
                location: location(),
            });
        }
        Err(()) => {
            return Err(Rejection::MalformedTimestamp {
                location: location(),
                problem: "sent more than once",
            });
        }
    };
    let seconds = unix_seconds(value).ok_or_else(|| Rejection::MalformedTimestamp {
        location: location(),
        problem: "expected Unix time in seconds",
    })?;
    Ok((value, seconds))
}

/// Refuse a signed time further than `tolerance` from `now`, either way: an old one is a
/// replay (or a retry the sender should have re-signed), a future one a skewed clock.
pub(crate) fn check_age(
    signed_at: i64,
    now: jiff::Timestamp,
    tolerance: Duration,
) -> Result<(), Rejection> {
    let tolerance_secs = tolerance.as_secs();
    let now = now.as_second();
    let limit = i64::try_from(tolerance_secs).unwrap_or(i64::MAX);
    let age = now.saturating_sub(signed_at);
    if age > limit {
        return Err(Rejection::TimestampExpired {
            age_secs: age.unsigned_abs(),
            tolerance_secs,
        });
    }
    let ahead = signed_at.saturating_sub(now);
    if ahead > limit {
        return Err(Rejection::TimestampInFuture {
            ahead_secs: ahead.unsigned_abs(),
            tolerance_secs,
        });
    }
    Ok(())
}

/// The body as a JSON object.
pub(crate) fn json_object(body: &[u8]) -> Result<Value, Rejection> {
    let value: Value = serde_json::from_slice(body).map_err(Rejection::MalformedJson)?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(Rejection::NotAnObject)
    }
}

/// An `application/x-www-form-urlencoded` body as a JSON object of its fields (strings; a
/// repeated name keeps its last value). A `payload` field that holds a JSON object or
/// array, as Slack's interactivity and GitHub's form deliveries send, is parsed in place.
pub(crate) fn form_object(body: &[u8]) -> Value {
    let mut map = Map::new();
    for (name, value) in form_urlencoded::parse(body) {
        map.insert(name.into_owned(), Value::String(value.into_owned()));
    }
    if let Some(Value::String(text)) = map.get("payload")
        && let Ok(parsed @ (Value::Object(_) | Value::Array(_))) =
            serde_json::from_str::<Value>(text)
    {
        map.insert("payload".into(), parsed);
    }
    Value::Object(map)
}

/// The non-empty string at a dotted path (`type`, `data.event.name`, `items.0.kind`).
pub(crate) fn string_at<'a>(payload: &'a Value, path: &str) -> Option<&'a str> {
    let found = path.split('.').try_fold(payload, |v, key| match v {
        Value::Object(map) => map.get(key),
        Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })?;
    match found {
        Value::String(s) if !s.is_empty() => Some(s),
        _ => None,
    }
}

/// The event type at `path` in a payload, or the 400 that says it is not there.
pub(crate) fn event_at(payload: &Value, path: &str) -> Result<String, Rejection> {
    string_at(payload, path)
        .map(str::to_string)
        .ok_or_else(|| Rejection::MissingEvent {
            field: path.to_string().into(),
        })
}

/// Every value of an unsigned event header, if sent, must name the signed event type.
pub(crate) fn check_event_header(
    headers: &http::HeaderMap,
    name: &str,
    event_type: &str,
) -> Result<(), Rejection> {
    for value in headers.get_all(name) {
        let text = String::from_utf8_lossy(value.as_bytes());
        let text = text.trim();
        if text != event_type {
            return Err(Rejection::EventMismatch {
                header: name.to_string().into(),
                header_value: super::clip(text),
                payload_value: super::clip(event_type),
            });
        }
    }
    Ok(())
}

/// Event type from a header the signature does not cover (GitHub, Shopify): required.
/// Sent twice, neither value is trusted.
pub(crate) fn event_from_header(
    headers: &http::HeaderMap,
    name: &str,
) -> Result<String, Rejection> {
    let bad = |problem| Rejection::BadEventHeader {
        header: name.to_string().into(),
        problem,
    };
    match one_header(headers, name) {
        Ok(Some(value)) if is_plain_name(value) => Ok(String::from_utf8_lossy(value).into_owned()),
        Ok(Some(_)) => Err(bad("must be 1 to 128 visible ASCII characters")),
        Ok(None) => Err(bad("is missing: it names the event type")),
        Err(()) => Err(bad("is sent more than once")),
    }
}

/// An event name from an unsigned header becomes a routing key and a metrics label, so it
/// is held to what providers send (`pull_request`, `orders/create`).
fn is_plain_name(value: &[u8]) -> bool {
    (1..=128).contains(&value.len()) && value.iter().all(|b| b.is_ascii_graphic())
}

/// An id header's text (`X-GitHub-Delivery`, `webhook-id`), if present once and non-empty.
pub(crate) fn id_from_header(headers: &http::HeaderMap, name: &str) -> Option<String> {
    match one_header(headers, name) {
        Ok(Some(value)) if !value.is_empty() => Some(String::from_utf8_lossy(value).into_owned()),
        _ => None,
    }
}

/// Lower-case hex SHA-256 of `parts`: the idempotency key when a sender gives no id.
pub(crate) fn digest_key(parts: &[&[u8]]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part);
    }
    hex::encode(hash.finalize())
}

/// `Content-Type` without parameters, lower-cased (`""` if absent or not text).
pub(crate) fn content_type_essence(headers: &http::HeaderMap) -> String {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// `application/json` or any `application/*+json`.
pub(crate) fn is_json(essence: &str) -> bool {
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

pub(crate) const FORM: &str = "application/x-www-form-urlencoded";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(seconds: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(seconds).expect("in range")
    }

    #[test]
    fn age_is_checked_both_ways_at_the_edges() {
        let five_min = Duration::from_secs(300);
        let now = at(1_700_000_000);
        assert!(check_age(1_700_000_000 - 300, now, five_min).is_ok());
        assert!(check_age(1_700_000_000 + 300, now, five_min).is_ok());
        let r = check_age(1_700_000_000 - 301, now, five_min).expect_err("old");
        assert_eq!((r.status(), r.reason()), (401, "timestamp_expired"));
        assert_eq!(
            r.to_string(),
            "timestamp expired: signed 301 s ago, more than the 300 s tolerance"
        );
        let r = check_age(1_700_000_000 + 301, now, five_min).expect_err("future");
        assert_eq!((r.status(), r.reason()), (401, "timestamp_in_future"));
        assert!(check_age(i64::MIN, now, five_min).is_err());
        assert!(check_age(i64::MAX, now, Duration::MAX).is_ok());
    }

    #[test]
    fn unix_seconds_are_plain_digits() {
        assert_eq!(unix_seconds(b"1614265330"), Some(1_614_265_330));
        for bad in [
            &b""[..],
            b"-5",
            b"+5",
            b"1.5",
            b" 1",
            b"1e9",
            b"9999999999999999999",
        ] {
            assert_eq!(unix_seconds(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn form_bodies_become_objects_and_a_json_payload_field_is_parsed() {
        let v = form_object(b"a=1&b=x+y%21&a=2&empty=");
        assert_eq!(v, json!({"a": "2", "b": "x y!", "empty": ""}));
        let v = form_object(b"payload=%7B%22type%22%3A%22block_actions%22%7D&x=1");
        assert_eq!(v, json!({"payload": {"type": "block_actions"}, "x": "1"}));
        let v = form_object(b"payload=not+json");
        assert_eq!(v, json!({"payload": "not json"}));
        assert_eq!(form_object(b"\xff=\xfe"), json!({"\u{fffd}": "\u{fffd}"}));
    }

    #[test]
    fn dotted_paths_find_non_empty_strings() {
        let v = json!({"type": "a", "data": {"kind": "b", "n": 1, "e": ""}, "l": [{"k": "c"}]});
        assert_eq!(string_at(&v, "type"), Some("a"));
        assert_eq!(string_at(&v, "data.kind"), Some("b"));
        assert_eq!(string_at(&v, "l.0.k"), Some("c"));
        for missing in ["data.n", "data.e", "nope", "type.x"] {
            assert_eq!(string_at(&v, missing), None, "{missing}");
        }
        let r = event_at(&v, "data.n").expect_err("not a string");
        assert_eq!(r.to_string(), "payload has no string \"data.n\" field");
    }

    #[test]
    fn keyring_matches_any_secret_and_any_candidate() {
        let ring = Keyring::from_bytes("t", Algorithm::Sha256, &[b"old", b"new"]).expect("keys");
        let other = Keyring::from_bytes("t", Algorithm::Sha256, &[b"new"]).expect("keys");
        let tag = other.sign_with_first(&[b"he", b"llo"]);
        assert!(ring.matches(&[b"hello"], &[b"junk", &tag]));
        assert!(!ring.matches(&[b"hello!"], &[&tag]));
        assert!(!ring.matches(&[b"hello"], &[&tag[..31]]));
        assert!(!ring.matches(&[b"hello"], &[]));
        assert_eq!(format!("{ring:?}"), "2 secret(s)");
        for (alg, len) in [(Algorithm::Sha1, 20), (Algorithm::Sha512, 64)] {
            let ring = Keyring::from_bytes("t", alg, &[b"k"]).expect("keys");
            assert_eq!(ring.sign_with_first(&[b"x"]).len(), len);
            assert_eq!(alg.output_len(), len);
        }
    }

    #[test]
    fn content_types() {
        for ok in ["application/json", "application/cloudevents+json"] {
            assert!(is_json(ok));
        }
        assert!(!is_json(FORM) && !is_json("text/plain") && !is_json(""));
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("Application/X-WWW-Form-Urlencoded; charset=utf-8"),
        );
        assert_eq!(content_type_essence(&h), FORM);
    }
}
