//! `postgres` sink: inserts each event as a row of a PostgreSQL table, with chosen payload
//! fields in columns of their own, in batches, exactly once per event.
//!
//! ```toml
//! { sink = "postgres", url = "postgres://hookline@db.internal:5432/crm",
//!   password = "file:/run/secrets/pg", tls = "verify-full", table = "leads",
//!   columns = { email = "data.lead.email", score = "data.score" } }
//! ```
//!
//! Every row has `event_id`, `source`, `type`, `received_at` and `payload` (the payload as
//! JSON), plus one column per `columns` entry holding the value at that dotted path (missing
//! as NULL). The server converts each value to its column's type (`jsonb_populate_recordset`),
//! so a JSON number fits an `integer` column and a string a `text`, `uuid` or `timestamptz`
//! one; a value that does not fit is a fatal error naming the column, the path and the type.
//!
//! Concurrent deliveries feed one bounded queue; a writer task takes up to `batch_size` rows
//! (waiting at most `batch_wait` for more) and inserts them with one statement,
//! `INSERT ... ON CONFLICT DO NOTHING`; each delivery completes when its row is committed.
//! With a unique index on `(event_id, md5(payload::text))` (the rule of the `sqlite` sink:
//! unique by event id and payload) or on `event_id`, a redelivered event is stored once. A
//! row that fails a batch is found by trying the rows one by one, so only it is failed.
//!
//! `build()` never connects (a `hookline check` that can reach nothing still validates the
//! config); [`Sink::probe`] (`hookline check --connect`) connects, authenticates and checks
//! the table, its columns and its unique index, without writing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hookline_plugin_api::{
    BuildContext, ConfigError, Event, PluginConfig, Secret, Sink, StageError, async_trait,
};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

mod tls;
mod writer;

/// Config of the `postgres` sink.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSinkConfig {
    /// The server and database: a URL (`postgres://USER@HOST:5432/DB`) or a key=value
    /// connection string (`host=HOST user=USER dbname=DB`). Must name a host and a user.
    /// Required.
    pub url: Secret,
    /// The user's password, a secret: written inline, `${ENV}`, `file:PATH` or
    /// `credential:NAME`. Replaces a password in `url`. Default none.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Transport security: `disable`, `prefer` (TLS when the server offers it, unverified),
    /// `require` (TLS, unverified) or `verify-full` (TLS, certificate and host name
    /// verified). Default `prefer`, as libpq.
    #[serde(default)]
    pub tls: TlsMode,
    /// PEM file of the CA certificates `verify-full` trusts; relative to the config file's
    /// directory. Default the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Table to insert into: a name (letters, digits, `_`), optionally `schema.name`; used as
    /// written (quoted). Default `events`.
    #[serde(default = "default_table")]
    pub table: String,
    /// Extra columns: column name → dotted payload path. Default none.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    /// Create the table (and its unique index) on first use if it is missing: base columns
    /// typed as in the docs, mapped columns `text`. Default `false`: the table is yours.
    #[serde(default)]
    pub create: bool,
    /// Most rows inserted by one statement (1–1000). Default 100.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Longest a row waits for others to join its batch (at most 1s). Default `5ms`.
    #[serde(default = "default_batch_wait", with = "humantime_serde")]
    pub batch_wait: Duration,
    /// Limit for connecting and for each statement; past it the delivery is retried.
    /// Default `10s`.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

/// `tls` of the `postgres` sink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyFull,
}

fn default_table() -> String {
    "events".into()
}

fn default_batch_size() -> usize {
    100
}

fn default_batch_wait() -> Duration {
    Duration::from_millis(5)
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

const BASE_COLUMNS: [&str; 5] = ["event_id", "source", "type", "received_at", "payload"];

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
        && s.len() <= 63
}

/// `leads` → `"leads"`, `crm.leads` → `"crm"."leads"`; `None` when not a table name.
fn quote_table(table: &str) -> Option<String> {
    let parts: Vec<&str> = table.split('.').collect();
    (parts.len() <= 2 && parts.iter().all(|p| is_identifier(p))).then(|| {
        parts
            .iter()
            .map(|p| format!("\"{p}\""))
            .collect::<Vec<_>>()
            .join(".")
    })
}

/// What the writer and the probe share: where to connect and what to write.
#[derive(Debug)]
struct Target {
    connect: tls::Connect,
    /// As written, for messages.
    table: String,
    /// Quoted, for SQL.
    table_sql: String,
    /// Column name and, for mapped columns, its payload path.
    columns: Vec<(String, Option<String>)>,
    insert_sql: String,
    create_sql: Option<String>,
    batch_size: usize,
    batch_wait: Duration,
    timeout: Duration,
}

pub fn build(config: &PluginConfig<'_>, ctx: &BuildContext) -> Result<Arc<dyn Sink>, ConfigError> {
    let cfg: PostgresSinkConfig = config.parse()?;
    let table_sql = quote_table(&cfg.table).ok_or_else(|| {
        config.error_at(
            "table",
            format!(
                "`{}` is not a table name (letters, digits, `_`; optionally `schema.name`)",
                cfg.table
            ),
        )
    })?;
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
    if !(1..=1000).contains(&cfg.batch_size) {
        return Err(config.error_at("batch_size", "batch_size must be between 1 and 1000"));
    }
    if cfg.batch_wait > Duration::from_secs(1) {
        return Err(config.error_at("batch_wait", "batch_wait must be at most 1s"));
    }
    if cfg.timeout.is_zero() {
        return Err(config.error_at("timeout", "timeout must be more than 0s"));
    }
    let mut pg = tokio_postgres::Config::from_str(cfg.url.expose()).map_err(|e| {
        config.error_at(
            "url",
            format!("not a postgres URL or connection string: {e}"),
        )
    })?;
    if pg.get_hosts().is_empty() {
        return Err(config.error_at(
            "url",
            "the url names no host (postgres://USER@HOST:5432/DB)",
        ));
    }
    if pg.get_user().is_none() {
        return Err(config.error_at(
            "url",
            "the url names no user (postgres://USER@HOST:5432/DB)",
        ));
    }
    // An empty password (`"${PGPASSWORD:-}"` with the variable unset) is no password.
    if let Some(password) = cfg.password.as_ref().filter(|p| !p.expose().is_empty()) {
        pg.password(password.expose());
    }
    pg.connect_timeout(cfg.timeout).application_name("hookline");
    if cfg.ca_file.is_some() && cfg.tls != TlsMode::VerifyFull {
        return Err(config.error_at("ca_file", "ca_file is used only with tls = \"verify-full\""));
    }
    let ca_file = cfg.ca_file.as_ref().map(|p| ctx.resolve(p));
    let connect = tls::Connect::new(pg, cfg.tls, ca_file.as_deref())
        .map_err(|e| config.error_at(if ca_file.is_some() { "ca_file" } else { "tls" }, e))?;

    let columns: Vec<(String, Option<String>)> = BASE_COLUMNS
        .iter()
        .map(|c| (c.to_string(), None))
        .chain(cfg.columns.into_iter().map(|(c, p)| (c, Some(p))))
        .collect();
    let names = columns
        .iter()
        .map(|(c, _)| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let insert_sql = format!(
        "INSERT INTO {table_sql} ({names}) SELECT {names} FROM jsonb_populate_recordset(NULL::{table_sql}, $1::jsonb) ON CONFLICT DO NOTHING"
    );
    let create_sql = cfg
        .create
        .then(|| create_sql(&cfg.table, &table_sql, &columns));
    let target = Target {
        connect,
        table: cfg.table,
        table_sql,
        columns,
        insert_sql,
        create_sql,
        batch_size: cfg.batch_size,
        batch_wait: cfg.batch_wait,
        timeout: cfg.timeout,
    };
    Ok(Arc::new(PostgresSink {
        target: Arc::new(target),
        queue: OnceLock::new(),
    }))
}

/// The table `create = true` makes: the documented base columns, mapped columns as `text`,
/// and the unique index that makes redeliveries no-ops.
fn create_sql(table: &str, table_sql: &str, columns: &[(String, Option<String>)]) -> String {
    let extra: String = columns
        .iter()
        .filter(|(_, path)| path.is_some())
        .map(|(c, _)| format!(", \"{c}\" text"))
        .collect();
    let index = table.rsplit('.').next().unwrap_or(table);
    format!(
        "CREATE TABLE IF NOT EXISTS {table_sql} (event_id text NOT NULL, source text NOT NULL, type text NOT NULL, \
         received_at timestamptz NOT NULL, payload jsonb NOT NULL{extra}); \
         CREATE UNIQUE INDEX IF NOT EXISTS \"{index}_event_once\" ON {table_sql} (event_id, md5(payload::text))"
    )
}

/// Runtime form of the `postgres` sink. The writer task starts with the first delivery and
/// ends when the sink is dropped (its queue closes).
#[derive(Debug)]
pub struct PostgresSink {
    target: Arc<Target>,
    queue: OnceLock<mpsc::Sender<writer::Row>>,
}

impl PostgresSink {
    /// The row an event becomes: column name → JSON value, for `jsonb_populate_recordset`.
    fn row(&self, event: &Event) -> Map<String, Value> {
        let mut row = Map::new();
        row.insert("event_id".into(), Value::String(event.id.clone()));
        row.insert("source".into(), Value::String(event.source.clone()));
        row.insert("type".into(), Value::String(event.event_type.clone()));
        row.insert(
            "received_at".into(),
            Value::String(event.received_at.to_string()),
        );
        row.insert("payload".into(), event.payload.clone());
        for (column, path) in &self.target.columns {
            if let Some(value) = path.as_deref().and_then(|p| event.lookup(p)) {
                row.insert(column.clone(), value.clone());
            }
        }
        row
    }
}

#[async_trait]
impl Sink for PostgresSink {
    async fn deliver(&self, event: &Event) -> Result<(), StageError> {
        let queue = self.queue.get_or_init(|| {
            // Room for the batch being written and the next one filling.
            let (tx, rx) = mpsc::channel(self.target.batch_size * 2);
            tokio::spawn(writer::run(rx, self.target.clone()));
            tx
        });
        let (reply, answer) = oneshot::channel();
        let row = writer::Row {
            values: self.row(event),
            reply,
        };
        match tokio::time::timeout(self.target.timeout, queue.send(row)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(StageError::retryable("postgres sink: writer stopped")),
            Err(_) => {
                return Err(StageError::retryable(format!(
                    "postgres sink: queue full for {}",
                    humantime_serde::re::humantime::format_duration(self.target.timeout)
                )));
            }
        }
        // The writer answers every row it takes, each statement bounded by `timeout`.
        answer
            .await
            .unwrap_or_else(|_| Err(StageError::retryable("postgres sink: writer stopped")))
    }

    async fn probe(&self) -> Result<(), String> {
        writer::probe(&self.target).await
    }
}

#[cfg(test)]
mod tests;
