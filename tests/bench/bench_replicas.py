"""Replica parity benchmark (issue 4). Run from the repository root:

    .venv/bin/python -m tests.bench.bench_replicas

50 HTTP replicas on 127.0.0.1, each on its own port of a real server running in a separate
process (``tests/replica_server.py``, so that its threads do not share the checker's GIL): 45
answer the stored digest, 2 also serve the full matching state, 2 serve a drifted state (diffed
per namespace), and 1 accepts the connection and never answers. Per-replica timeout 2 s with 2
retries. Target: the whole check in <= the per-replica timeout + 1 s, measured in-process (5 runs)
and end to end as a real ``polylog-console replicas --json`` process (interpreter start included).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from polylog_console.core.model.config import load_config
from polylog_console.core.model.workspace import Workspace
from polylog_console.core.runbook.replicas import check_replicas_sync
from polylog_console.demo.sample import write_workspace

REPLICAS = 50
TIMEOUT = 2.0
RETRIES = 2
TARGET = TIMEOUT + 1.0


def line(name: str, value: str, target: str, ok: bool | None) -> None:
    verdict = "" if ok is None else ("PASS" if ok else "FAIL")
    print(f"  {name:<58} {value:>12}   target {target:<10} {verdict}")


def plan(ports: list[int]) -> list[tuple[str, str]]:
    """(name, url) for every replica: 45 digest-only, 2 matching state, 2 drifted, 1 hanging."""
    out = []
    for index, port in enumerate(ports):
        if index == len(ports) - 1:
            path = "/hang"
        elif index >= len(ports) - 3:
            path = "/ok?doc=drifted"
        elif index >= len(ports) - 5:
            path = "/ok?doc=state"
        else:
            path = "/ok"
        out.append((f"replica-{index:02d}", f"http://127.0.0.1:{port}{path}"))
    return out


def main() -> int:
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    tmp = Path(tempfile.mkdtemp(prefix="bench-replicas-"))
    server = None
    try:
        root = tmp / "ws"
        incident = write_workspace(root, config=None)
        docs = tmp / "docs"
        docs.mkdir()
        (docs / "ok.json").write_text(json.dumps({"digest": incident.stored_digest}))
        (docs / "state.json").write_text(json.dumps({"digest": incident.stored_digest,
                                                     "state": incident.stored_state}, ensure_ascii=False))
        (docs / "drifted.json").write_text(json.dumps({"digest": incident.live_digest, "state": incident.live_state,
                                                       "generated_at": "2025-11-09T18:00:00Z"}, ensure_ascii=False))
        server = subprocess.Popen(
            [sys.executable, "-m", "tests.replica_server", "--ports", str(REPLICAS),
             "--doc", f"ok={docs / 'ok.json'}", "--doc", f"state={docs / 'state.json'}",
             "--doc", f"drifted={docs / 'drifted.json'}"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
        assert server.stdout is not None
        ports = json.loads(server.stdout.readline())["ports"]
        replicas = plan(ports)
        toml = "".join(f'[[replicas]]\nname = "{name}"\nurl = "{url}"\ntimeout = {TIMEOUT}\nretries = {RETRIES}\n\n'
                       for name, url in replicas)
        (root / "monitoring.toml").write_text(toml)
        ws = Workspace.open(root)
        config = load_config(root)
        assert len(config.replicas) == REPLICAS

        print(f"{REPLICAS} HTTP replicas on 127.0.0.1 (45 digest-only, 2 with state, 2 drifted with state, "
              f"1 hanging), timeout {TIMEOUT:g} s, retries {RETRIES}:")
        times = []
        report = None
        for _ in range(5):
            started = time.perf_counter()
            report = check_replicas_sync(ws, config)
            times.append(time.perf_counter() - started)
        assert report is not None
        statuses: dict[str, int] = {}
        for r in report.replicas:
            statuses[r.status] = statuses.get(r.status, 0) + 1
        assert statuses == {"match": 47, "drift": 2, "unreachable": 1}, statuses
        fast = [r.latency_ms for r in report.replicas if r.latency_ms is not None]
        line("whole check, in-process, worst of 5", f"{max(times):.3f} s", f"<= {TARGET:g} s", max(times) <= TARGET)
        line("whole check, in-process, best of 5", f"{min(times):.3f} s", "-", None)
        line("overhead beyond the hanging replica's timeout (worst)", f"{max(times) - TIMEOUT:.3f} s", "<= 1 s",
             max(times) - TIMEOUT <= 1.0)
        line("latency of the answering replicas, median", f"{statistics.median(fast):.1f} ms", "-", None)
        line("latency of the answering replicas, max", f"{max(fast):.1f} ms", "-", None)

        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "polylog_console", "replicas", "--json", "--workspace",
                               str(root)], capture_output=True, text=True)
        wall = time.perf_counter() - started
        doc = json.loads(proc.stdout)
        assert proc.returncode == 1 and len(doc["replicas"]) == REPLICAS, proc.stderr
        line("polylog-console replicas --json, real process, wall", f"{wall:.3f} s", f"<= {TARGET:g} s",
             wall <= TARGET)
        line("  of which the check itself (elapsed_ms)", f"{doc['elapsed_ms'] / 1000:.3f} s", "-", None)

        healthy = replace(config, replicas=tuple(r for r in config.replicas if "/hang" not in (r.url or "")))
        times = []
        for _ in range(5):
            started = time.perf_counter()
            check_replicas_sync(ws, healthy)
            times.append(time.perf_counter() - started)
        line(f"{len(healthy.replicas)} answering replicas only, best of 5", f"{min(times):.3f} s", "-", None)
    finally:
        sys.stdout.flush()
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
