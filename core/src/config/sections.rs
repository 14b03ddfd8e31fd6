//! The plain sections of `pipeline.toml`: `[server]`, `[storage]`, `[admin]`, `[plugins]`,
//! `[[sources]]`.

use std::time::Duration;

use hookline_plugin_api::Secret;
use serde::Deserialize;

use crate::verify::VerifyConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address of the webhook listener.
    #[serde(default = "default_listen")]
    pub(crate) listen: String,
    /// Largest request body accepted (`"1MiB"`, `"512KiB"`, or bytes).
    #[serde(default = "default_max_body")]
    pub(crate) max_body: bytesize::ByteSize,
    /// How long a client may take to send a request's headers; on a kept-alive connection
    /// counted from the end of the previous response. The connection is closed after it.
    #[serde(default = "default_header_timeout", with = "humantime_serde")]
    pub(crate) header_timeout: Duration,
    /// How long a client may take to send a request's body, once its headers are in:
    /// answered `408` after it.
    #[serde(default = "default_body_timeout", with = "humantime_serde")]
    pub(crate) body_timeout: Duration,
    /// A connection on which nothing is read or written for this long is closed.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub(crate) idle_timeout: Duration,
    /// Open connections at most; further clients wait in the kernel's accept queue.
    #[serde(default = "default_max_connections")]
    pub(crate) max_connections: usize,
    /// Request bytes held in memory across all connections at once (bodies being read,
    /// verified and journaled). A request that would go over waits up to a second for room,
    /// then is answered `503` with `Retry-After`. A quarter is kept for bodies of at most
    /// 64 KiB, so large bodies cannot crowd out ordinary webhooks.
    #[serde(default = "default_max_buffered")]
    pub(crate) max_buffered: bytesize::ByteSize,
    /// Serve HTTP/2 (prior knowledge, `h2c`) beside HTTP/1.1, with at most 32 streams per
    /// connection. Webhook senders use HTTP/1.1; off unless you need it.
    #[serde(default)]
    pub(crate) http2: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            max_body: default_max_body(),
            header_timeout: default_header_timeout(),
            body_timeout: default_body_timeout(),
            idle_timeout: default_idle_timeout(),
            max_connections: default_max_connections(),
            max_buffered: default_max_buffered(),
            http2: false,
        }
    }
}

impl ServerConfig {
    /// Limits that cannot work, each as (key, message).
    pub(crate) fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for (key, value) in [
            ("header_timeout", self.header_timeout),
            ("body_timeout", self.body_timeout),
            ("idle_timeout", self.idle_timeout),
        ] {
            if value < Duration::from_millis(100) {
                out.push((key, format!("`{key}` must be at least 100ms")));
            }
        }
        if self.max_connections == 0 {
            out.push((
                "max_connections",
                "`max_connections` must be at least 1".into(),
            ));
        }
        if self.max_buffered.as_u64() < self.max_body.as_u64().saturating_mul(2) {
            out.push((
                "max_buffered",
                format!(
                    "`max_buffered` ({}) must be at least twice `max_body` ({}): a quarter of it is kept for small webhooks, and the rest must hold the largest body",
                    self.max_buffered, self.max_body
                ),
            ));
        }
        out
    }
}

fn default_header_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_body_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_max_connections() -> usize {
    4096
}

fn default_max_buffered() -> bytesize::ByteSize {
    bytesize::ByteSize::mib(64)
}

fn default_listen() -> String {
    "0.0.0.0:8080".into()
}

fn default_max_body() -> bytesize::ByteSize {
    bytesize::ByteSize::mib(1)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Referenced by pipelines' `source`.
    pub(crate) name: String,
    /// URL path the source is served at, e.g. `/webhooks/leadshark`.
    pub(crate) path: String,
    /// Signature scheme and secrets.
    pub(crate) verify: VerifyConfig,
    /// Event types this source declares: the values of the `event_type` metric label
    /// (others count as `other`). Defaults to the scheme's documented types.
    #[serde(default)]
    pub(crate) events: Option<Vec<String>>,
    /// The same signed delivery within this window is answered with the first event's id
    /// and not processed again (`"0s"` turns deduplication off).
    #[serde(default = "default_dedupe_window", with = "humantime_serde")]
    pub(crate) dedupe_window: Duration,
    /// The answer to an accepted event, instead of Hookline's own (see `respond.rs`).
    #[serde(default)]
    pub(crate) respond: Option<crate::respond::RespondConfig>,
    /// `respond`, compiled by the checker.
    #[serde(skip)]
    pub(crate) responder: Option<std::sync::Arc<crate::respond::Responder>>,
    /// `verify`, built by the checker (a source whose verifier cannot be built is an error
    /// of the file): the runtime uses this one rather than building it again.
    #[serde(skip)]
    pub(crate) verifier: Option<std::sync::Arc<dyn crate::verify::Verifier>>,
}

fn default_dedupe_window() -> Duration {
    Duration::from_secs(24 * 3600)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// `sqlite` (the default: one process, one file) or `nats` (JetStream; see
    /// `[storage.nats]` and docs/scale-out.md).
    #[serde(default)]
    pub(crate) backend: super::nats::Backend,
    /// The JetStream settings, with `backend = "nats"`.
    #[serde(default)]
    pub(crate) nats: Option<super::nats::NatsConfig>,
    /// The SQLite journal; relative to the config file's directory.
    #[serde(default = "default_db")]
    pub(crate) path: std::path::PathBuf,
    /// How long delivered events are kept for inspection and replay.
    #[serde(default = "default_retain", with = "humantime_serde")]
    pub(crate) retain: Duration,
    /// A cap on pending deliveries across every pipeline, above which ingest answers 503
    /// with `Retry-After` for every source. Unset by default: a backlog waits in the journal,
    /// and backpressure follows the disk (`min_free_disk`, `max_size`).
    #[serde(default)]
    pub(crate) max_pending: Option<u64>,
    /// Ingest answers 503 while the journal's file system has less free space than this
    /// (SQLite journal).
    #[serde(default = "default_min_free_disk")]
    pub(crate) min_free_disk: bytesize::ByteSize,
    /// Ingest answers 503 while the journal (file and WAL) is this large or larger (SQLite
    /// journal). Unset: no cap but the disk.
    #[serde(default)]
    pub(crate) max_size: Option<bytesize::ByteSize>,
    /// Pipeline runs in flight at once.
    #[serde(default = "default_concurrency")]
    pub(crate) concurrency: usize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: super::nats::Backend::default(),
            nats: None,
            path: default_db(),
            retain: default_retain(),
            max_pending: None,
            min_free_disk: default_min_free_disk(),
            max_size: None,
            concurrency: default_concurrency(),
        }
    }
}

fn default_db() -> std::path::PathBuf {
    "data/hookline.db".into()
}

fn default_retain() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}

fn default_min_free_disk() -> bytesize::ByteSize {
    bytesize::ByteSize::mib(256)
}

fn default_concurrency() -> usize {
    256
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of the admin listener (`/healthz`, `/readyz`, `/api/v1/...`). On any address
    /// other than loopback, `token` is required.
    #[serde(default = "default_admin_listen")]
    pub(crate) listen: String,
    /// Bearer token required on every admin request when set.
    #[serde(default)]
    pub(crate) token: Option<Secret>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: default_admin_listen(),
            token: None,
        }
    }
}

fn default_admin_listen() -> String {
    "127.0.0.1:9090".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    /// The drop-in folder: `foo.wasm` there is the plugin `wasm:foo`. Relative to the config
    /// file's directory.
    #[serde(default = "default_plugins_dir")]
    pub(crate) dir: std::path::PathBuf,
    /// Where compiled plugins are cached (native code: keep it writable by this service
    /// only). Default: `wasm-cache` beside the journal.
    #[serde(default)]
    pub(crate) cache_dir: Option<std::path::PathBuf>,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            dir: default_plugins_dir(),
            cache_dir: None,
        }
    }
}

fn default_plugins_dir() -> std::path::PathBuf {
    "plugins".into()
}
