"""Feed follower benchmarks (issue 3). Run from the repository root:

    .venv/bin/python -m tests.bench.bench_follower [latency] [idle] [poll] [throughput] [cold]

(no argument: all). The feed is written by ANOTHER PROCESS (``tests/feedwriter.py``); this
process runs the real :class:`FeedFollower` and :class:`Monitor` on an event loop, as ``watch``
and the console do.

1. latency: one checkpoint per ``write()+flush()`` at 100 appends/s for 10 s, each carrying the
   writer's ``time.monotonic_ns()`` taken just before its ``write()``; measured up to the moment
   ``monitor.process`` returned its CheckpointEvent (CLOCK_MONOTONIC is system-wide on Linux).
   Targets p50 <= 5 ms, p99 <= 30 ms. Also: no record missed or repeated.
2. idle: single appends 2.5 s apart (the follower has gone quiet: its watch step is the idle
   one): the latency of a first append after a quiet spell. Figures only (no target in the issue).
3. poll: the same as 1 in polling mode (poll interval 250 ms): no append missed, p99 <= 270 ms.
4. throughput: 1,000,000 checkpoints appended in bursts of 20,000 (built before the first write,
   so that the writer is not the limit), while following: checkpoints/s from the writer's first
   ``write()`` to the last batch delivered (the follower alone) and to the monitor's last result
   (follower + monitor emitting one CheckpointEvent per checkpoint, as ``watch`` does), with the
   whole sequence checked (no loss, no repeat). Target >= 100,000/s.
5. cold: a 2 GB feed (``write_big_feed`` into /tmp, deleted afterwards); a fresh process starts a
   follower on it: the last 500 checkpoints available in <= 0.5 s, peak RSS (VmHWM) <= 150 MB,
   also once the background line indexer has counted the whole prefix. Measured with the file in
   the page cache (just written) and with its pages dropped first (``posix_fadvise DONTNEED``).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from polylog_console.core.feed.follower import FeedFollower
from polylog_console.core.feed.records import Checkpoint, IngestError, LineSplitter, parse_lines
from polylog_console.core.model.config import MonitorConfig
from polylog_console.core.model.events import CheckpointEvent, FeedEvent
from polylog_console.core.model.workspace import Workspace
from polylog_console.core.monitor.rules import Monitor
from polylog_console.core.registry.stored import StoredRegistry
from polylog_console.demo.sample import write_big_feed, write_workspace
from tests.feedwriter import SCRIPT, record_line

BIG = 2 * 1024**3


def line(name: str, value: str, target: str = "", ok: bool | None = None) -> None:
    verdict = "" if ok is None else ("PASS" if ok else "FAIL")
    print(f"  {name:<52} {value:>16}   {('target ' + target) if target else '':<18} {verdict}", flush=True)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def seq_of(record) -> int:
    if record.__class__ is IngestError:
        return int(record.raw.split(b"broken-")[1].split(b'"')[0])
    return record.data["seq"]


class Run:
    """Follow ``feed`` with a real monitor while a writer process writes it."""

    def __init__(self, ws: Workspace, feed: Path, poll: bool, monitor: bool = True) -> None:
        self.follower = FeedFollower(feed, poll=poll, poll_interval=0.25)
        self.use_monitor = monitor
        self.first_ns = 0  # the t_ns of the first checkpoint seen
        self.monitor = Monitor(StoredRegistry.for_workspace(ws, "engine"), MonitorConfig(), ws)
        self.latencies_ms: list[float] = []
        self.count = 0
        self.bad_order = 0
        self.next_seq = 0
        self.last_done_ns = 0
        self.progress = asyncio.Event()

    async def consume(self) -> None:
        async for batch in self.follower:
            if not self.first_ns:
                self.first_ns = next((int(r.data["t_ns"]) for r in batch
                                      if r.__class__ is Checkpoint and "t_ns" in r.data), 0)
            events = self.monitor.process(batch) if self.use_monitor else ()
            done = time.monotonic_ns()
            for event in events:
                if event.__class__ is CheckpointEvent:
                    t_ns = event.checkpoint.data.get("t_ns")
                    if t_ns:
                        self.latencies_ms.append((done - t_ns) / 1e6)
            seqs = [r.data["seq"] if r.__class__ is not IngestError else seq_of(r)
                    for r in batch if r.__class__ is not FeedEvent]
            if seqs != list(range(self.next_seq, self.next_seq + len(seqs))):  # no loss, repeat or reordering
                self.bad_order += 1
            self.next_seq += len(seqs)
            self.count += len(seqs)
            self.last_done_ns = done
            self.progress.set()

    async def go(self, *writer_args: str, timeout: float = 120) -> int:
        task = asyncio.create_task(self.consume())
        while self.follower.batches == 0:
            await asyncio.sleep(0.01)
        proc = await asyncio.create_subprocess_exec(sys.executable, str(SCRIPT), *writer_args,
                                                    stdout=asyncio.subprocess.PIPE)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        written = int(out.split()[-1])
        async with asyncio.timeout(30):
            while self.count < written:
                self.progress.clear()
                await self.progress.wait()
        await asyncio.sleep(0.2)  # anything extra (a repeat) would show now
        self.follower.stop()
        await task
        return written


def report_latency(name: str, run: Run, written: int, p50_target: float | None, p99_target: float) -> None:
    lat = run.latencies_ms
    line(f"{name}: records written / received", f"{written} / {run.count}", "equal",
         run.count == written and run.bad_order == 0)
    line(f"{name}: latency p50", f"{pct(lat, 50):.2f} ms", f"<= {p50_target:g} ms" if p50_target else "",
         pct(lat, 50) <= p50_target if p50_target else None)
    line(f"{name}: latency p99", f"{pct(lat, 99):.2f} ms", f"<= {p99_target:g} ms", pct(lat, 99) <= p99_target)
    line(f"{name}: latency max (mean)", f"{max(lat):.2f} ({statistics.fmean(lat):.2f}) ms")


def with_workspace(fn):
    def wrapper() -> None:
        with tempfile.TemporaryDirectory(prefix="bench-follower-") as tmp:
            root = Path(tmp) / "ws"
            incident = write_workspace(root, polyforms=200, checkpoints=20, config=None)
            fn(Workspace.open(root), Path(tmp) / "feed.jsonl", incident.stored_digest)
    return wrapper


@with_workspace
def bench_latency(ws: Workspace, feed: Path, digest: str) -> None:
    print("1. latency, inotify, 100 appends/s for 10 s", flush=True)
    run = Run(ws, feed, poll=False)
    written = asyncio.run(run.go(str(feed), "--rate", "100", "--records", "1000", "--digest", digest))
    report_latency("inotify", run, written, 5, 30)
    print(f"  (the follower's watch step: {FeedFollower.ACTIVE_STEP_MS} ms while active, "
          f"{FeedFollower.IDLE_STEP_MS} ms after {FeedFollower.ACTIVE_WINDOW:g} s quiet)")


@with_workspace
def bench_idle_first(ws: Workspace, feed: Path, digest: str) -> None:
    print("2. latency of the first append after a quiet spell (inotify, appends 2.5 s apart)", flush=True)
    run = Run(ws, feed, poll=False)
    written = asyncio.run(run.go(str(feed), "--rate", "0.4", "--records", "6", "--digest", digest))
    line("after quiet: records written / received", f"{written} / {run.count}", "equal", run.count == written)
    line("after quiet: latencies", " ".join(f"{x:.1f}" for x in run.latencies_ms) + " ms")


@with_workspace
def bench_poll(ws: Workspace, feed: Path, digest: str) -> None:
    print("3. latency, polling every 250 ms, 100 appends/s for 10 s", flush=True)
    run = Run(ws, feed, poll=True)
    written = asyncio.run(run.go(str(feed), "--rate", "100", "--records", "1000", "--digest", digest))
    report_latency("poll", run, written, None, 250 + 20)


def parse_ceiling(digest: str, n: int = 200_000) -> float:
    """Lines/s of bare LineSplitter + parse_lines on the same lines, in this process, now: the
    ceiling for the follower on this machine at this moment (other processes share the CPUs)."""
    data = b"".join(record_line(i, 0, 0, 4_000_000_000_000, digest) + b"\n" for i in range(n))
    best = 0.0
    for _ in range(3):
        splitter = LineSplitter()
        started = time.perf_counter()
        for i in range(0, len(data), 1 << 20):
            first, lines = splitter.feed(data[i:i + (1 << 20)])
            parse_lines(lines, 1, first, 0)
        best = max(best, n / (time.perf_counter() - started))
    return best


def bench_throughput() -> None:
    records = 1_000_000
    print(f"4. throughput while following: {records:,} checkpoints in bursts of 20,000", flush=True)
    line("bare LineSplitter + parse_lines, same lines (ceiling)", f"{parse_ceiling('a' * 64):,.0f}/s")
    for with_monitor in (False, True):
        with tempfile.TemporaryDirectory(prefix="bench-follower-") as tmp:
            root = Path(tmp) / "ws"
            digest = write_workspace(root, polyforms=200, checkpoints=20, config=None).stored_digest
            feed = Path(tmp) / "feed.jsonl"
            run = Run(Workspace.open(root), feed, poll=False, monitor=with_monitor)
            written = asyncio.run(run.go(str(feed), "--records", str(records), "--burst", "20000:20000", "--stamp",
                                         "--prebuild", "--digest", digest, timeout=300))
            elapsed = (run.last_done_ns - run.first_ns) / 1e9
            rate = run.count / elapsed
            name = "follower + monitor" if with_monitor else "follower alone"
            line(f"{name}: records written / received, in order", f"{written} / {run.count}", "equal",
                 run.count == written and run.bad_order == 0)
            line(f"{name}: checkpoints/s", f"{rate:,.0f}/s", ">= 100,000/s", rate >= 100_000)
            line(f"{name}: feed size, elapsed", f"{feed.stat().st_size / 1e6:.0f} MB, {elapsed:.2f} s")
            if with_monitor:
                line(f"{name}: burst latency p50 / p99",
                     f"{pct(run.latencies_ms, 50):.0f} / {pct(run.latencies_ms, 99):.0f} ms")


COLD_CHILD = textwrap.dedent("""
    import asyncio, sys, time
    started = time.perf_counter()
    from polylog_console.core.feed.follower import FeedFollower

    def hwm():
        for row in open("/proc/self/status"):
            if row.startswith("VmHWM:"):
                return int(row.split()[1]) / 1024

    async def main():
        follower = FeedFollower(sys.argv[1], history=500)
        t0 = time.perf_counter()
        first = None
        async for batch in follower:
            if first is None:
                first = time.perf_counter() - t0
                cps = [r for r in batch if r.__class__.__name__ == "Checkpoint"]
                print("first", first, len(cps), cps[0].data["label"], cps[-1].data["label"], follower.bytes_read,
                      hwm(), flush=True)
            elif batch[0].kind == "lines_indexed":
                print("indexed", time.perf_counter() - t0, batch[0].data["base"], hwm(), flush=True)
                break
        follower.stop()

    asyncio.run(main())
""")


def cold_once(path: Path, lines: int, drop: bool) -> None:
    if drop:
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
    label = "cold cache" if drop else "warm cache"
    out = subprocess.run([sys.executable, "-c", COLD_CHILD, str(path)], capture_output=True, text=True, timeout=600,
                         cwd=Path(__file__).resolve().parents[2])
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    first, indexed = out.stdout.splitlines()
    _, secs, count, label_first, label_last, bytes_read, rss = first.split()
    want_first, want_last = f"checkpoint-{lines - 500:08d}", f"checkpoint-{lines - 1:08d}"
    line(f"cold ({label}): last 500 checkpoints available", f"{float(secs) * 1000:.0f} ms", "<= 500 ms",
         float(secs) <= 0.5 and int(count) == 500 and (label_first, label_last) == (want_first, want_last))
    line(f"cold ({label}): bytes read for them", f"{int(bytes_read) / 1024:.0f} KiB")
    line(f"cold ({label}): peak RSS at that point", f"{float(rss):.0f} MB", "<= 150 MB", float(rss) <= 150)
    _, isecs, base, irss = indexed.split()
    line(f"cold ({label}): line numbers known (background) after", f"{float(isecs):.2f} s", "right base",
         int(base) == lines - 500 + 1)
    line(f"cold ({label}): peak RSS after indexing", f"{float(irss):.0f} MB", "<= 150 MB", float(irss) <= 150)


def bench_cold() -> None:
    print("5. cold start on a 2 GB feed", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-follower-big-", dir="/tmp") as tmp:
        path = Path(tmp) / "context-brief.jsonl"
        started = time.perf_counter()
        lines = write_big_feed(path, size=BIG)
        took = time.perf_counter() - started
        line(f"generated in {took:.0f} s", f"{path.stat().st_size / 1e9:.2f} GB, {lines:,} lines")
        cold_once(path, lines, drop=False)
        cold_once(path, lines, drop=True)
    # the TemporaryDirectory (and the 2 GB file) is gone here


BENCHES = {"latency": bench_latency, "idle": bench_idle_first, "poll": bench_poll, "throughput": bench_throughput,
           "cold": bench_cold}


def main(argv: list[str]) -> int:
    names = argv or list(BENCHES)
    print(f"feed follower benchmarks ({os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
          f"load average {os.getloadavg()[0]:.2f} at start: other processes share these CPUs)")
    for name in names:
        BENCHES[name]()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
