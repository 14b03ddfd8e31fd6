//! The `slack` scheme: `X-Slack-Signature: v0=<hex>`, the HMAC-SHA256 of
//! `v0:{X-Slack-Request-Timestamp}:{body}` keyed with the app's signing secret (UTF-8).
//!
//! ```toml
//! [[sources]]
//! name = "slack"
//! path = "/webhooks/slack"
//! verify = { scheme = "slack", secrets = ["${SLACK_SIGNING_SECRET}"], tolerance = "5m" }
//! ```
//!
//! Slack sends the Events API as JSON, but slash commands and interactivity as
//! `application/x-www-form-urlencoded`: this scheme accepts both. A form body becomes a
//! JSON object of its fields; the `payload` field of an interaction (JSON text) is parsed
//! in place. The event type, first match wins:
//! 1. `event.type` when `type` is `event_callback` (Events API: `app_mention`, `message`);
//! 2. `type` (`url_verification`, `app_rate_limited`);
//! 3. `payload.type` (interactivity: `block_actions`, `view_submission`);
//! 4. `command` (slash commands: `/deploy`).
//!
//! The idempotency key is `event_id` (kept by the Events API's retries), else `trigger_id`
//! (commands and interactions), else a hash of the body. All of them are signed.

use serde_json::Value;

use super::common::{
    FORM, TimedKeys, TimedSecretsConfig, check_age, content_type_essence, digest_key, form_object,
    is_json, json_object, malformed, prefixed_hex_tag, signature_header, string_at,
    timestamp_header,
};
use super::sign::{Header, Signing};
use super::{Rejection, Unverified, Verified, Verifier};

pub(crate) const SIGNATURE_HEADER: &str = "X-Slack-Signature";
pub(crate) const TIMESTAMP_HEADER: &str = "X-Slack-Request-Timestamp";

/// `verify = { scheme = "slack", secrets = [...], tolerance = "5m" }`: every signing secret
/// accepted; the tolerance as Slack recommends.
pub type SlackConfig = TimedSecretsConfig;

#[derive(Debug, Clone)]
pub(crate) struct SlackVerifier(TimedKeys);

impl SlackVerifier {
    pub(crate) fn build(config: &SlackConfig) -> Result<Self, String> {
        config.timed_keys("slack").map(SlackVerifier)
    }
}

/// What Slack signs: `v0:{timestamp}:{body}`.
fn message<'a>(timestamp: &'a [u8], body: &'a [u8]) -> [&'a [u8]; 4] {
    [b"v0:", timestamp, b":", body]
}

impl SlackVerifier {
    /// `v0=<hex>` with the first secret.
    fn signature(&self, timestamp: &[u8], body: &[u8]) -> String {
        let tag = self.0.keys.sign_with_first(&message(timestamp, body));
        format!("v0={}", hex::encode(tag))
    }
}

impl Verifier for SlackVerifier {
    fn sign(&self, s: &Signing<'_>) -> Result<Vec<Header>, String> {
        let t = s.timestamp.to_string();
        Ok(vec![
            (TIMESTAMP_HEADER.into(), t.clone()),
            (
                SIGNATURE_HEADER.into(),
                self.signature(t.as_bytes(), s.body),
            ),
        ])
    }

    fn expected(&self, req: &Unverified<'_>) -> Vec<Header> {
        match timestamp_header(req.headers, TIMESTAMP_HEADER) {
            Ok((t, _)) => vec![(SIGNATURE_HEADER.into(), self.signature(t, req.body))],
            Err(_) => Vec::new(),
        }
    }

    fn verify(&self, req: &Unverified<'_>) -> Result<Verified, Rejection> {
        let tag = parse_signature(signature_header(req.headers, SIGNATURE_HEADER)?)
            .map_err(|problem| malformed(SIGNATURE_HEADER, problem))?;
        let (timestamp, signed_at) = timestamp_header(req.headers, TIMESTAMP_HEADER)?;
        if !self.0.keys.matches(&message(timestamp, req.body), &[&tag]) {
            return Err(Rejection::BadSignature);
        }
        check_age(signed_at, req.now, self.0.tolerance)?;
        decoded(req)
    }

    fn decode(&self, req: &Unverified<'_>) -> Option<Result<Verified, Rejection>> {
        Some(decoded(req))
    }

    /// Slack checks a Request URL by sending a signed `url_verification` event and waits for
    /// its `challenge` back.
    fn handshake(&self, verified: &Verified) -> Option<Value> {
        if verified.event_type != "url_verification" {
            return None;
        }
        let challenge = verified.payload.get("challenge")?.as_str()?;
        Some(serde_json::json!({ "challenge": challenge }))
    }

    fn accepts_content_type(&self, essence: &str) -> bool {
        is_json(essence) || essence == FORM
    }
}

/// Everything after the signature check: a form (interactivity, slash commands) or a JSON
/// event, its type and id.
fn decoded(req: &Unverified<'_>) -> Result<Verified, Rejection> {
    let payload = if content_type_essence(req.headers) == FORM {
        form_object(req.body)
    } else {
        json_object(req.body)?
    };
    let event_type = event_type(&payload)?;
    let idempotency_key = ["event_id", "trigger_id", "payload.trigger_id"]
        .into_iter()
        .find_map(|path| string_at(&payload, path))
        .map(str::to_string)
        .unwrap_or_else(|| digest_key(&[req.body]));
    Ok(Verified {
        payload,
        event_type,
        idempotency_key: Some(idempotency_key),
    })
}

fn event_type(payload: &Value) -> Result<String, Rejection> {
    let inner = (string_at(payload, "type") == Some("event_callback"))
        .then(|| string_at(payload, "event.type"))
        .flatten();
    inner
        .or_else(|| string_at(payload, "type"))
        .or_else(|| string_at(payload, "payload.type"))
        .or_else(|| string_at(payload, "command"))
        .map(str::to_string)
        .ok_or(Rejection::MissingEvent {
            field: "type\" or \"command".into(),
        })
}

/// `v0=` and 64 hex digits (either case).
pub(crate) fn parse_signature(value: &[u8]) -> Result<[u8; 32], &'static str> {
    prefixed_hex_tag(
        value,
        b"v0=",
        "expected `v0=` and 64 hexadecimal characters",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::common::default_tolerance;
    use crate::verify::common::{Algorithm, Keyring};
    use crate::verify::testing::*;
    use hookline_plugin_api::Secret;
    use proptest::prelude::*;

    /// Slack's published example (docs "Verifying requests from Slack"; python-slack-sdk).
    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const T: i64 = 1531420618;
    const SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
    const BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";

    fn verifier(secrets: &[&str]) -> SlackVerifier {
        SlackVerifier::build(&SlackConfig {
            secrets: secrets.iter().map(|s| Secret::new(*s)).collect(),
            tolerance: default_tolerance(),
        })
        .expect("builds")
    }

    fn sign(secret: &str, t: i64, body: &str) -> String {
        let ring = Keyring::utf8("t", Algorithm::Sha256, &[Secret::new(secret)]).expect("key");
        let tag = ring.sign_with_first(&[format!("v0:{t}:{body}").as_bytes()]);
        format!("v0={}", hex::encode(tag))
    }

    fn send(
        v: &SlackVerifier,
        sig: &str,
        ts: &str,
        body: &str,
        now: i64,
    ) -> Result<Verified, Rejection> {
        let h = [
            ("Content-Type", FORM),
            (SIGNATURE_HEADER, sig),
            (TIMESTAMP_HEADER, ts),
        ];
        verify(v, &h, body.as_bytes(), at(now))
    }

    #[test]
    fn official_example_verifies_as_a_slash_command() {
        assert_eq!(sign(SECRET, T, BODY), SIG);
        let ok = send(&verifier(&[SECRET]), SIG, &T.to_string(), BODY, T).expect("valid");
        assert_eq!(ok.event_type, "/webhook-collect");
        assert_eq!(ok.payload["user_name"], "roadrunner");
        assert_eq!(ok.payload["text"], "");
        assert_eq!(
            ok.payload["response_url"],
            "https://hooks.slack.com/commands/T1DC2JH3J/397700885554/96rGlfmibIGlgcZRskXaIFfN"
        );
        assert_eq!(
            ok.idempotency_key.as_deref(),
            Some("398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c")
        );
    }

    #[test]
    fn events_api_json_and_interactivity_forms() {
        let v = verifier(&[SECRET]);
        let ts = T.to_string();
        let json = r#"{"type":"event_callback","event_id":"Ev1","event":{"type":"app_mention","text":"hi"}}"#;
        let h = [
            (SIGNATURE_HEADER, sign(SECRET, T, json)),
            (TIMESTAMP_HEADER, ts.clone()),
            ("Content-Type", "application/json".into()),
        ];
        let h: Vec<_> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let ok = verify(&v, &h, json.as_bytes(), at(T)).expect("valid");
        assert_eq!(
            (ok.event_type.as_str(), ok.idempotency_key.as_deref()),
            ("app_mention", Some("Ev1"))
        );

        let challenge = r#"{"type":"url_verification","challenge":"3eZbrw1a"}"#;
        let h = [
            (SIGNATURE_HEADER, sign(SECRET, T, challenge)),
            (TIMESTAMP_HEADER, ts.clone()),
        ];
        let h: Vec<_> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let handshake = verify(&v, &h, challenge.as_bytes(), at(T)).expect("valid");
        assert_eq!(handshake.event_type, "url_verification");
        assert_eq!(
            v.handshake(&handshake),
            Some(serde_json::json!({"challenge": "3eZbrw1a"}))
        );
        assert_eq!(v.handshake(&ok), None, "an event is no handshake");

        let interaction =
            "payload=%7B%22type%22%3A%22block_actions%22%2C%22trigger_id%22%3A%22tr1%22%7D";
        let ok = send(&v, &sign(SECRET, T, interaction), &ts, interaction, T).expect("valid");
        assert_eq!(ok.event_type, "block_actions");
        assert_eq!(ok.payload["payload"]["trigger_id"], "tr1");
        assert_eq!(ok.idempotency_key.as_deref(), Some("tr1"));

        let nothing = "a=1";
        let r = send(&v, &sign(SECRET, T, nothing), &ts, nothing, T);
        assert_eq!(outcome(r, &[]), (400, "missing_event"));
        assert!(v.accepts_content_type(FORM) && v.accepts_content_type("application/json"));
        assert!(!v.accepts_content_type("text/plain"));
    }

    #[test]
    fn rotated_tampered_wrong_secret_expired_and_future() {
        let ts = T.to_string();
        let v = verifier(&["new-signing-secret", SECRET]);
        assert!(send(&v, SIG, &ts, BODY, T).is_ok(), "second secret");
        let tampered = BODY.replace("roadrunner", "coyote");
        assert_eq!(
            outcome(send(&v, SIG, &ts, &tampered, T), &[SECRET]),
            (401, "bad_signature")
        );
        let r = rejected(send(&verifier(&["other"]), SIG, &ts, BODY, T), &[SECRET]);
        assert_eq!(r.to_string(), "invalid signature");
        let moved = (T + 1).to_string();
        assert_eq!(
            outcome(send(&v, SIG, &moved, BODY, T), &[]),
            (401, "bad_signature")
        );
        assert!(send(&v, SIG, &ts, BODY, T + 300).is_ok());
        assert_eq!(
            outcome(send(&v, SIG, &ts, BODY, T + 301), &[]),
            (401, "timestamp_expired")
        );
        assert_eq!(
            outcome(send(&v, SIG, &ts, BODY, T - 301), &[]),
            (401, "timestamp_in_future")
        );
    }

    #[test]
    fn missing_malformed_and_repeated_headers_are_401() {
        let v = verifier(&[SECRET]);
        let ts = T.to_string();
        let r = rejected(
            verify(&v, &[(TIMESTAMP_HEADER, &ts)], BODY.as_bytes(), at(T)),
            &[],
        );
        assert_eq!(r.to_string(), "missing X-Slack-Signature header");
        let r = rejected(
            verify(&v, &[(SIGNATURE_HEADER, SIG)], BODY.as_bytes(), at(T)),
            &[],
        );
        assert_eq!(
            (r.status(), r.to_string().as_str()),
            (401, "missing X-Slack-Request-Timestamp header")
        );
        for sig in [&SIG[3..], "v1=00", "v0=", &SIG[..66], "v0=zz"] {
            let r = rejected(send(&v, sig, &ts, BODY, T), &[SECRET]);
            assert_eq!(
                (r.status(), r.reason()),
                (401, "malformed_signature"),
                "{sig}"
            );
        }
        let r = rejected(send(&v, SIG, "yesterday", BODY, T), &[]);
        assert_eq!(
            r.to_string(),
            "malformed X-Slack-Request-Timestamp header: expected Unix time in seconds"
        );
        // Slack sends one signature; two (one valid) are refused.
        let h = [
            (SIGNATURE_HEADER, SIG),
            (SIGNATURE_HEADER, "v0=00"),
            (TIMESTAMP_HEADER, &ts),
        ];
        assert_eq!(
            outcome(verify(&v, &h, BODY.as_bytes(), at(T)), &[]),
            (401, "malformed_signature")
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn header_parsers_never_panic(
            sig in header_bytes(&["v0=", "a2114d57b48eac39", "0", "g", " "]),
            ts in header_bytes(&["1531420618", "-", "1", " "]),
            body in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let _ = parse_signature(&sig);
            let _ = form_object(&body);
            never_panics(&verifier(&[SECRET]), &[SIGNATURE_HEADER, TIMESTAMP_HEADER], &[sig, ts], &body);
        }
    }
}
