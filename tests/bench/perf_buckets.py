#!/usr/bin/env python3
"""Where the CPU time goes: sorts `perf record -g` samples of a Hookline run into the
steps of the request path, and says what the innermost frames were doing.

    perf script -i perf.data -F comm,tid,ip,sym --no-inline | python3 tests/bench/perf_buckets.py [--us-per-req N]

Each sample goes to the first component (in the order below) that appears anywhere in
its stack, so time spent logging from inside the ingest handler counts as logging, and
malloc called by the file sink counts as the file sink. With --us-per-req (the server's
CPU per request measured in the same run) each share is also shown in µs per request.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter

# (component, pattern over any frame of the stack), most specific first.
COMPONENTS = [
    ("logging and spans (tracing)", r"tracing_subscriber|tracing_core::|tracing::span"),
    ("metrics (prometheus)", r"prometheus::"),
    ("journal: commit + fsync", r"fsync|fdatasync|unixSync|sqlite3PagerSync|sqlite3PagerCommitPhaseOne|walWriteOneFrame|sqlite3WalFrames"),
    ("journal: SQL (sqlite3)", r"sqlite3|rusqlite::"),
    ("journal: encode + queue (callers)", r"hookline::journal"),
    ("file sink (encode, queue, writer thread)", r"hookline_builtin::sink::file|tokio::fs::|tokio::io::blocking"),
    ("filter/transform plugins", r"hookline_builtin::(filter|transform)"),
    ("workers + stage runner (event copies, settle)", r"hookline::runtime|TrackedFuture"),
    ("verify (HMAC, JSON parse)", r"hookline::verify"),
    ("ingest handler (envelope, routing)", r"hookline::ingest"),
    ("HTTP (hyper, axum, sockets)", r"hyper::|hyper_util::|axum::|axum_core::|mio::|tokio::net::"),
    ("config watcher (notify)", r"notify::|inotify"),
    ("tokio scheduler (wake, park, steal)", r"tokio::runtime::"),
]

LEAVES = [
    ("kernel", r"^k:"),
    ("allocator (malloc/free)", r"malloc|free|_int_|unlink_chunk|realloc|calloc|cfree|__rust_(alloc|dealloc|realloc)|_rjem_|mallocx|sdallocx"),
    ("memcpy/memmove", r"memmove|memcpy|memset"),
    ("sqlite", r"sqlite3|walChecksum|unixWrite|pager"),
    ("serde_json", r"serde_json::|serde_core::|itoa|ryu|zmij"),
    ("HMAC/SHA-256", r"sha2::|hmac::|sha256"),
    ("hashing (maps)", r"hashbrown|indexmap|siphash|foldhash|SipHasher"),
]


# The journal writer thread alone, by what it was doing.
JOURNAL = [
    ("checkpoint (WAL → database file)", r"sqlite3Checkpoint"),
    ("fsync", r"do_fsync|fsync|fdatasync"),
    ("WAL frames written at commit", r"pagerWalFrames|sqlite3PagerCommitPhaseOne"),
    ("accept: the event row", r"sqlite::events::accept|Journal>::accept::"),
    ("freeing finished jobs (their events)", r"drop_in_place<<hookline::journal::sqlite::SqliteJournal"),
    ("settle: history rows, delivery state", r"settle_many"),
    ("BEGIN/COMMIT, the rest of the commit", r"exec_cached"),
    ("queue, replies, waiting", r"."),
]


def samples(lines):
    stack: list[str] = []
    comm = None
    for raw in lines:
        line = raw.rstrip("\n")
        if not line.strip():
            if comm is not None:
                yield comm, stack
            stack, comm = [], None
            continue
        if not line.startswith("\t") and not line.startswith(" " * 8):
            comm = line.strip().rsplit(" ", 1)[0].strip()
            continue
        parts = line.strip().split(" ", 1)
        addr, sym = parts[0], parts[1] if len(parts) > 1 else "[unknown]"
        stack.append(("k:" if addr.startswith("ffffffff") else "") + sym)
    if comm is not None:
        yield comm, stack


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--us-per-req", type=float)
    args = p.parse_args()
    comps = [(n, re.compile(r)) for n, r in COMPONENTS]
    leaves = [(n, re.compile(r)) for n, r in LEAVES]
    by_comp: Counter[str] = Counter()
    by_leaf: Counter[str] = Counter()
    by_thread: Counter[str] = Counter()
    by_journal: Counter[str] = Counter()
    journal_rx = [(n, re.compile(r)) for n, r in JOURNAL]
    total = 0
    for comm, stack in samples(sys.stdin):
        total += 1
        by_thread[comm] += 1
        if comm.startswith("hookline-journa"):
            for name, rx in journal_rx:
                if any(rx.search(f) for f in stack):
                    by_journal[name] += 1
                    break
        for name, rx in comps:
            if any(rx.search(f) for f in stack):
                by_comp[name] += 1
                break
        else:
            by_comp["other / unattributed"] += 1
        leaf = stack[0] if stack else ""
        for name, rx in leaves:
            if rx.search(leaf):
                by_leaf[name] += 1
                break
        else:
            by_leaf["other"] += 1
    if not total:
        raise SystemExit("no samples")

    def table(title: str, counts: Counter[str]) -> None:
        us = args.us_per_req
        print(f"\n| {title} | share |" + (" µs/req |" if us else ""))
        print("|---|---:|" + ("---:|" if us else ""))
        for name, n in counts.most_common():
            share = n / total
            print(f"| {name} | {share:.1%} |" + (f" {share * us:.1f} |" if us else ""))

    print(f"{total} samples")
    table("component (whole stack)", by_comp)
    table("innermost frame", by_leaf)
    table("thread", by_thread)
    if by_journal:
        table("journal writer thread (share of all samples)", by_journal)


if __name__ == "__main__":
    main()
