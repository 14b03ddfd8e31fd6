//! The scale-out promise, end to end: two ingest and two worker processes on one stream,
//! thousands of signed events, a worker `kill -9`ed and the NATS server itself killed and
//! restarted mid-run. Every event answered 2xx reaches the receiving sink at least once;
//! duplicates are counted and printed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;
use crate::support::*;

const EVENTS: u64 = 3000;
const SENDERS: u64 = 16;

/// What the senders saw.
#[derive(Default)]
pub(super) struct Sent {
    /// Ids answered 2xx, in the order the answers came (a duplicate's answer names the
    /// first event's id).
    pub(super) acked: Mutex<Vec<String>>,
    pub(super) unavailable: AtomicUsize,
    /// Every request not answered 2xx, in the order the answers (or errors) came.
    pub(super) refused: Mutex<Vec<Refusal>>,
}

/// A request that was not answered 2xx.
#[derive(Debug, Clone)]
pub(super) struct Refusal {
    /// When the request went out.
    pub(super) sent: Instant,
    /// When its answer, or the error, came.
    pub(super) answered: Instant,
    /// The status; `None` for no answer at all (refused connection, timeout).
    pub(super) status: Option<u16>,
    pub(super) retry_after: Option<String>,
}

fn cluster_config(nats: &NatsServer, receiver: &Receiver) -> tempfile::TempDir {
    config_dir(&nats_config(
        &nats.url(),
        &crm_pipeline(receiver),
        "publish_timeout = \"1s\"",
    ))
}

/// One pipeline, `crm`, with an `http` sink to `receiver` that retries quickly for long.
pub(super) fn crm_pipeline(receiver: &Receiver) -> String {
    format!(
        r#"[[pipelines]]
name = "crm"
source = "leadshark"
stages = [{{ sink = "http", url = "{}", envelope = true, timeout = "2s", retry = {{ attempts = 1000, initial = "100ms", max = "300ms" }} }}]
"#,
        receiver.url()
    )
}

/// Senders that post `EVENTS` signed events over both ingest processes, each resent after
/// a 503 or a refused connection (as webhook senders do) until answered 2xx.
fn send_all(urls: Vec<String>, sent: Arc<Sent>) -> Vec<tokio::task::JoinHandle<()>> {
    send(urls, EVENTS, sent)
}

/// Senders that post `events` signed events, round robin over `urls`, each resent after a
/// 503 or a refused connection until answered 2xx (for up to 90 s). Every refusal is kept,
/// with when it was sent and answered, in [`Sent::refused`].
pub(super) fn send(
    urls: Vec<String>,
    events: u64,
    sent: Arc<Sent>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..SENDERS)
        .map(|s| {
            let (urls, sent) = (urls.clone(), sent.clone());
            tokio::spawn(async move {
                let c = client();
                let deadline = Instant::now() + Duration::from_secs(90);
                for i in (s..events).step_by(SENDERS as usize) {
                    let body = sample("email.captured", i);
                    let sig = sign(SECRET, body.as_bytes());
                    let url = &urls[(i % urls.len() as u64) as usize];
                    while Instant::now() < deadline {
                        let started = Instant::now();
                        let resp = c
                            .post(url)
                            .header("content-type", "application/json")
                            .header("x-webhook-signature", &sig)
                            .body(body.clone())
                            .timeout(Duration::from_secs(10))
                            .send()
                            .await;
                        match resp {
                            Ok(r) if r.status() == 200 => {
                                let v: Value = r.json().await.unwrap_or(Value::Null);
                                let id = v["id"].as_str().expect("id").to_string();
                                sent.acked.lock().expect("lock").push(id);
                                break;
                            }
                            Ok(r) => {
                                let retry_after = r
                                    .headers()
                                    .get("retry-after")
                                    .and_then(|v| v.to_str().ok())
                                    .map(str::to_string);
                                sent.refused.lock().expect("lock").push(Refusal {
                                    sent: started,
                                    answered: Instant::now(),
                                    status: Some(r.status().as_u16()),
                                    retry_after,
                                });
                                assert_eq!(r.status(), 503, "only 503 may refuse a signed event");
                                sent.unavailable.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(_) => sent.refused.lock().expect("lock").push(Refusal {
                                sent: started,
                                answered: Instant::now(),
                                status: None,
                                retry_after: None,
                            }),
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            })
        })
        .collect()
}

/// Wait until every acknowledged id reached the receiver; report and assert.
pub(super) async fn every_acked_event_arrives(receiver: &Receiver, sent: &Sent, what: &str) {
    let acked: Vec<String> = sent.acked.lock().expect("lock").clone();
    let started = Instant::now();
    let mut counts: HashMap<String, usize> = HashMap::new();
    loop {
        counts.clear();
        for r in receiver.received.lock().expect("lock").iter() {
            let v: Value = serde_json::from_slice(&r.body).expect("json");
            *counts
                .entry(v["id"].as_str().expect("id").to_string())
                .or_default() += 1;
        }
        if acked.iter().all(|id| counts.contains_key(id))
            || started.elapsed() > Duration::from_secs(60)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lost: Vec<&String> = acked
        .iter()
        .filter(|id| !counts.contains_key(*id))
        .collect();
    let mut duplicates: Vec<(&String, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    duplicates.sort();
    println!(
        "{what}: acknowledged {} ({} distinct), 503s {}, received {} distinct in {} requests, lost {}, duplicates {}: {:?}",
        acked.len(),
        acked.iter().collect::<std::collections::HashSet<_>>().len(),
        sent.unavailable.load(Ordering::Relaxed),
        counts.len(),
        counts.values().sum::<usize>(),
        lost.len(),
        duplicates.len(),
        duplicates
    );
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        lost.len(),
        lost.iter().take(5).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_ingest_and_two_workers_lose_nothing_when_a_worker_is_killed() {
    let nats = NatsServer::start();
    let receiver = Receiver::start(vec![]).await;
    let dir = cluster_config(&nats, &receiver);
    let ingest = [
        Node::start(dir.path(), "ingest", "ingest-1"),
        Node::start(dir.path(), "ingest", "ingest-2"),
    ];
    let mut victim = Node::start(dir.path(), "worker", "worker-1");
    let survivor = Node::start(dir.path(), "worker", "worker-2");
    let sent = Arc::new(Sent::default());
    let started = Instant::now();
    let senders = send_all(
        ingest
            .iter()
            .map(|n| n.url("/webhooks/leadshark"))
            .collect(),
        sent.clone(),
    );
    wait_until_secs("a quarter of the events delivered", 60, || {
        receiver.received.lock().expect("lock").len() as u64 >= EVENTS / 4
    })
    .await;
    victim.kill();
    let at_kill = receiver.received.lock().expect("lock").len();
    for s in senders {
        s.await.expect("sender");
    }
    let sending = started.elapsed();
    assert_eq!(
        sent.acked.lock().expect("lock").len() as u64,
        EVENTS,
        "every event answered 2xx"
    );
    every_acked_event_arrives(&receiver, &sent, "worker kill -9").await;
    println!(
        "worker killed after {at_kill} deliveries; {EVENTS} events sent in {:.1}s, all delivered after {:.1}s",
        sending.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert!((at_kill as u64) < EVENTS, "the worker died mid-run");
    println!(
        "the surviving worker ran {} redelivered messages",
        survivor
            .log()
            .matches("running a redelivered message")
            .count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nats_restart_mid_run_answers_503_meanwhile_and_loses_nothing() {
    let mut nats = NatsServer::start();
    let receiver = Receiver::start(vec![]).await;
    let dir = cluster_config(&nats, &receiver);
    let (ingest, _workers) = two_ingest_two_workers(dir.path());
    let sent = Arc::new(Sent::default());
    let senders = send_all(
        ingest
            .iter()
            .map(|n| n.url("/webhooks/leadshark"))
            .collect(),
        sent.clone(),
    );
    wait_until_secs("a quarter of the events acknowledged", 60, || {
        sent.acked.lock().expect("lock").len() as u64 >= EVENTS / 4
    })
    .await;
    nats.kill();
    let down = Instant::now();
    let before = sent.unavailable.load(Ordering::Relaxed);
    wait_until_secs("503s while NATS is away", 10, || {
        sent.unavailable.load(Ordering::Relaxed) > before + 20
    })
    .await;
    let acked_while_down = sent.acked.lock().expect("lock").len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        sent.acked.lock().expect("lock").len(),
        acked_while_down,
        "nothing is acknowledged while NATS is away"
    );
    nats.restart();
    println!("NATS was away for {:.1}s", down.elapsed().as_secs_f64());
    for s in senders {
        s.await.expect("sender");
    }
    assert_eq!(
        sent.acked.lock().expect("lock").len() as u64,
        EVENTS,
        "every event answered 2xx in the end"
    );
    every_acked_event_arrives(&receiver, &sent, "NATS restart").await;
}
