//! A private RabbitMQ node for a test: Debian's `rabbitmq-server` (`.ci/run` installs it)
//! run directly, as this user, on 127.0.0.1 at free ports, with its own epmd, node name,
//! database, logs, config and Erlang cookie in a temp dir. Killed (the whole process group,
//! and the epmd) on drop; never touches a system instance.
//!
//! The server script is `$HOOKLINE_RABBITMQ_SERVER`, else `/usr/lib/rabbitmq/bin/rabbitmq-server`
//! (the package's real script; `/usr/sbin/rabbitmq-server` would switch user and drop the
//! environment).

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::Receiver;

fn server_script() -> String {
    std::env::var("HOOKLINE_RABBITMQ_SERVER")
        .unwrap_or_else(|_| "/usr/lib/rabbitmq/bin/rabbitmq-server".into())
}

pub struct RabbitMq {
    server: Option<Child>,
    epmd: Child,
    pub port: u16,
    dist_port: u16,
    epmd_port: u16,
    node: String,
    dir: tempfile::TempDir,
    log: PathBuf,
}

impl RabbitMq {
    pub fn start() -> RabbitMq {
        let dir = tempfile::tempdir().expect("rabbitmq dir");
        for sub in ["mnesia", "log"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
        }
        std::fs::write(dir.path().join("rabbitmq.conf"), "").expect("config");
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n").expect("plugins");
        let epmd_port = Receiver::free_port();
        let epmd = Command::new("epmd")
            .args(["-port", &epmd_port.to_string(), "-address", "127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start epmd ({e}); install rabbitmq-server (`.ci/run` does)")
            });
        let mut rabbit = RabbitMq {
            server: None,
            epmd,
            port: Receiver::free_port(),
            dist_port: Receiver::free_port(),
            epmd_port,
            node: format!(
                "hl{}x{}@localhost",
                std::process::id(),
                dir.path()
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("0")
                    .replace(|c: char| !c.is_ascii_alphanumeric(), "")
            ),
            log: dir.path().join("rabbitmq.log"),
            dir,
        };
        rabbit.launch();
        rabbit
    }

    /// `amqp://guest:guest@127.0.0.1:<port>/%2f` (guest may log in over loopback).
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn launch(&mut self) {
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        let child = Command::new(server_script())
            .current_dir(d)
            .env("HOME", d)
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_LOGS", "-")
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `{}` ({e}); install rabbitmq-server (`.ci/run` does) or set HOOKLINE_RABBITMQ_SERVER",
                    server_script()
                )
            });
        self.server = Some(child);
    }

    /// Waits until the broker accepts an AMQP login.
    pub async fn ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(conn) =
                lapin::Connection::connect(&self.url(), lapin::ConnectionProperties::default())
                    .await
            {
                let _ = conn.close(200, "ready".into()).await;
                return;
            }
            assert!(
                Instant::now() < deadline,
                "rabbitmq did not start:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `kill -9` the node (its database stays).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.server.take() {
            // The script runs the Erlang VM as a child: kill the whole group.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", c.id())])
                .status();
            let _ = c.wait();
        }
    }

    /// Start again on the same ports, node name and database.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

impl Drop for RabbitMq {
    fn drop(&mut self) {
        self.kill();
        let _ = self.epmd.kill();
        let _ = self.epmd.wait();
    }
}
