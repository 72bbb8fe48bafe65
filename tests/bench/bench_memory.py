"""Peak RSS for a burst of tiny lines (issue 10, item 6). Run from the repository root:

    .venv/bin/python -m tests.bench.bench_memory [follow] [once] [--lines N]

(no mode: both; N defaults to 3,000,000). Goal: <= 200 MB each.

* follow: ``polylog-console watch --json`` follows the sample workspace (stdout to /dev/null); once
  it has compared the feed's history (its audit log names the drift), ANOTHER PROCESS appends N
  ``{}`` lines in 3 s (writes of 10,000 lines, paced), then a checkpoint that matches the stored
  registry. When the audit log records that resolution, the watcher has read everything: its peak
  RSS (VmHWM) is read from /proc, then it is stopped with SIGTERM (exit code printed).
* once: the same feed with the N lines already in it; ``watch --once --json`` (stdout to /dev/null)
  reads it to its end; its peak RSS from ``wait4``.

Each ``{}`` line is ~3 bytes of feed and ~200 bytes of Python objects once parsed (an Entry, its
dict, an EntryEvent, a JSON line): what bounds memory is the batch (8,192 records), the channel
(4 batches), the start-up history (its checkpoints + 2,048 others), never the feed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from polylog_console.demo.sample import write_workspace
from tests.servers import checkpoint_line

GOAL_MB = 200
WRITER = """
import sys, time
path, count, seconds, final = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4].encode()
chunk = b"{}\\n" * 10_000
writes = max(1, count // 10_000)
start = time.monotonic()
with open(path, "ab") as f:
    for i in range(writes):
        f.write(chunk); f.flush()
        delay = start + seconds * (i + 1) / writes - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    took = time.monotonic() - start
    f.write(final + b"\\n"); f.flush()
print(f"{took:.2f}")
"""


def hwm_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def wait_for_audit(audit: Path, needle: bytes, timeout: float, proc: subprocess.Popen) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"watch exited {proc.returncode}")
        try:
            if needle in audit.read_bytes():
                return time.monotonic()
        except FileNotFoundError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{needle!r} not in the audit log within {timeout:.0f}s")


def bench_follow(root: Path, lines: int) -> float:
    ws = root / "follow"
    incident = write_workspace(ws, polyforms=200, checkpoints=20, drift_from=15)
    feed = ws / "memory" / "coordination" / "context-brief.jsonl"
    audit = ws / "memory" / "audit" / "events.jsonl"
    with open(os.devnull, "wb") as devnull:
        proc = subprocess.Popen([sys.executable, "-m", "polylog_console", "watch", "--json", "--workspace", str(ws)],
                                stdout=devnull, stderr=subprocess.PIPE)
    try:
        wait_for_audit(audit, b"registry_mismatch", 60, proc)
        base = hwm_mb(proc.pid)
        final = checkpoint_line(9999, incident.stored_digest).decode()
        started = time.monotonic()
        took = subprocess.run([sys.executable, "-c", WRITER, str(feed), str(lines), "3", final],
                              capture_output=True, text=True, check=True).stdout.strip()
        done = wait_for_audit(audit, b"registry_resolved", 600, proc)
        peak = hwm_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    err = proc.stderr.read().decode(errors="replace").strip()
    print(f"follow: {lines:,} lines appended in {took}s; watch --json read them all "
          f"{done - started:.1f}s after the first write ({lines / (done - started):,.0f} lines/s); "
          f"peak RSS {peak:.0f} MB (after start-up {base:.0f} MB); SIGTERM exit {code}"
          + (f"; stderr: {err[-300:]}" if err else ""))
    return peak


def bench_once(root: Path, lines: int) -> float:
    ws = root / "once"
    incident = write_workspace(ws, polyforms=200, checkpoints=20, drift_from=15)
    feed = ws / "memory" / "coordination" / "context-brief.jsonl"
    with open(feed, "ab") as handle:
        for _ in range(lines // 100_000):
            handle.write(b"{}\n" * 100_000)
        handle.write(b"{}\n" * (lines % 100_000))
        handle.write(checkpoint_line(9999, incident.stored_digest) + b"\n")
    started = time.monotonic()
    with open(os.devnull, "wb") as devnull:
        proc = subprocess.Popen([sys.executable, "-m", "polylog_console", "watch", "--once", "--json",
                                 "--workspace", str(ws)], stdout=devnull, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.monotonic() - started
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    peak = usage.ru_maxrss / 1024
    err = proc.stderr.read().decode(errors="replace").strip()
    print(f"once: watch --once --json over {lines:,} tiny lines: {elapsed:.1f}s ({lines / elapsed:,.0f} lines/s), "
          f"peak RSS {peak:.0f} MB, exit {code}" + (f"; stderr: {err[-300:]}" if err else ""))
    return peak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modes", nargs="*", help="follow, once (default: both)")
    parser.add_argument("--lines", type=int, default=3_000_000)
    args = parser.parse_args(argv)
    modes = args.modes or ["follow", "once"]
    if not set(modes) <= {"follow", "once"}:
        parser.error(f"unknown mode: {', '.join(sorted(set(modes) - {'follow', 'once'}))}")
    root = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    failed = False
    try:
        for mode in modes:
            peak = bench_follow(root, args.lines) if mode == "follow" else bench_once(root, args.lines)
            ok = peak <= GOAL_MB
            failed |= not ok
            print(f"  {mode}: peak RSS {peak:.0f} MB {'<=' if ok else '>'} {GOAL_MB} MB: {'ok' if ok else 'OVER'}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
