//! LeadShark verification, against signers built from its documented snippets.

use super::*;
use hookline_leadshark::{samples, sign};
use http::{HeaderMap, HeaderValue};
use serde_json::json;
use std::io::Write as _;
use std::process::{Command, Stdio};

const SECRET: &str = "whsec_test_5f1d0c";

// ---- signers built from LeadShark's own documented snippets ----

#[derive(Debug, Clone, Copy)]
enum Snippet {
    Node,
    Python,
}

/// What a snippet makes of one payload: the text it hashed (its serialisation), the
/// signature, and a pretty-printed body (`JSON.stringify(p, null, 2)` /
/// `json.dumps(p, indent=2, ensure_ascii=False)`).
#[derive(Debug, serde::Deserialize)]
struct Signed {
    body: String,
    sig: String,
    pretty: String,
}

/// The docs' `verifySignature` expression, verbatim, inside a loop over payloads.
const NODE: &str = r#"
const crypto = require('crypto');
const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const secret = input.secret;
const out = input.payloads.map((text) => {
  const payload = JSON.parse(text);
  const expected = crypto
    .createHmac('sha256', secret)
    .update(JSON.stringify(payload))
    .digest('hex');
  return { body: JSON.stringify(payload), sig: expected, pretty: JSON.stringify(payload, null, 2) };
});
process.stdout.write(JSON.stringify(out));
"#;

/// The docs' Flask example's `expected = ...` expression, verbatim.
const PYTHON: &str = r#"
import hashlib, hmac, json, sys
inp = json.loads(sys.stdin.buffer.read().decode('utf-8'))
secret = inp['secret']
out = []
for text in inp['payloads']:
    payload = json.loads(text)
    expected = hmac.new(secret.encode(),
        json.dumps(payload, separators=(',',':')).encode(),
        hashlib.sha256).hexdigest()
    out.append({'body': json.dumps(payload, separators=(',',':')), 'sig': expected,
                'pretty': json.dumps(payload, indent=2, ensure_ascii=False)})
sys.stdout.write(json.dumps(out))
"#;

/// Run a snippet over `payloads` (JSON texts the tool parses itself). Secret and
/// payloads go through stdin, never through a shell.
fn run_snippet(snippet: Snippet, secret: &str, payloads: &[String]) -> Vec<Signed> {
    let (program, flag, script) = match snippet {
        Snippet::Node => ("node", "-e", NODE),
        Snippet::Python => ("python3", "-c", PYTHON),
    };
    let mut child = Command::new(program)
        .args([flag, script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("`{program}` is needed by these tests: {e}"));
    let input = json!({"secret": secret, "payloads": payloads}).to_string();
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("snippet runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{program} failed: {stderr}");
    let signed: Vec<Signed> = serde_json::from_slice(&out.stdout).expect("snippet output");
    assert_eq!(signed.len(), payloads.len());
    signed
}

// ---- helpers ----

fn verifier(secrets: &[&str], reserialize: bool) -> LeadsharkVerifier {
    let secrets: Vec<_> = secrets.iter().map(|s| Secret::new(*s)).collect();
    LeadsharkVerifier::new(&secrets, reserialize).expect("valid secrets")
}

fn headers(sigs: &[&[u8]], events: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for sig in sigs {
        let value = HeaderValue::from_bytes(sig).expect("valid header value");
        h.append(SIGNATURE_HEADER, value);
    }
    for event in events {
        h.append(
            EVENT_HEADER,
            HeaderValue::from_str(event).expect("valid header"),
        );
    }
    h
}

fn check(v: &LeadsharkVerifier, body: &[u8], sig: &str) -> Result<Verified, Rejection> {
    v.verify(&Unverified {
        headers: &headers(&[sig.as_bytes()], &[]),
        body,
        target: None,
        now: jiff::Timestamp::UNIX_EPOCH,
    })
}

/// A rejection, after checking its message leaks neither the secret nor the signature
/// the body would need.
fn rejected(result: Result<Verified, Rejection>, body: &[u8]) -> Rejection {
    let rejection = result.expect_err("rejected");
    let message = rejection.to_string().to_lowercase();
    assert!(!message.contains(&SECRET.to_lowercase()), "{message}");
    assert!(!message.contains(&sign(SECRET, body)), "{message}");
    assert!(Rejection::REASONS.contains(&rejection.reason()));
    rejection
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is JSON")
}

const UNICODE: &str = r#"{"event":"email.captured","timestamp":"2026-05-09T08:00:00.000Z","data":{"lead":{"name":"José Müller","title":"Zoë Ångström, 🦈 Shark Ops","email":"jose.muller@example.com","linkedin_username":"jose-müller"},"automation":null,"note":"tab\there \"quoted\" back\\slash </script> \u0000\u001f\u007f del, \u2028 sep, 𝄞 clef, €"},"payload_version":2}"#;
const NUMBERS_BOTH: &str = r#"{"event":"new.like","data":{"lead":{"name":"N"}},"n":[0,1,-1,1.0,-2.5,0.1,1e21,1e-7,1.5e300,5e-324,1e16,1e15,0.0001,0.00001,123.456,9007199254740993,18446744073709551615,-9223372036854775808,2.5e-5,1e22,100000000000000000000.0,1.7976931348623157e308,1e-6,true,false,null]}"#;
/// Numbers where serde_json cannot tell what Python had (see the module docs).
const NUMBERS_NODE_ONLY: &str =
    r#"{"event":"new.like","data":{},"n":[-0,-9223372036854775809,18446744073709551616]}"#;

/// The docs' payloads verbatim, a v2 `lead.sent`, non-ASCII and emoji names, escapes
/// and numbers.
fn payloads() -> Vec<String> {
    let mut texts: Vec<String> = samples::DOCS_PAYLOADS
        .iter()
        .map(|(_, text)| text.to_string())
        .collect();
    let lead_sent = samples::sample("lead.sent", 7).expect("sample");
    texts.push(serde_json::to_string_pretty(&lead_sent).expect("serialises"));
    let mut sharky = lead_sent;
    sharky["data"]["lead"]["name"] = json!("🦈 Shark");
    texts.push(sharky.to_string());
    texts.push(UNICODE.to_string());
    texts.push(NUMBERS_BOTH.to_string());
    texts
}

// ---- the re-serialisations match the snippets byte for byte ----

#[test]
fn compact_forms_equal_each_snippets_serialisation() {
    let texts = payloads();
    let node = run_snippet(Snippet::Node, SECRET, &texts);
    let python = run_snippet(Snippet::Python, SECRET, &texts);
    for ((text, node), python) in texts.iter().zip(&node).zip(&python) {
        let value = parse(text);
        let ours = compact(&value, NodeFormatter).expect("serialises");
        assert_eq!(
            String::from_utf8_lossy(&ours),
            node.body,
            "Node form of {text}"
        );
        let ours = compact(&value, PythonFormatter).expect("serialises");
        assert_eq!(
            String::from_utf8_lossy(&ours),
            python.body,
            "Python form of {text}"
        );
    }
    let texts = [NUMBERS_NODE_ONLY.to_string()];
    let node = run_snippet(Snippet::Node, SECRET, &texts);
    let ours = compact(&parse(NUMBERS_NODE_ONLY), NodeFormatter).expect("serialises");
    assert_eq!(String::from_utf8_lossy(&ours), node[0].body);
}

#[test]
fn number_formatting_follows_javascript_and_python() {
    let cases = [
        (0.0, "0", "0.0"),
        (-0.0, "0", "-0.0"),
        (1.0, "1", "1.0"),
        (-2.5, "-2.5", "-2.5"),
        (1e21, "1e+21", "1e+21"),
        (1e20, "100000000000000000000", "1e+20"),
        (1e16, "10000000000000000", "1e+16"),
        (1e15, "1000000000000000", "1000000000000000.0"),
        (1e-7, "1e-7", "1e-07"),
        (1e-6, "0.000001", "1e-06"),
        (1e-4, "0.0001", "0.0001"),
        (1.5e300, "1.5e+300", "1.5e+300"),
        (5e-324, "5e-324", "5e-324"),
        (123.456, "123.456", "123.456"),
    ];
    for (value, js, py) in cases {
        assert_eq!(js_number(value), js, "{value:e}");
        assert_eq!(python_float(value), py, "{value:e}");
    }
}

// ---- every layout of a delivery, signed by either snippet, verifies ----

#[test]
fn bodies_signed_by_either_docs_snippet_verify_in_any_layout() {
    let texts = payloads();
    let node = run_snippet(Snippet::Node, SECRET, &texts);
    let python = run_snippet(Snippet::Python, SECRET, &texts);
    let lenient = verifier(&[SECRET], true);
    let strict = verifier(&[SECRET], false);
    for (i, text) in texts.iter().enumerate() {
        let expected = parse(text);
        let layouts: [&str; 5] = [
            text.as_str(),
            &node[i].body,
            &node[i].pretty,
            &python[i].body,
            &python[i].pretty,
        ];
        for signer in [&node[i], &python[i]] {
            let key = sha256_hex(signer.body.as_bytes());
            for body in layouts {
                let from_node = body == node[i].body || body == node[i].pretty;
                if text == NUMBERS_BOTH && std::ptr::eq(signer, &python[i]) && from_node {
                    continue; // Node rounded 9007199254740993: other data than signed
                }
                let result = check(&lenient, body.as_bytes(), &signer.sig);
                let changed =
                    first_difference(&parse(body), &parse(&signer.body), &mut String::new());
                if body != signer.body && changed.is_some() {
                    // The round trip changes a value (JavaScript rounds 9007199254740993):
                    // what would be stored is not what was signed (bulkheads, F13).
                    let r = rejected(result, body.as_bytes());
                    assert_eq!(
                        (r.status(), r.reason()),
                        (401, "not_what_was_signed"),
                        "{body}"
                    );
                    continue;
                }
                let verified = result
                    .unwrap_or_else(|e| panic!("{e}: body {body} signed over {}", signer.body));
                assert_eq!(verified.payload, parse(body));
                assert_eq!(
                    verified.event_type,
                    expected["event"].as_str().expect("event")
                );
                // Every layout of one delivery dedupes to the same key.
                assert_eq!(verified.idempotency_key.as_deref(), Some(key.as_str()));

                let strict_result = check(&strict, body.as_bytes(), &signer.sig);
                if body == signer.body {
                    assert!(strict_result.is_ok());
                } else {
                    let r = rejected(strict_result, body.as_bytes());
                    assert_eq!((r.status(), r.reason()), (401, "bad_signature"), "{body}");
                }
            }
        }
    }
}

#[test]
fn the_docs_snippets_disagree_on_non_ascii_and_both_are_accepted() {
    let texts = [UNICODE.to_string()];
    let (node, python) = (
        &run_snippet(Snippet::Node, SECRET, &texts)[0],
        &run_snippet(Snippet::Python, SECRET, &texts)[0],
    );
    assert_ne!(node.sig, python.sig, "the trap the fallback exists for");
    assert!(python.body.contains(r"Jos\u00e9") && python.body.contains(r"\ud83e\udd88"));
    assert!(node.body.contains("José") && node.body.contains('🦈'));
    let v = verifier(&[SECRET], true);
    for body in [&node.pretty, &python.pretty] {
        assert!(check(&v, body.as_bytes(), &node.sig).is_ok());
        assert!(check(&v, body.as_bytes(), &python.sig).is_ok());
    }
}

#[test]
fn a_non_ascii_secret_is_keyed_by_its_utf8_bytes() {
    let secret = "sécret-🦈-ключ";
    let texts = [samples::EMAIL_CAPTURED.to_string()];
    let v = verifier(&[secret], true);
    for snippet in [Snippet::Node, Snippet::Python] {
        let signed = &run_snippet(snippet, secret, &texts)[0];
        assert_eq!(signed.sig, sign(secret, signed.body.as_bytes()));
        assert!(check(&v, samples::EMAIL_CAPTURED.as_bytes(), &signed.sig).is_ok());
    }
}

#[test]
fn rotation_accepts_every_configured_secret() {
    let (old, new) = ("old-secret", "new-secret");
    let texts = [samples::COMMENT.to_string()];
    let v = verifier(&[new, old], true);
    for secret in [old, new] {
        let signed = &run_snippet(Snippet::Node, secret, &texts)[0];
        assert!(
            check(&v, signed.body.as_bytes(), &signed.sig).is_ok(),
            "{secret}"
        );
        assert!(
            check(&v, signed.pretty.as_bytes(), &signed.sig).is_ok(),
            "{secret}"
        );
    }
    let other = &run_snippet(Snippet::Node, "retired-secret", &texts)[0];
    let r = rejected(
        check(&v, other.body.as_bytes(), &other.sig),
        other.body.as_bytes(),
    );
    assert_eq!(r.reason(), "bad_signature");
}

// ---- rejections ----

#[test]
fn wrong_secret_and_tampered_bodies_are_401() {
    let body = compact(&parse(samples::EMAIL_CAPTURED), NodeFormatter).expect("json");
    let sig = sign(SECRET, &body);
    let v = verifier(&[SECRET], true);
    assert!(check(&v, &body, &sig).is_ok());

    let wrong = sign("not-the-secret", &body);
    let r = rejected(check(&v, &body, &wrong), &body);
    assert_eq!((r.status(), r.reason()), (401, "bad_signature"));
    assert_eq!(r.to_string(), "invalid signature");

    let text = String::from_utf8(body.clone()).expect("utf-8");
    let tampered = text.replace("john.doe@example.com", "mallory@example.com");
    let r = rejected(check(&v, tampered.as_bytes(), &sig), tampered.as_bytes());
    assert_eq!(r.reason(), "bad_signature");
    let pretty = serde_json::to_string_pretty(&parse(&tampered)).expect("json");
    let r = rejected(check(&v, pretty.as_bytes(), &sig), pretty.as_bytes());
    assert_eq!(r.reason(), "bad_signature");

    // Not JSON and not signed: a signature failure, not a 400.
    let r = rejected(check(&v, b"not json at all", &sig), b"not json at all");
    assert_eq!((r.status(), r.reason()), (401, "bad_signature"));
}

#[test]
fn missing_and_malformed_signature_headers_are_401() {
    let body = samples::LIKE.as_bytes();
    let v = verifier(&[SECRET], true);
    let no_header = v.verify(&Unverified {
        headers: &HeaderMap::new(),
        body,
        target: None,
        now: jiff::Timestamp::UNIX_EPOCH,
    });
    let r = rejected(no_header, body);
    assert_eq!((r.status(), r.reason()), (401, "missing_signature"));
    assert_eq!(r.to_string(), "missing X-Webhook-Signature header");

    let good = sign(SECRET, body);
    let malformed = [
        good[..63].to_string(),
        format!("{good}0"),
        "g".repeat(64),
        String::new(),
        format!("sha256={good}"),
        format!("{} {}", &good[..32], &good[32..]),
        format!("{}é", &good[..62]),
    ];
    for sig in &malformed {
        let h = headers(&[sig.as_bytes()], &[]);
        let r = rejected(
            v.verify(&Unverified {
                headers: &h,
                body,
                target: None,
                now: jiff::Timestamp::UNIX_EPOCH,
            }),
            body,
        );
        assert_eq!(
            (r.status(), r.reason()),
            (401, "malformed_signature"),
            "{sig:?}"
        );
        assert!(r.to_string().contains("64 hexadecimal"), "{r}");
    }

    let twice = headers(&[good.as_bytes(), good.as_bytes()], &[]);
    let r = rejected(
        v.verify(&Unverified {
            headers: &twice,
            body,
            target: None,
            now: jiff::Timestamp::UNIX_EPOCH,
        }),
        body,
    );
    assert_eq!(r.reason(), "malformed_signature");

    let upper = good.to_uppercase();
    assert!(check(&v, body, &upper).is_ok(), "upper-case hex is fine");
    assert!(
        check(&v, body, &format!(" {good} ")).is_ok(),
        "surrounding blanks"
    );
}

/// Sign `body` over its raw bytes and verify it (400s only happen after that).
fn verify_signed(body: &[u8], events: &[&str]) -> Result<Verified, Rejection> {
    let sig = sign(SECRET, body);
    let h = headers(&[sig.as_bytes()], events);
    verifier(&[SECRET], true).verify(&Unverified {
        headers: &h,
        body,
        target: None,
        now: jiff::Timestamp::UNIX_EPOCH,
    })
}

#[test]
fn event_header_must_agree_with_the_signed_payload() {
    let body = samples::EMAIL_CAPTURED.as_bytes();
    let ok = verify_signed(body, &["email.captured"]).expect("agrees");
    assert_eq!(ok.event_type, "email.captured");
    assert!(verify_signed(body, &[]).is_ok(), "the header is optional");

    let r = rejected(verify_signed(body, &["new.like"]), body);
    assert_eq!((r.status(), r.reason()), (400, "event_mismatch"));
    let message = r.to_string();
    assert!(message.contains("\"new.like\"") && message.contains("\"email.captured\""));
    assert!(message.contains("X-Webhook-Event"), "{message}");

    let r = rejected(verify_signed(body, &["email.captured", "new.like"]), body);
    assert_eq!(r.reason(), "event_mismatch");

    let long = "x".repeat(5000);
    let r = rejected(verify_signed(body, &[&long]), body);
    assert!(r.to_string().len() < 300, "clipped: {r}");
}

#[test]
fn signed_but_undecodable_payloads_are_400() {
    let cases: [(&[u8], &str); 8] = [
        (br#"{"event": "new.like","#, "malformed_json"),
        (b"", "malformed_json"),
        (br#"[{"event": "new.like"}]"#, "not_an_object"),
        (br#""new.like""#, "not_an_object"),
        (br#"{"data": {}}"#, "missing_event"),
        (br#"{"event": 5, "data": {}}"#, "missing_event"),
        (br#"{"event": "", "data": {}}"#, "missing_event"),
        (br#"{"event": null}"#, "missing_event"),
    ];
    for (body, reason) in cases {
        let r = rejected(verify_signed(body, &[]), body);
        let text = String::from_utf8_lossy(body);
        assert_eq!((r.status(), r.reason()), (400, reason), "{text}");
    }
    let body = b"{\"event\": \"new.like\",\n \"data\": {]}";
    let r = rejected(verify_signed(body, &[]), body);
    assert!(r.to_string().contains("line 2 column"), "{r}");
    let r = rejected(verify_signed(b"[1,2]", &[]), b"[1,2]");
    assert_eq!(r.to_string(), "payload is not a JSON object");
    let r = rejected(verify_signed(b"{}", &[]), b"{}");
    assert_eq!(r.to_string(), "payload has no string \"event\" field");
}

#[test]
fn rfc4231_vector_is_accepted_as_a_signature() {
    // RFC 4231 test case 2: the signature is good, so what fails is the JSON (400).
    let body = b"what do ya want for nothing?";
    let sig = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
    let r = check(&verifier(&["Jefe"], true), body, sig).expect_err("not JSON");
    assert_eq!(r.reason(), "malformed_json");
}

#[test]
fn arbitrary_bytes_never_panic() {
    let v = verifier(&[SECRET, "second"], true);
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    const PIECES: &[&[u8]] = &[
        b"{",
        b"}",
        b"[",
        b"]",
        b"\"",
        b":",
        b",",
        b"\"event\"",
        b"\"new.like\"",
        b"1e400",
        b"-0",
        b"0.5",
        b"\\u",
        b"\\ud800",
        b"\xff",
        b"\xc3\xa9",
        b"\x7f",
        b" ",
        b"\n",
        b"null",
        b"true",
        b"\xf0\x9f\xa6\x88",
        b"\\",
        b"a",
    ];
    let mut bodies: Vec<Vec<u8>> = vec![
        vec![],
        b"[".repeat(100_000),
        format!("{}1{}", "[".repeat(200), "]".repeat(200)).into_bytes(),
        br#"{"event":"x","n":1e400}"#.to_vec(),
        br#"{"event":"x","s":"\ud800"}"#.to_vec(),
        vec![0; 64],
    ];
    for _ in 0..3000 {
        let len = (next() % 24) as usize;
        let body = (0..len)
            .flat_map(|_| {
                let r = next();
                if r % 5 == 0 {
                    vec![(r >> 8) as u8]
                } else {
                    PIECES[(r >> 8) as usize % PIECES.len()].to_vec()
                }
            })
            .collect();
        bodies.push(body);
    }
    for (i, body) in bodies.iter().enumerate() {
        let good = sign(if i % 2 == 0 { SECRET } else { "second" }, body);
        let random_hex = format!("{:016x}", next()).repeat(4);
        let random_bytes: Vec<u8> = (0..(next() % 70)).map(|_| next() as u8).collect();
        let sigs: [&[u8]; 3] = [good.as_bytes(), random_hex.as_bytes(), &random_bytes];
        for sig in sigs {
            let Ok(value) = HeaderValue::from_bytes(sig) else {
                continue;
            };
            let mut h = HeaderMap::new();
            h.insert(SIGNATURE_HEADER, value);
            match v.verify(&Unverified {
                headers: &h,
                body,
                target: None,
                now: jiff::Timestamp::UNIX_EPOCH,
            }) {
                Ok(verified) => {
                    assert!(verified.payload.is_object());
                    assert!(!verified.event_type.is_empty());
                }
                Err(r) => {
                    assert!(matches!(r.status(), 400 | 401));
                    assert!(Rejection::REASONS.contains(&r.reason()));
                    assert!(!r.to_string().is_empty());
                }
            }
        }
    }
}

/// F13 of the bulkheads issue: JavaScript signs `9007199254740993` as `…992` (a number is a
/// double), so a body carrying `…993` matched the signature of `…992` after re-serialisation
/// and the journal stored a number that was never signed. It is refused now; the body as
/// signed, and a float written differently (`1.0` for `1`), still verify.
#[test]
fn a_body_that_changes_in_the_round_trip_is_not_what_was_signed() {
    let v = verifier(&["s3cret"], true);
    let signed = br#"{"event":"new.like","timestamp":"2026-01-01T00:00:00Z","data":{"n":9007199254740992,"f":1}}"#;
    let sig = sign("s3cret", signed);
    assert!(check(&v, signed, &sig).is_ok(), "the signed body itself");
    let sent = br#"{"event":"new.like","timestamp":"2026-01-01T00:00:00Z","data":{"n":9007199254740993,"f":1}}"#;
    let r = rejected(check(&v, sent, &sig), sent);
    assert_eq!(r.status(), 401);
    assert_eq!(r.reason(), "not_what_was_signed");
    assert!(r.to_string().contains("data.n"), "{r}");
    let pretty = b"{ \"event\": \"new.like\", \"timestamp\": \"2026-01-01T00:00:00Z\", \"data\": { \"n\": 9007199254740992, \"f\": 1.0 } }";
    let ok = check(&v, pretty, &sig).expect("the same values in another layout");
    assert_eq!(ok.payload["data"]["n"], 9007199254740992u64);
}

/// Caught by the `leadshark_reserialise` fuzz harness (`fuzz/`, short rejections): the path in a "not what was signed" message is
/// made of the sender's keys, and was quoted whole (a 500-character key, a 500-character
/// error body). It is clipped like every other value a client sent.
#[test]
fn a_long_path_in_not_what_was_signed_is_clipped() {
    let v = verifier(&["s3cret"], true);
    let key = "k".repeat(500);
    let signed = format!(r#"{{"event":"new.like","{key}":9007199254740992}}"#);
    let sent = format!(r#"{{"event":"new.like","{key}":9007199254740993}}"#);
    let sig = sign("s3cret", signed.as_bytes());
    let r = rejected(check(&v, sent.as_bytes(), &sig), sent.as_bytes());
    assert_eq!(r.reason(), "not_what_was_signed");
    let message = r.to_string();
    assert!(message.chars().count() < 300, "{message}");
    assert!(message.contains(&format!(".{}…", &key[..63])), "{message}");
}

/// F7: above MAX_RESERIALIZE a body is not parsed to be tried in compact form (an unsigned
/// body would cost a parse); it must match over its raw bytes.
#[test]
fn bodies_above_the_reserialisation_limit_must_match_raw() {
    let v = verifier(&["s3cret"], true);
    let pad = "x".repeat(MAX_RESERIALIZE);
    let compact = format!(r#"{{"event":"new.like","data":{{"pad":"{pad}"}}}}"#);
    let sig = sign("s3cret", compact.as_bytes());
    assert!(check(&v, compact.as_bytes(), &sig).is_ok(), "raw match");
    let pretty = format!("{{ \"event\": \"new.like\", \"data\": {{ \"pad\": \"{pad}\" }} }}");
    let r = rejected(check(&v, pretty.as_bytes(), &sig), pretty.as_bytes());
    assert_eq!(r.reason(), "bad_signature");
}
