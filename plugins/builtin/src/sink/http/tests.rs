use std::sync::Mutex;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap as AxumHeaders, Method as AxumMethod, StatusCode as AxumStatus};
use axum::routing::any;
use serde_json::Value;

use super::*;
use crate::testutil::{config, ctx, event, leadshark_v1, leadshark_v2, spanned};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// What the test server received: method, headers, body.
type Seen = Arc<Mutex<Vec<(AxumMethod, AxumHeaders, Bytes)>>>;

async fn record(
    State(seen): State<Seen>,
    method: AxumMethod,
    headers: AxumHeaders,
    body: Bytes,
) -> AxumStatus {
    seen.lock().expect("lock").push((method, headers, body));
    AxumStatus::NO_CONTENT
}

/// A real server on 127.0.0.1:0; returns its base URL and what `/ok` received.
async fn server() -> (String, Seen) {
    let seen = Seen::default();
    let app = Router::new()
        .route("/ok", any(record))
        .route(
            "/fail",
            any(|| async {
                (
                    AxumStatus::INTERNAL_SERVER_ERROR,
                    "boom: database unavailable",
                )
            }),
        )
        .route(
            "/echo",
            any(|headers: AxumHeaders, uri: axum::http::Uri| async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                (
                    AxumStatus::BAD_REQUEST,
                    format!("rejected {auth} for {uri}"),
                )
            }),
        )
        .route(
            "/busy",
            any(|| async {
                (
                    AxumStatus::TOO_MANY_REQUESTS,
                    [("retry-after", "7")],
                    "slow down",
                )
            }),
        )
        .route(
            "/missing",
            any(|| async { (AxumStatus::NOT_FOUND, "x".repeat(5000)) }),
        )
        .route(
            "/moved",
            any(|| async { (AxumStatus::FOUND, [("location", "/ok")], "") }),
        )
        .route(
            "/slow",
            any(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .with_state(Arc::clone(&seen));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (format!("http://{addr}"), seen)
}

fn sink(toml: &str) -> Arc<dyn Sink> {
    build(&config("http", toml), &ctx()).expect("builds")
}

async fn send(toml: &str, payload: Value) -> Result<(), StageError> {
    sink(toml).deliver(&event("email.captured", payload)).await
}

#[tokio::test]
async fn posts_the_payload_as_json() {
    let (base, seen) = server().await;
    for payload in [leadshark_v1(), leadshark_v2()] {
        send(
            &format!("url = \"{base}/ok\"\nheaders = {{ x-team = \"growth\" }}"),
            payload,
        )
        .await
        .expect("2xx");
    }
    let seen = seen.lock().expect("lock");
    let (method, headers, body) = &seen[1];
    assert_eq!(method, AxumMethod::POST);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["user-agent"], USER_AGENT);
    assert_eq!(headers["x-team"], "growth");
    assert!(headers.get("webhook-signature").is_none());
    assert_eq!(
        serde_json::from_slice::<Value>(&seen[0].2).expect("json"),
        leadshark_v1()
    );
    assert_eq!(
        serde_json::from_slice::<Value>(body).expect("json"),
        leadshark_v2()
    );
}

#[tokio::test]
async fn envelope_and_method() {
    let (base, seen) = server().await;
    send(
        &format!("url = \"{base}/ok\"\nenvelope = true\nmethod = \"put\""),
        leadshark_v2(),
    )
    .await
    .expect("2xx");
    let seen = seen.lock().expect("lock");
    assert_eq!(seen[0].0, AxumMethod::PUT);
    let body: Value = serde_json::from_slice(&seen[0].2).expect("json");
    assert_eq!(body["type"], "email.captured");
    assert_eq!(body["payload"], leadshark_v2());
}

#[tokio::test]
async fn signs_like_standard_webhooks() {
    let (base, seen) = server().await;
    let before = jiff::Timestamp::now().as_second();
    send(
        &format!("url = \"{base}/ok\"\nsigning = {{ secret = \"{SECRET}\" }}"),
        leadshark_v2(),
    )
    .await
    .expect("2xx");
    let seen = seen.lock().expect("lock");
    let (_, headers, body) = &seen[0];
    let header = |n: &str| headers[n].to_str().expect("ascii").to_string();
    assert_eq!(header("webhook-id"), "01J00000000000000000000000");
    let timestamp: i64 = header("webhook-timestamp").parse().expect("unix seconds");
    assert!((before..=before + 5).contains(&timestamp));

    // Recompute from scratch, as a receiver would.
    let key = BASE64.decode(&SECRET["whsec_".len()..]).expect("base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("key");
    mac.update(
        format!(
            "{}.{timestamp}.{}",
            header("webhook-id"),
            String::from_utf8_lossy(body)
        )
        .as_bytes(),
    );
    let expected = format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()));
    assert_eq!(header("webhook-signature"), expected);
}

#[test]
fn signature_matches_the_official_vector() {
    // standard-webhooks libraries/python/tests/test_webhooks.py (see shared/signature-vectors.json).
    let signer = Signer::new(&SigningConfig {
        secret: Some(Secret::new(SECRET)),
        private_key: None,
    })
    .expect("key");
    let sig = signer.sign(
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        br#"{"test": 2432232314}"#,
    );
    assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

/// `v1a`: an Ed25519 signature of the same message, checked here with the public key (the
/// e2e suite checks it with PyNaCl); with both keys, both entries.
#[test]
fn signs_v1a_with_a_private_key() {
    use ed25519_dalek::{Signature, SigningKey, Verifier as _};
    let key = SigningKey::from_bytes(&[3; 32]);
    let seed = format!("whsk_{}", BASE64.encode(key.to_bytes()));
    let pair = BASE64.encode(key.to_keypair_bytes());
    let message = b"msg_1.1614265330.{\"a\":1}";
    for private_key in [seed.clone(), pair] {
        let signer = Signer::new(&SigningConfig {
            secret: None,
            private_key: Some(Secret::new(private_key)),
        })
        .expect("key");
        let header = signer.sign("msg_1", 1614265330, br#"{"a":1}"#);
        let sig = header.strip_prefix("v1a,").expect("v1a entry");
        let sig: [u8; 64] = BASE64
            .decode(sig)
            .expect("base64")
            .try_into()
            .expect("64 bytes");
        assert!(
            key.verifying_key()
                .verify(message, &Signature::from_bytes(&sig))
                .is_ok()
        );
        assert!(!header.contains(' '), "{header}");
    }
    let both = Signer::new(&SigningConfig {
        secret: Some(Secret::new(SECRET)),
        private_key: Some(Secret::new(seed)),
    })
    .expect("keys");
    let header = both.sign(
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        br#"{"test": 2432232314}"#,
    );
    let entries: Vec<&str> = header.split(' ').collect();
    assert_eq!(
        entries[0],
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
    assert!(
        entries[1].starts_with("v1a,") && entries.len() == 2,
        "{header}"
    );
}

#[test]
fn private_keys_are_checked_and_never_echoed() {
    let other = SigningKey::from_bytes(&[4; 32]);
    let mut mismatched = SigningKey::from_bytes(&[3; 32]).to_keypair_bytes();
    mismatched[32..].copy_from_slice(other.verifying_key().as_bytes());
    for (key, message) in [
        ("whsk_c2hvcnQ=".to_string(), "32-byte Ed25519 seed"),
        ("whsk_!!!".to_string(), "32-byte Ed25519 seed"),
        (
            format!("whsk_{}", BASE64.encode(mismatched)),
            "does not belong",
        ),
    ] {
        let text = format!("url = \"https://x.test\"\nsigning = {{ private_key = \"{key}\" }}");
        let err = build(&config("http", &text), &ctx()).expect_err(&text);
        assert!(err.message.contains(message), "{text}: {}", err.message);
        assert!(!err.message.contains(&key[5..]), "{}", err.message);
    }
    let err = build(
        &config("http", "url = \"https://x.test\"\nsigning = {}"),
        &ctx(),
    )
    .expect_err("empty");
    assert!(err.message.contains("`private_key`"), "{}", err.message);
}

#[tokio::test]
async fn classifies_failures() {
    let (base, _) = server().await;
    let err = send(&format!("url = \"{base}/fail\""), leadshark_v1())
        .await
        .expect_err("500");
    assert!(err.is_retryable());
    assert!(
        err.message()
            .contains("500 Internal Server Error: boom: database unavailable"),
        "{}",
        err.message()
    );

    let err = send(&format!("url = \"{base}/busy\""), leadshark_v1())
        .await
        .expect_err("429");
    assert_eq!(
        err,
        StageError::Retryable {
            message: format!("{base} answered 429 Too Many Requests: slow down"),
            retry_after: Some(Duration::from_secs(7)),
        }
    );

    let err = send(
        &format!("url = \"{base}/missing?token=s3cret\""),
        leadshark_v1(),
    )
    .await
    .expect_err("404");
    assert!(!err.is_retryable());
    assert!(
        err.message().contains("404 Not Found: xxxx"),
        "{}",
        err.message()
    );
    assert!(
        err.message().len() < 300,
        "body is cut: {}",
        err.message().len()
    );
    assert!(!err.message().contains("s3cret") && !err.message().contains("/missing"));

    let err = send(&format!("url = \"{base}/moved\""), leadshark_v1())
        .await
        .expect_err("302");
    assert!(
        !err.is_retryable(),
        "redirects are not followed: {}",
        err.message()
    );
}

#[tokio::test]
async fn connection_refused_and_timeout_are_retryable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let err = send(
        &format!("url = \"http://127.0.0.1:{port}/hook?token=s3cret\""),
        leadshark_v1(),
    )
    .await
    .expect_err("refused");
    assert!(err.is_retryable());
    assert!(
        err.message().starts_with("cannot reach http://127.0.0.1:"),
        "{}",
        err.message()
    );
    assert!(!err.message().contains("s3cret"), "{}", err.message());

    let (base, _) = server().await;
    let started = std::time::Instant::now();
    let err = send(
        &format!("url = \"{base}/slow\"\ntimeout = \"300ms\""),
        leadshark_v1(),
    )
    .await
    .expect_err("slow");
    assert!(err.is_retryable());
    assert!(
        err.message().contains("did not answer within 300ms"),
        "{}",
        err.message()
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn retry_after_accepts_seconds_and_http_dates() {
    let now = jiff::Timestamp::from_second(1_700_000_000).expect("ts");
    let value = |s: &str| HeaderValue::from_str(s).expect("value");
    assert_eq!(
        retry_after(&value("120"), now),
        Some(Duration::from_secs(120))
    );
    let later = jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&(now + jiff::SignedDuration::from_secs(90)))
        .expect("date");
    assert!(later.ends_with("GMT"), "{later}");
    assert_eq!(
        retry_after(&value(&later), now),
        Some(Duration::from_secs(90))
    );
    assert_eq!(
        retry_after(&value("Tue, 14 Nov 2023 22:00:00 GMT"), now),
        Some(Duration::ZERO)
    );
    assert_eq!(retry_after(&value("soon"), now), None);
}

#[test]
fn debug_hides_secrets() {
    let s = sink(&format!(
        "url = \"https://hooks.slack.com/services/T0/B0/XXXX\"\nheaders = {{ authorization = \"Bearer tok\" }}\nsigning = {{ secret = \"{SECRET}\" }}"
    ));
    let debug = format!("{s:?}");
    assert!(debug.contains("https://hooks.slack.com"), "{debug}");
    for secret in ["XXXX", "tok", "MfKQ9r8"] {
        assert!(!debug.contains(secret), "{debug}");
    }
    let cfg: HttpSinkConfig = config(
        "http",
        "url = \"https://x.test/T0/XXXX\"\nsigning = { secret = \"whsec_abc\" }",
    )
    .parse()
    .expect("parses");
    assert!(!format!("{cfg:?}").contains("XXXX"));
}

#[test]
fn config_errors_are_located() {
    let cases = [
        (
            "url = \"ftp://x.test/\"",
            "\"ftp://x.test/\"",
            "http:// or https://",
        ),
        ("url = \"not a url\"", "\"not a url\"", "invalid URL"),
        (
            "url = \"https://x.test\"\nmethod = \"GET\"",
            "\"GET\"",
            "POST, PUT or PATCH",
        ),
        (
            "url = \"https://x.test\"\ntimeout = \"soon\"",
            "\"soon\"",
            "",
        ),
        (
            "url = \"https://x.test\"\ntimeout = \"0s\"",
            "\"0s\"",
            "more than zero",
        ),
        (
            "url = \"https://x.test\"\nheaders = { \"bad name\" = \"x\" }",
            "{ \"bad name\" = \"x\" }",
            "invalid header name",
        ),
        (
            "url = \"https://x.test\"\nheaders = { a = \"line\\nbreak\" }",
            "{ a = \"line\\nbreak\" }",
            "invalid value",
        ),
        (
            "url = \"https://x.test\"\nheaders = { host = \"x\" }",
            "{ host = \"x\" }",
            "set by Hookline",
        ),
        (
            "url = \"https://x.test\"\nsigning = { secret = \"whsec_!!!\" }",
            "{ secret = \"whsec_!!!\" }",
            "base64",
        ),
        (
            "url = \"https://x.test\"\nsigning = { secret = \"whsec_abc=\", key = 1 }",
            "key",
            "unknown field",
        ),
        (
            "url = \"https://x.test\"\nretries = 3",
            "retries",
            "unknown field",
        ),
    ];
    for (text, at, message) in cases {
        let err = build(&config("http", text), &ctx()).expect_err(text);
        assert_eq!(spanned(text, &err), at, "{text}: {}", err.message);
        assert!(err.message.contains(message), "{text}: {}", err.message);
        assert!(
            !err.message.contains("!!!"),
            "secret echoed: {}",
            err.message
        );
    }
    let err = build(&config("http", "method = \"POST\""), &ctx()).expect_err("missing url");
    assert!(err.message.contains("url"), "{}", err.message);
}

#[test]
fn signing_headers_cannot_be_configured_when_signing() {
    let text = format!(
        "url = \"https://x.test\"\nheaders = {{ webhook-id = \"x\" }}\nsigning = {{ secret = \"{SECRET}\" }}"
    );
    assert!(build(&config("http", &text), &ctx()).is_err());
}

/// F11 of the bulkheads issue: a receiver that echoes the request's `Authorization` and URL
/// in its error body must not put the configured secrets into the error (the log, the dead
/// letter).
#[tokio::test]
async fn secrets_a_receiver_echoes_are_redacted_from_errors() {
    let (base, _) = server().await;
    let toml = format!(
        r#"url = "{base}/echo?api_key=k-0123456789&x=1"
headers = {{ authorization = "Bearer tok-abcdef012345" }}"#
    );
    let err = send(&toml, serde_json::json!({})).await.expect_err("400");
    let text = format!("{err:?}");
    assert!(text.contains("rejected"), "the body is still shown: {text}");
    assert!(!text.contains("tok-abcdef012345"), "{text}");
    assert!(!text.contains("k-0123456789"), "{text}");
    assert!(text.contains("***"), "{text}");
}
