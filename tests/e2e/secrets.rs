//! Secrets read from files: live rotation by rewriting the file and reloading, and `check`
//! refusing an empty one with its place in the config.

use std::time::{Duration, Instant};

use crate::support::*;

const NEW_SECRET: &str = "rotated-file-secret-abcdef";

fn file_source(secret: &str) -> String {
    format!(
        r#"
[[sources]]
name = "leadshark"
path = "/webhooks/leadshark"
verify = {{ scheme = "leadshark", secrets = ["{secret}", "${{LEADSHARK_SECRET_OLD:-}}"] }}

[[pipelines]]
name = "all"
source = "leadshark"
stages = [{{ sink = "file", path = "all.jsonl" }}]
"#
    )
}

async fn post_with(url: &str, secret: &str, body: &str) -> u16 {
    let sig = sign(secret, body.as_bytes());
    post(url, body, &[("x-webhook-signature", &sig)])
        .await
        .status
}

#[tokio::test]
async fn a_secret_file_rotates_on_reload_without_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    // Relative to the config's folder; written as `echo` would, with a newline.
    std::fs::write(dir.path().join("leadshark.secret"), format!("{SECRET}\n")).expect("write");
    let config = config_text(&file_source("file:leadshark.secret"), "");
    std::fs::write(dir.path().join("pipeline.toml"), config).expect("config");
    let mut h = Hookline::start_in(dir, &[]);
    let url = h.url("/webhooks/leadshark");
    assert_eq!(post_signed(&url, &sample("new.like", 1)).await.status, 200);

    std::fs::write(h.path("leadshark.secret"), format!("{NEW_SECRET}\n")).expect("rotate");
    h.signal("HUP");
    let body = sample("new.like", 2);
    let deadline = Instant::now() + Duration::from_secs(60);
    while post_with(&url, NEW_SECRET, &body).await != 200 {
        assert!(Instant::now() < deadline, "the new secret never verified");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        post_signed(&url, &sample("new.like", 3)).await.status,
        401,
        "the old secret is gone"
    );

    // Again through the admin API.
    std::fs::write(h.path("leadshark.secret"), format!("{SECRET}\n")).expect("rotate back");
    let r = client()
        .post(h.admin_url("/api/v1/reload"))
        .send()
        .await
        .expect("reload");
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(post_signed(&url, &sample("new.like", 4)).await.status, 200);
    assert_eq!(
        post_with(&url, NEW_SECRET, &sample("new.like", 5)).await,
        401
    );
    assert!(h.is_running(), "the same process, never restarted");
    assert!(!h.log().contains(NEW_SECRET), "the secret is never logged");
}

fn check(dir: &std::path::Path, source: &str, env: &[(&str, &str)]) -> (bool, String) {
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, config_text(&file_source(source), "")).expect("config");
    let out = run_cli(&["check", "--config", path.to_str().expect("utf-8")], env);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn check_refuses_an_empty_or_missing_secret_file_with_its_place() {
    let dir = tempfile::tempdir().expect("dir");
    let secret = dir.path().join("empty.secret");
    std::fs::write(&secret, "\n").expect("write");
    let (ok, out) = check(dir.path(), "file:empty.secret", &[]);
    assert!(!ok, "{out}");
    // The `[admin]` table and the source come first: the `secrets` line is line 12.
    assert!(
        out.contains("pipeline.toml:12:") && out.contains("`sources[0].verify.secrets[0]`"),
        "{out}"
    );
    assert!(out.contains("empty.secret is empty"), "{out}");

    let (ok, out) = check(dir.path(), "file:/nonexistent/leadshark", &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("/nonexistent/leadshark") && out.contains("No such file"),
        "{out}"
    );

    // A systemd credential, and the empty optional slot beside it: no warning.
    std::fs::write(dir.path().join("leadshark"), format!("{SECRET}\n")).expect("write");
    let creds = dir.path().to_str().expect("utf-8");
    let (ok, out) = check(
        dir.path(),
        "credential:leadshark",
        &[("CREDENTIALS_DIRECTORY", creds)],
    );
    assert!(ok, "{out}");
    assert!(!out.to_lowercase().contains("warn"), "{out}");
    assert!(!out.contains(SECRET), "{out}");

    let (ok, out) = check(
        dir.path(),
        "${LEADSHARK_SECRET}",
        &[("LEADSHARK_SECRET", " ")],
    );
    assert!(!ok && out.contains("only whitespace"), "{out}");
}
