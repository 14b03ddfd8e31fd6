//! Helpers shared by the end-to-end tests: start hookline, sign and send, read sink output,
//! run a local HTTP receiver.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

pub const SECRET: &str = "e2e-secret-0123456789";

/// The binary under test: `$HOOKLINE_BIN` when set (e.g. the release build, for the
/// hostile suite's figures), else the one cargo built for these tests.
pub fn bin() -> &'static str {
    static BIN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        std::env::var("HOOKLINE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_hookline").into())
    });
    &BIN
}

/// A running `hookline serve`, killed on drop. Its stderr (the log) goes to `log_path`.
pub struct Hookline {
    child: Child,
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
}

/// The LeadShark source every test config starts with (`{SECRET}` accepted).
pub fn leadshark_source() -> String {
    format!(
        r#"
[[sources]]
name = "leadshark"
path = "/webhooks/leadshark"
verify = {{ scheme = "leadshark", secrets = ["{SECRET}"] }}
"#
    )
}

/// The secret of the generic `hmac` source [`acme_source`].
pub const ACME_SECRET: &str = "acme-secret-0123456789";

/// A generic `hmac` source `acme` at `/webhooks/acme`: signed in `X-Acme-Signature`, the
/// event type in the body's `event_field`, and `extra` lines (`dedupe_window = ...`) in its
/// table.
pub fn acme_source(event_field: &str, extra: &str) -> String {
    format!(
        r#"
[[sources]]
name = "acme"
path = "/webhooks/acme"
{extra}
verify = {{ scheme = "hmac", secrets = ["{ACME_SECRET}"], header = "X-Acme-Signature", event_field = "{event_field}" }}
"#
    )
}

/// POST `body` to the `acme` source at `url`, signed with [`ACME_SECRET`].
pub async fn post_acme(url: &str, body: String) -> Reply {
    let sig = sign(ACME_SECRET, body.as_bytes());
    post(url, body, &[("x-acme-signature", &sig)]).await
}

impl Hookline {
    /// Start with `body` appended to a `[server]` section on 127.0.0.1:0. Relative paths in
    /// the config resolve against the temp dir that holds it.
    pub fn start(body: &str) -> Hookline {
        Self::start_with(body, "", &[])
    }

    pub fn start_with(body: &str, server_extra: &str, env: &[(&str, &str)]) -> Hookline {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("pipeline.toml");
        let text = config_text(body, server_extra);
        std::fs::write(&config_path, text).expect("write config");
        Self::start_in(dir, env)
    }

    /// Start on the `pipeline.toml` already in `dir` (e.g. again, after a crash).
    pub fn start_in(dir: tempfile::TempDir, env: &[(&str, &str)]) -> Hookline {
        let config_path = dir.path().join("pipeline.toml");
        let log_path = dir.path().join("hookline.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("log file");
        let mut cmd = Command::new(bin());
        cmd.args(["--log-level", "debug", "serve", "--config"])
            .arg(&config_path)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn hookline");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut admin = String::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("hookline admin on http://") {
                    admin = addr.trim().to_string();
                }
                if let Some(addr) = line.strip_prefix("hookline listening on http://") {
                    let _ = tx.send((addr.trim().to_string(), admin.clone()));
                }
            }
        });
        let (addr, admin_addr) = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok((a, b)) => (
                a.parse().expect("address"),
                b.parse().expect("admin address"),
            ),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "hookline did not start; log:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
        };
        Hookline {
            child,
            addr,
            admin_addr,
            dir,
            config_path,
            log_path,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin_addr, path)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the process now, in KiB (Linux).
    pub fn rss_kib(&self) -> u64 {
        self.rss_sampler()()
    }

    /// A function that reads [`Hookline::rss_kib`], for a sampling task.
    pub fn rss_sampler(&self) -> impl Fn() -> u64 + Send + 'static {
        let path = format!("/proc/{}/status", self.child.id());
        move || {
            std::fs::read_to_string(&path)
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        }
    }

    /// `kill -9`: no shutdown, no flush.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kill the process and hand back its directory (config, journal, sink files).
    pub fn crash(mut self) -> tempfile::TempDir {
        self.kill();
        let dir = tempfile::tempdir().expect("placeholder dir");
        std::mem::replace(&mut self.dir, dir)
    }

    /// SIGTERM, a clean exit within 30 s, and the directory back (to start again in it).
    pub fn stop(mut self) -> tempfile::TempDir {
        assert!(self.terminate(), "no clean stop; log:\n{}", self.log());
        let dir = tempfile::tempdir().expect("placeholder dir");
        std::mem::replace(&mut self.dir, dir)
    }

    /// Run `hookline <args>` against this instance's config.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut all: Vec<&str> = args.to_vec();
        let config = self.config_path.to_str().expect("utf-8 path");
        all.extend(["--config", config]);
        run_cli(&all, &[])
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Send a signal (`HUP`, `TERM`, ...).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// SIGTERM and wait for exit; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// The config a test runs: its own listeners on port 0 and a journal in its temp dir.
pub fn config_text(body: &str, server_extra: &str) -> String {
    if body.contains("[admin]") {
        return format!("[server]\nlisten = \"127.0.0.1:0\"\n{server_extra}\n\n{body}");
    }
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{server_extra}\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n{body}"
    )
}

impl Drop for Hookline {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small tmpfs mounted on a temp dir: a disk a test can fill. Unmounted on drop (drop
/// whatever holds files in it first).
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount -o size=`, e.g. `"256k"`). `None`, with the reason
    /// printed, where mounting is not allowed (it needs root, or `CAP_SYS_ADMIN` in a
    /// container): the caller skips its test.
    pub fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(out) if out.status.success() => Some(Tmpfs { dir }),
            Ok(out) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run `mount`: {e}");
                None
            }
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the disk with a file `.filler`, leaving about `free` bytes.
    pub fn fill(&self, free: u64) {
        use std::io::Write;
        let path = self.dir.path().join(".filler");
        let mut filler = std::fs::File::create(&path).expect("filler");
        let page = [0u8; 4096];
        while filler.write_all(&page).is_ok() {}
        let len = filler.metadata().expect("filler size").len();
        filler
            .set_len(len.saturating_sub(free))
            .expect("free space");
    }

    /// Remounts with a new size (what is in it stays).
    pub fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "remount to {size}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Still busy: detach it now; the kernel unmounts it when the last file closes.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

/// GET a JSON document.
pub async fn get_json(url: &str) -> Value {
    client()
        .get(url)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json")
}

pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().build().expect("client")
}

/// A client that speaks HTTP/2 with prior knowledge (h2c), for a listener with `http2 = true`.
pub fn h2c_client(timeout: Duration) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .timeout(timeout)
        .build()
        .expect("client")
}

/// Lower-case hex HMAC-SHA256, as LeadShark signs.
pub fn sign(secret: &str, body: &[u8]) -> String {
    hookline_leadshark::sign(secret, body)
}

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub json: Value,
}

/// POST `body` with the given headers (content type JSON unless overridden).
pub async fn post(url: &str, body: impl Into<Vec<u8>>, headers: &[(&str, &str)]) -> Reply {
    let mut req = client().post(url).body(body.into());
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        req = req.header("content-type", "application/json");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    reply(req.send().await.expect("request")).await
}

pub async fn reply(resp: reqwest::Response) -> Reply {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.expect("body");
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        json,
    }
}

/// POST a body signed with [`SECRET`], with `X-Webhook-Event` taken from the body.
pub async fn post_signed(url: &str, body: &str) -> Reply {
    let event = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["event"].as_str().map(str::to_string))
        .unwrap_or_default();
    let sig = sign(SECRET, body.as_bytes());
    post(
        url,
        body,
        &[("x-webhook-signature", &sig), ("x-webhook-event", &event)],
    )
    .await
}

/// A LeadShark sample (as `hookline send` sends it), compact JSON.
pub fn sample(event: &str, i: u64) -> String {
    let v = hookline_leadshark::samples::sample(event, i).expect("sample exists");
    serde_json::to_string(&v).expect("json")
}

/// Wait until `path` holds at least `n` JSON lines; return them.
pub async fn wait_for_lines(path: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let lines = read_lines(path);
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

/// A request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// A real HTTP server on 127.0.0.1:0 that records requests and answers with scripted
/// statuses (then 200 once the script runs out).
pub struct Receiver {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start(script: Vec<u16>) -> Receiver {
        Self::start_on(0, script).await
    }

    /// A port nothing listens on (yet): bind, note the port, close.
    pub fn free_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    }

    pub async fn start_on(port: u16, script: Vec<u16>) -> Receiver {
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let script = Arc::new(Mutex::new(
            script
                .into_iter()
                .collect::<std::collections::VecDeque<_>>(),
        ));
        let (rec, scr) = (received.clone(), script.clone());
        let app =
            axum::Router::new().fallback(move |headers: HeaderMap, body: axum::body::Bytes| {
                let (rec, scr) = (rec.clone(), scr.clone());
                async move {
                    rec.lock().expect("lock").push(Received {
                        headers,
                        body: body.to_vec(),
                    });
                    let code = scr.lock().expect("lock").pop_front().unwrap_or(200);
                    StatusCode::from_u16(code).unwrap_or(StatusCode::OK)
                }
            });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            addr,
            received,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.received.lock().expect("lock").clone();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Run the hookline CLI to completion.
pub fn run_cli(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(bin());
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run hookline")
}

/// Run a script with `node` or `python3`, feeding `stdin`; returns stdout.
pub fn run_script(program: &str, script: &str, stdin: &str, env: &[(&str, &str)]) -> String {
    use std::io::Write;
    let flag = if program == "node" { "-e" } else { "-c" };
    let mut cmd = Command::new(program);
    cmd.arg(flag)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{program} must be installed: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Poll `f` until it holds; generous, because CI machines are small and shared (nothing
/// here measures speed).
pub async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Concurrent senders of unique signed LeadShark samples, recording the ids of the events
/// that got a 200. Each sender stops after `per_worker` requests, when told to, or when the
/// service is gone (a connection error).
pub struct Load {
    acked: Arc<Mutex<Vec<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(url: &str, event: &'static str, workers: u64, per_worker: u64) -> Load {
        let acked: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop: Arc<std::sync::atomic::AtomicBool> = Arc::default();
        let tasks = (0..workers)
            .map(|worker| {
                let (url, acked, stop) = (url.to_string(), acked.clone(), stop.clone());
                tokio::spawn(async move {
                    let c = client();
                    for i in 0..per_worker {
                        if stop.load(std::sync::atomic::Ordering::Relaxed) {
                            return;
                        }
                        let body = sample(event, worker * 1_000_000 + i);
                        let sig = sign(SECRET, body.as_bytes());
                        let resp = c
                            .post(&url)
                            .header("content-type", "application/json")
                            .header("x-webhook-signature", sig)
                            .body(body)
                            .send()
                            .await;
                        match resp {
                            Ok(r) if r.status() == 200 => {
                                let v: Value = r.json().await.unwrap_or(Value::Null);
                                if let Some(id) = v["id"].as_str() {
                                    acked.lock().expect("lock").push(id.to_string());
                                }
                            }
                            Ok(_) => {}
                            Err(_) => return,
                        }
                    }
                })
            })
            .collect();
        Load { acked, stop, tasks }
    }

    pub fn acked(&self) -> usize {
        self.acked.lock().expect("lock").len()
    }

    /// Stop the senders and return the ids of every acknowledged event.
    pub async fn finish(self) -> Vec<String> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        self.acked.lock().expect("lock").clone()
    }
}

/// Event ids in the envelope bodies a receiver got, with how often each arrived.
pub fn received_ids(receiver: &Receiver) -> std::collections::HashMap<String, usize> {
    let mut counts = std::collections::HashMap::new();
    for r in receiver.received.lock().expect("lock").iter() {
        if let Some(id) = serde_json::from_slice::<Value>(&r.body)
            .ok()
            .and_then(|v| v["id"].as_str().map(str::to_string))
        {
            *counts.entry(id).or_default() += 1;
        }
    }
    counts
}

/// Wait until every acknowledged id reached the receiver (or time runs out); returns the
/// counts, and prints how many arrived more than once.
pub async fn wait_for_all(
    receiver: &Receiver,
    acked: &[String],
) -> std::collections::HashMap<String, usize> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let counts = received_ids(receiver);
        if acked.iter().all(|id| counts.contains_key(id)) || Instant::now() > deadline {
            let duplicates = counts.values().filter(|n| **n > 1).count();
            println!(
                "acknowledged {}, received {} distinct, {duplicates} more than once",
                acked.len(),
                counts.len()
            );
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The JSON summary `hookline send --json` printed (the output in full when it is not).
pub fn summary(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Serve `app` on 127.0.0.1 at a free port until the handle is dropped or aborted.
pub async fn serve_on_loopback(app: axum::Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, task)
}
