//! Verification: turn a request's raw bytes and headers into a [`Verified`] payload, or a
//! [`Rejection`] saying why not.
//!
//! This step is pure: no I/O, no logging, no clock reads. The ingest handler holds an
//! [`Unverified`] request (with the time it was received, for timestamp tolerance) and hands
//! it to the source's [`Verifier`], built once from the source's `verify = { scheme = "...",
//! ... }` table ([`VerifyConfig`]). Only what a verifier returns reaches the journal and the
//! pipelines.
//!
//! Each scheme lives in its own file and adds one [`VerifyConfig`] variant: [`leadshark`],
//! [`standard_webhooks`], [`github`], [`stripe`], [`slack`], [`shopify`], [`twilio`] and the
//! generic [`hmac`]; [`ed25519`] verifies with the sender's public keys. Every scheme:
//! - compares signatures in constant time, over the raw body bytes first;
//! - accepts several secrets at once, so a secret can be rotated without dropping events;
//! - checks the signed timestamp against a tolerance where the scheme signs one;
//! - takes the event type from the signed payload where the payload carries it, and never
//!   trusts an unsigned header that disagrees with it; where the provider puts the event
//!   type only in an unsigned header (GitHub, Shopify), that header is used, and documented;
//! - fills [`Verified::idempotency_key`] from the provider's delivery id, or a hash of what
//!   was signed, for deduplication;
//! - rejects with a [`Rejection`] whose `Display` is safe to send to the client (it never
//!   contains a secret or the expected signature) and whose [`Rejection::reason`] is a
//!   closed set fit for a metrics label.

use std::borrow::Cow;

use hookline_plugin_api::Secret;
use serde::Deserialize;

pub(crate) mod common;
pub mod ed25519;
pub mod github;
pub mod hmac;
pub mod leadshark;
pub mod shopify;
pub mod sign;
pub mod slack;
pub mod standard_webhooks;
pub mod stripe;
#[cfg(test)]
mod testing;
pub mod twilio;

pub(crate) use common::{is_json, string_at};

/// A request as received: nothing about it is trusted yet.
#[derive(Debug, Clone, Copy)]
pub struct Unverified<'a> {
    pub headers: &'a http::HeaderMap,
    pub body: &'a [u8],
    /// The request target as received, path and query (`/webhooks/twilio?a=1`), for the
    /// schemes that sign the URL (Twilio); `None` where unknown.
    pub target: Option<&'a str>,
    /// When the request arrived: signed timestamps are checked against it. The caller reads
    /// the clock, so verification stays pure and testable at any instant.
    pub now: jiff::Timestamp,
}

/// A request whose signature checked out, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The JSON payload (a JSON object), as sent; a form body as an object of its fields.
    pub(crate) payload: serde_json::Value,
    /// The event type, from the signed payload (or, where the provider sends it only there,
    /// from its documented header).
    pub(crate) event_type: String,
    /// What the dedupe step keys on: a retry of the same delivery gives the same key.
    pub(crate) idempotency_key: Option<String>,
}

/// Why a request was not accepted. Signature and timestamp problems are 401, the rest 400.
///
/// Header and field names are `Cow` because the generic `hmac` scheme names them in its
/// config; the values a client sent are clipped (see [`clip`]) so an error body stays small.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("missing {header} header")]
    MissingSignature { header: Cow<'static, str> },

    #[error("malformed {header} header: {problem}")]
    MalformedSignature {
        header: Cow<'static, str>,
        problem: &'static str,
    },

    /// No configured secret produced the signature.
    #[error("invalid signature")]
    BadSignature,

    /// A header the signature covers (e.g. `webhook-id`) is absent.
    #[error("missing {header} header")]
    MissingHeader { header: Cow<'static, str> },

    /// The signed timestamp is absent; `location` says where it was expected.
    #[error("missing {location}")]
    MissingTimestamp { location: Cow<'static, str> },

    #[error("malformed {location}: {problem}")]
    MalformedTimestamp {
        location: Cow<'static, str>,
        problem: &'static str,
    },

    /// The body verifies only in a re-serialised form (LeadShark), and that form says
    /// something else than the body: a number or string changes in the round trip (an
    /// integer above 2^53 in a sender that signs JavaScript numbers). What would be stored
    /// is not what was signed.
    #[error(
        "the body matches the signature only after re-serialisation, and that changes it ({0}): what was signed is not what was sent"
    )]
    NotWhatWasSigned(String),

    /// Signed longer ago than the tolerance: a replay, or a retry that was not re-signed.
    #[error(
        "timestamp expired: signed {age_secs} s ago, more than the {tolerance_secs} s tolerance"
    )]
    TimestampExpired { age_secs: u64, tolerance_secs: u64 },

    #[error(
        "timestamp is {ahead_secs} s in the future, more than the {tolerance_secs} s tolerance"
    )]
    TimestampInFuture {
        ahead_secs: u64,
        tolerance_secs: u64,
    },

    /// The signature is good but the body is not JSON; serde_json's message names the line
    /// and column.
    #[error("malformed JSON: {0}")]
    MalformedJson(serde_json::Error),

    /// The signature covers the body only through a hash of it (Twilio's `bodySHA256`
    /// query parameter), and that hash is absent or is not the body's.
    #[error("{0}")]
    UnsignedBody(&'static str),

    #[error("payload is not a JSON object")]
    NotAnObject,

    #[error("payload has no string \"{field}\" field")]
    MissingEvent { field: Cow<'static, str> },

    /// The provider names the event type only in this header (GitHub, Shopify), and it is
    /// absent, repeated, or not a plain name.
    #[error("{header} header {problem}")]
    BadEventHeader {
        header: Cow<'static, str>,
        problem: &'static str,
    },

    /// An unsigned event header disagrees with the signed payload: someone may be trying to
    /// steer routing, so the request is refused rather than routed by either value.
    #[error(
        "{header} header {header_value:?} disagrees with the payload's event {payload_value:?}"
    )]
    EventMismatch {
        header: Cow<'static, str>,
        header_value: String,
        payload_value: String,
    },
}

impl Rejection {
    /// The HTTP status to answer with.
    pub(crate) fn status(&self) -> u16 {
        match self {
            Rejection::MissingSignature { .. }
            | Rejection::MalformedSignature { .. }
            | Rejection::BadSignature
            | Rejection::MissingHeader { .. }
            | Rejection::MissingTimestamp { .. }
            | Rejection::MalformedTimestamp { .. }
            | Rejection::TimestampExpired { .. }
            | Rejection::TimestampInFuture { .. }
            | Rejection::NotWhatWasSigned(_)
            | Rejection::UnsignedBody(_) => 401,
            Rejection::MalformedJson(_)
            | Rejection::NotAnObject
            | Rejection::MissingEvent { .. }
            | Rejection::BadEventHeader { .. }
            | Rejection::EventMismatch { .. } => 400,
        }
    }

    /// The signature checked out, but the payload cannot be processed (not JSON, not an
    /// object, no event type). Such a request is authenticated, so it is kept as a dead
    /// letter rather than refused: nothing authenticated is lost.
    pub(crate) fn authenticated(&self) -> bool {
        matches!(
            self,
            Rejection::MalformedJson(_)
                | Rejection::NotAnObject
                | Rejection::MissingEvent { .. }
                | Rejection::BadEventHeader { .. }
        )
    }

    /// A closed set of names, for the `reason` label of the verification-failure metric.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Rejection::MissingSignature { .. } => "missing_signature",
            Rejection::MalformedSignature { .. } => "malformed_signature",
            Rejection::BadSignature => "bad_signature",
            Rejection::MissingHeader { .. } => "missing_header",
            Rejection::MissingTimestamp { .. } => "missing_timestamp",
            Rejection::MalformedTimestamp { .. } => "malformed_timestamp",
            Rejection::TimestampExpired { .. } => "timestamp_expired",
            Rejection::TimestampInFuture { .. } => "timestamp_in_future",
            Rejection::NotWhatWasSigned(_) => "not_what_was_signed",
            Rejection::UnsignedBody(_) => "body_hash_mismatch",
            Rejection::MalformedJson(_) => "malformed_json",
            Rejection::NotAnObject => "not_an_object",
            Rejection::MissingEvent { .. } => "missing_event",
            Rejection::BadEventHeader { .. } => "bad_event_header",
            Rejection::EventMismatch { .. } => "event_mismatch",
        }
    }

    /// Every value [`Rejection::reason`] can return, e.g. to pre-register metric series.
    pub(crate) const REASONS: &'static [&'static str] = &[
        "missing_signature",
        "malformed_signature",
        "bad_signature",
        "missing_header",
        "missing_timestamp",
        "malformed_timestamp",
        "timestamp_expired",
        "timestamp_in_future",
        "not_what_was_signed",
        "body_hash_mismatch",
        "malformed_json",
        "not_an_object",
        "missing_event",
        "bad_event_header",
        "event_mismatch",
    ];
}

/// A source's signature scheme, built once from its config.
/// How deep a payload may nest objects and arrays. JSON parsers stop at 128 levels, and a
/// stored event (a retry's snapshot, a dead letter) wraps its payload a level deeper: a
/// payload near that limit could be accepted and then not be read back.
pub const MAX_PAYLOAD_DEPTH: usize = 64;

/// Why a verified request cannot be processed: its scheme's problems
/// ([`Verifier::problems`]) and a payload nested past [`MAX_PAYLOAD_DEPTH`]. Such a request
/// is kept as unprocessable, with its raw body and these reasons.
pub(crate) fn problems(verifier: &dyn Verifier, verified: &Verified) -> Vec<String> {
    let mut out = verifier.problems(verified);
    if deeper_than(&verified.payload, MAX_PAYLOAD_DEPTH) {
        out.push(format!(
            "the payload nests objects and arrays more than {MAX_PAYLOAD_DEPTH} levels deep"
        ));
    }
    out
}

/// Whether `v` nests objects and arrays more than `levels` deep (`{}` is one level).
fn deeper_than(v: &serde_json::Value, levels: usize) -> bool {
    use serde_json::Value;
    match v {
        Value::Object(m) => levels == 0 || m.values().any(|v| deeper_than(v, levels - 1)),
        Value::Array(a) => levels == 0 || a.iter().any(|v| deeper_than(v, levels - 1)),
        _ => false,
    }
}

pub trait Verifier: Send + Sync + std::fmt::Debug {
    fn verify(&self, req: &Unverified<'_>) -> Result<Verified, Rejection>;

    /// The headers a sender would send with `signing.body`, signed with this verifier's
    /// first secret over the message `verify` checks (`hookline send --scheme`).
    fn sign(&self, signing: &sign::Signing<'_>) -> Result<Vec<sign::Header>, String>;

    /// The signature header(s) this verifier's first secret gives for `req` as sent (its
    /// body, timestamp and id): what `hookline verify` shows a failing request needed.
    /// Empty when the request lacks something the scheme signs besides the body.
    fn expected(&self, req: &Unverified<'_>) -> Vec<sign::Header>;

    /// The steps after the signature check — decode the body, find the event type — for a
    /// request whose signature was verified when it arrived (re-running a request kept as
    /// unprocessable, with the headers an event keeps: no signature). `None`: this scheme
    /// cannot take them apart from its signature check.
    fn decode(&self, _req: &Unverified<'_>) -> Option<Result<Verified, Rejection>> {
        None
    }

    /// Problems that make a verified event unprocessable although it is well-formed JSON
    /// (e.g. a LeadShark `email.captured` without `data.lead.email`). Such an event is
    /// dead-lettered with this reason instead of entering pipelines.
    fn problems(&self, _verified: &Verified) -> Vec<String> {
        Vec::new()
    }

    /// A provider's handshake: a verified request that asks for a particular answer
    /// rather than being an event (Slack's `url_verification` challenge). `Some(body)`:
    /// answer `200` with this JSON, journal nothing. Asked only after verification.
    fn handshake(&self, _verified: &Verified) -> Option<serde_json::Value> {
        None
    }

    /// The URL a sender of this scheme posts `body` to, given the endpoint's `url`: Twilio
    /// adds the body's hash (`bodySHA256`), which its signature covers. Default: `url`.
    fn sender_url(&self, url: &str, _body: &[u8]) -> String {
        url.to_string()
    }

    /// Whether bodies of this media type (`Content-Type` without parameters, lower-cased)
    /// are accepted: JSON only, unless the scheme's provider sends others (Slack: forms).
    fn accepts_content_type(&self, essence: &str) -> bool {
        is_json(essence)
    }

    /// Headers carrying the signature, in lower case: never stored with the event. (Any
    /// header whose name contains `signature` is dropped anyway.)
    fn signature_headers(&self) -> Vec<String> {
        Vec::new()
    }
}

/// A source's `verify` table: `verify = { scheme = "...", secrets = [...], ... }`, one
/// variant per scheme, each documented in its module. Unknown keys are errors.
///
/// `Debug` prints secrets as `***`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "scheme", rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) enum VerifyConfig {
    /// Hex HMAC-SHA256 of the body in `X-Webhook-Signature` (see [`leadshark`]).
    Leadshark(leadshark::LeadsharkConfig),
    /// Svix / Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`.
    StandardWebhooks(standard_webhooks::StandardWebhooksConfig),
    /// `X-Hub-Signature-256: sha256=<hex>` over the body.
    Github(github::GithubConfig),
    /// `Stripe-Signature: t=...,v1=...` over `t.body`.
    Stripe(stripe::StripeConfig),
    /// `X-Slack-Signature: v0=<hex>` over `v0:timestamp:body`.
    Slack(slack::SlackConfig),
    /// `X-Shopify-Hmac-Sha256`: base64 HMAC-SHA256 of the body.
    Shopify(shopify::ShopifyConfig),
    /// Any HMAC in a header: algorithm, encoding, prefix and signed template configurable.
    Hmac(hmac::HmacConfig),
    /// `X-Twilio-Signature`: base64 HMAC-SHA1 of the public URL and the sorted form fields.
    Twilio(twilio::TwilioConfig),
    /// An Ed25519 signature of `timestamp + body` (Discord), checked with public keys.
    Ed25519(ed25519::Ed25519Config),
}

impl VerifyConfig {
    /// The scheme's name as written in the config.
    pub(crate) fn scheme(&self) -> &'static str {
        match self {
            VerifyConfig::Leadshark(_) => "leadshark",
            VerifyConfig::StandardWebhooks(_) => "standard-webhooks",
            VerifyConfig::Github(_) => "github",
            VerifyConfig::Stripe(_) => "stripe",
            VerifyConfig::Slack(_) => "slack",
            VerifyConfig::Shopify(_) => "shopify",
            VerifyConfig::Hmac(_) => "hmac",
            VerifyConfig::Twilio(_) => "twilio",
            VerifyConfig::Ed25519(_) => "ed25519",
        }
    }

    /// A one-line description for `hookline check`: the scheme, how many secrets are set
    /// (never what they are) and the timestamp tolerance.
    pub(crate) fn describe(&self) -> String {
        let (secrets, tolerance): (&[Secret], Option<std::time::Duration>) = match self {
            VerifyConfig::Leadshark(c) => (&c.secrets, c.tolerance),
            VerifyConfig::StandardWebhooks(c) => (&c.secrets, Some(c.tolerance)),
            VerifyConfig::Github(c) => (&c.secrets, None),
            VerifyConfig::Stripe(c) => (&c.secrets, Some(c.tolerance)),
            VerifyConfig::Slack(c) => (&c.secrets, Some(c.tolerance)),
            VerifyConfig::Shopify(c) => (&c.secrets, None),
            VerifyConfig::Hmac(c) => (&c.secrets, c.tolerance),
            VerifyConfig::Twilio(c) => (&c.secrets, None),
            VerifyConfig::Ed25519(c) => (&[], Some(c.tolerance)),
        };
        let set = secrets.iter().filter(|s| !s.expose().is_empty()).count();
        let public_keys: &[String] = match self {
            VerifyConfig::Ed25519(c) => &c.public_keys,
            VerifyConfig::StandardWebhooks(c) => &c.public_keys,
            _ => &[],
        };
        let public_keys = public_keys.iter().filter(|k| !k.is_empty()).count();
        let mut text = format!("{} signature", self.scheme());
        match (set, secrets.len()) {
            (_, 0) => {}
            (1, 1) => text.push_str(", secrets *** (1 secret)"),
            (set, total) if set == total => {
                text.push_str(&format!(", secrets *** ({set} secrets)"))
            }
            (set, total) => text.push_str(&format!(
                ", secrets *** ({set} of {total} set; empty slots are skipped)"
            )),
        }
        if public_keys > 0 {
            text.push_str(&format!(", {public_keys} public key(s)"));
        }
        match tolerance {
            Some(t) => text.push_str(&format!(
                ", timestamp tolerance {}",
                humantime::format_duration(t)
            )),
            None => text.push_str(", no timestamp check"),
        }
        text
    }

    /// Validate the table and build its verifier. Errors name the problem, never a secret.
    pub(crate) fn build(&self) -> Result<Box<dyn Verifier>, String> {
        Ok(match self {
            VerifyConfig::Leadshark(c) => Box::new(leadshark::LeadsharkVerifier::build(c)?),
            VerifyConfig::StandardWebhooks(c) => {
                Box::new(standard_webhooks::StandardWebhooksVerifier::build(c)?)
            }
            VerifyConfig::Github(c) => {
                Box::new(common::BodySignedVerifier::build(&github::GITHUB, c)?)
            }
            VerifyConfig::Stripe(c) => Box::new(stripe::StripeVerifier::build(c)?),
            VerifyConfig::Slack(c) => Box::new(slack::SlackVerifier::build(c)?),
            VerifyConfig::Shopify(c) => {
                Box::new(common::BodySignedVerifier::build(&shopify::SHOPIFY, c)?)
            }
            VerifyConfig::Hmac(c) => Box::new(hmac::HmacVerifier::build(c)?),
            VerifyConfig::Twilio(c) => Box::new(twilio::TwilioVerifier::build(c)?),
            VerifyConfig::Ed25519(c) => Box::new(ed25519::Ed25519Verifier::build(c)?),
        })
    }
}

fn yes() -> bool {
    true
}

/// At most [`CLIP_CHARS`] characters of a client-supplied value, for an error message.
pub(crate) fn clip(value: &str) -> String {
    match value.char_indices().nth(CLIP_CHARS) {
        Some((end, _)) => format!("{}…", &value[..end]),
        None => value.to_string(),
    }
}

const CLIP_CHARS: usize = 64;

/// The secrets to use: empty entries are skipped, so a rotation slot such as
/// `"${LEADSHARK_SECRET_OLD:-}"` can stay in the file when there is no old secret (an empty
/// key must never verify anything). At least one non-empty secret is required.
///
/// A secret with leading or trailing whitespace (typically the newline of `echo` or of a
/// file read into a variable) or only whitespace is an error, not silently trimmed: no
/// sender signs with it, so it would only turn every request into a 401, and trimming would
/// verify with a key other than the one configured.
pub(crate) fn check_secrets<'a>(
    scheme: &str,
    secrets: &'a [Secret],
) -> Result<Vec<&'a Secret>, String> {
    if secrets.is_empty() {
        return Err(format!("{scheme}: `secrets` must list at least one secret"));
    }
    for (i, secret) in secrets.iter().enumerate() {
        let text = secret.expose();
        if !text.is_empty() && text.trim().is_empty() {
            return Err(format!(
                "{scheme}: `secrets[{i}]` is only whitespace: set it to the real secret, or to nothing to leave the slot unused"
            ));
        }
        if text.trim_end() != text {
            let what = if text.ends_with('\n') || text.ends_with('\r') {
                "a newline (as `echo` or a file read with `$(cat ...)` leaves)"
            } else {
                "whitespace"
            };
            return Err(format!(
                "{scheme}: `secrets[{i}]` ends with {what}, which would make every signature check fail: remove it"
            ));
        }
        if text.trim_start() != text {
            return Err(format!(
                "{scheme}: `secrets[{i}]` starts with whitespace, which would make every signature check fail: remove it"
            ));
        }
    }
    let usable: Vec<&Secret> = secrets.iter().filter(|s| !s.expose().is_empty()).collect();
    if usable.is_empty() {
        return Err(format!(
            "{scheme}: every secret is empty (are their environment variables set?)"
        ));
    }
    Ok(usable)
}

#[cfg(test)]
mod tests;
