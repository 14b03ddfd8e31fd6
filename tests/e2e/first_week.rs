//! Papercuts a new user hit in their first week (issue 20), each as the user met it.

use std::process::{Command, Stdio};

use crate::support::*;

fn file_pipeline() -> String {
    format!(
        "{}\n[[pipelines]]\nname = \"all\"\nsource = \"leadshark\"\nstages = [{{ sink = \"file\", path = \"all.jsonl\" }}]\n",
        leadshark_source()
    )
}

async fn send(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_cli(&args, &[("LEADSHARK_SECRET", SECRET)])
    })
    .await
    .expect("join")
}

fn args(url: &str, extra: &[&str]) -> Vec<String> {
    ["send", "--url", url, "--json"]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect()
}

#[tokio::test]
async fn send_sends_new_bodies_each_run_counts_duplicates_and_sends_your_own_payload() {
    let h = Hookline::start(&file_pipeline());
    let url = h.url("/webhooks/leadshark");
    for _ in 0..2 {
        let s = summary(&send(args(&url, &["--count", "4"])).await);
        assert_eq!(
            (s["new"].as_u64(), s["duplicates"].as_u64()),
            (Some(4), Some(0)),
            "{s}"
        );
    }
    assert_eq!(wait_for_lines(&h.path("all.jsonl"), 8).await.len(), 8);

    let first = summary(&send(args(&url, &["--count", "2", "--repeat-bodies"])).await);
    let again = summary(&send(args(&url, &["--count", "2", "--repeat-bodies"])).await);
    assert_eq!(first["statuses"]["200"], 2);
    assert_eq!(
        (again["new"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(2)),
        "{again}"
    );
    let text = tokio::task::spawn_blocking({
        let url = url.clone();
        move || {
            run_cli(
                &["send", "--url", &url, "--repeat-bodies"],
                &[("LEADSHARK_SECRET", SECRET)],
            )
        }
    })
    .await
    .expect("join");
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("duplicates: 1"),
        "{text:?}"
    );

    // Your own payload, with a field set on the command line.
    let data = h.path("mine.json");
    std::fs::write(
        &data,
        r#"{"event": "new.like", "data": {"lead": {"name": "Me"}}}"#,
    )
    .expect("write");
    let data = data.to_str().expect("utf-8").to_string();
    let s = summary(
        &send(args(
            &url,
            &[
                "--data",
                &data,
                "--set",
                "data.lead.email=me@example.com",
                "--set",
                "data.n=5",
            ],
        ))
        .await,
    );
    assert_eq!(s["new"], 1, "{s}");
    let lines = wait_for_lines(&h.path("all.jsonl"), 11).await;
    let mine = lines
        .iter()
        .find(|l| l["data"]["lead"]["name"] == "Me")
        .expect("my payload");
    assert_eq!(mine["data"]["lead"]["email"], "me@example.com");
    assert_eq!(mine["data"]["n"], 5);
    assert!(mine["timestamp"].is_string(), "a fresh timestamp: {mine}");

    // A failure shows the response body, not just the status.
    let url2 = url.clone();
    let out = tokio::task::spawn_blocking(move || {
        run_cli(&["send", "--url", &url2, "--secret", "wrong"], &[])
    })
    .await
    .expect("join");
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        // The status line (`  401: 1  {...}`), not the rate line, which may hold `401`.
        .find(|l| l.trim_start().starts_with("401"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains("\"error\""), "{line}");
}

#[tokio::test]
async fn debug_logs_deliveries_without_dependency_noise_or_colours() {
    // The support harness runs `serve --log-level debug` with stderr in a file.
    let config = format!(
        "{}\n[[pipelines]]\nname = \"all\"\nsource = \"leadshark\"\nevents = [\"new.*\", \"email.*\"]\nstages = [{{ sink = \"file\", path = \"all.jsonl\" }}]\n",
        leadshark_source()
    );
    let h = Hookline::start(&config);
    let r = post_signed(&h.url("/webhooks/leadshark"), &sample("new.like", 1)).await;
    let id = r.json["id"].as_str().expect("id").to_string();
    wait_for_lines(&h.path("all.jsonl"), 1).await;
    let mut log = String::new();
    wait_until("the delivery log line", || {
        log = h.log();
        log.lines()
            .any(|l| l.contains("delivered") && l.contains(&id))
    })
    .await;
    let line = log
        .lines()
        .find(|l| l.contains("delivered") && l.contains(&id))
        .expect("line");
    assert!(
        line.contains("DEBUG") && line.contains("pipeline=all"),
        "{line}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "no ANSI colours in a redirected log"
    );
    for noisy in ["wasmtime", "cranelift", "globset"] {
        assert!(
            !log.lines()
                .any(|l| l.contains("DEBUG") && l.contains(noisy)),
            "{noisy} at debug: {log}"
        );
    }
}

#[tokio::test]
async fn retries_and_dead_letters_name_stages_alike_and_dlq_show_takes_an_event_id() {
    let receiver = Receiver::start(vec![500, 500]).await;
    let config = format!(
        "{}\n[[pipelines]]\nname = \"crm\"\nsource = \"leadshark\"\nstages = [{{ sink = \"http\", name = \"crm-api\", url = \"{}\", timeout = \"2s\", retry = {{ attempts = 2, initial = \"50ms\", max = \"100ms\" }} }}]\n",
        leadshark_source(),
        receiver.url()
    );
    let h = Hookline::start(&config);
    let r = post_signed(&h.url("/webhooks/leadshark"), &sample("new.like", 1)).await;
    let id = r.json["id"].as_str().expect("id").to_string();
    let mut log = String::new();
    wait_until("the dead letter", || {
        log = h.log();
        log.contains("dead-lettered")
    })
    .await;
    let retry = log
        .lines()
        .find(|l| l.contains("will retry"))
        .expect("retry line");
    let dead = log
        .lines()
        .find(|l| l.contains("dead-lettered"))
        .expect("dead line");
    for line in [retry, dead] {
        assert!(
            line.contains("stage=crm-api") && line.contains("stage_index=0"),
            "{line}"
        );
        assert!(line.contains(&id), "{line}");
    }
    let out = h.cli(&["dlq", "show", &id]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("\"event_id\": \"{id}\"")),
        "{stdout}"
    );
}

/// Run with stdout a pipe whose reader has already gone.
fn with_closed_stdout(args: &[&str]) -> std::process::Output {
    let mut child = Command::new(bin())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    child.wait_with_output().expect("wait")
}

#[tokio::test]
async fn a_closed_stdout_ends_commands_quietly() {
    let h = Hookline::start(&file_pipeline());
    let config = h.config_path.to_str().expect("utf-8").to_string();
    let dir = tempfile::tempdir().expect("dir");
    let init = dir.path().join("p.toml");
    let commands: Vec<Vec<&str>> = vec![
        vec!["dlq", "list", "--json", "--config", &config],
        vec!["dlq", "list", "--config", &config],
        vec!["check", "--config", &config],
        vec!["init", "--output", init.to_str().expect("utf-8")],
    ];
    for args in commands {
        let out = tokio::task::spawn_blocking({
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            move || with_closed_stdout(&args.iter().map(String::as_str).collect::<Vec<_>>())
        })
        .await
        .expect("join");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
        assert!(out.status.success(), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn an_empty_optional_rotation_slot_is_not_a_warning() {
    let config = r#"
[[sources]]
name = "leadshark"
path = "/webhooks/leadshark"
verify = { scheme = "leadshark", secrets = ["${HOOKLINE_TEST_UNSET_SECRET:-dev-secret}", "${HOOKLINE_TEST_UNSET_OLD:-}"] }

[[pipelines]]
name = "all"
source = "leadshark"
stages = [{ sink = "stdout" }]
"#;
    let h = Hookline::start(config);
    let log = h.log();
    assert_eq!(
        log.matches("WARNING").count(),
        1,
        "once, for the real default: {log}"
    );
    assert!(!log.contains("HOOKLINE_TEST_UNSET_OLD"), "{log}");
}

#[test]
fn test_needs_no_production_secret_and_says_what_stopped_the_event() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("pipeline.toml");
    std::fs::write(
        &config,
        r#"
[[sources]]
name = "leadshark"
path = "/webhooks/leadshark"
verify = { scheme = "leadshark", secrets = ["${HOOKLINE_TEST_PROD_SECRET}"] }

[[pipelines]]
name = "p"
source = "leadshark"
stages = [{ filter = "cel", expr = "payload.data.nope.deeper == 1" }, { sink = "file", path = "out/x.jsonl" }]
"#,
    )
    .expect("write");
    std::fs::write(
        dir.path().join("pipeline.test.toml"),
        "[[test]]\nname = \"reaches the sink\"\nsample = \"new.like\"\n\n[[test.expect]]\npipeline = \"p\"\nstage = \"file\"\npayload = { event = \"new.like\" }\n",
    )
    .expect("write");
    let c = config.to_str().expect("utf-8");
    let out = run_cli(&["--log-level", "error", "test", "--config", c], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("HOOKLINE_TEST_PROD_SECRET"),
        "no secret needed: {stderr}"
    );
    assert!(
        stdout.contains("test reaches the sink ... FAILED"),
        "{stdout}{stderr}"
    );
    let line = stdout
        .lines()
        .find(|l| l.contains("never reached"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains("stage `cel` (#0) failed first:"), "{line}");
    assert!(line.contains("nope"), "the error itself: {line}");
    // `check` is the deploy gate: it still wants the secret.
    let out = run_cli(&["check", "--config", c], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HOOKLINE_TEST_PROD_SECRET"));
    assert!(
        !dir.path().join("out").exists(),
        "test created no sink file"
    );
}

#[test]
fn check_has_no_side_effects_and_describes_instead_of_debug_printing() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("pipeline.toml");
    let plugins = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/wasm/dist");
    assert!(
        plugins.join("lead-score.wasm").exists(),
        "build the WASM plugins first"
    );
    std::fs::write(
        &config,
        format!(
            "[plugins]\ndir = {:?}\n{}\n[[pipelines]]\nname = \"all\"\nsource = \"leadshark\"\nstages = [{{ transform = \"wasm:lead-score\" }}, {{ sink = \"file\", path = \"out/a.jsonl\" }}, {{ sink = \"sqlite\", path = \"db/leads.db\" }}]\n",
            plugins.to_str().expect("utf-8"),
            leadshark_source()
        ),
    )
    .expect("write");
    let out = run_cli(&["check", "--config", config.to_str().expect("utf-8")], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let entries: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        entries,
        ["pipeline.toml"],
        "check wrote nothing (no sink file, no wasm-cache)"
    );
    assert!(stdout.contains("wasm:lead-score"), "{stdout}");
    assert!(
        !stdout.contains("LeadsharkConfig") && !stdout.contains("Some("),
        "{stdout}"
    );
    assert!(
        stdout.contains("verify leadshark signature, secrets *** (1 secret)"),
        "{stdout}"
    );
}

#[test]
fn errors_say_what_to_do_once() {
    let dir = tempfile::tempdir().expect("dir");
    let missing = dir.path().join("pipeline.toml");
    let out = run_cli(
        &["check", "--config", missing.to_str().expect("utf-8")],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("error: error:"), "{stderr}");
    assert!(
        stderr.contains("hookline init") && stderr.contains("--config"),
        "{stderr}"
    );

    let text = file_pipeline().replace("scheme = \"leadshark\"", "scheme = \"leadshork\"")
        + "\n[[pipelines]]\nname = \"two\"\nsource = \"leadshark\"\nstages = [{ sink = \"stdout\" }]\n";
    std::fs::write(&missing, text).expect("write");
    let out = run_cli(
        &["check", "--config", missing.to_str().expect("utf-8")],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("leadshork"), "{stderr}");
    assert!(!stderr.contains("unknown source"), "no cascade: {stderr}");

    // A secret read from a file with its newline.
    let text = "[[sources]]\nname = \"ls\"\npath = \"/h\"\nverify = { scheme = \"leadshark\", secrets = [\"${HOOKLINE_TEST_NL_SECRET}\"] }\n[[pipelines]]\nname = \"p\"\nsource = \"ls\"\nstages = [{ sink = \"stdout\" }]\n";
    std::fs::write(&missing, text).expect("write");
    let out = run_cli(
        &["check", "--config", missing.to_str().expect("utf-8")],
        &[("HOOKLINE_TEST_NL_SECRET", "s3cret\n")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("ends with a newline") && !stderr.contains("s3cret"),
        "{stderr}"
    );
}

#[tokio::test]
async fn address_in_use_names_the_config_key() {
    let h = Hookline::start(&file_pipeline());
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("pipeline.toml");
    for (taken, key) in [
        (
            format!("[server]\nlisten = \"{}\"\n", h.addr),
            "`[server] listen`",
        ),
        (
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"{}\"\n",
                h.admin_addr
            ),
            "`[admin] listen`",
        ),
    ] {
        std::fs::write(&config, format!("{taken}{}", file_pipeline())).expect("write");
        let c = config.to_str().expect("utf-8").to_string();
        let out = tokio::task::spawn_blocking(move || run_cli(&["serve", "--config", &c], &[]))
            .await
            .expect("join");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains(key), "{stderr}");
    }
}
