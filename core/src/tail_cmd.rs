//! `hookline tail`: follow a running service's live tail (`GET /api/v1/tail` on its admin
//! listener, with the admin token from the config): each event as it is accepted and each
//! stage's outcome as it happens; when the service ends the tail (a restart), it follows
//! the next process on the same address.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde_json::Value;

use crate::config::AdminConfig;

#[derive(Debug, Args)]
pub struct TailArgs {
    /// Config whose `[admin]` names the service's admin listener and token.
    #[arg(long, short, default_value = "pipeline.toml", env = "HOOKLINE_CONFIG")]
    pub(crate) config: PathBuf,
    /// The admin listener's URL, instead of the config's `[admin] listen`.
    #[arg(long)]
    pub(crate) admin: Option<String>,
    /// Only events of this source.
    #[arg(long)]
    pub(crate) source: Option<String>,
    /// Only this pipeline's stage outcomes.
    #[arg(long)]
    pub(crate) pipeline: Option<String>,
    /// Only this stage's outcomes (by name).
    #[arg(long)]
    pub(crate) stage: Option<String>,
    /// One JSON object per line, as the API sends them.
    #[arg(long)]
    pub(crate) json: bool,
}

pub async fn run(args: TailArgs) -> anyhow::Result<()> {
    let (admin, _) = crate::dlq::section::<AdminConfig>(&args.config, "admin")?;
    let base = match &args.admin {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => format!("http://{}", admin.listen),
    };
    let mut url = reqwest::Url::parse(&format!("{base}/api/v1/tail"))
        .with_context(|| format!("`{base}` is not a URL"))?;
    for (key, value) in [
        ("source", &args.source),
        ("pipeline", &args.pipeline),
        ("stage", &args.stage),
    ] {
        if let Some(v) = value {
            url.query_pairs_mut().append_pair(key, v);
        }
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .build()?;
    let token = admin.token.as_ref().map(|t| t.expose().to_string());
    let connect = || follow(&client, &url, token.as_deref(), &base, args.json);
    // The first connection must succeed (a wrong address or token is an error at once);
    // after that, a tail that ends (the service restarting) is followed again.
    let mut ended = match connect().await {
        Ok(ended) => ended,
        Err(Failed::Fatal(e) | Failed::Unreachable(e)) => return Err(e),
    };
    loop {
        eprintln!("{ended}; reconnecting (Ctrl-C to stop)");
        let mut backoff = RECONNECT_MIN;
        ended = loop {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(RECONNECT_MAX);
            match connect().await {
                Ok(ended) => break ended,
                Err(Failed::Fatal(e)) => return Err(e),
                Err(Failed::Unreachable(_)) => {}
            }
        };
    }
}

/// Waits between reconnection attempts, doubling from the first to the last.
const RECONNECT_MIN: std::time::Duration = std::time::Duration::from_millis(500);
const RECONNECT_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// Following the tail did not get going.
enum Failed {
    /// The service refused (a rotated token, a removed route), or stdout closed: no retry.
    Fatal(anyhow::Error),
    /// Not reachable, or not serving tails now (`503`): worth another try.
    Unreachable(anyhow::Error),
}

/// Stdout closed (`hookline tail | head`): the reader is gone.
impl From<std::io::Error> for Failed {
    fn from(e: std::io::Error) -> Self {
        Failed::Fatal(e.into())
    }
}

/// Connect and print entries until the tail ends: how it ended, for the person watching.
async fn follow(
    client: &reqwest::Client,
    url: &reqwest::Url,
    token: Option<&str>,
    base: &str,
    json: bool,
) -> Result<&'static str, Failed> {
    let mut request = client.get(url.clone());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let mut response = request.send().await.map_err(|e| {
        Failed::Unreachable(anyhow::Error::new(e).context(format!(
            "cannot reach {base} (is `hookline serve` running?)"
        )))
    })?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        let e = anyhow::anyhow!("{url}: {status}: {}", body.trim());
        // Too many tails open, or the service not ready: another try may succeed.
        return Err(if status.is_server_error() {
            Failed::Unreachable(e)
        } else {
            Failed::Fatal(e)
        });
    }
    eprintln!("following {base} (Ctrl-C to stop)");
    // Server-sent events: `data: <json>` lines, entries separated by a blank line.
    let mut pending = Vec::new();
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return Ok("the service closed the tail"),
            Err(_) => return Ok("the tail was cut off"),
        };
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let Some(data) = line.trim_end().strip_prefix("data:") else {
                continue;
            };
            let data = data.trim_start();
            if json {
                outln!("{data}");
            } else if let Ok(v) = serde_json::from_str::<Value>(data) {
                outln!("{}", describe(&v));
            }
        }
    }
}

/// One line for a person: `14:02:07.412  accepted  leadshark email.captured  0193…  → 2 pipelines`.
fn describe(v: &Value) -> String {
    let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
    let at = v["at"]
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| t.strftime("%H:%M:%S%.3f").to_string())
        .unwrap_or_default();
    match v["kind"].as_str() {
        Some("accepted") => format!(
            "{at}  accepted  {} {}  {}  → {} pipeline(s)",
            s("source"),
            s("type"),
            s("event_id"),
            v["routed"]
        ),
        Some("stage") => format!(
            "{at}  {:<8}  {}/{}:{}  {}  {:.1} ms{}",
            s("outcome"),
            s("pipeline"),
            v["stage"],
            s("stage_name"),
            s("event_id"),
            v["duration_us"].as_f64().unwrap_or(0.0) / 1000.0,
            v["error"]
                .as_str()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ),
        Some("lagged") => format!(
            "… {} entries skipped: this terminal read slower than events happened",
            v["skipped"]
        ),
        _ => v.to_string(),
    }
}
