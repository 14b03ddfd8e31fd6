//! The message-queue sinks against real brokers on 127.0.0.1: `nats` (a `nats-server -js`,
//! see `crate::nats::NatsServer`) and `amqp` (a private RabbitMQ node, see [`rabbitmq`]).
//! Each test starts its own broker and hookline, sends signed LeadShark events, and reads
//! back what the broker stored.

mod amqp;
mod nats;
mod rabbitmq;

use crate::support::*;

/// A pipeline `crm` from the LeadShark source to one sink stage written as `stage`.
pub fn pipeline(stage: &str) -> String {
    format!(
        "{}\n[[pipelines]]\nname = \"crm\"\nsource = \"leadshark\"\nstages = [{stage}]\n",
        leadshark_source()
    )
}

/// `hookline check [--connect]` on `text`: (succeeded, stdout + stderr).
pub fn check(text: &str, connect: bool) -> (bool, String) {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("pipeline.toml");
    std::fs::write(&path, config_text(text, "")).expect("write");
    let path = path.to_str().expect("utf-8");
    let mut args = vec!["--log-level", "error", "check", "--config", path];
    if connect {
        args.push("--connect");
    }
    let out = run_cli(&args, &[]);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
