//! Hookline: receive webhooks, prove they are genuine, and route each event through
//! pipelines of filter, transform and sink stages declared in `pipeline.toml`.
//!
//! The flow, one module per step:
//!
//! ```text
//! listen   connections: caps, header and idle timeouts                  (listener)
//! ingest   HTTP: size limit, method, content type, raw bytes            (ingest)
//! verify   the source's signature scheme, constant time; pure           (verify)
//! envelope Event { id (UUIDv7), source, type, received_at, payload }    (ingest)
//! accept   made durable with the pipelines it goes to, then the 2xx     (journal)
//! run      per matching pipeline: stages in order                       (runtime)
//! settle   delivered, a retry at a stage, or a dead letter              (journal)
//! ```
//!
//! `config` turns `pipeline.toml` into inert, validated data with every error located by
//! file, line, column and key; `runtime::Runtime::build` turns that into live stages through
//! the plugin [`hookline_plugin_api::Registry`] — WASM plugins (`wasm`) included, registered
//! from the plugins folder by the same build. `verify` never does I/O, and nothing below
//! `ingest` calls back into it. Modules depend on each other one way, along this flow:
//! `tests/architecture.rs` holds the layers and fails on an edge against them.

#[macro_use]
pub mod out;

pub mod admin;
pub mod cli;
pub mod config;
pub mod dlq;
pub mod events_cmd;
/// Harnesses for the fuzz targets in `fuzz/` and their stable replay test; not an API.
#[doc(hidden)]
pub mod fuzzing;
pub mod ingest;
pub mod init;
pub mod internal_events;
pub mod journal;
pub mod listener;
pub mod lograte;
pub mod metrics;
pub mod pipelines_cmd;
pub mod pipetest;
pub mod reload;
pub mod rerun;
pub mod respond;
pub mod runtime;
pub mod scaffold;
pub mod send;
pub mod server;
pub mod storage;
pub mod tail_cmd;
pub mod tap;
pub(crate) mod time;
pub mod verify;
pub mod verify_cmd;
pub mod wasm;
