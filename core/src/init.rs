//! `hookline init`: a commented starter `pipeline.toml` (and a starter test file) for a
//! chosen source scheme and sink, which passes `hookline check` and `hookline test` as
//! written.

use std::path::Path;

use anyhow::{Context, bail};
use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Scheme {
    Leadshark,
    StandardWebhooks,
    Github,
    Stripe,
    Slack,
    Shopify,
    Hmac,
    Twilio,
    /// Ed25519 public-key signatures, Discord flavoured (answers its PING).
    Ed25519,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SinkKind {
    File,
    Http,
    Postgres,
    Stdout,
    Sqlite,
    Nats,
    Amqp,
}

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Signature scheme of the source.
    #[arg(long, value_enum, default_value = "leadshark")]
    pub(crate) scheme: Scheme,
    /// Where events go.
    #[arg(long, value_enum, default_value = "file")]
    pub(crate) sink: SinkKind,
    /// File to write (its `.test.toml` companion is written beside it).
    #[arg(long, short, default_value = "pipeline.toml")]
    pub(crate) output: std::path::PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    pub(crate) force: bool,
}

/// (source name, env var, `verify = ...` line, a note for the comment, sample event type)
fn source(
    scheme: Scheme,
) -> (
    &'static str,
    &'static str,
    String,
    &'static str,
    &'static str,
) {
    match scheme {
        Scheme::Leadshark => (
            "leadshark",
            "LEADSHARK_SECRET",
            r#"verify = { scheme = "leadshark", secrets = ["${LEADSHARK_SECRET:-change-me}", "${LEADSHARK_SECRET_OLD:-}"] }"#.into(),
            "The endpoint secret from LeadShark's dashboard (Settings → Webhooks).",
            "email.captured",
        ),
        Scheme::StandardWebhooks => (
            "app",
            "WEBHOOK_SECRET",
            r#"verify = { scheme = "standard-webhooks", secrets = ["${WEBHOOK_SECRET:-whsec_Y2hhbmdlLW1lLWNoYW5nZS1tZQ==}"], tolerance = "5m" }"#.into(),
            "The sender's `whsec_...` signing secret (Svix and every Standard Webhooks sender).",
            "user.created",
        ),
        Scheme::Github => (
            "github",
            "GITHUB_WEBHOOK_SECRET",
            r#"verify = { scheme = "github", secrets = ["${GITHUB_WEBHOOK_SECRET:-change-me}"] }"#.into(),
            "The secret you typed in the repository's webhook settings.",
            "push",
        ),
        Scheme::Stripe => (
            "stripe",
            "STRIPE_WEBHOOK_SECRET",
            r#"verify = { scheme = "stripe", secrets = ["${STRIPE_WEBHOOK_SECRET:-whsec_change_me}"], tolerance = "5m" }"#.into(),
            "The endpoint's signing secret from Stripe's dashboard (`whsec_...`).",
            "payment_intent.succeeded",
        ),
        Scheme::Slack => (
            "slack",
            "SLACK_SIGNING_SECRET",
            r#"verify = { scheme = "slack", secrets = ["${SLACK_SIGNING_SECRET:-change-me}"], tolerance = "5m" }"#.into(),
            "The app's Signing Secret (Basic Information → App Credentials).",
            "app_mention",
        ),
        Scheme::Shopify => (
            "shopify",
            "SHOPIFY_CLIENT_SECRET",
            r#"verify = { scheme = "shopify", secrets = ["${SHOPIFY_CLIENT_SECRET:-change-me}"] }"#.into(),
            "The app's client secret.",
            "orders/create",
        ),
        Scheme::Hmac => (
            "partner",
            "PARTNER_SECRET",
            r#"verify = { scheme = "hmac", secrets = ["${PARTNER_SECRET:-change-me}"], header = "X-Signature", algorithm = "sha256", encoding = "hex", prefix = "sha256=", event_field = "type" }"#.into(),
            "A sender that puts an HMAC of the body in a header: set the header, algorithm, encoding and prefix it uses.",
            "order.paid",
        ),
        Scheme::Twilio => (
            "twilio",
            "TWILIO_AUTH_TOKEN",
            r#"verify = { scheme = "twilio", secrets = ["${TWILIO_AUTH_TOKEN:-change-me}"], public_url = "https://hooks.example.com/webhooks/twilio" }"#.into(),
            "The account's Auth Token (Console → Account info). Twilio signs the URL it calls:\n# set public_url to the webhook URL exactly as entered in Twilio's console.",
            "received",
        ),
        Scheme::Ed25519 => (
            "discord",
            "DISCORD_PUBLIC_KEY",
            r#"verify = { scheme = "ed25519", public_keys = ["${DISCORD_PUBLIC_KEY:-d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a}", "${DISCORD_PUBLIC_KEY_OLD:-}"], tolerance = "5m" }
# Discord checks the endpoint with a signed PING (`{"type": 1}`) and wants `{"type": 1}`
# (PONG) back; every other interaction is answered "Received." while the pipeline runs.
# The answer is sent only once the event is verified and journaled (docs/verification.md).
respond = { body = '''
{% if payload.type == 1 %}{"type": 1}{% else %}{"type": 4, "data": {"content": "Received."}}{% endif %}
''' }"#
                .into(),
            "The application's Public Key (Developer Portal → General Information); Discord signs with its private half.",
            "2",
        ),
    }
}

fn sink(kind: SinkKind) -> &'static str {
    match kind {
        SinkKind::File => r#"{ sink = "file", path = "data/events.jsonl", envelope = true }"#,
        SinkKind::Stdout => r#"{ sink = "stdout", envelope = true }"#,
        SinkKind::Sqlite => r#"{ sink = "sqlite", path = "data/events.db", table = "events" }"#,
        // `create = true` makes the table on first use; `hookline check --connect` tries the
        // server. The password may be `file:PATH` or `credential:NAME` (docs/plugins.md).
        SinkKind::Postgres => {
            r#"{ sink = "postgres", url = "${DATABASE_URL:-postgres://hookline@127.0.0.1:5432/hookline}", password = "${PGPASSWORD:-}", tls = "prefer", table = "events", create = true }"#
        }
        SinkKind::Nats => {
            r#"{ sink = "nats", url = "${NATS_URL:-nats://127.0.0.1:4222}", subject = "webhooks.{{ event.source }}.{{ event.type }}", timeout = "10s" }"#
        }
        SinkKind::Amqp => {
            r#"{ sink = "amqp", url = "${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}", exchange = "webhooks", routing_key = "{{ event.source }}.{{ event.type }}", timeout = "10s" }"#
        }
        SinkKind::Http => {
            r#"{ sink = "http", url = "${TARGET_URL:-http://127.0.0.1:3000/webhooks}", timeout = "10s", retry = { attempts = 8, initial = "1s", max = "5m" } }"#
        }
    }
}

/// The starter config text.
pub(crate) fn config_text(scheme: Scheme, kind: SinkKind) -> String {
    let (name, var, verify, note, _) = source(scheme);
    let sink = sink(kind);
    let keys = if scheme == Scheme::Ed25519 {
        format!(
            "# Without ${{{var}}} set, the sample key below is used and `serve` warns loudly. While the\n\
             # sender rotates its key pair, list the old public key too: both are accepted."
        )
    } else {
        format!(
            "# Without ${{{var}}} set, the default below is used and `serve` warns loudly. While rotating a\n\
             # secret, list the old one too: both are accepted.\n\
             # Or keep the secret in a file, read again on every reload (rewrite it, then\n\
             # `systemctl reload hookline` or `kill -HUP`): secrets = [\"file:/run/secrets/{name}\"]; under\n\
             # systemd with `LoadCredential={name}:/etc/hookline/{name}.secret`, secrets = [\"credential:{name}\"]\n\
             # (docs/operations.md, \"Secrets in files\")."
        )
    };
    format!(
        r#"# Hookline pipeline, written by `hookline init`.
# Check it:   hookline check --config pipeline.toml
# Test it:    hookline test --config pipeline.toml     (cases in pipeline.test.toml)
# Run it:     {var}=... hookline serve --config pipeline.toml
# Every key:  docs/configuration.md

[server]
# Where senders deliver. Put it behind your TLS proxy.
listen = "0.0.0.0:8080"
max_body = "1MiB"

[storage]
# The journal: an event is committed here before it is acknowledged.
path = "data/hookline.db"
retain = "7d"

[admin]
# /metrics, /healthz, /readyz and /api/v1/dead-letters. Off loopback, set a token.
listen = "127.0.0.1:9090"

[[sources]]
name = "{name}"
path = "/webhooks/{name}"
# {note}
{keys}
{verify}

[[pipelines]]
name = "main"
source = "{name}"
events = ["*"]              # event types, or globs such as "order.*"
stages = [
  # Filters keep or drop, transforms reshape, sinks deliver. For example:
  # {{ filter = "cel", expr = "has(payload.data)" }},
  # {{ transform = "set", fields = {{ "meta.received_by" = "hookline" }} }},
  {sink},
]
"#
    )
}

/// The starter test file text.
pub(crate) fn test_text(scheme: Scheme) -> String {
    let (name, _, _, _, event_type) = source(scheme);
    let input = if scheme == Scheme::Leadshark {
        format!("sample = \"{event_type}\"   # one of LeadShark's documented sample payloads")
    } else if scheme == Scheme::Ed25519 {
        // Discord's interaction types are numbers: 2 is an application command.
        format!(
            "type = \"{event_type}\"\npayload = {{ type = {event_type}, id = \"1\", data = {{ name = \"hello\" }} }}"
        )
    } else {
        format!(
            "type = \"{event_type}\"\npayload = {{ type = \"{event_type}\", data = {{ id = \"evt_1\" }} }}"
        )
    };
    format!(
        r#"# Pipeline tests: `hookline test --config pipeline.toml`. Sinks are replaced by
# recorders, so nothing leaves the machine. Format: docs/testing.md

[[test]]
name = "every event reaches the main pipeline's sink"
source = "{name}"
{input}
pipelines = ["main"]

[[test.expect]]
pipeline = "main"
stage = "0"              # stage name or index
reached = true
"#
    )
}

pub fn run(args: &InitArgs) -> anyhow::Result<()> {
    let test_path = companion(&args.output);
    for path in [&args.output, &test_path] {
        if path.exists() && !args.force {
            bail!("{} exists; use --force to overwrite it", path.display());
        }
    }
    if let Some(dir) = args.output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&args.output, config_text(args.scheme, args.sink))
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    std::fs::write(&test_path, test_text(args.scheme))
        .with_context(|| format!("cannot write {}", test_path.display()))?;
    outln!(
        "wrote {} and {}",
        args.output.display(),
        test_path.display()
    );
    outln!(
        "next: hookline check --config {0} && hookline test --config {0}",
        args.output.display()
    );
    Ok(())
}

fn companion(config: &Path) -> std::path::PathBuf {
    let stem = config
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("pipeline");
    config.with_file_name(format!("{stem}.test.toml"))
}
