"""validate and rehydrate benchmarks (issue 4). Run from the repository root:

    .venv/bin/python -m tests.bench.bench_actions

On a generated 100,000-polyform source (``make_polyforms``, ~30 MB):

1. validate: target <= 2 s. In-process ``validate_file`` with ``workers=auto`` (best and median of
   5), in-process with one worker (for comparison), and end to end as a real
   ``polylog-console validate --json`` process, interpreter start included (best and median of 3).
2. rehydrate --workers auto, validation included: target <= 6 s. In-process ``rehydrate`` (best
   and median of 5), in-process with one worker, and end to end as a real
   ``polylog-console rehydrate --json`` process (best and median of 3). Every run is checked: the
   catalogs are consistent.

The machine is shared: the load average is printed, since competing processes slow every figure.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from polylog_console.core.model.config import load_config
from polylog_console.core.model.workspace import Workspace
from polylog_console.core.runbook.catalogs import verify_catalogs
from polylog_console.core.runbook.rehydrate import rehydrate
from polylog_console.core.runbook.validate import available_cpus, validate_file
from polylog_console.demo.sample import make_polyforms, polyform_lines, write_workspace

POLYFORMS = 100_000
VALIDATE_TARGET = 2.0
REHYDRATE_TARGET = 6.0
RUNS = 5


def line(name: str, value: str, target: str, ok: bool | None) -> None:
    verdict = "" if ok is None else ("PASS" if ok else "FAIL")
    print(f"  {name:<64} {value:>8}   target {target:<8} {verdict}")


def timed(fn: Callable[[], object], runs: int = RUNS) -> list[float]:
    times = []
    for _ in range(runs):
        gc.collect()
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def cli(*args: str, runs: int = 3) -> tuple[list[float], dict]:
    """Run ``polylog-console ARGS --json`` as a real process ``runs`` times: wall times, last output."""
    times = []
    doc: dict = {}
    for _ in range(runs):
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "polylog_console", *args, "--json"], capture_output=True,
                              text=True, timeout=300)
        times.append(time.perf_counter() - started)
        if proc.returncode != 0:
            raise SystemExit(f"{args[0]} failed ({proc.returncode}): {proc.stderr.strip()}")
        doc = json.loads(proc.stdout)
    return times, doc


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="bench-actions-"))
    try:
        root = tmp / "ws"
        write_workspace(root, polyforms=200, checkpoints=20, drift_from=15)
        started = time.perf_counter()
        gc.disable()
        data = polyform_lines(make_polyforms(POLYFORMS, seed=6))
        gc.enable()
        source = root / "stable_polyforms.jsonl"
        source.write_bytes(data)
        print(f"source: {POLYFORMS:,} polyforms, {len(data) / 1e6:.1f} MB, generated in "
              f"{time.perf_counter() - started:.1f}s; {available_cpus()} CPUs available, load average "
              f"{os.getloadavg()[0]:.2f} (other processes competing for the CPUs slow every figure)")
        del data

        print("\nvalidate (target <= 2 s):")
        report = validate_file(source)
        assert report.valid and report.polyforms == POLYFORMS, report.summary()
        auto = timed(lambda: validate_file(source))
        line(f"in-process, workers=auto ({report.workers}), best of {RUNS}", f"{min(auto):.2f} s",
             f"<= {VALIDATE_TARGET:g} s", min(auto) <= VALIDATE_TARGET)
        line(f"in-process, workers=auto, median of {RUNS}", f"{statistics.median(auto):.2f} s",
             f"<= {VALIDATE_TARGET:g} s", statistics.median(auto) <= VALIDATE_TARGET)
        one = timed(lambda: validate_file(source, workers=1), runs=3)
        line("in-process, workers=1, best of 3 (comparison)", f"{min(one):.2f} s", "-", None)
        times, doc = cli("validate", "--workspace", str(root))
        assert doc["valid"] and doc["polyforms"] == POLYFORMS
        line("polylog-console validate --json (real process), best of 3", f"{min(times):.2f} s",
             f"<= {VALIDATE_TARGET:g} s", min(times) <= VALIDATE_TARGET)
        line("polylog-console validate --json (real process), median of 3", f"{statistics.median(times):.2f} s",
             f"<= {VALIDATE_TARGET:g} s", statistics.median(times) <= VALIDATE_TARGET)

        print("\nrehydrate --workers auto, validation included (target <= 6 s):")
        ws = Workspace.open(root)
        config = load_config(ws.root)
        results = []

        def run(workers: int | str = "auto") -> None:
            results.append(rehydrate(ws, config, workers=workers))
            check = verify_catalogs(root)
            assert check.consistent, check.problems

        auto = timed(run)
        line(f"in-process, workers=auto ({results[-1].workers}), best of {RUNS}", f"{min(auto):.2f} s",
             f"<= {REHYDRATE_TARGET:g} s", min(auto) <= REHYDRATE_TARGET)
        line(f"in-process, workers=auto, median of {RUNS}", f"{statistics.median(auto):.2f} s",
             f"<= {REHYDRATE_TARGET:g} s", statistics.median(auto) <= REHYDRATE_TARGET)
        one = timed(lambda: run(1), runs=3)
        line("in-process, workers=1, best of 3 (comparison)", f"{min(one):.2f} s", "-", None)
        times, doc = cli("rehydrate", "--workspace", str(root), "--workers", "auto")
        assert doc["rehydrated"] and doc["polyforms"] == POLYFORMS and verify_catalogs(root).consistent
        line("polylog-console rehydrate --json (real process), best of 3", f"{min(times):.2f} s",
             f"<= {REHYDRATE_TARGET:g} s", min(times) <= REHYDRATE_TARGET)
        line("polylog-console rehydrate --json (real process), median of 3", f"{statistics.median(times):.2f} s",
             f"<= {REHYDRATE_TARGET:g} s", statistics.median(times) <= REHYDRATE_TARGET)
        sizes = ", ".join(f"{name} {info['bytes'] / 1e6:.1f} MB" for name, info in doc["artifacts"].items())
        print(f"  catalogs written: {sizes}")
        print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
