//! Event history on the NATS journal: the scenarios of `tests/e2e/history.rs` — search by
//! source, type, time and CEL, an event's attempts and outcomes, replay into a pipeline
//! added by a reload, erasure — with an ingest and a worker process on one `nats-server`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;
use crate::history::{ids, lead, outcome};
use crate::support::*;

async fn events(node: &Node, query: &str) -> Value {
    get_json(&node.admin_url(&format!("/api/v1/events{query}"))).await
}

async fn status_of(r: reqwest::RequestBuilder) -> (u16, Value) {
    let r = r.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn cli_json(dir: &std::path::Path, args: &[&str]) -> Value {
    let out = cli_in(dir, args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

#[tokio::test]
async fn events_on_jetstream_are_searchable_and_show_each_pipelines_outcome_and_attempts() {
    let nats = NatsServer::start();
    let refuse = Receiver::start(vec![400; 64]).await;
    let busy = Receiver::start(vec![503; 64]).await;
    let body = format!(
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
    );
    let dir = config_dir(&nats_config(&nats.url(), &body, ""));
    let ingest = Node::start(dir.path(), "ingest", "ingest");
    let worker = Node::start(dir.path(), "worker", "worker");
    let url = ingest.url("/webhooks/leadshark");
    let before = jiff::Timestamp::now();
    let mut sent = Vec::new();
    for (i, email) in ["ada@acme.com", "bob@example.com", "cy@acme.com"]
        .iter()
        .enumerate()
    {
        let r = post_signed(&url, &lead(i as u64, email)).await;
        assert_eq!(r.status, 200, "{}", r.json);
        sent.push(r.json["id"].as_str().expect("id").to_string());
    }
    // Every first run settles: delivered, dropped, dead-lettered (400), retrying (503).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = events(&ingest, "?outcome=retrying&pipeline=slow").await;
        let dead = events(&worker, "?outcome=dead_lettered").await;
        let delivered = events(&worker, "?outcome=delivered&pipeline=archive").await;
        if ids(&page).len() == 3 && ids(&dead).len() == 3 && ids(&delivered).len() == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "runs did not settle: {page} {dead}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Newest first, everything, from either process.
    let newest_first: Vec<String> = sent.iter().rev().cloned().collect();
    for node in [&ingest, &worker] {
        let all = events(node, "").await;
        assert_eq!(ids(&all), newest_first, "{all}");
        assert_eq!(all["next"], Value::Null);
    }
    let all = events(&worker, "").await;
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
    let count = |q: &'static str| {
        let w = &worker;
        async move { ids(&events(w, q).await).len() }
    };
    assert_eq!(count("?source=leadshark").await, 3);
    assert_eq!(count("?source=other").await, 0);
    assert_eq!(count("?type=email.captured").await, 3);
    assert_eq!(count("?type=new.like").await, 0);
    assert_eq!(count("?pipeline=only-likes&outcome=dropped").await, 3);
    assert_eq!(count("?pipeline=only-likes&outcome=delivered").await, 0);
    assert_eq!(count("?outcome=delivered").await, 3);
    assert_eq!(count("?since=1h").await, 3);
    let since = (before - jiff::SignedDuration::from_secs(1)).to_string();
    assert_eq!(
        ids(&events(&worker, &format!("?since={since}")).await).len(),
        3
    );
    assert_eq!(
        ids(&events(&worker, &format!("?until={since}")).await).len(),
        0
    );
    let acme = events(
        &worker,
        "?q=payload.data.lead.email.endsWith(%22%40acme.com%22)",
    )
    .await;
    assert_eq!(ids(&acme), vec![sent[2].clone(), sent[0].clone()], "{acme}");

    // Paging by cursor (a stream sequence): one at a time, every event once, in order.
    let mut walked = Vec::new();
    let mut cursor = String::new();
    for _ in 0..10 {
        let page = events(&ingest, &format!("?limit=1{cursor}")).await;
        walked.extend(ids(&page));
        match page["next"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(walked, newest_first);

    // Bad input is a 400 that says why; so is an outcome NATS never has (documented).
    for (query, says) in [
        ("?outcome=lost", "not an outcome"),
        ("?cursor=abc", "not a cursor"),
        ("?q=paylod.x", "paylod"),
        ("?since=soon", "RFC 3339"),
        ("?outcome=paused", "pipelines cannot be paused there"),
        (
            "?outcome=finished",
            "cannot be filtered by with the NATS journal",
        ),
    ] {
        let (status, body) =
            status_of(client().get(worker.admin_url(&format!("/api/v1/events{query}")))).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body["error"].to_string().contains(says), "{query}: {body}");
    }

    // One event: headers as stored (never the signature), payload, attempts, dead letters.
    let one = get_json(&ingest.admin_url(&format!("/api/v1/events/{}", sent[0]))).await;
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
    let (status, _) = status_of(
        client().get(worker.admin_url("/api/v1/events/0190b7e4-0000-7000-8000-000000000000")),
    )
    .await;
    assert_eq!(status, 404);

    // The CLI reads the same from JetStream.
    let page = cli_json(
        dir.path(),
        &["events", "list", "--outcome", "dropped", "--json"],
    );
    assert_eq!(ids(&page), newest_first);
    let out = cli_in(
        dir.path(),
        &[
            "events",
            "list",
            "-q",
            r#"payload.data.lead.email == "bob@example.com""#,
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&sent[1]) && !text.contains(&sent[0]),
        "{text}"
    );
    assert!(text.contains("only-likes: dropped at 0:likes"), "{text}");
    let out = cli_in(dir.path(), &["events", "show", &sent[1]]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for want in ["bob@example.com", "crm", "dead-lettered", "payload"] {
        assert!(text.contains(want), "{want} missing from:\n{text}");
    }
}

#[tokio::test]
async fn on_jetstream_an_event_replays_into_a_pipeline_added_by_a_reload_and_erasure_deletes_its_messages()
 {
    let nats = NatsServer::start();
    let crm = Receiver::start(vec![]).await;
    let strict = Receiver::start(vec![400; 16]).await;
    let body = format!(
        r#"[[pipelines]]
name = "archive"
source = "leadshark"
stages = [{{ sink = "file", path = "archive.jsonl" }}]

[[pipelines]]
name = "strict"
source = "leadshark"
stages = [{{ sink = "http", url = "{}", timeout = "2s" }}]
"#,
        strict.url()
    );
    let dir = config_dir(&nats_config(&nats.url(), &body, ""));
    let ingest = Node::start(dir.path(), "ingest", "ingest");
    let worker = Node::start(dir.path(), "worker", "worker");
    let url = ingest.url("/webhooks/leadshark");
    let mut sent = Vec::new();
    for (i, email) in ["ada@acme.com", "bob@example.com"].iter().enumerate() {
        let r = post_signed(&url, &lead(i as u64, email)).await;
        assert_eq!(r.status, 200, "{}", r.json);
        sent.push(r.json["id"].as_str().expect("id").to_string());
    }
    wait_for_lines(&dir.path().join("archive.jsonl"), 2).await;
    strict.wait_for(2).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while ids(&events(&worker, "?pipeline=strict&outcome=dead_lettered").await).len() < 2 {
        assert!(Instant::now() < deadline, "no dead letters");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A pipeline added by a reload, after the events arrived: it is not theirs.
    let config = dir.path().join("pipeline.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    let added = format!(
        "{text}\n[[pipelines]]\nname = \"crm\"\nsource = \"leadshark\"\nstages = [{{ sink = \"http\", url = \"{}\", timeout = \"2s\" }}]\n",
        crm.url()
    );
    std::fs::write(&config, added).expect("write config");
    wait_until_secs("both processes reloaded", 30, || {
        worker.log().contains("configuration reloaded")
            && ingest.log().contains("configuration reloaded")
    })
    .await;
    let shown = get_json(&worker.admin_url(&format!("/api/v1/events/{}", sent[0]))).await;
    assert!(
        !shown["pipelines"].to_string().contains("\"crm\""),
        "not routed to a pipeline added later: {shown}"
    );

    // Backfill one event into it over the API (once the reload has created the pipeline's
    // consumers, within a second), the other with the CLI.
    let replay = format!("/api/v1/events/{}/replay?pipeline=crm", sent[0]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let queued = loop {
        let (status, body) = status_of(client().post(ingest.admin_url(&replay))).await;
        if status == 202 {
            break body;
        }
        assert_eq!(status, 409, "{body}");
        assert!(body["error"].to_string().contains("no consumer"), "{body}");
        assert!(Instant::now() < deadline, "the consumer never came: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let retry_seq = queued["delivery_id"].as_u64().expect("a stream sequence");
    let got = crm.wait_for(1).await;
    assert!(
        String::from_utf8_lossy(&got[0].body).contains("ada@acme.com"),
        "{:?}",
        got[0].body
    );
    let out = cli_in(
        dir.path(),
        &["events", "replay", &sent[1], "--pipeline", "crm"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(crm.wait_for(2).await.len(), 2);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let one = get_json(&worker.admin_url(&format!("/api/v1/events/{}", sent[0]))).await;
        if one["pipelines"].to_string().contains("\"crm\"")
            && outcome(&one, "crm")["outcome"] == "delivered"
        {
            break;
        }
        assert!(Instant::now() < deadline, "crm outcome not recorded: {one}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Replays that cannot be: no such pipeline, no such event, nothing to resume from.
    let post = |path: String| status_of(client().post(worker.admin_url(&path)));
    let (status, _) = post(format!("/api/v1/events/{}/replay?pipeline=nope", sent[0])).await;
    assert_eq!(status, 404);
    let (status, _) =
        post("/api/v1/events/0190b7e4-0000-7000-8000-000000000000/replay?pipeline=crm".into())
            .await;
    assert_eq!(status, 404);
    let (status, body) = post(format!(
        "/api/v1/events/{}/replay?pipeline=crm&from=failed",
        sent[0]
    ))
    .await;
    assert_eq!(status, 409, "{body}");

    // Erasure: a filter is required; then one person is gone from the listing, the event's
    // page, the dead letters and the stream itself (its message and the replay's).
    let (status, body) = status_of(client().delete(ingest.admin_url("/api/v1/events"))).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) =
        status_of(client().delete(ingest.admin_url(
            "/api/v1/events?q=payload.data.lead.email%20%3D%3D%20%22ada%40acme.com%22",
        )))
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
    let (status, _) =
        status_of(client().get(worker.admin_url(&format!("/api/v1/events/{}", sent[0])))).await;
    assert_eq!(status, 404);
    let letters = get_json(&worker.admin_url("/api/v1/dead-letters"))
        .await
        .to_string();
    assert!(
        !letters.contains(&sent[0]) && letters.contains(&sent[1]),
        "{letters}"
    );
    assert_eq!(ids(&events(&worker, "").await), vec![sent[1].clone()]);
    let stream_text = stream_dump(&nats.url()).await;
    assert!(!stream_text.contains("ada@acme.com"), "{stream_text}");
    assert!(stream_text.contains("bob@example.com"), "{stream_text}");
    assert!(
        !stream_text.contains(&format!("HOOKLINE seq {retry_seq}:")),
        "the replay's message is gone: {stream_text}"
    );

    let out = cli_in(dir.path(), &["events", "erase"]);
    assert!(!out.status.success(), "erase without a filter is refused");
    let out = cli_in(
        dir.path(),
        &[
            "events",
            "erase",
            "-q",
            r#"payload.data.lead.email == "bob@example.com""#,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("erased 1 events and 1 dead letters"),
        "{said}"
    );
    assert!(ids(&events(&ingest, "").await).is_empty());
    let letters = get_json(&ingest.admin_url("/api/v1/dead-letters")).await;
    assert_eq!(letters["total"], 0, "{letters}");
    let stream_text = stream_dump(&nats.url()).await;
    assert!(!stream_text.contains("bob@example.com"), "{stream_text}");
}

/// Every message left in the events and history streams, as `seq N: <body>` lines.
async fn stream_dump(url: &str) -> String {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = async_nats::connect(url).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let mut out = String::new();
    for name in ["HOOKLINE", "HOOKLINE_history"] {
        let mut stream = js.get_stream(name).await.expect("stream");
        let state = stream.info().await.expect("info").state.clone();
        for seq in state.first_sequence..=state.last_sequence {
            if let Ok(m) = stream.direct_get(seq).await {
                out.push_str(&format!(
                    "{name} seq {seq}: {}\n",
                    String::from_utf8_lossy(&m.payload)
                ));
            }
        }
    }
    out
}

#[tokio::test]
async fn on_jetstream_erasure_leaves_an_event_whose_first_run_is_under_way_as_busy() {
    let nats = NatsServer::start();
    // A destination that takes the connection and does not answer: the run hangs there.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let body = format!(
        r#"[[pipelines]]
name = "hang"
source = "leadshark"
stages = [{{ sink = "http", url = "http://{}/", timeout = "20s", retry = {{ attempts = 1 }} }}]
"#,
        silent.local_addr().expect("addr")
    );
    let dir = config_dir(&nats_config(&nats.url(), &body, ""));
    let ingest = Node::start(dir.path(), "ingest", "ingest");
    let _worker = Node::start(dir.path(), "worker", "worker");
    let r = post_signed(&ingest.url("/webhooks/leadshark"), &lead(1, "ada@acme.com")).await;
    assert_eq!(r.status, 200, "{}", r.json);
    let id = r.json["id"].as_str().expect("id").to_string();
    let (conn, _) = tokio::time::timeout(Duration::from_secs(20), silent.accept())
        .await
        .expect("the run reaches the destination")
        .expect("accept");

    let erase = "/api/v1/events?q=payload.data.lead.email%20%3D%3D%20%22ada%40acme.com%22";
    let (status, body) = status_of(client().delete(ingest.admin_url(erase))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["events"].clone(), body["busy"].clone()),
        (json!(0), json!(1)),
        "a run under way could write the event back: {body}"
    );
    let shown = get_json(&ingest.admin_url(&format!("/api/v1/events/{id}"))).await;
    assert_eq!(shown["id"], id.as_str());

    // The run ends (the connection drops: a dead letter); now it can be erased.
    drop(conn);
    drop(silent);
    let mut letters = Value::Null;
    wait_until_secs("the dead letter", 20, || {
        letters = cli_json(dir.path(), &["dlq", "list", "--json"]);
        letters["total"] == 1
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let (status, body) = status_of(client().delete(ingest.admin_url(erase))).await;
        assert_eq!(status, 200, "{body}");
        if body["busy"] == 0 {
            break body;
        }
        assert!(Instant::now() < deadline, "still busy: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        (body["events"].clone(), body["dead_letters"].clone()),
        (json!(1), json!(1)),
        "{body}"
    );
    let (status, _) =
        status_of(client().get(ingest.admin_url(&format!("/api/v1/events/{id}")))).await;
    assert_eq!(status, 404);
}
