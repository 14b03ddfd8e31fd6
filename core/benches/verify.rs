//! Signature verification per body size: LeadShark's raw-body match (what LeadShark sends)
//! and the re-serialisation fallback (a pretty-printed body signed over its compact form,
//! as LeadShark's documented snippets sign). Both include parsing the JSON payload, which
//! every accepted request needs anyway.
//!
//! `cargo bench -p hookline --bench verify`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hookline::verify::leadshark::LeadsharkVerifier;
use hookline::verify::{Unverified, Verifier};
use hookline_leadshark::sign;
use hookline_plugin_api::Secret;
use http::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

const SECRET: &str = "bench-secret";

/// A LeadShark-shaped payload of about `size` bytes (compact): an `email.captured` event
/// whose `data.leads` holds as many lead records as it takes.
fn payload(size: usize) -> Value {
    let mut leads = Vec::new();
    let mut v = json!({
        "event": "email.captured",
        "timestamp": "2025-09-15T11:43:42.659+00:00",
        "data": {
            "lead": { "name": "John Doe", "email": "john.doe@example.com" },
            "automation": { "id": "58c132e6-648c-4079-8815-77a3b2ec1adc", "name": "Q4 Marketing Guide" },
            "leads": []
        }
    });
    let mut i = 0;
    while serde_json::to_vec(&v).map_or(0, |b| b.len()) < size {
        leads.push(json!({
            "name": format!("Lead Number {i}"),
            "title": "Senior Marketing Manager",
            "email": format!("lead.{i}@example.com"),
            "linkedin_username": format!("lead-{i}"),
        }));
        i += 1;
        v["data"]["leads"] = Value::Array(leads.clone());
    }
    v
}

fn headers(signature: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert(
        "x-webhook-event",
        HeaderValue::from_static("email.captured"),
    );
    if let Ok(v) = HeaderValue::from_str(signature) {
        h.insert("x-webhook-signature", v);
    }
    h
}

fn verify(c: &mut Criterion) {
    let verifier = match LeadsharkVerifier::new(&[Secret::new(SECRET)], true) {
        Ok(v) => v,
        Err(e) => panic!("verifier: {e}"),
    };
    let now = jiff::Timestamp::now();
    let mut group = c.benchmark_group("verify_leadshark");
    for (label, size) in [("1KiB", 1024), ("16KiB", 16 * 1024), ("256KiB", 256 * 1024)] {
        let value = payload(size);
        let compact = serde_json::to_vec(&value).unwrap_or_default();
        let pretty = serde_json::to_vec_pretty(&value).unwrap_or_default();
        let h = headers(&sign(SECRET, &compact));
        group.throughput(Throughput::Bytes(compact.len() as u64));
        for (case, body) in [("raw", &compact), ("reserialized", &pretty)] {
            let req = Unverified {
                headers: &h,
                body,
                target: None,
                now,
            };
            assert!(verifier.verify(&req).is_ok(), "{case} {label} must verify");
            group.bench_with_input(BenchmarkId::new(case, label), &req, |b, req| {
                b.iter(|| verifier.verify(req))
            });
        }
        // A forged body costs the raw check, the parse and both re-serialisations.
        let forged = headers(&sign("wrong", &compact));
        let req = Unverified {
            headers: &forged,
            body: &compact,
            target: None,
            now,
        };
        group.bench_with_input(BenchmarkId::new("rejected", label), &req, |b, req| {
            b.iter(|| verifier.verify(req))
        });
    }
    group.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
