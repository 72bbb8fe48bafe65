"""Benchmark: peak RSS and time of ``report --json`` and ``bundle`` as real processes (issue 10).

    .venv/bin/python -m tests.bench.bench_report_memory [--dir /tmp/polylog-bench-report-mem]
                                                        [--lines 3000000] [--audit-mb 100] [--nul-mb 700]

Cases, each in its own copy of the sample workspace (``watch --once`` run first, so its audit log
holds the sample incident's real records):

* the feed plus ``--lines`` tiny ``{}`` lines (3,000,000: a 6 MB burst);
* an audit log of ``--audit-mb`` MB: the sample incident's alert records re-audited (unique
  checkpoints, so none is a repeat), their deliveries, acknowledgements naming no incident, and
  unrelated records (replica checks);
* the audit log followed by ``--nul-mb`` MB of NUL bytes (``truncate``: a sparse file);
* the feed followed by ``--nul-mb`` MB of NUL bytes.

Peak RSS is the child's own ``ru_maxrss`` (``os.wait4``), time is wall-clock. Goal: every case
under 250 MB, the NUL tails in seconds (``watch --once`` reads the same feed as the baseline).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson

from polylog_console.demo.sample import write_workspace

PY = sys.executable


def run_measured(args: list[str], timeout: float = 600.0, cwd: Path | None = None) -> tuple[int, float, float, bytes]:
    """Run ``python -m polylog_console ARGS``: ``(exit code, seconds, peak RSS in MB, stdout)``;
    killed (exit code -9) after ``timeout`` seconds."""
    started = time.monotonic()
    # Linux carries a process's peak RSS across fork and exec: a child of a big process (pytest
    # late in the suite) would report the parent's size. A small intermediary process starts the
    # command and reports that grandchild's own peak (its exit code is the command's).
    proc = subprocess.Popen([PY, "-c", MEASURE, PY, "-m", "polylog_console", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=cwd, start_new_session=True)
    timer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
    timer.start()
    out = bytearray()
    err = bytearray()
    reader = threading.Thread(target=lambda: out.extend(proc.stdout.read()))  # type: ignore[union-attr]
    errors = threading.Thread(target=lambda: err.extend(proc.stderr.read()))  # type: ignore[union-attr]
    reader.start()
    errors.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    reader.join()
    errors.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    peak = usage.ru_maxrss / 1024
    for line in bytes(err).splitlines()[::-1]:
        if line.startswith(b"PEAK_RSS_KB "):
            peak = int(line.split()[1]) / 1024
            break
    return proc.returncode, time.monotonic() - started, peak, bytes(out)


MEASURE = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[1:], stderr=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
sys.stderr.write(f"PEAK_RSS_KB {usage.ru_maxrss}\\n")
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def sample_workspace(root: Path) -> Path:
    """The sample workspace with ``watch --once`` run once (the incident's real audit records)."""
    if root.exists():
        shutil.rmtree(root)
    write_workspace(root)
    subprocess.run([PY, "-m", "polylog_console", "watch", "--once", "--workspace", str(root)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return root


def feed_path(root: Path) -> Path:
    return root / "memory" / "coordination" / "context-brief.jsonl"


def audit_path(root: Path) -> Path:
    return root / "memory" / "audit" / "events.jsonl"


def add_tiny_lines(root: Path, lines: int) -> None:
    with open(feed_path(root), "ab") as out:
        for _ in range(lines // 100_000):
            out.write(b"{}\n" * 100_000)
        out.write(b"{}\n" * (lines % 100_000))


def grow_audit(root: Path, megabytes: float) -> int:
    """Append about ``megabytes`` MB of records to the audit log; returns the records written."""
    path = audit_path(root)
    real = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    alert = next(r for r in real if r.get("event") == "alert_raised" and r.get("code") == "registry_mismatch")
    base = time.time() - 3600
    target = int(megabytes * 1024 * 1024)
    written = 0
    n = 0
    with open(path, "ab") as out:
        buf: list[bytes] = []
        while written < target:
            ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(base + n * 0.001)) + f".{n % 1000:03d}Z"
            k = n % 4
            if k == 0:
                record = {**alert, "ts": ts, "checkpoint": f"checkpoint-re-{n}"}
            elif k == 1:
                record = {"ts": ts, "event": "alert_delivered", "actor": alert["actor"], "sink": "webhook",
                          "code": alert["code"], "status": "firing", "dedup_key": alert["dedup_key"],
                          "latency_ms": 12.5, "attempt": 1}
            elif k == 2:
                record = {"ts": ts, "event": "acknowledged", "actor": "oncall", "code": "registry_mismatch",
                          "dedup_key": f"{n:024x}", "comment": "not an incident of this feed"}
            else:
                record = {"ts": ts, "event": "replicas_checked", "actor": "cron", "ok": True, "replicas": 2}
            line = orjson.dumps(record) + b"\n"
            buf.append(line)
            written += len(line)
            n += 1
            if len(buf) >= 10_000:
                out.write(b"".join(buf))
                buf = []
        out.write(b"".join(buf))
    return n


def nul_tail(path: Path, megabytes: int) -> None:
    os.truncate(path, path.stat().st_size + megabytes * 1024 * 1024)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/polylog-bench-report-mem"))
    parser.add_argument("--lines", type=int, default=3_000_000)
    parser.add_argument("--audit-mb", type=float, default=100)
    parser.add_argument("--nul-mb", type=int, default=700)
    opts = parser.parse_args(argv)
    opts.dir.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str, int, float, float]] = []

    def measure(case: str, root: Path, commands: list[list[str]]) -> None:
        for command in commands:
            code, seconds, rss, _ = run_measured([*command, "--workspace", str(root)])
            rows.append((case, " ".join(command), code, seconds, rss))
            print(f"{case:<34} {' '.join(command):<16} exit {code:>3}  {seconds:7.2f} s  {rss:7.1f} MB", flush=True)

    both = [["report", "--json"], ["bundle"]]
    root = sample_workspace(opts.dir / "tiny")
    add_tiny_lines(root, opts.lines)
    shutil.rmtree(root / "memory" / "incidents", ignore_errors=True)  # from scratch: no index
    measure(f"feed + {opts.lines:,} '{{}}' lines", root, [["watch", "--once"]])
    shutil.rmtree(root / "memory" / "incidents", ignore_errors=True)
    measure(f"feed + {opts.lines:,} '{{}}' lines", root, both)

    root = sample_workspace(opts.dir / "audit")
    records = grow_audit(root, opts.audit_mb)
    measure(f"audit log {opts.audit_mb:g} MB ({records:,} rec)", root, both)

    root = sample_workspace(opts.dir / "audit-nul")
    nul_tail(audit_path(root), opts.nul_mb)
    measure(f"audit log + {opts.nul_mb} MB NUL", root, both)

    root = sample_workspace(opts.dir / "feed-nul")
    shutil.rmtree(root / "memory" / "incidents", ignore_errors=True)
    nul_tail(feed_path(root), opts.nul_mb)
    measure(f"feed + {opts.nul_mb} MB NUL", root, [["watch", "--once"], *both])
    worst = max(r[4] for r in rows)
    print(f"peak RSS over all cases: {worst:.1f} MB (goal < 250 MB)")
    for sub in ("tiny", "audit", "audit-nul", "feed-nul"):
        shutil.rmtree(opts.dir / sub, ignore_errors=True)
    return 0 if worst < 250 else 1


if __name__ == "__main__":
    raise SystemExit(main())
