//! `nats` sink: publishes each event to a NATS JetStream subject named from the event.
//!
//! ```toml
//! { sink = "nats", url = "nats://127.0.0.1:4222", subject = "leads.{{ event.type }}",
//!   token = "${NATS_TOKEN}", timeout = "5s" }
//! ```
//!
//! The subject is a template over `payload`, `event` and `headers` (see the `template`
//! transform), compiled at start-up; a rendered subject that is not a valid publish subject
//! (empty tokens, spaces, wildcards) fails the event. The message is the payload's JSON
//! (`envelope = true`: the envelope's) with the headers `Nats-Msg-Id` (the delivery id: event
//! id, pipeline, stage and a hash of the body) and `Hookline-Event-Id`. A redelivery within
//! the stream's duplicate window is therefore stored once.
//!
//! The delivery is JetStream's publish ack. No connection is made at start-up: the sink
//! connects on its first delivery and the client reconnects by itself after a loss. A
//! connect failure, a timeout, a lost connection or a subject no stream takes are retryable
//! (an operator can start the server or create the stream). `hookline check --connect`
//! connects, authenticates and asks the server for a stream taking the subject (each
//! inserted value replaced by `*`), writing nothing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage};
use hookline_plugin_api::{
    BuildContext, ConfigError, Event, PluginConfig, Secret, Sink, StageError, async_trait,
};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::name_template::NameTemplate;
use crate::support::delivery_id;

/// Config of the `nats` sink.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSinkConfig {
    /// Server URL (`nats://`, `tls://`). Default `nats://127.0.0.1:4222`.
    #[serde(default = "default_url")]
    pub url: String,
    /// Subject template (`"leads.{{ event.type }}"`). Required.
    pub subject: String,
    /// Token authentication; a secret (`${ENV}`, `file:PATH`, `credential:NAME`). Default none.
    pub token: Option<Secret>,
    /// User name, with `password`. Default none.
    pub user: Option<String>,
    /// Password for `user`; a secret. Default none.
    pub password: Option<Secret>,
    /// A `.creds` file (JWT and NKey seed), relative to the config file. Default none.
    pub creds: Option<PathBuf>,
    /// Limit on connecting and on each publish ack. Default `10s`.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Publish the envelope instead of the bare payload. Default `false`.
    #[serde(default)]
    pub envelope: bool,
}

fn default_url() -> String {
    "nats://127.0.0.1:4222".into()
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

pub fn build(config: &PluginConfig<'_>, ctx: &BuildContext) -> Result<Arc<dyn Sink>, ConfigError> {
    let cfg: NatsSinkConfig = config.parse()?;
    cfg.url
        .parse::<async_nats::ServerAddr>()
        .map_err(|e| config.error_at("url", format!("invalid NATS URL: {e}")))?;
    let subject = NameTemplate::compile(&cfg.subject).map_err(|e| config.error_at("subject", e))?;
    if let Some(constant) = subject.constant() {
        check_subject(constant).map_err(|e| config.error_at("subject", e))?;
    }
    if cfg.timeout.is_zero() {
        return Err(config.error_at("timeout", "`timeout` must be more than zero"));
    }
    match (&cfg.user, &cfg.password) {
        (Some(_), None) => return Err(config.error_at("user", "`user` needs a `password`")),
        (None, Some(_)) => return Err(config.error_at("password", "`password` needs a `user`")),
        _ => {}
    }
    let creds = cfg.creds.as_ref().map(|p| ctx.resolve(p));
    if let Some(path) = &creds
        && !path.is_file()
    {
        return Err(config.error_at(
            "creds",
            format!("credentials file {} not found", path.display()),
        ));
    }
    Ok(Arc::new(NatsSink {
        origin: origin(&cfg.url),
        url: cfg.url,
        subject,
        token: cfg.token,
        user: cfg.user.zip(cfg.password),
        creds,
        timeout: cfg.timeout,
        envelope: cfg.envelope,
        pipeline: ctx.pipeline.clone(),
        stage: ctx.stage.clone(),
        client: Mutex::new(None),
    }))
}

/// `scheme://host:port` of a URL that may carry a user and password, for messages.
fn origin(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
            format!("{scheme}://{}", host.split('/').next().unwrap_or(host))
        }
        None => url.rsplit_once('@').map_or(url, |(_, h)| h).to_string(),
    }
}

/// A subject one can publish to: dot-separated non-empty tokens, no spaces, no wildcards.
fn check_subject(subject: &str) -> Result<(), String> {
    let bad = subject.is_empty()
        || subject.len() > 4096
        || subject
            .split('.')
            .any(|t| t.is_empty() || t == "*" || t == ">" || t.chars().any(|c| c.is_whitespace()));
    if bad {
        return Err(format!(
            "`{subject}` is not a subject to publish to (dot-separated tokens, no spaces, no `*` or `>`)"
        ));
    }
    Ok(())
}

/// Runtime form of the `nats` sink.
pub struct NatsSink {
    url: String,
    origin: String,
    subject: NameTemplate,
    token: Option<Secret>,
    user: Option<(String, Secret)>,
    creds: Option<PathBuf>,
    timeout: Duration,
    envelope: bool,
    pipeline: String,
    stage: String,
    /// Made on the first delivery; the client reconnects by itself after that.
    client: Mutex<Option<(async_nats::Client, jetstream::Context)>>,
}

impl std::fmt::Debug for NatsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSink")
            .field("origin", &self.origin)
            .field("subject", &self.subject)
            .field("timeout", &self.timeout)
            .field("envelope", &self.envelope)
            .finish_non_exhaustive()
    }
}

impl NatsSink {
    /// The JetStream context, connecting first if there is no client yet.
    async fn context(&self) -> Result<jetstream::Context, String> {
        let mut slot = self.client.lock().await;
        if let Some((client, js)) = slot.as_ref() {
            if client.connection_state() != async_nats::connection::State::Disconnected {
                return Ok(js.clone());
            }
            return Err(format!(
                "lost the connection to {}; reconnecting",
                self.origin
            ));
        }
        let client = tokio::time::timeout(self.timeout, self.connect())
            .await
            .map_err(|_| {
                format!(
                    "cannot connect to {}: no answer within {:?}",
                    self.origin, self.timeout
                )
            })??;
        let js = jetstream::ContextBuilder::new()
            .timeout(self.timeout)
            .build(client.clone());
        *slot = Some((client, js.clone()));
        Ok(js)
    }

    async fn connect(&self) -> Result<async_nats::Client, String> {
        // async-nats is built with ring only, the provider the rest of Hookline uses.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let origin = self.origin.clone();
        let mut options = async_nats::ConnectOptions::new()
            .name("hookline-sink")
            .connection_timeout(self.timeout)
            .request_timeout(Some(self.timeout))
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis(100 * attempts.min(20) as u64)
            })
            .event_callback(move |event| {
                let origin = origin.clone();
                async move {
                    match event {
                        async_nats::Event::Disconnected => {
                            tracing::warn!(server = %origin, "nats sink: connection lost; reconnecting")
                        }
                        async_nats::Event::Connected => {
                            tracing::info!(server = %origin, "nats sink: connected")
                        }
                        other => tracing::info!(server = %origin, event = %other, "nats sink"),
                    }
                }
            });
        if let Some(token) = &self.token {
            options = options.token(token.expose().to_string());
        }
        if let Some((user, password)) = &self.user {
            options = options.user_and_password(user.clone(), password.expose().to_string());
        }
        if let Some(path) = &self.creds {
            options = options
                .credentials_file(path)
                .await
                .map_err(|e| format!("cannot read the NATS credentials {}: {e}", path.display()))?;
        }
        options
            .connect(self.url.as_str())
            .await
            .map_err(|e| format!("cannot connect to {}: {}", self.origin, chain(&e)))
    }
}

/// The error and its causes, deduplicated (async-nats repeats its source in `Display`).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let s = cause.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = cause.source();
    }
    text
}

#[async_trait]
impl Sink for NatsSink {
    async fn deliver(&self, event: &Event) -> Result<(), StageError> {
        let subject = self
            .subject
            .render(event)
            .map_err(|e| StageError::fatal(format!("cannot render the subject: {e}")))?;
        check_subject(&subject).map_err(StageError::fatal)?;
        let body = crate::support::encode(event, self.envelope)?;
        let id = delivery_id(event, &self.pipeline, &self.stage, &body);
        let js = self.context().await.map_err(StageError::retryable)?;
        let publish = PublishMessage::build()
            .message_id(id)
            .header("Hookline-Event-Id", event.id.as_str())
            .payload(body.into());
        let ack = match js.send_publish(subject.clone(), publish).await {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        ack.map(drop).map_err(|e| {
            let message = match e.kind() {
                PublishErrorKind::StreamNotFound => format!(
                    "no JetStream stream on {} takes subject `{subject}`; create one (the message was not stored)",
                    self.origin
                ),
                PublishErrorKind::TimedOut => format!(
                    "{} did not acknowledge the publish to `{subject}` within {:?}",
                    self.origin, self.timeout
                ),
                _ => format!("publish to `{subject}` on {} failed: {}", self.origin, chain(&e)),
            };
            if e.kind() == PublishErrorKind::MaxPayloadExceeded {
                StageError::fatal(message)
            } else {
                StageError::retryable(message)
            }
        })
    }

    async fn probe(&self) -> Result<(), String> {
        let js = self.context().await?;
        let subject = self.subject.wildcard("*")?;
        match js.stream_by_subject(subject.as_str()).await {
            Ok(_) => Ok(()),
            Err(e) => match e.kind() {
                jetstream::context::GetStreamByNameErrorKind::NotFound => Err(format!(
                    "no JetStream stream on {} takes subject `{subject}`",
                    self.origin
                )),
                _ => Err(format!(
                    "cannot look up the stream for subject `{subject}` on {}: {} (is JetStream enabled?)",
                    self.origin,
                    chain(&e)
                )),
            },
        }
    }
}

// Delivery against a real nats-server is tested end to end (tests/e2e/queues).
#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{config, ctx, spanned};

    fn build_text(text: &str) -> Result<Arc<dyn Sink>, ConfigError> {
        build(&config("nats", text), &ctx().with_dry_run(true))
    }

    #[test]
    fn builds_without_a_server() {
        build_text(
            "subject = \"leads.{{ event.type }}\"\nurl = \"nats://127.0.0.1:1\"\ntoken = \"t\"",
        )
        .expect("no connection at build");
    }

    #[test]
    fn config_errors_are_located() {
        for (text, quoted, message) in [
            (
                "subject = \"leads.{{ evnt.type }}\"",
                "\"leads.{{ evnt.type }}\"",
                "unknown variable",
            ),
            (
                "subject = \"leads.>\"",
                "\"leads.>\"",
                "not a subject to publish to",
            ),
            (
                "subject = \"a\"\nurl = \"nats://[::1\"",
                "\"nats://[::1\"",
                "invalid NATS URL",
            ),
            (
                "subject = \"a\"\ntimeout = \"0s\"",
                "\"0s\"",
                "more than zero",
            ),
            (
                "subject = \"a\"\nuser = \"u\"",
                "\"u\"",
                "needs a `password`",
            ),
            (
                "subject = \"a\"\ncreds = \"nope.creds\"",
                "\"nope.creds\"",
                "not found",
            ),
            ("subject = \"a\"\nstream = \"s\"", "stream", "unknown field"),
        ] {
            let err = build_text(text).expect_err(text);
            assert_eq!(spanned(text, &err), quoted, "{text}");
            assert!(err.message.contains(message), "{text}: {}", err.message);
        }
    }

    #[test]
    fn rendered_subjects_are_checked() {
        assert!(check_subject("leads.email.captured").is_ok());
        for bad in ["", "leads..x", "leads.a b", "leads.*", ".x"] {
            assert!(check_subject(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn messages_name_the_server_without_credentials() {
        assert_eq!(
            origin("nats://u:secret@10.0.0.1:4222/x"),
            "nats://10.0.0.1:4222"
        );
        assert_eq!(origin("127.0.0.1:4222"), "127.0.0.1:4222");
    }

    #[tokio::test]
    async fn a_closed_port_is_a_retryable_delivery_and_a_failed_probe() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let sink = build_text(&format!(
            "subject = \"leads.{{{{ event.type }}}}\"\nurl = \"nats://127.0.0.1:{port}\"\ntimeout = \"2s\""
        ))
        .expect("builds");
        let err = sink
            .deliver(&crate::testutil::event(
                "email.captured",
                crate::testutil::leadshark_v1(),
            ))
            .await
            .expect_err("nothing listens");
        assert!(err.is_retryable());
        assert!(
            err.message()
                .starts_with(&format!("cannot connect to nats://127.0.0.1:{port}")),
            "{}",
            err.message()
        );
        let probe = sink.probe().await.expect_err("nothing listens");
        assert!(probe.contains("cannot connect"), "{probe}");
    }
}
