#!/usr/bin/env python3
"""What a backlog behind a dead destination costs: CPU of `hookline serve` while N deliveries
wait for an `http` sink whose port is closed.

For each binary (this build's release binary, and any `--compare LABEL=PATH`), in the same
run: start it on a fresh journal with one pipeline whose `http` sink points at a port where
nothing listens (default retry policy, default circuit), accept N signed LeadShark events
with `hookline send`, let it settle, then read the process's CPU time (utime + stime from
/proc) over a window. Reports % of one core, the sink's attempts in the window, and the
ratio of each binary to the first.

    python3 tests/bench/circuit.py                                  # 50 000 pending, 60 s
    python3 tests/bench/circuit.py --compare before=/path/to/old/hookline
    python3 tests/bench/circuit.py --pending 5000 --window 10       # a quick look

Nothing here asserts on timings: benchmarks report.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECRET = "bench-secret-bench-secret"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[circuit {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the command name: state is field 3; utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total


def run_one(label: str, binary: Path, sender: Path, args) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"circuit-{label}-"))
    listen, admin, dead = free_port(), free_port(), free_port()
    (work / "pipeline.toml").write_text(
        f"""[server]
listen = "127.0.0.1:{listen}"

[admin]
listen = "127.0.0.1:{admin}"

[[sources]]
name = "leadshark"
path = "/webhooks/leadshark"
verify = {{ scheme = "leadshark", secrets = ["{SECRET}"] }}

[[pipelines]]
name = "crm"
source = "leadshark"
stages = [{{ sink = "http", url = "http://127.0.0.1:{dead}/hook", timeout = "2s" }}]
"""
    )
    server = subprocess.Popen(
        [str(binary), "--log-level", "warn", "serve", "--config", "pipeline.toml"],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=open(work / "serve.log", "w"),
    )
    try:
        assert server.stdout is not None
        for line in server.stdout:
            if b"listening on" in line:
                break
        log(f"{label}: sending {args.pending} events")
        sent = subprocess.run(
            [
                str(sender), "send", "--url", f"http://127.0.0.1:{listen}/webhooks/leadshark",
                "--secret", SECRET, "--event", "new.like", "--count", str(args.pending),
                "--concurrency", "32", "--json",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        summary = json.loads(sent.stdout)
        ok = sum(n for s, n in summary["statuses"].items() if s.startswith("2"))
        log(f"{label}: {ok} accepted; settling {args.settle} s")
        time.sleep(args.settle)
        before_metrics = get(f"http://127.0.0.1:{admin}/metrics")
        pending_start = json.loads(get(f"http://127.0.0.1:{admin}/readyz")).get("pending")
        cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
        time.sleep(args.window)
        cpu1, t1 = cpu_seconds(server.pid), time.monotonic()
        after_metrics = get(f"http://127.0.0.1:{admin}/metrics")
        pending_end = json.loads(get(f"http://127.0.0.1:{admin}/readyz")).get("pending")
        attempts = metric(after_metrics, "hookline_sink_attempts_total") - metric(
            before_metrics, "hookline_sink_attempts_total"
        )
        row = {
            "label": label,
            "binary": str(binary),
            "accepted": ok,
            "pending_start": pending_start,
            "pending_end": pending_end,
            "window_s": round(t1 - t0, 2),
            "cpu_pct_of_one_core": round(100 * (cpu1 - cpu0) / (t1 - t0), 2),
            "attempts_in_window": int(attempts),
            "circuit_state": metric(after_metrics, "hookline_sink_circuit_state"),
        }
        log(f"{label}: {row}")
        return row
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pending", type=int, default=50_000)
    p.add_argument("--window", type=float, default=60.0, help="seconds of CPU measured")
    p.add_argument("--settle", type=float, default=5.0, help="seconds after the last accept")
    p.add_argument("--binary", default=None, help="hookline to measure (default target/release/hookline)")
    p.add_argument("--compare", action="append", default=[], metavar="LABEL=PATH")
    p.add_argument("--out", help="write the rows as JSON here")
    args = p.parse_args()
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    binary = Path(args.binary) if args.binary else target / "release" / "hookline"
    if not binary.is_file():
        sys.exit(f"{binary} is missing: cargo build --release -p hookline")
    runs = [("this", binary)]
    for spec in args.compare:
        label, _, path = spec.partition("=")
        if not label or not Path(path).is_file():
            sys.exit(f"--compare wants LABEL=PATH to a hookline binary, got {spec!r}")
        runs.append((label, Path(path)))
    rows = [run_one(label, b, binary, args) for label, b in runs]
    base = rows[0]["cpu_pct_of_one_core"]
    print()
    print("| binary | pending | CPU (% of one core) | sink calls in the window | vs this |")
    print("|---|---|---|---|---|")
    for r in rows:
        ratio = r["cpu_pct_of_one_core"] / base if base else float("inf")
        print(
            f"| {r['label']} | {r['pending_start']} | {r['cpu_pct_of_one_core']} | "
            f"{r['attempts_in_window']} | {ratio:.1f}× |"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
