//! `hookline send`: sign and send LeadShark events the way LeadShark does (JSON body,
//! `X-Webhook-Signature` = hex HMAC-SHA256 of the body, `X-Webhook-Event`): its sample
//! payloads, or a payload of your own (`--data`, `--set`). It doubles as the load generator
//! for benchmarks: a fixed number of requests or a fixed duration, at a fixed concurrency.
//!
//! Hookline drops a body it has already received (deduplication), so by default every body
//! is new: samples are personalised by the request's number, and the top-level `timestamp`
//! is set to the time of the run plus one microsecond per request. `--repeat-bodies` sends
//! exactly the same bodies on every run, to watch deduplication at work. The summary counts
//! duplicates apart from new events, and shows the response body of every non-2xx kind.
//!
//! `--scheme` signs as another provider's sender does (GitHub, Stripe, Standard Webhooks,
//! Slack, Shopify, Twilio, generic HMAC), through the scheme's own verifier
//! ([`crate::verify::Verifier::sign`]): the same payloads, the event type put where the
//! scheme reads it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use hookline_leadshark::samples;
use serde_json::Value;
use sha2::Digest as _;

use hookline_leadshark::sign;

use crate::verify::sign::{Header, Signing};
use crate::verify::{Verifier, VerifyConfig};

#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// Endpoint, e.g. http://127.0.0.1:8080/webhooks/leadshark
    #[arg(long)]
    pub(crate) url: String,
    /// Signing secret.
    #[arg(long, env = "LEADSHARK_SECRET", hide_env_values = true)]
    pub(crate) secret: String,
    /// Sign as this scheme's sender does: `leadshark`, `github`, `stripe`,
    /// `standard-webhooks` (secret `whsec_<base64>`), `slack`, `shopify`, `twilio` (a JSON
    /// body, `bodySHA256` added to the URL, which is signed), or `hmac` (hex
    /// HMAC-SHA256 of the body in `X-Signature`, event type in the payload's `event`).
    #[arg(long, default_value = "leadshark")]
    pub(crate) scheme: String,
    /// Event type to send; repeat for several. Default: every sample type in turn (with
    /// `--data`: the payload's `event` field).
    #[arg(long = "event")]
    pub(crate) events: Vec<String>,
    /// Send this JSON payload (a file, or `-` for stdin) instead of the samples.
    #[arg(long, value_name = "FILE")]
    pub(crate) data: Option<PathBuf>,
    /// Set a field of every payload: `--set data.lead.email=me@example.com`. The value is
    /// JSON when it parses as JSON (`5`, `true`, `null`, `{"a":1}`, `"quoted"`), else text.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub(crate) set: Vec<String>,
    /// Send the same bodies on every run (they are answered as duplicates after the first)
    /// instead of fresh ones.
    #[arg(long)]
    pub(crate) repeat_bodies: bool,
    /// Number of requests (ignored with --duration).
    #[arg(long, default_value_t = 1)]
    pub(crate) count: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 1)]
    pub(crate) concurrency: usize,
    /// Send for this long instead of --count requests (e.g. `10s`).
    #[arg(long)]
    pub(crate) duration: Option<humantime::Duration>,
    /// Pretty-print bodies (signature still over the compact form, as LeadShark's docs do):
    /// exercises the receiver's re-serialisation fallback.
    #[arg(long)]
    pub(crate) pretty: bool,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

/// What each request sends: payloads by event type, and how to make each body new.
#[derive(Debug)]
struct Bodies {
    /// `(event type, payload)` in turn; `None` payload: the sample for the type.
    events: Vec<(String, Option<Value>)>,
    sets: Vec<(Vec<String>, Value)>,
    /// Microseconds since the epoch at the start of the run; `None`: repeat bodies.
    fresh_from: Option<i64>,
    pretty: bool,
}

impl Bodies {
    fn from_args(args: &SendArgs) -> anyhow::Result<Bodies> {
        let sets = args
            .set
            .iter()
            .map(|s| parse_set(s))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let events = match &args.data {
            Some(file) => {
                let payload = read_payload(file)?;
                let event = match (args.events.as_slice(), payload.get("event")) {
                    ([one], _) => one.clone(),
                    ([], Some(Value::String(e))) => e.clone(),
                    ([], _) => bail!(
                        "{}: the payload has no string `event` field; name the type with --event",
                        file.display()
                    ),
                    _ => bail!("with --data, give at most one --event"),
                };
                vec![(event, Some(payload))]
            }
            None => {
                let types: Vec<String> = if args.events.is_empty() {
                    samples::EVENT_TYPES.iter().map(|s| s.to_string()).collect()
                } else {
                    args.events.clone()
                };
                for e in &types {
                    if samples::sample(e, 0).is_none() {
                        bail!(
                            "no sample for event `{e}`; samples exist for: {} (or send your own payload with --data FILE)",
                            samples::EVENT_TYPES.join(", ")
                        );
                    }
                }
                types.into_iter().map(|t| (t, None)).collect()
            }
        };
        let fresh_from = (!args.repeat_bodies).then(|| jiff::Timestamp::now().as_microsecond());
        Ok(Bodies {
            events,
            sets,
            fresh_from,
            pretty: args.pretty,
        })
    }

    /// Request `i`'s event type, body and signature (over the compact JSON, which is also
    /// the body unless `pretty`).
    fn signed(&self, i: u64, secret: &str) -> (&str, Vec<u8>, String) {
        let (event, payload) = self.payload(i);
        let (body, signature) = sign_payload(&payload, secret, self.pretty);
        (event, body, signature)
    }

    /// Request `i`'s event type and payload.
    fn payload(&self, i: u64) -> (&str, Value) {
        let (event, given) = &self.events[(i % self.events.len() as u64) as usize];
        let mut payload = match given {
            Some(p) => p.clone(),
            None => {
                samples::sample(event, i).unwrap_or_else(|| serde_json::json!({ "event": event }))
            }
        };
        if let (Some(from), Value::Object(map)) = (self.fresh_from, &mut payload) {
            let micros = from.saturating_add(i64::try_from(i).unwrap_or(i64::MAX));
            if let Ok(at) = jiff::Timestamp::from_microsecond(micros) {
                map.insert(
                    "timestamp".into(),
                    Value::String(at.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()),
                );
            }
        }
        for (path, value) in &self.sets {
            set_path(&mut payload, path, value.clone());
        }
        (event, payload)
    }
}

/// How each request is signed: LeadShark's way (over the compact JSON, whatever the body's
/// layout), or another scheme's, over the body as sent.
#[derive(Debug)]
enum Signer {
    Leadshark(String),
    Scheme {
        verifier: Box<dyn Verifier>,
        /// Where the scheme reads the event type in the payload, if there.
        event_field: Option<String>,
    },
}

impl Signer {
    fn new(scheme: &str, secret: &str) -> anyhow::Result<Signer> {
        if scheme == "leadshark" {
            return Ok(Signer::Leadshark(secret.to_string()));
        }
        let config = VerifyConfig::for_scheme(scheme, &[secret.to_string()])
            .map_err(|e| anyhow::anyhow!("--scheme {scheme}: {e}"))?;
        let verifier = config
            .build()
            .map_err(|e| anyhow::anyhow!("--scheme {scheme} --secret: {e}"))?;
        Ok(Signer::Scheme {
            verifier,
            event_field: config.event_field().map(str::to_string),
        })
    }
}

impl Bodies {
    /// Request `i`'s URL (`url`, or what the scheme's sender makes of it), body and headers
    /// (`Content-Type` aside), signed by `signer`.
    fn request(
        &self,
        i: u64,
        url: &reqwest::Url,
        signer: &Signer,
    ) -> anyhow::Result<(reqwest::Url, Vec<u8>, Vec<Header>)> {
        let (verifier, event_field) = match signer {
            Signer::Leadshark(secret) => {
                let (event, body, signature) = self.signed(i, secret);
                let headers = vec![
                    ("x-webhook-event".into(), event.to_string()),
                    ("x-webhook-signature".into(), signature),
                ];
                return Ok((url.clone(), body, headers));
            }
            Signer::Scheme {
                verifier,
                event_field,
            } => (verifier, event_field),
        };
        let (event, mut payload) = self.payload(i);
        if let Some(field) = event_field
            && crate::verify::string_at(&payload, field).is_none()
        {
            let path: Vec<String> = field.split('.').map(str::to_string).collect();
            set_path(&mut payload, &path, Value::String(event.to_string()));
        }
        let body = match self.pretty {
            true => serde_json::to_vec_pretty(&payload)?,
            false => serde_json::to_vec(&payload)?,
        };
        // A delivery id derived from the body: a repeated body is a retry of the same
        // delivery, as the schemes that sign an id deduplicate on it.
        let digest = hex::encode(sha2::Sha256::digest(&body));
        let id = format!("msg_{}", &digest[..24]);
        let target = verifier.sender_url(url.as_str(), &body);
        let headers = verifier
            .sign(&Signing {
                body: &body,
                timestamp: jiff::Timestamp::now().as_second(),
                id: &id,
                event: Some(event),
                url: Some(&target),
            })
            .map_err(anyhow::Error::msg)?;
        let target = target
            .parse()
            .with_context(|| format!("the scheme's URL `{target}`"))?;
        Ok((target, body, headers))
    }
}

fn read_payload(file: &std::path::Path) -> anyhow::Result<Value> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read the payload from stdin")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?
    };
    let payload: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    if !payload.is_object() {
        bail!("{}: the payload must be a JSON object", file.display());
    }
    Ok(payload)
}

/// `data.lead.email=x` → (`["data", "lead", "email"]`, `"x"`).
fn parse_set(spec: &str) -> anyhow::Result<(Vec<String>, Value)> {
    let Some((path, value)) = spec.split_once('=') else {
        bail!("--set `{spec}`: expected PATH=VALUE, e.g. data.lead.email=me@example.com");
    };
    let path: Vec<String> = path.split('.').map(str::to_string).collect();
    if path.iter().any(String::is_empty) {
        bail!("--set `{spec}`: the path has an empty segment");
    }
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
    Ok((path, value))
}

/// Set `path` in `payload`, creating objects on the way (a non-object on the way is
/// replaced by one: the user asked for this path).
fn set_path(payload: &mut Value, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = payload;
    for key in parents {
        if !at.is_object() {
            *at = Value::Object(serde_json::Map::new());
        }
        let Value::Object(map) = at else { return };
        at = map
            .entry(key.clone())
            .or_insert(Value::Object(serde_json::Map::new()));
    }
    if !at.is_object() {
        *at = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(map) = at {
        map.insert(last.clone(), value);
    }
}

/// Longest response body kept for the summary.
const BODY_CHARS: usize = 300;

#[derive(Debug, Default)]
struct Tally {
    statuses: BTreeMap<u16, u64>,
    /// 2xx answers that said `"duplicate": true` (also counted in `statuses`).
    duplicates: u64,
    /// The first response body of each non-2xx status.
    bodies: BTreeMap<u16, String>,
    errors: BTreeMap<String, u64>,
    latency: Option<Histogram<u64>>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            latency: Histogram::new_with_bounds(1, 60_000_000, 3).ok(),
            ..Tally::default()
        }
    }

    fn add(&mut self, other: Tally) {
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        self.duplicates += other.duplicates;
        for (k, v) in other.bodies {
            self.bodies.entry(k).or_insert(v);
        }
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        if let (Some(a), Some(b)) = (self.latency.as_mut(), other.latency.as_ref()) {
            let _ = a.add(b);
        }
    }

    fn record(&mut self, status: u16, body: &[u8]) {
        *self.statuses.entry(status).or_default() += 1;
        if (200..300).contains(&status) {
            let duplicate = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v.get("duplicate").and_then(Value::as_bool))
                .unwrap_or(false);
            if duplicate {
                self.duplicates += 1;
            }
        } else if let std::collections::btree_map::Entry::Vacant(slot) = self.bodies.entry(status) {
            let text = String::from_utf8_lossy(body);
            let mut clipped: String = text.trim().chars().take(BODY_CHARS).collect();
            if text.trim().chars().count() > BODY_CHARS {
                clipped.push('…');
            }
            slot.insert(clipped);
        }
    }
}

pub async fn run(args: SendArgs) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let bodies = Bodies::from_args(&args)?;
    let signer = Signer::new(&args.scheme, &args.secret)?;
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
    let shared = Arc::new((client, url, signer, bodies));
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (next, shared, progress) = (next.clone(), shared.clone(), progress.clone());
        tasks.push(tokio::spawn(async move {
            let (client, url, signer, bodies) = &*shared;
            let mut tally = Tally::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total || deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let (target, body, headers) = match bodies.request(i, url, signer) {
                    Ok(request) => request,
                    Err(e) => {
                        *tally.errors.entry(format!("signing: {e}")).or_default() += 1;
                        continue;
                    }
                };
                let t0 = Instant::now();
                let mut request = client
                    .post(target)
                    .header("content-type", "application/json");
                for (name, value) in headers {
                    request = request.header(name, value);
                }
                let result = request.body(body).send().await;
                match result {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let body = resp.bytes().await.unwrap_or_default();
                        tally.record(status, &body);
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
    let mut all = Tally::new();
    for t in tasks {
        all.add(t.await?);
    }
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    let elapsed = started.elapsed();
    report(&all, elapsed, args.json)?;
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

fn sign_payload(payload: &Value, secret: &str, pretty: bool) -> (Vec<u8>, String) {
    let compact = serde_json::to_vec(payload).unwrap_or_default();
    let signature = sign(secret, &compact);
    let body = if pretty {
        serde_json::to_vec_pretty(payload).unwrap_or(compact)
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

fn report(t: &Tally, elapsed: Duration, json: bool) -> anyhow::Result<()> {
    let sent: u64 = t.statuses.values().sum::<u64>() + t.errors.values().sum::<u64>();
    let rate = sent as f64 / elapsed.as_secs_f64().max(1e-9);
    let pct = |q: f64| {
        t.latency
            .as_ref()
            .map(|h| h.value_at_quantile(q) as f64 / 1000.0)
            .unwrap_or(0.0)
    };
    let accepted: u64 = t
        .statuses
        .iter()
        .filter(|(s, _)| (200..300).contains(*s))
        .map(|(_, n)| n)
        .sum();
    if json {
        let summary = serde_json::json!({
            "sent": sent,
            "seconds": elapsed.as_secs_f64(),
            "req_per_s": rate,
            "statuses": t.statuses,
            "new": accepted - t.duplicates,
            "duplicates": t.duplicates,
            "bodies": t.bodies,
            "errors": t.errors,
            "p50_ms": pct(0.5),
            "p99_ms": pct(0.99),
            "max_ms": t.latency.as_ref().map(|h| h.max() as f64 / 1000.0).unwrap_or(0.0),
        });
        outln!("{summary}");
        return Ok(());
    }
    outln!(
        "sent {sent} in {:.2}s ({rate:.1} req/s)",
        elapsed.as_secs_f64()
    );
    for (status, n) in &t.statuses {
        match t.bodies.get(status) {
            Some(body) => outln!("  {status}: {n}  {body}"),
            None => outln!("  {status}: {n}"),
        }
    }
    if accepted > 0 {
        outln!("  new events: {}", accepted - t.duplicates);
    }
    if t.duplicates > 0 {
        outln!(
            "  duplicates: {} (already received: answered 2xx, but nothing new reaches the sinks)",
            t.duplicates
        );
    }
    for (kind, n) in &t.errors {
        outln!("  error ({kind}): {n}");
    }
    outln!("latency p50 {:.2}ms  p99 {:.2}ms", pct(0.5), pct(0.99));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_parses_json_or_text_and_creates_objects() {
        let mut v = json!({"event": "new.like", "data": {"lead": "x"}});
        for spec in [
            "data.lead.email=me@example.com",
            "data.n=5",
            "top=\"q\"",
            "data.ok=true",
        ] {
            let (path, value) = parse_set(spec).expect("parses");
            set_path(&mut v, &path, value);
        }
        assert_eq!(v["data"]["lead"]["email"], "me@example.com");
        assert_eq!(v["data"]["n"], 5);
        assert_eq!(v["top"], "q");
        assert_eq!(v["data"]["ok"], true);
        assert!(parse_set("no-equals").is_err());
        assert!(parse_set("a..b=1").is_err());
    }

    #[test]
    fn bodies_are_new_on_every_run_unless_repeated() {
        let args = |repeat: bool| SendArgs {
            url: "http://x".into(),
            secret: "s".into(),
            scheme: "leadshark".into(),
            events: vec!["new.like".into()],
            data: None,
            set: Vec::new(),
            repeat_bodies: repeat,
            count: 1,
            concurrency: 1,
            duration: None,
            pretty: false,
            json: false,
        };
        let first = Bodies::from_args(&args(false)).expect("bodies");
        std::thread::sleep(Duration::from_millis(2));
        let second = Bodies::from_args(&args(false)).expect("bodies");
        assert_ne!(first.signed(0, "s").1, second.signed(0, "s").1);
        let first = Bodies::from_args(&args(true)).expect("bodies");
        let second = Bodies::from_args(&args(true)).expect("bodies");
        assert_eq!(first.signed(0, "s").1, second.signed(0, "s").1);
        let (_, body, signature) = first.signed(3, "s");
        assert_eq!(signature, sign("s", &body), "still validly signed");
    }
}
