//! The `twilio` scheme: `X-Twilio-Signature`, the base64 HMAC-SHA1 (keyed with the
//! account's Auth Token) of the full URL Twilio called, followed, for a form body, by every
//! POST parameter's name and value in name order.
//!
//! ```toml
//! [[sources]]
//! name = "twilio"
//! path = "/webhooks/twilio"
//! verify = { scheme = "twilio", secrets = ["${TWILIO_AUTH_TOKEN}"], public_url = "https://hooks.example.com/twilio/sms" }
//! ```
//!
//! What is signed, as Twilio's own `RequestValidator` (twilio-python 9.13) checks it:
//! - the URL: `public_url` (the address Twilio was given, before any proxy rewrote it),
//!   followed by the query string exactly as received. Without `public_url`, it is
//!   `https://` + the `Host` header + the path and query as received (and the same with
//!   `http://`). Each URL is tried with and without its port (`:443` for https, `:80` for
//!   http, or the port it names), as Twilio's validators do;
//! - a form body (`application/x-www-form-urlencoded`): its parameters, decoded, sorted by
//!   name; a repeated name contributes each distinct value, sorted; each as `name` + `value`
//!   appended to the URL;
//! - a JSON body: nothing more, but Twilio adds `bodySHA256` (hex SHA-256 of the body) to
//!   the URL's query, so the signature covers it; the body's hash must equal it.
//!
//! Twilio signs with HMAC-SHA256 instead when `X-Twilio-Webhooks-Signature-Settings` says
//! `algorithm=HMAC_SHA256` (a SharedKey); the secrets are then the shared keys. Twilio signs
//! no timestamp: replays are refused only by deduplication, within the dedupe window.
//!
//! A form body becomes a JSON object of its fields: each value a string, a repeated name an
//! array of its values in the order sent. The event type is the `event_field` (a dotted
//! path) if set (required then), else the first of `MessageStatus`, `SmsStatus`,
//! `CallStatus`, `EventType` and `type` present, else `twilio`. The idempotency key is a hash of the query and the body, which the
//! signature covers and Twilio's retries repeat; `I-Twilio-Idempotency-Token` is not signed,
//! so it is kept with the event's headers but never keyed on (a replay could change it).

use std::collections::{BTreeMap, BTreeSet};

use base64::prelude::{BASE64_STANDARD, Engine as _};
use hookline_plugin_api::Secret;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::common::{
    Algorithm, FORM, Keyring, content_type_essence, digest_key, event_at, is_json, json_object,
    malformed, one_header, signature_header, string_at,
};
use super::sign::{Header, Signing};
use super::{Rejection, Unverified, Verified, Verifier};

pub(crate) const SIGNATURE_HEADER: &str = "X-Twilio-Signature";
pub(crate) const SETTINGS_HEADER: &str = "X-Twilio-Webhooks-Signature-Settings";
/// The query parameter carrying a JSON body's hash.
pub(crate) const BODY_HASH: &str = "bodySHA256";
/// Where the event type is looked for when `event_field` is not set, first match wins.
pub(crate) const EVENT_FIELDS: &[&str] = &[
    "MessageStatus",
    "SmsStatus",
    "CallStatus",
    "EventType",
    "type",
];

/// The event type when `event_field` is not set and none of [`EVENT_FIELDS`] is present
/// (a `<Gather>` callback, a Studio HTTP request): still an event, routed as `twilio`.
pub(crate) const FALLBACK_EVENT: &str = "twilio";

/// `verify = { scheme = "twilio", secrets = [...], public_url = "...", event_field = "..." }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioConfig {
    /// Every Auth Token (or SharedKey secret) accepted: the secondary token too while
    /// Twilio rotates it.
    pub(crate) secrets: Vec<Secret>,
    /// The URL Twilio calls, as configured in Twilio's console (scheme, host, optional
    /// port, path; no query or fragment). Default: `https://` + `Host` + the path received.
    #[serde(default)]
    pub(crate) public_url: Option<String>,
    /// Dotted path of the event type in the payload. Default: the first of
    /// [`EVENT_FIELDS`] present.
    #[serde(default)]
    pub(crate) event_field: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct TwilioVerifier {
    sha1: Keyring,
    sha256: Keyring,
    public_url: Option<String>,
    event_field: Option<String>,
}

impl TwilioVerifier {
    pub(crate) fn build(config: &TwilioConfig) -> Result<Self, String> {
        if let Some(url) = &config.public_url {
            check_public_url(url)?;
        }
        if config.event_field.as_deref().is_some_and(str::is_empty) {
            return Err("twilio: `event_field` is empty".into());
        }
        Ok(TwilioVerifier {
            sha1: Keyring::utf8("twilio", Algorithm::Sha1, &config.secrets)?,
            sha256: Keyring::utf8("twilio", Algorithm::Sha256, &config.secrets)?,
            public_url: config
                .public_url
                .as_ref()
                .map(|u| u.trim_end_matches('?').to_string()),
            event_field: config.event_field.clone(),
        })
    }
}

fn check_public_url(url: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("twilio: `public_url` {url:?} {why}"));
    let Some((_, rest)) = url
        .strip_prefix("https://")
        .map(|r| ("https", r))
        .or_else(|| url.strip_prefix("http://").map(|r| ("http", r)))
    else {
        return bad("must start with https:// (or http://)");
    };
    if rest.is_empty() || rest.starts_with('/') {
        return bad("has no host");
    }
    if url.contains('#') {
        return bad("must not have a #fragment: Twilio does not send it");
    }
    if url.trim_end_matches('?').contains('?') {
        return bad(
            "must not have a query: the query each request carries is appended as received",
        );
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("must not contain whitespace");
    }
    Ok(())
}

/// The URL with and without its port, as Twilio's validators try it: a URL naming a port
/// is also tried without it, one naming none also with the scheme's default port.
pub(crate) fn port_variants(url: &str) -> [String; 2] {
    let Some((scheme, rest)) = url.split_once("://") else {
        return [url.to_string(), url.to_string()];
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    // A port is what follows the last ':' after any IPv6 literal's ']'.
    let host_start = authority.rfind(']').unwrap_or(0);
    let port_at = authority[host_start..].rfind(':').map(|i| host_start + i);
    let other = match port_at {
        Some(i) if authority[i + 1..].bytes().all(|b| b.is_ascii_digit()) => {
            format!("{scheme}://{}{tail}", &authority[..i])
        }
        _ => {
            let port = if scheme.eq_ignore_ascii_case("https") {
                443
            } else {
                80
            };
            format!("{scheme}://{authority}:{port}{tail}")
        }
    };
    [url.to_string(), other]
}

/// What Twilio signs: the URL, then each form parameter's name and value, names sorted, a
/// repeated name's distinct values sorted (`None`: a JSON body, the URL alone).
pub(crate) fn message(url: &str, form: Option<&[u8]>) -> String {
    let mut text = url.to_string();
    let Some(body) = form else {
        return text;
    };
    let mut params: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, value) in form_urlencoded::parse(body) {
        params
            .entry(name.into_owned())
            .or_default()
            .insert(value.into_owned());
    }
    for (name, values) in &params {
        for value in values {
            text.push_str(name);
            text.push_str(value);
        }
    }
    text
}

/// A form body as a JSON object: strings, a repeated name an array of its values in order.
pub(crate) fn form_payload(body: &[u8]) -> Value {
    let mut map = Map::new();
    for (name, value) in form_urlencoded::parse(body) {
        let value = Value::String(value.into_owned());
        match map.get_mut(name.as_ref()) {
            None => {
                map.insert(name.into_owned(), value);
            }
            Some(Value::Array(values)) => values.push(value),
            Some(first) => *first = Value::Array(vec![first.take(), value]),
        }
    }
    Value::Object(map)
}

/// Lower-case hex SHA-256 of the body: Twilio's `bodySHA256`.
pub(crate) fn body_hash(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// The query string of a request target (`/path?a=1` → `a=1`).
fn query_of(target: &str) -> Option<&str> {
    target.split_once('?').map(|(_, q)| q)
}

impl TwilioVerifier {
    /// The URLs Twilio may have signed for this request, before port variants.
    fn urls(&self, req: &Unverified<'_>) -> Result<Vec<String>, Rejection> {
        let target = req.target.unwrap_or("");
        if let Some(public) = &self.public_url {
            return Ok(vec![match query_of(target) {
                Some(query) => format!("{public}?{query}"),
                None => public.clone(),
            }]);
        }
        let host = match one_header(req.headers, "host") {
            Ok(Some(host)) if !host.is_empty() => String::from_utf8_lossy(host).into_owned(),
            Ok(_) => {
                return Err(Rejection::MissingHeader {
                    header: "Host".into(),
                });
            }
            Err(()) => return Err(malformed("Host", "sent more than once")),
        };
        let target = if target.is_empty() { "/" } else { target };
        Ok(vec![
            format!("https://{host}{target}"),
            format!("http://{host}{target}"),
        ])
    }

    /// The keys for the algorithm the request names (HMAC-SHA1 unless a SharedKey's
    /// settings header says HMAC_SHA256).
    fn keys(&self, req: &Unverified<'_>) -> Result<(&Keyring, usize), Rejection> {
        let settings = match one_header(req.headers, SETTINGS_HEADER) {
            Ok(value) => value.unwrap_or_default(),
            Err(()) => return Err(malformed(SETTINGS_HEADER, "sent more than once")),
        };
        let text = String::from_utf8_lossy(settings);
        let algorithm = text
            .split(',')
            .filter_map(|part| part.split_once('='))
            .find(|(name, value)| name.trim() == "algorithm" && !value.trim().is_empty())
            .map(|(_, value)| value.trim().to_ascii_uppercase());
        match algorithm.as_deref() {
            None | Some("HMAC_SHA1") => Ok((&self.sha1, 20)),
            Some("HMAC_SHA256") => Ok((&self.sha256, 32)),
            Some(_) => Err(malformed(
                SETTINGS_HEADER,
                "names an algorithm other than HMAC_SHA1 or HMAC_SHA256",
            )),
        }
    }

    /// The body's form bytes for the message, or `None` for JSON.
    fn form<'a>(req: &Unverified<'a>) -> Option<&'a [u8]> {
        (content_type_essence(req.headers) == FORM).then_some(req.body)
    }

    fn event_type(&self, payload: &Value) -> Result<String, Rejection> {
        match &self.event_field {
            Some(field) => event_at(payload, field),
            None => Ok(EVENT_FIELDS
                .iter()
                .find_map(|f| string_at(payload, f))
                .unwrap_or(FALLBACK_EVENT)
                .to_string()),
        }
    }
}

/// The `bodySHA256` of a query, if there (the first, as Twilio's validator reads it).
fn signed_body_hash(query: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == BODY_HASH)
        .map(|(_, value)| value.into_owned())
}

impl Verifier for TwilioVerifier {
    fn verify(&self, req: &Unverified<'_>) -> Result<Verified, Rejection> {
        let sent = signature_header(req.headers, SIGNATURE_HEADER)?;
        let (keys, len) = self.keys(req)?;
        let mut tag = [0u8; 32];
        match BASE64_STANDARD.decode_slice(sent, &mut tag) {
            Ok(n) if n == len => {}
            _ => {
                return Err(malformed(
                    SIGNATURE_HEADER,
                    "expected the base64 of an HMAC-SHA1 (28 characters; 44 for HMAC_SHA256)",
                ));
            }
        }
        let form = Self::form(req);
        let mut matched = false;
        for url in self.urls(req)? {
            for variant in port_variants(&url) {
                // `|`, not `||`: every variant is checked, whichever matches.
                matched |= keys.matches(&[message(&variant, form).as_bytes()], &[&tag[..len]]);
            }
        }
        if !matched {
            return Err(Rejection::BadSignature);
        }
        let query = req.target.and_then(query_of).unwrap_or("");
        let payload = match form {
            Some(body) => form_payload(body),
            None => {
                match signed_body_hash(query) {
                    None => {
                        return Err(Rejection::UnsignedBody(
                            "no bodySHA256 query parameter: Twilio signs a JSON body only through it",
                        ));
                    }
                    Some(hash) if hash != body_hash(req.body) => {
                        return Err(Rejection::UnsignedBody(
                            "the body's SHA-256 is not the signed bodySHA256: the body was changed",
                        ));
                    }
                    Some(_) => {}
                }
                json_object(req.body)?
            }
        };
        let event_type = self.event_type(&payload)?;
        Ok(Verified {
            payload,
            event_type,
            idempotency_key: Some(digest_key(&[query.as_bytes(), b"\n", req.body])),
        })
    }

    /// Signs as Twilio does a JSON body: over the URL the request is sent to
    /// ([`Signing::url`], which [`Verifier::sender_url`] gave its `bodySHA256`), else over
    /// `public_url` with the body's hash.
    fn sign(&self, s: &Signing<'_>) -> Result<Vec<Header>, String> {
        let url = match (s.url, &self.public_url) {
            (Some(url), _) => url.to_string(),
            (None, Some(public)) => self.sender_url(public, s.body),
            (None, None) => {
                return Err("twilio signs the URL it calls: set `public_url`".into());
            }
        };
        let tag = self.sha1.sign_with_first(&[message(&url, None).as_bytes()]);
        Ok(vec![(SIGNATURE_HEADER.into(), BASE64_STANDARD.encode(tag))])
    }

    fn expected(&self, req: &Unverified<'_>) -> Vec<Header> {
        let (Ok(urls), Ok((keys, _))) = (self.urls(req), self.keys(req)) else {
            return Vec::new();
        };
        urls.first()
            .map(|url| {
                let tag = keys.sign_with_first(&[message(url, Self::form(req)).as_bytes()]);
                vec![(SIGNATURE_HEADER.into(), BASE64_STANDARD.encode(tag))]
            })
            .unwrap_or_default()
    }

    fn sender_url(&self, url: &str, body: &[u8]) -> String {
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}{BODY_HASH}={}", body_hash(body))
    }

    fn accepts_content_type(&self, essence: &str) -> bool {
        is_json(essence) || essence == FORM
    }

    fn signature_headers(&self) -> Vec<String> {
        vec![SIGNATURE_HEADER.to_ascii_lowercase()]
    }
}

#[cfg(test)]
#[path = "twilio_tests.rs"]
mod tests;
