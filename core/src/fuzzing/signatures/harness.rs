//! What every scheme's harness shares: the request an input is read as, the checks, and an
//! HMAC signer and template renderer written independently of `verify`.

use ::hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use sha1::Sha1;
use sha2::{Sha256, Sha512};

use crate::fuzzing::{MAX_MESSAGE, same_json};
use crate::verify::common::Algorithm;
use crate::verify::{Rejection, Unverified, Verified, Verifier};

/// When the request arrives, unless a signed timestamp says otherwise.
pub(super) const T: i64 = 1_700_000_000;

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
/// What a one-byte change of a signed body may lead to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tamper {
    /// The scheme signs raw bytes: always a bad signature.
    Raw,
    /// LeadShark: a bad signature, or a body that says what the signed one says.
    Reserialised,
}

/// The request's first non-empty `header`, or `default`.
pub(super) fn id_or(req: &Request, header: &str, default: &[u8]) -> Vec<u8> {
    match values(req, header).next() {
        Some(id) if !id.is_empty() => id.to_vec(),
        _ => default.to_vec(),
    }
}

/// Checks 2 to 4 of the module docs. `sign` sets the headers of a request signed with the
/// known secret (`true`: with one bit of the signature flipped), received at `now`.
pub(super) fn drive(
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
                (Some(a), Some(b)) => same_json(&a, &b, false),
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
    v.verify(&Unverified {
        headers,
        body,
        target: None,
        now,
    })
}

/// Every value of a header, trimmed as the verifiers trim it.
pub(super) fn values<'a>(req: &'a Request, name: &str) -> impl Iterator<Item = &'a [u8]> {
    req.headers
        .get_all(name)
        .iter()
        .map(|v| v.as_bytes().trim_ascii())
}

pub(super) fn set(headers: &mut HeaderMap, name: &str, value: &[u8]) {
    headers.insert(
        HeaderName::from_bytes(name.as_bytes()).expect("header name"),
        HeaderValue::from_bytes(value).expect("header value"),
    );
}

pub(super) fn at(seconds: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(seconds).expect("in range")
}

pub(super) fn in_range(seconds: i64) -> Option<i64> {
    jiff::Timestamp::from_second(seconds).ok().map(|_| seconds)
}

/// The request's timestamp header, if it is Unix seconds a `Timestamp` can hold; else `T`.
pub(super) fn timestamp(req: &Request, name: &str) -> i64 {
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
pub(super) fn mac(algorithm: Algorithm, key: &[u8], parts: &[&[u8]], flip: bool) -> Vec<u8> {
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
pub(super) fn render(template: &str, body: &[u8], ts: &[u8], id: &[u8]) -> Vec<u8> {
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
