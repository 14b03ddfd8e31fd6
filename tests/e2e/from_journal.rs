//! `hookline test --from-journal N`: a changed config tried on the events a real service
//! journaled and delivered, with sinks recorded (nothing reaches the receiver again).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

/// `email.captured` sample `i` whose lead's email is `email`.
fn lead(i: u64, email: &str) -> String {
    let mut v: Value = serde_json::from_str(&sample("email.captured", i)).expect("json");
    v["data"]["lead"]["email"] = json!(email);
    v.to_string()
}

fn crm(url: &str, filters: &str) -> String {
    format!(
        r#"
[[pipelines]]
name = "crm"
source = "leadshark"
stages = [{filters}
  {{ sink = "http", url = "{url}", timeout = "2s", name = "push" }},
]

[[pipelines]]
name = "archive"
source = "leadshark"
stages = [{{ sink = "file", path = "archive.jsonl" }}]
"#
    )
}

/// Run `hookline test --from-journal` with `args` against `config`.
fn from_journal(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    let config = config.to_str().expect("utf-8 path");
    let mut all = vec!["test", "--config", config, "--from-journal"];
    all.extend(args);
    run_cli(&all, &[])
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn pipeline<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["pipelines"]
        .as_array()
        .expect("pipelines")
        .iter()
        .find(|p| p["pipeline"] == name)
        .unwrap_or_else(|| panic!("no pipeline {name} in {report}"))
}

/// The figures of one pipeline: (routed, delivered, dropped, failed, fatal, changed).
fn figures(p: &Value) -> [u64; 6] {
    [
        "routed",
        "delivered",
        "dropped",
        "failed",
        "failed_fatal",
        "changed",
    ]
    .map(|k| p[k].as_u64().unwrap_or_else(|| panic!("{k} in {p}")))
}

#[tokio::test]
async fn a_changed_config_tried_on_journaled_traffic_reports_counts_and_exactly_the_changed_events()
{
    let receiver = Receiver::start(Vec::new()).await;
    let h = Hookline::start(&format!(
        "{}{}",
        leadshark_source(),
        crm(&receiver.url(), "")
    ));

    // The changed config, beside the original (so the same `[storage]` journal): crm now keeps
    // only acme.com leads and fails (fatally, a CEL error) on cy@acme.com; `audit` is new.
    let changed = h.path("changed.toml");
    let filters = r#"
  { filter = "cel", name = "only-acme", expr = 'payload.data.lead.email.endsWith("@acme.com")' },
  { filter = "cel", name = "no-cy", expr = 'payload.data.lead.email != "cy@acme.com" || payload.nosuch == 1u' },"#;
    std::fs::write(
        &changed,
        config_text(
            &format!(
                r#"{}{}
[[pipelines]]
name = "audit"
source = "leadshark"
stages = [{{ sink = "file", path = "audit.jsonl" }}]
"#,
                leadshark_source(),
                crm(&receiver.url(), filters)
            ),
            "",
        ),
    )
    .expect("write changed.toml");

    // An empty journal: nothing to run, and that is not an error.
    let out = from_journal(&changed, &["10"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout(&out)
            .contains("ran 0 of the newest 10 journaled events (the journal holds no more)"),
        "{}",
        stdout(&out)
    );
    let empty: Value = serde_json::from_slice(&from_journal(&changed, &["10", "--json"]).stdout)
        .expect("--json on an empty journal");
    assert_eq!(empty["events"], 0, "{empty}");
    assert_eq!(empty["changes"], json!([]), "{empty}");

    // Five leads, all delivered to the receiver and the archive.
    let url = h.url("/webhooks/leadshark");
    let emails = [
        "ada@acme.com",
        "bob@example.com",
        "cy@acme.com",
        "dee@example.com",
        "eve@acme.com",
    ];
    let mut ids = Vec::new();
    for (i, email) in emails.iter().enumerate() {
        let r = post_signed(&url, &lead(i as u64, email)).await;
        assert_eq!(r.status, 200, "{}", r.json);
        ids.push(r.json["id"].as_str().expect("id").to_string());
    }
    assert_eq!(receiver.wait_for(5).await.len(), 5);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = get_json(&h.admin_url("/api/v1/events?outcome=delivered&pipeline=crm")).await;
        let archived =
            get_json(&h.admin_url("/api/v1/events?outcome=delivered&pipeline=archive")).await;
        if page["items"].as_array().map(Vec::len) == Some(5)
            && archived["items"].as_array().map(Vec::len) == Some(5)
        {
            break;
        }
        assert!(Instant::now() < deadline, "runs did not settle: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (bob, cy, dee) = (&ids[1], &ids[2], &ids[3]);

    // Text: counts per pipeline, the failure, and a diff line for exactly bob, cy and dee.
    let out = from_journal(&changed, &["5"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains("ran 5 of the newest 5 journaled events"),
        "{text}"
    );
    assert!(
        text.contains(
            "pipeline crm: 5 routed: 2 delivered, 2 dropped, 1 failed (0 retryable, 1 fatal); 3 changed"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "pipeline archive: 5 routed: 5 delivered, 0 dropped, 0 failed (0 retryable, 0 fatal); 0 changed"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "pipeline audit (new: no history in the sample, not compared): 5 routed: 5 delivered"
        ),
        "{text}"
    );
    assert!(
        text.contains(&format!("  failure  {cy}  at 1:no-cy (fatal): ")),
        "{text}"
    );
    let diffs: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "changes:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(str::trim)
        .collect();
    assert_eq!(
        diffs,
        [
            format!("{dee}  crm: was delivered, now dropped at 0:only-acme"),
            format!("{cy}  crm: was delivered, now failing at 1:no-cy (fatal)"),
            format!("{bob}  crm: was delivered, now dropped at 0:only-acme"),
        ],
        "{text}"
    );
    assert!(text.ends_with("3 outcomes changed in 3 events\n"), "{text}");

    // JSON: the same figures.
    let out = from_journal(&changed, &["5", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("--json parses");
    assert_eq!(report["events"], 5);
    assert_eq!(figures(pipeline(&report, "crm")), [5, 2, 2, 1, 1, 3]);
    assert_eq!(figures(pipeline(&report, "archive")), [5, 5, 0, 0, 0, 0]);
    let audit = pipeline(&report, "audit");
    assert_eq!(figures(audit), [5, 5, 0, 0, 0, 0]);
    assert_eq!(
        (audit["new"].clone(), audit["not_compared"].clone()),
        (json!(true), json!(5))
    );
    let failure = &pipeline(&report, "crm")["first_failures"][0];
    assert_eq!(failure["event_id"], cy.as_str());
    assert_eq!(failure["stage_name"], "no-cy");
    assert_eq!(failure["retryable"], false);
    let changed_ids: Vec<&str> = report["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| c["event_id"].as_str().expect("event_id"))
        .collect();
    assert_eq!(changed_ids, [dee.as_str(), cy.as_str(), bob.as_str()]);
    assert_eq!(report["changes"][0]["was"]["outcome"], "delivered");
    assert_eq!(report["changes"][0]["now"]["outcome"], "dropped");

    // N larger than the journal: the five there are; N smaller: only the newest.
    let report: Value =
        serde_json::from_slice(&from_journal(&changed, &["100", "--json"]).stdout).expect("json");
    assert_eq!(
        (report["requested"].clone(), report["events"].clone()),
        (json!(100), json!(5))
    );
    let report: Value =
        serde_json::from_slice(&from_journal(&changed, &["2", "--json"]).stdout).expect("json");
    assert_eq!(report["events"], 2);
    assert_eq!(figures(pipeline(&report, "crm")), [2, 1, 1, 0, 0, 1]);
    assert_eq!(report["changes"][0]["event_id"], dee.as_str());

    // A filter narrows the sample; --db names the journal file itself.
    let db = h.path("data/hookline.db");
    let out = from_journal(
        &changed,
        &[
            "5",
            "--type",
            "new.like",
            "--db",
            db.to_str().expect("utf-8"),
        ],
    );
    assert!(
        stdout(&out).contains("ran 0 of the newest 5 journaled events (no more match the filters)"),
        "{out:?}"
    );

    // The unchanged config changes nothing; --fail-on-change fails on the changed one.
    let out = from_journal(&h.config_path, &["5", "--fail-on-change"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout(&out).ends_with("0 outcomes changed in 0 events\n"),
        "{out:?}"
    );
    let out = from_journal(&changed, &["5", "--fail-on-change"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("3 outcome(s) changed"),
        "{out:?}"
    );

    // Bounded: too many is a clear error.
    let out = from_journal(&changed, &["10001"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("between 1 and 10000"),
        "{out:?}"
    );

    // With the service stopped, the same report.
    let mut h = h;
    assert!(h.terminate(), "serve did not stop cleanly");
    let stopped: Value =
        serde_json::from_slice(&from_journal(&changed, &["5", "--json"]).stdout).expect("json");
    assert_eq!(figures(pipeline(&stopped, "crm")), [5, 2, 2, 1, 1, 3]);

    // Nothing was sent again and no sink wrote anything.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received.lock().expect("lock").len(), 5);
    assert!(!h.path("audit.jsonl").exists());
    assert_eq!(read_lines(&h.path("archive.jsonl")).len(), 5);
}
