//! `hookline verify`: does this request verify, and if not, exactly why.
//!
//! Given a source (from the config, or a scheme and secrets), a body file and the headers
//! as received, it runs the source's own verifier, then each secret alone, and for a bad
//! signature shows what each secret would have signed: for LeadShark, every form of the
//! body that is tried (raw bytes, Node-style and Python-style re-serialisation). A secret is
//! named only by its fingerprint (first 8 hex digits of its SHA-256), never printed.
//!
//! Nothing here knows how a scheme signs: the verdicts are the verifiers' own
//! ([`crate::verify`]), the expected signatures their [`Verifier::expected`].

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use hookline_plugin_api::Secret;
use serde::Serialize;

use crate::config::ConfigFile;
use crate::verify::leadshark::LeadsharkVerifier;
use crate::verify::sign::{Header, fingerprint};
use crate::verify::{Rejection, Unverified, Verifier, VerifyConfig};

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Config holding the source (with `--source`).
    #[arg(long, short, default_value = "pipeline.toml", env = "HOOKLINE_CONFIG")]
    pub config: PathBuf,
    /// The source to verify as, by name, from the config.
    #[arg(long, conflicts_with = "scheme", required_unless_present = "scheme")]
    pub source: Option<String>,
    /// Verify with this scheme's defaults instead of a configured source (`leadshark`,
    /// `github`, `stripe`, `standard-webhooks`, `slack`, `shopify`, `twilio`, `hmac`).
    #[arg(long, requires = "secrets")]
    pub scheme: Option<String>,
    /// A secret for `--scheme`; repeat for several.
    #[arg(
        long = "secret",
        env = "HOOKLINE_VERIFY_SECRET",
        hide_env_values = true
    )]
    pub secrets: Vec<String>,
    /// The request body exactly as received (a file, or `-` for stdin).
    #[arg(long, value_name = "FILE")]
    pub body: PathBuf,
    /// A header as received, `-H 'X-Webhook-Signature: 5f3c…'`; repeat for several.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// A file of headers, one `Name: value` a line (blank lines, `#` comments and an HTTP
    /// request line are skipped).
    #[arg(long, value_name = "FILE")]
    pub headers_file: Option<PathBuf>,
    /// The request target as received, path and query (`/webhooks/twilio?bodySHA256=…`),
    /// for schemes that sign the URL (Twilio). Default: the target of an HTTP request line
    /// in the headers, if there.
    #[arg(long, value_name = "PATH")]
    pub target: Option<String>,
    /// The time of receipt that signed timestamps are checked against (RFC 3339, e.g.
    /// `2026-12-01T10:00:00Z`). Default: now.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Print the verdict as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// The verdict, and what it rests on.
#[derive(Debug, Serialize)]
pub struct Report {
    pub scheme: &'static str,
    pub source: Option<String>,
    /// The request verifies: Hookline would accept it.
    pub verified: bool,
    /// The signature checked out with one of the secrets (also when a later check failed).
    pub signature_ok: bool,
    /// The status Hookline would answer a rejection with.
    pub status: Option<u16>,
    /// The rejection's reason (the `reason` metric label).
    pub reason: Option<&'static str>,
    /// One line for a person.
    pub summary: String,
    pub event_type: Option<String>,
    /// Each secret's own verdict.
    pub secrets: Vec<SecretVerdict>,
    /// The signature header(s) as sent.
    pub sent: Vec<Header>,
    /// With a bad signature: what each secret would have signed, per form of the body.
    pub expected: Vec<Expected>,
    /// With a good signature: which secret signed which form of the body (for LeadShark, a
    /// sender that re-serialises shows here).
    pub signed_over: Option<SignedOver>,
}

#[derive(Debug, Serialize)]
pub struct SignedOver {
    pub secret: String,
    pub form: &'static str,
    pub form_description: &'static str,
}

#[derive(Debug, Serialize)]
pub struct SecretVerdict {
    pub fingerprint: String,
    pub signature_ok: bool,
    /// The verdict with this secret alone: `verified` or a rejection's reason.
    pub outcome: String,
}

#[derive(Debug, Serialize)]
pub struct Expected {
    /// The secret's fingerprint.
    pub secret: String,
    /// `raw`, `node` or `python` (LeadShark); `raw` for the other schemes.
    pub form: &'static str,
    pub form_description: &'static str,
    /// Length of the bytes signed in this form.
    pub bytes: usize,
    /// The header that would carry the signature, and its value.
    pub header: String,
    pub value: String,
}

pub fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let (config, source) = match (&args.scheme, &args.source) {
        (Some(scheme), _) => (
            VerifyConfig::for_scheme(scheme, &args.secrets).map_err(anyhow::Error::msg)?,
            None,
        ),
        (None, Some(name)) => (source_config(&args.config, name)?, Some(name.clone())),
        (None, None) => bail!("give --source NAME (with --config) or --scheme and --secret"),
    };
    let body = read_input(&args.body)?;
    let mut lines: Vec<String> = Vec::new();
    if let Some(file) = &args.headers_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        lines.extend(text.lines().map(str::to_string));
    }
    lines.extend(args.headers.iter().cloned());
    let headers = parse_headers(&lines)?;
    let target = args.target.clone().or_else(|| request_target(&lines));
    let now = match &args.at {
        Some(text) => text
            .parse::<jiff::Timestamp>()
            .with_context(|| format!("--at `{text}`: expected an RFC 3339 time"))?,
        None => jiff::Timestamp::now(),
    };
    let report = explain(&config, source, &headers, target.as_deref(), &body, now)?;
    if args.json {
        outln!("{}", serde_json::to_string(&report)?);
    } else {
        print_text(&report)?;
    }
    if !report.verified {
        bail!("the request does not verify: {}", report.summary);
    }
    Ok(())
}

/// The `verify` table of source `name` in `path` (secrets from the environment, as `serve`
/// reads them).
fn source_config(path: &Path, name: &str) -> anyhow::Result<VerifyConfig> {
    let file = ConfigFile::read(path)?;
    let config = file.parse()?;
    let names: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
    match config.sources.iter().find(|s| s.name == name) {
        Some(source) => Ok(source.verify.clone()),
        None => bail!(
            "{} has no source `{name}` (its sources: {})",
            path.display(),
            names.join(", ")
        ),
    }
}

fn read_input(file: &Path) -> anyhow::Result<Vec<u8>> {
    if file.as_os_str() == "-" {
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut body)
            .context("cannot read the body from stdin")?;
        return Ok(body);
    }
    std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))
}

/// `Name: value` lines into headers. Blank lines, `#` comments and a request line
/// (`POST /path HTTP/1.1`, as a captured request starts) are skipped.
pub fn parse_headers(lines: &[String]) -> anyhow::Result<http::HeaderMap> {
    let mut headers = http::HeaderMap::new();
    for line in lines {
        let line = line.trim_end_matches(['\r', '\n']);
        if line.trim().is_empty() || line.starts_with('#') || request_line_target(line).is_some() {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            if line.contains(" HTTP/") {
                continue;
            }
            bail!("header `{line}`: expected `Name: value`");
        };
        let name = http::HeaderName::from_bytes(name.trim().as_bytes())
            .with_context(|| format!("header `{line}`: bad name"))?;
        let value = http::HeaderValue::from_str(value.trim())
            .with_context(|| format!("header `{line}`: bad value"))?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// The target of an HTTP request line (`POST /path?q HTTP/1.1` → `/path?q`), if one is
/// among the header lines.
fn request_target(lines: &[String]) -> Option<String> {
    lines
        .iter()
        .find_map(|line| request_line_target(line))
        .map(str::to_string)
}

/// `POST /path?q HTTP/1.1` → `/path?q` (its target may hold a `:`, a header never starts so).
fn request_line_target(line: &str) -> Option<&str> {
    let mut words = line.split_whitespace();
    let (method, target, version) = (words.next()?, words.next()?, words.next()?);
    let is_line = !method.contains(':')
        && target.starts_with('/')
        && version.starts_with("HTTP/")
        && words.next().is_none();
    is_line.then_some(target)
}

/// The verdict on one request. Pure: the caller reads the files and the clock.
pub(crate) fn explain(
    config: &VerifyConfig,
    source: Option<String>,
    headers: &http::HeaderMap,
    target: Option<&str>,
    body: &[u8],
    now: jiff::Timestamp,
) -> anyhow::Result<Report> {
    let verifier = config.build().map_err(anyhow::Error::msg)?;
    let req = Unverified {
        headers,
        body,
        target,
        now,
    };
    let outcome = verifier.verify(&req);
    let secrets: Vec<&Secret> = config
        .secrets()
        .iter()
        .filter(|s| !s.expose().is_empty())
        .collect();
    let mut verdicts = Vec::new();
    let mut signers: Vec<(String, VerifyConfig, Box<dyn Verifier>)> = Vec::new();
    for secret in secrets {
        let one = config.with_secret(secret);
        let fingerprint = fingerprint(secret.expose());
        let verifier = one.build().map_err(anyhow::Error::msg)?;
        let (signature_ok, outcome) = match verifier.verify(&req) {
            Ok(_) => (true, "verified".to_string()),
            Err(r) => (signature_good(&r), r.reason().to_string()),
        };
        verdicts.push(SecretVerdict {
            fingerprint: fingerprint.clone(),
            signature_ok,
            outcome,
        });
        signers.push((fingerprint, one, verifier));
    }
    // The signature headers' names come from what the scheme would send.
    let sent: Vec<Header> = signers
        .first()
        .map(|(_, _, v)| v.expected(&req))
        .unwrap_or_default()
        .into_iter()
        .flat_map(|(name, _)| {
            headers
                .get_all(name.as_str())
                .iter()
                .map(|v| {
                    (
                        name.clone(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let signature_ok = verdicts.iter().any(|v| v.signature_ok);
    let mut signed_over = None;
    for (fingerprint, one, signer) in &signers {
        if signed_over.is_some()
            || !verdicts
                .iter()
                .any(|v| &v.fingerprint == fingerprint && v.signature_ok)
        {
            continue;
        }
        for (form, bytes) in forms(one, body)? {
            let form_req = Unverified {
                body: &bytes,
                ..req
            };
            let matches = signer.expected(&form_req).iter().any(|(name, value)| {
                sent.iter()
                    .any(|(n, v)| n == name && v.trim().eq_ignore_ascii_case(value))
            });
            if matches {
                signed_over = Some(SignedOver {
                    secret: fingerprint.clone(),
                    form: form.0,
                    form_description: form.1,
                });
                break;
            }
        }
    }
    let mut expected = Vec::new();
    if matches!(
        outcome,
        Err(Rejection::BadSignature | Rejection::NotWhatWasSigned(_))
    ) {
        for (fingerprint, one, signer) in &signers {
            for (form, bytes) in forms(one, body)? {
                let form_req = Unverified {
                    body: &bytes,
                    ..req
                };
                for (header, value) in signer.expected(&form_req) {
                    expected.push(Expected {
                        secret: fingerprint.clone(),
                        form: form.0,
                        form_description: form.1,
                        bytes: bytes.len(),
                        header,
                        value,
                    });
                }
            }
        }
    }
    let scheme = config.scheme();
    let (verified, status, reason, summary, event_type) = match &outcome {
        Ok(v) => (
            true,
            None,
            None,
            format!("verifies: a `{}` event", v.event_type),
            Some(v.event_type.clone()),
        ),
        Err(r) => (false, Some(r.status()), Some(r.reason()), describe(r), None),
    };
    Ok(Report {
        scheme,
        source,
        verified,
        signature_ok,
        status,
        reason,
        summary,
        event_type,
        secrets: verdicts,
        sent,
        expected,
        signed_over,
    })
}

/// A form's short name and description.
type FormName = (&'static str, &'static str);

/// The forms of the body a signature is checked over: for LeadShark its verifier's own list,
/// for the other schemes the raw bytes.
fn forms(config: &VerifyConfig, body: &[u8]) -> anyhow::Result<Vec<(FormName, Vec<u8>)>> {
    Ok(match config {
        VerifyConfig::Leadshark(c) => LeadsharkVerifier::build(c)
            .map_err(anyhow::Error::msg)?
            .forms(body)
            .into_iter()
            .map(|(form, bytes)| ((form.name(), form.describe()), bytes))
            .collect(),
        _ => vec![(("raw", "the raw body bytes"), body.to_vec())],
    })
}

/// Rejections that come after the signature checked out.
fn signature_good(r: &Rejection) -> bool {
    !matches!(
        r,
        Rejection::MissingSignature { .. }
            | Rejection::MalformedSignature { .. }
            | Rejection::BadSignature
            | Rejection::MissingHeader { .. }
            | Rejection::MissingTimestamp { .. }
            | Rejection::MalformedTimestamp { .. }
            | Rejection::NotWhatWasSigned(_)
    )
}

/// A rejection in words for a person at a terminal (the client's message, plus what it
/// means).
fn describe(r: &Rejection) -> String {
    let human = |secs: u64| humantime::format_duration(std::time::Duration::from_secs(secs));
    match r {
        Rejection::TimestampExpired {
            age_secs,
            tolerance_secs,
        } => format!(
            "signature good but timestamp {} old, tolerance {}",
            human(*age_secs),
            human(*tolerance_secs)
        ),
        Rejection::TimestampInFuture {
            ahead_secs,
            tolerance_secs,
        } => format!(
            "signature good but timestamp {} in the future, tolerance {}",
            human(*ahead_secs),
            human(*tolerance_secs)
        ),
        Rejection::BadSignature => {
            "invalid signature: no configured secret signs this request".to_string()
        }
        r if r.authenticated() => format!(
            "signature good, but the payload cannot be processed: {r} (Hookline keeps it as a dead letter)"
        ),
        r => r.to_string(),
    }
}

fn print_text(r: &Report) -> anyhow::Result<()> {
    let source = match &r.source {
        Some(name) => format!("source `{name}` ({} scheme)", r.scheme),
        None => format!("{} scheme", r.scheme),
    };
    match (r.verified, r.status, r.reason) {
        (true, _, _) => outln!("OK: {source}: {}", r.summary),
        (false, Some(status), Some(reason)) => {
            outln!("FAILED: {source}: {} ({status} {reason})", r.summary)
        }
        (false, _, _) => outln!("FAILED: {source}: {}", r.summary),
    }
    outln!("secrets (by SHA-256 fingerprint, never shown):");
    for s in &r.secrets {
        let signature = if s.signature_ok {
            "signature matches"
        } else {
            "signature does not match"
        };
        outln!("  {}  {signature}; alone: {}", s.fingerprint, s.outcome);
    }
    for (name, value) in &r.sent {
        outln!("sent:  {name}: {value}");
    }
    if let Some(over) = &r.signed_over {
        outln!(
            "signed by {} over {} (form `{}`)",
            over.secret,
            over.form_description,
            over.form
        );
    }
    if r.expected.is_empty() {
        return Ok(());
    }
    outln!("what each secret would have signed:");
    let mut last_form = "";
    for e in &r.expected {
        if e.form != last_form {
            outln!(
                "  over {} ({} bytes, form `{}`):",
                e.form_description,
                e.bytes,
                e.form
            );
            last_form = e.form;
        }
        outln!("    {}  {}: {}", e.secret, e.header, e.value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &[&str]) -> Vec<String> {
        text.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn headers_parse_from_lines_and_skip_a_request_line() {
        let h = parse_headers(&lines(&[
            "POST /webhooks/leadshark HTTP/1.1",
            "X-Webhook-Signature:  abc ",
            "",
            "# a comment",
            "X-Webhook-Event: new.like\r",
        ]))
        .expect("parses");
        assert_eq!(h["x-webhook-signature"], "abc");
        assert_eq!(h["x-webhook-event"], "new.like");
        assert!(parse_headers(&lines(&["no colon"])).is_err());
        let with_query = lines(&["POST /t?at=10:30&b=1 HTTP/1.1", "Host: h:8080"]);
        let h = parse_headers(&with_query).expect("a request line with a colon");
        assert_eq!((h.len(), h["host"].to_str().ok()), (1, Some("h:8080")));
        assert_eq!(
            request_target(&with_query).as_deref(),
            Some("/t?at=10:30&b=1")
        );
        assert_eq!(
            request_target(&lines(&["Host: h", "X: GET /a HTTP/1.1"])),
            None
        );
        assert!(parse_headers(&lines(&["bad name: x"])).is_err());
    }

    #[test]
    fn a_python_signed_leadshark_body_names_the_form_that_matches() {
        let secret = "s3cret";
        let config = VerifyConfig::for_scheme("leadshark", &[secret.into()]).expect("table");
        let body = "{\"event\":\"new.like\",\"name\":\"Zoë\"}";
        let python = br#"{"event":"new.like","name":"Zo\u00eb"}"#;
        let sig = hookline_leadshark::sign(secret, python);
        let h = parse_headers(&[format!("X-Webhook-Signature: {sig}")]).expect("h");
        let now = jiff::Timestamp::now();
        let ok = explain(&config, None, &h, None, body.as_bytes(), now).expect("report");
        assert!(ok.verified, "{ok:?}");
        let over = ok.signed_over.expect("which form");
        assert_eq!((over.form, over.secret), ("python", fingerprint(secret)));
        let wrong = VerifyConfig::for_scheme("leadshark", &["other".into()]).expect("table");
        let r = explain(&wrong, None, &h, None, body.as_bytes(), now).expect("report");
        assert_eq!((r.verified, r.reason), (false, Some("bad_signature")));
        let forms: Vec<&str> = r.expected.iter().map(|e| e.form).collect();
        assert_eq!(forms, ["raw", "python"], "Node's form is the body itself");
        let text = serde_json::to_string(&r).expect("json");
        assert!(!text.contains("other\""), "{text}");
    }
}
