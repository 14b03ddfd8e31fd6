//! The generic `hmac` scheme, for any sender that puts an HMAC in a header: which header,
//! which hash (`sha1`, `sha256`, `sha512`), how it is written (`hex`, `base64`), an optional
//! prefix (`sha256=`), and what is signed: the body, or a template over the body, a
//! timestamp header and an id header (`"{timestamp}.{body}"`).
//!
//! ```toml
//! [[sources]]
//! name = "acme"
//! path = "/webhooks/acme"
//! verify = { scheme = "hmac", secrets = ["${ACME_SECRET}"], header = "X-Acme-Signature", algorithm = "sha256", encoding = "hex", prefix = "v1=", signed = "{timestamp}.{body}", timestamp_header = "X-Acme-Timestamp", tolerance = "5m", event_field = "event.type", id_header = "X-Acme-Delivery" }
//! ```
//!
//! The event type is the payload's `event_field` (dotted path) and/or the `event_header`.
//! With both, the payload decides and the header, which no template can sign, must agree
//! (else 400). With only `event_header`, the header decides: use that only for senders that
//! put the type nowhere else. The idempotency key is `id_header` when configured and sent,
//! else a hash of the signed message.

use std::time::Duration;

use base64::prelude::{BASE64_STANDARD, BASE64_STANDARD_NO_PAD, Engine as _};
use hookline_plugin_api::Secret;
use http::HeaderName;
use serde::Deserialize;

use super::common::{
    Algorithm, Keyring, check_age, check_event_header, digest_key, event_at, event_from_header,
    id_from_header, json_object, malformed, one_header, signature_header, timestamp_header,
};
use super::sign::{Header, Signing};
use super::{Rejection, Unverified, Verified, Verifier, clip};

/// `verify = { scheme = "hmac", ... }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacConfig {
    /// Every secret accepted; keys are the secrets' UTF-8 bytes.
    pub(crate) secrets: Vec<Secret>,
    /// The header carrying the signature.
    pub(crate) header: String,
    /// `sha1`, `sha256` (default) or `sha512`.
    #[serde(default = "default_algorithm")]
    pub(crate) algorithm: Algorithm,
    /// `hex` (default, either case) or `base64` (standard alphabet, padding optional).
    #[serde(default)]
    pub(crate) encoding: Encoding,
    /// Text before the encoded MAC in the header, e.g. `sha256=`. Default none.
    #[serde(default)]
    pub(crate) prefix: String,
    /// What is signed: `body` (default), or a template of `{body}`, `{timestamp}`, `{id}`
    /// and literal text (`{{` and `}}` for braces), e.g. `"{timestamp}.{body}"`.
    #[serde(default = "default_signed")]
    pub(crate) signed: String,
    /// The header `{timestamp}` stands for; with `tolerance`, it holds Unix seconds.
    pub(crate) timestamp_header: Option<String>,
    /// The header `{id}` stands for; also the idempotency key.
    pub(crate) id_header: Option<String>,
    /// Refuse a timestamp further than this from now. Needs `{timestamp}` in `signed`.
    #[serde(default, with = "humantime_serde")]
    pub(crate) tolerance: Option<Duration>,
    /// Dotted path of the event type in the payload.
    pub(crate) event_field: Option<String>,
    /// Header naming the event type (not covered by the signature).
    pub(crate) event_header: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Encoding {
    #[default]
    Hex,
    Base64,
}

fn default_algorithm() -> Algorithm {
    Algorithm::Sha256
}

fn default_signed() -> String {
    "body".into()
}

/// A piece of the signed message.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Body,
    Timestamp,
    Id,
}

#[derive(Debug, Clone)]
pub(crate) struct HmacVerifier {
    keys: Keyring,
    header: String,
    algorithm: Algorithm,
    encoding: Encoding,
    prefix: String,
    template: Vec<Part>,
    timestamp_header: Option<String>,
    id_header: Option<String>,
    tolerance: Option<Duration>,
    event: EventSource,
}

/// Where the event type comes from.
#[derive(Debug, Clone)]
enum EventSource {
    /// A payload path, and a header that must agree when sent.
    Field {
        path: String,
        header: Option<String>,
    },
    /// Only a header.
    Header(String),
}

impl HmacVerifier {
    /// Everything after the signature check; `message` is what was signed, the key's
    /// fallback.
    fn decoded(&self, req: &Unverified<'_>, message: &[&[u8]]) -> Result<Verified, Rejection> {
        let payload = json_object(req.body)?;
        let event_type = match &self.event {
            EventSource::Field { path, header } => {
                let event_type = event_at(&payload, path)?;
                if let Some(name) = header {
                    check_event_header(req.headers, name, &event_type)?;
                }
                event_type
            }
            EventSource::Header(name) => event_from_header(req.headers, name)?,
        };
        let idempotency_key = self
            .id_header
            .as_deref()
            .and_then(|name| id_from_header(req.headers, name))
            .unwrap_or_else(|| digest_key(message));
        Ok(Verified {
            payload,
            event_type,
            idempotency_key: Some(idempotency_key),
        })
    }

    pub(crate) fn build(c: &HmacConfig) -> Result<Self, String> {
        let err = |message: &str| Err(format!("hmac: {message}"));
        let keys = Keyring::utf8("hmac", c.algorithm, &c.secrets)?;
        let names = [
            ("header", Some(&c.header)),
            ("timestamp_header", c.timestamp_header.as_ref()),
            ("id_header", c.id_header.as_ref()),
            ("event_header", c.event_header.as_ref()),
        ];
        for (key, name) in names {
            if let Some(name) = name
                && HeaderName::from_bytes(name.as_bytes()).is_err()
            {
                return err(&format!(
                    "`{key}` {:?} is not a valid header name",
                    clip(name)
                ));
            }
        }
        let template = parse_template(&c.signed).map_err(|e| format!("hmac: `signed`: {e}"))?;
        let uses = |part: Part| template.contains(&part);
        if !uses(Part::Body) {
            return err("`signed` must include {body}: the body would not be covered");
        }
        if uses(Part::Timestamp) && c.timestamp_header.is_none() {
            return err("`signed` uses {timestamp}: set `timestamp_header`");
        }
        if uses(Part::Id) && c.id_header.is_none() {
            return err("`signed` uses {id}: set `id_header`");
        }
        if c.tolerance.is_some() && !uses(Part::Timestamp) {
            return err(
                "`tolerance` needs {timestamp} in `signed`: an unsigned time proves nothing",
            );
        }
        let event = match (&c.event_field, &c.event_header) {
            (Some(path), _) if path.is_empty() => return err("`event_field` must not be empty"),
            (Some(path), header) => EventSource::Field {
                path: path.clone(),
                header: header.clone(),
            },
            (None, Some(header)) => EventSource::Header(header.clone()),
            (None, None) => return err("set `event_field` (a payload path) or `event_header`"),
        };
        Ok(HmacVerifier {
            keys,
            header: c.header.clone(),
            algorithm: c.algorithm,
            encoding: c.encoding,
            prefix: c.prefix.clone(),
            template,
            timestamp_header: c.timestamp_header.clone(),
            id_header: c.id_header.clone(),
            tolerance: c.tolerance,
            event,
        })
    }

    /// The MAC from the header: prefix, then `algorithm`'s output length in `encoding`.
    pub(crate) fn parse_signature(&self, value: &[u8]) -> Result<Vec<u8>, &'static str> {
        let encoded = value
            .strip_prefix(self.prefix.as_bytes())
            .ok_or("does not start with the configured prefix")?;
        let len = self.algorithm.output_len();
        let tag = match self.encoding {
            Encoding::Hex if encoded.len() == 2 * len => hex::decode(encoded).ok(),
            Encoding::Hex => None,
            Encoding::Base64 => BASE64_STANDARD
                .decode(encoded)
                .or_else(|_| BASE64_STANDARD_NO_PAD.decode(encoded))
                .ok(),
        };
        match tag {
            Some(tag) if tag.len() == len => Ok(tag),
            _ => Err(match self.encoding {
                Encoding::Hex => "not the hex of a MAC of the configured algorithm",
                Encoding::Base64 => "not the base64 of a MAC of the configured algorithm",
            }),
        }
    }
}

/// `{body}`, `{timestamp}`, `{id}`, literal text, `{{` and `}}`.
fn parse_template(text: &str) -> Result<Vec<Part>, String> {
    if text == "body" {
        return Ok(vec![Part::Body]);
    }
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("{{") {
            literal.push('{');
            rest = after;
        } else if let Some(after) = rest.strip_prefix("}}") {
            literal.push('}');
            rest = after;
        } else if c == '{' {
            let end = rest.find('}').ok_or("unclosed `{`")?;
            let part = match &rest[1..end] {
                "body" => Part::Body,
                "timestamp" => Part::Timestamp,
                "id" => Part::Id,
                other => return Err(format!("unknown placeholder {{{}}}", clip(other))),
            };
            if !literal.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut literal)));
            }
            parts.push(part);
            rest = &rest[end + 1..];
        } else if c == '}' {
            return Err("unmatched `}` (write `}}` for a brace)".into());
        } else {
            literal.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    if !literal.is_empty() {
        parts.push(Part::Text(literal));
    }
    Ok(parts)
}

impl HmacVerifier {
    /// The timestamp (raw, and as Unix seconds when `tolerance` is set) and the id a
    /// request's signature covers, from their headers (empty when not configured).
    #[allow(clippy::type_complexity)]
    fn signed_values<'a>(
        &self,
        headers: &'a http::HeaderMap,
    ) -> Result<(&'a [u8], Option<i64>, &'a [u8]), Rejection> {
        let mut timestamp: &[u8] = b"";
        let mut signed_at = None;
        if let Some(name) = &self.timestamp_header {
            if self.tolerance.is_some() {
                let (raw, seconds) = timestamp_header(headers, name)?;
                (timestamp, signed_at) = (raw, Some(seconds));
            } else {
                timestamp = match one_header(headers, name) {
                    Ok(Some(raw)) => raw,
                    Ok(None) => {
                        return Err(Rejection::MissingTimestamp {
                            location: format!("{name} header").into(),
                        });
                    }
                    Err(()) => return Err(malformed(name, "sent more than once")),
                };
            }
        }
        let mut id: &[u8] = b"";
        if let Some(name) = &self.id_header
            && self.template.contains(&Part::Id)
        {
            id = match one_header(headers, name) {
                Ok(Some(raw)) if !raw.is_empty() => raw,
                Ok(_) => {
                    return Err(Rejection::MissingHeader {
                        header: name.clone().into(),
                    });
                }
                Err(()) => return Err(malformed(name, "sent more than once")),
            };
        }
        Ok((timestamp, signed_at, id))
    }

    /// The signed message: the `signed` template filled in.
    fn message<'a>(&'a self, body: &'a [u8], timestamp: &'a [u8], id: &'a [u8]) -> Vec<&'a [u8]> {
        self.template
            .iter()
            .map(|part| match part {
                Part::Text(text) => text.as_bytes(),
                Part::Body => body,
                Part::Timestamp => timestamp,
                Part::Id => id,
            })
            .collect()
    }

    /// The header value with the first secret: prefix and encoded MAC.
    fn signature(&self, message: &[&[u8]]) -> String {
        let tag = self.keys.sign_with_first(message);
        let encoded = match self.encoding {
            Encoding::Hex => hex::encode(tag),
            Encoding::Base64 => BASE64_STANDARD.encode(tag),
        };
        format!("{}{encoded}", self.prefix)
    }
}

impl Verifier for HmacVerifier {
    fn sign(&self, s: &Signing<'_>) -> Result<Vec<Header>, String> {
        let timestamp = s.timestamp.to_string();
        let message = self.message(s.body, timestamp.as_bytes(), s.id.as_bytes());
        let mut headers = vec![(self.header.clone(), self.signature(&message))];
        if let Some(name) = &self.timestamp_header {
            headers.push((name.clone(), timestamp.clone()));
        }
        if let Some(name) = &self.id_header {
            headers.push((name.clone(), s.id.into()));
        }
        let event_header = match &self.event {
            EventSource::Field { header, .. } => header.as_ref(),
            EventSource::Header(name) => Some(name),
        };
        if let (Some(name), Some(event)) = (event_header, s.event) {
            headers.push((name.clone(), event.into()));
        }
        Ok(headers)
    }

    fn expected(&self, req: &Unverified<'_>) -> Vec<Header> {
        match self.signed_values(req.headers) {
            Ok((timestamp, _, id)) => {
                let message = self.message(req.body, timestamp, id);
                vec![(self.header.clone(), self.signature(&message))]
            }
            Err(_) => Vec::new(),
        }
    }

    fn signature_headers(&self) -> Vec<String> {
        vec![self.header.to_ascii_lowercase()]
    }

    fn verify(&self, req: &Unverified<'_>) -> Result<Verified, Rejection> {
        let tag = self
            .parse_signature(signature_header(req.headers, &self.header)?)
            .map_err(|problem| malformed(&self.header, problem))?;
        let (timestamp, signed_at, id) = self.signed_values(req.headers)?;
        let message = self.message(req.body, timestamp, id);
        if !self.keys.matches(&message, &[&tag]) {
            return Err(Rejection::BadSignature);
        }
        if let (Some(tolerance), Some(signed_at)) = (self.tolerance, signed_at) {
            check_age(signed_at, req.now, tolerance)?;
        }
        self.decoded(req, &message)
    }

    fn decode(&self, req: &Unverified<'_>) -> Option<Result<Verified, Rejection>> {
        Some(self.decoded(req, &[req.body]))
    }
}

#[cfg(test)]
mod tests;
