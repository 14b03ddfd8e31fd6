//! The writer task: batches rows from the queue into one `INSERT` each, answers every row,
//! and sorts errors into retryable (the server is away) and fatal (the table or the row is
//! wrong), finding the bad rows of a failed batch by inserting its rows one by one.

use hookline_plugin_api::StageError;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{Client, Statement};

use super::Target;

/// One event's row and where its outcome goes.
#[derive(Debug)]
pub(super) struct Row {
    pub(super) values: Map<String, Value>,
    pub(super) reply: oneshot::Sender<Result<(), StageError>>,
}

/// A connection and the insert prepared on it.
struct Conn {
    client: Client,
    insert: Statement,
}

/// Why an insert failed.
enum Failure {
    /// Try again later: no connection, a timeout, the server shutting down.
    Retry(String),
    /// Fatal for every row: the table is missing, a column is missing, no privilege.
    Table(String),
    /// Fatal for some row of the statement: a value its column cannot take, a constraint.
    Row(tokio_postgres::Error),
}

pub(super) async fn run(mut rx: mpsc::Receiver<Row>, target: std::sync::Arc<Target>) {
    let mut conn: Option<Conn> = None;
    let mut created = false;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + target.batch_wait;
        while batch.len() < target.batch_size {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(row)) => batch.push(row),
                Ok(None) | Err(_) => break,
            }
        }
        write(&target, &mut conn, &mut created, batch).await;
    }
}

async fn write(target: &Target, conn: &mut Option<Conn>, created: &mut bool, batch: Vec<Row>) {
    let values: Vec<Value> = batch
        .iter()
        .map(|r| Value::Object(r.values.clone()))
        .collect();
    let failure = match insert(target, conn, created, Value::Array(values)).await {
        Ok(()) => return answer_all(batch, || Ok(())),
        Err(Failure::Retry(message)) => {
            tracing::debug!(table = %target.table, error = %message, "postgres insert will be retried");
            return answer_all(batch, || Err(StageError::retryable(message.clone())));
        }
        Err(Failure::Table(message)) => {
            return answer_all(batch, || Err(StageError::fatal(message.clone())));
        }
        Err(Failure::Row(e)) => e,
    };
    if batch.len() == 1 {
        let message = diagnose(target, conn, &batch[0].values, &failure).await;
        return answer_all(batch, || Err(StageError::fatal(message.clone())));
    }
    // Some row spoiled the batch: insert them one by one, failing only the bad ones.
    tracing::debug!(
        table = %target.table,
        rows = batch.len(),
        error = %pg_message(&failure),
        "postgres batch refused; inserting its rows one by one"
    );
    for row in batch {
        let value = Value::Array(vec![Value::Object(row.values.clone())]);
        let result = match insert(target, conn, created, value).await {
            Ok(()) => Ok(()),
            Err(Failure::Retry(m)) => Err(StageError::retryable(m)),
            Err(Failure::Table(m)) => Err(StageError::fatal(m)),
            Err(Failure::Row(e)) => Err(StageError::fatal(
                diagnose(target, conn, &row.values, &e).await,
            )),
        };
        let _ = row.reply.send(result);
    }
}

fn answer_all(batch: Vec<Row>, result: impl Fn() -> Result<(), StageError>) {
    for row in batch {
        // The caller may have given up (its own deadline); the row is stored all the same.
        let _ = row.reply.send(result());
    }
}

/// One `INSERT ... SELECT FROM jsonb_populate_recordset($1)` of `rows` (a JSON array),
/// connecting (and preparing) first when needed.
async fn insert(
    target: &Target,
    conn: &mut Option<Conn>,
    created: &mut bool,
    rows: Value,
) -> Result<(), Failure> {
    if conn.is_none() {
        let client = bounded(target, target.connect.connect())
            .await
            .map_err(|e| Failure::Retry(connect_error(target, &e)))?;
        if let (Some(sql), false) = (&target.create_sql, *created) {
            bounded(target, client.batch_execute(sql))
                .await
                .map_err(|e| match classify(target, e, "cannot create table") {
                    // Two sinks creating the same table at once: the loser retries.
                    Failure::Row(e) => {
                        Failure::Retry(table_message(target, "cannot create table", &e))
                    }
                    other => other,
                })?;
            *created = true;
        }
        let insert = bounded(target, client.prepare(&target.insert_sql))
            .await
            .map_err(|e| match classify(target, e, "cannot insert into table") {
                Failure::Row(e) => {
                    Failure::Table(table_message(target, "cannot insert into table", &e))
                }
                other => other,
            })?;
        *conn = Some(Conn { client, insert });
    }
    let Some(c) = conn.as_ref() else {
        return Err(Failure::Retry("postgres sink: no connection".into()));
    };
    let result = bounded(target, c.client.execute(&c.insert, &[&rows])).await;
    match result {
        Ok(_) => Ok(()),
        Err(e) => {
            let failure = classify(target, e, "cannot insert into table");
            // A closed or timed-out connection is not reused: a new one is made next time.
            if matches!(failure, Failure::Retry(_)) || c.client.is_closed() {
                *conn = None;
            }
            Err(failure)
        }
    }
}

/// `fut` within the target's `timeout`; past it an error that reads as a timeout.
async fn bounded<T>(
    target: &Target,
    fut: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, Bounded> {
    match tokio::time::timeout(target.timeout, fut).await {
        Ok(r) => r.map_err(Bounded::Pg),
        Err(_) => Err(Bounded::TimedOut),
    }
}

enum Bounded {
    Pg(tokio_postgres::Error),
    TimedOut,
}

fn connect_error(target: &Target, e: &Bounded) -> String {
    let why = match e {
        Bounded::Pg(e) => pg_message(e),
        Bounded::TimedOut => format!(
            "no connection within {}",
            humantime_serde::re::humantime::format_duration(target.timeout)
        ),
    };
    format!(
        "cannot connect to postgres at {}: {why}",
        target.connect.describe()
    )
}

/// Sorts an error by SQLSTATE class: data (22), integrity (23) and a datatype mismatch are
/// the row's fault; the rest of 42 (undefined table or column, privileges), 0A and 44 are the
/// table's; everything else (08 connection, 40 rollback, 53 resources, 57 operator
/// intervention such as admin shutdown, 58, XX, no code at all) is worth retrying.
fn classify(target: &Target, e: Bounded, doing: &str) -> Failure {
    let e = match e {
        Bounded::Pg(e) => e,
        Bounded::TimedOut => {
            return Failure::Retry(format!(
                "{doing} \"{}\": no answer within {}",
                target.table,
                humantime_serde::re::humantime::format_duration(target.timeout)
            ));
        }
    };
    let Some(code) = e.code().map(|c| c.code().to_string()) else {
        return Failure::Retry(format!(
            "{doing} \"{}\" at {}: {}",
            target.table,
            target.connect.describe(),
            pg_message(&e)
        ));
    };
    match code.get(..2) {
        Some("22" | "23") => Failure::Row(e),
        Some("42") if code == "42804" => Failure::Row(e),
        Some("42" | "0A" | "44") => Failure::Table(table_message(target, doing, &e)),
        _ => Failure::Retry(format!("{doing} \"{}\": {}", target.table, pg_message(&e))),
    }
}

fn table_message(target: &Target, doing: &str, e: &tokio_postgres::Error) -> String {
    let hint = match e.code().map(|c| c.code()) {
        Some("42P01") if target.create_sql.is_none() => {
            " (create it, or set create = true; see docs/plugins.md)"
        }
        Some("42703") => " (add the column, or change `columns`)",
        _ => "",
    };
    format!("{doing} \"{}\": {}{hint}", target.table, pg_message(e))
}

/// The server's message and SQLSTATE (and detail), or the client's error with its causes.
pub(super) fn pg_message(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut m = format!("{} (SQLSTATE {})", db.message(), db.code().code());
        if let Some(detail) = db.detail() {
            m.push_str(&format!("; {detail}"));
        }
        return m;
    }
    let mut m = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !m.contains(&text) {
            m.push_str(&format!(": {text}"));
        }
        source = s.source();
    }
    m
}

/// The message for a row the server refused. For a value a column cannot take, finds which
/// column by converting each value alone, and names the column, its type and the value's
/// payload path: `column "score" is integer but the value at data.score is a string ("x")`.
async fn diagnose(
    target: &Target,
    conn: &Option<Conn>,
    row: &Map<String, Value>,
    e: &tokio_postgres::Error,
) -> String {
    let general = format!(
        "cannot insert into table \"{}\": {}",
        target.table,
        pg_message(e)
    );
    let is_conversion = e
        .code()
        .is_some_and(|c| c.code().starts_with("22") || c.code() == "42804");
    let Some(c) = conn.as_ref().filter(|_| is_conversion) else {
        return general;
    };
    let check = format!(
        "SELECT jsonb_populate_record(NULL::{}, $1::jsonb)::text",
        target.table_sql
    );
    for (column, path) in &target.columns {
        let Some(value) = row.get(column) else {
            continue;
        };
        let alone = Value::Object(Map::from_iter([(column.clone(), value.clone())]));
        let Ok(Err(err)) =
            tokio::time::timeout(target.timeout, c.client.query_one(&check, &[&alone])).await
        else {
            continue;
        };
        let type_name = column_type(target, &c.client, column)
            .await
            .unwrap_or_else(|| "of another type".into());
        let place = match path {
            Some(path) => format!("the value at {path}"),
            None => format!("the event's {column}"),
        };
        return format!(
            "column \"{column}\" of table \"{}\" is {type_name} but {place} is {} ({}): {}",
            target.table,
            json_kind(value),
            crate::support::truncate(&value.to_string(), 80),
            err.as_db_error()
                .map(|d| d.message().to_string())
                .unwrap_or_else(|| pg_message(&err))
        );
    }
    general
}

async fn column_type(target: &Target, client: &Client, column: &str) -> Option<String> {
    let sql = "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
               WHERE attrelid = to_regclass($1) AND attname = $2 AND NOT attisdropped";
    let row = tokio::time::timeout(
        target.timeout,
        client.query_opt(sql, &[&target.table_sql, &column]),
    )
    .await
    .ok()?
    .ok()??;
    row.try_get(0).ok()
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `hookline check --connect`: connect, authenticate, and check the table, every column the
/// sink writes and a unique index on `event_id`, without writing.
pub(super) async fn probe(target: &Target) -> Result<(), String> {
    let client = bounded(target, target.connect.connect())
        .await
        .map_err(|e| connect_error(target, &e))?;
    let at = target.connect.describe();
    let query_error = |e: tokio_postgres::Error| format!("at {at}: {}", pg_message(&e));
    let exists: Option<String> = client
        .query_one("SELECT to_regclass($1)::text", &[&target.table_sql])
        .await
        .map_err(query_error)?
        .try_get(0)
        .map_err(query_error)?;
    if exists.is_none() {
        if target.create_sql.is_some() {
            // `create = true`: made on first use.
            return Ok(());
        }
        return Err(format!(
            "table \"{}\" does not exist at {at} (create it, or set create = true; see docs/plugins.md)",
            target.table
        ));
    }
    let present: Vec<String> = client
        .query(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
            &[&target.table_sql],
        )
        .await
        .map_err(query_error)?
        .iter()
        .filter_map(|r| r.try_get::<_, String>(0).ok())
        .collect();
    let missing: Vec<String> = target
        .columns
        .iter()
        .filter(|(c, _)| !present.contains(c))
        .map(|(c, path)| match path {
            Some(p) => format!("\"{c}\" (for {p})"),
            None => format!("\"{c}\""),
        })
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "table \"{}\" at {at} has no column {}",
            target.table,
            missing.join(", ")
        ));
    }
    let unique: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = to_regclass($1) AND i.indisunique AND a.attname = 'event_id'",
            &[&target.table_sql],
        )
        .await
        .map_err(query_error)?
        .try_get(0)
        .map_err(query_error)?;
    if unique == 0 {
        return Err(format!(
            "table \"{}\" at {at} has no unique index on event_id: a redelivered event would be stored twice \
             (CREATE UNIQUE INDEX ON {} (event_id, md5(payload::text)))",
            target.table, target.table_sql
        ));
    }
    Ok(())
}
