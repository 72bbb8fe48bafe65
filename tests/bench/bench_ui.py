"""Benchmarks of the console (issue 6), measured on the real program in a real terminal (a pty):

1. first paint on the sample workspace (target <= 1.0 s): from starting ``python -m polylog_console``
   to the status badge with the data on screen, with the package's bytecode compiled as after any
   first run (and, for information, without it);
2. first paint with a 2 GB feed and a 1,000,000-symbol registry (target <= 2.0 s), generated in /tmp
   and deleted afterwards; cold (the digest cache deleted before each run) and warm;
3. 100 checkpoints/s appended by another thread for a while: the lag from each append to the
   checkpoint on screen must not grow, and a key press is answered within 100 ms;
4. idle CPU over 30 s (target <= 1 %).

Run from the repository root: ``python -m tests.bench.bench_ui`` (``--quick`` for shorter runs,
``--skip-big`` to leave out the 2 GB workspace).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import re
import select
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import polylog_console
from polylog_console.core.registry.digest import digest
from polylog_console.core.registry.stored import save_snapshot
from polylog_console.demo.sample import INTERVAL, checkpoint, make_state, write_big_feed, write_workspace
from tests.test_ui_terminal import Console

BADGES = (b"IN SYNC", b"DRIFT", b"STALE", b"NO DATA")


def report(name: str, value: float, target: float, unit: str = "s", lower_is_better: bool = True) -> bool:
    ok = value <= target if lower_is_better else value >= target
    print(f"  {name:<58} {value:9.3f} {unit:<3} target {'<=' if lower_is_better else '>='} {target:g} {unit}"
          f"  {'OK' if ok else 'MISSED'}", flush=True)
    return ok


def first_paint(root: Path, cols: int = 80, rows: int = 24, badge: bytes | None = None) -> tuple[float, float]:
    """(first frame, first frame with the data) in seconds from process start."""
    started = time.perf_counter()
    console = Console(root, cols, rows)
    try:
        console.read_until(b"\x1b[", timeout=60)
        frame = time.perf_counter() - started
        if badge is None:
            deadline = time.monotonic() + 60
            while not any(b in console.output for b in BADGES):
                console.drain(0.005)
                if time.monotonic() > deadline:
                    raise AssertionError("no status badge within 60 s")
        else:
            console.read_until(badge, timeout=60)
        data = time.perf_counter() - started
        console.send(b"q")
        console.wait(10)
        return frame, data
    finally:
        console.close()


PACKAGE = Path(polylog_console.__file__).parent


def drop_bytecode() -> None:
    for cache in PACKAGE.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)


def compile_bytecode() -> None:
    """What any first run leaves behind on a usual machine: the package's bytecode (an editable
    install compiles nothing, and this machine sets PYTHONDONTWRITEBYTECODE, so Python never
    writes it here by itself)."""
    compileall.compile_dir(PACKAGE, quiet=1)


def bench_first_paint(tmp: Path, runs: int) -> bool:
    print("first paint, sample workspace (2,000 polyforms, 200 checkpoints), 80x24:")
    root = tmp / "sample"
    write_workspace(root)
    drop_bytecode()
    cold = statistics.median(first_paint(root, badge=b"DRIFT")[1] for _ in range(3))
    compile_bytecode()
    results = [first_paint(root, badge=b"DRIFT") for _ in range(runs)]
    frame = statistics.median(r[0] for r in results)
    data = statistics.median(r[1] for r in results)
    print(f"  (without the package's bytecode: every module compiled at start)  {cold:9.3f} s")
    print(f"  first frame (median of {runs})                              {frame:9.3f} s")
    return report(f"first paint with the data (median of {runs})", data, 1.0)


def bench_big(tmp: Path, size: int, runs: int = 3) -> bool:
    print(f"first paint, {size / 1e9:.1f} GB feed and a 1,000,000-symbol registry, 80x24:")
    root = tmp / "big"
    write_workspace(root, polyforms=200, checkpoints=20)
    t = time.perf_counter()
    state = make_state(1_000_000)
    save_snapshot(root / "catalogs" / "registry.json", state, label="bench-1m")
    stored = digest(state)
    del state
    feed = root / "memory" / "coordination" / "context-brief.jsonl"
    lines = write_big_feed(feed, size=size, digests=(stored,), start=time.time() - 3600)
    print(f"  (generated {feed.stat().st_size / 1e9:.2f} GB, {lines:,} lines, in {time.perf_counter() - t:.0f} s)")
    ok = True
    cold = []
    for _ in range(runs):
        shutil.rmtree(root / "memory" / "cache", ignore_errors=True)
        cold.append(first_paint(root, badge=b"IN SYNC"))
    print(f"  first frame (median of {runs})                                  "
          f"{statistics.median(r[0] for r in cold):9.3f} s")
    print("  cold runs: " + ", ".join(f"{r[1]:.2f} s" for r in cold))
    ok &= report(f"first paint with the data, cold (median of {runs})", statistics.median(r[1] for r in cold), 2.0)
    ok &= report("first paint with the data, cold (worst run)", max(r[1] for r in cold), 2.0)
    warm = [first_paint(root, badge=b"IN SYNC") for _ in range(runs)]
    ok &= report(f"first paint with the data, warm (median of {runs})", statistics.median(r[1] for r in warm), 2.0)
    # For information: a registry.json in another layout (json.dumps' spaces, as a script might
    # write it) takes the ordinary parse-and-digest path.
    registry = root / "catalogs" / "registry.json"
    registry.write_text(json.dumps(json.loads(registry.read_bytes())), encoding="utf-8")
    shutil.rmtree(root / "memory" / "cache", ignore_errors=True)
    other = first_paint(root, badge=b"IN SYNC")
    print(f"  (cold, registry.json in another layout: ordinary parse)        {other[1]:9.3f} s")
    return ok


def bench_stream(tmp: Path, seconds: float) -> bool:
    print(f"100 checkpoints/s appended for {seconds:.0f} s, console at 160x48:")
    root = tmp / "stream"
    incident = write_workspace(root, polyforms=200, checkpoints=20, drift_from=21,
                               start=time.time() - 20 * INTERVAL)
    feed = root / "memory" / "coordination" / "context-brief.jsonl"
    console = Console(root, 160, 48)
    written: dict[str, float] = {}
    seen: dict[str, float] = {}
    stop = threading.Event()
    lock = threading.Lock()
    try:
        console.read_until(b"IN SYNC", timeout=60)
        pattern = re.compile(rb"live-(\d{6})")

        def reader() -> None:
            tail = b""
            while not stop.is_set():
                ready, _, _ = select.select([console.fd], [], [], 0.05)
                if not ready:
                    continue
                try:
                    chunk = os.read(console.fd, 1 << 16)
                except OSError:
                    return
                now = time.perf_counter()
                with lock:
                    console.output += chunk
                for m in pattern.finditer(tail + chunk):
                    seen.setdefault(m.group(1).decode(), now)
                tail = chunk[-16:]

        def writer() -> None:
            n = 0
            start = time.perf_counter()
            with open(feed, "ab", buffering=0) as handle:
                while not stop.is_set() and time.perf_counter() - start < seconds:
                    n += 1
                    label = f"{n:06d}"
                    record = checkpoint(20 + n, incident.stored_digest, time.time())
                    record["label"] = f"live-{label}"
                    line = json.dumps(record).encode() + b"\n"
                    written[label] = time.perf_counter()
                    handle.write(line)
                    time.sleep(max(0.0, start + n * 0.01 - time.perf_counter()))

        threads = [threading.Thread(target=reader, daemon=True), threading.Thread(target=writer, daemon=True)]
        for th in threads:
            th.start()
        # Key presses while the stream runs: "f" toggles follow/pause; the header says which.
        key_times = []
        time.sleep(1.0)
        for i in range(int(seconds) - 2):
            with lock:
                offset = len(console.output)
            want = b"paused" if i % 2 == 0 else b"following"
            pressed = time.perf_counter()
            console.send(b"f")
            deadline = pressed + 5
            while time.perf_counter() < deadline:
                with lock:
                    found = want in console.output[offset:]
                if found:
                    break
                time.sleep(0.001)
            key_times.append(time.perf_counter() - pressed)
            time.sleep(max(0.0, pressed + 1.0 - time.perf_counter()))
        threads[1].join(seconds + 5)
        time.sleep(1.0)
        stop.set()
        threads[0].join(5)
    finally:
        stop.set()
        console.close()
    lags = {k: seen[k] - written[k] for k in written if k in seen}
    missing = len(written) - len(lags)
    ordered = [lags[k] for k in sorted(lags)]
    n = len(ordered)
    first = ordered[: max(1, n // 4)]
    last = ordered[-max(1, n // 4):]
    print(f"  appended {len(written):,} checkpoints; {missing} never seen on screen"
          " (paused stretches and rows painted only between frames are not counted)")
    print(f"  lag append -> on screen: median {statistics.median(ordered) * 1000:.1f} ms, "
          f"p95 {sorted(ordered)[int(n * 0.95)] * 1000:.1f} ms, max {max(ordered) * 1000:.1f} ms")
    ok = report("lag, first quarter (median)", statistics.median(first) * 1000, 250, "ms")
    ok &= report("lag, last quarter (median): no growing lag", statistics.median(last) * 1000, 250, "ms")
    ok &= report("key press answered on screen (max over presses)", max(key_times) * 1000, 100, "ms")
    print(f"  key press answered: median {statistics.median(key_times) * 1000:.1f} ms over {len(key_times)} presses"
          f" ({', '.join(f'{t * 1000:.0f}' for t in key_times)} ms)")
    return ok


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_idle(tmp: Path, seconds: float) -> bool:
    print(f"idle console (sample workspace, 80x24), CPU over {seconds:.0f} s:")
    root = tmp / "sample"
    if not root.exists():
        write_workspace(root)
    console = Console(root)
    try:
        console.read_until(b"DRIFT", timeout=60)
        console.drain(2.0)
        before = process_cpu(console.pid)
        console.drain(seconds)
        used = process_cpu(console.pid) - before
    finally:
        console.close()
    return report("CPU while idle", used / seconds * 100, 1.0, "%")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_ui")
    parser.add_argument("--quick", action="store_true", help="fewer runs, shorter stream and idle windows")
    parser.add_argument("--skip-big", action="store_true", help="leave out the 2 GB workspace")
    parser.add_argument("--big-size", type=float, default=2.0, help="feed size in GB (default 2)")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="polylog-bench-ui-", dir="/tmp"))
    ok = True
    try:
        ok &= bench_first_paint(tmp, 3 if args.quick else 5)
        if not args.skip_big:
            ok &= bench_big(tmp, int(args.big_size * 1e9), 3 if args.quick else 5)
            shutil.rmtree(tmp / "big", ignore_errors=True)
        ok &= bench_stream(tmp, 8 if args.quick else 20)
        ok &= bench_idle(tmp, 10 if args.quick else 30)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("all targets met" if ok else "some targets missed")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
