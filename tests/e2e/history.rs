//! Event history and search: `GET /api/v1/events[/{id}]` and `hookline events list|show`
//! over a real service whose pipelines deliver, drop, retry and dead-letter.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

/// `email.captured` sample `i` whose lead's email is `email`.
pub(crate) fn lead(i: u64, email: &str) -> String {
    let mut v: Value = serde_json::from_str(&sample("email.captured", i)).expect("json");
    v["data"]["lead"]["email"] = json!(email);
    v.to_string()
}

async fn events(h: &Hookline, query: &str) -> Value {
    get_json(&h.admin_url(&format!("/api/v1/events{query}"))).await
}

pub(crate) fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_string())
        .collect()
}

pub(crate) fn outcome<'a>(event: &'a Value, pipeline: &str) -> &'a Value {
    event["pipelines"]
        .as_array()
        .expect("pipelines")
        .iter()
        .find(|p| p["pipeline"] == pipeline)
        .unwrap_or_else(|| panic!("no pipeline {pipeline} in {event}"))
}

/// The pipelines of the search scenario: every outcome a first run can have — delivered
/// (`archive`), dropped by a named filter (`only-likes`), dead-lettered on a 400 (`crm`),
/// retrying after a 503 (`slow`, next attempt in an hour).
pub(crate) fn four_outcomes(refuse: &Receiver, busy: &Receiver) -> String {
    format!(
        r#"[[pipelines]]
name = "archive"
source = "leadshark"
stages = [{{ sink = "file", path = "archive.jsonl" }}]

[[pipelines]]
name = "only-likes"
source = "leadshark"
stages = [
  {{ filter = "event", events = ["new.like"], name = "likes" }},
  {{ sink = "file", path = "likes.jsonl" }},
]

[[pipelines]]
name = "crm"
source = "leadshark"
stages = [{{ sink = "http", url = "{}", timeout = "2s" }}]

[[pipelines]]
name = "slow"
source = "leadshark"
stages = [{{ sink = "http", url = "{}", timeout = "2s", retry = {{ attempts = 5, initial = "1h", max = "1h" }} }}]
"#,
        refuse.url(),
        busy.url()
    )
}

/// Where the search scenario runs: one process on SQLite, or an ingest and a worker on NATS.
pub(crate) struct Searched<'a> {
    /// The webhook URL.
    pub(crate) webhooks: String,
    /// Every process's admin listener (`http://host:port`): each must answer alike.
    pub(crate) admins: Vec<String>,
    /// `hookline <args>` against the config.
    pub(crate) cli: &'a dyn Fn(&[&str]) -> std::process::Output,
    /// Queries that this journal refuses and others answer, with what the refusal says.
    pub(crate) refused: &'a [(&'a str, &'a str)],
}

impl Searched<'_> {
    async fn events(&self, i: usize, query: &str) -> Value {
        get_json(&format!("{}/api/v1/events{query}", self.admins[i])).await
    }

    async fn count(&self, query: &str) -> usize {
        ids(&self.events(self.admins.len() - 1, query).await).len()
    }
}

/// Three leads into [`four_outcomes`]; then every filter, paging, bad input, one event's
/// view and the CLI, against `on`.
pub(crate) async fn searchable_scenario(on: Searched<'_>) {
    let last = on.admins.len() - 1;
    let before = jiff::Timestamp::now();
    let mut sent = Vec::new();
    for (i, email) in ["ada@acme.com", "bob@example.com", "cy@acme.com"]
        .iter()
        .enumerate()
    {
        let r = post_signed(&on.webhooks, &lead(i as u64, email)).await;
        assert_eq!(r.status, 200, "{}", r.json);
        sent.push(r.json["id"].as_str().expect("id").to_string());
    }
    // Every first run settles: delivered, dropped, dead-lettered (400), retrying (503).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = on.events(0, "?outcome=retrying&pipeline=slow").await;
        let dead = on.events(last, "?outcome=dead_lettered").await;
        let delivered = on.events(last, "?outcome=delivered&pipeline=archive").await;
        if ids(&page).len() == 3 && ids(&dead).len() == 3 && ids(&delivered).len() == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "runs did not settle: {page} {dead}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Newest first, everything, from every process.
    let newest_first: Vec<String> = sent.iter().rev().cloned().collect();
    for i in 0..on.admins.len() {
        let all = on.events(i, "").await;
        assert_eq!(ids(&all), newest_first, "{all}");
        assert_eq!(all["next"], Value::Null);
    }
    let all = on.events(last, "").await;
    let e = &all["items"][0];
    assert_eq!(e["source"], "leadshark");
    assert_eq!(e["type"], "email.captured");
    assert_eq!(outcome(e, "archive")["outcome"], "delivered");
    let dropped = outcome(e, "only-likes");
    assert_eq!(dropped["outcome"], "dropped");
    assert_eq!(
        (dropped["stage"].clone(), dropped["stage_name"].clone()),
        (json!(0), json!("likes"))
    );
    let crm = outcome(e, "crm");
    assert_eq!(crm["outcome"], "dead_lettered");
    assert!(
        crm["error"].as_str().expect("error").contains("400"),
        "{crm}"
    );
    let slow = outcome(e, "slow");
    assert_eq!(slow["outcome"], "retrying");
    assert_eq!(slow["attempts"], 1);
    assert!(slow["next_attempt_at"].is_string(), "{slow}");
    assert!(e.get("payload").is_none(), "a listing carries no payloads");

    // Each filter.
    assert_eq!(on.count("?source=leadshark").await, 3);
    assert_eq!(on.count("?source=other").await, 0);
    assert_eq!(on.count("?type=email.captured").await, 3);
    assert_eq!(on.count("?type=new.like").await, 0);
    assert_eq!(on.count("?pipeline=only-likes&outcome=dropped").await, 3);
    assert_eq!(on.count("?pipeline=only-likes&outcome=delivered").await, 0);
    assert_eq!(on.count("?outcome=delivered").await, 3);
    if !on.refused.iter().any(|(q, _)| *q == "?outcome=paused") {
        assert_eq!(on.count("?outcome=paused").await, 0);
    }
    let since = (before - jiff::SignedDuration::from_secs(1)).to_string();
    assert_eq!(on.count(&format!("?since={since}")).await, 3);
    assert_eq!(on.count("?since=1h").await, 3);
    assert_eq!(on.count(&format!("?until={since}")).await, 0);
    let acme = on
        .events(
            last,
            "?q=payload.data.lead.email.endsWith(%22%40acme.com%22)",
        )
        .await;
    assert_eq!(ids(&acme), vec![sent[2].clone(), sent[0].clone()], "{acme}");

    // Paging by cursor: one at a time, every event once, in order.
    let mut walked = Vec::new();
    let mut cursor = String::new();
    for _ in 0..10 {
        let page = on.events(0, &format!("?limit=1{cursor}")).await;
        walked.extend(ids(&page));
        match page["next"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(walked, newest_first);

    // Bad input is a 400 that says why.
    let bad = [
        ("?outcome=lost", "not an outcome"),
        ("?cursor=abc", "not a cursor"),
        ("?q=paylod.x", "paylod"),
        ("?since=soon", "RFC 3339"),
        ("?colour=red", "unknown field"),
    ];
    for (query, says) in bad.iter().chain(on.refused) {
        let r = client()
            .get(format!("{}/api/v1/events{query}", on.admins[last]))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 400, "{query}");
        let body = r.text().await.expect("body");
        assert!(body.contains(says), "{query}: {body}");
    }

    // One event: headers as stored (never the signature), payload, attempts, dead letters.
    let one = get_json(&format!("{}/api/v1/events/{}", on.admins[0], sent[0])).await;
    assert_eq!(one["id"], sent[0].as_str());
    assert_eq!(one["payload"]["data"]["lead"]["email"], "ada@acme.com");
    let headers = one["headers"].to_string().to_lowercase();
    assert!(headers.contains("x-webhook-event"), "{headers}");
    assert!(!headers.contains("x-webhook-signature"), "{headers}");
    let attempts = one["attempts"].as_array().expect("attempts");
    let result = |p: &str| {
        attempts
            .iter()
            .filter(|a| a["pipeline"] == p)
            .map(|a| a["result"].as_str().expect("result").to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(result("archive"), ["delivered"]);
    assert_eq!(result("only-likes"), ["dropped"]);
    assert_eq!(result("crm"), ["dead"]);
    assert_eq!(result("slow"), ["retry"]);
    assert!(
        attempts
            .iter()
            .all(|a| a["duration_us"].is_u64() && a["at"].is_string())
    );
    assert_eq!(one["dead_letters"].as_array().expect("letters").len(), 1);
    let missing = client()
        .get(format!(
            "{}/api/v1/events/0190b7e4-0000-7000-8000-000000000000",
            on.admins[last]
        ))
        .send()
        .await
        .expect("get");
    assert_eq!(missing.status(), 404);

    // The CLI reads the same, straight from the journal.
    let out = (on.cli)(&["events", "list", "--outcome", "dropped", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(ids(&page), newest_first);
    let out = (on.cli)(&[
        "events",
        "list",
        "-q",
        r#"payload.data.lead.email == "bob@example.com""#,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&sent[1]) && !text.contains(&sent[0]),
        "{text}"
    );
    assert!(text.contains("only-likes: dropped at 0:likes"), "{text}");
    let out = (on.cli)(&["events", "show", &sent[1]]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for want in [
        "bob@example.com",
        "crm",
        "dead-lettered",
        "Retry",
        "payload",
    ] {
        assert!(text.contains(want), "{want} missing from:\n{text}");
    }
    let out = (on.cli)(&["events", "list", "--outcome", "lost"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an outcome"));
}

#[tokio::test]
async fn events_are_searchable_by_every_filter_and_show_each_pipelines_outcome_and_attempts() {
    let refuse = Receiver::start(vec![400; 64]).await;
    let busy = Receiver::start(vec![503; 64]).await;
    let h = Hookline::start(&format!(
        "{}\n{}",
        leadshark_source(),
        four_outcomes(&refuse, &busy)
    ));
    let cli = |args: &[&str]| h.cli(args);
    searchable_scenario(Searched {
        webhooks: h.url("/webhooks/leadshark"),
        admins: vec![format!("http://{}", h.admin_addr)],
        cli: &cli,
        refused: &[],
    })
    .await;
}

async fn post_admin(h: &Hookline, path: &str) -> (u16, Value) {
    let r = client().post(h.admin_url(path)).send().await.expect("post");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn delete_admin(h: &Hookline, path: &str) -> (u16, Value) {
    let r = client()
        .delete(h.admin_url(path))
        .send()
        .await
        .expect("delete");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_delivered_event_replays_into_a_pipeline_added_after_it_arrived_and_erasure_forgets_a_person()
 {
    let crm = Receiver::start(vec![]).await;
    let strict = Receiver::start(vec![400; 16]).await;
    let first = format!(
        r#"{}
[[pipelines]]
name = "archive"
source = "leadshark"
stages = [{{ sink = "file", path = "archive.jsonl" }}]

[[pipelines]]
name = "strict"
source = "leadshark"
stages = [{{ sink = "http", url = "{}", timeout = "2s" }}]
"#,
        leadshark_source(),
        strict.url()
    );
    let h = Hookline::start(&first);
    let url = h.url("/webhooks/leadshark");
    let mut sent = Vec::new();
    for (i, email) in ["ada@acme.com", "bob@example.com"].iter().enumerate() {
        let r = post_signed(&url, &lead(i as u64, email)).await;
        assert_eq!(r.status, 200, "{}", r.json);
        sent.push(r.json["id"].as_str().expect("id").to_string());
    }
    wait_for_lines(&h.path("archive.jsonl"), 2).await;
    strict.wait_for(2).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while ids(&events(&h, "?pipeline=strict&outcome=dead_lettered").await).len() < 2 {
        assert!(Instant::now() < deadline, "no dead letters");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A pipeline added by a reload, after the events arrived.
    let text = std::fs::read_to_string(&h.config_path).expect("config");
    let added = format!(
        "{text}\n[[pipelines]]\nname = \"crm\"\nsource = \"leadshark\"\nstages = [{{ sink = \"http\", url = \"{}\", timeout = \"2s\" }}]\n",
        crm.url()
    );
    std::fs::write(&h.config_path, added).expect("write config");
    let (status, body) = post_admin(&h, "/api/v1/reload").await;
    assert_eq!(status, 200, "{body}");

    // Backfill one event into it over the API, the other with the CLI.
    let (status, body) = post_admin(
        &h,
        &format!("/api/v1/events/{}/replay?pipeline=crm", sent[0]),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let got = crm.wait_for(1).await;
    assert_eq!(got.len(), 1);
    let delivered: Value = serde_json::from_slice(&got[0].body).expect("json");
    assert!(
        delivered.to_string().contains("ada@acme.com"),
        "{delivered}"
    );
    let out = h.cli(&["events", "replay", &sent[1], "--pipeline", "crm"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(crm.wait_for(2).await.len(), 2);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let one = get_json(&h.admin_url(&format!("/api/v1/events/{}", sent[0]))).await;
        if outcome(&one, "crm")["outcome"] == "delivered" {
            break;
        }
        assert!(Instant::now() < deadline, "crm outcome not recorded: {one}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Replays that cannot be: no such pipeline, no such event, nothing to resume from.
    let (status, _) = post_admin(
        &h,
        &format!("/api/v1/events/{}/replay?pipeline=nope", sent[0]),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = post_admin(
        &h,
        "/api/v1/events/0190b7e4-0000-7000-8000-000000000000/replay?pipeline=crm",
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = post_admin(
        &h,
        &format!("/api/v1/events/{}/replay?pipeline=crm&from=failed", sent[0]),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let out = h.cli(&["events", "replay", &sent[0], "--pipeline", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no pipeline `nope`"));

    // Erasure: a filter is required; then one person is gone from events, history and dead
    // letters, and the other is untouched.
    let (status, body) = delete_admin(&h, "/api/v1/events").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = delete_admin(
        &h,
        "/api/v1/events?q=payload.data.lead.email%20%3D%3D%20%22ada%40acme.com%22",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            body["events"].clone(),
            body["dead_letters"].clone(),
            body["busy"].clone()
        ),
        (json!(1), json!(1), json!(0))
    );
    let r = client()
        .get(h.admin_url(&format!("/api/v1/events/{}", sent[0])))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 404);
    let letters = get_json(&h.admin_url("/api/v1/dead-letters")).await;
    let letters = letters["items"].to_string();
    assert!(
        !letters.contains(&sent[0]) && letters.contains(&sent[1]),
        "{letters}"
    );
    assert_eq!(ids(&events(&h, "").await), vec![sent[1].clone()]);

    let out = h.cli(&["events", "erase"]);
    assert!(!out.status.success(), "erase without a filter is refused");
    let out = h.cli(&[
        "events",
        "erase",
        "-q",
        r#"payload.data.lead.email == "bob@example.com""#,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("erased 1 events and 1 dead letters"));
    assert!(ids(&events(&h, "").await).is_empty());
    let letters = get_json(&h.admin_url("/api/v1/dead-letters")).await;
    assert_eq!(letters["total"], 0, "{letters}");
}

/// Reads server-sent `data:` entries from a streaming response.
struct Sse {
    response: reqwest::Response,
    pending: String,
}

impl Sse {
    async fn open(url: &str) -> Sse {
        let response = client().get(url).send().await.expect("tail");
        assert_eq!(response.status(), 200);
        Sse {
            response,
            pending: String::new(),
        }
    }

    /// The next entry, within 20 s.
    async fn next(&mut self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(end) = self.pending.find("\n\n") {
                let entry: String = self.pending.drain(..end + 2).collect();
                if let Some(data) = entry.lines().find_map(|l| l.strip_prefix("data:")) {
                    return serde_json::from_str(data.trim()).expect("json entry");
                }
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, self.response.chunk())
                .await
                .expect("an entry within 20 s")
                .expect("read")
                .expect("stream open");
            self.pending.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Whether the stream ends cleanly (entries skipped) within 20 s.
    async fn ends(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.response.chunk()).await {
                Ok(Ok(Some(_))) => {}
                Ok(Ok(None)) => return true,
                Ok(Err(_)) | Err(_) => return false,
            }
        }
    }
}

#[tokio::test]
async fn tail_streams_accepted_events_and_each_stage_outcome_filtered_and_bounded() {
    let h = Hookline::start(&format!(
        r#"{}
[[pipelines]]
name = "archive"
source = "leadshark"
stages = [{{ sink = "file", path = "archive.jsonl" }}]

[[pipelines]]
name = "only-likes"
source = "leadshark"
stages = [
  {{ filter = "event", events = ["new.like"], name = "likes" }},
  {{ sink = "file", path = "likes.jsonl" }},
]
"#,
        leadshark_source()
    ));
    let mut everything = Sse::open(&h.admin_url("/api/v1/tail")).await;
    let mut likes = Sse::open(&h.admin_url("/api/v1/tail?pipeline=only-likes&stage=likes")).await;
    let mut cli = std::process::Command::new(bin())
        // The test's config listens on port 0: name the port it got.
        .args(["tail", "--json", "--pipeline", "archive", "--admin"])
        .arg(format!("http://{}", h.admin_addr))
        .arg("--config")
        .arg(&h.config_path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("hookline tail");
    let cli_out = cli.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(cli_out)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let r = post_signed(&h.url("/webhooks/leadshark"), &lead(1, "ada@acme.com")).await;
    assert_eq!(r.status, 200, "{}", r.json);
    let id = r.json["id"].as_str().expect("id").to_string();

    let accepted = everything.next().await;
    assert_eq!(accepted["kind"], "accepted", "{accepted}");
    assert_eq!(accepted["event_id"], id.as_str());
    assert_eq!(accepted["type"], "email.captured");
    assert_eq!(accepted["routed"], 2);
    let mut stages = Vec::new();
    while stages.len() < 2 {
        let e = everything.next().await;
        assert_eq!(e["kind"], "stage", "{e}");
        assert_eq!(e["event_id"], id.as_str());
        stages.push((
            e["pipeline"].as_str().expect("p").to_string(),
            e["outcome"].as_str().expect("o").to_string(),
        ));
    }
    stages.sort();
    assert_eq!(
        stages,
        [
            ("archive".to_string(), "passed".to_string()),
            ("only-likes".to_string(), "dropped".to_string())
        ]
    );
    let like = likes.next().await;
    assert_eq!(
        (
            like["pipeline"].clone(),
            like["stage_name"].clone(),
            like["outcome"].clone()
        ),
        (json!("only-likes"), json!("likes"), json!("dropped"))
    );

    // The CLI sees events from when it has connected: send until it prints one.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sent = vec![id];
    let line = loop {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(300)) {
            break line;
        }
        assert!(Instant::now() < deadline, "hookline tail printed nothing");
        let r = post_signed(
            &h.url("/webhooks/leadshark"),
            &lead(sent.len() as u64 + 1, "bob@example.com"),
        )
        .await;
        sent.push(r.json["id"].as_str().expect("id").to_string());
    };
    let entry: Value = serde_json::from_str(&line).expect("json line");
    assert_eq!(entry["kind"], "stage", "{entry}");
    assert_eq!(entry["pipeline"], "archive", "{entry}");
    assert!(
        sent.iter().any(|id| entry["event_id"] == id.as_str()),
        "{entry}"
    );
    let _ = cli.kill();
    let _ = cli.wait();

    // Bounded: at most 16 tails at once; the 17th is told so.
    let mut open = Vec::new();
    while open.len() < 16 {
        let r = client()
            .get(h.admin_url("/api/v1/tail"))
            .send()
            .await
            .expect("tail");
        if r.status() == 503 {
            break;
        }
        open.push(r);
    }
    // Two are still open above (and the CLI's may not be released yet).
    assert!(open.len() <= 14, "{}", open.len());
    let r = client()
        .get(h.admin_url("/api/v1/tail"))
        .send()
        .await
        .expect("tail");
    assert_eq!(r.status(), 503);
    assert!(
        r.text()
            .await
            .expect("body")
            .contains("tails are open already")
    );
    drop(open);
    drop(everything);
    drop(likes);
}

/// A stop does not wait for the tails open on it (a console tab, `hookline tail`): each ends
/// cleanly, the process exits, and the stop's log counts the pipeline runs in flight (none
/// here), not the service's own background tasks. `hookline tail` then follows the next
/// process on the same address.
#[tokio::test]
async fn open_tails_end_when_the_service_stops() {
    use std::io::BufRead;
    let port = Receiver::free_port();
    let h = Hookline::start(&format!(
        "[admin]\nlisten = \"127.0.0.1:{port}\"\n{}\n[[pipelines]]\nname = \"archive\"\nsource = \"leadshark\"\nstages = [{{ sink = \"file\", path = \"archive.jsonl\" }}]\n",
        leadshark_source()
    ));
    let mut tail = Sse::open(&h.admin_url("/api/v1/tail")).await;
    let mut cli = std::process::Command::new(bin())
        .args(["tail", "--json", "--config"])
        .arg(&h.config_path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("hookline tail");
    let lines = |from: Box<dyn std::io::Read + Send>| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(from).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        rx
    };
    let said = lines(Box::new(cli.stderr.take().expect("stderr")));
    let printed = lines(Box::new(cli.stdout.take().expect("stdout")));
    let next = |rx: &std::sync::mpsc::Receiver<String>, what: &str| {
        rx.recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("hookline tail: no {what}"))
    };
    assert!(next(&said, "`following`").starts_with("following"));
    let r = post_signed(&h.url("/webhooks/leadshark"), &lead(1, "ada@acme.com")).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(tail.next().await["kind"], "accepted");
    wait_for_lines(&h.path("archive.jsonl"), 1).await;
    wait_until("the run settled", || {
        std::fs::read_to_string(&h.log_path).is_ok_and(|l| l.contains("delivered event_id"))
    })
    .await;

    let log = h.log_path.clone();
    let dir = h.stop();
    assert!(tail.ends().await, "the tail ended with the service");
    // The one run may still be finishing its settle; the poller and the pruner (two tasks)
    // are not runs.
    let log = std::fs::read_to_string(log).expect("log");
    let in_flight: usize = log
        .split("waiting for pipeline runs in flight in_flight=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no drain line in:\n{log}"));
    assert!(in_flight <= 1, "{log}");
    let line = next(&said, "word of the closed tail");
    assert!(line.contains("closed the tail; reconnecting"), "{line}");

    let h = Hookline::start_in(dir, &[]);
    assert!(next(&said, "`following` again").starts_with("following"));
    let r = post_signed(&h.url("/webhooks/leadshark"), &lead(2, "bob@example.com")).await;
    assert_eq!(r.status, 200, "{}", r.json);
    let id = r.json["id"].as_str().expect("id");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let entry: Value = serde_json::from_str(&next(&printed, "entry")).expect("json");
        if entry["kind"] == "accepted" && entry["event_id"] == id {
            break;
        }
        assert!(Instant::now() < deadline, "the new event was not followed");
    }
    // A process that dies (kill -9) cuts the tail off mid-stream: followed again too.
    let dir = h.crash();
    let line = next(&said, "word of the cut tail");
    assert!(
        line.contains("the tail was cut off; reconnecting"),
        "{line}"
    );
    let _h = Hookline::start_in(dir, &[]);
    assert!(next(&said, "`following` a third time").starts_with("following"));
    let _ = cli.kill();
    let _ = cli.wait();
}

/// A quiet tail outlives the listener's idle timeout: its keep-alive comes more often.
#[tokio::test]
async fn a_quiet_tail_is_not_cut_at_the_idle_timeout() {
    let h = Hookline::start_with(
        &format!(
            "{}\n[[pipelines]]\nname = \"archive\"\nsource = \"leadshark\"\nstages = [{{ sink = \"file\", path = \"archive.jsonl\" }}]\n",
            leadshark_source()
        ),
        "idle_timeout = \"2s\"",
        &[],
    );
    let mut tail = Sse::open(&h.admin_url("/api/v1/tail")).await;
    let quiet_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < quiet_until {
        let left = quiet_until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, tail.response.chunk()).await {
            Err(_) => break,
            Ok(Ok(Some(_))) => {}
            Ok(end) => panic!("a quiet tail was cut: {end:?}"),
        }
    }
    let r = post_signed(&h.url("/webhooks/leadshark"), &lead(1, "ada@acme.com")).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(tail.next().await["kind"], "accepted");
}
