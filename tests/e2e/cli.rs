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
fn check_passes_on_the_root_pipeline_and_every_example() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut configs = vec![root.join("pipeline.toml")];
    if let Ok(entries) = std::fs::read_dir(root.join("examples")) {
        for e in entries.flatten() {
            let p = e.path().join("pipeline.toml");
            if p.exists() {
                configs.push(p);
            }
        }
    }
    for config in configs {
        let out = run_cli(&["check", "--config", config.to_str().expect("utf-8")], &[]);
        assert!(
            out.status.success(),
            "{}: {}",
            config.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
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
