//! The `amqp` sink against a private RabbitMQ node: confirmed persistent publishes with
//! `message_id` and `event-id`, `check --connect`, a broker that is down then back, and
//! `kill -9` of hookline under load (at least once in the queue).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use lapin::options::{
    BasicGetOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use serde_json::Value;

use super::rabbitmq::RabbitMq;
use super::{check, pipeline};
use crate::support::*;

/// A message as the queue held it.
struct Got {
    routing_key: String,
    message_id: String,
    event_id: String,
    persistent: bool,
    payload: Value,
}

/// Durable topic exchange `leads` and durable queue `crm` bound to it with `lead.#`.
async fn declare(rabbit: &RabbitMq) {
    let conn = Connection::connect(&rabbit.url(), ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.exchange_declare(
        "leads".into(),
        ExchangeKind::Topic,
        durable,
        FieldTable::default(),
    )
    .await
    .expect("exchange");
    ch.queue_declare(
        "crm".into(),
        QueueDeclareOptions::durable(),
        FieldTable::default(),
    )
    .await
    .expect("queue");
    ch.queue_bind(
        "crm".into(),
        "leads".into(),
        "lead.#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    let _ = conn.close(200, "declared".into()).await;
}

/// Takes every message now in queue `crm`.
async fn drain(rabbit: &RabbitMq) -> Vec<Got> {
    let conn = Connection::connect(&rabbit.url(), ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    let mut out = Vec::new();
    let options = BasicGetOptions { no_ack: true };
    while let Some(m) = ch.basic_get("crm".into(), options).await.expect("get") {
        let d = &m.delivery;
        let p = &d.properties;
        let event_id = p
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get("event-id").cloned())
            .map(|v| match v {
                AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                other => format!("{other:?}"),
            })
            .unwrap_or_default();
        out.push(Got {
            routing_key: d.routing_key.to_string(),
            message_id: p
                .message_id()
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default(),
            event_id,
            persistent: *p.delivery_mode() == Some(2),
            payload: serde_json::from_slice(&d.data).expect("payload is JSON"),
        });
    }
    let _ = conn.close(200, "drained".into()).await;
    out
}

/// Drains until `done` holds for everything taken so far (or two minutes pass).
async fn drain_until(rabbit: &RabbitMq, mut done: impl FnMut(&[Got]) -> bool) -> Vec<Got> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut all = Vec::new();
    loop {
        all.extend(drain(rabbit).await);
        if done(&all) || Instant::now() > deadline {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn amqp_stage(url: &str, exchange: &str) -> String {
    format!(
        r#"{{ sink = "amqp", name = "mq", url = "{url}", exchange = "{exchange}", routing_key = "lead.{{{{ event.type }}}}", timeout = "5s", retry = {{ attempts = 1000, initial = "100ms", max = "500ms" }} }}"#
    )
}

#[tokio::test]
async fn signed_events_arrive_with_routing_key_payload_and_ids() {
    let rabbit = RabbitMq::start();
    rabbit.ready().await;
    declare(&rabbit).await;
    let h = Hookline::start(&pipeline(&amqp_stage(&rabbit.url(), "leads")));
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
    let got = drain_until(&rabbit, |g| g.len() >= 3).await;
    assert_eq!(got.len(), 3, "three messages in the queue");
    for (id, event, body) in &sent {
        let m = got
            .iter()
            .find(|m| &m.event_id == id)
            .unwrap_or_else(|| panic!("event {id} not in the queue"));
        assert_eq!(m.routing_key, format!("lead.{event}"));
        assert_eq!(&m.payload, body, "the payload as sent");
        assert!(m.persistent, "delivery_mode 2");
        assert!(
            m.message_id.starts_with(&format!("{id}:crm:mq:")),
            "message_id {}",
            m.message_id
        );
    }
}

#[tokio::test]
async fn check_connect_finds_the_exchange_or_says_what_is_missing() {
    let rabbit = RabbitMq::start();
    rabbit.ready().await;
    declare(&rabbit).await;
    let origin = format!("amqp://127.0.0.1:{}/%2f", rabbit.port);
    let ok = pipeline(&amqp_stage(&rabbit.url(), "leads"));
    let (passed, out) = check(&ok, true);
    assert!(passed, "{out}");
    assert!(out.contains("connect crm/mq (amqp): OK"), "{out}");

    let missing = pipeline(&amqp_stage(&rabbit.url(), "nope"));
    let (passed, out) = check(&missing, true);
    assert!(!passed, "{out}");
    assert!(
        out.contains(&format!(
            "connect crm/mq (amqp): FAILED: exchange `nope` not found (404) on {origin}"
        )),
        "{out}"
    );

    let closed = Receiver::free_port();
    let down = pipeline(&amqp_stage(
        &format!("amqp://guest:guest@127.0.0.1:{closed}/%2f"),
        "leads",
    ));
    let (passed, out) = check(&down, true);
    assert!(!passed, "{out}");
    assert!(
        out.contains(&format!(
            "connect crm/mq (amqp): FAILED: cannot connect to amqp://127.0.0.1:{closed}/%2f"
        )),
        "{out}"
    );
    assert!(
        !out.contains("guest:guest"),
        "no credentials in messages: {out}"
    );
    for text in [&ok, &missing, &down] {
        let (passed, out) = check(text, false);
        assert!(passed, "{out}");
    }
}

#[tokio::test]
async fn a_broker_that_is_down_gets_the_events_once_it_is_back() {
    let mut rabbit = RabbitMq::start();
    rabbit.ready().await;
    declare(&rabbit).await;
    // The sink's circuit opens while the broker is down; probes every second or two keep
    // the test independent of how long the broker takes to come back (the default
    // cooldown, 30 s doubling, could outlast the wait below on a loaded machine).
    let stage = amqp_stage(&rabbit.url(), "leads");
    let stage = format!(
        r#"{}, circuit = {{ cooldown = "1s", max_cooldown = "2s" }} }}"#,
        stage.strip_suffix(" }").expect("a stage table")
    );
    let h = Hookline::start(&pipeline(&stage));
    let url = h.url("/webhooks/leadshark");
    assert_eq!(post_signed(&url, &sample("new.like", 0)).await.status, 200);
    assert_eq!(drain_until(&rabbit, |g| !g.is_empty()).await.len(), 1);
    // The connection hookline holds dies with the broker.
    rabbit.kill();
    let mut ids = Vec::new();
    for i in 1..4 {
        let r = post_signed(&url, &sample("new.like", i)).await;
        assert_eq!(r.status, 200, "{}", r.json);
        ids.push(r.json["id"].as_str().expect("id").to_string());
    }
    wait_until("a retry", || h.log().contains("will retry")).await;
    rabbit.restart();
    rabbit.ready().await;
    let got = drain_until(&rabbit, |g| {
        ids.iter().all(|id| g.iter().any(|m| &m.event_id == id))
    })
    .await;
    for id in &ids {
        assert!(
            got.iter().any(|m| &m.event_id == id),
            "{id} arrived after the restart"
        );
    }
}

#[tokio::test]
async fn every_acknowledged_event_is_in_the_queue_after_kill_9() {
    let rabbit = RabbitMq::start();
    rabbit.ready().await;
    declare(&rabbit).await;
    let h = Hookline::start(&pipeline(&amqp_stage(&rabbit.url(), "leads")));
    let load = Load::start(&h.url("/webhooks/leadshark"), "email.captured", 8, 250);
    wait_until("500 acknowledged events", || load.acked() >= 500).await;
    let dir = h.crash();
    let acked = load.finish().await;
    let _h = Hookline::start_in(dir, &[]);
    let got = drain_until(&rabbit, |g| {
        let ids: std::collections::HashSet<&str> = g.iter().map(|m| m.event_id.as_str()).collect();
        acked.iter().all(|id| ids.contains(id.as_str()))
    })
    .await;
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for m in &got {
        *counts.entry(m.event_id.as_str()).or_default() += 1;
    }
    let lost = acked
        .iter()
        .filter(|id| !counts.contains_key(id.as_str()))
        .count();
    assert_eq!(
        lost,
        0,
        "{lost} of {} acknowledged events lost",
        acked.len()
    );
    let twice = counts.values().filter(|n| **n > 1).count();
    println!(
        "{} acknowledged, {} in the queue, {twice} more than once (same message_id)",
        acked.len(),
        counts.len()
    );
}
