//! `hookline send`: sign and send LeadShark sample events the way LeadShark does (JSON body,
//! `X-Webhook-Signature` = hex HMAC-SHA256 of the body, `X-Webhook-Event`). Each body is made
//! unique so deduplication does not hide requests. It doubles as the load generator for
//! benchmarks: a fixed number of requests or a fixed duration, at a fixed concurrency.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use hookline_plugin_api::leadshark::samples;

use crate::verify::leadshark::sign;

#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// Endpoint, e.g. http://127.0.0.1:8080/webhooks/leadshark
    #[arg(long)]
    pub url: String,
    /// Signing secret.
    #[arg(long, env = "LEADSHARK_SECRET", hide_env_values = true)]
    pub secret: String,
    /// Event type to send; repeat for several. Default: every sample type in turn.
    #[arg(long = "event")]
    pub events: Vec<String>,
    /// Number of requests (ignored with --duration).
    #[arg(long, default_value_t = 1)]
    pub count: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Send for this long instead of --count requests (e.g. `10s`).
    #[arg(long)]
    pub duration: Option<humantime::Duration>,
    /// Pretty-print bodies (signature still over the compact form, as LeadShark's docs do):
    /// exercises the receiver's re-serialisation fallback.
    #[arg(long)]
    pub pretty: bool,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Default)]
struct Tally {
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<String, u64>,
    latency: Option<Histogram<u64>>,
}

pub async fn run(args: SendArgs) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let events: Vec<String> = if args.events.is_empty() {
        samples::EVENT_TYPES.iter().map(|s| s.to_string()).collect()
    } else {
        args.events.clone()
    };
    for e in &events {
        if samples::sample(e, 0).is_none() {
            bail!(
                "no sample for event `{e}`; samples exist for: {}",
                samples::EVENT_TYPES.join(", ")
            );
        }
    }
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let url: reqwest::Url = args
        .url
        .parse()
        .with_context(|| format!("bad --url `{}`", args.url))?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .timeout(Duration::from_secs(30))
        .http1_only()
        .build()?;

    let deadline = args.duration.map(|d| Instant::now() + Duration::from(d));
    let total = if deadline.is_some() {
        u64::MAX
    } else {
        args.count
    };
    let progress = progress_bar(&args);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let shared = Arc::new((client, url, args.secret.clone(), events, args.pretty));
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (next, shared, progress) = (next.clone(), shared.clone(), progress.clone());
        tasks.push(tokio::spawn(async move {
            let (client, url, secret, events, pretty) = &*shared;
            let mut tally = Tally {
                latency: Histogram::new_with_bounds(1, 60_000_000, 3).ok(),
                ..Tally::default()
            };
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total || deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let event = &events[(i % events.len() as u64) as usize];
                let (body, signature) = signed_body(event, i, secret, *pretty);
                let t0 = Instant::now();
                let result = client
                    .post(url.clone())
                    .header("content-type", "application/json")
                    .header("x-webhook-event", event.as_str())
                    .header("x-webhook-signature", signature)
                    .body(body)
                    .send()
                    .await;
                match result {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let _ = resp.bytes().await;
                        *tally.statuses.entry(status).or_default() += 1;
                    }
                    Err(e) => *tally.errors.entry(error_kind(&e)).or_default() += 1,
                }
                if let Some(h) = tally.latency.as_mut() {
                    let _ = h.record(t0.elapsed().as_micros().max(1) as u64);
                }
                if let Some(p) = &progress {
                    p.inc(1);
                }
            }
            tally
        }));
    }
    let mut all = Tally {
        latency: Histogram::new_with_bounds(1, 60_000_000, 3).ok(),
        ..Tally::default()
    };
    for t in tasks {
        let t = t.await?;
        for (k, v) in t.statuses {
            *all.statuses.entry(k).or_default() += v;
        }
        for (k, v) in t.errors {
            *all.errors.entry(k).or_default() += v;
        }
        if let (Some(a), Some(b)) = (all.latency.as_mut(), t.latency.as_ref()) {
            let _ = a.add(b);
        }
    }
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    let elapsed = started.elapsed();
    report(&all, elapsed, args.json);
    let failed: u64 = all.errors.values().sum::<u64>()
        + all
            .statuses
            .iter()
            .filter(|(s, _)| !(200..300).contains(*s))
            .map(|(_, n)| n)
            .sum::<u64>();
    if failed > 0 {
        bail!("{failed} request(s) did not get a 2xx");
    }
    Ok(())
}

/// A unique sample body for request `i`, and its signature as LeadShark computes it
/// (over the compact JSON, which is also the body unless `pretty`).
pub fn signed_body(event: &str, i: u64, secret: &str, pretty: bool) -> (Vec<u8>, String) {
    let payload =
        samples::sample(event, i).unwrap_or_else(|| serde_json::json!({ "event": event }));
    let compact = serde_json::to_vec(&payload).unwrap_or_default();
    let signature = sign(secret, &compact);
    let body = if pretty {
        serde_json::to_vec_pretty(&payload).unwrap_or(compact)
    } else {
        compact
    };
    (body, signature)
}

fn error_kind(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect".into()
    } else {
        "other".into()
    }
}

fn progress_bar(args: &SendArgs) -> Option<indicatif::ProgressBar> {
    if args.json {
        return None;
    }
    if let Some(d) = args.duration {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_message(format!("sending for {d}"));
        bar.enable_steady_tick(Duration::from_millis(200));
        Some(bar)
    } else if args.count >= 100 {
        let bar = indicatif::ProgressBar::new(args.count);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta}")
        {
            bar.set_style(style);
        }
        Some(bar)
    } else {
        None
    }
}

fn report(t: &Tally, elapsed: Duration, json: bool) {
    let sent: u64 = t.statuses.values().sum::<u64>() + t.errors.values().sum::<u64>();
    let rate = sent as f64 / elapsed.as_secs_f64().max(1e-9);
    let pct = |q: f64| {
        t.latency
            .as_ref()
            .map(|h| h.value_at_quantile(q) as f64 / 1000.0)
            .unwrap_or(0.0)
    };
    if json {
        let summary = serde_json::json!({
            "sent": sent,
            "seconds": elapsed.as_secs_f64(),
            "req_per_s": rate,
            "statuses": t.statuses,
            "errors": t.errors,
            "p50_ms": pct(0.5),
            "p99_ms": pct(0.99),
            "max_ms": t.latency.as_ref().map(|h| h.max() as f64 / 1000.0).unwrap_or(0.0),
        });
        println!("{summary}");
        return;
    }
    println!(
        "sent {sent} in {:.2}s ({rate:.1} req/s)",
        elapsed.as_secs_f64()
    );
    for (status, n) in &t.statuses {
        println!("  {status}: {n}");
    }
    for (kind, n) in &t.errors {
        println!("  error ({kind}): {n}");
    }
    println!("latency p50 {:.2}ms  p99 {:.2}ms", pct(0.5), pct(0.99));
}
