//! The `nats` sink: JetStream publishes with `Nats-Msg-Id`, `check --connect`, a server that
//! is down then back, and `kill -9` of hookline under load (exactly once in the stream).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use serde_json::Value;

use super::{check, pipeline};
use crate::nats::NatsServer;
use crate::support::*;

/// A message as the stream stored it.
struct Stored {
    subject: String,
    msg_id: String,
    event_id: String,
    payload: Value,
}

async fn jetstream(server: &NatsServer) -> jetstream::Context {
    let client = async_nats::connect(server.url()).await.expect("connect");
    jetstream::new(client)
}

/// Creates stream `LEADS` on `leads.>` with a 10-minute duplicate window.
async fn create_leads_stream(server: &NatsServer) {
    jetstream(server)
        .await
        .create_stream(stream::Config {
            name: "LEADS".into(),
            subjects: vec!["leads.>".into()],
            duplicate_window: Duration::from_secs(600),
            ..Default::default()
        })
        .await
        .expect("create stream");
}

/// Every message in `LEADS`, in order.
async fn stored(server: &NatsServer) -> Vec<Stored> {
    let js = jetstream(server).await;
    let mut stream = js.get_stream("LEADS").await.expect("stream");
    let last = stream.info().await.expect("info").state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        let Ok(m) = stream.get_raw_message(seq).await else {
            continue;
        };
        let header = |name: &str| {
            m.headers
                .get(name)
                .map(|v| v.as_str().to_string())
                .unwrap_or_default()
        };
        out.push(Stored {
            subject: m.subject.to_string(),
            msg_id: header("Nats-Msg-Id"),
            event_id: header("Hookline-Event-Id"),
            payload: serde_json::from_slice(&m.payload).expect("payload is JSON"),
        });
    }
    out
}

async fn wait_for_stored(server: &NatsServer, n: usize) -> Vec<Stored> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = stored(server).await;
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "timed out: {} of {n} messages in the stream",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn nats_stage(url: &str) -> String {
    format!(
        r#"{{ sink = "nats", name = "bus", url = "{url}", subject = "leads.{{{{ event.type }}}}", timeout = "2s", retry = {{ attempts = 1000, initial = "100ms", max = "300ms" }} }}"#
    )
}

#[tokio::test]
async fn signed_events_arrive_on_their_subject_with_payload_and_message_id() {
    let server = NatsServer::start();
    create_leads_stream(&server).await;
    let h = Hookline::start(&pipeline(&nats_stage(&server.url())));
    let url = h.url("/webhooks/leadshark");
    let mut sent = Vec::new();
    for (i, event) in ["email.captured", "new.like", "email.captured"]
        .into_iter()
        .enumerate()
    {
        let body = sample(event, i as u64);
        let r = post_signed(&url, &body).await;
        assert_eq!(r.status, 200, "{}", r.json);
        let id = r.json["id"].as_str().expect("id").to_string();
        sent.push((
            id,
            event,
            serde_json::from_str::<Value>(&body).expect("json"),
        ));
    }
    let got = wait_for_stored(&server, 3).await;
    assert_eq!(got.len(), 3);
    for (id, event, body) in &sent {
        let m = got
            .iter()
            .find(|m| &m.event_id == id)
            .unwrap_or_else(|| panic!("event {id} not in the stream"));
        assert_eq!(m.subject, format!("leads.{event}"));
        assert_eq!(&m.payload, body, "the payload as sent");
        assert!(
            m.msg_id.starts_with(&format!("{id}:crm:bus:")),
            "Nats-Msg-Id {}",
            m.msg_id
        );
    }
}

#[tokio::test]
async fn check_connect_finds_the_stream_or_says_what_is_missing() {
    let server = NatsServer::start();
    create_leads_stream(&server).await;
    let url = server.url();
    let ok = pipeline(&nats_stage(&url));
    let (passed, out) = check(&ok, true);
    assert!(passed, "{out}");
    assert!(out.contains("connect crm/bus (nats): OK"), "{out}");

    let no_stream = ok.replace("leads.{{ event.type }}", "orders.{{ event.type }}");
    let (passed, out) = check(&no_stream, true);
    assert!(!passed, "{out}");
    assert!(
        out.contains(&format!(
            "connect crm/bus (nats): FAILED: no JetStream stream on {url} takes subject `orders.*`"
        )),
        "{out}"
    );

    let closed = Receiver::free_port();
    let closed_url = format!("nats://127.0.0.1:{closed}");
    let down = pipeline(&nats_stage(&closed_url));
    let (passed, out) = check(&down, true);
    assert!(!passed, "{out}");
    assert!(
        out.contains(&format!(
            "connect crm/bus (nats): FAILED: cannot connect to {closed_url}"
        )),
        "{out}"
    );
    // Without --connect, nothing is reached and all three configs are valid.
    for text in [&ok, &no_stream, &down] {
        let (passed, out) = check(text, false);
        assert!(passed, "{out}");
    }
}

#[tokio::test]
async fn a_server_that_is_down_gets_the_events_once_it_is_back() {
    let mut server = NatsServer::start();
    create_leads_stream(&server).await;
    let h = Hookline::start(&pipeline(&nats_stage(&server.url())));
    let url = h.url("/webhooks/leadshark");
    assert_eq!(post_signed(&url, &sample("new.like", 0)).await.status, 200);
    wait_for_stored(&server, 1).await;
    // Stopped cleanly so that the stored message survives; hookline's connection is lost.
    server.terminate();
    let mut ids = Vec::new();
    for i in 1..4 {
        let r = post_signed(&url, &sample("new.like", i)).await;
        assert_eq!(r.status, 200, "{}", r.json);
        ids.push(r.json["id"].as_str().expect("id").to_string());
    }
    wait_until("a retry", || h.log().contains("will retry")).await;
    server.restart();
    let got = wait_for_stored(&server, 4).await;
    for id in &ids {
        assert_eq!(
            got.iter().filter(|m| &m.event_id == id).count(),
            1,
            "{id} stored once"
        );
    }
}

#[tokio::test]
async fn every_acknowledged_event_is_in_the_stream_exactly_once_after_kill_9() {
    let server = NatsServer::start();
    create_leads_stream(&server).await;
    let h = Hookline::start(&pipeline(&nats_stage(&server.url())));
    let load = Load::start(&h.url("/webhooks/leadshark"), "email.captured", 8, 250);
    wait_until("500 acknowledged events", || load.acked() >= 500).await;
    let dir = h.crash();
    let acked = load.finish().await;
    let _h = Hookline::start_in(dir, &[]);
    let deadline = Instant::now() + Duration::from_secs(120);
    let counts = loop {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for m in stored(&server).await {
            *counts.entry(m.event_id).or_default() += 1;
        }
        if acked.iter().all(|id| counts.contains_key(id)) || Instant::now() > deadline {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let lost = acked.iter().filter(|id| !counts.contains_key(*id)).count();
    assert_eq!(
        lost,
        0,
        "{lost} of {} acknowledged events lost",
        acked.len()
    );
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "stored more than once: {twice:?}");
    println!(
        "{} acknowledged, {} in the stream, each once",
        acked.len(),
        counts.len()
    );
}
