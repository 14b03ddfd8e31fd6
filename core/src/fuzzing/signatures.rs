//! Signature schemes. Each harness reads its input as an HTTP request ([`request`]:
//! `Name: value` lines, a blank line, the body) and checks, for its scheme:
//!
//! 1. the header parser, on every value of the signature header: never panics, and what it
//!    accepts is a signature it reads back the same once re-encoded;
//! 2. the verifier, on the request as sent: never panics, and a rejection is well-formed
//!    (400 or 401, a known reason, a message short enough for a response and without the
//!    secret);
//! 3. the same request signed with the known secret by an independent signer (here, not the
//!    verifier's code): the signature passes, so only the payload can fail, with a 400;
//! 4. that signed request with one byte of the body changed, and with one bit of the
//!    signature changed: 401 bad signature. (LeadShark: unless the changed body parses to
//!    the same value, which its re-serialisation accepts by design.)

use std::time::Duration;

use ::hmac::{Hmac, KeyInit, Mac};
use base64::prelude::{BASE64_STANDARD, Engine as _};
use hookline_plugin_api::Secret;
use http::{HeaderMap, HeaderName, HeaderValue};
use sha1::Sha1;
use sha2::{Sha256, Sha512};

use super::MAX_MESSAGE;
use crate::verify::common::{Algorithm, BodySigned, BodySignedVerifier};
use crate::verify::{
    Rejection, Unverified, Verified, Verifier, github, hmac as generic, leadshark, shopify, slack,
    standard_webhooks, stripe,
};

/// When the request arrives, unless a signed timestamp says otherwise.
const T: i64 = 1_700_000_000;

/// A fuzz input read as a request.
#[derive(Debug)]
pub struct Request {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// `Name: value` lines up to the first blank line, then the body. Lines that are not a valid
/// header are skipped; a name may repeat.
pub fn request(data: &[u8]) -> Request {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let mut headers = HeaderMap::new();
    for line in head.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(line[..colon].trim_ascii()),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii_start()),
        ) {
            headers.append(name, value);
        }
    }
    Request {
        headers,
        body: body.to_vec(),
    }
}

pub fn github(data: &[u8]) {
    body_signed(
        data,
        &github::GITHUB,
        "It's a Secret to Everybody",
        |value, canonical| {
            // Hex in either case.
            assert!(value.eq_ignore_ascii_case(canonical));
        },
    );
}

/// GitHub and Shopify: a parsed tag is written back one way (up to what `same` allows), and
/// the verifier agrees with a signer over the body.
fn body_signed(
    data: &[u8],
    scheme: &'static BodySigned,
    secret: &str,
    same: impl Fn(&[u8], &[u8]),
) {
    let v = BodySignedVerifier::build(
        scheme,
        &crate::verify::common::SecretsConfig {
            secrets: vec![Secret::new(secret)],
        },
    )
    .expect("builds");
    let req = request(data);
    for value in values(&req, scheme.signature_header) {
        if let Ok(tag) = (scheme.parse)(value) {
            same(value, (scheme.format)(&tag).as_bytes());
        }
    }
    drive(
        &v,
        secret,
        data,
        &req,
        at(T),
        Tamper::Raw,
        |h, body, flip| {
            let tag = mac(Algorithm::Sha256, secret.as_bytes(), &[body], flip);
            set(h, scheme.signature_header, (scheme.format)(&tag).as_bytes());
        },
    );
}

pub fn stripe(data: &[u8]) {
    const SECRET: &str = "whsec_test_secret_0123456789";
    let v = stripe::StripeVerifier::build(&stripe::StripeConfig {
        secrets: vec![Secret::new(SECRET)],
        tolerance: Duration::from_secs(300),
    })
    .expect("builds");
    let req = request(data);
    let mut ts = T;
    for value in values(&req, stripe::SIGNATURE_HEADER) {
        if let Ok(header) = stripe::parse_header(value) {
            assert!(!header.signatures.is_empty());
            let v1: Vec<String> = header
                .signatures
                .iter()
                .map(|s| format!("v1={}", hex::encode(s)))
                .collect();
            let canonical = format!("t={},{}", header.timestamp, v1.join(","));
            let again = stripe::parse_header(canonical.as_bytes()).expect("re-encoded header");
            assert_eq!(again, header);
            ts = in_range(header.timestamp).unwrap_or(T);
        }
    }
    drive(
        &v,
        SECRET,
        data,
        &req,
        at(ts),
        Tamper::Raw,
        |h, body, flip| {
            let t = ts.to_string();
            let message: [&[u8]; 3] = [t.as_bytes(), b".", body];
            let tag = mac(Algorithm::Sha256, SECRET.as_bytes(), &message, flip);
            let value = format!("t={t},v1={}", hex::encode(tag));
            set(h, stripe::SIGNATURE_HEADER, value.as_bytes());
        },
    );
}

pub fn slack(data: &[u8]) {
    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    let v = slack::SlackVerifier::build(&slack::SlackConfig {
        secrets: vec![Secret::new(SECRET)],
        tolerance: Duration::from_secs(300),
    })
    .expect("builds");
    let req = request(data);
    for value in values(&req, slack::SIGNATURE_HEADER) {
        if let Ok(tag) = slack::parse_signature(value) {
            let canonical = format!("v0={}", hex::encode(tag));
            assert!(value.eq_ignore_ascii_case(canonical.as_bytes()));
        }
    }
    let ts = timestamp(&req, slack::TIMESTAMP_HEADER);
    drive(
        &v,
        SECRET,
        data,
        &req,
        at(ts),
        Tamper::Raw,
        |h, body, flip| {
            let t = ts.to_string();
            let message: [&[u8]; 4] = [b"v0:", t.as_bytes(), b":", body];
            let value = format!(
                "v0={}",
                hex::encode(mac(Algorithm::Sha256, SECRET.as_bytes(), &message, flip))
            );
            set(h, slack::SIGNATURE_HEADER, value.as_bytes());
            set(h, slack::TIMESTAMP_HEADER, t.as_bytes());
        },
    );
}

pub fn shopify(data: &[u8]) {
    body_signed(
        data,
        &shopify::SHOPIFY,
        "test_secret_key",
        |value, canonical| {
            // Standard base64 with canonical padding and trailing bits: one spelling only.
            assert_eq!(canonical, value);
        },
    );
}

pub fn standard_webhooks(data: &[u8]) {
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let key = BASE64_STANDARD
        .decode(&SECRET["whsec_".len()..])
        .expect("base64 secret");
    let v = standard_webhooks::StandardWebhooksVerifier::build(
        &standard_webhooks::StandardWebhooksConfig {
            secrets: vec![Secret::new(SECRET)],
            tolerance: Duration::from_secs(300),
            event_field: "type".into(),
        },
    )
    .expect("builds");
    let req = request(data);
    for name in ["webhook-signature", "svix-signature"] {
        for value in values(&req, name) {
            if let Ok(tags) = standard_webhooks::parse_signatures(value) {
                let entries: Vec<String> = tags
                    .iter()
                    .map(|t| format!("v1,{}", BASE64_STANDARD.encode(t)))
                    .collect();
                let again = standard_webhooks::parse_signatures(entries.join(" ").as_bytes());
                assert_eq!(again, Ok(tags));
            }
        }
    }
    let ts = timestamp(&req, "webhook-timestamp");
    let id = id_or(&req, "webhook-id", b"msg_fuzz");
    drive(
        &v,
        SECRET,
        data,
        &req,
        at(ts),
        Tamper::Raw,
        |h, body, flip| {
            let t = ts.to_string();
            let message: [&[u8]; 5] = [&id, b".", t.as_bytes(), b".", body];
            let tag = mac(Algorithm::Sha256, &key, &message, flip);
            set(h, "webhook-id", &id);
            set(h, "webhook-timestamp", t.as_bytes());
            let value = format!("v1,{}", BASE64_STANDARD.encode(tag));
            set(h, "webhook-signature", value.as_bytes());
        },
    );
}

/// The generic scheme. The first byte picks the configuration (bits: algorithm, encoding,
/// tolerance, prefix, where the event type comes from); the rest of the first line is the
/// `signed` template, so template parsing is fuzzed too; then the request.
pub fn hmac(data: &[u8]) {
    const SECRET: &str = "generic-secret-1";
    const SIG: &str = "X-Acme-Signature";
    const TS: &str = "X-Acme-Timestamp";
    const ID: &str = "X-Acme-Delivery";
    const EVENT: &str = "X-Acme-Event";
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (line, message) = match rest.iter().position(|b| *b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let Ok(template) = std::str::from_utf8(line) else {
        return;
    };
    let algorithm = [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512][usize::from(flags % 3)];
    let encoding = match flags & 4 {
        0 => generic::Encoding::Hex,
        _ => generic::Encoding::Base64,
    };
    let tolerance = (flags & 8 != 0).then(|| Duration::from_secs(300));
    let prefix = if flags & 16 != 0 { "sha256=" } else { "" };
    let (event_field, event_header) = match (flags >> 5) % 3 {
        0 => (Some("event.type".to_string()), None),
        1 => (None, Some(EVENT.to_string())),
        _ => (Some("event.type".to_string()), Some(EVENT.to_string())),
    };
    let config = generic::HmacConfig {
        secrets: vec![Secret::new(SECRET)],
        header: SIG.into(),
        algorithm,
        encoding,
        prefix: prefix.into(),
        signed: template.into(),
        timestamp_header: Some(TS.into()),
        id_header: Some(ID.into()),
        tolerance,
        event_field,
        event_header,
    };
    let Ok(v) = generic::HmacVerifier::build(&config) else {
        return;
    };
    let req = request(message);
    let encode = |tag: &[u8]| match encoding {
        generic::Encoding::Hex => hex::encode(tag),
        generic::Encoding::Base64 => BASE64_STANDARD.encode(tag),
    };
    for value in values(&req, SIG) {
        if let Ok(tag) = v.parse_signature(value) {
            assert_eq!(tag.len(), algorithm.output_len());
            let canonical = format!("{prefix}{}", encode(&tag));
            assert_eq!(v.parse_signature(canonical.as_bytes()), Ok(tag));
        }
    }
    // Without a tolerance the timestamp is any text, signed as sent.
    let (ts, now) = match (values(&req, TS).next(), tolerance) {
        (Some(raw), None) => (raw.to_vec(), T),
        _ => {
            let t = timestamp(&req, TS);
            (t.to_string().into_bytes(), t)
        }
    };
    let id = id_or(&req, ID, b"d-1");
    drive(
        &v,
        SECRET,
        data,
        &req,
        at(now),
        Tamper::Raw,
        |h, body, flip| {
            let signed = render(template, body, &ts, &id);
            let tag = mac(algorithm, SECRET.as_bytes(), &[&signed], flip);
            set(h, TS, &ts);
            set(h, ID, &id);
            set(h, SIG, format!("{prefix}{}", encode(&tag)).as_bytes());
        },
    );
}

pub fn leadshark(data: &[u8]) {
    const SECRET: &str = "leadshark-fuzz-secret";
    let v = leadshark::LeadsharkVerifier::new(&[Secret::new(SECRET)], true).expect("builds");
    let req = request(data);
    drive(
        &v,
        SECRET,
        data,
        &req,
        at(T),
        Tamper::Reserialised,
        |h, body, flip| {
            let tag = mac(Algorithm::Sha256, SECRET.as_bytes(), &[body], flip);
            set(h, leadshark::SIGNATURE_HEADER, hex::encode(tag).as_bytes());
        },
    );
}

/// What a one-byte change of a signed body may lead to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tamper {
    /// The scheme signs raw bytes: always a bad signature.
    Raw,
    /// LeadShark: a bad signature, or a body that says what the signed one says.
    Reserialised,
}

/// The request's first non-empty `header`, or `default`.
fn id_or(req: &Request, header: &str, default: &[u8]) -> Vec<u8> {
    match values(req, header).next() {
        Some(id) if !id.is_empty() => id.to_vec(),
        _ => default.to_vec(),
    }
}

/// Checks 2 to 4 of the module docs. `sign` sets the headers of a request signed with the
/// known secret (`true`: with one bit of the signature flipped), received at `now`.
fn drive(
    v: &dyn Verifier,
    secret: &str,
    input: &[u8],
    req: &Request,
    now: jiff::Timestamp,
    tamper: Tamper,
    sign: impl Fn(&mut HeaderMap, &[u8], bool),
) {
    check(&verify(v, &req.headers, &req.body, at(T)), secret, input);

    let mut signed = req.headers.clone();
    sign(&mut signed, &req.body, false);
    let result = verify(v, &signed, &req.body, now);
    check(&result, secret, input);
    if let Err(r) = &result {
        assert_eq!(
            r.status(),
            400,
            "a correctly signed request was refused: {r}"
        );
    }

    let changed = one_byte_changed(&req.body);
    match (verify(v, &signed, &changed, now), tamper) {
        (Err(Rejection::BadSignature), _) => {}
        (Err(r), Tamper::Reserialised) if r.status() == 401 => {}
        (_, Tamper::Reserialised) => {
            let parse = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).ok();
            let same = match (parse(&req.body), parse(&changed)) {
                (Some(a), Some(b)) => super::same_json(&a, &b, false),
                _ => false,
            };
            assert!(
                same,
                "a changed body passed as re-serialised, but says something else"
            );
        }
        (other, Tamper::Raw) => panic!("a changed body was not refused: {:?}", summary(&other)),
    }

    let mut flipped = req.headers.clone();
    sign(&mut flipped, &req.body, true);
    let result = verify(v, &flipped, &req.body, now);
    assert!(
        matches!(result, Err(Rejection::BadSignature)),
        "a changed signature was not refused: {:?}",
        summary(&result)
    );
}

/// A rejection is well-formed; a verified request is usable.
fn check(result: &Result<Verified, Rejection>, secret: &str, input: &[u8]) {
    match result {
        Ok(v) => {
            assert!(v.payload.is_object(), "verified payload is not an object");
            assert!(!v.event_type.is_empty(), "verified event type is empty");
            assert!(
                v.idempotency_key.as_deref().is_some_and(|k| !k.is_empty()),
                "no idempotency key"
            );
        }
        Err(r) => {
            assert!(Rejection::REASONS.contains(&r.reason()), "{}", r.reason());
            assert!(matches!(r.status(), 400 | 401), "{}", r.status());
            assert!(!r.authenticated() || r.status() == 400);
            let message = r.to_string();
            let chars = message.chars().count();
            assert!(
                chars <= MAX_MESSAGE,
                "a rejection message of {chars} characters ({}): {}",
                r.reason(),
                message.chars().take(200).collect::<String>()
            );
            // A secret in the message is a leak, unless the request itself carried it.
            let sent = input.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(
                sent || !message.contains(secret),
                "the secret is in: {message}"
            );
        }
    }
}

fn summary(result: &Result<Verified, Rejection>) -> Result<&str, &'static str> {
    match result {
        Ok(v) => Ok(&v.event_type),
        Err(r) => Err(r.reason()),
    }
}

fn verify(
    v: &dyn Verifier,
    headers: &HeaderMap,
    body: &[u8],
    now: jiff::Timestamp,
) -> Result<Verified, Rejection> {
    v.verify(&Unverified { headers, body, now })
}

/// Every value of a header, trimmed as the verifiers trim it.
fn values<'a>(req: &'a Request, name: &str) -> impl Iterator<Item = &'a [u8]> {
    req.headers
        .get_all(name)
        .iter()
        .map(|v| v.as_bytes().trim_ascii())
}

fn set(headers: &mut HeaderMap, name: &str, value: &[u8]) {
    headers.insert(
        HeaderName::from_bytes(name.as_bytes()).expect("header name"),
        HeaderValue::from_bytes(value).expect("header value"),
    );
}

fn at(seconds: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(seconds).expect("in range")
}

fn in_range(seconds: i64) -> Option<i64> {
    jiff::Timestamp::from_second(seconds).ok().map(|_| seconds)
}

/// The request's timestamp header, if it is Unix seconds a `Timestamp` can hold; else `T`.
fn timestamp(req: &Request, name: &str) -> i64 {
    values(req, name)
        .next()
        .filter(|v| (1..=18).contains(&v.len()) && v.iter().all(u8::is_ascii_digit))
        .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
        .and_then(in_range)
        .unwrap_or(T)
}

fn one_byte_changed(body: &[u8]) -> Vec<u8> {
    let mut changed = body.to_vec();
    match changed.get_mut(body.len() / 2) {
        Some(byte) => *byte ^= 1,
        None => changed.push(b'x'),
    }
    changed
}

/// HMAC of the concatenated `parts`, written independently of `verify`'s keyring; with
/// `flip`, its first bit is flipped.
fn mac(algorithm: Algorithm, key: &[u8], parts: &[&[u8]], flip: bool) -> Vec<u8> {
    fn run<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().to_vec()
    }
    let mut tag = match algorithm {
        Algorithm::Sha1 => run::<Hmac<Sha1>>(key, parts),
        Algorithm::Sha256 => run::<Hmac<Sha256>>(key, parts),
        Algorithm::Sha512 => run::<Hmac<Sha512>>(key, parts),
    };
    if flip {
        tag[0] ^= 1;
    }
    tag
}

/// The generic scheme's signed message, from a template its parser accepted: `body` alone,
/// or text with `{body}`, `{timestamp}`, `{id}`, `{{` and `}}`.
fn render(template: &str, body: &[u8], ts: &[u8], id: &[u8]) -> Vec<u8> {
    if template == "body" {
        return body.to_vec();
    }
    let tokens: [(&str, &[u8]); 5] = [
        ("{{", b"{"),
        ("}}", b"}"),
        ("{body}", body),
        ("{timestamp}", ts),
        ("{id}", id),
    ];
    let mut out = Vec::new();
    let mut rest = template;
    'next: while let Some(c) = rest.chars().next() {
        for (token, value) in tokens {
            if let Some(after) = rest.strip_prefix(token) {
                out.extend_from_slice(value);
                rest = after;
                continue 'next;
            }
        }
        out.extend_from_slice(&rest.as_bytes()[..c.len_utf8()]);
        rest = &rest[c.len_utf8()..];
    }
    out
}
