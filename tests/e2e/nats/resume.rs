//! Workers keep pulling after whatever NATS goes through — a stream leader `kill -9`ed in a
//! three-server cluster under load, the only server away for longer than `stalled_after` —
//! and say so while they cannot: `hookline_consumer_pulling` and `/readyz`. Every
//! acknowledged event is delivered afterwards, without restarting Hookline.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::scale::{Sent, crm_pipeline, every_acked_event_arrives, send};
use super::*;
use crate::support::*;

/// The server name of the stream's leader (`n1`, `n2` or `n3`), asked of the cluster.
async fn stream_leader(urls: &[String]) -> Result<String, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .connect(urls.to_vec())
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let js = async_nats::jetstream::new(client);
    let info = js
        .get_stream("HOOKLINE")
        .await
        .map_err(|e| format!("stream: {e}"))?
        .get_info()
        .await
        .map_err(|e| format!("stream info: {e}"))?;
    info.cluster
        .and_then(|c| c.leader)
        .ok_or_else(|| "no leader".to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_leader_killed_under_load_in_a_three_server_cluster_loses_nothing() {
    const EVENTS: u64 = 1500;
    let mut cluster = NatsCluster::start();
    cluster.ready().await;
    let receiver = Receiver::start(vec![]).await;
    let dir = config_dir(&nats_config_toml(
        &cluster.urls_toml(),
        &crm_pipeline(&receiver),
        "replicas = 3\npublish_timeout = \"1s\"",
    ));
    let (ingest, workers) = two_ingest_two_workers(dir.path());
    let sent = Arc::new(Sent::default());
    let senders = send(
        ingest
            .iter()
            .map(|n| n.url("/webhooks/leadshark"))
            .collect(),
        EVENTS,
        sent.clone(),
    );
    wait_until_secs("a quarter of the events acknowledged", 60, || {
        sent.acked.lock().expect("lock").len() as u64 >= EVENTS / 4
    })
    .await;
    let leader = stream_leader(&cluster.urls())
        .await
        .unwrap_or_else(|e| panic!("the stream has a leader: {e}"));
    let index: usize = leader
        .trim_start_matches('n')
        .parse::<usize>()
        .expect("a server name n1..n3")
        - 1;
    cluster.kill(index);
    let killed = Instant::now();
    let at_kill = sent.acked.lock().expect("lock").len();
    let survivors: Vec<String> = cluster
        .urls()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i != index)
        .map(|(_, u)| u)
        .collect();
    let mut new_leader = None;
    while new_leader.is_none() && killed.elapsed() < Duration::from_secs(30) {
        new_leader = stream_leader(&survivors)
            .await
            .ok()
            .filter(|l| *l != leader);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "stream leader {leader} killed after {at_kill} acknowledged; new leader {new_leader:?} after {:.1}s",
        killed.elapsed().as_secs_f64()
    );
    for s in senders {
        s.await.expect("sender");
    }
    assert_eq!(
        sent.acked.lock().expect("lock").len() as u64,
        EVENTS,
        "every event answered 2xx in the end"
    );
    let received = receiver.received.lock().expect("lock").len();
    if received == 0 {
        panic!("nothing delivered:\n{}", cluster.logs());
    }
    every_acked_event_arrives(&receiver, &sent, "stream leader kill -9").await;
    // Both consumers of every worker pull again (each consumer elects its own leader; one
    // with no traffic may take a few seconds longer than the stream).
    for w in &workers {
        let started = Instant::now();
        loop {
            let text = scrape(w).await;
            let pulling: Vec<Option<f64>> = ["events", "retry"]
                .iter()
                .map(|c| {
                    metric(
                        &text,
                        "hookline_consumer_pulling",
                        &[("pipeline", "crm"), ("consumer", c)],
                    )
                })
                .collect();
            if pulling.iter().all(|p| *p == Some(1.0)) {
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                let log = w.log();
                let lines: Vec<&str> = log
                    .lines()
                    .filter(|l| l.contains("consumer") || l.contains("NATS"))
                    .collect();
                panic!(
                    "a worker's consumers (events, retry) still not pulling: {pulling:?}\n{}",
                    lines.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn readyz(node: &Node) -> (u16, Value) {
    match client()
        .get(node.admin_url("/readyz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or(Value::Null))
        }
        Err(e) => (0, Value::String(e.to_string())),
    }
}

fn pulling(text: &str, consumer: &str) -> Option<f64> {
    metric(
        text,
        "hookline_consumer_pulling",
        &[("pipeline", "crm"), ("consumer", consumer)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_reports_not_ready_while_nats_is_away_and_resumes_by_itself() {
    const EVENTS: u64 = 600;
    let mut nats = NatsServer::start();
    let receiver = Receiver::start(vec![]).await;
    let dir = config_dir(&nats_config(
        &nats.url(),
        &crm_pipeline(&receiver),
        "publish_timeout = \"1s\"\nstalled_after = \"2s\"",
    ));
    let ingest = Node::start(dir.path(), "ingest", "ingest");
    let worker = Node::start(dir.path(), "worker", "worker");
    let (status, body) = readyz(&worker).await;
    assert_eq!(status, 200, "ready before the outage: {body}");
    // The worker pulls within a poll interval of starting.
    let started = Instant::now();
    let last_pull = loop {
        let text = scrape(&worker).await;
        assert_eq!(pulling(&text, "events"), Some(1.0), "{text}");
        let last = metric(
            &text,
            "hookline_consumer_last_pull_timestamp_seconds",
            &[("pipeline", "crm"), ("consumer", "events")],
        )
        .expect("last pull time");
        if last > 0.0 || started.elapsed() > Duration::from_secs(10) {
            break last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let now = jiff::Timestamp::now().as_second() as f64;
    assert!(
        (now - last_pull).abs() < 10.0,
        "a pull was answered just now: {last_pull} vs {now}"
    );

    let sent = Arc::new(Sent::default());
    let senders = send(
        vec![ingest.url("/webhooks/leadshark")],
        EVENTS,
        sent.clone(),
    );
    wait_until_secs("a third of the events acknowledged", 60, || {
        sent.acked.lock().expect("lock").len() as u64 >= EVENTS / 3
    })
    .await;
    nats.kill();
    let down = Instant::now();

    // The worker says it cannot pull: the gauge at once, /readyz after `stalled_after`.
    let mut gauge_down = None;
    let mut not_ready = None;
    while (gauge_down.is_none() || not_ready.is_none()) && down.elapsed() < Duration::from_secs(30)
    {
        if gauge_down.is_none() && pulling(&scrape(&worker).await, "events") == Some(0.0) {
            gauge_down = Some(down.elapsed());
        }
        let (status, body) = readyz(&worker).await;
        if status == 503
            && body["reason"]
                .as_str()
                .is_some_and(|r| r.contains("consumer has not been pulled from"))
        {
            not_ready = Some((down.elapsed(), body));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let gauge_down = gauge_down.expect("hookline_consumer_pulling went to 0 while NATS was away");
    let (not_ready_after, body) =
        not_ready.expect("/readyz reported the stalled consumer while NATS was away");
    assert!(
        not_ready_after >= Duration::from_secs(2),
        "not ready only after `stalled_after`: {not_ready_after:?}"
    );
    println!(
        "NATS away: pulling=0 after {:.1}s, /readyz 503 after {:.1}s: {body}",
        gauge_down.as_secs_f64(),
        not_ready_after.as_secs_f64()
    );
    // Away for well over `stalled_after` and the pull deadline.
    tokio::time::sleep(Duration::from_secs(6).saturating_sub(down.elapsed())).await;
    nats.restart();
    let up = Instant::now();

    let mut ready_again = None;
    while ready_again.is_none() && up.elapsed() < Duration::from_secs(30) {
        let (status, _) = readyz(&worker).await;
        let text = scrape(&worker).await;
        if status == 200
            && pulling(&text, "events") == Some(1.0)
            && pulling(&text, "retry") == Some(1.0)
        {
            ready_again = Some(up.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(ready_again) = ready_again else {
        let log = worker.log();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        panic!(
            "not ready and pulling again 30 s after NATS came back; worker log (last lines first):\n{}",
            tail.join("\n")
        );
    };
    println!(
        "NATS back: ready and pulling after {:.1}s",
        ready_again.as_secs_f64()
    );
    for s in senders {
        s.await.expect("sender");
    }
    assert_eq!(sent.acked.lock().expect("lock").len() as u64, EVENTS);
    assert!(
        sent.unavailable.load(Ordering::Relaxed) > 0,
        "ingest answered 503 while NATS was away"
    );
    every_acked_event_arrives(&receiver, &sent, "NATS away for 6s").await;

    // A line per episode and consumer (two consumers; a reconnect may flap once), not
    // one per failed pull (dozens in 6 s).
    let log = worker.log();
    for (line, most) in [
        ("cannot pull from the NATS consumer", 4),
        ("NATS consumer stalled", 4),
    ] {
        let n = log.matches(line).count();
        assert!((1..=most).contains(&n), "`{line}` logged {n} times:\n{log}");
    }
    assert!(log.contains("pulling resumed"), "{log}");
}
