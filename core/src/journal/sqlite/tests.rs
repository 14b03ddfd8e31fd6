use super::*;
use crate::journal::{Journal, NewDeadLetter, NewEvent};
use hookline_plugin_api::Event;
use serde_json::json;

fn event(id: &str) -> Event {
    Event {
        id: id.into(),
        source: "leadshark".into(),
        event_type: "new.like".into(),
        received_at: Timestamp::now(),
        headers: vec![("user-agent".into(), "t".into())],
        payload: json!({"event": "new.like", "n": id}),
    }
}

fn new_event(id: &str, key: Option<&str>, pipelines: &[&str]) -> NewEvent {
    NewEvent {
        event: event(id),
        dedupe_key: key.map(str::to_string),
        dedupe_until: Timestamp::now() + jiff::SignedDuration::from_hours(24),
        pipelines: pipelines.iter().map(|p| p.to_string()).collect(),
        order_keys: Vec::new(),
    }
}

fn journal() -> (tempfile::TempDir, SqliteJournal) {
    let dir = tempfile::tempdir().expect("dir");
    let j = SqliteJournal::open(&dir.path().join("j.db")).expect("open");
    (dir, j)
}

#[tokio::test]
async fn accept_dedupe_and_reopen() {
    let (dir, j) = journal();
    let Accepted::New { deliveries, .. } = j
        .accept(&new_event("e1", Some("k"), &["a", "b"]))
        .await
        .expect("accept")
    else {
        panic!("new")
    };
    assert_eq!(deliveries.len(), 2);
    assert_eq!(j.pending_now(), 2);
    let dup = j
        .accept(&new_event("e2", Some("k"), &["a"]))
        .await
        .expect("accept");
    assert_eq!(
        dup,
        Accepted::Duplicate {
            first_id: "e1".into()
        }
    );
    drop(j);
    // A new process (new boot id) sees the unfinished deliveries as due.
    let j = SqliteJournal::open(&dir.path().join("j.db")).expect("reopen");
    assert_eq!(j.pending_now(), 2);
    let due = j.claim_due(Timestamp::now(), 10).await.expect("claim");
    assert_eq!(due.len(), 2);
    assert_eq!(due[0].event.payload["n"], "e1");
    // Claimed now: not handed out twice.
    assert!(
        j.claim_due(Timestamp::now(), 10)
            .await
            .expect("claim")
            .is_empty()
    );
}

#[tokio::test]
async fn concurrent_accepts_share_commits() {
    let (_dir, j) = journal();
    let mut tasks = Vec::new();
    for i in 0..400 {
        let j = j.clone();
        tasks.push(tokio::spawn(async move {
            j.accept(&new_event(&format!("e{i}"), None, &["a"])).await
        }));
    }
    for t in tasks {
        t.await.expect("join").expect("accept");
    }
    assert_eq!(j.depths().await.expect("depths").pending, 400);
    assert!(
        j.commits() < 400,
        "group commit batches requests: {} commits",
        j.commits()
    );
}

#[tokio::test]
async fn retry_then_dead_then_replay() {
    let (_dir, j) = journal();
    let Accepted::New { deliveries, .. } = j
        .accept(&new_event("e1", None, &["p"]))
        .await
        .expect("accept")
    else {
        panic!()
    };
    let id = deliveries[0].id;
    let mut snapshot = event("e1");
    snapshot.payload = json!({"changed": true});
    let later = Timestamp::now() + jiff::SignedDuration::from_secs(3600);
    j.settle(
        id,
        vec![Continuation::Retry {
            held: None,
            stage: 2,
            stage_name: Some("http".into()),
            event: snapshot.clone(),
            attempts: 1,
            next_attempt_at: later,
            error: "503".into(),
            first_failed_at: Timestamp::now(),
        }],
    )
    .await
    .expect("settle");
    assert!(
        j.claim_due(Timestamp::now(), 10)
            .await
            .expect("claim")
            .is_empty(),
        "not due yet"
    );
    let due = j.claim_due(later, 10).await.expect("claim");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].stage, 2);
    assert_eq!(
        due[0].stage_name.as_deref(),
        Some("http"),
        "the retry keeps its stage's name: a reload that moves the stage cannot misroute it"
    );
    assert_eq!(due[0].attempts, 1);
    assert_eq!(due[0].event.payload, json!({"changed": true}));

    let letter = NewDeadLetter {
        event_id: "e1".into(),
        source: "leadshark".into(),
        pipeline: Some("p".into()),
        stage_index: Some(2),
        stage_name: Some("http".into()),
        error: "HTTP 500 from receiver".into(),
        attempts: 8,
        first_failed_at: Timestamp::now(),
        last_failed_at: Timestamp::now(),
        event: Some(snapshot.clone()),
        raw: None,
    };
    // The retry is a delivery row now: its next run settles under the id it was claimed with.
    j.settle(due[0].id, vec![Continuation::Dead(letter)])
        .await
        .expect("settle");
    assert_eq!(
        j.depths().await.expect("depths"),
        Depths {
            pending: 0,
            dead: 1
        }
    );
    let page = j
        .list_dead(
            DeadLetterFilter {
                reason: Some("http 500".into()),
                ..Default::default()
            },
            0,
            10,
        )
        .await
        .expect("list");
    assert_eq!(page.total, 1);
    let dl = &page.items[0];
    assert_eq!(dl.stage_name.as_deref(), Some("http"));
    assert_eq!(
        dl.event.as_ref().map(|e| &e.payload),
        Some(&snapshot.payload)
    );
    // Summaries (admin lists): the same letter without its payload, cut inside SQLite.
    let summaries = j
        .list_dead(
            DeadLetterFilter {
                summaries: true,
                ..Default::default()
            },
            0,
            10,
        )
        .await
        .expect("list");
    let short = &summaries.items[0];
    assert_eq!(short.id, dl.id);
    let event = short.event.as_ref().expect("the event, trimmed");
    assert_eq!(
        (event.id.as_str(), event.event_type.as_str()),
        (snapshot.id.as_str(), snapshot.event_type.as_str())
    );
    assert_eq!(event.payload, serde_json::Value::Null);
    let none = j
        .list_dead(
            DeadLetterFilter {
                pipeline: Some("other".into()),
                ..Default::default()
            },
            0,
            10,
        )
        .await
        .expect("list");
    assert_eq!(none.total, 0);

    let r = j.replay(dl.id.clone(), false).await.expect("replay");
    assert!(matches!(r, Replayed::Queued { .. }));
    assert_eq!(
        j.replay(dl.id.clone(), false).await.expect("replay"),
        Replayed::Skipped {
            reason: "already replayed".into()
        }
    );
    let due = j.claim_due(Timestamp::now(), 10).await.expect("claim");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].stage, 2, "replay resumes at the failed stage");
    assert_eq!(due[0].stage_name.as_deref(), Some("http"));
    assert_eq!(due[0].event.payload, json!({"changed": true}));
    assert_eq!(j.depths().await.expect("depths").dead, 0);
}

/// The filter's rule is `journal::rules`: SQLite folds case as the NATS journal does, over all
/// of Unicode (SQL `lower()` folds ASCII only).
#[tokio::test]
async fn reason_filters_fold_unicode_case_as_the_nats_journal_does() {
    let (_dir, j) = journal();
    let now = Timestamp::now();
    for error in ["HTTP 500: Ärger mit dem CRM", "HTTP 500: Aerger"] {
        j.dead_letter(NewDeadLetter {
            event_id: "e".into(),
            source: "leadshark".into(),
            pipeline: Some("p".into()),
            stage_index: Some(0),
            stage_name: Some("crm".into()),
            error: error.into(),
            attempts: 1,
            first_failed_at: now,
            last_failed_at: now,
            event: Some(event("e")),
            raw: None,
        })
        .await
        .expect("dead letter");
    }
    for reason in ["ärger", "ÄRGER", "Ärger"] {
        let filter = DeadLetterFilter {
            reason: Some(reason.into()),
            ..Default::default()
        };
        let page = j.list_dead(filter.clone(), 0, 10).await.expect("list");
        assert_eq!(page.total, 1, "{reason}");
        assert_eq!(page.items[0].error, "HTTP 500: Ärger mit dem CRM");
        // The NATS journal's in-memory rule answers the same.
        assert!(filter.matches(&page.items[0]), "{reason}");
        assert_eq!(j.dead_ids(filter).await.expect("ids").len(), 1, "{reason}");
    }
}

#[tokio::test]
async fn ingest_dead_letters_keep_the_raw_body_and_purge() {
    let (_dir, j) = journal();
    let id = j
        .dead_letter(NewDeadLetter {
            event_id: "e9".into(),
            source: "leadshark".into(),
            pipeline: None,
            stage_index: None,
            stage_name: None,
            error: "malformed JSON".into(),
            attempts: 0,
            first_failed_at: Timestamp::now(),
            last_failed_at: Timestamp::now(),
            event: None,
            raw: Some(b"{not json".to_vec()),
        })
        .await
        .expect("dead letter");
    let dl = j.get_dead(id.clone()).await.expect("get").expect("exists");
    assert_eq!(dl.raw.as_deref(), Some("{not json"));
    assert!(matches!(
        j.replay(id.clone(), false).await.expect("replay"),
        Replayed::Skipped { .. }
    ));
    assert_eq!(j.purge(vec![id.clone()]).await.expect("purge"), 1);
    assert!(j.get_dead(id).await.expect("get").is_none());
}

#[tokio::test]
async fn prune_keeps_unfinished_events() {
    let (_dir, j) = journal();
    let Accepted::New { deliveries, .. } = j
        .accept(&new_event("done", Some("k1"), &["p"]))
        .await
        .expect("accept")
    else {
        panic!()
    };
    j.settle(deliveries[0].id, vec![]).await.expect("settle");
    j.accept(&new_event("pending", None, &["p"]))
        .await
        .expect("accept");
    let future = Timestamp::now() + jiff::SignedDuration::from_hours(48);
    assert_eq!(j.prune(future, future).await.expect("prune"), 1);
    // The dedupe key expired too: the same body is new again.
    let again = j
        .accept(&new_event("done2", Some("k1"), &["p"]))
        .await
        .expect("accept");
    assert!(matches!(again, Accepted::New { .. }));
}

#[test]
fn not_a_database_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("bad.db");
    std::fs::write(
        &path,
        b"this is not sqlite, just some text that is long enough to have a header......",
    )
    .expect("write");
    let err = SqliteJournal::open(&path).expect_err("not a db");
    assert!(err.to_string().contains("not a database"), "{err}");
    let err = SqliteJournal::open(dir.path()).expect_err("a directory");
    assert!(err.to_string().contains("cannot open the journal"), "{err}");
}

async fn accept_one(
    j: &SqliteJournal,
    id: &str,
    key: Option<&str>,
    pipelines: &[&str],
) -> Vec<i64> {
    match j
        .accept(&new_event(id, key, pipelines))
        .await
        .expect("accept")
    {
        Accepted::New { deliveries, .. } => deliveries.into_iter().map(|d| d.id).collect(),
        other => panic!("expected a new event, got {other:?}"),
    }
}

fn rows(dir: &tempfile::TempDir, sql: &str) -> i64 {
    let c = Connection::open(dir.path().join("j.db")).expect("open");
    c.query_row(sql, [], |r| r.get(0)).expect("query")
}

/// The fast path: a first run that is delivered writes no delivery row; runs left
/// unfinished by a crash are found again by the next start, and finished ones are not.
#[tokio::test]
async fn first_runs_write_no_rows_and_a_crash_resumes_only_unfinished_ones() {
    let (dir, j) = journal();
    let a = accept_one(&j, "e1", None, &["p"]).await;
    let b = accept_one(&j, "e2", None, &["p", "q"]).await;
    let _c = accept_one(&j, "e3", None, &["p"]).await;
    assert_eq!(j.depths().await.expect("depths").pending, 4);
    j.settle(a[0], vec![]).await.expect("settle");
    j.settle(b[1], vec![]).await.expect("settle");
    assert_eq!(j.depths().await.expect("depths").pending, 2);
    drop(j); // as good as kill -9 for the journal: nothing else is written
    assert_eq!(
        rows(&dir, "SELECT COUNT(*) FROM deliveries"),
        0,
        "no rows on the fast path"
    );

    let j = SqliteJournal::open(&dir.path().join("j.db")).expect("reopen");
    // e1 is below the watermark: done for good. e2→q finished above it (e2→p was still
    // running), so it runs again: at-least-once, bounded by the watermark.
    assert_eq!(j.pending_now(), 3);
    let mut due: Vec<(String, String)> = j
        .claim_due(Timestamp::now(), 10)
        .await
        .expect("claim")
        .into_iter()
        .map(|d| (d.event.id.clone(), d.pipeline))
        .collect();
    due.sort();
    assert_eq!(
        due,
        vec![
            ("e2".into(), "p".into()),
            ("e2".into(), "q".into()),
            ("e3".into(), "p".into())
        ],
        "e1 was delivered before the crash"
    );
}

#[tokio::test]
async fn a_first_run_that_fails_becomes_a_row_once() {
    let (dir, j) = journal();
    let a = accept_one(&j, "e1", None, &["p"]).await;
    let later = Timestamp::now() + jiff::SignedDuration::from_secs(3600);
    j.settle(
        a[0],
        vec![Continuation::Retry {
            held: None,
            stage: 1,
            stage_name: None,
            event: event("e1"),
            attempts: 1,
            next_attempt_at: later,
            error: "503".into(),
            first_failed_at: Timestamp::now(),
        }],
    )
    .await
    .expect("settle");
    assert_eq!(j.depths().await.expect("depths").pending, 1);
    drop(j);
    let j = SqliteJournal::open(&dir.path().join("j.db")).expect("reopen");
    assert_eq!(j.pending_now(), 1, "the retry, not the first run again");
    let due = j.claim_due(later, 10).await.expect("claim");
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].stage, due[0].attempts), (1, 1));
    assert_eq!(rows(&dir, "SELECT COUNT(*) FROM deliveries"), 1);
}

/// A first run still going after MATERIALISE_AFTER gets a row (so the watermark moves on);
/// its settle then lands on that row.
#[tokio::test]
async fn a_long_first_run_gets_a_row_and_its_settle_finds_it() {
    let (dir, j) = journal();
    let slow = accept_one(&j, "slow", None, &["p"]).await;
    tokio::time::sleep(fast::MATERIALISE_AFTER + Duration::from_millis(50)).await;
    let quick = accept_one(&j, "quick", None, &["p"]).await;
    j.settle(quick[0], vec![]).await.expect("settle");
    assert_eq!(
        rows(
            &dir,
            "SELECT COUNT(*) FROM deliveries WHERE state = 'pending'"
        ),
        1,
        "the slow run has a row"
    );
    assert!(
        rows(&dir, "SELECT done_below FROM progress") > 2,
        "the watermark is past both events"
    );
    j.settle(slow[0], vec![]).await.expect("settle");
    assert_eq!(j.depths().await.expect("depths").pending, 0);
    drop(j);
    let j = SqliteJournal::open(&dir.path().join("j.db")).expect("reopen");
    assert_eq!(j.pending_now(), 0);
    assert!(
        j.claim_due(Timestamp::now(), 10)
            .await
            .expect("claim")
            .is_empty()
    );
}

#[tokio::test]
async fn dedupe_keys_survive_a_restart_and_expire() {
    let (dir, j) = journal();
    accept_one(&j, "e1", Some("k"), &["p"]).await;
    drop(j);
    let j = SqliteJournal::open(&dir.path().join("j.db")).expect("reopen");
    assert_eq!(
        j.accept(&new_event("e2", Some("k"), &["p"]))
            .await
            .expect("accept"),
        Accepted::Duplicate {
            first_id: "e1".into()
        }
    );
    // Same key from another source is not a duplicate.
    let mut other = new_event("e3", Some("k"), &["p"]);
    other.event.source = "github".into();
    assert!(matches!(
        j.accept(&other).await.expect("accept"),
        Accepted::New { .. }
    ));
    // A key whose window has closed is new again.
    let mut expired = new_event("e4", Some("old"), &["p"]);
    expired.dedupe_until = Timestamp::now() - jiff::SignedDuration::from_secs(1);
    assert!(matches!(
        j.accept(&expired).await.expect("accept"),
        Accepted::New { .. }
    ));
    assert!(matches!(
        j.accept(&new_event("e5", Some("old"), &["p"]))
            .await
            .expect("accept"),
        Accepted::New { .. }
    ));
}

/// A key sent again and again after its window keeps one slot in memory (each accept
/// forgets the slot of the row it replaces), and the newest row is still found however
/// often the key came back before.
#[tokio::test]
async fn a_key_accepted_again_after_its_window_keeps_one_slot_and_is_still_caught() {
    let (_dir, j) = journal();
    let slots = |j: &SqliteJournal| {
        let j = j.clone();
        async move {
            j.call_ctx(false, |ctx| Ok(ctx.dedupe.len()))
                .await
                .expect("slots")
        }
    };
    for i in 0..(2 * super::dedupe::MAX_CANDIDATES) {
        let mut past = new_event(&format!("old{i}"), Some("again"), &["p"]);
        past.dedupe_until = Timestamp::now() - jiff::SignedDuration::from_secs(1);
        assert!(matches!(
            j.accept(&past).await.expect("accept"),
            Accepted::New { .. }
        ));
    }
    assert_eq!(slots(&j).await, 1, "one slot for the key, not one per time");
    accept_one(&j, "live", Some("again"), &["p"]).await;
    assert_eq!(slots(&j).await, 1);
    assert_eq!(
        j.accept(&new_event("dup", Some("again"), &["p"]))
            .await
            .expect("accept"),
        Accepted::Duplicate {
            first_id: "live".into()
        }
    );
}

/// Beside a running service a journal from an older Hookline is refused, not migrated
/// under it; opened with leave to migrate (no service holds it), it is brought up to date.
#[test]
fn a_journal_behind_is_migrated_only_with_leave() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("j.db");
    SqliteJournal::write_previous_schema(&path);
    let previous = SqliteJournal::schema_version(&path);
    assert!(SqliteJournal::is_behind(&path).expect("read"));
    let err = SqliteJournal::open_shared(&path, false).expect_err("refused");
    let msg = err.to_string();
    for needle in ["j.db", "older", "restart the service"] {
        assert!(msg.contains(needle), "no `{needle}` in {msg}");
    }
    assert_eq!(
        SqliteJournal::schema_version(&path),
        previous,
        "left as it was"
    );
    SqliteJournal::open_shared(&path, true).expect("migrated");
    assert_eq!(
        SqliteJournal::schema_version(&path),
        schema::MIGRATIONS.len() as i64
    );
    assert!(!SqliteJournal::is_behind(&path).expect("read"));
    // Up to date, it opens beside a service as before: read-only, beside the WAL of a
    // journal that is open and writing.
    let live = SqliteJournal::open(&path).expect("serving");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(accept_one(&live, "e1", None, &["p"]));
    assert!(!SqliteJournal::is_behind(&path).expect("read beside the service"));
    SqliteJournal::open_shared(&path, false).expect("current");
    drop(live);
}

/// A journal written by the first schema: its unfinished deliveries and dedupe keys carry
/// over to the current one.
#[tokio::test]
async fn a_version_1_journal_is_migrated_without_losing_anything() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("j.db");
    {
        let c = Connection::open(&path).expect("open");
        c.execute_batch(schema::MIGRATIONS[0]).expect("v1");
        let now = Timestamp::now().as_millisecond();
        let until = now + 3_600_000;
        c.execute_batch(&format!(
            "PRAGMA user_version = 1;
             INSERT INTO events (id, source, type, received_at, headers, payload)
               VALUES ('old', 'leadshark', 'new.like', {now}, '[]', '{{\"n\": 1}}');
             INSERT INTO deliveries (event_id, pipeline, stage, state, attempts, next_attempt_at, updated_at)
               VALUES ('old', 'p', 0, 'pending', 0, {now}, {now});
             INSERT INTO dedupe (source, key, event_id, expires_at) VALUES ('leadshark', 'k', 'old', {until});"
        ))
        .expect("v1 rows");
    }
    let j = SqliteJournal::open(&path).expect("migrates");
    assert_eq!(j.pending_now(), 1);
    assert_eq!(
        j.accept(&new_event("new", Some("k"), &["p"]))
            .await
            .expect("accept"),
        Accepted::Duplicate {
            first_id: "old".into()
        }
    );
    let due = j.claim_due(Timestamp::now(), 10).await.expect("claim");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].event.id, "old");
}

/// A clean stop records what is unfinished, so the next start re-runs only that.
#[tokio::test]
async fn close_records_unfinished_first_runs_exactly() {
    let (dir, j) = journal();
    let _running = accept_one(&j, "e1", None, &["p"]).await;
    let done = accept_one(&j, "e2", None, &["p"]).await;
    j.settle(done[0], vec![]).await.expect("settle");
    j.close().await.expect("close");
    drop(j);
    let j = SqliteJournal::open(&dir.path().join("j.db")).expect("reopen");
    let due = j.claim_due(Timestamp::now(), 10).await.expect("claim");
    assert_eq!(
        due.iter().map(|d| d.event.id.as_str()).collect::<Vec<_>>(),
        vec!["e1"],
        "e2 finished before the stop: not run again"
    );
}

/// A first run this process has no room for goes to the journal as an unclaimed row; the
/// poller's claim gets it, and its settle by row id finishes it.
#[tokio::test]
async fn deferred_first_runs_wait_as_rows_for_the_poller() {
    let (dir, j) = journal();
    let a = accept_one(&j, "e1", None, &["p", "q"]).await;
    j.defer(vec![a[1]]).await.expect("defer");
    assert_eq!(j.depths().await.expect("depths").pending, 2);
    let due = j.claim_due(Timestamp::now(), 10).await.expect("claim");
    assert_eq!(due.len(), 1);
    assert_eq!(
        (due[0].event.id.as_str(), due[0].pipeline.as_str()),
        ("e1", "q")
    );
    assert!(due[0].id > 0, "a row id");
    j.settle(due[0].id, vec![]).await.expect("settle");
    j.settle(a[0], vec![]).await.expect("settle");
    assert_eq!(j.depths().await.expect("depths").pending, 0);
    drop(j);
    let j = SqliteJournal::open(&dir.path().join("j.db")).expect("reopen");
    assert_eq!(
        j.pending_now(),
        0,
        "nothing runs twice after a clean finish"
    );
    assert_eq!(
        rows(&dir, "SELECT COUNT(*) FROM deliveries WHERE state = 'done'"),
        1
    );
}

/// Under a constant stream of commits the WAL must still start over: checkpoints that run
/// beside a busy writer (another connection) never catch up, and the WAL grew to 493 MB
/// for 129k events in a benchmark before checkpoints went back into the writer's commits.
#[tokio::test]
async fn the_wal_stays_bounded_under_constant_writes() {
    let (dir, j) = journal();
    let payload = "x".repeat(1000);
    for chunk in 0..40 {
        let accepts = (0..200).map(|i| {
            let mut e = new_event(
                &format!("e{chunk}-{i}"),
                Some(&format!("k{chunk}-{i}")),
                &["p"],
            );
            e.event.payload = json!({ "filler": payload });
            e
        });
        let accepts: Vec<NewEvent> = accepts.collect();
        let results = futures::future::join_all(accepts.iter().map(|e| j.accept(e))).await;
        for r in results {
            r.expect("accept");
        }
    }
    let wal = std::fs::metadata(dir.path().join("j.db-wal"))
        .expect("wal")
        .len();
    assert!(
        wal < 16 * 1024 * 1024,
        "8 000 events of ~1.2 KB left a {wal}-byte WAL: checkpoints are not keeping up"
    );
}

fn letter(n: usize) -> NewDeadLetter {
    let now = Timestamp::now();
    NewDeadLetter {
        event_id: format!("e{n}"),
        source: "leadshark".into(),
        pipeline: Some("p".into()),
        stage_index: Some(0),
        stage_name: Some("http".into()),
        error: format!("sink failed #{n}"),
        attempts: 1,
        first_failed_at: now,
        last_failed_at: now,
        event: Some(event(&format!("e{n}"))),
        raw: None,
    }
}

/// Reads run on read-only connections: a listing that holds its read transaction open
/// (here, until the test lets it go) delays no accept, no commit and no count. Were
/// listings served by the writer thread, the listing would not wait for the test at all.
#[tokio::test]
async fn a_read_held_open_blocks_no_accept_and_no_count() {
    use std::time::Duration;
    let (_dir, j) = journal();
    for n in 0..50 {
        j.dead_letter(letter(n)).await.expect("dead letter");
    }
    let hold = j.inner.readers.gate.clone().write_owned().await;
    let lists: Vec<_> = (0..read::READERS)
        .map(|_| {
            let j = j.clone();
            tokio::spawn(async move { j.list_dead(DeadLetterFilter::default(), 0, 1000).await })
        })
        .collect();
    // Every reader has run its query and holds its snapshot.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..20 {
        tokio::time::timeout(
            Duration::from_secs(2),
            j.accept(&new_event(&format!("a{i}"), None, &["p"])),
        )
        .await
        .expect("an accept waited for a read")
        .expect("accept");
    }
    tokio::time::timeout(Duration::from_secs(2), j.dead_letter(letter(50)))
        .await
        .expect("a dead letter waited for a read")
        .expect("dead letter");
    let depths = tokio::time::timeout(Duration::from_millis(500), j.depths())
        .await
        .expect("depths waited for a reader")
        .expect("depths");
    assert_eq!(depths.dead, 51);
    assert_eq!(depths.pending, 20);
    assert!(
        lists.iter().all(|l| !l.is_finished()),
        "the listings are held on their read-only connections"
    );
    drop(hold);
    for list in lists {
        let page = list.await.expect("task").expect("list");
        assert_eq!(
            page.total, 50,
            "a listing sees the snapshot it started with"
        );
    }
}

/// Pruning deletes in batches, each its own writer job and commit, so accepts commit
/// between them; an unbounded DELETE would be one.
#[tokio::test]
async fn prune_deletes_in_batches() {
    let (dir, j) = journal();
    let accepts: Vec<NewEvent> = (0..2_500)
        .map(|i| new_event(&format!("e{i}"), None, &["p"]))
        .collect();
    let accepted = futures::future::join_all(accepts.iter().map(|e| j.accept(e))).await;
    let settles = accepted.into_iter().map(|a| {
        let Ok(Accepted::New { deliveries, .. }) = a else {
            panic!("accepted: {a:?}")
        };
        j.settle(deliveries[0].id, vec![])
    });
    for s in futures::future::join_all(settles).await {
        s.expect("settle");
    }
    let future = Timestamp::now() + jiff::SignedDuration::from_hours(48);
    let commits = j.commits();
    let (removed, batches) = j
        .prune_in_batches(future, future, 1000)
        .await
        .expect("prune");
    assert_eq!(removed, 2_499, "all but the newest event");
    assert_eq!(batches, 3, "1000 + 1000 + 499");
    assert!(
        j.commits() - commits >= 3,
        "each batch commits on its own ({} commits)",
        j.commits() - commits
    );
    assert_eq!(rows(&dir, "SELECT COUNT(*) FROM events"), 1);
}

/// `SQLITE_CORRUPT` from the writer marks the journal corrupt: `stalled()` (what `/readyz`
/// reports) names the file and what to do.
#[tokio::test]
async fn a_corrupt_error_at_run_time_is_reported() {
    let (_dir, j) = journal();
    assert_eq!(j.stalled(), None);
    let busy =
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY), None);
    let _ = j.call(move |_| Err::<(), _>(busy.into())).await;
    assert_eq!(j.stalled(), None, "busy is not corrupt");
    let corrupt = rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
        Some("database disk image is malformed".into()),
    );
    let _ = j.call(move |_| Err::<(), _>(corrupt.into())).await;
    let why = j.stalled().expect("reported");
    assert!(
        why.contains("j.db") && why.contains("corrupt") && why.contains("backup"),
        "{why}"
    );
}

/// The same with a real damaged file: pages overwritten under a running journal.
#[tokio::test]
async fn pages_overwritten_under_a_running_journal_are_reported() {
    use std::io::{Seek, SeekFrom, Write};
    let (dir, j) = journal();
    for i in 0..20 {
        accept_one(&j, &format!("e{i}"), Some(&format!("k{i}")), &["p"]).await;
    }
    let path = dir.path().join("j.db");
    Connection::open(&path)
        .expect("open")
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("checkpoint");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open file");
    f.seek(SeekFrom::Start(4096)).expect("seek");
    f.write_all(&garbage(3 * 4096)).expect("write");
    f.sync_all().expect("sync");
    let mut failed = false;
    for i in 20..40 {
        failed |= j
            .accept(&new_event(&format!("e{i}"), Some(&format!("k{i}")), &["p"]))
            .await
            .is_err();
    }
    assert!(failed, "accepts into damaged pages fail");
    let why = j.stalled().expect("reported");
    assert!(why.contains("corrupt"), "{why}");
}

/// A damaged file is refused at open, with what to do.
#[test]
fn a_damaged_file_is_refused_at_open() {
    use std::io::{Seek, SeekFrom, Write};
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("j.db");
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let j = SqliteJournal::open(&path).expect("open");
        rt.block_on(async {
            for i in 0..20 {
                accept_one(&j, &format!("e{i}"), Some(&format!("k{i}")), &["p"]).await;
            }
        });
    }
    Connection::open(&path)
        .expect("open")
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("checkpoint");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open file");
    f.seek(SeekFrom::Start(2 * 4096)).expect("seek");
    f.write_all(&garbage(4096)).expect("write");
    drop(f);
    let err = SqliteJournal::open(&path).expect_err("refused");
    let msg = err.to_string();
    assert!(
        msg.contains("j.db") && msg.contains("corrupt") && msg.contains("backup"),
        "{msg}"
    );
    // `hookline dlq` may still read what it can.
    assert!(SqliteJournal::open_shared(&path, false).is_ok());
}

/// Bytes that are no SQLite page (deterministic, so a failure reproduces).
fn garbage(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9E37_79B9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Statements that select by state spell the word (partial indexes need it literally): each
/// must be a state of `journal::rules`, which is what every write binds.
#[test]
fn the_sql_spells_only_known_states() {
    use crate::journal::{DeliveryState, JobState, LetterState};
    let known: Vec<&str> = [
        DeliveryState::Pending,
        DeliveryState::Done,
        DeliveryState::Dead,
        DeliveryState::Replayed,
    ]
    .iter()
    .map(|s| s.as_str())
    .chain(
        [LetterState::Dead, LetterState::Replayed]
            .iter()
            .map(|s| s.as_str()),
    )
    .chain(
        [
            JobState::Running,
            JobState::Done,
            JobState::Cancelled,
            JobState::Failed,
        ]
        .iter()
        .map(|s| s.as_str()),
    )
    .collect();
    let sql = [
        include_str!("schema.rs"),
        include_str!("rows.rs"),
        include_str!("events.rs"),
        include_str!("deliveries.rs"),
        include_str!("dead.rs"),
        include_str!("maintenance.rs"),
        include_str!("jobs.rs"),
        include_str!("requests.rs"),
    ]
    .concat();
    let mut seen = 0;
    for (at, _) in sql.match_indices("state") {
        let rest = &sql[at + "state".len()..];
        let rest = rest.trim_start();
        let Some(rest) = rest
            .strip_prefix("= ")
            .or_else(|| rest.strip_prefix("IN ("))
            .or_else(|| rest.strip_prefix("TEXT NOT NULL DEFAULT "))
        else {
            continue;
        };
        let list = rest.split([')', '\n', '"']).next().unwrap_or_default();
        for word in list
            .split(',')
            .filter_map(|w| w.trim().strip_prefix('\'')?.split('\'').next())
        {
            assert!(
                known.contains(&word),
                "`{word}` is not a journal state: {known:?}"
            );
            seen += 1;
        }
    }
    assert!(seen >= 6, "found only {seen} state words in the SQL");
}

fn held_retry(e: &str, hold: Option<crate::journal::Hold>) -> Continuation {
    Continuation::Retry {
        held: hold,
        stage: 0,
        stage_name: None,
        event: event(e),
        attempts: 0,
        next_attempt_at: Timestamp::now(),
        error: "circuit open".into(),
        first_failed_at: Timestamp::now(),
    }
}

#[tokio::test]
async fn held_deliveries_are_not_claimed_until_released_one_probe_at_a_time() {
    use crate::journal::{Hold, Release};
    let (_dir, j) = journal();
    let mut ids = Vec::new();
    for e in ["e1", "e2", "e3"] {
        let Accepted::New { deliveries, .. } =
            j.accept(&new_event(e, None, &["p"])).await.expect("accept")
        else {
            panic!("new")
        };
        ids.push(deliveries[0].id);
    }
    for (id, e) in ids.iter().zip(["e1", "e2", "e3"]) {
        j.settle(*id, vec![held_retry(e, Some(Hold::Circuit))])
            .await
            .expect("settle");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let far = Timestamp::now() + jiff::SignedDuration::from_hours(1);
    assert!(j.claim_due(far, 10).await.expect("claim").is_empty());
    assert_eq!(j.pending_now(), 3, "held deliveries are still pending");
    let probe = |limit| Release {
        hold: Hold::Circuit,
        pipeline: Some("p".into()),
        stage: Some(0),
        limit,
    };
    // A paused hold is not a circuit's.
    let other = Release {
        hold: Hold::Paused,
        ..probe(None)
    };
    assert_eq!(j.release(other).await.expect("release"), 0);
    assert_eq!(j.release(probe(Some(1))).await.expect("release"), 1);
    let due = j.claim_due(far, 10).await.expect("claim");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].event.id, "e1", "the longest-waiting goes first");
    // The probe fails and waits again: the next probe is another delivery.
    j.settle(due[0].id, vec![held_retry("e1", Some(Hold::Circuit))])
        .await
        .expect("settle");
    assert_eq!(j.release(probe(Some(1))).await.expect("release"), 1);
    let due = j.claim_due(far, 10).await.expect("claim");
    assert_eq!(due[0].event.id, "e2");
    j.settle(due[0].id, vec![]).await.expect("delivered");
    assert_eq!(j.release(probe(None)).await.expect("release"), 2);
    assert_eq!(j.claim_due(far, 10).await.expect("claim").len(), 2);
}

/// The deferred first runs of one event come back from a claim with one copy of the event
/// between them (decoded once; the worker runs them together in one slot); another event's
/// and a retry's snapshot are copies of their own.
#[tokio::test]
async fn an_events_deferred_first_runs_are_claimed_with_one_copy_of_it() {
    let (_dir, j) = journal();
    for e in ["e1", "e2"] {
        let a = accept_one(&j, e, None, &["p", "q", "r"]).await;
        j.defer(a).await.expect("defer");
    }
    let due = j.claim_due(Timestamp::now(), 10).await.expect("claim");
    assert_eq!(due.len(), 6);
    for e in ["e1", "e2"] {
        let mine: Vec<_> = due.iter().filter(|d| d.event.id == e).collect();
        assert_eq!(mine.len(), 3, "{e}");
        assert!(
            mine.iter()
                .all(|d| std::sync::Arc::ptr_eq(&d.event, &mine[0].event)),
            "{e}: one copy for its three pipelines"
        );
    }
    let (e1, e2) = (
        due.iter().find(|d| d.event.id == "e1").expect("e1"),
        due.iter().find(|d| d.event.id == "e2").expect("e2"),
    );
    assert!(!std::sync::Arc::ptr_eq(&e1.event, &e2.event));
}

#[tokio::test]
async fn pausing_holds_a_pipelines_backlog_and_survives_reopening() {
    let (dir, j) = journal();
    for e in ["e1", "e2"] {
        let Accepted::New { deliveries, .. } = j
            .accept(&new_event(e, None, &["p", "q"]))
            .await
            .expect("accept")
        else {
            panic!("new")
        };
        j.defer(deliveries.iter().map(|d| d.id).collect())
            .await
            .expect("defer");
    }
    assert!(j.set_paused("p".into(), true).await.expect("pause"));
    assert!(!j.set_paused("p".into(), true).await.expect("again"));
    drop(j);
    let j = SqliteJournal::open(&dir.path().join("j.db")).expect("reopen");
    assert_eq!(j.paused().await.expect("paused"), vec!["p".to_string()]);
    let far = Timestamp::now() + jiff::SignedDuration::from_hours(1);
    let due = j.claim_due(far, 10).await.expect("claim");
    assert!(due.iter().all(|d| d.pipeline == "q"), "{due:?}");
    assert_eq!(due.len(), 2);
    assert!(j.set_paused("p".into(), false).await.expect("resume"));
    assert!(j.paused().await.expect("paused").is_empty());
    let due = j.claim_due(far, 10).await.expect("claim");
    assert_eq!(due.len(), 2);
    assert!(due.iter().all(|d| d.pipeline == "p"));
}

#[tokio::test]
async fn an_ordered_delivery_waits_for_every_earlier_one_with_its_key() {
    let (_dir, j) = journal();
    let ordered = |e: &str, key: &str| NewEvent {
        order_keys: vec![Some(key.to_string())],
        ..new_event(e, None, &["p"])
    };
    for (e, k) in [
        ("a1", "a"),
        ("b1", "b"),
        ("a2", "a"),
        ("b2", "b"),
        ("a3", "a"),
    ] {
        let Accepted::New { deliveries, queued } = j.accept(&ordered(e, k)).await.expect("accept")
        else {
            panic!("new")
        };
        assert!(deliveries.is_empty(), "ordered deliveries are the poller's");
        assert_eq!(queued, 1);
    }
    let now = Timestamp::now() + jiff::SignedDuration::from_secs(1);
    let ids = |due: &[Delivery]| due.iter().map(|d| d.event.id.clone()).collect::<Vec<_>>();
    let first = j.claim_due(now, 10).await.expect("claim");
    assert_eq!(ids(&first), vec!["a1", "b1"], "one per key, the earliest");
    // a1 fails and waits for its retry: a's later events wait with it, b goes on.
    let a1 = first.iter().find(|d| d.event.id == "a1").expect("a1");
    let b1 = first.iter().find(|d| d.event.id == "b1").expect("b1");
    j.settle(
        a1.id,
        vec![Continuation::Retry {
            held: None,
            stage: 0,
            stage_name: None,
            event: event("a1"),
            attempts: 1,
            next_attempt_at: Timestamp::now() + jiff::SignedDuration::from_hours(1),
            error: "503".into(),
            first_failed_at: Timestamp::now(),
        }],
    )
    .await
    .expect("retry");
    j.settle(b1.id, vec![]).await.expect("delivered");
    assert_eq!(ids(&j.claim_due(now, 10).await.expect("claim")), vec!["b2"]);
    // Once a1 is dead-lettered, a2 is next.
    let later = Timestamp::now() + jiff::SignedDuration::from_hours(2);
    let again = j.claim_due(later, 10).await.expect("claim");
    assert_eq!(ids(&again), vec!["a1"]);
    let letter = NewDeadLetter {
        event_id: "a1".into(),
        event: Some(event("a1")),
        ..letter(1)
    };
    j.settle(again[0].id, vec![Continuation::Dead(letter)])
        .await
        .expect("dead");
    assert_eq!(
        ids(&j.claim_due(later, 10).await.expect("claim")),
        vec!["a2"]
    );
}

fn attempt(event_id: &str, pipeline: &str, result: crate::journal::AttemptResult) -> Attempt {
    Attempt {
        event_id: event_id.into(),
        pipeline: pipeline.into(),
        stage: 0,
        stage_name: "file".into(),
        at: Timestamp::now(),
        duration_us: 42,
        result,
        error: None,
    }
}

#[tokio::test]
async fn history_is_written_with_the_settle_read_back_and_pruned_with_the_event() {
    use crate::journal::{AttemptResult, EventFilter, EventOutcome};
    let (dir, j) = journal();
    let Accepted::New { deliveries, .. } = j
        .accept(&new_event("done", None, &["p", "q"]))
        .await
        .expect("accept")
    else {
        panic!()
    };
    j.settle_recorded(
        deliveries[0].id,
        vec![],
        vec![attempt("done", "p", AttemptResult::Delivered)],
    )
    .await
    .expect("settle");
    j.settle_recorded(
        deliveries[1].id,
        vec![],
        vec![attempt("done", "q", AttemptResult::Dropped)],
    )
    .await
    .expect("settle");
    j.accept(&new_event("running", None, &["p"]))
        .await
        .expect("accept");

    let shown = j
        .get_event("done".into())
        .await
        .expect("get")
        .expect("found");
    let outcomes: Vec<_> = shown
        .summary
        .pipelines
        .iter()
        .map(|p| (p.pipeline.as_str(), p.outcome, p.attempts))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("p", EventOutcome::Delivered, 1),
            ("q", EventOutcome::Dropped, 1)
        ]
    );
    assert_eq!(shown.attempts.len(), 2);
    assert_eq!(shown.payload["n"], "done");

    let page = j
        .list_events(EventFilter::default(), None, 10)
        .await
        .expect("list");
    let listed: Vec<_> = page.items.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(listed, ["running", "done"], "newest first");
    assert_eq!(page.items[0].pipelines[0].outcome, EventOutcome::InFlight);
    assert!(page.next.is_none());
    let dropped = EventFilter {
        outcome: Some(EventOutcome::Dropped),
        ..EventFilter::default()
    };
    let page = j.list_events(dropped, None, 10).await.expect("list");
    assert_eq!(page.items.len(), 1);
    let err = j
        .list_events(EventFilter::default(), Some("x".into()), 10)
        .await
        .expect_err("bad cursor");
    assert!(matches!(err, JournalError::Invalid(_)), "{err}");

    let future = Timestamp::now() + jiff::SignedDuration::from_hours(48);
    assert_eq!(j.prune(future, future).await.expect("prune"), 1);
    assert!(j.get_event("done".into()).await.expect("get").is_none());
    let left = rows(
        &dir,
        "SELECT (SELECT COUNT(*) FROM attempts WHERE event_id = 'done')
              + (SELECT COUNT(*) FROM attempt_runs WHERE event_id = 'done')",
    );
    assert_eq!(left, 0, "history is pruned with its event");
}

/// A history row as a Hookline before schema 7 wrote it: one run, in `attempts`.
fn old_attempt_row(dir: &tempfile::TempDir, event_id: &str, at: i64) {
    Connection::open(dir.path().join("j.db"))
        .expect("open")
        .execute_batch(&format!(
            "INSERT INTO attempts (event_id, pipeline, stage, stage_name, at, duration_us, result, error)
               VALUES ('{event_id}', 'p', 0, 'http', {at}, 7, 'retry', '503 from the receiver');"
        ))
        .expect("an old row");
}

/// Accept `id` for pipeline `p` and settle its first run as delivered.
async fn delivered(j: &SqliteJournal, id: &str) {
    let Accepted::New { deliveries, .. } = j
        .accept(&new_event(id, None, &["p"]))
        .await
        .expect("accept")
    else {
        panic!()
    };
    j.settle_recorded(
        deliveries[0].id,
        vec![],
        vec![attempt(id, "p", crate::journal::AttemptResult::Delivered)],
    )
    .await
    .expect("settle");
}

/// History an older Hookline wrote (a row per run in `attempts`) is read before what this
/// one writes (a row per settle in `attempt_runs`), and both are pruned and erased with the
/// event.
#[tokio::test]
async fn history_written_before_one_row_per_settle_is_read_first_and_pruned() {
    use crate::journal::AttemptResult;
    let (dir, j) = journal();
    let at = Timestamp::now().as_millisecond() - 1000;
    old_attempt_row(&dir, "old", at);
    delivered(&j, "old").await;
    let shown = j
        .get_event("old".into())
        .await
        .expect("get")
        .expect("event");
    let read: Vec<_> = shown
        .attempts
        .iter()
        .map(|a| (a.result, a.stage_name.as_str(), a.duration_us))
        .collect();
    assert_eq!(
        read,
        [
            (AttemptResult::Retry, "http", 7),
            (AttemptResult::Delivered, "file", 42),
        ]
    );
    assert_eq!(
        shown.attempts[0].error.as_deref(),
        Some("503 from the receiver")
    );
    assert_eq!(shown.attempts[0].at.as_millisecond(), at);
    assert_eq!(shown.summary.pipelines[0].attempts, 2);

    // Erasing an event takes its history from both tables.
    old_attempt_row(&dir, "erased", at);
    delivered(&j, "erased").await;
    let count = "SELECT (SELECT COUNT(*) FROM attempts WHERE event_id = 'erased')
                      + (SELECT COUNT(*) FROM attempt_runs WHERE event_id = 'erased')";
    assert_eq!(rows(&dir, count), 2);
    let erased = j.erase_events(vec!["erased".into()]).await.expect("erase");
    assert_eq!(erased.events, 1);
    assert_eq!(
        rows(&dir, count),
        0,
        "erasure takes the history from both tables"
    );

    // So does pruning. The newest event is never pruned (its rowid is the journal's high
    // mark): one more comes after.
    j.accept(&new_event("newer", None, &[]))
        .await
        .expect("accept");
    let future = Timestamp::now() + jiff::SignedDuration::from_hours(48);
    assert_eq!(j.prune(future, future).await.expect("prune"), 1);
    assert_eq!(
        rows(
            &dir,
            "SELECT (SELECT COUNT(*) FROM attempts) + (SELECT COUNT(*) FROM attempt_runs)"
        ),
        0
    );
}

fn replay_job(owner: Option<&str>, batch: u32) -> crate::journal::NewReplayJob {
    crate::journal::NewReplayJob {
        pipeline: "b".into(),
        source: "leadshark".into(),
        from_failed: false,
        filter: json!({ "pipeline": "b" }),
        plan: json!({}),
        batch,
        max_pending: 1000,
        owner: owner.map(str::to_string),
        lease_until: Timestamp::now() + jiff::SignedDuration::from_secs(10),
    }
}

fn lease(owner: &str, take_from: Option<&str>) -> crate::journal::Lease {
    crate::journal::Lease {
        owner: owner.into(),
        until: Timestamp::now() + jiff::SignedDuration::from_secs(10),
        take_from: take_from.map(str::to_string),
    }
}

/// A bulk replay's batch commits its replays with the job's progress, only under the
/// job's lease, and picks up from the stored cursor after a reopen: every event replayed
/// once, none twice, events that arrived after the job untouched.
#[tokio::test]
async fn a_replay_job_commits_each_batch_with_its_progress_under_its_lease() {
    use crate::journal::{EventFilter, JobBatch, JobState};
    let (dir, j) = journal();
    for i in 0..5 {
        j.accept(&new_event(&format!("e{i}"), None, &["a"]))
            .await
            .expect("accept");
    }
    let job = j
        .create_replay_job(replay_job(Some("cli:1"), 2))
        .await
        .expect("create");
    assert_eq!(job.state, JobState::Running);
    // Arrives after the job: not the job's.
    j.accept(&new_event("late", None, &["a"]))
        .await
        .expect("accept");
    // Held: no one else takes it, and its runner's lease is renewable.
    assert!(
        j.lease_replay_job(job.id.clone(), lease("serve:x", None))
            .await
            .expect("lease")
            .is_none()
    );
    assert!(
        j.claimable_replay_jobs(Timestamp::now(), None)
            .await
            .expect("claimable")
            .is_empty()
    );
    let page = j
        .list_events(EventFilter::default(), job.cursor.clone(), 2)
        .await
        .expect("page");
    let ids: Vec<String> = page.items.iter().map(|e| e.id.clone()).collect();
    assert_eq!(ids, ["e4", "e3"]);
    let batch = |owner: &str, ids: Vec<String>, next: Option<String>| JobBatch {
        job: job.id.clone(),
        owner: owner.into(),
        lease_until: Timestamp::now() + jiff::SignedDuration::from_secs(10),
        ids,
        next,
    };
    // Without the lease, a batch does nothing.
    assert!(
        j.replay_batch(batch("serve:x", ids.clone(), page.next.clone()))
            .await
            .expect("batch")
            .is_none()
    );
    assert_eq!(j.pending_in("b".into()).await.expect("pending"), 0);
    let after = j
        .replay_batch(batch("cli:1", ids.clone(), page.next.clone()))
        .await
        .expect("batch")
        .expect("held");
    assert_eq!(
        (after.matched_so_far, after.replayed, after.skipped),
        (2, 2, 0)
    );
    assert_eq!(after.cursor, page.next);
    assert_eq!(j.pending_in("b".into()).await.expect("pending"), 2);
    // The same events again (a runner that replays a batch twice) are skipped, counted by
    // reason: the single-event rules decide.
    let again = j
        .replay_batch(batch("cli:1", ids, page.next.clone()))
        .await
        .expect("batch")
        .expect("held");
    assert_eq!((again.replayed, again.skipped), (2, 2));
    assert_eq!(
        again.skipped_reasons.values().sum::<u64>(),
        2,
        "{:?}",
        again.skipped_reasons
    );
    assert!(
        again
            .skipped_reasons
            .keys()
            .all(|r| r.contains("already waiting")),
        "{:?}",
        again.skipped_reasons
    );
    // The CLI that held it dies: its lease is not renewed. A reopened journal (a restart)
    // still has the job at its cursor; once the lease runs out, a runner takes it over.
    drop(j);
    let j = SqliteJournal::open(&dir.path().join("j.db")).expect("reopen");
    let stored = j
        .get_replay_job(job.id.clone())
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(
        (stored.cursor.clone(), stored.replayed),
        (page.next.clone(), 2)
    );
    let later = Timestamp::now() + jiff::SignedDuration::from_secs(11);
    assert_eq!(
        j.claimable_replay_jobs(later, None)
            .await
            .expect("claimable"),
        vec![job.id.clone()]
    );
    // A serving process takes over what an earlier serving process held at once.
    let taken = j
        .lease_replay_job(job.id.clone(), lease("cli:1", None))
        .await
        .expect("lease")
        .expect("its own lease");
    assert_eq!(taken.lease_owner.as_deref(), Some("cli:1"));
    j.release_replay_job(job.id.clone(), "cli:1".into())
        .await
        .expect("release");
    j.lease_replay_job(job.id.clone(), lease("serve:old", None))
        .await
        .expect("lease")
        .expect("free after release");
    let job2 = j
        .lease_replay_job(job.id.clone(), lease("serve:new", Some("serve:")))
        .await
        .expect("lease")
        .expect("taken from an earlier serve");
    let rest = j
        .list_events(EventFilter::default(), job2.cursor.clone(), 10)
        .await
        .expect("page");
    let rest_ids: Vec<String> = rest.items.iter().map(|e| e.id.clone()).collect();
    assert_eq!(rest_ids, ["e2", "e1", "e0"]);
    assert_eq!(rest.next, None);
    let done = j
        .replay_batch(JobBatch {
            owner: "serve:new".into(),
            ..batch("serve:new", rest_ids, None)
        })
        .await
        .expect("batch")
        .expect("held");
    assert_eq!(done.state, JobState::Done);
    assert_eq!(
        (done.matched_so_far, done.replayed, done.skipped),
        (7, 5, 2)
    );
    assert!(done.finished_at.is_some() && done.lease_owner.is_none());
    assert_eq!(j.pending_in("b".into()).await.expect("pending"), 5);
    // Finished: a cancel leaves it done.
    let after = j
        .cancel_replay_job(job.id.clone())
        .await
        .expect("cancel")
        .expect("found");
    assert_eq!(after.state, JobState::Done);
}

#[tokio::test]
async fn a_cancelled_job_takes_no_further_batch() {
    use crate::journal::{JobBatch, JobState};
    let (_dir, j) = journal();
    j.accept(&new_event("e1", None, &["a"]))
        .await
        .expect("accept");
    let job = j
        .create_replay_job(replay_job(Some("serve:1"), 10))
        .await
        .expect("create");
    let cancelled = j
        .cancel_replay_job(job.id.clone())
        .await
        .expect("cancel")
        .expect("found");
    assert_eq!(cancelled.state, JobState::Cancelled);
    assert!(cancelled.finished_at.is_some());
    let batch = j
        .replay_batch(JobBatch {
            job: job.id.clone(),
            owner: "serve:1".into(),
            lease_until: Timestamp::now(),
            ids: vec!["e1".into()],
            next: None,
        })
        .await
        .expect("batch");
    assert!(batch.is_none());
    assert_eq!(j.pending_in("b".into()).await.expect("pending"), 0);
    assert!(
        j.lease_replay_job(job.id.clone(), lease("serve:2", Some("serve:")))
            .await
            .expect("lease")
            .is_none()
    );
    assert_eq!(
        j.list_replay_jobs(10).await.expect("list")[0].state,
        JobState::Cancelled
    );
    assert!(
        j.cancel_replay_job("nope".into())
            .await
            .expect("cancel")
            .is_none()
    );
}

/// An unprocessable request keeps its headers; a re-run journals its event with pending
/// deliveries and marks it, once.
#[tokio::test]
async fn an_unprocessable_request_is_listed_and_rerun_once() {
    use crate::journal::{RequestState, Rerun, RerunEvent};
    let (_dir, j) = journal();
    let now = Timestamp::now();
    for n in 0..3 {
        j.dead_letter_request(
            NewDeadLetter {
                event_id: format!("r{n}"),
                source: "leadshark".into(),
                pipeline: None,
                stage_index: None,
                stage_name: None,
                error: "payload has no string \"event\" field".into(),
                attempts: 0,
                first_failed_at: now,
                last_failed_at: now,
                event: None,
                raw: Some(format!("{{\"n\": {n}}}").into_bytes()),
            },
            vec![("x-webhook-event".into(), "new.like".into())],
        )
        .await
        .expect("keep");
    }
    // A dead letter of a pipeline is not a request.
    j.dead_letter(letter(9)).await.expect("letter");
    let page = j.list_requests(None, 2).await.expect("list");
    let ids: Vec<&str> = page.items.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["r2", "r1"]);
    assert!(page.items.iter().all(|r| r.body.is_none()));
    let rest = j.list_requests(page.next.clone(), 2).await.expect("list");
    let ids: Vec<&str> = rest.items.iter().map(|r| r.id.as_str()).collect();
    assert_eq!((ids, rest.next), (vec!["r0"], None));
    let r = j
        .get_request("r1".into())
        .await
        .expect("get")
        .expect("found");
    assert_eq!(r.body.as_deref(), Some("{\"n\": 1}"));
    assert_eq!(
        r.headers,
        [("x-webhook-event".to_string(), "new.like".to_string())]
    );
    assert_eq!(r.state, RequestState::Unprocessable);
    let dead_before = j.depths().await.expect("depths").dead;
    let pending_before = j.pending_now();
    let rerun = RerunEvent {
        event: event("ev-r1"),
        pipelines: vec!["a".into(), "b".into()],
        order_keys: Vec::new(),
    };
    assert_eq!(
        j.rerun_request("r1".into(), rerun.clone())
            .await
            .expect("rerun"),
        Rerun::Accepted {
            event_id: "ev-r1".into(),
            pipelines: 2
        }
    );
    assert_eq!(
        j.rerun_request("r1".into(), rerun).await.expect("rerun"),
        Rerun::Already {
            event_id: "ev-r1".into()
        }
    );
    assert_eq!(j.pending_now(), pending_before + 2);
    assert_eq!(j.depths().await.expect("depths").dead, dead_before - 1);
    let due = j.claim_due(Timestamp::now(), 10).await.expect("claim");
    assert_eq!(due.len(), 2);
    assert!(due.iter().all(|d| d.event.id == "ev-r1"));
    let r = j
        .get_request("r1".into())
        .await
        .expect("get")
        .expect("found");
    assert_eq!(
        (r.state, r.event_id.as_deref()),
        (RequestState::Rerun, Some("ev-r1"))
    );
    assert!(j.get_event("ev-r1".into()).await.expect("get").is_some());
    assert!(j.get_request("e9".into()).await.expect("get").is_none());
}

/// An event's first runs through its pipelines settle in one writer job: one delivered, one
/// to retry, one dead — each lands as if settled alone. A batch that fails is kept whole
/// for the caller to try again.
#[tokio::test]
async fn an_events_first_runs_settle_together() {
    use crate::journal::{AttemptResult, Settlement};
    let (dir, j) = journal();
    let Accepted::New { deliveries, .. } = j
        .accept(&new_event("e1", None, &["a", "b", "c"]))
        .await
        .expect("accept")
    else {
        panic!()
    };
    assert_eq!(j.pending_now(), 3);
    let later = Timestamp::now() + jiff::SignedDuration::from_secs(3600);
    let letter = NewDeadLetter {
        event_id: "e1".into(),
        source: "leadshark".into(),
        pipeline: Some("c".into()),
        stage_index: Some(0),
        stage_name: Some("file".into()),
        error: "bad".into(),
        attempts: 1,
        first_failed_at: Timestamp::now(),
        last_failed_at: Timestamp::now(),
        event: Some(event("e1")),
        raw: None,
    };
    let runs = vec![
        Settlement {
            delivery: deliveries[0].id,
            continuations: vec![],
            attempts: vec![attempt("e1", "a", AttemptResult::Delivered)],
        },
        Settlement {
            delivery: deliveries[1].id,
            continuations: vec![Continuation::Retry {
                held: None,
                stage: 0,
                stage_name: None,
                event: event("e1"),
                attempts: 1,
                next_attempt_at: later,
                error: "503".into(),
                first_failed_at: Timestamp::now(),
            }],
            attempts: vec![attempt("e1", "b", AttemptResult::Retry)],
        },
        Settlement {
            delivery: deliveries[2].id,
            continuations: vec![Continuation::Dead(letter)],
            attempts: vec![attempt("e1", "c", AttemptResult::Dead)],
        },
    ];

    // A run the journal cannot place (pipeline #9 of a three-pipeline event) fails the
    // whole batch: nothing of it is settled, and the caller gets every run back.
    let (rowid, _) = fast::split_virtual(deliveries[0].id).expect("a first run");
    let mut bad = runs.clone();
    bad.push(Settlement {
        delivery: fast::virtual_id(rowid, 9),
        continuations: vec![held_retry("e1", None)],
        attempts: vec![],
    });
    j.settle_many(&mut bad).await.expect_err("no pipeline #9");
    assert_eq!(bad.len(), 4, "the failed batch is handed back whole");
    assert_eq!(j.pending_now(), 3);
    let shown = j.get_event("e1".into()).await.expect("get").expect("event");
    assert!(
        shown.attempts.is_empty(),
        "no attempt of the failed batch is recorded"
    );

    let mut runs = runs;
    j.settle_many(&mut runs).await.expect("settle");
    assert!(runs.is_empty(), "every run settled");
    assert_eq!(j.pending_now(), 1, "only the retry is pending");
    assert_eq!(j.dead_count().n, 1);
    let due = j.claim_due(later, 10).await.expect("claim");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].pipeline, "b");
    let shown = j.get_event("e1".into()).await.expect("get").expect("event");
    let recorded: Vec<_> = shown
        .attempts
        .iter()
        .map(|a| (a.pipeline.as_str(), a.result))
        .collect();
    assert_eq!(
        recorded,
        [
            ("a", AttemptResult::Delivered),
            ("b", AttemptResult::Retry),
            ("c", AttemptResult::Dead)
        ],
        "each run's attempt is recorded, in order"
    );
    assert_eq!(
        rows(
            &dir,
            "SELECT COUNT(*) FROM attempt_runs WHERE event_id = 'e1'"
        ),
        1,
        "the runs that settled together are one history row"
    );
}

/// A due delivery whose stored event cannot be read back (once: a payload nested to the
/// JSON parser's limit, which its snapshot wrapped one level deeper) is dead-lettered with
/// the stored text and the reason; the other due deliveries are claimed as usual. Before,
/// the claim failed as a whole at every poll, and nothing due ran for any pipeline.
#[tokio::test]
async fn an_unreadable_delivery_is_dead_lettered_and_blocks_no_claim() {
    let (dir, j) = journal();
    let later = Timestamp::now() + jiff::SignedDuration::from_secs(3600);
    for id in ["e1", "e2"] {
        let Accepted::New { deliveries, .. } = j
            .accept(&new_event(id, None, &["p"]))
            .await
            .expect("accept")
        else {
            panic!("a new event")
        };
        // A retry, due now.
        j.settle(deliveries[0].id, vec![held_retry(id, None)])
            .await
            .expect("settle");
    }
    let c = Connection::open(dir.path().join("j.db")).expect("open");
    c.execute(
        "UPDATE deliveries SET snapshot = '{\"not\": \"an event\"' WHERE event_id = 'e1'",
        [],
    )
    .expect("damage e1's snapshot");
    let due = j.claim_due(later, 10).await.expect("the claim succeeds");
    let ids: Vec<&str> = due.iter().map(|d| d.event.id.as_str()).collect();
    assert_eq!(ids, ["e2"]);
    assert_eq!(
        rows(
            &dir,
            "SELECT COUNT(*) FROM dead_letters WHERE event_id = 'e1'
             AND error LIKE 'the stored event could not be read back: %'
             AND raw = CAST('{\"not\": \"an event\"' AS BLOB)"
        ),
        1
    );
    assert_eq!(
        rows(
            &dir,
            "SELECT COUNT(*) FROM deliveries WHERE event_id = 'e1' AND state = 'dead'"
        ),
        1
    );
    assert!(j.claim_due(later, 10).await.expect("claim").is_empty());
}
