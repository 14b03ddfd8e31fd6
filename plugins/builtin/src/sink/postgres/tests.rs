//! Config checks and what happens with no server; inserting into a real server is covered
//! end to end (`tests/e2e/postgres.rs`).

use super::*;
use crate::testutil::{config, ctx, event, leadshark_v1, spanned};

fn build_text(text: &str) -> Result<Arc<dyn Sink>, ConfigError> {
    build(&config("postgres", text), &ctx())
}

#[test]
fn config_errors_are_located() {
    let cases = [
        (
            "url = \"postgres://u@h/db\"\ntable = \"drop table\"\n",
            "\"drop table\"",
        ),
        (
            "url = \"postgres://u@h/db\"\ntable = \"a.b.c\"\n",
            "\"a.b.c\"",
        ),
        ("url = \"postgres://u@h/db\"\nbatch_size = 0\n", "0"),
        (
            "url = \"postgres://u@h/db\"\nbatch_wait = \"2s\"\n",
            "\"2s\"",
        ),
        (
            "url = \"postgres://u@h/db\"\ntls = \"maybe\"\n",
            "\"maybe\"",
        ),
        (
            "url = \"postgres://u@h/db\"\nca_file = \"ca.pem\"\n",
            "\"ca.pem\"",
        ),
        ("url = \"mysql://u@h/db\"\n", "\"mysql://u@h/db\""),
        ("url = \"postgres://h/db\"\n", "\"postgres://h/db\""),
    ];
    for (text, at) in cases {
        let err = build_text(text).expect_err(text);
        assert_eq!(spanned(text, &err), at, "{text}: {}", err.message);
    }
    let err = build_text("url = \"postgres://u@h/db\"\ncolumns = { payload = \"data\" }\n")
        .expect_err("reserved");
    assert!(err.message.contains("payload"), "{}", err.message);
    let err = build_text("url = \"postgres://u@h/db\"\ncolour = 1\n").expect_err("unknown");
    assert!(err.message.contains("colour"), "{}", err.message);
    let err = build_text(
        "url = \"postgres://u@h/db\"\ntls = \"verify-full\"\nca_file = \"/nonexistent/ca.pem\"\n",
    )
    .expect_err("unreadable CA");
    assert!(
        err.message.contains("/nonexistent/ca.pem"),
        "{}",
        err.message
    );
}

#[test]
fn builds_without_connecting_and_never_shows_the_password() {
    let sink = build_text(
        "url = \"host=127.0.0.1 port=1 user=hookline dbname=crm\"\npassword = \"hunter2\"\ntable = \"crm.leads\"\ncolumns = { email = \"data.lead.email\" }\n",
    )
    .expect("builds with nothing listening");
    let debug = format!("{sink:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("127.0.0.1:1 as hookline"), "{debug}");
    assert!(
        debug.contains(r#"INSERT INTO \"crm\".\"leads\""#),
        "{debug}"
    );
}

#[test]
fn the_created_table_is_unique_by_event_id_and_payload() {
    let columns = vec![
        ("event_id".to_string(), None),
        ("email".to_string(), Some("data.lead.email".to_string())),
    ];
    let sql = create_sql("crm.leads", "\"crm\".\"leads\"", &columns);
    assert!(sql.contains(", \"email\" text)"), "{sql}");
    assert!(
        sql.contains("\"leads_event_once\" ON \"crm\".\"leads\" (event_id, md5(payload::text))"),
        "{sql}"
    );
}

#[tokio::test]
async fn an_unreachable_server_is_retryable_and_named() {
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let sink = build_text(&format!(
        "url = \"postgres://hookline@127.0.0.1:{port}/crm\"\ntls = \"disable\"\ntimeout = \"2s\"\n"
    ))
    .expect("builds");
    let err = sink
        .deliver(&event("email.captured", leadshark_v1()))
        .await
        .expect_err("nothing listens");
    assert!(err.is_retryable(), "{err:?}");
    assert!(
        err.message()
            .contains(&format!("127.0.0.1:{port} as hookline")),
        "{}",
        err.message()
    );
    let probe = sink.probe().await.expect_err("nothing listens");
    assert!(probe.contains("cannot connect"), "{probe}");
}
