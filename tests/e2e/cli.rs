//! `hookline check` and `hookline send` as a user runs them.

use crate::support::*;

fn write_config(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).expect("write");
    path
}

#[test]
fn check_accepts_a_good_config_and_masks_secrets() {
    let dir = tempfile::tempdir().expect("dir");
    let text = format!(
        "{}\n[[pipelines]]\nname = \"all\"\nsource = \"leadshark\"\nstages = [{{ sink = \"file\", path = \"x.jsonl\" }}]\n",
        leadshark_source()
    );
    let path = write_config(dir.path(), &text);
    let out = run_cli(&["check", "--config", path.to_str().expect("utf-8")], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("OK"));
    assert!(stdout.contains("***"));
    assert!(!stdout.contains(SECRET), "secret printed: {stdout}");
}

#[test]
fn check_warns_about_stages_named_only_by_their_order() {
    let dir = tempfile::tempdir().expect("dir");
    let text = format!(
        "{}\n[[pipelines]]\nname = \"all\"\nsource = \"leadshark\"\nstages = [{{ sink = \"http\", url = \"http://127.0.0.1:9/a\" }}, {{ sink = \"http\", url = \"http://127.0.0.1:9/b\" }}]\n",
        leadshark_source()
    );
    let path = write_config(dir.path(), &text);
    let out = run_cli(&["check", "--config", path.to_str().expect("utf-8")], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "a warning is not an error: {stdout}");
    assert!(
        stdout.contains(
            "warning: pipeline `all` uses `http` 2 times and names its stages `http`, `http#2` by their order"
        ),
        "{stdout}"
    );
    // Named, the same pipeline gives no warning.
    let named = text
        .replacen("{ sink = \"http\"", "{ name = \"crm\", sink = \"http\"", 1)
        .replacen(
            "}, { sink = \"http\"",
            "}, { name = \"slack\", sink = \"http\"",
            1,
        );
    let path = write_config(dir.path(), &named);
    let out = run_cli(&["check", "--config", path.to_str().expect("utf-8")], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("(crm)") && stdout.contains("(slack)"),
        "{stdout}"
    );
    assert!(!stdout.contains("by their order"), "{stdout}");
}

#[test]
fn check_reports_every_problem_with_file_line_column_and_key() {
    let dir = tempfile::tempdir().expect("dir");
    let text = format!(
        r#"{}
[[pipelines]]
name = "bad"
source = "leadshark"
stages = [
  {{ filter = "cel", expr = "payload.data.lead.email ==" }},
  {{ sink = "http" }},
  {{ sink = "file", path = "x.jsonl", colour = "blue" }},
  {{ transform = "nope" }},
]
"#,
        leadshark_source()
    );
    let path = write_config(dir.path(), &text);
    let out = run_cli(&["check", "--config", path.to_str().expect("utf-8")], &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let file = path.display().to_string();
    let cel = stderr
        .lines()
        .find(|l| l.contains("stages[0].expr"))
        .unwrap_or_else(|| panic!("cel error: {stderr}"));
    assert!(cel.contains(&format!("{file}:11:")), "{cel}");
    let url = stderr
        .lines()
        .find(|l| l.contains("url"))
        .unwrap_or_else(|| panic!("missing url: {stderr}"));
    assert!(url.contains(&format!("{file}:12:")), "{url}");
    let colour = stderr
        .lines()
        .find(|l| l.contains("colour"))
        .unwrap_or_else(|| panic!("unknown key: {stderr}"));
    assert!(colour.contains("stages[2].colour"), "{colour}");
    let plugin = stderr
        .lines()
        .find(|l| l.contains("`nope`"))
        .unwrap_or_else(|| panic!("unknown plugin: {stderr}"));
    assert!(plugin.contains(&format!("{file}:14:")), "{plugin}");
    assert!(plugin.contains("available:"), "{plugin}");
}

#[test]
fn check_names_an_unset_variable() {
    let dir = tempfile::tempdir().expect("dir");
    let text = "[[sources]]\nname = \"ls\"\npath = \"/h\"\nverify = { scheme = \"leadshark\", secrets = [\"${HOOKLINE_TEST_UNSET_VAR}\"] }\n";
    let path = write_config(dir.path(), text);
    let out = run_cli(&["check", "--config", path.to_str().expect("utf-8")], &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("HOOKLINE_TEST_UNSET_VAR"), "{stderr}");
    assert!(stderr.contains(":4:"), "{stderr}");
}

#[test]
fn check_and_test_pass_on_the_root_pipeline_and_every_example() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut configs = vec![root.join("pipeline.toml")];
    let mut entries: Vec<_> = std::fs::read_dir(root.join("examples"))
        .expect("examples/")
        .flatten()
        .map(|e| e.path().join("pipeline.toml"))
        .filter(|p| p.exists())
        .collect();
    entries.sort();
    assert!(entries.len() >= 2, "examples: {entries:?}");
    configs.extend(entries);
    for config in configs {
        let c = config.to_str().expect("utf-8");
        let out = run_cli(&["--log-level", "error", "check", "--config", c], &[]);
        assert!(
            out.status.success(),
            "check {c}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            config.with_file_name("pipeline.test.toml").exists(),
            "{c} has no pipeline.test.toml"
        );
        let out = run_cli(&["--log-level", "error", "test", "--config", c], &[]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "test {c}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    }
}

/// The benchmark's pipelines are not run by CI, so a change to the configuration's
/// language would otherwise break them unseen: each must pass `check` (the WASM one with
/// the plugin the driver gives it), and each must be a candidate of `tests/bench/run.py`.
#[test]
fn every_benchmark_pipeline_passes_check_and_is_a_candidate() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let bench = root.join("tests/bench");
    let driver = std::fs::read_to_string(bench.join("run.py")).expect("run.py");
    let mut configs: Vec<_> = std::fs::read_dir(bench.join("pipelines"))
        .expect("tests/bench/pipelines")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    configs.sort();
    assert!(configs.len() >= 8, "bench pipelines: {configs:?}");
    for config in configs {
        let name = config.file_name().and_then(|n| n.to_str()).expect("name");
        assert!(
            driver.contains(&format!("\"config\": \"{name}\"")),
            "tests/bench/pipelines/{name} is no candidate of tests/bench/run.py"
        );
        // In a directory of its own, as the driver runs it.
        let dir = tempfile::tempdir().expect("dir");
        let copy = dir.path().join(name);
        std::fs::copy(&config, &copy).expect("copy config");
        if name == "wasm.toml" {
            std::fs::create_dir_all(dir.path().join("plugins")).expect("plugins dir");
            std::fs::copy(
                crate::wasm::dist("redact"),
                dir.path().join("plugins/redact.wasm"),
            )
            .expect("copy plugin");
        }
        let out = run_cli(
            &[
                "--log-level",
                "error",
                "check",
                "--config",
                copy.to_str().expect("utf-8"),
            ],
            &[("LEADSHARK_SECRET", "bench-secret")],
        );
        assert!(
            out.status.success(),
            "check tests/bench/pipelines/{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn init_writes_a_starter_that_passes_check_and_test_for_every_scheme_and_sink() {
    let dir = tempfile::tempdir().expect("dir");
    let schemes = [
        "leadshark",
        "standard-webhooks",
        "github",
        "stripe",
        "slack",
        "shopify",
        "hmac",
        "twilio",
        "ed25519",
    ];
    for scheme in schemes {
        for sink in [
            "file", "http", "postgres", "stdout", "sqlite", "nats", "amqp",
        ] {
            let config = dir.path().join(format!("{scheme}-{sink}/pipeline.toml"));
            let c = config.to_str().expect("utf-8");
            let out = run_cli(
                &["init", "--scheme", scheme, "--sink", sink, "--output", c],
                &[],
            );
            assert!(
                out.status.success(),
                "init {scheme} {sink}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = std::fs::read_to_string(&config).expect("written");
            assert!(
                text.lines().filter(|l| l.starts_with('#')).count() >= 5,
                "commented"
            );
            if scheme == "ed25519" {
                // Discord flavoured: its PING is answered with the PONG.
                assert!(
                    text.contains("respond = ") && text.contains(r#"{"type": 1}"#),
                    "{text}"
                );
            }
            let out = run_cli(&["--log-level", "error", "check", "--config", c], &[]);
            assert!(
                out.status.success(),
                "check {scheme} {sink}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let out = run_cli(&["--log-level", "error", "test", "--config", c], &[]);
            assert!(
                out.status.success(),
                "test {scheme} {sink}: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
    // It does not overwrite without --force.
    let c = dir.path().join("leadshark-file/pipeline.toml");
    let out = run_cli(&["init", "--output", c.to_str().expect("utf-8")], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
}

#[test]
fn test_shows_a_diff_and_fails_when_an_expectation_is_wrong() {
    let dir = tempfile::tempdir().expect("dir");
    let config = write_config(
        dir.path(),
        &format!(
            "{}\n[[pipelines]]\nname = \"p\"\nsource = \"leadshark\"\nstages = [{{ transform = \"set\", fields = {{ \"data.tag\" = \"a\" }} }}, {{ sink = \"http\", url = \"http://127.0.0.1:9/never\" }}]\n",
            leadshark_source()
        ),
    );
    std::fs::write(
        dir.path().join("pipeline.test.toml"),
        r#"
[[test]]
name = "right"
sample = "new.like"
pipelines = ["p"]

[[test.expect]]
pipeline = "p"
stage = "set"
payload = { data = { tag = "a" } }

[[test]]
name = "wrong"
sample = "new.like"

[[test.expect]]
pipeline = "p"
stage = "set"
payload = { data = { tag = "b" } }

[[test.expect]]
pipeline = "p"
stage = "http"
reached = false
"#,
    )
    .expect("write");
    let out = run_cli(
        &[
            "--log-level",
            "error",
            "test",
            "--config",
            config.to_str().expect("utf-8"),
        ],
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("test right ... ok"), "{stdout}");
    assert!(stdout.contains("test wrong ... FAILED"), "{stdout}");
    let minus = stdout
        .lines()
        .any(|l| l.trim_start().starts_with('-') && l.contains("\"tag\": \"b\""));
    let plus = stdout
        .lines()
        .any(|l| l.trim_start().starts_with('+') && l.contains("\"tag\": \"a\""));
    assert!(minus && plus, "a diff of the named keys: {stdout}");
    assert!(
        !stdout.contains("Michael Johnson"),
        "keys the test does not name stay out of the diff: {stdout}"
    );
    assert!(
        stdout.contains("expected the event not to reach it"),
        "{stdout}"
    );
    assert!(stdout.contains("1 passed, 1 failed"), "{stdout}");
}

#[tokio::test]
async fn serve_warns_loudly_about_a_default_secret() {
    let config = r#"
[[sources]]
name = "leadshark"
path = "/webhooks/leadshark"
verify = { scheme = "leadshark", secrets = ["${HOOKLINE_TEST_UNSET_SECRET:-dev-secret}"] }

[[pipelines]]
name = "all"
source = "leadshark"
stages = [{ sink = "stdout" }]
"#;
    let h = Hookline::start(config);
    let log = h.log();
    assert!(log.contains("WARNING"), "{log}");
    assert!(log.contains("HOOKLINE_TEST_UNSET_SECRET"), "{log}");
    assert!(
        !log.contains("dev-secret\""),
        "the default value itself is not logged"
    );
}

#[tokio::test]
async fn send_signs_like_leadshark_and_reports_a_summary() {
    let config = format!(
        "{}\n[[pipelines]]\nname = \"all\"\nsource = \"leadshark\"\nstages = [{{ sink = \"file\", path = \"all.jsonl\" }}]\n",
        leadshark_source()
    );
    let h = Hookline::start(&config);
    let url = h.url("/webhooks/leadshark");
    let out = tokio::task::spawn_blocking(move || {
        run_cli(
            &[
                "send",
                "--url",
                &url,
                "--count",
                "40",
                "--concurrency",
                "4",
                "--json",
            ],
            &[("LEADSHARK_SECRET", SECRET)],
        )
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json summary");
    assert_eq!(summary["sent"], 40);
    assert_eq!(summary["statuses"]["200"], 40);
    assert!(summary["p99_ms"].as_f64().expect("p99") > 0.0);
    let lines = wait_for_lines(&h.path("all.jsonl"), 40).await;
    assert_eq!(lines.len(), 40);
    let mut names: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 40, "every body is unique");
    let types: std::collections::BTreeSet<&str> =
        lines.iter().filter_map(|l| l["event"].as_str()).collect();
    assert!(types.len() >= 5, "every sample type: {types:?}");

    // --pretty bodies go through the re-serialisation fallback; a wrong secret is a failure.
    let url = h.url("/webhooks/leadshark");
    let out = tokio::task::spawn_blocking(move || {
        run_cli(
            &[
                "send", "--url", &url, "--count", "5", "--pretty", "--secret", SECRET,
            ],
            &[],
        )
    })
    .await
    .expect("join");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = h.url("/webhooks/leadshark");
    let out = tokio::task::spawn_blocking(move || {
        run_cli(&["send", "--url", &url, "--secret", "wrong"], &[])
    })
    .await
    .expect("join");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("401"));
}
