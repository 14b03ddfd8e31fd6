//! `[storage.nats]`: the JetStream journal used when `[storage] backend = "nats"`.
//!
//! ```toml
//! [storage]
//! backend = "nats"
//!
//! [storage.nats]
//! url = ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"]
//! stream = "HOOKLINE"
//! replicas = 3
//! user = "hookline"
//! password = "${NATS_PASSWORD}"
//! ```

use std::path::PathBuf;
use std::time::Duration;

use hookline_plugin_api::Secret;
use serde::Deserialize;

/// Which store holds the journal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// One SQLite file; one process does ingest and work.
    #[default]
    Sqlite,
    /// NATS JetStream; any number of ingest and worker processes.
    Nats,
}

/// One server URL or several (the client picks one and fails over to the others).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Urls {
    One(String),
    Many(Vec<String>),
}

impl Urls {
    pub(crate) fn list(&self) -> Vec<String> {
        match self {
            Urls::One(u) => vec![u.clone()],
            Urls::Many(us) => us.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// `nats://host:port` (or `tls://`), one or several servers of the same cluster.
    pub(crate) url: Urls,
    /// The JetStream stream holding events and retries; dead letters live in the key-value
    /// bucket `<stream>_dead_letters`. Letters, digits, `-` and `_`.
    #[serde(default = "default_stream")]
    pub(crate) stream: String,
    /// First token of every subject Hookline publishes (`<prefix>.events.<source>.<type>`).
    #[serde(default = "default_prefix")]
    pub(crate) subject_prefix: String,
    /// Copies JetStream keeps of the stream and the dead-letter bucket (1, 3 or 5).
    #[serde(default = "default_replicas")]
    pub(crate) replicas: usize,
    /// User and password, or a token, or a credentials file: at most one of them.
    #[serde(default)]
    pub(crate) user: Option<String>,
    #[serde(default)]
    pub(crate) password: Option<Secret>,
    #[serde(default)]
    pub(crate) token: Option<Secret>,
    /// A `.creds` file (JWT and NKey seed); relative to the config file's directory.
    #[serde(default)]
    pub(crate) creds: Option<PathBuf>,
    /// How long ingest waits for JetStream's publish ack before answering 503.
    #[serde(default = "default_publish_timeout", with = "humantime_serde")]
    pub(crate) publish_timeout: Duration,
    /// How long a worker may hold a message before JetStream gives it to another worker;
    /// runs that take longer extend it while they are alive.
    #[serde(default = "default_ack_wait", with = "humantime_serde")]
    pub(crate) ack_wait: Duration,
    /// Messages one pipeline's consumer may have delivered but not yet acknowledged, across
    /// all workers (runs in flight plus retries waiting for their time).
    #[serde(default = "default_max_ack_pending")]
    pub(crate) max_ack_pending: i64,
    /// How long a worker's pulls from a pipeline's consumer may keep failing (server away,
    /// no stream leader) before `/readyz` reports the process not ready. Pulls are retried
    /// with backoff all the while.
    #[serde(default = "default_stalled_after", with = "humantime_serde")]
    pub(crate) stalled_after: Duration,
}

fn default_stream() -> String {
    "HOOKLINE".into()
}

fn default_prefix() -> String {
    "hookline".into()
}

fn default_replicas() -> usize {
    1
}

fn default_publish_timeout() -> Duration {
    Duration::from_secs(2)
}

fn default_ack_wait() -> Duration {
    Duration::from_secs(30)
}

fn default_stalled_after() -> Duration {
    Duration::from_secs(30)
}

fn default_max_ack_pending() -> i64 {
    20_000
}

/// Names JetStream accepts for streams and buckets, and as subject tokens.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl NatsConfig {
    /// Problems with this table, each as (key, message).
    pub(crate) fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let urls = self.url.list();
        if urls.is_empty() {
            out.push(("url", "give at least one server URL".to_string()));
        }
        for u in &urls {
            match u.split_once("://") {
                Some(("nats" | "tls", rest)) if !rest.is_empty() && !rest.contains(' ') => {}
                _ => out.push((
                    "url",
                    format!("`{u}` is not a server URL (expected e.g. \"nats://127.0.0.1:4222\")"),
                )),
            }
        }
        if !is_name(&self.stream) {
            out.push((
                "stream",
                format!(
                    "`{}` is not a stream name: use letters, digits, `-` and `_` (at most 64)",
                    self.stream
                ),
            ));
        }
        if !is_name(&self.subject_prefix) {
            out.push((
                "subject_prefix",
                format!(
                    "`{}` is not a subject token: use letters, digits, `-` and `_`",
                    self.subject_prefix
                ),
            ));
        }
        if !matches!(self.replicas, 1..=5) {
            out.push((
                "replicas",
                "`replicas` must be 1 to 5 (usually 1 or 3)".into(),
            ));
        }
        let ways = [
            self.user.is_some() || self.password.is_some(),
            self.token.is_some(),
            self.creds.is_some(),
        ];
        if ways.iter().filter(|w| **w).count() > 1 {
            out.push((
                "user",
                "use one way to authenticate: `user` and `password`, or `token`, or `creds`".into(),
            ));
        }
        if self.user.is_some() != self.password.is_some() {
            out.push(("password", "`user` and `password` go together".into()));
        }
        if self.publish_timeout.is_zero() || self.ack_wait < Duration::from_secs(1) {
            out.push((
                "ack_wait",
                "`publish_timeout` must be above zero and `ack_wait` at least 1s".into(),
            ));
        }
        if self.stalled_after < Duration::from_secs(1) {
            out.push((
                "stalled_after",
                "`stalled_after` must be at least 1s".into(),
            ));
        }
        if self.max_ack_pending < 1 {
            out.push((
                "max_ack_pending",
                "`max_ack_pending` must be at least 1".into(),
            ));
        }
        out
    }

    /// One line for `hookline check` and the start-up log; secrets masked.
    pub(crate) fn describe(&self) -> String {
        let auth = if self.user.is_some() {
            format!(
                " user {} password ***",
                self.user.as_deref().unwrap_or_default()
            )
        } else if self.token.is_some() {
            " token ***".to_string()
        } else if let Some(c) = &self.creds {
            format!(" creds {}", c.display())
        } else {
            String::new()
        };
        format!(
            "nats {} stream {} replicas {}{auth}",
            self.url.list().join(","),
            self.stream,
            self.replicas
        )
    }
}

/// Problems of a `[storage]` section that concern the backend, each with the key it is at
/// (`nats.url`, `backend`).
pub(crate) fn storage_problems(storage: &super::StorageConfig) -> Vec<(String, String)> {
    match (storage.backend, &storage.nats) {
        (Backend::Nats, None) => vec![(
            "backend".into(),
            "`backend = \"nats\"` needs a `[storage.nats]` table with at least `url`".into(),
        )],
        (Backend::Sqlite, Some(_)) => vec![(
            "nats".into(),
            "`[storage.nats]` is set but `backend` is `sqlite`: add `backend = \"nats\"` to `[storage]`, or remove the table".into(),
        )],
        (Backend::Nats, Some(n)) => n
            .problems()
            .into_iter()
            .map(|(k, m)| (format!("nats.{k}"), m))
            .collect(),
        (Backend::Sqlite, None) => Vec::new(),
    }
}

/// Span of a dotted key (`nats.url`) inside the `[storage]` table, or of the deepest table
/// on the way.
pub(crate) fn problem_span(
    storage: &toml::Spanned<toml::de::DeValue<'_>>,
    key: &str,
) -> std::ops::Range<usize> {
    let mut at = storage;
    for part in key.split('.') {
        match at.get_ref() {
            toml::de::DeValue::Table(t) => match t.iter().find(|(k, _)| k.get_ref() == part) {
                Some((_, v)) => at = v,
                None => break,
            },
            _ => break,
        }
    }
    at.span()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> NatsConfig {
        toml::from_str(text).expect("valid table")
    }

    #[test]
    fn defaults_and_several_urls() {
        let c = parse(r#"url = ["nats://a:4222", "tls://b:4222"]"#);
        assert_eq!(c.url.list().len(), 2);
        assert_eq!(c.stream, "HOOKLINE");
        assert_eq!(c.replicas, 1);
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        assert_eq!(
            parse(r#"url = "nats://a:4222""#).url.list(),
            vec!["nats://a:4222"]
        );
    }

    #[test]
    fn bad_values_are_named() {
        let c = parse(
            r#"url = "http://a"
stream = "a.b"
replicas = 2
user = "u"
token = "t""#,
        );
        let keys: Vec<&str> = c.problems().iter().map(|(k, _)| *k).collect();
        assert!(keys.contains(&"url"), "{keys:?}");
        assert!(keys.contains(&"stream"));
        // 2 is accepted by the range check (JetStream allows it); 7 is not.
        assert!(keys.contains(&"user"), "two ways to authenticate");
        assert!(keys.contains(&"password"), "user without password");
        let c = parse("url = \"nats://a\"\nreplicas = 7");
        assert_eq!(c.problems()[0].0, "replicas");
    }

    #[test]
    fn describe_masks_secrets() {
        let c = parse(
            r#"url = "nats://a:4222"
user = "hook"
password = "hunter2""#,
        );
        let d = c.describe();
        assert!(d.contains("user hook password ***"), "{d}");
        assert!(!d.contains("hunter2"));
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
