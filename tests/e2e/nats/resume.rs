//! Workers keep pulling after whatever NATS goes through — a stream leader `kill -9`ed in a
//! three-server cluster under load, the only server away for longer than `stalled_after` —
//! and say so while they cannot: `hookline_consumer_pulling` and `/readyz`. Every
//! acknowledged event is delivered afterwards, without restarting Hookline.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream, stream::ClusterInfo};
use serde_json::Value;

use super::scale::{Sent, crm_pipeline, every_acked_event_arrives, send};
use super::*;
use crate::support::*;

/// A JetStream context on `urls` whose API requests give up after 300 ms: a request that
/// reaches no stream leader (during an election) is dropped, and polling goes on at once.
async fn jetstream_on(urls: &[String]) -> jetstream::Context {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .connect(urls.to_vec())
        .await
        .unwrap_or_else(|e| panic!("connect to {urls:?}: {e}"));
    jetstream::ContextBuilder::new()
        .timeout(Duration::from_millis(300))
        .build(client)
}

/// The stream's config and replication as the cluster reports them: its leader's server
/// name (`n1`, `n2` or `n3`) and its other members. The stream's leader answers; while the
/// stream has no leader its members answer naming none, and a member that has not yet
/// noticed its leader is gone stays silent (the request times out).
async fn stream_cluster(js: &jetstream::Context) -> Result<(stream::Config, ClusterInfo), String> {
    let info = js
        .get_stream("HOOKLINE")
        .await
        .map_err(|e| format!("stream: {e}"))?
        .get_info()
        .await
        .map_err(|e| format!("stream info: {e}"))?;
    let cluster = info.cluster.clone().ok_or("no cluster info")?;
    Ok((info.config, cluster))
}

/// `publish_timeout` in the config of the leader test.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(1);

/// How much later than ingest the test may learn of the new stream leader: its polls
/// (one at most every 300 ms timeout + 20 ms pause) and the new leader's interest in the
/// stream's subjects reaching the other survivor over the route.
const OBSERVED_LATE: Duration = Duration::from_millis(500);

/// Ingest's own overhead on an answer (signature check, encode, HTTP), beyond waiting for
/// the publish ack.
const ANSWER_SLACK: Duration = Duration::from_millis(250);

/// Three servers, `replicas = 3`, two ingest and two worker processes under load; the
/// server the cluster names as the stream's leader is `kill -9`ed. Every event answered 2xx
/// reaches the sink, those acknowledged after the new leader too (the workers pulled on);
/// ingest refuses only with `503` + `Retry-After: 1`, only between the kill and the new
/// leader (plus the answers then in flight).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_leader_killed_under_load_in_a_three_server_cluster_loses_nothing() {
    const EVENTS: u64 = 1500;
    let mut cluster = NatsCluster::start();
    cluster.ready().await;
    let receiver = Receiver::start(vec![]).await;
    let dir = config_dir(&nats_config_toml(
        &cluster.urls_toml(),
        &crm_pipeline(&receiver),
        &format!(
            "replicas = 3\npublish_timeout = \"{}ms\"",
            PUBLISH_TIMEOUT.as_millis()
        ),
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

    // Ask the cluster which server leads the stream, and check the stream really is
    // replicated on all three.
    let (config, before) = stream_cluster(&jetstream_on(&cluster.urls()).await)
        .await
        .unwrap_or_else(|e| panic!("the stream answers with its leader: {e}"));
    assert_eq!(config.num_replicas, 3, "the stream has replicas = 3");
    let leader = before.leader.clone().expect("the stream has a leader");
    let mut members: Vec<&str> = before.replicas.iter().map(|p| p.name.as_str()).collect();
    members.push(&leader);
    members.sort();
    assert_eq!(
        members,
        ["n1", "n2", "n3"],
        "one replica per server: {before:?}"
    );
    let index = leader
        .strip_prefix('n')
        .and_then(|n| n.parse::<usize>().ok())
        .expect("a server name n1..n3")
        - 1;
    let survivors: Vec<String> = cluster
        .urls()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i != index)
        .map(|(_, u)| u)
        .collect();
    // Connected before the kill, to servers that stay up: the watch never reconnects.
    let watch = jetstream_on(&survivors).await;
    let acked_at_kill = sent.acked.lock().expect("lock").len();
    let received_at_kill = receiver.received.lock().expect("lock").len();
    let killed = Instant::now();
    cluster.kill(index);

    // The first moment a survivor names another leader.
    let mut elected = None;
    while elected.is_none() && killed.elapsed() < Duration::from_secs(30) {
        if let Ok((_, c)) = stream_cluster(&watch).await
            && let Some(l) = c.leader.filter(|l| *l != leader)
        {
            elected = Some((l, Instant::now()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let Some((new_leader, elected_at)) = elected else {
        panic!(
            "no new stream leader 30 s after {leader} was killed:\n{}",
            cluster.logs()
        );
    };
    let acked_at_election = sent.acked.lock().expect("lock").len();
    let election = elected_at - killed;
    println!(
        "stream leader {leader} killed after {acked_at_kill} acknowledged, {received_at_kill} delivered; \
         {new_leader} leads after {:.2}s",
        election.as_secs_f64()
    );

    for s in senders {
        s.await.expect("sender");
    }
    let acked: Vec<String> = sent.acked.lock().expect("lock").clone();
    assert_eq!(
        acked.len() as u64,
        EVENTS,
        "every event answered 2xx in the end"
    );
    // The load ran on after the election (and into it: the 503s below).
    assert!(
        acked_at_election < acked.len(),
        "acknowledged {acked_at_kill} at the kill, {acked_at_election} at the new leader, {} in all",
        acked.len()
    );
    every_acked_event_arrives(&receiver, &sent, "stream leader kill -9").await;

    // Workers pulled after the leader change: what was published after it arrived.
    let received: HashSet<String> = receiver
        .received
        .lock()
        .expect("lock")
        .iter()
        .map(|r| {
            let v: Value = serde_json::from_slice(&r.body).expect("json");
            v["id"].as_str().expect("id").to_string()
        })
        .collect();
    let after = &acked[acked_at_election..];
    let missing = after.iter().filter(|id| !received.contains(*id)).count();
    assert_eq!(
        missing,
        0,
        "of {} events acknowledged after the new leader, {missing} not delivered",
        after.len()
    );

    // 503s only while no leader exists: nothing refused before the kill, no request sent
    // once the new leader was seen refused, and the last answer in flight then refused by
    // `publish_timeout` at the latest.
    let refused = sent.refused.lock().expect("lock").clone();
    // Seconds from the kill, negative before it.
    let offset = |t: Instant| {
        t.saturating_duration_since(killed).as_secs_f64()
            - killed.saturating_duration_since(t).as_secs_f64()
    };
    let (first, last) = (
        refused.iter().map(|r| offset(r.answered)).reduce(f64::min),
        refused.iter().map(|r| offset(r.answered)).reduce(f64::max),
    );
    let slowest = refused
        .iter()
        .map(|r| (r.answered - r.sent).as_secs_f64())
        .reduce(f64::max);
    println!(
        "{} requests refused ({} with 503), the first {:.2}s and the last {:.2}s after the kill, \
         each within {:.2}s of sending; new leader seen after {:.2}s",
        refused.len(),
        refused.iter().filter(|r| r.status == Some(503)).count(),
        first.unwrap_or(f64::NAN),
        last.unwrap_or(f64::NAN),
        slowest.unwrap_or(f64::NAN),
        election.as_secs_f64()
    );
    assert!(
        !refused.is_empty(),
        "ingest answered 503 while the stream had no leader (the load ran into the election)"
    );
    for r in &refused {
        let detail = format!(
            "status {:?}, Retry-After {:?}: sent {:+.2}s, answered {:+.2}s after the kill; new leader seen at {:.2}s",
            r.status,
            r.retry_after,
            offset(r.sent),
            offset(r.answered),
            election.as_secs_f64()
        );
        assert!(r.answered >= killed, "refused before the kill: {detail}");
        assert!(
            r.sent <= elected_at + OBSERVED_LATE,
            "refused though sent after the new leader: {detail}"
        );
        assert!(
            r.answered <= elected_at + OBSERVED_LATE + PUBLISH_TIMEOUT + ANSWER_SLACK,
            "refused after the new leader, later than an answer in flight: {detail}"
        );
        assert_eq!(r.status, Some(503), "only 503 (never no answer): {detail}");
        assert_eq!(
            r.retry_after.as_deref(),
            Some("1"),
            "with Retry-After: {detail}"
        );
    }

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
