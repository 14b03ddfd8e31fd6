//! `sqlite` sink: inserts each event as a row of an SQLite table, with chosen payload fields
//! in columns of their own so the table can be queried directly.
//!
//! ```toml
//! { sink = "sqlite", path = "data/leads.db", table = "leads",
//!   columns = { email = "data.lead.email", name = "data.lead.name", score = "data.score" } }
//! ```
//!
//! Every row has `event_id`, `source`, `type`, `received_at` and `payload` (JSON text), plus
//! one column per `columns` entry holding the value at that dotted path (strings as TEXT,
//! integers as INTEGER, numbers as REAL, booleans as 0/1, objects and arrays as JSON text,
//! missing as NULL). The table is created at start-up if missing; an existing table must
//! have every column. The same event delivered twice (at-least-once delivery) is inserted
//! once: rows are unique by event id and payload. Each insert is committed (WAL,
//! `synchronous = FULL`) before the delivery counts as done; errors are retryable.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use hookline_plugin_api::{
    BuildContext, ConfigError, Event, PluginConfig, Sink, StageError, async_trait,
};
use rusqlite::types::Value as SqlValue;
use serde::Deserialize;

/// Config of the `sqlite` sink.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteSinkConfig {
    /// Database file; relative to the config file's directory; created if missing. Required.
    pub path: PathBuf,
    /// Table to insert into (letters, digits, `_`). Default `events`.
    #[serde(default = "default_table")]
    pub table: String,
    /// Extra columns: column name → dotted payload path. Default none.
    #[serde(default)]
    pub columns: std::collections::BTreeMap<String, String>,
}

fn default_table() -> String {
    "events".into()
}

const BASE_COLUMNS: [&str; 5] = ["event_id", "source", "type", "received_at", "payload"];

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
        && s.len() <= 64
}

pub fn build(config: &PluginConfig<'_>, ctx: &BuildContext) -> Result<Arc<dyn Sink>, ConfigError> {
    let cfg: SqliteSinkConfig = config.parse()?;
    if !is_identifier(&cfg.table) {
        return Err(config.error_at(
            "table",
            format!("`{}` is not a table name (letters, digits, `_`)", cfg.table),
        ));
    }
    for (column, path) in &cfg.columns {
        if !is_identifier(column) || BASE_COLUMNS.contains(&column.as_str()) {
            return Err(config.error_at(
                "columns",
                format!(
                    "`{column}` cannot be a column name (letters, digits, `_`; not one of {})",
                    BASE_COLUMNS.join(", ")
                ),
            ));
        }
        if path.is_empty() {
            return Err(
                config.error_at("columns", format!("column `{column}` needs a payload path"))
            );
        }
    }
    let path = ctx.resolve(&cfg.path);
    let conn = if ctx.dry_run {
        // Check the path without creating the database, its folder or its table.
        crate::support::check_writable(&path)
            .and_then(|()| rusqlite::Connection::open_in_memory().map_err(|e| e.to_string()))
    } else {
        open(&path, &cfg)
    }
    .map_err(|e| config.error_at("path", format!("cannot use {}: {e}", path.display())))?;
    let columns: Vec<(String, String)> = cfg.columns.into_iter().collect();
    let names: Vec<String> = BASE_COLUMNS
        .iter()
        .map(|c| format!("\"{c}\""))
        .chain(columns.iter().map(|(c, _)| format!("\"{c}\"")))
        .collect();
    let placeholders: Vec<String> = (1..=names.len()).map(|i| format!("?{i}")).collect();
    let insert = format!(
        "INSERT OR IGNORE INTO \"{}\" ({}) VALUES ({})",
        cfg.table,
        names.join(", "),
        placeholders.join(", ")
    );
    Ok(Arc::new(SqliteSink {
        path,
        insert,
        columns,
        conn: Arc::new(Mutex::new(conn)),
    }))
}

fn open(path: &std::path::Path, cfg: &SqliteSinkConfig) -> Result<rusqlite::Connection, String> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    let conn = rusqlite::Connection::open(path).map_err(|e| e.to_string())?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    let _: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(|e| e.to_string())?;
    let extra: String = cfg.columns.keys().map(|c| format!(", \"{c}\"")).collect();
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS \"{t}\" (event_id TEXT NOT NULL, source TEXT NOT NULL, type TEXT NOT NULL,
           received_at TEXT NOT NULL, payload TEXT NOT NULL{extra}, UNIQUE (event_id, payload));",
        t = cfg.table
    ))
    .map_err(|e| e.to_string())?;
    let mut stmt = conn
        .prepare(&format!(
            "SELECT name FROM pragma_table_info('{}')",
            cfg.table
        ))
        .map_err(|e| e.to_string())?;
    let existing: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| e.to_string())?;
    drop(stmt);
    for needed in BASE_COLUMNS
        .iter()
        .copied()
        .chain(cfg.columns.keys().map(String::as_str))
    {
        if !existing.iter().any(|c| c == needed) {
            return Err(format!(
                "table `{}` exists without column `{needed}`; add it or use another table",
                cfg.table
            ));
        }
    }
    Ok(conn)
}

/// Runtime form of the `sqlite` sink.
#[derive(Debug)]
pub struct SqliteSink {
    path: PathBuf,
    insert: String,
    columns: Vec<(String, String)>,
    conn: Arc<Mutex<rusqlite::Connection>>,
}

fn to_sql(value: Option<&serde_json::Value>) -> SqlValue {
    match value {
        None | Some(serde_json::Value::Null) => SqlValue::Null,
        Some(serde_json::Value::Bool(b)) => SqlValue::Integer(i64::from(*b)),
        Some(serde_json::Value::Number(n)) => match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None => n.as_f64().map(SqlValue::Real).unwrap_or(SqlValue::Null),
        },
        Some(serde_json::Value::String(s)) => SqlValue::Text(s.clone()),
        Some(other) => SqlValue::Text(other.to_string()),
    }
}

#[async_trait]
impl Sink for SqliteSink {
    async fn deliver(&self, event: &Event) -> Result<(), StageError> {
        let mut row: Vec<SqlValue> = vec![
            SqlValue::Text(event.id.clone()),
            SqlValue::Text(event.source.clone()),
            SqlValue::Text(event.event_type.clone()),
            SqlValue::Text(event.received_at.to_string()),
            SqlValue::Text(event.payload.to_string()),
        ];
        row.extend(
            self.columns
                .iter()
                .map(|(_, path)| to_sql(event.lookup(path))),
        );
        let (conn, sql, path) = (self.conn.clone(), self.insert.clone(), self.path.clone());
        tokio::task::spawn_blocking(move || {
            let conn = conn
                .lock()
                .map_err(|_| StageError::retryable("sqlite sink: connection lock poisoned"))?;
            conn.prepare_cached(&sql)
                .and_then(|mut stmt| stmt.execute(rusqlite::params_from_iter(row)))
                .map(|_| ())
                .map_err(|e| {
                    StageError::retryable(format!("cannot insert into {}: {e}", path.display()))
                })
        })
        .await
        .map_err(|e| StageError::retryable(format!("sqlite sink task failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{config, event, leadshark_v1, leadshark_v2, spanned};

    fn build_in(dir: &std::path::Path, text: &str) -> Result<Arc<dyn Sink>, ConfigError> {
        build(
            &config("sqlite", text),
            &BuildContext::new(dir, "test", "sqlite"),
        )
    }

    #[tokio::test]
    async fn inserts_rows_with_columns_once_per_event() {
        let dir = tempfile::tempdir().expect("dir");
        let sink = build_in(
            dir.path(),
            "path = \"out/leads.db\"\ntable = \"leads\"\ncolumns = { email = \"data.lead.email\", automation = \"data.automation\", missing = \"data.nope\" }\n",
        )
        .expect("builds");
        let mut second = event("email.captured", leadshark_v2());
        second.id = "other".into();
        let first = event("email.captured", leadshark_v1());
        sink.deliver(&first).await.expect("insert");
        sink.deliver(&first).await.expect("a redelivery is ignored");
        sink.deliver(&second).await.expect("insert");
        let conn = rusqlite::Connection::open(dir.path().join("out/leads.db")).expect("open");
        type Row = (String, Option<String>, Option<String>, Option<String>);
        let rows: Vec<Row> = conn
            .prepare("SELECT event_id, email, automation, missing FROM leads ORDER BY event_id")
            .expect("prepare")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].1.as_deref(), Some("john.doe@example.com"));
        assert!(
            rows[0]
                .2
                .as_deref()
                .is_some_and(|a| a.contains("Q4 Marketing Guide")),
            "objects as JSON text"
        );
        assert_eq!(rows[1].2, None, "v2's null automation is NULL");
        assert_eq!(rows[0].3, None);
    }

    #[test]
    fn config_errors_are_located() {
        let dir = tempfile::tempdir().expect("dir");
        let text = "path = \"x.db\"\ntable = \"drop table\"\n";
        let err = build_in(dir.path(), text).expect_err("bad table");
        assert_eq!(spanned(text, &err), "\"drop table\"");
        let text = "path = \"x.db\"\ncolumns = { payload = \"data\" }\n";
        assert!(
            build_in(dir.path(), text)
                .expect_err("reserved")
                .message
                .contains("payload")
        );
        let text = "path = \"x.db\"\ncolour = 1\n";
        assert!(
            build_in(dir.path(), text)
                .expect_err("unknown")
                .message
                .contains("colour")
        );
        std::fs::create_dir(dir.path().join("dir.db")).expect("mkdir");
        let text = "path = \"dir.db\"\n";
        assert!(
            build_in(dir.path(), text)
                .expect_err("unusable")
                .message
                .contains("cannot use")
        );
    }

    #[test]
    fn an_existing_table_must_have_the_columns() {
        let dir = tempfile::tempdir().expect("dir");
        build_in(dir.path(), "path = \"x.db\"\n").expect("creates");
        let err = build_in(
            dir.path(),
            "path = \"x.db\"\ncolumns = { email = \"data.lead.email\" }\n",
        )
        .expect_err("missing column");
        assert!(
            err.message.contains("without column `email`"),
            "{}",
            err.message
        );
    }
}
