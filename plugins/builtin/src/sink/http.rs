//! `http` sink: sends each event as JSON to a URL, optionally signed the Standard Webhooks way
//! (symmetric `v1`, asymmetric `v1a`, or both).
//!
//! ```toml
//! { sink = "http", url = "https://crm.internal/leads", timeout = "5s",
//!   headers = { authorization = "Bearer ${CRM_TOKEN}" },
//!   signing = { secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" } }
//! ```
//!
//! The body is the payload's JSON (`envelope = true`: the envelope's) with `content-type:
//! application/json` and `user-agent: hookline/<version>`. With `signing`, the request also
//! carries `webhook-id` (the event id), `webhook-timestamp` (unix seconds) and
//! `webhook-signature` = `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")), the key
//! being the secret's base64 after `whsec_` — what Standard Webhooks receivers verify.
//! With `signing = { private_key = "whsk_…" }` (an Ed25519 key: the base64 of its 32-byte
//! seed, or of the 64-byte seed and public key), the signature is `v1a,` + base64(Ed25519
//! signature of the same "{id}.{timestamp}.{body}"), which receivers verify with the
//! `whpk_…` public key. With both, the header carries both entries, space-separated.
//!
//! Outcomes: 2xx delivers; a connection error, a timeout, 408, 429 or 5xx is retryable (with
//! the peer's `Retry-After`, in seconds or as an HTTP date); any other status — redirects
//! are not followed — is fatal. Error messages give the status and the start of the response
//! body, never the URL's path or query (a Slack webhook URL is itself a credential) nor
//! header values. One client per sink, so connections are pooled.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signer as _, SigningKey};
use hmac::{Hmac, KeyInit, Mac};
use hookline_plugin_api::{
    BuildContext, ConfigError, Event, PluginConfig, Secret, Sink, StageError, async_trait,
};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use sha2::Sha256;

use crate::support::truncate;

const USER_AGENT: &str = concat!("hookline/", env!("CARGO_PKG_VERSION"));
/// Headers the client computes or that would change how the request is framed.
const RESERVED: [&str; 4] = ["content-length", "host", "transfer-encoding", "connection"];
const SIGNING_HEADERS: [&str; 3] = ["webhook-id", "webhook-timestamp", "webhook-signature"];

/// Config of the `http` sink. The URL and header values are [`Secret`]s: webhook URLs and
/// `authorization` headers are credentials, so the config's `Debug` hides them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkConfig {
    /// `http://` or `https://` URL to send to. Required.
    pub url: Secret,
    /// `POST` (default), `PUT` or `PATCH`.
    #[serde(default = "default_method")]
    pub method: String,
    /// Extra request headers, name to value. Default none.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Limit on the whole request, connecting and reading the response included. Default `10s`.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Send the envelope instead of the bare payload. Default `false`.
    #[serde(default)]
    pub envelope: bool,
    /// Sign requests the Standard Webhooks way. Default: unsigned.
    pub signing: Option<SigningConfig>,
}

/// `signing = { secret = "whsec_…" }`, `{ private_key = "whsk_…" }`, or both.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningConfig {
    /// `whsec_` followed by the base64 key (the prefix is optional): `v1` signatures.
    pub secret: Option<Secret>,
    /// `whsk_` followed by the base64 Ed25519 private key (the prefix is optional): `v1a`.
    pub private_key: Option<Secret>,
}

fn default_method() -> String {
    "POST".into()
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

pub fn build(config: &PluginConfig<'_>, _ctx: &BuildContext) -> Result<Arc<dyn Sink>, ConfigError> {
    let cfg: HttpSinkConfig = config.parse()?;
    let url = Url::parse(cfg.url.expose())
        .map_err(|e| config.error_at("url", format!("invalid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(config.error_at("url", "the URL must be http:// or https:// with a host"));
    }
    let method = match cfg.method.to_ascii_uppercase().as_str() {
        "POST" => Method::POST,
        "PUT" => Method::PUT,
        "PATCH" => Method::PATCH,
        _ => return Err(config.error_at("method", "`method` must be POST, PUT or PATCH")),
    };
    if cfg.timeout.is_zero() {
        return Err(config.error_at("timeout", "`timeout` must be more than zero"));
    }
    let signer = match &cfg.signing {
        Some(s) => Some(Signer::new(s).map_err(|e| config.error_at("signing", e))?),
        None => None,
    };
    let headers =
        headers(&cfg.headers, signer.is_some()).map_err(|e| config.error_at("headers", e))?;

    // reqwest is built without a default crypto provider; installing ring twice is a no-op.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(cfg.timeout)
        .user_agent(USER_AGENT)
        .build()
        .map_err(|e| config.error_at("url", format!("cannot build the HTTP client: {e}")))?;
    // Everything configured that is secret, as it could come back in a peer's error body.
    let mut secrets: Vec<String> = cfg
        .headers
        .values()
        .flat_map(|v| {
            let v = v.expose();
            std::iter::once(v.to_string()).chain(v.split_whitespace().map(str::to_string))
        })
        .chain(url.query_pairs().map(|(_, v)| v.into_owned()))
        .chain(url.password().map(str::to_string))
        .chain(cfg.signing.iter().flat_map(|s| {
            [&s.secret, &s.private_key]
                .into_iter()
                .flatten()
                .map(|k| k.expose().to_string())
        }))
        .filter(|s| s.len() >= 6)
        .collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    Ok(Arc::new(HttpSink {
        secrets,
        origin: url.origin().ascii_serialization(),
        client,
        method,
        url,
        headers,
        timeout: cfg.timeout,
        envelope: cfg.envelope,
        signer,
    }))
}

fn headers(configured: &BTreeMap<String, Secret>, signing: bool) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, value) in configured {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid header name `{name}`"))?;
        if RESERVED.contains(&header.as_str())
            || (signing && SIGNING_HEADERS.contains(&header.as_str()))
        {
            return Err(format!(
                "header `{name}` is set by Hookline and cannot be configured"
            ));
        }
        let mut value = HeaderValue::from_str(value.expose())
            .map_err(|_| format!("invalid value for header `{name}`"))?;
        value.set_sensitive(true);
        map.insert(header, value);
    }
    Ok(map)
}

/// Standard Webhooks signing keys, decoded and keyed once.
#[derive(Clone)]
struct Signer {
    mac: Option<Hmac<Sha256>>,
    ed25519: Option<SigningKey>,
}

impl Signer {
    fn new(config: &SigningConfig) -> Result<Self, String> {
        if config.secret.is_none() && config.private_key.is_none() {
            return Err(
                "`signing` needs `secret` (whsec_…, `v1`) or `private_key` (whsk_…, `v1a`)".into(),
            );
        }
        let mac = match &config.secret {
            Some(secret) => {
                let encoded = secret.expose();
                let encoded = encoded.strip_prefix("whsec_").unwrap_or(encoded);
                let key = BASE64.decode(encoded).map_err(|_| {
                    "`signing.secret` must be `whsec_` followed by base64".to_string()
                })?;
                if key.is_empty() {
                    return Err("`signing.secret` is empty".into());
                }
                Some(
                    Hmac::<Sha256>::new_from_slice(&key)
                        .map_err(|_| "unusable signing key".to_string())?,
                )
            }
            None => None,
        };
        let ed25519 = match &config.private_key {
            Some(key) => Some(private_key(key.expose())?),
            None => None,
        };
        Ok(Signer { mac, ed25519 })
    }

    /// The `webhook-signature` value: `v1,<base64 HMAC-SHA256>` and/or `v1a,<base64
    /// Ed25519>`, each over `"{id}.{timestamp}.{body}"`, space-separated.
    fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let head = format!("{id}.{timestamp}.");
        let mut entries = Vec::with_capacity(2);
        if let Some(mac) = &self.mac {
            let mut mac = mac.clone();
            mac.update(head.as_bytes());
            mac.update(body);
            entries.push(format!("v1,{}", BASE64.encode(mac.finalize().into_bytes())));
        }
        if let Some(key) = &self.ed25519 {
            let signature = key.sign(&[head.as_bytes(), body].concat());
            entries.push(format!("v1a,{}", BASE64.encode(signature.to_bytes())));
        }
        entries.join(" ")
    }
}

/// An Ed25519 private key: `whsk_` (optional) and the base64 of the 32-byte seed, or of the
/// 64-byte seed and public key (libsodium's form, whose public half must match).
fn private_key(text: &str) -> Result<SigningKey, String> {
    let bad = || {
        "`signing.private_key` must be `whsk_` followed by the base64 of a 32-byte Ed25519 seed (or of 64 bytes: seed and public key)".to_string()
    };
    let encoded = text.strip_prefix("whsk_").unwrap_or(text);
    let bytes = BASE64.decode(encoded).map_err(|_| bad())?;
    match bytes.len() {
        32 => {
            let seed: [u8; 32] = bytes.as_slice().try_into().map_err(|_| bad())?;
            Ok(SigningKey::from_bytes(&seed))
        }
        64 => {
            let pair: [u8; 64] = bytes.as_slice().try_into().map_err(|_| bad())?;
            SigningKey::from_keypair_bytes(&pair).map_err(|_| {
                "`signing.private_key`: its public half does not belong to its seed".to_string()
            })
        }
        _ => Err(bad()),
    }
}

/// Runtime form of the `http` sink.
pub struct HttpSink {
    /// Configured secret values, longest first: redacted from every error message.
    secrets: Vec<String>,
    /// `scheme://host:port` only, for messages.
    origin: String,
    client: reqwest::Client,
    method: Method,
    url: Url,
    headers: HeaderMap,
    timeout: Duration,
    envelope: bool,
    signer: Option<Signer>,
}

impl std::fmt::Debug for HttpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSink")
            .field("origin", &self.origin)
            .field("method", &self.method)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .field("envelope", &self.envelope)
            .field("signed", &self.signer.is_some())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Sink for HttpSink {
    async fn deliver(&self, event: &Event) -> Result<(), StageError> {
        let body = crate::support::encode(event, self.envelope)?;
        let mut request = self
            .client
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.clone());
        if let Some(signer) = &self.signer {
            let timestamp = jiff::Timestamp::now().as_second();
            request = request
                .header("webhook-id", &event.id)
                .header("webhook-timestamp", timestamp)
                .header(
                    "webhook-signature",
                    signer.sign(&event.id, timestamp, &body),
                );
        }
        let response = match request.body(body).send().await {
            Ok(response) => response,
            Err(e) => return Err(self.send_error(e)),
        };
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| retry_after(v, jiff::Timestamp::now()));
        let message = self.redact(format!(
            "{} answered {status}{}",
            self.origin,
            body_start(response).await
        ));
        if matches!(
            status,
            StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS
        ) || status.is_server_error()
        {
            Err(StageError::Retryable {
                message,
                retry_after,
            })
        } else {
            Err(StageError::fatal(message))
        }
    }
}

impl HttpSink {
    fn send_error(&self, e: reqwest::Error) -> StageError {
        if e.is_builder() {
            return StageError::fatal(format!(
                "cannot build the request to {}: {}",
                self.origin,
                chain(e)
            ));
        }
        if e.is_timeout() {
            return StageError::retryable(format!(
                "{} did not answer within {:?}",
                self.origin, self.timeout
            ));
        }
        StageError::retryable(self.redact(format!("cannot reach {}: {}", self.origin, chain(e))))
    }

    /// `text` with every configured secret (header values and their words, URL query
    /// values, the URL's password, the signing key) replaced by `***`: a peer may echo them.
    fn redact(&self, mut text: String) -> String {
        for s in &self.secrets {
            if text.contains(s.as_str()) {
                text = text.replace(s.as_str(), "***");
            }
        }
        text
    }
}

/// The error and its causes, without the URL (which may carry a token).
fn chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `: <first ~200 bytes of the body>`, or nothing; reads no more than that.
async fn body_start(mut response: reqwest::Response) -> String {
    const LIMIT: usize = 200;
    let mut buf = Vec::new();
    while buf.len() < LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&buf[..buf.len().min(LIMIT)])
        .trim()
        .to_string();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {}", truncate(&text, LIMIT))
    }
}

/// `Retry-After` as delta seconds or an HTTP date (a date in the past means now).
fn retry_after(value: &HeaderValue, now: jiff::Timestamp) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(text)
        .ok()?;
    Some(Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO))
}

// The tests run real servers and outgrow this file: they live in `http/tests.rs`.
#[cfg(test)]
mod tests;
