use super::*;
use crate::verify::testing::*;
use proptest::prelude::*;
use serde_json::json;

/// Twilio's published example ("Webhooks security"), also computed by twilio-python 9.13.0's
/// `RequestValidator("12345").compute_signature(URL, PARAMS)`.
const TOKEN: &str = "12345";
const PUBLIC: &str = "https://mycompany.com/myapp.php";
const TARGET: &str = "/twilio/sms?foo=1&bar=2";
const FORM_BODY: &str = "To=%2B18005551212&From=%2B12349013030&Digits=1234&Caller=%2B12349013030&CallSid=CA1234567890ABCDE";
const SIG: &str = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";
/// The same with the URL written `https://mycompany.com:443/...` (twilio-python).
const SIG_443: &str = "EpDEmp1PyjDYp77YxYU3GILBWzE=";
/// twilio-python: a JSON body, its hash in the URL, the URL alone signed.
const JSON_BODY: &str = r#"{"property": "value", "boolean": true}"#;
const JSON_HASH: &str = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
const JSON_SIG: &str = "y77kIzt2vzLz71DgmJGsen2scGs=";
/// twilio-python with `algorithm="HMAC_SHA256"` over the published example.
const SIG_SHA256: &str = "Rmm4Vzj+Ky7JGoWXMCsZDZuHDszLr9xvdbvitrDr4/M=";

fn config(secrets: &[&str], public_url: Option<&str>) -> TwilioConfig {
    TwilioConfig {
        secrets: secrets.iter().map(|s| Secret::new(*s)).collect(),
        public_url: public_url.map(str::to_string),
        event_field: None,
    }
}

fn verifier(secrets: &[&str], public_url: Option<&str>) -> TwilioVerifier {
    TwilioVerifier::build(&config(secrets, public_url)).expect("builds")
}

fn send(
    v: &TwilioVerifier,
    target: &str,
    pairs: &[(&str, &str)],
    body: &str,
) -> Result<Verified, Rejection> {
    v.verify(&Unverified {
        headers: &headers(pairs),
        body: body.as_bytes(),
        target: Some(target),
        now: at(0),
    })
}

fn form(sig: &str) -> Vec<(&str, &str)> {
    vec![(SIGNATURE_HEADER, sig), ("Content-Type", FORM)]
}

#[test]
fn the_canonical_string_sorts_names_and_each_names_distinct_values() {
    let url = "https://h.example/p";
    assert_eq!(
        message(url, Some(FORM_BODY.as_bytes())),
        "https://h.example/pCallSidCA1234567890ABCDECaller+12349013030Digits1234From+12349013030To+18005551212"
    );
    // Repeated names: each distinct value once, sorted; names byte-wise (upper case first).
    assert_eq!(
        message(url, Some(b"b=2&a=z&a=y&a=z&B=1")),
        "https://h.example/pB1ayazb2"
    );
    // Decoded (`+` is a space), empty values kept, a bare name an empty value.
    assert_eq!(
        message(url, Some(b"Body=hi+there%21&Empty=&Bare")),
        "https://h.example/pBareBodyhi there!Empty"
    );
    assert_eq!(message(url, None), url);
    // twilio-python over a MultiDict of the same repeated fields.
    let ring = Keyring::utf8("t", Algorithm::Sha1, &[Secret::new(TOKEN)]).expect("key");
    let tag = ring.sign_with_first(&[message(url, Some(b"b=2&a=z&a=y&a=z&B=1")).as_bytes()]);
    assert_eq!(BASE64_STANDARD.encode(tag), "yJE7ec1N44x4PoAmpxqOP/ilkwM=");
}

#[test]
fn port_variants_add_the_default_port_or_remove_the_given_one() {
    let cases = [
        ("https://h.example/p?q=1", "https://h.example:443/p?q=1"),
        ("https://h.example:443/p", "https://h.example/p"),
        ("http://h.example/p", "http://h.example:80/p"),
        ("https://h.example:8443/p", "https://h.example/p"),
        ("https://h.example", "https://h.example:443"),
        ("https://[::1]/p", "https://[::1]:443/p"),
        ("https://[::1]:8443/p", "https://[::1]/p"),
    ];
    for (url, other) in cases {
        assert_eq!(port_variants(url), [url.to_string(), other.to_string()]);
    }
}

#[test]
fn published_example_verifies_behind_a_proxy_with_either_port_form() {
    let v = verifier(&[TOKEN], Some(PUBLIC));
    let ok = send(&v, TARGET, &form(SIG), FORM_BODY).expect("valid");
    assert_eq!(
        ok.payload,
        json!({"To": "+18005551212", "From": "+12349013030", "Digits": "1234",
               "Caller": "+12349013030", "CallSid": "CA1234567890ABCDE"})
    );
    assert_eq!(
        ok.idempotency_key,
        Some(digest_key(&[b"foo=1&bar=2", b"\n", FORM_BODY.as_bytes()]))
    );
    // Signed with `:443` in the URL: accepted as Twilio's validators accept it, both ways.
    assert!(send(&v, TARGET, &form(SIG_443), FORM_BODY).is_ok());
    let v443 = verifier(&[TOKEN], Some("https://mycompany.com:443/myapp.php"));
    assert!(send(&v443, TARGET, &form(SIG), FORM_BODY).is_ok());
    // Fields in another order sign the same.
    let reordered = "CallSid=CA1234567890ABCDE&Caller=%2B12349013030&Digits=1234&From=%2B12349013030&To=%2B18005551212";
    assert!(send(&v, TARGET, &form(SIG), reordered).is_ok());
    // A SharedKey signature, as its settings header says.
    let mut h = form(SIG_SHA256);
    h.push((
        SETTINGS_HEADER,
        "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256",
    ));
    assert!(send(&v, TARGET, &h, FORM_BODY).is_ok());
    let mut h = form(SIG);
    h.push((SETTINGS_HEADER, "key=k,algorithm=HMAC_MD5"));
    assert_eq!(
        outcome(send(&v, TARGET, &h, FORM_BODY), &[TOKEN]),
        (401, "malformed_signature")
    );
}

#[test]
fn wrong_url_tampered_form_wrong_token_and_rotation() {
    let v = verifier(&["new-auth-token-000000000000000", TOKEN], Some(PUBLIC));
    assert!(
        send(&v, TARGET, &form(SIG), FORM_BODY).is_ok(),
        "second secret"
    );
    for (target, body, why) in [
        ("/twilio/sms?foo=1&bar=3", FORM_BODY, "query changed"),
        ("/twilio/sms", FORM_BODY, "query dropped"),
        (
            TARGET,
            &FORM_BODY.replace("1234&", "9999&"),
            "field changed",
        ),
        (TARGET, &format!("{FORM_BODY}&Extra=1"), "field added"),
    ] {
        assert_eq!(
            outcome(send(&v, target, &form(SIG), body), &[TOKEN]),
            (401, "bad_signature"),
            "{why}"
        );
    }
    for public in [
        "https://mycompany.com/other.php",
        "http://mycompany.com/myapp.php",
    ] {
        let v = verifier(&[TOKEN], Some(public));
        let r = rejected(send(&v, TARGET, &form(SIG), FORM_BODY), &[TOKEN]);
        assert_eq!(r.to_string(), "invalid signature", "{public}");
    }
    let r = rejected(
        send(
            &verifier(&["other"], Some(PUBLIC)),
            TARGET,
            &form(SIG),
            FORM_BODY,
        ),
        &[TOKEN],
    );
    assert_eq!((r.status(), r.reason()), (401, "bad_signature"));
}

#[test]
fn a_json_body_is_signed_through_its_body_sha256() {
    let v = verifier(&[TOKEN], Some(PUBLIC));
    let target = format!("/hooks?{BODY_HASH}={JSON_HASH}");
    let json_h = vec![
        (SIGNATURE_HEADER, JSON_SIG),
        ("Content-Type", "application/json"),
    ];
    let ok = send(&v, &target, &json_h, JSON_BODY).expect("valid");
    assert_eq!(ok.payload["property"], "value");
    let r = rejected(
        send(&v, &target, &json_h, &JSON_BODY.replace("value", "other")),
        &[TOKEN],
    );
    assert_eq!((r.status(), r.reason()), (401, "body_hash_mismatch"));
    assert!(r.to_string().contains("the body was changed"), "{r}");
    // Another hash in the URL: the signature no longer covers it.
    let forged = format!("/hooks?{BODY_HASH}={}", body_hash(b"{}"));
    assert_eq!(
        outcome(send(&v, &forged, &json_h, "{}"), &[TOKEN]),
        (401, "bad_signature")
    );
    // No hash at all: a signature over the bare URL covers no body.
    let ring = Keyring::utf8("t", Algorithm::Sha1, &[Secret::new(TOKEN)]).expect("key");
    let bare = BASE64_STANDARD.encode(ring.sign_with_first(&[PUBLIC.as_bytes()]));
    let h = vec![
        (SIGNATURE_HEADER, bare.as_str()),
        ("Content-Type", "application/json"),
    ];
    let r = rejected(send(&v, "/hooks", &h, JSON_BODY), &[TOKEN]);
    assert_eq!((r.status(), r.reason()), (401, "body_hash_mismatch"));
    // What `sign` and `sender_url` produce, verify.
    let url = v.sender_url(PUBLIC, JSON_BODY.as_bytes());
    assert_eq!(url, format!("{PUBLIC}?{BODY_HASH}={JSON_HASH}"));
    let signing = Signing {
        body: JSON_BODY.as_bytes(),
        timestamp: 0,
        id: "x",
        event: None,
        url: Some(&url),
    };
    assert_eq!(
        v.sign(&signing).expect("signs"),
        vec![(SIGNATURE_HEADER.to_string(), JSON_SIG.to_string())]
    );
}

#[test]
fn without_public_url_the_url_is_host_and_target_as_received() {
    let v = verifier(&[TOKEN], None);
    let mut h = form(SIG);
    h.push(("Host", "mycompany.com"));
    assert!(send(&v, "/myapp.php?foo=1&bar=2", &h, FORM_BODY).is_ok());
    assert_eq!(
        outcome(send(&v, "/elsewhere?foo=1&bar=2", &h, FORM_BODY), &[]),
        (401, "bad_signature")
    );
    let r = rejected(
        send(&v, "/myapp.php?foo=1&bar=2", &form(SIG), FORM_BODY),
        &[],
    );
    assert_eq!(r.to_string(), "missing Host header");
    let expected = v.expected(&Unverified {
        headers: &headers(&h),
        body: FORM_BODY.as_bytes(),
        target: Some("/myapp.php?foo=1&bar=2"),
        now: at(0),
    });
    assert_eq!(
        expected,
        vec![(SIGNATURE_HEADER.to_string(), SIG.to_string())]
    );
}

#[test]
fn event_types_and_repeated_fields() {
    let v = verifier(&[TOKEN], Some(PUBLIC));
    let sign = |body: &str| {
        let ring = Keyring::utf8("t", Algorithm::Sha1, &[Secret::new(TOKEN)]).expect("key");
        BASE64_STANDARD
            .encode(ring.sign_with_first(&[message(PUBLIC, Some(body.as_bytes())).as_bytes()]))
    };
    for (body, event) in [
        (
            "MessageSid=SM1&SmsStatus=sent&MessageStatus=delivered",
            "delivered",
        ),
        ("MessageSid=SM1&SmsStatus=received&Body=hi", "received"),
        ("CallSid=CA1&CallStatus=ringing", "ringing"),
    ] {
        let ok = send(&v, "/", &form(&sign(body)), body).expect(body);
        assert_eq!(ok.event_type, event);
    }
    let body = "MediaUrl=a&MediaUrl=b&CallStatus=completed";
    let ok = send(&v, "/", &form(&sign(body)), body).expect("valid");
    assert_eq!(ok.payload["MediaUrl"], json!(["a", "b"]));
    let ok = send(&v, "/", &form(&sign("Digits=1")), "Digits=1").expect("valid");
    assert_eq!(ok.event_type, FALLBACK_EVENT);
    let mut c = config(&[TOKEN], Some(PUBLIC));
    c.event_field = Some("Direction".into());
    let v = TwilioVerifier::build(&c).expect("builds");
    let body = "Direction=inbound&CallStatus=ringing";
    let ok = send(&v, "/", &form(&sign(body)), body).expect("valid");
    assert_eq!(ok.event_type, "inbound");
    let body = "CallStatus=ringing";
    assert_eq!(
        outcome(send(&v, "/", &form(&sign(body)), body), &[]),
        (400, "missing_event")
    );
}

#[test]
fn missing_malformed_and_repeated_headers_and_bad_config() {
    let v = verifier(&[TOKEN], Some(PUBLIC));
    let r = rejected(send(&v, TARGET, &[("Content-Type", FORM)], FORM_BODY), &[]);
    assert_eq!(
        (r.status(), r.to_string().as_str()),
        (401, "missing X-Twilio-Signature header")
    );
    for sig in ["", "!!!!", "0/KCTR6DLpKmkAf8muzZqo1nDgQ", SIG_SHA256] {
        assert_eq!(
            outcome(send(&v, TARGET, &form(sig), FORM_BODY), &[]),
            (401, "malformed_signature"),
            "{sig}"
        );
    }
    let mut twice = form(SIG);
    twice.push((SIGNATURE_HEADER, SIG));
    assert_eq!(
        outcome(send(&v, TARGET, &twice, FORM_BODY), &[]),
        (401, "malformed_signature")
    );
    for (url, says) in [
        ("ftp://h/p", "must start with https://"),
        ("https:///p", "has no host"),
        ("https://h/p?a=1", "must not have a query"),
        ("https://h/p#x", "fragment"),
        ("https://h/ p", "whitespace"),
    ] {
        let e = TwilioVerifier::build(&config(&[TOKEN], Some(url))).expect_err(url);
        assert!(e.contains("`public_url`") && e.contains(says), "{e}");
    }
    let e = TwilioVerifier::build(&config(&[], Some(PUBLIC))).expect_err("no secrets");
    assert!(e.contains("twilio: `secrets`"), "{e}");
    assert!(v.accepts_content_type(FORM) && v.accepts_content_type("application/json"));
    assert!(!v.accepts_content_type("text/plain"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn never_panics_on_any_header_or_body(
        sig in header_bytes(&["0/KCTR6DLpKmkAf8muzZqo1nDgQ=", "=", "+", "A"]),
        settings in header_bytes(&["algorithm=", "HMAC_SHA256", ",", "key=1"]),
        body in proptest::collection::vec(any::<u8>(), 0..64),
        url in "https?://[a-z:\\[\\]0-9]{0,12}(/[a-z?=&%]{0,12})?",
    ) {
        let _ = port_variants(&url);
        let _ = message(&url, Some(&body));
        let _ = form_payload(&body);
        never_panics(&verifier(&[TOKEN], None), &[SIGNATURE_HEADER, SETTINGS_HEADER, "Host"], &[sig.clone(), settings.clone(), b"h".to_vec()], &body);
        never_panics(&verifier(&[TOKEN], Some(PUBLIC)), &[SIGNATURE_HEADER, SETTINGS_HEADER], &[sig, settings], &body);
    }
}
