//! Fuzz harnesses: one function per target in `fuzz/` (cargo-fuzz, nightly), each taking the
//! fuzzer's bytes. They live here, not in `fuzz/`, so that a stable test
//! (`fuzzing::tests`) replays the checked-in seeds through the very same checks without
//! nightly, and so that they can reach what the library does not export.
//!
//! This module exists for `fuzz/` and its replay test only: it is not an API, and nothing
//! else may depend on it. Each harness must never panic on any input except to report a
//! broken invariant (that panic is the fuzzer's "crash").
//!
//! | target | what it checks |
//! | --- | --- |
//! | `signature_*` | a scheme's header parser and verifier: see [`signatures`] |
//! | `leadshark_reserialise` | LeadShark's Node/Python re-serialisation: see [`reserialise`] |
//! | `config_load` | `pipeline.toml` text → parse, interpolate, check, dry build: see [`config`] |
//! | `merge_patch` | the RFC 7396 JSON merge patch: see [`merge`] |

pub mod config;
pub mod merge;
pub mod reserialise;
pub mod signatures;

#[cfg(test)]
mod tests;

/// A target's harness: any bytes in, a panic on a broken invariant.
pub type Harness = fn(&[u8]);

/// Every target: its name (the folder under `fuzz/corpus/`) and its harness.
pub const TARGETS: &[(&str, Harness)] = &[
    ("signature_github", signatures::github),
    ("signature_stripe", signatures::stripe),
    ("signature_slack", signatures::slack),
    ("signature_shopify", signatures::shopify),
    ("signature_standard_webhooks", signatures::standard_webhooks),
    ("signature_hmac", signatures::hmac),
    ("signature_leadshark", signatures::leadshark),
    ("leadshark_reserialise", reserialise::leadshark_reserialise),
    ("config_load", config::config_load),
    ("merge_patch", merge::merge_patch),
];

/// The most characters a rejection message may have: it is sent to the client, and every
/// value from the request in it is clipped.
pub const MAX_MESSAGE: usize = 400;

/// Whether two JSON values say the same thing: numbers compare as numbers (`1.0` is `1`),
/// integers exactly; with `js_numbers`, an integer beyond 2^53 compares as the double a
/// JavaScript number would hold. Objects compare as maps (key order aside).
pub fn same_json(a: &serde_json::Value, b: &serde_json::Value, js_numbers: bool) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w, js_numbers)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same_json(v, w, js_numbers))
        }
        (Value::Number(x), Value::Number(y)) => match (x.as_i128(), y.as_i128()) {
            (Some(i), Some(j))
                if !js_numbers || i.unsigned_abs().max(j.unsigned_abs()) <= 1 << 53 =>
            {
                i == j
            }
            _ => x.as_f64() == y.as_f64(),
        },
        _ => a == b,
    }
}
