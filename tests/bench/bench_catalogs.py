"""rehydrate in polylog6's layout (issue 12): time and sizes at 100,000 polyforms (target <= 6 s,
validation included) or any other count. Run from the repository root:

    .venv/bin/python -m tests.bench.bench_catalogs [--polyforms 250000] [--runs 3]

Prints, per run, the wall time of an in-process ``rehydrate`` (workers=auto) and the phases: the
workers' validate-and-build (``chunks``), writing each artifact (hashing included) and the fsyncs.
Every run is checked: the catalogs are consistent. The load average is printed: the machine may be
shared, and competing processes slow every figure.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from polylog_console.core.model.config import load_config
from polylog_console.core.model.workspace import Workspace
from polylog_console.core.runbook import rehydrate as rh
from polylog_console.core.runbook.catalogs import verify_catalogs
from polylog_console.demo.sample import make_polyforms, polyform_lines, write_workspace

TARGET_100K = 6.0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--polyforms", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-catalogs-"))
    try:
        root = tmp / "ws"
        write_workspace(root, polyforms=200, checkpoints=20, drift_from=15)
        gc.disable()
        data = polyform_lines(make_polyforms(args.polyforms, seed=6))
        gc.enable()
        (root / "stable_polyforms.jsonl").write_bytes(data)
        print(f"source: {args.polyforms:,} polyforms, {len(data) / 1e6:.1f} MB")
        del data
        ws = Workspace.open(root)
        config = load_config(ws.root)
        phases: dict[str, float] = {}
        run_chunks, write_artifact, fsync = rh.run_chunks, rh._write_artifact, os.fsync

        def timed_chunks(*a, **k):  # type: ignore[no-untyped-def]
            started = time.perf_counter()
            try:
                return run_chunks(*a, **k)
            finally:
                phases["chunks"] = time.perf_counter() - started

        def timed_write(directory, name, pieces):  # type: ignore[no-untyped-def]
            started = time.perf_counter()
            try:
                return write_artifact(directory, name, pieces)
            finally:
                phases[name] = time.perf_counter() - started

        def timed_fsync(fd):  # type: ignore[no-untyped-def]
            started = time.perf_counter()
            try:
                fsync(fd)
            finally:
                phases["fsync"] = phases.get("fsync", 0.0) + time.perf_counter() - started

        rh.run_chunks, rh._write_artifact, os.fsync = timed_chunks, timed_write, timed_fsync  # type: ignore[assignment]
        times = []
        result = None
        for i in range(args.runs):
            phases.clear()
            gc.collect()
            started = time.perf_counter()
            result = rh.rehydrate(ws, config)
            times.append(time.perf_counter() - started)
            check = verify_catalogs(root)
            assert check.consistent, check.problems
            detail = ", ".join(f"{k} {v:.2f}" for k, v in phases.items())
            print(f"  run {i + 1}: {times[-1]:.2f} s (workers {result.workers}; {detail}); "
                  f"load {os.getloadavg()[0]:.2f}")
        rh.run_chunks, rh._write_artifact, os.fsync = run_chunks, write_artifact, fsync  # type: ignore[assignment]
        verdict = ""
        if args.polyforms == 100_000:
            verdict = "PASS" if min(times) <= TARGET_100K else "FAIL"
            verdict = f"   target <= {TARGET_100K:g} s {verdict}"
        print(f"rehydrate {args.polyforms:,} polyforms: best {min(times):.2f} s, median "
              f"{statistics.median(times):.2f} s{verdict}")
        assert result is not None
        sizes = ", ".join(f"{name} {info['bytes'] / 1e6:.1f} MB" for name, info in result.artifacts.items())
        print(f"  artifacts: {sizes}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
