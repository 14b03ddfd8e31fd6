//! `file` sink: appends each event as one line of JSON (JSON Lines).
//!
//! ```toml
//! { sink = "file", path = "data/events.jsonl" }
//! { sink = "file", path = "/var/lib/hookline/leads.jsonl", envelope = true, fsync = true }
//! ```
//!
//! A relative `path` resolves against the config file's directory. Parent directories are
//! created and the file is opened for append at start-up, so a path that cannot be written
//! is a config error (`hookline check` only checks that it could be, creating nothing).
//!
//! A writer thread does the writing, never the async runtime's threads: it takes every line
//! waiting, writes each file's lines with one `write_all` (so lines never interleave) and,
//! with `fsync = true`, syncs them to disk with one `fdatasync`, and only then are their
//! deliveries done. Under load many events share one write and one sync. A sink with
//! `fsync = true` has a writer thread of its own, so one file's slow syncs never hold back
//! another's; sinks without `fsync` share one writer thread for the process, so an event that
//! fans out to many files costs one thread hand-over, not one per file (a write to the page
//! cache does not wait for the disk).
//!
//! The file only ever holds whole lines (`file/append.rs`): a write or sync that fails (a full
//! disk) is rolled back to the file's length before it, and the error is retryable, so the
//! retry writes each line once, onto a whole line. A file that ends in a partial line at
//! start-up (the process died mid-write) is cut back to its last whole line, with a warning
//! that says how many bytes were dropped. There is no rotation: the sink appends to the file
//! it opened for as long as it runs.

mod append;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, mpsc};

use append::Appender;
use hookline_plugin_api::{
    BuildContext, ConfigError, Event, PluginConfig, Sink, StageError, async_trait,
};
use serde::Deserialize;
use tokio::sync::oneshot;

/// Most lines written (and synced) together.
const MAX_BATCH: usize = 1024;

/// Config of the `file` sink.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// File to append to; relative to the config file's directory. Required.
    pub path: PathBuf,
    /// Write the envelope (`id`, `source`, `type`, `received_at`, `payload`) instead of the
    /// bare payload. Default `false`.
    #[serde(default)]
    pub envelope: bool,
    /// Sync the data to disk before a delivery counts as done (`fdatasync`). Default `false`.
    #[serde(default)]
    pub fsync: bool,
}

pub fn build(config: &PluginConfig<'_>, ctx: &BuildContext) -> Result<Arc<dyn Sink>, ConfigError> {
    let cfg: FileSinkConfig = config.parse()?;
    if cfg.path.as_os_str().is_empty() {
        return Err(config.error_at("path", "`path` must not be empty"));
    }
    let path = ctx.resolve(&cfg.path);
    if ctx.dry_run {
        crate::support::check_writable(&path).map_err(|e| {
            config.error_at(
                "path",
                format!("cannot open {} for append: {e}", path.display()),
            )
        })?;
        // No file and no writer thread: a dry-run sink is never asked to deliver (and
        // would answer "the writer has stopped").
        return Ok(Arc::new(FileSink {
            path,
            envelope: cfg.envelope,
            file: None,
            lines: mpsc::channel().0,
        }));
    }
    let (file, cut) = open(&path).map_err(|e| {
        config.error_at(
            "path",
            format!("cannot open {} for append: {e}", path.display()),
        )
    })?;
    if cut > 0 {
        tracing::warn!(
            path = %path.display(),
            dropped_bytes = cut,
            "file sink: the file ended in a partial line (a write cut short, e.g. by a crash); \
             cut it back to its last whole line"
        );
    }
    let cannot_start =
        |e: std::io::Error| config.error_at("path", format!("cannot start the file writer: {e}"));
    let lines = if cfg.fsync {
        start_writer().map_err(cannot_start)?
    } else {
        shared_writer().map_err(cannot_start)?
    };
    Ok(Arc::new(FileSink {
        path,
        envelope: cfg.envelope,
        file: Some(Arc::new(Target {
            file,
            fsync: cfg.fsync,
        })),
        lines,
    }))
}

/// Creates the folders and opens the file; returns how many bytes of a partial last line
/// were cut.
fn open(path: &Path) -> std::io::Result<(Appender, u64)> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    Appender::open(path)
}

/// A file open for append and how its writes are made durable. Closed when its sink and
/// every line queued for it are gone.
#[derive(Debug)]
struct Target {
    file: Appender,
    fsync: bool,
}

/// A line to append to `to`, and who to tell once it is written (and synced).
struct Line {
    to: Arc<Target>,
    bytes: Vec<u8>,
    done: oneshot::Sender<Result<(), String>>,
}

/// Starts a writer thread; it runs until every sender is dropped (for a sink of its own: a
/// reload or shutdown drops the sink) and every line already queued is written.
fn start_writer() -> std::io::Result<mpsc::Sender<Line>> {
    let (lines, queue) = mpsc::channel::<Line>();
    std::thread::Builder::new()
        .name("hookline-file".into())
        .spawn(move || write_lines(&queue))?;
    Ok(lines)
}

/// The writer thread of every sink without `fsync`, started by the first; it lives as long
/// as the process.
fn shared_writer() -> std::io::Result<mpsc::Sender<Line>> {
    static SHARED: OnceLock<mpsc::Sender<Line>> = OnceLock::new();
    if let Some(lines) = SHARED.get() {
        return Ok(lines.clone());
    }
    let lines = start_writer()?;
    // Two sinks built at once may both start one; the loser's thread ends with its sender.
    Ok(SHARED.get_or_init(|| lines).clone())
}

/// The writer thread's loop: takes every line waiting (up to [`MAX_BATCH`]) and appends each
/// file's lines, in the order they came, with one write (and one sync).
fn write_lines(queue: &mpsc::Receiver<Line>) {
    let mut buf = Vec::new();
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(line) => batch.push(line),
                Err(_) => break,
            }
        }
        while let Some(to) = batch.first().map(|line| Arc::clone(&line.to)) {
            let (for_this, rest): (Vec<Line>, Vec<Line>) = batch
                .into_iter()
                .partition(|line| Arc::ptr_eq(&line.to, &to));
            batch = rest;
            buf.clear();
            for line in &for_this {
                buf.extend_from_slice(&line.bytes);
            }
            let result = to.file.append(&buf, to.fsync).map_err(|e| e.to_string());
            for line in for_this {
                let _ = line.done.send(result.clone());
            }
        }
    }
}

/// Runtime form of the `file` sink: its file, and the queue to the writer thread that
/// appends to it.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    envelope: bool,
    /// `None` for a dry run, which opens nothing.
    file: Option<Arc<Target>>,
    lines: mpsc::Sender<Line>,
}

#[async_trait]
impl Sink for FileSink {
    async fn deliver(&self, event: &Event) -> Result<(), StageError> {
        let mut bytes = crate::support::encode(event, self.envelope)?;
        bytes.push(b'\n');
        let failed = |e: &dyn std::fmt::Display| {
            StageError::retryable(format!("cannot write to {}: {e}", self.path.display()))
        };
        let to = self
            .file
            .clone()
            .ok_or_else(|| failed(&"a dry run writes nothing"))?;
        let (done, written) = oneshot::channel();
        self.lines
            .send(Line { to, bytes, done })
            .map_err(|_| failed(&"the writer has stopped"))?;
        match written.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(failed(&e)),
            Err(_) => Err(failed(&"the writer has stopped")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{config, event, leadshark_v1, leadshark_v2, spanned};
    use serde_json::Value;

    fn sink(dir: &Path, extra: &str) -> Arc<dyn Sink> {
        let ctx = BuildContext::new(dir, "test", "file");
        build(
            &config("file", &format!("path = \"out/events.jsonl\"\n{extra}")),
            &ctx,
        )
        .expect("builds")
    }

    #[test]
    fn a_dry_run_creates_nothing_but_still_checks_the_path() {
        let dir = tempfile::tempdir().expect("dir");
        let ctx = BuildContext::new(dir.path(), "test", "file").with_dry_run(true);
        build(&config("file", "path = \"out/events.jsonl\""), &ctx).expect("builds");
        assert!(
            !dir.path().join("out").exists(),
            "no folder or file created"
        );
        std::fs::write(dir.path().join("plain"), "").expect("write");
        let err = build(&config("file", "path = \"plain/events.jsonl\""), &ctx)
            .expect_err("a file is in the way");
        assert!(err.message.contains("not a folder"), "{}", err.message);
    }

    fn lines(dir: &Path) -> Vec<Value> {
        std::fs::read_to_string(dir.join("out/events.jsonl"))
            .expect("file written")
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect()
    }

    #[tokio::test]
    async fn appends_payloads_as_json_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = sink(dir.path(), "fsync = true");
        s.deliver(&event("email.captured", leadshark_v1()))
            .await
            .expect("v1");
        s.deliver(&event("email.captured", leadshark_v2()))
            .await
            .expect("v2");
        // A second sink on the same file appends; it does not truncate.
        sink(dir.path(), "")
            .deliver(&event("t", leadshark_v2()))
            .await
            .expect("again");
        assert_eq!(
            lines(dir.path()),
            [leadshark_v1(), leadshark_v2(), leadshark_v2()]
        );
    }

    #[tokio::test]
    async fn envelope_wraps_the_payload() {
        let dir = tempfile::tempdir().expect("tempdir");
        sink(dir.path(), "envelope = true")
            .deliver(&event("email.captured", leadshark_v2()))
            .await
            .expect("ok");
        let got = lines(dir.path()).remove(0);
        assert_eq!(got["type"], "email.captured");
        assert_eq!(got["source"], "leadshark");
        assert_eq!(got["payload"], leadshark_v2());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_deliveries_write_whole_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = sink(dir.path(), "");
        let big = "x".repeat(64 * 1024);
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let s = Arc::clone(&s);
                let payload = serde_json::json!({"i": i, "pad": big});
                tokio::spawn(async move { s.deliver(&event("t", payload)).await })
            })
            .collect();
        for t in tasks {
            t.await.expect("task").expect("delivered");
        }
        let mut seen: Vec<i64> = lines(dir.path())
            .iter()
            .map(|v| v["i"].as_i64().expect("i"))
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..32).collect::<Vec<_>>());
    }

    /// Sinks without `fsync` share one writer thread: lines for several files, and for one
    /// file from two sinks, queued together, each reach their own file whole and in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sinks_sharing_the_writer_each_get_their_own_lines_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctx = BuildContext::new(dir.path(), "test", "file");
        let sink = |file: &str, extra: &str| {
            build(
                &config("file", &format!("path = \"{file}\"\n{extra}")),
                &ctx,
            )
            .expect("builds")
        };
        let sinks = [
            ("a.jsonl", sink("a.jsonl", "")),
            ("b.jsonl", sink("b.jsonl", "envelope = true")),
            ("c.jsonl", sink("c.jsonl", "fsync = true")),
            ("a.jsonl", sink("a.jsonl", "")),
        ];
        let tasks: Vec<_> = sinks
            .iter()
            .enumerate()
            .map(|(s, (_, sink))| {
                let sink = Arc::clone(sink);
                tokio::spawn(async move {
                    for i in 0..200 {
                        let payload = serde_json::json!({"sink": s, "i": i});
                        sink.deliver(&event("t", payload)).await.expect("delivered");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
        let read = |file: &str| -> Vec<(u64, u64)> {
            std::fs::read_to_string(dir.path().join(file))
                .expect("written")
                .lines()
                .map(|l| {
                    let v: Value = serde_json::from_str(l).expect("each line is JSON");
                    let p = if v.get("payload").is_some() {
                        &v["payload"]
                    } else {
                        &v
                    };
                    (
                        p["sink"].as_u64().expect("sink"),
                        p["i"].as_u64().expect("i"),
                    )
                })
                .collect()
        };
        let in_order = |lines: &[(u64, u64)], s: u64| {
            let of: Vec<u64> = lines.iter().filter(|l| l.0 == s).map(|l| l.1).collect();
            assert_eq!(
                of,
                (0..200).collect::<Vec<_>>(),
                "sink {s}: every line, in order"
            );
        };
        let a = read("a.jsonl");
        assert_eq!(a.len(), 400, "two sinks on one file");
        in_order(&a, 0);
        in_order(&a, 3);
        let b = read("b.jsonl");
        assert_eq!(b.len(), 200);
        in_order(&b, 1);
        let c = read("c.jsonl");
        assert_eq!(c.len(), 200);
        in_order(&c, 2);
    }

    #[tokio::test]
    async fn a_half_line_left_by_a_crash_is_cut_at_start_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("out")).expect("mkdir");
        let whole = format!("{}\n", leadshark_v1());
        std::fs::write(
            dir.path().join("out/events.jsonl"),
            format!("{whole}{{\"event\":\"email.cap"),
        )
        .expect("write");
        sink(dir.path(), "")
            .deliver(&event("email.captured", leadshark_v2()))
            .await
            .expect("delivered");
        assert_eq!(lines(dir.path()), [leadshark_v1(), leadshark_v2()]);
    }

    #[test]
    fn config_errors_are_located() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctx = BuildContext::new(dir.path(), "test", "file");
        std::fs::write(dir.path().join("blocker"), "").expect("write");
        let text = "path = \"blocker/events.jsonl\"";
        let err = build(&config("file", text), &ctx).expect_err("parent is a file");
        assert_eq!(spanned(text, &err), "\"blocker/events.jsonl\"");
        assert!(err.message.contains("cannot open"), "{}", err.message);

        let text = "path = \"a.jsonl\"\nfsinc = true";
        assert_eq!(
            spanned(
                text,
                &build(&config("file", text), &ctx).expect_err("unknown")
            ),
            "fsinc"
        );
        let err = build(&config("file", "envelope = true"), &ctx).expect_err("missing");
        assert!(err.message.contains("path"), "{}", err.message);
    }
}
