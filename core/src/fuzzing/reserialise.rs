//! LeadShark's re-serialisation (`verify::leadshark`): a body that does not match over its raw
//! bytes is parsed and checked in the compact forms LeadShark's Node and Python snippets
//! sign. For any input that is JSON:
//!
//! - each form is JSON that says what the body says (numbers as numbers; in the Node form an
//!   integer beyond 2^53 as the double JavaScript holds), re-serialises to itself, and the
//!   Python form is printable ASCII;
//! - a body signed in either form verifies (or fails only on its payload, with a 400), with
//!   the form's hash as idempotency key, except that the Node form is refused as "not what
//!   was signed" exactly when it says something else than the body;
//! - a rejection's message stays short enough for a response;
//! - padded past `MAX_RESERIALIZE`, the same body is checked over its raw bytes only.
//!
//! The first 8 bytes, read as a double, also go through both number formats: the text
//! reads back as the same double and is spelled as JavaScript and Python spell it.

use hookline_plugin_api::Secret;
use serde::Serialize;
use serde_json::Value;
use serde_json::ser::Formatter;
use sha2::{Digest, Sha256};

use super::{MAX_MESSAGE, same_json};
use crate::verify::leadshark::{self, MAX_RESERIALIZE, NodeFormatter, PythonFormatter};
use crate::verify::{Rejection, Unverified, Verifier};

const SECRET: &str = "leadshark-fuzz-secret";

pub fn leadshark_reserialise(data: &[u8]) {
    if let Some(bytes) = data.first_chunk::<8>() {
        double(f64::from_le_bytes(*bytes));
    }
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let node = compact(&value, NodeFormatter);
    let python = compact(&value, PythonFormatter);
    for (form, bytes, js_numbers) in [("Node", &node, true), ("Python", &python, false)] {
        let again: Value = serde_json::from_slice(bytes)
            .unwrap_or_else(|e| panic!("the {form} form is not JSON: {e}"));
        assert!(
            same_json(&value, &again, js_numbers),
            "the {form} form says something else"
        );
    }
    assert_eq!(compact(&parse(&node), NodeFormatter), node, "Node form");
    assert_eq!(
        compact(&parse(&python), PythonFormatter),
        python,
        "Python form"
    );
    assert!(
        python.iter().all(|b| (0x20..0x7f).contains(b)),
        "the Python form is not printable ASCII"
    );

    let verifier = leadshark::LeadsharkVerifier::new(&[Secret::new(SECRET)], true).expect("builds");
    if data.len() <= MAX_RESERIALIZE {
        let node_says_the_same = same_json(&value, &parse(&node), false);
        for form in [&node, &python] {
            // The verifier tries the Node form first, so a Python form spelled the same is
            // refused the same way.
            let refused = form == &node && !node_says_the_same;
            let result = verify(&verifier, form, data);
            if let Err(r) = &result {
                let chars = r.to_string().chars().count();
                assert!(
                    chars <= MAX_MESSAGE,
                    "a rejection message of {chars} characters"
                );
            }
            match result {
                Ok(verified) if !refused => {
                    assert_eq!(verified.payload, value);
                    let key = hex::encode(Sha256::digest(form));
                    assert_eq!(verified.idempotency_key.as_deref(), Some(key.as_str()));
                }
                Err(Rejection::NotWhatWasSigned(_)) if refused => {}
                Err(r) if !refused => {
                    assert_eq!(r.status(), 400, "a body signed in compact form: {r}")
                }
                Ok(_) => panic!("a Node form that changes a number was accepted"),
                Err(r) => panic!("a Node form that changes a number: {r}"),
            }
        }
    }
    // Rarely (it hashes 256 KiB), the size limit: past it, only the raw bytes are checked.
    if data.len() % 32 == 7 {
        let mut padded = data.to_vec();
        padded.resize(MAX_RESERIALIZE + 1, b' ');
        assert!(
            matches!(
                verify(&verifier, &node, &padded),
                Err(Rejection::BadSignature)
            ),
            "a body over MAX_RESERIALIZE was re-serialised"
        );
    }
}

/// `body`, with the signature LeadShark would send for `signed`.
fn verify(
    v: &leadshark::LeadsharkVerifier,
    signed: &[u8],
    body: &[u8],
) -> Result<crate::verify::Verified, Rejection> {
    let mut headers = http::HeaderMap::new();
    let signature = hookline_leadshark::sign(SECRET, signed);
    headers.insert(
        http::HeaderName::from_bytes(leadshark::SIGNATURE_HEADER.as_bytes()).expect("name"),
        http::HeaderValue::from_str(&signature).expect("hex"),
    );
    let now = jiff::Timestamp::from_second(1_700_000_000).expect("in range");
    v.verify(&Unverified {
        headers: &headers,
        body,
        target: None,
        now,
    })
}

fn compact(value: &Value, formatter: impl Formatter) -> Vec<u8> {
    let mut ser = serde_json::Serializer::with_formatter(Vec::new(), formatter);
    value.serialize(&mut ser).expect("a Value serialises");
    ser.into_inner()
}

fn parse(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("a compact form is JSON")
}

/// One double through both number formats.
fn double(f: f64) {
    if !f.is_finite() {
        return;
    }
    let value = Value::from(f);
    let js = String::from_utf8(compact(&value, NodeFormatter)).expect("UTF-8");
    let py = String::from_utf8(compact(&value, PythonFormatter)).expect("UTF-8");
    for text in [&js, &py] {
        let back: f64 = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert!(back == f, "{text} reads back as {back}, not {f:e}");
    }
    // JavaScript: exponent form only from 1e21 up and below 1e-6, never a trailing `.0`.
    let exponent = js.contains('e');
    assert_eq!(
        exponent,
        f != 0.0 && (f.abs() >= 1e21 || f.abs() < 1e-6),
        "{js}"
    );
    assert!(!js.ends_with(".0") && !js.contains(".e"), "{js}");
    // Python's repr: always a point or an exponent, exponent from 1e16 up and below 1e-4.
    assert!(py.contains('.') || py.contains('e'), "{py}");
    assert_eq!(
        py.contains('e'),
        f != 0.0 && (f.abs() >= 1e16 || f.abs() < 1e-4),
        "{py}"
    );
}
