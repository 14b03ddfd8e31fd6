//! The ceiling Hookline is measured against (`docs/performance.md`): the smallest axum
//! server that does what any webhook receiver must — read the body, check LeadShark's
//! signature (hex HMAC-SHA256 of the body in `X-Webhook-Signature`) in constant time,
//! append the body to a file, answer 200. No journal, no routing, no metrics, no logs.
//!
//! ```sh
//! bench-baseline --listen 127.0.0.1:0 --secret S --out /tmp/baseline.jsonl
//! ```
//!
//! Prints `baseline listening on http://ADDR` once it accepts connections.

use std::fs::File;
use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

struct App {
    /// Keyed once; cloned per request.
    key: Hmac<Sha256>,
    /// One `write` per request, under a lock so lines never interleave.
    out: Mutex<File>,
}

async fn receive(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut tag = [0u8; 32];
    let decoded = headers
        .get("x-webhook-signature")
        .is_some_and(|v| hex::decode_to_slice(v.as_bytes(), &mut tag).is_ok());
    let mut mac = app.key.clone();
    mac.update(&body);
    // `verify_slice` compares in constant time.
    if !decoded || mac.verify_slice(&tag).is_err() {
        return StatusCode::UNAUTHORIZED;
    }
    let mut line = Vec::with_capacity(body.len() + 1);
    line.extend_from_slice(&body);
    line.push(b'\n');
    let written = match app.out.lock() {
        Ok(mut file) => file.write_all(&line).is_ok(),
        Err(_) => false,
    };
    if written {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let listen = arg(&args, "--listen").unwrap_or_else(|| "127.0.0.1:0".into());
    let secret = arg(&args, "--secret")
        .or_else(|| std::env::var("LEADSHARK_SECRET").ok())
        .ok_or("--secret (or LEADSHARK_SECRET) is required")?;
    let out = arg(&args, "--out").ok_or("--out FILE is required")?;
    let app = Arc::new(App {
        key: Hmac::new_from_slice(secret.as_bytes())?,
        out: Mutex::new(File::options().create(true).append(true).open(&out)?),
    });
    let router = Router::new()
        .route("/webhooks/leadshark", post(receive))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("baseline listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    axum::serve(listener, router).await?;
    Ok(())
}
