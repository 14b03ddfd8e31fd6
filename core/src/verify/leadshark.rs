//! The `leadshark` scheme: `X-Webhook-Signature` is the hex HMAC-SHA256 of the body, keyed
//! with the secret's UTF-8 bytes; `X-Webhook-Event` repeats the payload's `event` field.
//!
//! ```toml
//! [[sources]]
//! name = "leadshark"
//! path = "/webhooks/leadshark"
//! verify = { scheme = "leadshark", secrets = ["${LEADSHARK_SECRET}", "${LEADSHARK_SECRET_OLD}"] }
//! ```
//!
//! `tolerance = "1h"` also refuses deliveries whose signed payload `timestamp` (RFC 3339) is
//! further than that from the time of receipt. It is off by default: LeadShark's retries
//! resend the original payload, timestamp included, so a tolerance shorter than its retry
//! schedule refuses genuine retries.
//!
//! # Why a body may be re-serialised before it is checked
//!
//! LeadShark's docs do not sign bytes: their receiver snippets sign `JSON.stringify(payload)`
//! (Node) or `json.dumps(payload, separators=(',',':'))` (Python), i.e. a compact
//! re-serialisation of the parsed body. A sender built the same way may put a different
//! serialisation on the wire (pretty-printed, other whitespace), and the two snippets
//! disagree with each other on any non-ASCII character: Node writes UTF-8, Python writes
//! `\uXXXX`. A receiver that re-serialises like one of them rejects genuine deliveries
//! signed like the other.
//!
//! So the raw bytes are checked first (what LeadShark actually sends verifies this way, and
//! it is the only check that sees exactly what was signed). Only if that fails, and
//! `reserialize` is on, the body is parsed (key order kept: serde_json's `preserve_order`)
//! and its two compact forms are checked: [`NodeFormatter`] (`JSON.stringify`) and
//! [`PythonFormatter`] (`json.dumps` with its default `ensure_ascii`). Both compare in
//! constant time against every configured secret.
//!
//! This does not let anyone forge an event: a body passes only if it parses to a value
//! whose compact form carries a valid signature, i.e. to what the secret's holder signed.
//! Known limits of the emulation, all about things LeadShark payloads do not contain:
//! - serde_json's default float parser can land one ulp off on long decimals, so such a
//!   float's re-serialisation differs (its `float_roundtrip` feature fixes that);
//! - an integer beyond 64 bits, or written `-0`, reaches serde_json as a float, so its
//!   Python form is `1e+20` / `-0.0` where Python keeps the integer;
//! - JavaScript puts integer-like object keys (`"1"`, `"2"`) first; key order is kept as is.

use std::io;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use hookline_plugin_api::Secret;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::ser::{CompactFormatter, Formatter};
use sha2::{Digest, Sha256};

use super::common::check_age;
use super::sign::{Header, Signing};
use super::{Rejection, Unverified, Verified, Verifier, check_secrets, clip};

/// Header carrying the hex signature, spelled as in LeadShark's docs. `HeaderMap` lookups
/// ignore case; `HeaderName::from_static` needs it lower-cased.
pub(crate) const SIGNATURE_HEADER: &str = "X-Webhook-Signature";
/// Header repeating the event type (not covered by the signature).
pub(crate) const EVENT_HEADER: &str = "X-Webhook-Event";
/// Payload field holding the event type.
const EVENT_FIELD: &str = "event";
/// Payload field holding the (signed) time the event was sent, RFC 3339.
const TIMESTAMP_FIELD: &str = "timestamp";

/// `verify = { scheme = "leadshark", ... }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeadsharkConfig {
    /// Every secret currently accepted; list the old and the new one while rotating.
    pub(crate) secrets: Vec<Secret>,
    /// When the raw body does not match, also try its compact re-serialisations (what
    /// LeadShark's documented Node and Python snippets sign). Default `true`.
    #[serde(default = "super::yes")]
    pub(crate) reserialize: bool,
    /// Refuse a delivery whose payload `timestamp` is further than this from now (`"1h"`).
    /// Off by default: retries resend the original timestamp.
    #[serde(default, with = "humantime_serde")]
    pub(crate) tolerance: Option<Duration>,
}

type HmacSha256 = Hmac<Sha256>;

/// Verifies LeadShark deliveries against one or more secrets.
#[derive(Clone)]
pub struct LeadsharkVerifier {
    /// One keyed HMAC state per secret, cloned per check (the key is hashed once, here).
    keys: Vec<HmacSha256>,
    reserialize: bool,
    tolerance: Option<Duration>,
}

impl std::fmt::Debug for LeadsharkVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeadsharkVerifier")
            .field("secrets", &self.keys.len())
            .field("reserialize", &self.reserialize)
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

impl LeadsharkVerifier {
    /// The verifier a `verify` table describes.
    pub(crate) fn build(config: &LeadsharkConfig) -> Result<Self, String> {
        let mut verifier = Self::new(&config.secrets, config.reserialize)?;
        verifier.tolerance = config.tolerance;
        Ok(verifier)
    }

    /// Without a timestamp tolerance. Empty secrets are skipped; errors if none remain.
    pub fn new(secrets: &[Secret], reserialize: bool) -> Result<Self, String> {
        let secrets = check_secrets("leadshark", secrets)?;
        let keys = secrets
            .iter()
            .map(|s| {
                HmacSha256::new_from_slice(s.expose().as_bytes())
                    .map_err(|_| "leadshark: HMAC key rejected".to_string())
            })
            .collect::<Result<_, _>>()?;
        Ok(LeadsharkVerifier {
            keys,
            reserialize,
            tolerance: None,
        })
    }

    /// Whether any secret signs `message` with `tag`. Each comparison is constant time
    /// (`verify_slice`), and every secret is tried, whichever matches.
    fn signed(&self, message: &[u8], tag: &[u8; 32]) -> bool {
        self.keys.iter().fold(false, |matched, key| {
            let mut mac = key.clone();
            mac.update(message);
            matched | mac.verify_slice(tag).is_ok()
        })
    }

    /// The re-serialisation fallback: the parsed body and the signed bytes, if one of its
    /// compact forms is signed. A body that is not JSON simply does not match.
    fn signed_reserialized(&self, body: &[u8], tag: &[u8; 32]) -> Option<(Value, Vec<u8>)> {
        let (value, forms) = reserialized_forms(body)?;
        let (_, signed) = forms.into_iter().find(|(_, form)| self.signed(form, tag))?;
        Some((value, signed))
    }

    /// Every form of `body` a signature is checked over, in the order tried: the raw
    /// bytes, then (with `reserialize`) its compact re-serialisations.
    pub fn forms(&self, body: &[u8]) -> Vec<(Form, Vec<u8>)> {
        let mut forms = vec![(Form::Raw, body.to_vec())];
        if self.reserialize
            && let Some((_, more)) = reserialized_forms(body)
        {
            forms.extend(more);
        }
        forms
    }

    /// Lower-case hex HMAC-SHA256 of `message` with the first secret.
    fn signature(&self, message: &[u8]) -> String {
        let Some(key) = self.keys.first() else {
            return String::new();
        };
        let mut mac = key.clone();
        mac.update(message);
        hex::encode(mac.finalize().into_bytes())
    }
}

/// A form of the body that a signature is checked over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// The bytes as received.
    Raw,
    /// `JSON.stringify(JSON.parse(body))`, LeadShark's Node snippet.
    Node,
    /// `json.dumps(json.loads(body), separators=(',',':'))`, LeadShark's Python snippet.
    Python,
}

impl Form {
    /// A short name, e.g. for JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Form::Raw => "raw",
            Form::Node => "node",
            Form::Python => "python",
        }
    }

    /// What the form is, for a person.
    pub fn describe(self) -> &'static str {
        match self {
            Form::Raw => "the raw body bytes",
            Form::Node => "Node-style re-serialisation (JSON.stringify)",
            Form::Python => "Python-style re-serialisation (json.dumps, ASCII-escaped)",
        }
    }
}

/// A re-serialised form and its bytes.
type Reserialized = (Form, Vec<u8>);

/// The re-serialised forms tried when the raw bytes do not match, in order, each only if it
/// differs from the body and from the form before; with the parsed body. `None` for a body
/// that is not JSON or is larger than [`MAX_RESERIALIZE`].
fn reserialized_forms(body: &[u8]) -> Option<(Value, Vec<Reserialized>)> {
    if body.len() > MAX_RESERIALIZE {
        return None;
    }
    let value: Value = serde_json::from_slice(body).ok()?;
    let mut forms = Vec::with_capacity(2);
    let node = compact(&value, NodeFormatter)?;
    let python = compact(&value, PythonFormatter)?;
    let python_differs = python != body && python != node;
    if node != body {
        forms.push((Form::Node, node));
    }
    if python_differs {
        forms.push((Form::Python, python));
    }
    Some((value, forms))
}

/// The largest body tried in re-serialised form. Parsing comes before verifying there, so
/// an unsigned body costs a parse; LeadShark's payloads are a few KiB. Larger bodies must
/// match over their raw bytes.
pub(crate) const MAX_RESERIALIZE: usize = 256 * 1024;

impl Verifier for LeadsharkVerifier {
    fn sign(&self, s: &Signing<'_>) -> Result<Vec<Header>, String> {
        let mut headers = vec![(SIGNATURE_HEADER.into(), self.signature(s.body))];
        if let Some(event) = s.event {
            headers.push((EVENT_HEADER.into(), event.into()));
        }
        Ok(headers)
    }

    fn expected(&self, req: &Unverified<'_>) -> Vec<Header> {
        vec![(SIGNATURE_HEADER.into(), self.signature(req.body))]
    }

    fn verify(&self, req: &Unverified<'_>) -> Result<Verified, Rejection> {
        let tag = signature(req.headers)?;
        let (payload, signed_bytes) = if self.signed(req.body, &tag) {
            let payload = serde_json::from_slice(req.body).map_err(Rejection::MalformedJson)?;
            (payload, None)
        } else if self.reserialize {
            let (payload, bytes) = self
                .signed_reserialized(req.body, &tag)
                .ok_or(Rejection::BadSignature)?;
            // The signed form must say what the body says: what is journaled and handed to
            // pipelines is the body, so it must be exactly what was signed.
            let signed: Value = serde_json::from_slice(&bytes).map_err(|e| {
                Rejection::NotWhatWasSigned(format!("the signed form is not JSON: {e}"))
            })?;
            if let Some(path) = first_difference(&payload, &signed, &mut String::new()) {
                // The path is made of the sender's keys: clipped like any value it sent.
                return Err(Rejection::NotWhatWasSigned(format!(
                    "the value at `{}` is not the one that was signed",
                    clip(&path)
                )));
            }
            (payload, Some(bytes))
        } else {
            return Err(Rejection::BadSignature);
        };
        if let Some(tolerance) = self.tolerance {
            check_age(signed_at(&payload)?, req.now, tolerance)?;
        }
        let event_type = event_type(&payload)?;
        check_event_header(req.headers, &event_type)?;
        // Keyed on the bytes that were signed: for a raw match that is the body; for a
        // re-serialised match it is the compact form, so a replay of the same delivery in
        // another layout gets the same key and is deduplicated.
        let signed_bytes = signed_bytes.as_deref().unwrap_or(req.body);
        Ok(Verified {
            payload,
            event_type,
            idempotency_key: Some(hex::encode(Sha256::digest(signed_bytes))),
        })
    }

    fn decode(&self, req: &Unverified<'_>) -> Option<Result<Verified, Rejection>> {
        Some((|| {
            let payload: Value =
                serde_json::from_slice(req.body).map_err(Rejection::MalformedJson)?;
            let event_type = event_type(&payload)?;
            check_event_header(req.headers, &event_type)?;
            Ok(Verified {
                payload,
                event_type,
                idempotency_key: Some(hex::encode(Sha256::digest(req.body))),
            })
        })())
    }

    fn problems(&self, verified: &Verified) -> Vec<String> {
        match hookline_leadshark::LeadSharkEvent::from_value(&verified.payload) {
            Ok(event) => event
                .required_fields_missing()
                .into_iter()
                .map(|field| {
                    format!(
                        "`{}` event is missing required field `{field}`",
                        verified.event_type
                    )
                })
                .collect(),
            Err(e) => vec![format!(
                "`{}` payload does not match LeadShark's documented shape: {e}",
                verified.event_type
            )],
        }
    }
}

/// The one `X-Webhook-Signature` value, decoded: 64 hex digits, either case.
fn signature(headers: &http::HeaderMap) -> Result<[u8; 32], Rejection> {
    let malformed = |problem| Rejection::MalformedSignature {
        header: SIGNATURE_HEADER.into(),
        problem,
    };
    let mut values = headers.get_all(SIGNATURE_HEADER).iter();
    let value = values.next().ok_or(Rejection::MissingSignature {
        header: SIGNATURE_HEADER.into(),
    })?;
    if values.next().is_some() {
        return Err(malformed("sent more than once"));
    }
    let hex_text = value.as_bytes().trim_ascii();
    let mut tag = [0u8; 32];
    if hex_text.len() != 2 * tag.len() || hex::decode_to_slice(hex_text, &mut tag).is_err() {
        return Err(malformed(
            "expected 64 hexadecimal characters (HMAC-SHA256)",
        ));
    }
    Ok(tag)
}

/// The payload's signed `timestamp` (RFC 3339), in Unix seconds.
fn signed_at(payload: &Value) -> Result<i64, Rejection> {
    let location = || format!("\"{TIMESTAMP_FIELD}\" field in the payload").into();
    match payload.get(TIMESTAMP_FIELD) {
        None | Some(Value::Null) => Err(Rejection::MissingTimestamp {
            location: location(),
        }),
        Some(Value::String(text)) => text
            .parse::<jiff::Timestamp>()
            .map(|t| t.as_second())
            .map_err(|_| Rejection::MalformedTimestamp {
                location: location(),
                problem: "expected an RFC 3339 date-time",
            }),
        Some(_) => Err(Rejection::MalformedTimestamp {
            location: location(),
            problem: "expected an RFC 3339 date-time string",
        }),
    }
}

/// The payload's `event`: the payload must be an object and `event` a non-empty string.
fn event_type(payload: &Value) -> Result<String, Rejection> {
    let Value::Object(map) = payload else {
        return Err(Rejection::NotAnObject);
    };
    match map.get(EVENT_FIELD) {
        Some(Value::String(event)) if !event.is_empty() => Ok(event.clone()),
        _ => Err(Rejection::MissingEvent {
            field: EVENT_FIELD.into(),
        }),
    }
}

/// Every `X-Webhook-Event` value, if any, must name the signed event.
fn check_event_header(headers: &http::HeaderMap, event_type: &str) -> Result<(), Rejection> {
    for value in headers.get_all(EVENT_HEADER) {
        let text = String::from_utf8_lossy(value.as_bytes());
        let text = text.trim();
        if text != event_type {
            return Err(Rejection::EventMismatch {
                header: EVENT_HEADER.into(),
                header_value: clip(text),
                payload_value: clip(event_type),
            });
        }
    }
    Ok(())
}

/// The path of the first value that differs between the body and its signed form. Numbers
/// are compared as numbers (`1.0` and `1` are the same), but integers exactly: one that a
/// sender's JavaScript number could not hold (above 2^53) differs.
fn first_difference(body: &Value, signed: &Value, path: &mut String) -> Option<String> {
    let at = |path: &str| (if path.is_empty() { "$" } else { path }).to_string();
    match (body, signed) {
        (Value::Object(a), Value::Object(b)) => {
            if a.len() != b.len() {
                return Some(at(path));
            }
            for (key, va) in a {
                let Some(vb) = b.get(key) else {
                    return Some(at(path));
                };
                let len = path.len();
                path.push('.');
                path.push_str(key);
                let found = first_difference(va, vb, path);
                path.truncate(len);
                if found.is_some() {
                    return found;
                }
            }
            None
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                return Some(at(path));
            }
            for (i, (va, vb)) in a.iter().zip(b).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let found = first_difference(va, vb, path);
                path.truncate(len);
                if found.is_some() {
                    return found;
                }
            }
            None
        }
        (Value::Number(a), Value::Number(b)) => {
            let same = match (a.as_i128(), b.as_i128()) {
                (Some(x), Some(y)) => x == y,
                _ => a.as_f64() == b.as_f64(),
            };
            (!same).then(|| at(path))
        }
        (a, b) => (a != b).then(|| at(path)),
    }
}

fn compact(value: &Value, formatter: impl Formatter) -> Option<Vec<u8>> {
    let mut ser = serde_json::Serializer::with_formatter(Vec::with_capacity(256), formatter);
    value.serialize(&mut ser).ok()?;
    Some(ser.into_inner())
}

/// What `JSON.stringify(JSON.parse(body))` gives: serde_json's compact output already
/// matches it for strings (UTF-8, the same short escapes, `\u00xx` for other controls);
/// numbers follow ECMAScript's `Number::toString` (`1.0` → `1`, `1e21` → `1e+21`, integers
/// past 2^53 rounded to a double).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NodeFormatter;

/// Integers up to this magnitude are exact in a JavaScript number.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

impl Formatter for NodeFormatter {
    fn write_u64<W: ?Sized + io::Write>(&mut self, w: &mut W, value: u64) -> io::Result<()> {
        if value <= MAX_SAFE_INTEGER {
            CompactFormatter.write_u64(w, value)
        } else {
            self.write_f64(w, value as f64)
        }
    }

    fn write_i64<W: ?Sized + io::Write>(&mut self, w: &mut W, value: i64) -> io::Result<()> {
        if value.unsigned_abs() <= MAX_SAFE_INTEGER {
            CompactFormatter.write_i64(w, value)
        } else {
            self.write_f64(w, value as f64)
        }
    }

    fn write_f64<W: ?Sized + io::Write>(&mut self, w: &mut W, value: f64) -> io::Result<()> {
        w.write_all(js_number(value).as_bytes())
    }
}

/// What Python's `json.dumps(json.loads(body), separators=(',',':'))` gives: every char
/// outside printable ASCII (so also DEL, 0x7f) as `\uxxxx`, lower-case hex, astral chars as
/// UTF-16 surrogate pairs (`ensure_ascii=True`, the default); floats as Python's `repr`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn write_f64<W: ?Sized + io::Write>(&mut self, w: &mut W, value: f64) -> io::Result<()> {
        w.write_all(python_float(value).as_bytes())
    }

    // serde_json has already escaped `"`, `\` and controls below 0x20 (as Python does)
    // and hands over the runs between them.
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut plain_from = 0;
        for (i, c) in fragment.char_indices() {
            if c.is_ascii() && c != '\x7f' {
                continue;
            }
            w.write_all(&fragment.as_bytes()[plain_from..i])?;
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(w, "\\u{unit:04x}")?;
            }
            plain_from = i + c.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[plain_from..])
    }
}

/// The shortest decimal digits that round-trip `value` (finite, non-zero), and the
/// exponent `n` with `|value| = 0.d1d2… × 10^n`: the inputs both JavaScript's and Python's
/// float-to-text algorithms start from.
fn shortest_digits(value: f64) -> (String, i32) {
    let text = format!("{:e}", value.abs());
    let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
    let digits = mantissa.replace('.', "");
    (digits, exponent.parse::<i32>().unwrap_or(0) + 1)
}

/// ECMAScript `Number::toString` for a finite number.
fn js_number(value: f64) -> String {
    if value == 0.0 {
        return "0".into();
    }
    let sign = if value < 0.0 { "-" } else { "" };
    let (digits, n) = shortest_digits(value);
    let k = digits.len() as i32;
    let body = if k <= n && n <= 21 {
        format!("{digits}{}", "0".repeat((n - k) as usize))
    } else if 0 < n && n <= 21 {
        format!("{}.{}", &digits[..n as usize], &digits[n as usize..])
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", "0".repeat(-n as usize))
    } else {
        let e = n - 1;
        let e_sign = if e < 0 { '-' } else { '+' };
        let (first, rest) = digits.split_at(1);
        let point = if rest.is_empty() { "" } else { "." };
        format!("{first}{point}{rest}e{e_sign}{}", e.abs())
    };
    format!("{sign}{body}")
}

/// Python's `repr(float)` for a finite float.
fn python_float(value: f64) -> String {
    let sign = if value.is_sign_negative() { "-" } else { "" };
    if value == 0.0 {
        return format!("{sign}0.0");
    }
    let (digits, n) = shortest_digits(value);
    let k = digits.len() as i32;
    let body = if n <= -4 || n > 16 {
        let e = n - 1;
        let e_sign = if e < 0 { '-' } else { '+' };
        let (first, rest) = digits.split_at(1);
        let point = if rest.is_empty() { "" } else { "." };
        format!("{first}{point}{rest}e{e_sign}{:02}", e.abs())
    } else if n <= 0 {
        format!("0.{}{digits}", "0".repeat(-n as usize))
    } else if n >= k {
        format!("{digits}{}.0", "0".repeat((n - k) as usize))
    } else {
        format!("{}.{}", &digits[..n as usize], &digits[n as usize..])
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod tolerance_tests;
