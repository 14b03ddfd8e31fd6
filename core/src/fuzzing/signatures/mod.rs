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

mod harness;

use std::time::Duration;

use base64::prelude::{BASE64_STANDARD, Engine as _};
use hookline_plugin_api::Secret;

use crate::verify::common::{Algorithm, BodySigned, BodySignedVerifier};
use crate::verify::{
    github, hmac as generic, leadshark, shopify, slack, standard_webhooks, stripe,
};
pub use harness::{Request, request};
use harness::{T, Tamper, at, drive, id_or, in_range, mac, render, set, timestamp, values};

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
            public_keys: Vec::new(),
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
