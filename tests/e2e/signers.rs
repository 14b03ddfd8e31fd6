//! LeadShark's own documentation snippets as the signers, run with the real `node` and
//! `python3`, sending over real HTTP. The two snippets disagree on non-ASCII text (Node's
//! `JSON.stringify` keeps UTF-8, Python's `json.dumps` escapes it as `\uXXXX`), so a
//! receiver that re-serialises like one of them rejects deliveries signed like the other.

use serde_json::{Value, json};

use crate::support::*;

fn config() -> String {
    format!(
        r#"{}
[[pipelines]]
name = "all"
source = "leadshark"
stages = [{{ sink = "file", path = "all.jsonl" }}]
"#,
        leadshark_source()
    )
}

fn payloads() -> Vec<Value> {
    let mut comment = serde_json::from_str::<Value>(&sample("new.comment", 7)).expect("json");
    comment["data"]["lead"]["name"] = json!("José Müller");
    comment["data"]["comment"]["text"] =
        json!("Great insights! 🦈🔥 Ünïcödé \"quoted\" \\ back\nslash");
    let mut email = serde_json::from_str::<Value>(&sample("email.captured", 8)).expect("json");
    email["data"]["lead"]["name"] = json!("Zoë Ångström 李小龍");
    email["data"]["automation"] = Value::Null;
    email["payload_version"] = json!(2);
    vec![comment, email]
}

/// The docs' Node snippet signs `JSON.stringify(payload)`; Node's own fetch sends the body,
/// once compact and once pretty-printed.
const NODE: &str = r#"
const crypto = require('crypto');
const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const secret = process.env.WEBHOOK_SECRET;
(async () => {
  const out = [];
  for (const [i, payload] of input.payloads.entries()) {
    // From LeadShark's docs, verbatim:
    const expected = crypto.createHmac('sha256', secret).update(JSON.stringify(payload)).digest('hex');
    const body = i % 2 === 0 ? JSON.stringify(payload) : JSON.stringify(payload, null, 2);
    const res = await fetch(input.url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Webhook-Signature': expected, 'X-Webhook-Event': payload.event },
      body,
    });
    out.push({ status: res.status, body: await res.json() });
  }
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
"#;

/// The docs' Python snippet signs `json.dumps(payload, separators=(',',':'))` (ASCII-escaped);
/// urllib sends the body, once exactly as signed and once pretty-printed as UTF-8.
const PYTHON: &str = r#"
import hmac, hashlib, json, os, sys, urllib.request
inp = json.load(sys.stdin)
secret = os.environ['WEBHOOK_SECRET']
out = []
for i, payload in enumerate(inp['payloads']):
    # From LeadShark's docs, verbatim:
    expected = hmac.new(secret.encode(), json.dumps(payload, separators=(',',':')).encode(), hashlib.sha256).hexdigest()
    if i % 2 == 0:
        body = json.dumps(payload, separators=(',',':')).encode()
    else:
        body = json.dumps(payload, indent=2, ensure_ascii=False).encode('utf-8')
    req = urllib.request.Request(inp['url'], data=body, method='POST', headers={
        'Content-Type': 'application/json', 'X-Webhook-Signature': expected, 'X-Webhook-Event': payload['event']})
    with urllib.request.urlopen(req) as r:
        out.append({'status': r.status, 'body': json.loads(r.read())})
print(json.dumps(out))
"#;

async fn run_signer(program: &'static str, script: &'static str) {
    let h = Hookline::start(&config());
    let input = json!({ "url": h.url("/webhooks/leadshark"), "payloads": payloads() }).to_string();
    let out = tokio::task::spawn_blocking(move || {
        run_script(program, script, &input, &[("WEBHOOK_SECRET", SECRET)])
    })
    .await
    .expect("join");
    let replies: Vec<Value> = serde_json::from_str(out.trim()).expect("signer output");
    assert_eq!(replies.len(), 2);
    for r in &replies {
        assert_eq!(r["status"], 200, "{program}: {r}");
        assert_eq!(r["body"]["received"], true);
    }
    let lines = wait_for_lines(&h.path("all.jsonl"), 2).await;
    assert_eq!(lines.len(), 2, "{program}");
    for p in payloads() {
        assert!(
            lines.contains(&p),
            "{program}: payload delivered exactly, non-ASCII intact: {p}"
        );
    }
}

#[tokio::test]
async fn node_docs_snippet_signs_what_we_accept() {
    run_signer("node", NODE).await;
}

#[tokio::test]
async fn python_docs_snippet_signs_what_we_accept() {
    run_signer("python3", PYTHON).await;
}
