//! End-to-end tests: each starts the real `hookline` binary on port 0 with a config the test
//! writes, sends real signed HTTP requests over loopback, and reads what the sinks produced.

mod cli;
mod console;
mod delivery;
mod destinations;
mod docs;
mod first_week;
mod from_journal;
mod history;
mod hostile;
mod ingest;
mod nats;
mod operations;
mod package;
mod plugin_sdk;
mod postgres;
mod postgres_server;
mod queues;
mod replays;
mod respond;
mod schemes;
mod secrets;
mod send_schemes;
mod signers;
mod sinks;
mod support;
mod verify_cli;
mod wasm;
