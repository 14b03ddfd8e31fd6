//! Hookline: receive webhooks, prove they are genuine, and route each event through
//! pipelines of filter, transform and sink stages declared in `pipeline.toml`.
//!
//! The flow, one module per step:
//!
//! ```text
//! ingest   HTTP: size limit, method, content type, raw bytes          (ingest)
//! verify   the source's signature scheme, constant time; pure          (verify)
//! envelope Event { id (UUIDv7), source, type, received_at, payload }   (ingest)
//! run      per matching pipeline: stages in order                      (runtime)
//! ```
//!
//! `config` turns `pipeline.toml` into inert, validated data with every error located by
//! file, line, column and key; `runtime::Runtime::build` turns that into live stages through
//! the plugin [`hookline_plugin_api::Registry`] — WASM plugins (`wasm`) included, registered
//! from the plugins folder by the same build. `verify` never does I/O, and nothing below
//! `ingest` calls back into it.

#[macro_use]
pub mod out;

pub mod admin;
pub mod cli;
pub mod config;
pub mod dlq;
pub mod ingest;
pub mod init;
pub mod journal;
pub mod listener;
pub mod lograte;
pub mod metrics;
pub mod pipetest;
pub mod reload;
pub mod runtime;
pub mod scaffold;
pub mod send;
pub mod server;
pub mod storage;
pub mod verify;
pub mod verify_cmd;
pub mod wasm;
