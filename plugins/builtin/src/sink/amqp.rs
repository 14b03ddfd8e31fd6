//! `amqp` sink: publishes each event to a RabbitMQ (AMQP 0-9-1) exchange, with publisher
//! confirms.
//!
//! ```toml
//! { sink = "amqp", url = "amqp://hookline@127.0.0.1:5672/%2f", password = "file:/run/secrets/rabbit",
//!   exchange = "leads", routing_key = "lead.{{ event.type }}", timeout = "5s" }
//! ```
//!
//! `exchange` (default `""`, the default exchange, which routes to the queue named by the
//! routing key) and `routing_key` are templates over `payload`, `event` and `headers` (see
//! the `template` transform), compiled at start-up. The message is the payload's JSON
//! (`envelope = true`: the envelope's), persistent (`delivery_mode` 2), `content-type:
//! application/json`, with `message_id` = the delivery id (event id, pipeline, stage and a
//! hash of the body: the same for a redelivery, so consumers can drop the copy), `type` = the
//! event type and the header `event-id` = the event id. `amqps://` URLs use TLS (rustls, the
//! system's root certificates).
//!
//! The delivery is the broker's confirm (`confirm.select`) of a `mandatory` publish. A nack,
//! an unroutable message returned by the broker (no queue bound for the routing key), a
//! missing exchange, a timeout or a lost connection fail the delivery as retryable: an
//! operator can bind the queue, declare the exchange or start the broker. No connection is
//! made at start-up: the sink connects on its first delivery and again on the next delivery
//! after a loss. `hookline check --connect` connects, authenticates and checks (passively,
//! declaring nothing) that the exchange exists — or, on the default exchange, that the queue
//! named by a fixed routing key exists.

use std::sync::Arc;
use std::time::Duration;

use hookline_plugin_api::{
    BuildContext, ConfigError, Event, PluginConfig, Secret, Sink, StageError, async_trait,
};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::name_template::NameTemplate;
use crate::support::delivery_id;

/// Config of the `amqp` sink. The URL is a [`Secret`], as it may carry a password.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpSinkConfig {
    /// `amqp://user:password@host:port/vhost` or `amqps://...` (vhost `/` is `%2f`).
    /// Default `amqp://guest:guest@127.0.0.1:5672/%2f`.
    #[serde(default = "default_url")]
    pub url: Secret,
    /// Password, replacing the URL's; a secret (`${ENV}`, `file:PATH`, `credential:NAME`).
    /// Default: the URL's.
    pub password: Option<Secret>,
    /// Exchange template; `""` is the default exchange. Default `""`.
    #[serde(default)]
    pub exchange: String,
    /// Routing key template (`"lead.{{ event.type }}"`). Required.
    pub routing_key: String,
    /// Limit on connecting and on each publish confirm. Default `10s`.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Publish the envelope instead of the bare payload. Default `false`.
    #[serde(default)]
    pub envelope: bool,
}

fn default_url() -> Secret {
    Secret::new("amqp://guest:guest@127.0.0.1:5672/%2f")
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

pub fn build(config: &PluginConfig<'_>, ctx: &BuildContext) -> Result<Arc<dyn Sink>, ConfigError> {
    let cfg: AmqpSinkConfig = config.parse()?;
    let (mut uri, origin) = parse_url(cfg.url.expose()).map_err(|e| config.error_at("url", e))?;
    if let Some(password) = &cfg.password {
        uri.authority.userinfo.password = password.expose().to_string();
    }
    let exchange =
        NameTemplate::compile(&cfg.exchange).map_err(|e| config.error_at("exchange", e))?;
    if let Some(name) = exchange.constant() {
        check_exchange(name).map_err(|e| config.error_at("exchange", e))?;
    }
    let routing_key =
        NameTemplate::compile(&cfg.routing_key).map_err(|e| config.error_at("routing_key", e))?;
    if let Some(key) = routing_key.constant() {
        check_routing_key(key).map_err(|e| config.error_at("routing_key", e))?;
    }
    if cfg.timeout.is_zero() {
        return Err(config.error_at("timeout", "`timeout` must be more than zero"));
    }
    Ok(Arc::new(AmqpSink {
        uri,
        origin,
        exchange,
        routing_key,
        timeout: cfg.timeout,
        envelope: cfg.envelope,
        pipeline: ctx.pipeline.clone(),
        stage: ctx.stage.clone(),
        link: Mutex::new(None),
    }))
}

/// The URI, and `scheme://host:port/vhost` without user or password for messages.
fn parse_url(url: &str) -> Result<(AMQPUri, String), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("invalid AMQP URL: {e}"))?;
    if !matches!(parsed.scheme(), "amqp" | "amqps") {
        return Err("the URL must be amqp:// or amqps://".into());
    }
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("the URL needs a host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let mut uri: AMQPUri = url.parse().map_err(|e| format!("invalid AMQP URL: {e}"))?;
    // amq-protocol keeps only domain names and would put an IP address back to `localhost`.
    uri.authority.host = host;
    let scheme = match uri.scheme {
        AMQPScheme::AMQP => "amqp",
        AMQPScheme::AMQPS => "amqps",
    };
    let origin = format!(
        "{scheme}://{}:{}/{}",
        parsed.host_str().unwrap_or_default(),
        uri.authority.port,
        parsed.path().trim_start_matches('/')
    );
    Ok((uri, origin))
}

/// Exchange names: up to 255 of letters, digits, `-`, `_`, `.`, `:` (RabbitMQ's rule).
fn check_exchange(name: &str) -> Result<(), String> {
    let ok = name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if !ok {
        return Err(format!(
            "`{name}` is not an exchange name (up to 255 letters, digits, `-`, `_`, `.`, `:`)"
        ));
    }
    Ok(())
}

/// `text` as an AMQP short string: its first 255 bytes, cut at a character boundary (the
/// event type comes from the payload, of any length and in any script).
fn short(text: &str) -> ShortString {
    let cut = text.floor_char_boundary(255);
    ShortString::try_new(&text[..cut]).unwrap_or_else(|_| unreachable!("{cut} bytes at most 255"))
}

fn check_routing_key(key: &str) -> Result<(), String> {
    if key.len() > 255 {
        return Err(format!(
            "the routing key is {} bytes long; AMQP allows 255",
            key.len()
        ));
    }
    Ok(())
}

/// Runtime form of the `amqp` sink.
pub struct AmqpSink {
    uri: AMQPUri,
    origin: String,
    exchange: NameTemplate,
    routing_key: NameTemplate,
    timeout: Duration,
    envelope: bool,
    pipeline: String,
    stage: String,
    /// The connection and a confirm-mode channel, made on the first delivery and again after
    /// either is lost (a channel closes on a 404, a connection on a network error).
    link: Mutex<Option<(Connection, Channel)>>,
}

impl std::fmt::Debug for AmqpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpSink")
            .field("origin", &self.origin)
            .field("exchange", &self.exchange)
            .field("routing_key", &self.routing_key)
            .field("timeout", &self.timeout)
            .field("envelope", &self.envelope)
            .finish_non_exhaustive()
    }
}

impl AmqpSink {
    /// A confirm-mode channel, connecting first when there is no live connection.
    async fn channel(&self) -> Result<Channel, String> {
        let mut link = self.link.lock().await;
        if let Some((conn, channel)) = link.as_ref() {
            if conn.status().connected() && channel.status().connected() {
                return Ok(channel.clone());
            }
            if conn.status().connected() {
                let channel = self.open_channel(conn).await?;
                let conn = link.take().map(|(c, _)| c);
                *link = conn.map(|c| (c, channel.clone()));
                return Ok(channel);
            }
        }
        *link = None;
        let conn = self.connect().await?;
        let channel = self.open_channel(&conn).await?;
        *link = Some((conn, channel.clone()));
        Ok(channel)
    }

    async fn connect(&self) -> Result<Connection, String> {
        // rustls (for amqps://) uses ring, the provider the rest of Hookline uses.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let properties = ConnectionProperties::default()
            .with_connection_name(LongString::from(format!("hookline {}", self.pipeline)));
        match tokio::time::timeout(
            self.timeout,
            Connection::connect_uri(self.uri.clone(), properties),
        )
        .await
        {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(format!(
                "cannot connect to {}: {}",
                self.origin,
                describe(&e)
            )),
            Err(_) => Err(format!(
                "cannot connect to {}: no answer within {:?}",
                self.origin, self.timeout
            )),
        }
    }

    async fn open_channel(&self, conn: &Connection) -> Result<Channel, String> {
        let open = async {
            let channel = conn.create_channel().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            Ok::<_, lapin::Error>(channel)
        };
        match tokio::time::timeout(self.timeout, open).await {
            Ok(Ok(channel)) => Ok(channel),
            Ok(Err(e)) => Err(format!(
                "cannot open a channel on {}: {}",
                self.origin,
                describe(&e)
            )),
            Err(_) => Err(format!(
                "cannot open a channel on {}: no answer within {:?}",
                self.origin, self.timeout
            )),
        }
    }

    async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), String> {
        let channel = self.channel().await?;
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let confirm = async {
            channel
                .basic_publish(
                    ShortString::from(exchange),
                    ShortString::from(routing_key),
                    options,
                    body,
                    properties,
                )
                .await?
                .await
        };
        let to = match exchange {
            "" => "the default exchange".to_string(),
            name => format!("exchange `{name}`"),
        };
        let result = match tokio::time::timeout(self.timeout, confirm).await {
            Ok(Ok(Confirmation::Ack(None))) => return Ok(()),
            Ok(Ok(Confirmation::Ack(Some(returned)))) => Err(format!(
                "{} returned the message as unroutable ({} {}): no queue is bound to {to} for routing key `{routing_key}`",
                self.origin, returned.reply_code, returned.reply_text
            )),
            Ok(Ok(Confirmation::Nack(_))) => Err(format!(
                "{} refused the message (nack) on {to}",
                self.origin
            )),
            Ok(Ok(Confirmation::NotRequested)) => Err(format!(
                "{} did not confirm the message: the channel is not in confirm mode",
                self.origin
            )),
            Ok(Err(e)) if not_found(&e) => Err(format!("{to} not found (404) on {}", self.origin)),
            Ok(Err(e)) => Err(format!(
                "publish to {to} on {} failed: {}",
                self.origin,
                describe(&e)
            )),
            Err(_) => Err(format!(
                "{} did not confirm the publish to {to} within {:?}",
                self.origin, self.timeout
            )),
        };
        // A 404 closes the channel, a timeout leaves it in doubt, an I/O error means the
        // connection is gone: start afresh on the next delivery. A returned or nacked
        // message leaves the channel usable.
        if result
            .as_ref()
            .is_err_and(|e| !e.contains("unroutable") && !e.contains("(nack)"))
        {
            self.drop_link().await;
        }
        result
    }

    /// Forget the connection after a failure, closing it if it is still open.
    async fn drop_link(&self) {
        if let Some((conn, _)) = self.link.lock().await.take()
            && conn.status().connected()
        {
            let timeout = self.timeout;
            tokio::spawn(async move {
                let _ = tokio::time::timeout(timeout, conn.close(200, "reconnecting".into())).await;
            });
        }
    }
}

fn not_found(e: &lapin::Error) -> bool {
    matches!(e.kind(), lapin::ErrorKind::ProtocolError(p)
        if *p.kind() == AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND))
}

/// The error without its `Debug` noise; a broker's error as `code TEXT`.
fn describe(e: &lapin::Error) -> String {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(p) => format!("{} {}", p.get_id(), p.get_message()),
        lapin::ErrorKind::IOError(io) => io.to_string(),
        _ => e.to_string(),
    }
}

#[async_trait]
impl Sink for AmqpSink {
    async fn deliver(&self, event: &Event) -> Result<(), StageError> {
        let exchange = self
            .exchange
            .render(event)
            .map_err(|e| StageError::fatal(format!("cannot render the exchange: {e}")))?;
        check_exchange(&exchange).map_err(StageError::fatal)?;
        let routing_key = self
            .routing_key
            .render(event)
            .map_err(|e| StageError::fatal(format!("cannot render the routing key: {e}")))?;
        check_routing_key(&routing_key).map_err(StageError::fatal)?;
        let body = crate::support::encode(event, self.envelope)?;
        let mut headers = FieldTable::default();
        headers.insert(
            "event-id".into(),
            AMQPValue::LongString(LongString::from(event.id.as_str())),
        );
        let message_id = delivery_id(event, &self.pipeline, &self.stage, &body);
        let message_id = ShortString::try_new(message_id).map_err(|_| {
            StageError::fatal(
                "the message id (event id, pipeline and stage names) is longer than AMQP's 255 bytes: shorten the pipeline or stage name",
            )
        })?;
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_message_id(message_id)
            .with_type(short(&event.event_type))
            .with_app_id("hookline".into())
            .with_headers(headers);
        self.publish(&exchange, &routing_key, &body, properties)
            .await
            .map_err(StageError::retryable)
    }

    async fn probe(&self) -> Result<(), String> {
        let conn = self.connect().await?;
        let channel = self.open_channel(&conn).await?;
        let check = match (self.exchange.constant(), self.routing_key.constant()) {
            (Some(""), Some(queue)) if !queue.is_empty() => {
                let options = QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                };
                channel
                    .queue_declare(queue.into(), options, FieldTable::default())
                    .await
                    .map(drop)
                    .map_err(|e| {
                        if not_found(&e) {
                            format!("queue `{queue}` not found (404) on {}", self.origin)
                        } else {
                            format!("cannot check queue `{queue}`: {}", describe(&e))
                        }
                    })
            }
            (Some(name), _) if !name.is_empty() => {
                let options = ExchangeDeclareOptions {
                    passive: true,
                    ..ExchangeDeclareOptions::default()
                };
                channel
                    .exchange_declare(
                        name.into(),
                        lapin::ExchangeKind::Direct,
                        options,
                        FieldTable::default(),
                    )
                    .await
                    .map_err(|e| {
                        if not_found(&e) {
                            format!("exchange `{name}` not found (404) on {}", self.origin)
                        } else {
                            format!("cannot check exchange `{name}`: {}", describe(&e))
                        }
                    })
            }
            // Templated names: reaching the broker is all that can be checked.
            _ => Ok(()),
        };
        let _ = conn.close(200, "probe done".into()).await;
        check
    }
}

// Delivery against a real RabbitMQ is tested end to end (tests/e2e/queues).
#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{config, ctx, event, leadshark_v1, spanned};

    fn build_text(text: &str) -> Result<Arc<dyn Sink>, ConfigError> {
        build(&config("amqp", text), &ctx().with_dry_run(true))
    }

    /// The event type comes from the payload: 200 `é` are 400 bytes, which
    /// `ShortString::from` refused with a panic that killed the run.
    #[test]
    fn a_long_event_type_in_any_script_is_cut_at_a_character_boundary() {
        let long = "é".repeat(200);
        let cut = short(&long);
        assert_eq!(cut.as_str(), "é".repeat(127));
        assert_eq!(short("lead.created").as_str(), "lead.created");
        assert_eq!(short(&"a".repeat(300)).as_str().len(), 255);
    }

    #[test]
    fn config_errors_are_located() {
        for (text, quoted, message) in [
            (
                "routing_key = \"{{ evnt.type }}\"",
                "\"{{ evnt.type }}\"",
                "unknown variable",
            ),
            (
                "routing_key = \"k\"\nexchange = \"a b\"",
                "\"a b\"",
                "not an exchange name",
            ),
            (
                "routing_key = \"k\"\nurl = \"http://x\"",
                "\"http://x\"",
                "amqp:// or amqps://",
            ),
            (
                "routing_key = \"k\"\ntimeout = \"0s\"",
                "\"0s\"",
                "more than zero",
            ),
            (
                "routing_key = \"k\"\nqueue = \"q\"",
                "queue",
                "unknown field",
            ),
        ] {
            let err = build_text(text).expect_err(text);
            assert_eq!(spanned(text, &err), quoted, "{text}");
            assert!(err.message.contains(message), "{text}: {}", err.message);
        }
    }

    #[test]
    fn the_url_keeps_ip_hosts_and_messages_hide_the_password() {
        let (uri, origin) = parse_url("amqp://u:s3cret@127.0.0.1:5673/%2f").expect("parses");
        assert_eq!(uri.authority.host, "127.0.0.1");
        assert_eq!(uri.authority.port, 5673);
        assert_eq!(uri.authority.userinfo.password, "s3cret");
        assert_eq!(origin, "amqp://127.0.0.1:5673/%2f");
    }

    #[tokio::test]
    async fn a_closed_port_is_a_retryable_delivery_and_a_failed_probe() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let sink = build_text(&format!(
            "routing_key = \"lead.{{{{ event.type }}}}\"\nurl = \"amqp://u:p@127.0.0.1:{port}/%2f\"\ntimeout = \"2s\""
        ))
        .expect("builds without connecting");
        let err = sink
            .deliver(&event("email.captured", leadshark_v1()))
            .await
            .expect_err("nothing listens");
        assert!(err.is_retryable());
        assert!(
            err.message()
                .starts_with(&format!("cannot connect to amqp://127.0.0.1:{port}/%2f: ")),
            "{}",
            err.message()
        );
        let probe = sink.probe().await.expect_err("nothing listens");
        assert!(probe.contains("cannot connect"), "{probe}");
    }
}
