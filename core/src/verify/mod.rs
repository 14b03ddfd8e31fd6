//! Verification: turn a request's raw bytes and headers into a [`Verified`] payload, or a
//! [`Rejection`] saying why not.
//!
//! This step is pure: no I/O, no logging, no clock reads that matter to the outcome. The
//! ingest handler holds an [`Unverified`] request and hands it to the source's [`Verifier`],
//! built once from the source's `verify = { scheme = "...", ... }` table ([`VerifyConfig`]).
//! Only what a verifier returns reaches the journal and the pipelines.
//!
//! Each scheme lives in its own file and adds one [`VerifyConfig`] variant. Every scheme:
//! - compares signatures in constant time, over the raw body bytes first;
//! - accepts several secrets at once, so a secret can be rotated without dropping events;
//! - takes the event type from the signed payload, never from an unsigned header alone;
//! - rejects with a [`Rejection`] whose `Display` is safe to send to the client (it never
//!   contains a secret or the expected signature) and whose [`Rejection::reason`] is a
//!   closed set fit for a metrics label.

use hookline_plugin_api::Secret;
use serde::Deserialize;

pub mod leadshark;

/// A request as received: nothing about it is trusted yet.
#[derive(Debug, Clone, Copy)]
pub struct Unverified<'a> {
    pub headers: &'a http::HeaderMap,
    pub body: &'a [u8],
    /// The time to judge signed timestamps against (verification never reads the clock).
    pub now: jiff::Timestamp,
}

/// A request whose signature checked out, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The JSON payload (a JSON object), as sent.
    pub payload: serde_json::Value,
    /// The event type, from the signed payload.
    pub event_type: String,
    /// What the dedupe step keys on: a retry of the same delivery gives the same key.
    pub idempotency_key: Option<String>,
}

/// Why a request was not accepted. Signature problems are 401, the rest 400.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("missing {header} header")]
    MissingSignature { header: &'static str },

    #[error("malformed {header} header: {problem}")]
    MalformedSignature {
        header: &'static str,
        problem: &'static str,
    },

    /// No configured secret produced the signature.
    #[error("invalid signature")]
    BadSignature,

    /// The signature is good but the body is not JSON; serde_json's message names the line
    /// and column.
    #[error("malformed JSON: {0}")]
    MalformedJson(serde_json::Error),

    #[error("payload is not a JSON object")]
    NotAnObject,

    #[error("payload has no string \"{field}\" field")]
    MissingEvent { field: &'static str },

    /// An unsigned event header disagrees with the signed payload: someone may be trying to
    /// steer routing, so the request is refused rather than routed by either value.
    /// Values are clipped (see [`clip`]) so an error body stays small.
    #[error(
        "{header} header {header_value:?} disagrees with the payload's event {payload_value:?}"
    )]
    EventMismatch {
        header: &'static str,
        header_value: String,
        payload_value: String,
    },
}

impl Rejection {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Rejection::MissingSignature { .. }
            | Rejection::MalformedSignature { .. }
            | Rejection::BadSignature => 401,
            Rejection::MalformedJson(_)
            | Rejection::NotAnObject
            | Rejection::MissingEvent { .. }
            | Rejection::EventMismatch { .. } => 400,
        }
    }

    /// The signature checked out, but the payload cannot be processed (not JSON, not an
    /// object, no event type). Such a request is authenticated, so it is kept as a dead
    /// letter rather than refused: nothing authenticated is lost.
    pub fn authenticated(&self) -> bool {
        matches!(
            self,
            Rejection::MalformedJson(_) | Rejection::NotAnObject | Rejection::MissingEvent { .. }
        )
    }

    /// A closed set of names, for the `reason` label of the verification-failure metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::MissingSignature { .. } => "missing_signature",
            Rejection::MalformedSignature { .. } => "malformed_signature",
            Rejection::BadSignature => "bad_signature",
            Rejection::MalformedJson(_) => "malformed_json",
            Rejection::NotAnObject => "not_an_object",
            Rejection::MissingEvent { .. } => "missing_event",
            Rejection::EventMismatch { .. } => "event_mismatch",
        }
    }

    /// Every value [`Rejection::reason`] can return, e.g. to pre-register metric series.
    pub const REASONS: &'static [&'static str] = &[
        "missing_signature",
        "malformed_signature",
        "bad_signature",
        "malformed_json",
        "not_an_object",
        "missing_event",
        "event_mismatch",
    ];
}

/// A source's signature scheme, built once from its config.
pub trait Verifier: Send + Sync + std::fmt::Debug {
    fn verify(&self, req: &Unverified<'_>) -> Result<Verified, Rejection>;

    /// Problems that make a verified event unprocessable although it is well-formed JSON
    /// (e.g. a LeadShark `email.captured` without `data.lead.email`). Such an event is
    /// dead-lettered with this reason instead of entering pipelines.
    fn problems(&self, _verified: &Verified) -> Vec<String> {
        Vec::new()
    }
}

/// A source's `verify` table: `verify = { scheme = "leadshark", secrets = [...] }`.
///
/// `Debug` prints secrets as `***`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "scheme", rename_all = "kebab-case", deny_unknown_fields)]
pub enum VerifyConfig {
    /// Hex HMAC-SHA256 of the body in `X-Webhook-Signature` (see [`leadshark`]).
    Leadshark {
        /// Every secret currently accepted; list the old and the new one while rotating.
        secrets: Vec<Secret>,
        /// When the raw body does not match, also try its compact re-serialisations (what
        /// LeadShark's documented Node and Python snippets sign). Default `true`.
        #[serde(default = "yes")]
        reserialize: bool,
    },
}

fn yes() -> bool {
    true
}

impl VerifyConfig {
    /// The scheme's name as written in the config.
    pub fn scheme(&self) -> &'static str {
        match self {
            VerifyConfig::Leadshark { .. } => "leadshark",
        }
    }

    /// Validate the table and build its verifier. Errors name the problem, never a secret.
    pub fn build(&self) -> Result<Box<dyn Verifier>, String> {
        match self {
            VerifyConfig::Leadshark {
                secrets,
                reserialize,
            } => Ok(Box::new(leadshark::LeadsharkVerifier::new(
                secrets,
                *reserialize,
            )?)),
        }
    }
}

/// At most [`CLIP_CHARS`] characters of a client-supplied value, for an error message.
pub(crate) fn clip(value: &str) -> String {
    match value.char_indices().nth(CLIP_CHARS) {
        Some((end, _)) => format!("{}…", &value[..end]),
        None => value.to_string(),
    }
}

const CLIP_CHARS: usize = 64;

/// Reject an empty secret list or an empty secret (typically an unset `${VAR}`).
pub(crate) fn check_secrets(scheme: &str, secrets: &[Secret]) -> Result<(), String> {
    if secrets.is_empty() {
        return Err(format!("{scheme}: `secrets` must list at least one secret"));
    }
    if let Some(i) = secrets.iter().position(|s| s.expose().is_empty()) {
        return Err(format!(
            "{scheme}: secret #{} is empty (is its environment variable set?)",
            i + 1
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Source {
        verify: VerifyConfig,
    }

    fn parse(toml_text: &str) -> Result<VerifyConfig, String> {
        toml::from_str::<Source>(toml_text)
            .map(|s| s.verify)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn leadshark_table_parses_with_defaults() {
        let cfg = parse(r#"verify = { scheme = "leadshark", secrets = ["s3cret", "old"] }"#)
            .expect("parses");
        let VerifyConfig::Leadshark {
            secrets,
            reserialize,
        } = &cfg;
        assert_eq!(secrets.len(), 2);
        assert_eq!(secrets[1].expose(), "old");
        assert!(*reserialize);
        assert_eq!(cfg.scheme(), "leadshark");

        let cfg =
            parse("[verify]\nscheme = \"leadshark\"\nsecrets = [\"s\"]\nreserialize = false\n")
                .expect("parses");
        assert!(matches!(
            cfg,
            VerifyConfig::Leadshark {
                reserialize: false,
                ..
            }
        ));
    }

    #[test]
    fn unknown_keys_and_schemes_are_errors() {
        let err = parse(r#"verify = { scheme = "leadshark", secrets = ["s"], secret = "x" }"#)
            .expect_err("unknown key");
        assert!(err.contains("secret"), "{err}");
        let err = parse(r#"verify = { scheme = "leadshork", secrets = ["s"] }"#)
            .expect_err("unknown scheme");
        assert!(err.contains("leadshork"), "{err}");
        let err = parse(r#"verify = { secrets = ["s"] }"#).expect_err("no scheme");
        assert!(err.contains("scheme"), "{err}");
        let err = parse(r#"verify = { scheme = "leadshark" }"#).expect_err("no secrets");
        assert!(err.contains("secrets"), "{err}");
    }

    #[test]
    fn build_rejects_empty_secrets_without_printing_them() {
        let cfg = parse(r#"verify = { scheme = "leadshark", secrets = [] }"#).expect("parses");
        let err = cfg.build().expect_err("empty list");
        assert!(err.contains("at least one"), "{err}");

        let cfg = parse(r#"verify = { scheme = "leadshark", secrets = ["hunter2", ""] }"#)
            .expect("parses");
        let err = cfg.build().expect_err("empty secret");
        assert!(err.contains("#2") && !err.contains("hunter2"), "{err}");

        let cfg =
            parse(r#"verify = { scheme = "leadshark", secrets = ["hunter2"] }"#).expect("parses");
        let verifier = cfg.build().expect("builds");
        for debug in [format!("{cfg:?}"), format!("{verifier:?}")] {
            assert!(!debug.contains("hunter2"), "{debug}");
        }
    }

    #[test]
    fn reasons_are_a_closed_set_with_statuses() {
        let json_err = serde_json::from_slice::<serde_json::Value>(b"{").expect_err("bad json");
        let all = [
            Rejection::MissingSignature {
                header: "X-Webhook-Signature",
            },
            Rejection::MalformedSignature {
                header: "X-Webhook-Signature",
                problem: "p",
            },
            Rejection::BadSignature,
            Rejection::MalformedJson(json_err),
            Rejection::NotAnObject,
            Rejection::MissingEvent { field: "event" },
            Rejection::EventMismatch {
                header: "X-Webhook-Event",
                header_value: "a".into(),
                payload_value: "b".into(),
            },
        ];
        let reasons: Vec<_> = all.iter().map(Rejection::reason).collect();
        assert_eq!(reasons, Rejection::REASONS);
        let statuses: Vec<_> = all.iter().map(Rejection::status).collect();
        assert_eq!(statuses, [401, 401, 401, 400, 400, 400, 400]);
    }

    #[test]
    fn clip_keeps_short_values_and_cuts_long_ones_on_char_boundaries() {
        assert_eq!(clip("new.like"), "new.like");
        let long = "é".repeat(100);
        let clipped = clip(&long);
        assert_eq!(clipped.chars().count(), CLIP_CHARS + 1);
        assert!(clipped.ends_with('…'));
    }
}
