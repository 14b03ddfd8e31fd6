//! `hookline send --scheme` (issue 20): every supported scheme signs what a running
//! `hookline serve` configured for it accepts; a wrong secret shows the 401 and its body.

use crate::support::*;

const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// `(scheme, its secret, the verify table's extra keys)`.
const SCHEMES: &[(&str, &str, &str)] = &[
    ("leadshark", SECRET, ""),
    ("github", SECRET, ""),
    ("stripe", SECRET, ""),
    ("standard-webhooks", STANDARD_SECRET, ""),
    ("slack", SECRET, ""),
    ("shopify", SECRET, ""),
    // No public_url: the URL `send` calls (with its `bodySHA256`) is the Host and path.
    ("twilio", SECRET, ""),
    (
        "hmac",
        SECRET,
        r#", header = "X-Signature", event_field = "event""#,
    ),
];

fn config() -> String {
    let mut text = String::new();
    for (scheme, secret, extra) in SCHEMES {
        text.push_str(&format!(
            "[[sources]]\nname = \"{scheme}\"\npath = \"/webhooks/{scheme}\"\nverify = {{ scheme = \"{scheme}\", secrets = [\"{secret}\"]{extra} }}\n\n[[pipelines]]\nname = \"{scheme}\"\nsource = \"{scheme}\"\nstages = [{{ sink = \"file\", path = \"{scheme}.jsonl\" }}]\n\n"
        ));
    }
    text
}

async fn send(url: String, scheme: &'static str, secret: &'static str) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        run_cli(
            &[
                "send", "--url", &url, "--scheme", scheme, "--secret", secret, "--count", "2",
                "--json",
            ],
            &[],
        )
    })
    .await
    .expect("join")
}

#[tokio::test]
async fn send_signs_as_every_scheme_and_shows_the_body_of_a_rejection() {
    let h = Hookline::start(&config());
    for (scheme, secret, _) in SCHEMES {
        let url = h.url(&format!("/webhooks/{scheme}"));
        let out = send(url.clone(), scheme, secret).await;
        let s = summary(&out);
        assert!(out.status.success(), "{scheme}: {s}");
        assert_eq!(
            (s["statuses"]["200"].as_u64(), s["new"].as_u64()),
            (Some(2), Some(2)),
            "{scheme}: {s}"
        );
        let lines = wait_for_lines(&h.path(&format!("{scheme}.jsonl")), 2).await;
        assert_eq!(
            lines.len(),
            2,
            "{scheme}: into the pipeline, not a dead letter"
        );

        let wrong = match *scheme {
            "standard-webhooks" => "whsec_b3RoZXI=",
            _ => "not-the-secret",
        };
        let out = send(url, scheme, wrong).await;
        let s = summary(&out);
        assert!(!out.status.success(), "{scheme}: a 401 is a failure: {s}");
        assert_eq!(s["statuses"]["401"], 2, "{scheme}: {s}");
        assert_eq!(
            s["bodies"]["401"], r#"{"error":"invalid signature"}"#,
            "{scheme}: {s}"
        );
    }
    let text = tokio::task::spawn_blocking({
        let url = h.url("/webhooks/github");
        move || {
            run_cli(
                &["send", "--url", &url, "--scheme", "github", "--secret", "x"],
                &[],
            )
        }
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains(r#"401: 1  {"error":"invalid signature"}"#),
        "{stdout}"
    );
}
