//! The `postgres` sink against a real PostgreSQL server started by each test
//! ([`PgServer`]): rows with mapped columns, one row per event however often it is
//! delivered, fatal errors that name the table or column and dead-letter only the bad event,
//! retries while the server is down, `check --connect`, and `kill -9` under load.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use crate::postgres_server::{PASSWORD, PASSWORD_USER, PgServer};
use crate::support::{
    Hookline, Load, get_json, leadshark_source, post_signed, run_cli, sample, wait_until,
};

/// The table the docs suggest: base columns, two mapped ones, unique by event and payload.
const LEADS_DDL: &str = "CREATE TABLE leads (event_id text NOT NULL, source text NOT NULL, \
    type text NOT NULL, received_at timestamptz NOT NULL, payload jsonb NOT NULL, \
    email text, score integer); \
    CREATE UNIQUE INDEX leads_once ON leads (event_id, md5(payload::text))";

fn pipeline(name: &str, sink: &str) -> String {
    format!("\n[[pipelines]]\nname = \"{name}\"\nsource = \"leadshark\"\nstages = [{sink}]\n")
}

/// A `postgres` sink stage writing `leads` as [`PASSWORD_USER`], its password in a file.
fn leads_sink(pg: &PgServer, extra: &str) -> String {
    format!(
        r#"{{ sink = "postgres", url = "{}", password = "file:pg.password", tls = "disable", table = "leads", columns = {{ email = "data.lead.email", score = "data.score" }}, timeout = "3s"{extra} }}"#,
        pg.url(PASSWORD_USER)
    )
}

/// A LeadShark `email.captured` sample with `data.score` set.
fn scored(i: u64, score: Value) -> String {
    let mut v: Value = serde_json::from_str(&sample("email.captured", i)).expect("json");
    v["data"]["score"] = score;
    v.to_string()
}

fn start(pipelines: &str) -> Hookline {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("pg.password"), format!("{PASSWORD}\n")).expect("password");
    let text = crate::support::config_text(&format!("{}{pipelines}", leadshark_source()), "");
    std::fs::write(dir.path().join("pipeline.toml"), text).expect("config");
    Hookline::start_in(dir, &[])
}

fn rows_per_event(pg: &PgServer) -> HashMap<String, usize> {
    pg.crm("SELECT event_id || ' ' || count(*) FROM leads GROUP BY event_id")
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(id, n)| (id.to_string(), n.parse().expect("count")))
        .collect()
}

fn dead_letters(h: &Hookline) -> Value {
    let out = h.cli(&["dlq", "list", "--json", "--limit", "500"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

async fn send(h: &Hookline, body: String) -> String {
    let r = post_signed(&h.url("/webhooks/leadshark"), &body).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    r.json["id"].as_str().expect("id").to_string()
}

#[tokio::test]
async fn events_become_rows_with_their_columns_once_however_often_delivered() {
    let pg = PgServer::start();
    pg.crm(LEADS_DDL);
    pg.crm(&format!("GRANT ALL ON leads TO {PASSWORD_USER}"));
    // Two pipelines write the same table: every event is delivered to it twice.
    let h = start(&format!(
        "{}{}",
        pipeline("a", &leads_sink(&pg, "")),
        pipeline("b", &leads_sink(&pg, ", batch_size = 5"))
    ));
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(send(&h, scored(i, Value::from(i * 10))).await);
    }
    wait_until("12 rows", || rows_per_event(&pg).len() == 12).await;
    // Both pipelines done: nothing pending in the journal.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while get_json(&h.admin_url("/readyz")).await["pending"] != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "deliveries still pending"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let counts = rows_per_event(&pg);
    assert_eq!(counts.len(), 12, "{counts:?}");
    assert!(
        counts.values().all(|n| *n == 1),
        "one row per event: {counts:?}"
    );
    let row = pg.crm(&format!(
        "SELECT email || '|' || score || '|' || source || '|' || type || '|' || (payload->'data'->>'score') || '|' || (received_at <= now()) FROM leads WHERE event_id = '{}'",
        ids[3]
    ));
    let parts: Vec<&str> = row.split('|').collect();
    assert_eq!(parts.len(), 6, "{row}");
    assert!(parts[0].contains("+3@"), "the mapped email: {row}");
    assert_eq!(
        &parts[1..],
        ["30", "leadshark", "email.captured", "30", "true"],
        "{row}"
    );
    assert_eq!(dead_letters(&h)["total"], 0);
}

#[tokio::test]
async fn a_missing_table_or_a_value_of_the_wrong_type_dead_letters_only_those_events() {
    let pg = PgServer::start();
    pg.crm(LEADS_DDL);
    pg.crm(&format!("GRANT ALL ON leads TO {PASSWORD_USER}"));
    let missing = format!(
        r#"{{ sink = "postgres", url = "{}", tls = "disable", table = "nope" }}"#,
        pg.url("postgres")
    );
    let h = start(&format!(
        "{}{}",
        pipeline("leads", &leads_sink(&pg, ", batch_wait = \"200ms\"")),
        pipeline("missing", &missing)
    ));
    // Sent at once, so that the bad row shares a batch with good ones.
    let sends = (0..10).map(|i| {
        let score = if i == 4 {
            Value::from("high")
        } else {
            Value::from(i)
        };
        let url = h.url("/webhooks/leadshark");
        let body = scored(100 + i, score);
        async move { post_signed(&url, &body).await }
    });
    let replies = futures::future::join_all(sends).await;
    let ids: Vec<String> = replies
        .iter()
        .map(|r| r.json["id"].as_str().expect("id").to_string())
        .collect();
    let mut page = Value::Null;
    wait_until("11 dead letters", || {
        page = dead_letters(&h);
        page["total"] == 11
    })
    .await;
    let items = page["items"].as_array().expect("items");
    let bad: Vec<&Value> = items.iter().filter(|d| d["pipeline"] == "leads").collect();
    assert_eq!(bad.len(), 1, "{items:?}");
    assert_eq!(bad[0]["event_id"], ids[4].as_str());
    assert_eq!(bad[0]["attempts"], 1, "fatal: not retried");
    let error = bad[0]["error"].as_str().expect("error");
    assert!(
        error.contains(r#"column "score" of table "leads" is integer but the value at data.score is a string ("high")"#),
        "{error}"
    );
    for d in items.iter().filter(|d| d["pipeline"] == "missing") {
        let error = d["error"].as_str().expect("error");
        assert!(
            error.contains(r#"table "nope""#) && error.contains("does not exist"),
            "{error}"
        );
    }
    let counts = rows_per_event(&pg);
    assert_eq!(counts.len(), 9, "every good event stored: {counts:?}");
    assert!(
        h.log().contains("inserting its rows one by one"),
        "the bad row shared a batch with good ones"
    );
    assert!(!counts.contains_key(&ids[4]));

    // Fix the table, replay: stored once.
    pg.crm("ALTER TABLE leads ALTER COLUMN score TYPE text");
    let dl_id = bad[0]["id"].as_str().expect("id");
    let out = h.cli(&["dlq", "replay", dl_id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until("the replayed row", || rows_per_event(&pg).len() == 10).await;
    assert_eq!(
        pg.crm(&format!(
            "SELECT score FROM leads WHERE event_id = '{}'",
            ids[4]
        )),
        "high"
    );
}

#[tokio::test]
async fn a_stopped_server_is_retried_and_the_events_delivered_once_it_is_back() {
    let mut pg = PgServer::start();
    pg.crm(LEADS_DDL);
    pg.crm(&format!("GRANT ALL ON leads TO {PASSWORD_USER}"));
    let h = start(&pipeline(
        "leads",
        &leads_sink(
            &pg,
            r#", retry = { attempts = 1000, initial = "100ms", max = "300ms" }, circuit = { cooldown = "500ms", max_cooldown = "1s" }"#,
        ),
    ));
    send(&h, scored(1, Value::from(1))).await;
    wait_until("the first row", || rows_per_event(&pg).len() == 1).await;
    pg.stop();
    for i in 2..7 {
        send(&h, scored(i, Value::from(i))).await;
    }
    wait_until("retries", || h.log().matches("will retry").count() >= 5).await;
    assert_eq!(
        dead_letters(&h)["total"],
        0,
        "connection errors are retryable"
    );
    pg.restart();
    wait_until("every row", || rows_per_event(&pg).len() == 6).await;
    assert!(rows_per_event(&pg).values().all(|n| *n == 1));
    assert_eq!(dead_letters(&h)["total"], 0);
}

#[tokio::test]
async fn check_connect_says_exactly_what_is_wrong_and_plain_check_never_connects() {
    let pg = PgServer::start();
    pg.crm("CREATE TABLE thin (event_id text PRIMARY KEY, source text, type text, received_at timestamptz, payload jsonb)");
    pg.crm("CREATE TABLE leads_dup (event_id text, source text, type text, received_at timestamptz, payload jsonb, email text, score integer)");
    pg.crm(LEADS_DDL);
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("good.pw"), PASSWORD).expect("pw");
    std::fs::write(dir.path().join("bad.pw"), "wrong").expect("pw");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let columns = r#"columns = { email = "data.lead.email", score = "data.score" }"#;
    let cases = [
        ("ok", pg.url("postgres"), "", "leads", None),
        (
            "password",
            pg.url(PASSWORD_USER),
            "file:good.pw",
            "leads",
            None,
        ),
        (
            "port",
            format!("postgres://postgres@127.0.0.1:{closed}/crm"),
            "",
            "leads",
            Some(format!("cannot connect to postgres at 127.0.0.1:{closed}")),
        ),
        (
            "wrong password",
            pg.url(PASSWORD_USER),
            "file:bad.pw",
            "leads",
            Some(format!(
                "password authentication failed for user \"{PASSWORD_USER}\""
            )),
        ),
        (
            "table",
            pg.url("postgres"),
            "",
            "absent",
            Some("table \"absent\" does not exist".into()),
        ),
        (
            "column",
            pg.url("postgres"),
            "",
            "thin",
            Some("table \"thin\"".into()),
        ),
        (
            "unique",
            pg.url("postgres"),
            "",
            "leads_dup",
            Some("no unique index on event_id".into()),
        ),
    ];
    for (name, url, password, table, failure) in cases {
        let password = if password.is_empty() {
            String::new()
        } else {
            format!(", password = \"{password}\"")
        };
        let sink = format!(
            r#"{{ sink = "postgres", url = "{url}"{password}, tls = "disable", table = "{table}", {columns} }}"#
        );
        let config = dir.path().join(format!("{}.toml", name.replace(' ', "-")));
        let text = crate::support::config_text(
            &format!("{}{}", leadshark_source(), pipeline("main", &sink)),
            "",
        );
        std::fs::write(&config, text).expect("config");
        let c = config.to_str().expect("utf-8");
        let out = run_cli(&["check", "--config", c], &[]);
        assert!(
            out.status.success(),
            "{name}: plain check passes: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!printed.contains(PASSWORD), "{name}: {printed}");
        let out = run_cli(&["check", "--connect", "--config", c], &[]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        match failure {
            None => {
                assert!(
                    out.status.success(),
                    "{name}: {stdout}{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                assert!(
                    stdout.contains("connect main/0 (postgres): OK")
                        || stdout.contains("(postgres): OK"),
                    "{name}: {stdout}"
                );
            }
            Some(reason) => {
                assert!(!out.status.success(), "{name}: {stdout}");
                let line = stdout
                    .lines()
                    .find(|l| l.contains("(postgres): FAILED"))
                    .unwrap_or_else(|| panic!("{name}: {stdout}"));
                assert!(line.contains(&reason), "{name}: {line}");
                assert!(
                    !line.contains(PASSWORD) && !line.contains("wrong"),
                    "{name}: no secret: {line}"
                );
            }
        }
        if name == "column" {
            assert!(
                stdout.contains(
                    r#"no column "email" (for data.lead.email), "score" (for data.score)"#
                ),
                "{stdout}"
            );
        }
    }
    assert_eq!(
        pg.crm("SELECT count(*) FROM leads"),
        "0",
        "probes write nothing"
    );

    // `hookline init --sink postgres` pointed at this server: `create = true`, so a missing
    // table is fine; the starter reaches the server as written.
    let starter = dir.path().join("init/pipeline.toml");
    let c = starter.to_str().expect("utf-8");
    let out = run_cli(&["init", "--sink", "postgres", "--output", c], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = pg.url("postgres");
    let out = run_cli(
        &["check", "--connect", "--config", c],
        &[("DATABASE_URL", url.as_str())],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("(postgres): OK"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn every_acknowledged_event_is_in_the_table_exactly_once_after_kill_9() {
    let pg = PgServer::start();
    pg.crm(LEADS_DDL);
    pg.crm(&format!("GRANT ALL ON leads TO {PASSWORD_USER}"));
    let h = start(&pipeline(
        "leads",
        &leads_sink(
            &pg,
            r#", retry = { attempts = 1000, initial = "100ms", max = "300ms" }"#,
        ),
    ));
    let load = Load::start(&h.url("/webhooks/leadshark"), "email.captured", 16, 250);
    wait_until("1000 acknowledged events", || load.acked() >= 1000).await;
    let dir = h.crash();
    let acked = load.finish().await;
    let before = rows_per_event(&pg).len();
    let _h = Hookline::start_in(dir, &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let counts = loop {
        let counts = rows_per_event(&pg);
        if acked.iter().all(|id| counts.contains_key(id)) || std::time::Instant::now() > deadline {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    println!(
        "acknowledged {}, {before} rows at the kill, {} after the restart",
        acked.len(),
        counts.len()
    );
    let lost: Vec<&String> = acked
        .iter()
        .filter(|id| !counts.contains_key(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    let twice: Vec<(&String, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "stored more than once: {twice:?}");
}

#[tokio::test]
async fn tls_modes_against_a_server_that_only_takes_tls() {
    let pg = PgServer::start_tls();
    let dir = tempfile::tempdir().expect("dir");
    let ca = pg.ca_file();
    let ca = ca.to_str().expect("utf-8");
    let cases = [
        ("disable", "", Some("no encryption")),
        ("prefer", "", None),
        ("require", "", None),
        ("verify-full", ca, None),
        // The system's roots do not know the test CA.
        ("verify-full", "", Some("certificate")),
    ];
    for (i, (tls, ca_file, failure)) in cases.into_iter().enumerate() {
        let ca_file = if ca_file.is_empty() {
            String::new()
        } else {
            format!(", ca_file = \"{ca_file}\"")
        };
        let sink = format!(
            r#"{{ sink = "postgres", url = "{}", tls = "{tls}"{ca_file}, table = "tls_rows", create = true }}"#,
            pg.url("postgres")
        );
        let config = dir.path().join(format!("{i}.toml"));
        let text = crate::support::config_text(
            &format!("{}{}", leadshark_source(), pipeline("main", &sink)),
            "",
        );
        std::fs::write(&config, text).expect("config");
        let c = config.to_str().expect("utf-8");
        let out = run_cli(&["check", "--connect", "--config", c], &[]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        match failure {
            None => assert!(out.status.success(), "{tls} {ca_file}: {stdout}"),
            Some(reason) => {
                assert!(!out.status.success(), "{tls} {ca_file}: {stdout}");
                assert!(stdout.contains(reason), "{tls} {ca_file}: {stdout}");
            }
        }
    }
    // Events go through verify-full, into the table `create = true` made.
    let h = start(&pipeline(
        "main",
        &format!(
            r#"{{ sink = "postgres", url = "{}", tls = "verify-full", ca_file = "{ca}", table = "tls_rows", create = true, columns = {{ email = "data.lead.email" }} }}"#,
            pg.url("postgres")
        ),
    ));
    let id = send(&h, scored(7, Value::from(7))).await;
    wait_until("the row", || {
        pg.crm("SELECT count(*) FROM pg_tables WHERE tablename = 'tls_rows'") == "1"
            && pg.crm("SELECT count(*) FROM tls_rows") == "1"
    })
    .await;
    let email = pg.crm(&format!(
        "SELECT email FROM tls_rows WHERE event_id = '{id}'"
    ));
    assert!(email.contains("+7@"), "{email}");
}
