#!/usr/bin/env python3
"""Benchmark driver: Hookline against the bare HTTP stack, on 127.0.0.1.

Builds the release binaries (or, with `--cargo-profile dist`, the binaries that ship), then,
in one run, measures every candidate under the same load, interleaved (A B C, B C A, C A B,
...: each rep one place further on) and repeated, and reports medians with each Hookline row
as a ratio to the baseline measured beside it:

  baseline          tests/bench/baseline: axum + constant-time HMAC check + append to a file
  baseline-log      the same, answering only after a group commit: the bodies appended and
                    `fdatasync`ed by one writer thread (what durability alone costs)
  baseline-sqlite   the same, the group committed as one row per body in a SQLite table (WAL,
                    `synchronous = FULL`), then appended to the file (a minimal SQLite journal)
  baseline-sqlite-rows  the same with the rows Hookline's journal writes for an event of one
                    pipeline (its events row and three indexes; its history row and the
                    progress watermark in the next commit): the same SQL, none of the machinery
  hookline-file     Hookline, SQLite journal (2xx after the commit) + `file` sink
  hookline-ingest   Hookline accepting alone: verified, deduplicated, journaled, answered;
                    no pipeline matches, so nothing runs (compare with baseline-sqlite-rows)
  hookline-drop     Hookline, one pipeline whose first stage drops every event: the run and
                    its settle without a sink (hookline-file minus this is the sink)
  hookline-fanout3  Hookline, every event to three pipelines (file; set→file; cel→file)
  hookline-pipelines3, hookline-pipelines10
                    Hookline, every event to 3 / 10 pipelines, each a `file` sink (the
                    cost of an extra pipeline: compare with hookline-file)
  hookline-celset   Hookline, a `cel` filter and a `set` transform before the `file` sink
                    (two native stages under load: compare with hookline-file)
  hookline-wasm     Hookline, `wasm:redact` transform in front of the file sink (skipped,
                    with the reason, while the build has no WASM plugins)

Load comes from `hookline send` and/or `wrk` with tests/bench/wrk.lua; both send unique
signed LeadShark bodies (wrk from a pool the driver signs beforehand), at a fixed
concurrency for a fixed duration. Per run it records req/s, p50, p99, errors,
peak RSS (VmHWM), idle RSS, start-up to first HTTP answer, CPU per request of the server
and of the load generator, and for Hookline how long the sinks took to catch up with
every 2xx (every acknowledged event must reach every sink's file).

    python3 tests/bench/run.py                       # send and wrk, 3 reps, 10 s each
    python3 tests/bench/run.py --loads send --reps 5 --duration 15s
    python3 tests/bench/run.py --profile hookline-file   # one run under `perf record`
    python3 tests/bench/run.py --loads wrk --syscalls baseline,hookline-file   # system calls per request
    python3 tests/bench/run.py --loads wrk --cargo-profile dist \
        --compare rel=target/release/hookline --compare-baseline rel=target/release/bench-baseline

Results: target/bench/<time>/results.{md,json} (and the run directories, logs included).
Nothing here asserts on timings: benchmarks report.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import hmac
import http.client
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "tests" / "bench"
SECRET = "bench-secret"
PATH = "/webhooks/leadshark"
CLK_TCK = os.sysconf("SC_CLK_TCK")

CANDIDATES = {
    "baseline": {"kind": "baseline", "sinks": ["out.jsonl"]},
    # The ceiling with a durable record under each answer: what a journal must cost at least.
    "baseline-log": {"kind": "baseline", "durable": ["--durable", "log"], "sinks": ["out.jsonl"], "optional": True},
    "baseline-sqlite": {
        "kind": "baseline",
        "durable": ["--durable", "sqlite", "--db", "out-journal.db"],
        "sinks": ["out.jsonl"],
        "optional": True,
    },
    "baseline-sqlite-rows": {
        "kind": "baseline",
        "durable": ["--durable", "sqlite-rows", "--db", "out-journal.db"],
        "sinks": ["out.jsonl"],
        "optional": True,
    },
    "hookline-file": {
        "kind": "hookline",
        "config": "file.toml",
        "sinks": ["out/archive.jsonl"],
    },
    "hookline-file-nodedupe": {
        "kind": "hookline",
        "config": "file-nodedupe.toml",
        "sinks": ["out/archive.jsonl"],
        "optional": True,
    },
    # Hookline taken apart: accepting alone (nothing runs), and a run that drops every event
    # (no sink): hookline-drop minus hookline-ingest is the run, hookline-file minus
    # hookline-drop the sink.
    "hookline-ingest": {"kind": "hookline", "config": "ingest.toml", "sinks": [], "optional": True},
    "hookline-drop": {"kind": "hookline", "config": "drop.toml", "sinks": [], "optional": True},
    "hookline-fanout3": {
        "kind": "hookline",
        "config": "fanout3.toml",
        "sinks": ["out/archive.jsonl", "out/tagged.jsonl", "out/filtered.jsonl"],
    },
    # The scale rows: cost per extra pipeline, and two native stages under load.
    "hookline-pipelines3": {
        "kind": "hookline",
        "config": "pipelines3.toml",
        "sinks": [f"out/p{i}.jsonl" for i in range(1, 4)],
    },
    "hookline-pipelines10": {
        "kind": "hookline",
        "config": "pipelines10.toml",
        "sinks": [f"out/p{i}.jsonl" for i in range(1, 11)],
    },
    "hookline-celset": {
        "kind": "hookline",
        "config": "celset.toml",
        "sinks": ["out/archive.jsonl"],
    },
    "hookline-wasm": {
        "kind": "hookline",
        "config": "wasm.toml",
        "sinks": ["out/redacted.jsonl"],
        "wasm": "redact",
    },
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load_average() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


# ---------------------------------------------------------------- process measurements


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM / RssAnon / RssFile in KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0])
    return out


class AnonPeak(threading.Thread):
    """Samples the server's RSS every 50 ms, so a peak splits into the process's own memory
    (RssAnon: heap, stacks, the allocator's caches) and mapped files (RssFile: mostly the
    binary's code, shared and reclaimable), which VmHWM alone does not tell apart."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_anon_kib = 0
        self.file_kib = 0
        self.done = threading.Event()
        self.start()

    def run(self) -> None:
        while not self.done.wait(0.05):
            try:
                st = proc_status(self.pid)
            except OSError:
                return
            if st.get("RssAnon", 0) > self.peak_anon_kib:
                self.peak_anon_kib = st["RssAnon"]
                self.file_kib = st.get("RssFile", 0)

    def stop(self) -> None:
        self.done.set()
        self.join()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (all its threads)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def http_answer(addr: str, timeout: float = 0.5) -> bool:
    host, port = addr.rsplit(":", 1)
    try:
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
        conn.request("GET", PATH)
        conn.getresponse().read()
        conn.close()
        return True
    except OSError:
        return False


def journal_counters(admin: str | None) -> dict[str, float]:
    """Group-commit counters from Hookline's /metrics: commits, and operations committed
    (the batch-size histogram's count is commits; its sum is operations)."""
    if not admin:
        return {}
    host, port = admin.rsplit(":", 1)
    try:
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        for key, name in [("commits", "hookline_journal_batch_size_count"), ("operations", "hookline_journal_batch_size_sum")]:
            if line.startswith(name + " "):
                out[key] = float(line.split()[1])
    return out


class Server:
    """A candidate process: started, timed to its first HTTP answer, measured, stopped."""

    def __init__(self, cmd: list[str], cwd: Path, env: dict[str, str], tag: str):
        # Not in `cwd`: Hookline watches its config file's directory, and a log written
        # there would wake the watcher on every line.
        (cwd / "logs").mkdir(exist_ok=True)
        self.stdout_path = cwd / "logs" / f"{tag}.stdout"
        self.stderr_path = cwd / "logs" / f"{tag}.stderr"
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.stdout_path.open("wb"),
            stderr=self.stderr_path.open("wb"),
        )
        self.addr = self._wait_listening(timeout=30)
        admin = re.search(rb"admin on http://(\S+)", self.stdout_path.read_bytes())
        self.admin = admin.group(1).decode() if admin else None
        while not http_answer(self.addr):
            if time.perf_counter() - started > 30:
                raise RuntimeError(f"{cmd[0]} never answered HTTP on {self.addr}")
            time.sleep(0.001)
        self.ready_ms = (time.perf_counter() - started) * 1000

    def _wait_listening(self, timeout: float) -> str:
        deadline = time.perf_counter() + timeout
        pattern = re.compile(rb"listening on http://(\S+)")
        while time.perf_counter() < deadline:
            m = pattern.search(self.stdout_path.read_bytes())
            if m:
                return m.group(1).decode()
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"exited with {self.proc.returncode} before listening:\n"
                    + self.stderr_path.read_text(errors="replace")[-3000:]
                )
            time.sleep(0.0005)
        raise RuntimeError("did not print its address in time")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 40) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---------------------------------------------------------------- load generators


def run_load(cmd: list[str], env: dict[str, str] | None = None) -> str:
    """Run a load generator to its end; its stdout. (Its CPU time is read by the caller
    as the change in RUSAGE_CHILDREN: reaped children only, so servers do not count.)"""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, err = proc.communicate()
    # `hookline send` exits 1 when some requests did not get a 2xx; its summary says how many.
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {err.decode()[-2000:]}")
    return out.decode()


def children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def load_send(hookline: Path, addr: str, args) -> dict:
    before = children_cpu()
    out = run_load(
        [
            str(hookline),
            "send",
            "--url",
            f"http://{addr}{PATH}",
            "--secret",
            SECRET,
            "--duration",
            args.duration,
            "--concurrency",
            str(args.concurrency),
            "--json",
        ]
    )
    cpu = children_cpu() - before
    s = json.loads(out.strip().splitlines()[-1])
    ok = sum(n for code, n in s["statuses"].items() if 200 <= int(code) < 300)
    errors = s["sent"] - ok
    return {
        "requests": s["sent"],
        "ok": ok,
        "errors": errors,
        "error_detail": {"statuses": s["statuses"], "transport": s["errors"]},
        "seconds": s["seconds"],
        "req_s": s["req_per_s"],
        "p50_ms": s["p50_ms"],
        "p99_ms": s["p99_ms"],
        "max_ms": s["max_ms"],
        "loadgen_cpu_s": cpu,
    }


def load_wrk(addr: str, args, requests_file: Path) -> dict:
    before = children_cpu()
    env = dict(os.environ, BENCH_REQUESTS=str(requests_file))
    seconds = parse_seconds(args.duration)
    out = run_load(
        [
            "wrk",
            f"-t{args.wrk_threads}",
            f"-c{args.concurrency}",
            f"-d{int(seconds)}s",
            "-s",
            str(BENCH / "wrk.lua"),
            f"http://{addr}{PATH}",
        ],
        env=env,
    )
    cpu = children_cpu() - before
    line = next(l for l in out.splitlines() if l.startswith("BENCH-JSON "))
    s = json.loads(line[len("BENCH-JSON ") :])
    errs = s["errors"]
    errors = errs["status"] + errs["connect"] + errs["read"] + errs["write"] + errs["timeout"]
    secs = s["duration_us"] / 1e6
    return {
        "requests": s["requests"],
        "ok": s["requests"] - errs["status"],
        "errors": errors,
        "error_detail": errs,
        "seconds": secs,
        "req_s": s["requests"] / secs,
        "p50_ms": s["p50_us"] / 1000,
        "p99_ms": s["p99_us"] / 1000,
        "max_ms": s["max_us"] / 1000,
        "loadgen_cpu_s": cpu,
        # Requests past the end of the pool were replays: answered as duplicates.
        "wrk_pool_wrapped": s["wrapped"],
    }


def parse_seconds(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", text)
    if not m:
        raise SystemExit(f"bad duration {text!r} (use e.g. 10s)")
    n = float(m.group(1))
    return {"ms": n / 1000, "s": n, None: n, "m": n * 60}[m.group(2)]


# LeadShark's documented payloads (compact), personalised per request like `hookline send`.
SAMPLES = [
    ("email.captured", {"event": "email.captured", "timestamp": "2025-09-15T11:43:42.659+00:00", "data": {"lead": {"name": "John Doe", "title": "Senior Marketing Manager", "email": "john.doe@example.com", "linkedin_username": "john-doe-12345"}, "automation": {"id": "58c132e6-648c-4079-8815-77a3b2ec1adc", "name": "Q4 Marketing Guide"}}}),
    ("new.profile.visit", {"event": "new.profile.visit", "timestamp": "2025-09-15T11:37:21.709Z", "data": {"visitor": {"id": "ACoAAEXAMPLE987654321", "name": "Jane Smith", "title": "Product Manager at Innovation Labs", "linkedin_url": "https://linkedin.com/in/jane-smith"}, "profile_owner": {"id": "ACoAAEXAMPLE123456789", "name": "Your Name"}}}),
    ("new.like", {"event": "new.like", "timestamp": "2025-09-15T12:38:50.258Z", "data": {"lead": {"name": "Michael Johnson", "title": "Sales Director", "linkedin_url": "https://linkedin.com/in/michael-johnson", "connection_status": "Connected"}, "automation": {"id": "uuid", "name": "Engagement Campaign"}, "post_id": "urn:li:activity:7372270383585984512"}}),
    ("new.comment", {"event": "new.comment", "timestamp": "2025-09-15T12:42:27.124Z", "data": {"lead": {"name": "Sarah Wilson", "title": "Content Marketing Specialist", "linkedin_url": "https://linkedin.com/in/sarah-wilson", "connection_status": "2nd Connection"}, "comment": {"id": "7371940875070795776", "text": "Great insights! Thanks for sharing.", "created_at": "2025-09-11T16:21:08.656Z"}, "automation": {"id": "uuid", "name": "Content Engagement"}}}),
]


def write_wrk_requests(path: Path, count: int, threads: int) -> None:
    """`count` unique signed requests for wrk.lua, spread over one file per wrk thread
    (`path.0`, `path.1`, ...). Built from templates: fast enough for a million."""
    templates = []
    for event, payload in SAMPLES:
        person = "lead" if "lead" in payload["data"] else "visitor"
        p = json.loads(json.dumps(payload))
        p["data"][person]["name"] = "@@NAME@@"
        if "email" in p["data"][person]:
            p["data"][person]["email"] = "@@EMAIL@@"
        text = json.dumps(p, separators=(",", ":"), ensure_ascii=False)
        templates.append((event, text, payload["data"][person]))
    key = SECRET.encode()
    files = [Path(f"{path}.{t}").open("w") for t in range(threads)]
    try:
        for i in range(count):
            f = files[i % threads]
            event, text, person = templates[i % len(templates)]
            body = text.replace("@@NAME@@", f"{person['name']} {i}")
            if "email" in person:
                local, domain = person["email"].split("@")
                body = body.replace("@@EMAIL@@", f"{local}+{i}@{domain}")
            if "@@" in body:
                raise SystemExit(f"placeholder left in a wrk body: {body}")
            sig = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
            f.write(f"{sig}\t{event}\t{body}\n")
    finally:
        for f in files:
            f.close()


# ---------------------------------------------------------------- one run


def count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    n = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            n += chunk.count(b"\n")
    return n


def wasm_unavailable(args, hookline: Path, rundir: Path, env) -> str | None:
    """Why the WASM row cannot run in this build, or None."""
    plugin = Path(args.wasm_plugin) if args.wasm_plugin else ROOT / "plugins/wasm/dist/redact.wasm"
    if not plugin.exists():
        shown = plugin.relative_to(ROOT) if plugin.is_relative_to(ROOT) else plugin
        return f"no WASM plugin at {shown} (build it with plugins/wasm/build.sh)"
    (rundir / "plugins").mkdir(parents=True, exist_ok=True)
    shutil.copy(plugin, rundir / "plugins" / "redact.wasm")
    shutil.copy(BENCH / "pipelines" / "wasm.toml", rundir / "pipeline.toml")
    check = subprocess.run(
        [str(hookline), "check", "--config", str(rundir / "pipeline.toml")],
        env=env,
        capture_output=True,
        text=True,
    )
    if check.returncode != 0:
        first = (check.stderr or check.stdout).strip().splitlines()
        return "`hookline check` rejects the WASM pipeline: " + (first[0] if first else "?")
    # `check` compiles into a temporary folder and leaves nothing on disk; the row measures
    # start-up with the compiled plugin cached, as a service restarts, so one `serve` fills
    # `data/wasm-cache`. Its journal and sink file are thrown away.
    Server([str(hookline), "serve", "--config", "pipeline.toml"], rundir, env, "warm-cache").stop()
    for f in (rundir / "data").glob("hookline.db*"):
        f.unlink()
    shutil.rmtree(rundir / "out", ignore_errors=True)
    if not any((rundir / "data" / "wasm-cache").glob("*")):
        return "the first `serve` left no compiled plugin in data/wasm-cache"
    return None


def prepare(candidate: str, args, bins: dict, rundir: Path) -> tuple[list[str], dict[str, str]] | str:
    """The command and environment that start `candidate` (NAME or NAME@LABEL) in `rundir`,
    or why it cannot run in this build."""
    name, _, label = candidate.partition("@")
    spec = CANDIDATES[name]
    env = dict(os.environ, LEADSHARK_SECRET=SECRET)
    env.pop("HOOKLINE_LOG", None)
    env.pop("HOOKLINE_LOG_FORMAT", None)
    if spec["kind"] == "baseline":
        # `baseline@LABEL`: another build of the ceiling (--compare-baseline LABEL=PATH).
        base_bin = bins["compare_baseline"][label] if label else bins["baseline"]
        cmd = [str(base_bin), "--listen", "127.0.0.1:0", "--secret", SECRET, "--out", "out.jsonl"]
        return [*cmd, *spec.get("durable", [])], env
    # `NAME@LABEL`: another build of Hookline (--compare LABEL=PATH).
    server_bin = bins["compare"][label] if label else bins["hookline"]
    if spec.get("wasm"):
        why = wasm_unavailable(args, server_bin, rundir, env)
        if why:
            return why
    shutil.copy(BENCH / "pipelines" / spec["config"], rundir / "pipeline.toml")
    # Run as a user would: default log level (info) and format, stderr to a file.
    return [str(server_bin), "serve", "--config", "pipeline.toml"], env


def one_run(name: str, load: str, rep: int, args, bins: dict, workdir: Path, wrk_file: Path) -> dict:
    spec = CANDIDATES[name.partition("@")[0]]
    rundir = workdir / f"{rep:02d}-{load}-{name}"
    rundir.mkdir(parents=True)
    prepared = prepare(name, args, bins, rundir)
    if isinstance(prepared, str):
        return {"skipped": prepared}
    cmd, env = prepared

    server = Server(cmd, rundir, env, "server")
    result: dict = {"ready_ms": server.ready_ms}
    try:
        time.sleep(1.0)
        result["idle_rss_kib"] = proc_status(server.pid)["VmRSS"]
        cpu0 = cpu_seconds(server.pid)
        journal0 = journal_counters(server.admin)
        sampler = AnonPeak(server.pid)
        if load == "send":
            r = load_send(bins["hookline"], server.addr, args)
        else:
            r = load_wrk(server.addr, args, wrk_file)
        result["server_cpu_s"] = cpu_seconds(server.pid) - cpu0
        journal1 = journal_counters(server.admin)
        if journal0 and journal1:
            commits = journal1["commits"] - journal0["commits"]
            ops = journal1["operations"] - journal0["operations"]
            result["journal_commits_per_s"] = commits / r["seconds"]
            result["journal_ops_per_commit"] = ops / max(commits, 1)
        result.update(r)
        result["peak_rss_kib"] = proc_status(server.pid)["VmHWM"]
        # Every acknowledged event must reach every sink; time how long that takes.
        t0 = time.perf_counter()
        expected = r["ok"]
        while True:
            got = [count_lines(rundir / s) for s in spec["sinks"]]
            if all(g >= expected for g in got):
                break
            if time.perf_counter() - t0 > args.drain_timeout:
                break
            time.sleep(0.2)
        result["drain_s"] = time.perf_counter() - t0
        result["delivered"] = got
        result["all_delivered"] = all(g >= expected for g in got)
        result["server_cpu_with_drain_s"] = cpu_seconds(server.pid) - cpu0
        result["peak_rss_kib"] = max(result["peak_rss_kib"], proc_status(server.pid)["VmHWM"])
        sampler.stop()
        result["peak_anon_kib"] = sampler.peak_anon_kib
        result["file_at_peak_anon_kib"] = sampler.file_kib
    finally:
        server.stop()
    if server.proc.returncode not in (0, -signal.SIGTERM):
        result["exit_code"] = server.proc.returncode
    # Start again on what the run left behind (a journal holding every event).
    again = Server(cmd, rundir, env, "restart")
    result["restart_ready_ms"] = again.ready_ms
    again.stop()
    n = max(result["requests"], 1)
    result["server_cpu_us_per_req"] = result["server_cpu_with_drain_s"] / n * 1e6
    result["loadgen_cpu_us_per_req"] = result["loadgen_cpu_s"] / n * 1e6
    if not args.keep_runs:
        for f in [*rundir.glob("out*"), rundir / "out", rundir / "data"]:
            if f.is_dir():
                shutil.rmtree(f)
            elif f.exists():
                f.unlink()
    # Leave the disk quiet for the next run: without this, the run after the baseline (whose
    # file holds hundreds of MB) paid for its deletion and writeback in its own fsyncs.
    os.sync()
    return result


# ---------------------------------------------------------------- report


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarise(runs: list[dict], loads: list[str], names: list[str]) -> list[dict]:
    rows = []
    for load in loads:
        base = {r["rep"]: r for r in runs if r["load"] == load and r["candidate"] == "baseline" and "skipped" not in r}
        for name in names:
            mine = [r for r in runs if r["load"] == load and r["candidate"] == name]
            skipped = [r["skipped"] for r in mine if "skipped" in r]
            done = [r for r in mine if "skipped" not in r]
            if not done:
                rows.append({"candidate": name, "load": load, "skipped": skipped[0] if skipped else "not run"})
                continue
            ratios = [r["req_s"] / base[r["rep"]]["req_s"] for r in done if r["rep"] in base]
            rows.append(
                {
                    "candidate": name,
                    "load": load,
                    "reps": len(done),
                    "req_s": median([r["req_s"] for r in done]),
                    "req_s_all": [round(r["req_s"]) for r in done],
                    "ratio": median(ratios),
                    "ratios_all": [round(x, 3) for x in ratios],
                    "p50_ms": median([r["p50_ms"] for r in done]),
                    "p99_ms": median([r["p99_ms"] for r in done]),
                    "errors": sum(r["errors"] for r in done),
                    "requests": sum(r["requests"] for r in done),
                    "peak_rss_mib": median([r["peak_rss_kib"] / 1024 for r in done]),
                    "peak_anon_mib": median([r["peak_anon_kib"] / 1024 for r in done]),
                    "idle_rss_mib": median([r["idle_rss_kib"] / 1024 for r in done]),
                    "ready_ms": median([r["ready_ms"] for r in done]),
                    "restart_ready_ms": median([r["restart_ready_ms"] for r in done]),
                    "server_cpu_us": median([r["server_cpu_us_per_req"] for r in done]),
                    "loadgen_cpu_us": median([r["loadgen_cpu_us_per_req"] for r in done]),
                    "drain_s": median([r["drain_s"] for r in done]),
                    "journal_commits_per_s": median([r.get("journal_commits_per_s") for r in done]),
                    "journal_ops_per_commit": median([r.get("journal_ops_per_commit") for r in done]),
                    "all_delivered": all(r["all_delivered"] for r in done),
                    "wrk_pool_wrapped": sum(r.get("wrk_pool_wrapped", 0) for r in done),
                }
            )
    return rows


def markdown(rows: list[dict], meta: dict) -> str:
    head = (
        "| candidate | load | req/s | × baseline | p50 ms | p99 ms | errors | peak RSS MiB (anon) | idle RSS MiB "
        "| ready ms (fresh / restart) | server CPU µs/req | load-gen CPU µs/req | journal commits/s × ops | sinks caught up |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n"
    )
    lines = []
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['candidate']} | {r['load']} | skipped: {r['skipped']} ||||||||||||\n")
            continue
        ratio = "1" if r["candidate"] == "baseline" else f"{r['ratio']:.2f}"
        no_sinks = r["candidate"] == "baseline" or not CANDIDATES[r["candidate"].partition("@")[0]]["sinks"]
        caught = "n/a" if no_sinks else (
            f"all, +{r['drain_s']:.1f} s" if r["all_delivered"] else "**no**")
        journal = (
            f"{r['journal_commits_per_s']:,.0f} × {r['journal_ops_per_commit']:.1f}"
            if r.get("journal_commits_per_s") is not None
            else "n/a"
        )
        if r["wrk_pool_wrapped"] and r["candidate"] != "baseline":
            caught += " (wrk pool ran out: some requests were duplicates; raise --wrk-pool)"
        lines.append(
            f"| {r['candidate']} | {r['load']} | {r['req_s']:,.0f} | {ratio} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
            f"| {r['errors']} / {r['requests']:,} | {r['peak_rss_mib']:.1f} ({r['peak_anon_mib']:.1f}) | {r['idle_rss_mib']:.1f} "
            f"| {r['ready_ms']:.0f} / {r['restart_ready_ms']:.0f} | {r['server_cpu_us']:.1f} | {r['loadgen_cpu_us']:.1f} "
            f"| {journal} | {caught} |\n"
        )
    foot = (
        f"\nMedians of {meta['reps']} interleaved runs per row, {meta['duration']} each at "
        f"{meta['concurrency']} connections; × baseline is the median of each run's ratio to the "
        f"baseline run beside it. Load average {meta['load_before']} before, {meta['load_after']} after. "
        f"{meta['cpu']}, commit {meta['commit']} (profile {meta.get('cargo_profile', 'release')}), {meta['date']}.\n"
    )
    return head + "".join(lines) + foot


# ---------------------------------------------------------------- main


def target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))


def build(args) -> dict:
    # Both binaries are built with the same profile, so the ceiling gets what Hookline gets.
    if not args.no_build:
        log(f"building the binaries (cargo build --profile {args.cargo_profile})")
        subprocess.run(
            ["cargo", "build", "--profile", args.cargo_profile, "--locked",
             "-p", "hookline", "-p", "hookline-bench-baseline"],
            cwd=ROOT,
            check=True,
        )
    rel = target_dir() / args.cargo_profile
    bins = {"hookline": rel / "hookline", "baseline": rel / "bench-baseline"}
    for b in bins.values():
        if not b.exists():
            raise SystemExit(f"{b} is missing: build without --no-build")
    bins["compare"] = labelled_binaries(args.compare, "--compare", "a hookline binary")
    bins["compare_baseline"] = labelled_binaries(
        args.compare_baseline, "--compare-baseline", "a bench-baseline binary"
    )
    return bins


def labelled_binaries(specs: list[str], option: str, what: str) -> dict[str, Path]:
    """LABEL=PATH arguments as {label: path}."""
    out = {}
    for spec in specs:
        label, _, path = spec.partition("=")
        if not label or not Path(path).is_file():
            raise SystemExit(f"{option} wants LABEL=PATH to {what}, got {spec!r}")
        out[label] = Path(path).resolve()
    return out


def attached_run(candidate: str, what: str, args, bins: dict, workdir: Path, wrk_file: Path, attach):
    """One load run of a candidate with a `perf` process attached (`attach(pid, rundir)`
    starts it, its stderr to `rundir/logs/perf.stderr`) for the load's duration; `perf` is
    stopped with SIGINT, as at Ctrl-C. Returns the load's result, the server CPU per request
    and the run directory."""
    rundir = workdir / f"{what}-{candidate}"
    rundir.mkdir(parents=True)
    prepared = prepare(candidate, args, bins, rundir)
    if isinstance(prepared, str):
        raise SystemExit(f"{candidate}: {prepared}")
    cmd, env = prepared
    server = Server(cmd, rundir, env, "server")
    perf = None
    try:
        perf = attach(server.pid, rundir)
        time.sleep(0.5)
        if perf.poll() is not None:
            raise SystemExit(
                f"perf exited at once ({perf.returncode}):\n"
                + (rundir / "logs" / "perf.stderr").read_text(errors="replace")[-2000:]
            )
        cpu0 = cpu_seconds(server.pid)
        load = args.loads.split(",")[0]
        if load == "wrk":
            r = load_wrk(server.addr, args, wrk_file)
        else:
            r = load_send(bins["hookline"], server.addr, args)
        us_per_req = (cpu_seconds(server.pid) - cpu0) / max(r["requests"], 1) * 1e6
    finally:
        if perf is not None and perf.poll() is None:
            perf.send_signal(signal.SIGINT)
            try:
                perf.wait(60)
            except subprocess.TimeoutExpired:
                perf.kill()
                perf.wait()
        server.stop()
    return r, us_per_req, rundir


def perf_stderr(rundir: Path):
    """Where an attached `perf` writes its complaints (the server's logs are beside it)."""
    return (rundir / "logs" / "perf.stderr").open("wb")


def profile(args, bins: dict, workdir: Path, wrk_file: Path) -> None:
    """One run of a candidate with `perf record` attached for the load's duration."""
    name = args.profile.partition("@")[0]
    load = args.loads.split(",")[0]

    def attach(pid: int, rundir: Path):
        # cpu-clock: the only sampling event in this VM (no hardware counters). DWARF call
        # graphs because the release build keeps no frame pointers.
        return subprocess.Popen(
            ["perf", "record", "-e", "cpu-clock", "-F", str(args.perf_freq), "--call-graph", "dwarf,16384",
             "-p", str(pid), "-o", str(rundir / "perf.data")],
            stdout=subprocess.DEVNULL, stderr=perf_stderr(rundir),
        )

    r, us_per_req, rundir = attached_run(args.profile, "profile", args, bins, workdir, wrk_file, attach)
    data = rundir / "perf.data"
    log(f"{name}: {r['req_s']:.0f} req/s, {us_per_req:.1f} µs CPU/req under perf (sampling costs some)")
    with (rundir / "perf-report.txt").open("w") as f:
        subprocess.run(
            ["perf", "report", "-i", str(data), "--stdio", "--no-children", "-g", "none", "--percent-limit", "0.3"],
            stdout=f, stderr=subprocess.DEVNULL,
        )
    script = subprocess.run(
        ["perf", "script", "-i", str(data), "-F", "comm,tid,ip,sym", "--no-inline"],
        capture_output=True, text=True,
    )
    buckets = subprocess.run(
        [sys.executable, str(BENCH / "perf_buckets.py"), "--us-per-req", f"{us_per_req:.2f}"],
        input=script.stdout, capture_output=True, text=True, check=True,
    )
    summary = (
        f"# perf profile of {name}\n\n{r['req_s']:.0f} req/s ({load}, {args.concurrency} connections, "
        f"{args.duration}), {us_per_req:.1f} µs of server CPU per request while sampled.\n\n{buckets.stdout}"
    )
    (rundir / "perf-buckets.md").write_text(summary)
    print(summary)
    print(rundir)


# System calls counted by --syscalls, one by one; the rest show as "other".
SYSCALLS = [
    "read", "recvfrom", "recvmsg", "write", "writev", "sendto", "sendmsg", "pread64", "pwrite64",
    "fsync", "fdatasync", "futex", "epoll_wait", "epoll_pwait", "epoll_ctl", "accept4", "fcntl",
    "lseek", "ioctl", "madvise", "mmap", "munmap", "mprotect", "brk", "sched_yield", "openat",
    "close", "newfstatat", "statx", "getrandom", "clock_nanosleep", "nanosleep",
]


def syscalls(args, bins: dict, workdir: Path, wrk_file: Path) -> None:
    """Each candidate's system calls and context switches per request, by thread: `perf
    stat` counting tracepoints (no sampling), `--reps` runs each, interleaved."""
    names = [n for n in args.syscalls.split(",") if n]
    events = ["raw_syscalls:sys_enter", "context-switches"] + [f"syscalls:sys_enter_{c}" for c in SYSCALLS]
    counts: dict[str, dict[str, dict[str, float]]] = {n: {} for n in names}
    requests = dict.fromkeys(names, 0)
    rates: dict[str, list[float]] = {n: [] for n in names}
    cpus: dict[str, list[float]] = {n: [] for n in names}
    for rep in range(1, args.reps + 1):
        shift = (rep - 1) % len(names)
        for name in names[shift:] + names[:shift]:
            def attach(pid: int, rundir: Path):
                return subprocess.Popen(
                    ["perf", "stat", "--per-thread", "-x", ";", "-e", ",".join(events),
                     "-p", str(pid), "-o", str(rundir / "perf-stat.csv")],
                    stdout=subprocess.DEVNULL, stderr=perf_stderr(rundir),
                )

            log(f"rep {rep}/{args.reps} syscalls {name}")
            r, us, rundir = attached_run(name, f"syscalls{rep:02d}", args, bins, workdir, wrk_file, attach)
            requests[name] += r["requests"]
            rates[name].append(r["req_s"])
            cpus[name].append(us)
            csv = (rundir / "perf-stat.csv").read_text() if (rundir / "perf-stat.csv").exists() else ""
            if "raw_syscalls:sys_enter" not in csv:
                raise SystemExit(
                    f"perf stat counted nothing for {name}:\n"
                    + (rundir / "logs" / "perf.stderr").read_text(errors="replace")[-2000:]
                )
            for line in csv.splitlines():
                f = line.split(";")
                if line.startswith("#") or len(f) < 4:
                    continue
                try:
                    n = float(f[1])
                except ValueError:  # "<not counted>"
                    continue
                # "hookline-journa-1234": the thread's name (15 characters at most), its id.
                thread = re.sub(r"-\d+$", "", f[0])
                event = f[3].replace("syscalls:sys_enter_", "").replace("raw_syscalls:sys_enter", "all")
                by_thread = counts[name].setdefault(thread, {})
                by_thread[event] = by_thread.get(event, 0) + n

    out = [
        f"# System calls per request\n\n{args.loads.split(',')[0]}, {args.concurrency} connections, "
        f"{args.duration} a run, {args.reps} runs each, interleaved; counted by `perf stat` "
        "(tracepoints, no sampling: counting costs some throughput).\n",
        "| candidate | req/s (median) | server CPU µs/req | system calls / req | context switches / req |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in names:
        n = max(requests[name], 1)
        total = sum(t.get("all", 0) for t in counts[name].values())
        switches = sum(t.get("context-switches", 0) for t in counts[name].values())
        out.append(
            f"| {name} | {median(rates[name]):,.0f} | {median(cpus[name]):.1f} | {total / n:.2f} | {switches / n:.2f} |"
        )
    for name in names:
        n = max(requests[name], 1)
        out += ["", f"## {name}, by thread (per request; calls under 0.02 a request left out)", "",
                "| thread | system calls | context switches | the calls |", "|---|---:|---:|---|"]
        for thread, c in sorted(counts[name].items(), key=lambda kv: -kv[1].get("all", 0)):
            if c.get("all", 0) / n < 0.02 and c.get("context-switches", 0) / n < 0.02:
                continue
            named = {k: v for k, v in c.items() if k not in ("all", "context-switches")}
            other = c.get("all", 0) - sum(named.values())
            if other > 0:
                named["other"] = other
            calls = ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(named.items(), key=lambda kv: -kv[1]) if v / n >= 0.02)
            out.append(f"| {thread} | {c.get('all', 0) / n:.2f} | {c.get('context-switches', 0) / n:.2f} | {calls} |")
    text = "\n".join(out) + "\n"
    (workdir / "syscalls.md").write_text(text)
    print(text)
    log(f"results in {workdir}/syscalls.md")


def main() -> None:
    # SIGTERM (e.g. `timeout`) unwinds like Ctrl-C, so every server started gets stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--duration", default="10s")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--loads", default="send,wrk", help="send, wrk or both (comma-separated)")
    p.add_argument(
        "--candidates",
        default=",".join(n for n, c in CANDIDATES.items() if not c.get("optional")),
        help=f"comma-separated, from {', '.join(CANDIDATES)}",
    )
    p.add_argument("--wrk-threads", type=int, default=2)
    p.add_argument("--wrk-pool", type=int, default=600_000, help="unique signed requests for wrk (per run)")
    p.add_argument("--wasm-plugin", help="the redact component (default plugins/wasm/dist/redact.wasm)")
    p.add_argument("--out", help="results directory (default target/bench/<time>)")
    p.add_argument(
        "--compare-baseline",
        action="append",
        default=[],
        metavar="LABEL=PATH",
        help="another bench-baseline binary, run as baseline@LABEL beside the baseline (e.g. another profile's)",
    )
    p.add_argument(
        "--cargo-profile",
        default="release",
        help="the Cargo profile of both binaries: release, or dist (fat LTO, stripped: what ships)",
    )
    p.add_argument("--no-build", action="store_true", help="use the binaries already built")
    p.add_argument("--keep-runs", action="store_true", help="keep journals and sink files")
    p.add_argument("--drain-timeout", type=float, default=60)
    p.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="LABEL=PATH",
        help="also run each Hookline candidate with this binary, as CANDIDATE@LABEL (before/after a change)",
    )
    p.add_argument("--perf-freq", type=int, default=499, help="samples per second per CPU for --profile")
    p.add_argument("--profile", metavar="CANDIDATE[@LABEL]", help="one run under perf record instead")
    p.add_argument(
        "--syscalls",
        metavar="CANDIDATE[@LABEL],...",
        help="instead: system calls and context switches per request, by thread (perf stat), --reps runs each",
    )
    args = p.parse_args()
    if args.profile and args.cargo_profile != "release":
        # `dist` strips its symbols: perf could name none of Hookline's frames.
        raise SystemExit(f"--profile needs the release build: --cargo-profile {args.cargo_profile} is stripped")

    loads = [l for l in args.loads.split(",") if l]
    names = [n for n in args.candidates.split(",") if n]
    for n in names:
        if n not in CANDIDATES:
            raise SystemExit(f"unknown candidate {n}; known: {', '.join(CANDIDATES)}")
    if "baseline" not in names:
        names.insert(0, "baseline")
    # Before/after rows sit right beside the row they compare with.
    labels = [c.partition("=")[0] for c in args.compare]
    base_labels = [c.partition("=")[0] for c in args.compare_baseline]
    names = [
        x
        for n in names
        for x in [n, *[f"{n}@{l}" for l in (base_labels if CANDIDATES[n]["kind"] == "baseline" else labels)]]
    ]
    if "wrk" in loads and not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install -y wrk), or use --loads send")

    bins = build(args)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    workdir = Path(args.out) if args.out else target_dir() / "bench" / stamp
    workdir.mkdir(parents=True, exist_ok=True)
    wrk_file = workdir / "wrk-requests.tsv"
    if "wrk" in loads:
        log(f"writing {args.wrk_pool:,} unique signed requests for wrk")
        write_wrk_requests(wrk_file, args.wrk_pool, args.wrk_threads)
    if args.profile:
        profile(args, bins, workdir, wrk_file)
        return
    if args.syscalls:
        if not [n for n in args.syscalls.split(",") if n]:
            raise SystemExit("--syscalls: name at least one candidate")
        for n in args.syscalls.split(","):
            if n and n.partition("@")[0] not in CANDIDATES:
                raise SystemExit(f"unknown candidate {n}; known: {', '.join(CANDIDATES)}")
        syscalls(args, bins, workdir, wrk_file)
        return

    meta = {
        "reps": args.reps,
        "duration": args.duration,
        "concurrency": args.concurrency,
        "cargo_profile": args.cargo_profile,
        "load_before": load_average(),
        "date": stamp,
        "cpu": f"{os.cpu_count()} CPUs, " + next(
            (l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name")),
            platform.processor(),
        ),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        + ("+dirty" if subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout.strip() else ""),
    }
    runs = []
    skipped: dict[str, str] = {}
    for rep in range(1, args.reps + 1):
        # Each rep starts one candidate further on (A B C, B C A, C A B, ...): no candidate
        # always runs in the same place, e.g. right after the baseline.
        shift = (rep - 1) % len(names)
        order = names[shift:] + names[:shift]
        for load in loads:
            for name in order:
                if name.partition("@")[0] in skipped:
                    runs.append({"candidate": name, "load": load, "rep": rep, "skipped": skipped[name.partition("@")[0]]})
                    continue
                log(f"rep {rep}/{args.reps} {load:4} {name}")
                r = one_run(name, load, rep, args, bins, workdir, wrk_file)
                r.update(candidate=name, load=load, rep=rep)
                if "skipped" in r:
                    skipped[name.partition("@")[0]] = r["skipped"]
                    log(f"  skipped: {r['skipped']}")
                else:
                    log(
                        f"  {r['req_s']:,.0f} req/s  p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  "
                        f"errors {r['errors']}  peak {r['peak_rss_kib'] / 1024:.1f} MiB "
                        f"(anon {r['peak_anon_kib'] / 1024:.1f})  ready {r['ready_ms']:.0f} ms  "
                        f"cpu {r['server_cpu_us_per_req']:.1f} µs/req  drained {r['all_delivered']} (+{r['drain_s']:.1f} s)"
                        + (f"  journal {r['journal_commits_per_s']:.0f} commits/s × {r['journal_ops_per_commit']:.1f} ops"
                           if "journal_commits_per_s" in r else "")
                    )
                runs.append(r)
    meta["load_after"] = load_average()
    rows = summarise(runs, loads, names)
    md = markdown(rows, meta)
    (workdir / "results.md").write_text(md)
    (workdir / "results.json").write_text(json.dumps({"meta": meta, "rows": rows, "runs": runs}, indent=2))
    print(md)
    log(f"results in {workdir}/results.md and results.json")


if __name__ == "__main__":
    main()
