//! Appending whole lines only. A write (or its sync) that fails is rolled back: the file is
//! cut back to its length before the write, so a full disk leaves no half line for the retry
//! and the next record to be glued onto. A file that ends in a partial line anyway (the
//! process died mid-write) is cut back to its last whole line when it is opened.
//!
//! Every handle on one file in this process shares one lock (found by device and inode), held
//! across measure, write, sync and rollback: a rollback cannot cut off lines another sink
//! appended meanwhile, and a sink opened by a reload cannot mistake a line another handle is
//! halfway through for a crash's leftover. Writers in other processes are not coordinated
//! with; the file is hookline's.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError, Weak};

/// How far back [`cut_partial_line`] reads at a time.
const CHUNK: usize = 64 * 1024;

/// What every handle on one file shares.
#[derive(Debug, Default)]
struct Tail {
    /// A rollback that failed, to be made before anything else is written: the file may
    /// still end in part of the failed write.
    owed: Option<u64>,
}

#[cfg(unix)]
type Identity = (u64, u64);

#[cfg(unix)]
fn identity(file: &File, _path: &Path) -> io::Result<Identity> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata()?;
    Ok((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
type Identity = std::path::PathBuf;

#[cfg(not(unix))]
fn identity(_file: &File, path: &Path) -> io::Result<Identity> {
    path.canonicalize()
}

/// The shared [`Tail`] of every file open for append, while any handle on it lives.
static TAILS: LazyLock<Mutex<HashMap<Identity, Weak<Mutex<Tail>>>>> = LazyLock::new(Mutex::default);

fn tail_of(id: Identity) -> Arc<Mutex<Tail>> {
    let mut tails = TAILS.lock().unwrap_or_else(PoisonError::into_inner);
    tails.retain(|_, tail| tail.strong_count() > 0);
    if let Some(tail) = tails.get(&id).and_then(Weak::upgrade) {
        return tail;
    }
    let tail = Arc::default();
    tails.insert(id, Arc::downgrade(&tail));
    tail
}

/// A panic elsewhere leaves a [`Tail`] as valid as it was (its one field is set last).
fn lock(tail: &Mutex<Tail>) -> MutexGuard<'_, Tail> {
    tail.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A file open for append that only ever grows by whole writes.
#[derive(Debug)]
pub(super) struct Appender {
    file: File,
    tail: Arc<Mutex<Tail>>,
}

impl Appender {
    /// Opens `path` for append (creating it, not its folders) and cuts a partial last line
    /// off; returns the appender and how many bytes were cut.
    pub(super) fn open(path: &Path) -> io::Result<(Appender, u64)> {
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)?;
        let tail = tail_of(identity(&file, path)?);
        let cut = {
            let mut owed = lock(&tail);
            settle(&file, &mut owed)?;
            cut_partial_line(&file)?
        };
        Ok((Appender { file, tail }, cut))
    }

    /// Appends `buf` (whole lines), then syncs it with `fsync`. On an error the file is as
    /// it was before.
    pub(super) fn append(&self, buf: &[u8], fsync: bool) -> io::Result<()> {
        self.append_with(buf, |mut file, buf| {
            file.write_all(buf)?;
            if fsync { file.sync_data() } else { Ok(()) }
        })
    }

    /// [`Appender::append`] with the write-and-sync step given, so tests can make it fail
    /// partway.
    fn append_with(
        &self,
        buf: &[u8],
        write: impl FnOnce(&File, &[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut tail = lock(&self.tail);
        settle(&self.file, &mut tail)?;
        // The length to roll back to: `lseek` to the end is a cheaper call than `statx`, and
        // this runs once per write.
        let before = (&self.file).seek(SeekFrom::End(0))?;
        let Err(e) = write(&self.file, buf) else {
            return Ok(());
        };
        match self.file.set_len(before) {
            Ok(()) => Err(e),
            Err(r) => {
                tail.owed = Some(before);
                Err(io::Error::new(
                    e.kind(),
                    format!(
                        "{e} (and rolling the write back failed: {r}; tried again first thing)"
                    ),
                ))
            }
        }
    }
}

/// Makes a rollback still owed. Never lengthens the file (which would add zeros).
fn settle(file: &File, tail: &mut Tail) -> io::Result<()> {
    if let Some(len) = tail.owed {
        if file.metadata()?.len() > len {
            file.set_len(len)?;
        }
        tail.owed = None;
    }
    Ok(())
}

/// Cuts the file back to just after its last `\n` (to nothing when it has none); returns how
/// many bytes were cut.
fn cut_partial_line(mut file: &File) -> io::Result<u64> {
    let len = file.metadata()?.len();
    let mut keep = 0;
    let mut end = len;
    let mut chunk = vec![0; CHUNK];
    while end > 0 {
        let start = end.saturating_sub(CHUNK as u64);
        let buf = &mut chunk[..usize::try_from(end - start).unwrap_or(CHUNK)];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(buf)?;
        if let Some(at) = buf.iter().rposition(|b| *b == b'\n') {
            keep = start + at as u64 + 1;
            break;
        }
        end = start;
    }
    if keep < len {
        file.set_len(keep)?;
    }
    Ok(len - keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "{\"a\":1}\n{\"b\":2}\n";

    fn file_with(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("events.jsonl");
        std::fs::write(&path, text).expect("write");
        (dir, path)
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).expect("read")
    }

    fn disk_full() -> io::Error {
        io::Error::from(io::ErrorKind::StorageFull)
    }

    #[test]
    fn a_write_that_fails_partway_is_rolled_back() {
        let (_dir, path) = file_with(GOOD);
        let (appender, cut) = Appender::open(&path).expect("open");
        assert_eq!(cut, 0);
        let lines = b"{\"c\":3}\n{\"d\":4}\n";
        let err = appender
            .append_with(lines, |mut file, buf| {
                file.write_all(&buf[..11])?;
                Err(disk_full())
            })
            .expect_err("the write fails");
        assert_eq!(err.kind(), io::ErrorKind::StorageFull, "the cause is kept");
        assert_eq!(
            read(&path),
            GOOD,
            "neither the whole line nor the half one is kept"
        );

        // The retry appends each line once, onto a whole line.
        appender.append(lines, true).expect("retry");
        assert_eq!(read(&path), format!("{GOOD}{{\"c\":3}}\n{{\"d\":4}}\n"));
    }

    #[test]
    fn a_failed_sync_is_rolled_back_too() {
        let (_dir, path) = file_with(GOOD);
        let (appender, _) = Appender::open(&path).expect("open");
        appender
            .append_with(b"{\"c\":3}\n", |mut file, buf| {
                file.write_all(buf)?;
                Err(io::Error::other("sync failed"))
            })
            .expect_err("the sync fails");
        assert_eq!(
            read(&path),
            GOOD,
            "a line reported failed is not kept (its retry would duplicate it)"
        );
    }

    #[test]
    fn opening_cuts_a_partial_last_line() {
        let (_dir, path) = file_with(&format!("{GOOD}{{\"c\":"));
        let (appender, cut) = Appender::open(&path).expect("open");
        assert_eq!(cut, 5);
        assert_eq!(read(&path), GOOD);
        appender.append(b"{\"c\":3}\n", false).expect("append");
        assert_eq!(read(&path), format!("{GOOD}{{\"c\":3}}\n"));
    }

    #[test]
    fn a_partial_line_longer_than_a_chunk_is_cut_whole() {
        let half = format!("{{\"pad\":\"{}", "x".repeat(3 * CHUNK));
        let (_dir, path) = file_with(&format!("{GOOD}{half}"));
        let (_, cut) = Appender::open(&path).expect("open");
        assert_eq!(cut, half.len() as u64);
        assert_eq!(read(&path), GOOD);
    }

    #[test]
    fn a_file_without_any_newline_is_emptied_and_a_whole_one_is_left_alone() {
        let (_dir, path) = file_with("{\"half\":");
        assert_eq!(Appender::open(&path).expect("open").1, 8);
        assert_eq!(read(&path), "");
        assert_eq!(Appender::open(&path).expect("open empty").1, 0);
        std::fs::write(&path, GOOD).expect("write");
        assert_eq!(Appender::open(&path).expect("open whole").1, 0);
        assert_eq!(read(&path), GOOD);
    }

    #[test]
    fn a_rollback_that_failed_is_made_before_the_next_write() {
        let (_dir, path) = file_with(GOOD);
        let (appender, _) = Appender::open(&path).expect("open");
        // As if a write left part of a line and the truncation after it failed.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"{\"c\":3}\n{\"d\""))
            .expect("damage");
        lock(&appender.tail).owed = Some(GOOD.len() as u64);
        appender.append(b"{\"c\":3}\n", false).expect("append");
        assert_eq!(read(&path), format!("{GOOD}{{\"c\":3}}\n"));
        assert_eq!(lock(&appender.tail).owed, None);
    }

    #[test]
    fn handles_on_one_file_share_one_lock() {
        let (dir, path) = file_with(GOOD);
        let (a, _) = Appender::open(&path).expect("open");
        let (b, _) = Appender::open(&dir.path().join(".").join("events.jsonl")).expect("again");
        assert!(Arc::ptr_eq(&a.tail, &b.tail), "same file, same lock");
        let (other, _) = Appender::open(&dir.path().join("other.jsonl")).expect("other");
        assert!(!Arc::ptr_eq(&a.tail, &other.tail));
        // A rollback on one handle cuts only what that handle wrote.
        b.append(b"{\"c\":3}\n", false).expect("b");
        a.append_with(b"{\"d\":4}\n", |mut file, buf| {
            file.write_all(buf)?;
            Err(disk_full())
        })
        .expect_err("fails");
        assert_eq!(read(&path), format!("{GOOD}{{\"c\":3}}\n"));
    }
}
