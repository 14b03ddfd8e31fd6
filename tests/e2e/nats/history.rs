//! Event history on the NATS journal: the scenarios of `tests/e2e/history.rs` — search by
//! source, type, time and CEL, an event's attempts and outcomes, replay into a pipeline
//! added by a reload, erasure — with an ingest and a worker process on one `nats-server`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;
use crate::history::{Searched, four_outcomes, ids, lead, outcome, searchable_scenario};
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

/// The scenario of [`crate::history::searchable_scenario`], with an ingest and a worker
/// process: each answers alike.
#[tokio::test]
async fn events_on_jetstream_are_searchable_and_show_each_pipelines_outcome_and_attempts() {
    let nats = NatsServer::start();
    let refuse = Receiver::start(vec![400; 64]).await;
    let busy = Receiver::start(vec![503; 64]).await;
    let body = four_outcomes(&refuse, &busy);
    let dir = config_dir(&nats_config(&nats.url(), &body, ""));
    let ingest = Node::start(dir.path(), "ingest", "ingest");
    let worker = Node::start(dir.path(), "worker", "worker");
    let cli = |args: &[&str]| cli_in(dir.path(), args);
    searchable_scenario(Searched {
        webhooks: ingest.url("/webhooks/leadshark"),
        admins: vec![ingest.admin_url(""), worker.admin_url("")],
        cli: &cli,
        // Documented: NATS has no paused pipelines, and no `finished` index.
        refused: &[
            ("?outcome=paused", "pipelines cannot be paused there"),
            (
                "?outcome=finished",
                "cannot be filtered by with the NATS journal",
            ),
        ],
    })
    .await;
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
