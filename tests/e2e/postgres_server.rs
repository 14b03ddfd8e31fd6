//! A throwaway PostgreSQL server for the `postgres` sink tests: its own data directory and
//! port on 127.0.0.1, trust authentication except for one password user, stopped on drop.
//!
//! PostgreSQL refuses to run as root, and the tests run as root on CI: `initdb` and
//! `postgres` then run as the `postgres` system user (made by Debian's package) through
//! `setpriv`, which execs, so the child we hold is the postmaster itself.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A user that must log in with [`PASSWORD`] (scram-sha-256); every other user is trusted.
pub const PASSWORD_USER: &str = "hookline_pw";
pub const PASSWORD: &str = "pg-e2e-Secret-42";

pub struct PgServer {
    child: Option<Child>,
    bin: PathBuf,
    /// Holds `data/` and `sock/`; traversable by the server's user.
    dir: tempfile::TempDir,
    pub port: u16,
}

/// `/usr/lib/postgresql/<version>/bin`, the newest installed.
fn bin_dir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path().join("bin"))
                .filter(|b| b.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort_by_key(|d| {
        d.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop().unwrap_or_else(|| {
        panic!("no /usr/lib/postgresql/*/bin/initdb: install postgresql (.ci/run does)")
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `program args...`, as the `postgres` user when we are root.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

impl PgServer {
    /// A new cluster on a free port, accepting connections.
    pub fn start() -> PgServer {
        Self::start_with(false)
    }

    /// A cluster that accepts TCP connections over TLS only (`hostssl`), with a certificate
    /// for `127.0.0.1` issued by a CA of its own ([`PgServer::ca_file`]).
    pub fn start_tls() -> PgServer {
        Self::start_with(true)
    }

    /// The CA certificate that issued the server's (TLS clusters only).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("tls/ca.crt")
    }

    fn start_with(tls: bool) -> PgServer {
        let bin = bin_dir();
        // Under /tmp, whatever $TMPDIR says: the server's user must be able to reach it.
        let dir = tempfile::Builder::new()
            .prefix("hookline-pg-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(dir.path().join("sock")).expect("sock dir");
        std::fs::create_dir_all(&data).expect("data dir");
        if tls {
            make_certificates(&dir.path().join("tls"));
        }
        if is_root() {
            let status = Command::new("chmod")
                .arg("755")
                .arg(dir.path())
                .status()
                .expect("chmod");
            assert!(status.success());
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path().join("data"))
                .arg(dir.path().join("sock"))
                .args(tls.then(|| dir.path().join("tls")))
                .status()
                .expect("chown");
            assert!(status.success());
        }
        let out = as_server_user(&bin.join("initdb"))
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let host = if tls { "hostssl" } else { "host" };
        let hba = format!(
            "local all all trust\n{host} all {PASSWORD_USER} 127.0.0.1/32 scram-sha-256\n{host} all all 127.0.0.1/32 trust\n"
        );
        std::fs::write(data.join("pg_hba.conf"), hba).expect("pg_hba.conf");
        if tls {
            let conf = format!(
                "ssl = on\nssl_cert_file = '{0}/server.crt'\nssl_key_file = '{0}/server.key'\n",
                dir.path().join("tls").display()
            );
            let mut text = std::fs::read_to_string(data.join("postgresql.conf")).expect("conf");
            text.push_str(&conf);
            std::fs::write(data.join("postgresql.conf"), text).expect("conf");
        }
        let mut server = PgServer {
            child: None,
            bin,
            dir,
            port: free_port(),
        };
        server.run();
        server.sql(&format!(
            "CREATE ROLE {PASSWORD_USER} LOGIN PASSWORD '{PASSWORD}'"
        ));
        server.sql("CREATE DATABASE crm");
        server.sql_in(
            "crm",
            &format!("GRANT ALL ON SCHEMA public TO {PASSWORD_USER}"),
        );
        server
    }

    /// Start the postmaster on the data directory and wait until it answers.
    fn run(&mut self) {
        let child = as_server_user(&self.bin.join("postgres"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.dir.path().join("sock"))
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=40",
                "-c",
                "shared_buffers=16MB",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.path().join("server.log"))
                    .expect("server log"),
            ))
            .spawn()
            .expect("spawn postgres");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = Command::new("pg_isready")
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Fast shutdown (SIGINT), waiting for the postmaster to exit.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Start again after [`PgServer::stop`], on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// `postgres://USER@127.0.0.1:PORT/crm`, the database the tests use.
    pub fn url(&self, user: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/crm", self.port)
    }

    /// Run SQL in the `postgres` database as the superuser; the output unaligned, tuples only.
    pub fn sql(&self, sql: &str) -> String {
        self.sql_in("postgres", sql)
    }

    pub fn crm(&self, sql: &str) -> String {
        self.sql_in("crm", sql)
    }

    pub fn sql_in(&self, db: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .args([
                "-X",
                "-q",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Immediate shutdown: the cluster is thrown away.
            let _ = Command::new("kill")
                .args(["-QUIT", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `ca.crt` (a CA of its own) and `server.crt`/`server.key` for 127.0.0.1, with openssl.
fn make_certificates(dir: &Path) {
    std::fs::create_dir_all(dir).expect("tls dir");
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\nextendedKeyUsage = serverAuth\n",
    )
    .expect("ext");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let steps: [Vec<&str>; 3] = [
        [
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=hookline test CA",
            ],
        ]
        .concat(),
        [
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat(),
        vec![
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    ];
    for args in steps {
        let out = Command::new("openssl")
            .args(&args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The server refuses a key others can read.
    let status = Command::new("chmod")
        .args(["600"])
        .arg(dir.join("server.key"))
        .status()
        .expect("chmod");
    assert!(status.success());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}
