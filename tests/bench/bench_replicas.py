"""Replica parity benchmark (issue 4). Run from the repository root:

    .venv/bin/python -m tests.bench.bench_replicas

50 HTTP replicas on 127.0.0.1, each on its own port of a real server running in a separate
process (``tests/replica_server.py``, so that its threads do not share the checker's GIL): 45
answer the stored digest, 2 also serve the full matching state, 2 serve a drifted state (diffed
per namespace), and 1 accepts the connection and never answers. Per-replica timeout 2 s with 2
retries. Target: the whole check in <= the per-replica timeout + 1 s, measured in-process (5 runs)
and end to end as a real ``polylog-console replicas --json`` process (interpreter start included).

``--big`` (issue 10, item 11): several replicas serving bodies over the 512 MB limit at once, and
several big ones within it, streamed by the real server (never held there), checked by a real
``polylog-console replicas --json`` process whose peak RSS (``ru_maxrss``) is reported: the bodies
held at once share one 512 MB budget, so the peak stays near it instead of growing with the number
of replicas (1.3 GB for three before the budget).
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


def _replicas_process(root: Path) -> tuple[int, dict, float, float]:
    """Run ``polylog-console replicas --json`` and return (exit code, report, wall s, peak RSS MB)."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "polylog_console", "replicas", "--json", "--workspace", str(root)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS (ru_maxrss, KB)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    return proc.returncode, json.loads(out or b"{}"), wall, usage.ru_maxrss / 1024


def big_bodies() -> int:
    """Several big replica bodies at once (item 11): peak RSS of the checking process."""
    mb = 1024 * 1024
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    tmp = Path(tempfile.mkdtemp(prefix="bench-replicas-big-"))
    server = None
    try:
        root = tmp / "ws"
        incident = write_workspace(root, polyforms=200, checkpoints=20, config=None)
        server = subprocess.Popen([sys.executable, "-m", "tests.replica_server", "--ports", "1"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  cwd=Path(__file__).resolve().parents[2])
        assert server.stdout is not None
        port = json.loads(server.stdout.readline())["ports"][0]
        cases = [
            ("4 replicas of 600 MB (over the limit), streamed without a length", 4, 600 * mb, False, "0" * 64),
            ("3 replicas of 200 MB (within it, 600 MB together), matching", 3, 200 * mb, False,
             incident.stored_digest),
        ]
        for title, count, size, length, digest_value in cases:
            query = f"size={size}&digest={digest_value}" + ("&length=1" if length else "")
            toml = "".join(f'[[replicas]]\nname = "big{i}"\nurl = "http://127.0.0.1:{port}/big?{query}&n={i}"\n'
                           f"timeout = 60\nretries = 0\n\n" for i in range(count))
            (root / "monitoring.toml").write_text(toml)
            code, doc, wall, peak = _replicas_process(root)
            print(f"{title}:")
            errors = sorted({r["error"] or r["status"] for r in doc.get("replicas", [])})
            line("exit code / replicas reported", f"{code} / {len(doc.get('replicas', []))}", "-", None)
            for text in errors:
                print(f"    result: {text}")
            line("wall, real process", f"{wall:.2f} s", "-", None)
            if size > 512 * mb:  # nothing is parsed: the peak is the shared budget plus the interpreter
                line("peak RSS of the checking process", f"{peak:.0f} MB", "<= 700 MB", peak <= 700)
            else:  # the bodies held (<= 512 MB together) plus the one being parsed
                line("peak RSS of the checking process", f"{peak:.0f} MB", "-", None)
    finally:
        sys.stdout.flush()
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def main() -> int:
    if "--big" in sys.argv[1:]:
        return big_bodies()
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
