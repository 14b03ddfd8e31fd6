//! A source's `respond`: its own answer to an accepted event, sent only after the event is
//! verified and journaled; the same answer for a duplicate; the default answer when the
//! body cannot be rendered (the event is kept all the same); config mistakes refused at
//! load, located. Discord's PING → PONG is proven in `schemes::ed25519`.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

fn source(name: &str, respond: &str) -> String {
    format!(
        r#"
[[sources]]
name = "{name}"
path = "/webhooks/{name}"
verify = {{ scheme = "leadshark", secrets = ["{SECRET}"] }}
respond = {respond}

[[pipelines]]
name = "{name}"
source = "{name}"
stages = [{{ sink = "file", path = "{name}.jsonl", envelope = true }}]
"#
    )
}

#[tokio::test]
async fn respond_answers_after_journaling_and_falls_back_when_it_cannot_render() {
    let answer = r#"{ status = 202, headers = { "X-Reply" = "yes" }, body = '''{"ok": true, "type": "{{ event.type }}", "id": "{{ event.id }}", "who": "{{ payload.event }}"}''' }"#;
    // `payload.event` unquoted: not JSON once rendered, so the default answer is sent.
    let broken = r#"{ body = '{"event": {{ payload.event }}}' }"#;
    let config = format!("{}{}", source("custom", answer), source("broken", broken));
    let h = Hookline::start(&config);

    // Verified and journaled: the configured answer, naming the journaled event.
    let body = sample("email.captured", 1);
    let url = h.url("/webhooks/custom");
    let r = post_signed(&url, &body).await;
    assert_eq!(r.status, 202, "{}", r.json);
    assert_eq!(r.headers["x-reply"], "yes");
    assert_eq!(r.headers["content-type"], "application/json");
    let id = r.json["id"].as_str().expect("the event id").to_string();
    assert_eq!(
        r.json,
        json!({"ok": true, "type": "email.captured", "id": id, "who": "email.captured"})
    );
    let lines = wait_for_lines(&h.path("custom.jsonl"), 1).await;
    assert_eq!(
        lines[0]["id"],
        id.as_str(),
        "the answer names the journaled event"
    );

    // The same delivery again: a duplicate, answered the same way (the first id).
    let again = post_signed(&url, &body).await;
    assert_eq!((again.status, again.json.clone()), (202, r.json.clone()));

    // A request that does not verify never sees the configured answer.
    let forged = post(
        &url,
        body.as_str(),
        &[
            ("x-webhook-signature", "00"),
            ("x-webhook-event", "email.captured"),
        ],
    )
    .await;
    assert_eq!(forged.status, 401, "{}", forged.json);
    assert!(forged.json["error"].is_string() && forged.headers.get("x-reply").is_none());

    // A body that cannot be rendered: the default answer, the event kept, a warning logged.
    let r = post_signed(&h.url("/webhooks/broken"), &body).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["received"], true, "{}", r.json);
    let id = r.json["id"].as_str().expect("id").to_string();
    let lines = wait_for_lines(&h.path("broken.jsonl"), 1).await;
    assert_eq!(lines[0]["id"], id.as_str());
    wait_until("the warning", || {
        h.log().contains("`respond` body could not be rendered")
    })
    .await;
    assert!(h.log().contains("not valid JSON"), "{}", h.log());

    // Exactly one event per source: the duplicate and the forgery were not journaled.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(read_lines(&h.path("custom.jsonl")).len(), 1);
    assert_eq!(read_lines(&h.path("broken.jsonl")).len(), 1);
}

#[test]
fn respond_mistakes_are_config_errors_with_their_place() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("pipeline.toml");
    for (respond, says) in [
        (
            r#"{ body = '{{ paylod.x }}' }"#,
            "unknown variable(s) in template: paylod",
        ),
        (r#"{ body = '{% if %}' }"#, "invalid template"),
        (r#"{ status = 302 }"#, "`status` 302 must be a 2xx status"),
        (
            r#"{ headers = { "Content-Length" = "1" } }"#,
            "set by the server",
        ),
        (
            r#"{ headers = { "bad header" = "1" } }"#,
            "invalid header name",
        ),
        (r#"{ stauts = 200 }"#, "unknown field `stauts`"),
    ] {
        std::fs::write(&path, config_text(&source("custom", respond), "")).expect("write");
        let out = run_cli(&["check", "--config", path.to_str().expect("utf-8")], &[]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{respond}: {text}");
        // `[server]`, `[admin]` and the source's first lines come first: `respond` is line 13.
        assert!(text.contains("pipeline.toml:13:"), "{respond}: {text}");
        assert!(text.contains(says), "{respond}: {text}");
    }
    // And a good one passes, with the JSON check of the answer at render time only.
    let good = r#"{ status = 200, headers = { "Cache-Control" = "no-store" }, body = '{"type": {{ payload.type | tojson }}}' }"#;
    std::fs::write(&path, config_text(&source("custom", good), "")).expect("write");
    let out = run_cli(&["check", "--config", path.to_str().expect("utf-8")], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("respond 200, headers Cache-Control, body from a template"),
        "{stdout}"
    );
}
