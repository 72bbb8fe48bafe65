"""Fleet benchmark (issue 13): ``fleet --json`` and the fleet screen with 1,000 workspaces behind a
real Prometheus. Run from the repository root:

    .venv/bin/python -m tests.bench.bench_fleet [--workspaces 1000] [--interval 5s] [--refreshes 10]

A test exporter (one ``ThreadingHTTPServer`` on 127.0.0.1) serves each workspace's series, as a
``watch --metrics`` would, under its own path; Debian's ``prometheus`` scrapes it as 1,000 targets
(one per workspace: ``__metrics_path__`` and ``instance`` set per target), so the fleet's queries
join on ``instance``/``job`` exactly as they do for real watchers. Every 7th workspace drifts.

Figures printed:

1. ``fleet --json`` end to end (a real process: interpreter start, 10 PromQL queries, JSON out):
   target <= 1 s; and in-process ``FleetSource.fetch()`` (queries + join + sort), best / median.
2. the fleet screen (headless Textual, ``run_test``) refreshing at the scrape interval against the
   same Prometheus: each refresh's duration and the delay between successive refreshes; the lag
   must not grow (the last refreshes are no slower than the first) and ticks that arrive while a
   refresh runs are skipped, never queued.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from polylog_console.core.fleet.model import FleetSource
from polylog_console.core.fleet.prometheus import PrometheusClient
from tests.fleetdata import workspace_spec

TARGET = 1.0  # seconds


def exposition(spec: dict, now: float) -> bytes:
    status = spec["status"] if spec["status"] not in ("DOWN", "NO DATA") else "IN SYNC"
    drifting = status == "DRIFT"
    lines = [f'polylog_workspace_info{{workspace="{spec["name"]}",host="{spec["host"]}",scheme="engine",'
             f'version="1.0"}} 1']
    lines += [f'polylog_status{{status="{s}"}} {1 if s == status else 0}' for s in
              ("IN SYNC", "DRIFT", "STALE", "NO DATA")]
    lines += [f"polylog_registry_match {0 if drifting else 1}",
              f"polylog_drift_started_timestamp_seconds {now - 600 if drifting else 0}",
              f"polylog_consecutive_mismatches {12 if drifting else 0}",
              f"polylog_latest_checkpoint_timestamp_seconds {now - (7200 if status == 'STALE' else 20)}",
              'polylog_replica_match{replica="replica-eu"} 1',
              f'polylog_replica_match{{replica="replica-us"}} {0 if drifting else 1}',
              f'polylog_outbox_pending{{sink="alertmanager"}} {1 if drifting else 0}']
    return ("\n".join(lines) + "\n").encode()


class Exporter:
    """Serves ``/ws/N`` (workspace N's series). Workspaces whose spec says DOWN answer 503 once
    :meth:`take_down` was called (they were scraped before, as a watcher that died)."""

    def __init__(self, count: int) -> None:
        now = time.time()
        self.specs = [workspace_spec(i) for i in range(count)]
        self.bodies = {f"/ws/{i}": exposition(s, now) for i, s in enumerate(self.specs)}
        self.going_down = {f"/ws/{i}" for i, s in enumerate(self.specs) if s["status"] == "DOWN"}
        self.down: set[str] = set()  # answered 503 once taken down (after a first good scrape)
        self.hits = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                owner.hits += 1
                body = owner.bodies.get(self.path)
                if body is None or self.path in owner.down:
                    self.send_response(503 if body is not None else 404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address) -> None:  # Prometheus dropping a keep-alive
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def scrape_config(self) -> str:
        lines = ["  - job_name: polylog", "    static_configs:"]
        for i, spec in enumerate(self.specs):
            lines.append(f'      - targets: ["127.0.0.1:{self.port}"]')
            lines.append(f'        labels: {{__metrics_path__: "/ws/{i}", instance: "{spec["instance"]}"}}')
        return "\n".join(lines) + "\n"

    def take_down(self) -> int:
        self.down = set(self.going_down)
        return len(self.down)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def measure(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workspaces", type=int, default=1000)
    parser.add_argument("--interval", default="5s", help="Prometheus scrape interval (and screen refresh)")
    parser.add_argument("--refreshes", type=int, default=10)
    args = parser.parse_args()
    os.environ.setdefault("CI", "false")
    from tests.promstack import Prometheus

    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; {args.workspaces} workspaces, "
          f"scrape interval {args.interval}")
    exporter = Exporter(args.workspaces)
    tmp = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    prom = Prometheus(tmp, scrape_configs=exporter.scrape_config(), interval=args.interval)
    ok = True
    try:
        started = time.perf_counter()
        prom.wait_for("polylog_workspace_info", args.workspaces, timeout=180)
        expected_down = exporter.take_down()
        prom.wait_for("up == 0", expected_down, timeout=60)
        print(f"prometheus has every target's series after {time.perf_counter() - started:.1f}s "
              f"({exporter.hits} scrapes served)")

        # 1. fleet --json, end to end
        env = {**os.environ, "NO_COLOR": "1"}
        times = []
        doc = None
        for _ in range(5):
            t0 = time.perf_counter()
            result = subprocess.run([sys.executable, "-m", "polylog_console", "fleet", "--json", "--workspace",
                                     str(tmp), "--prometheus", prom.url], capture_output=True, text=True,
                                    timeout=60, env=env)
            times.append(time.perf_counter() - t0)
            doc = json.loads(result.stdout)
        assert doc is not None and doc["prometheus"]["ok"], doc and doc["prometheus"]
        statuses: dict[str, int] = {}
        for row in doc["instances"]:
            statuses[row["status"]] = statuses.get(row["status"], 0) + 1
        assert len(doc["instances"]) == args.workspaces, len(doc["instances"])
        assert statuses.get("DOWN", 0) == expected_down, statuses
        assert doc["instances"][0]["status"] == "DRIFT"
        best, median = min(times), statistics.median(times)
        verdict = "ok" if median <= TARGET else "OVER TARGET"
        ok &= median <= TARGET
        print(f"fleet --json (process)    best {best * 1000:.0f} ms, median {median * 1000:.0f} ms "
              f"(target <= {TARGET * 1000:.0f} ms: {verdict}); {len(doc['instances'])} rows {statuses}, "
              f"{len(result.stdout) / 1024:.0f} KiB of JSON")

        client = PrometheusClient(prom.url)
        source = FleetSource(client, None)
        fetches = measure(source.fetch, 10)
        print(f"FleetSource.fetch()       best {min(fetches) * 1000:.0f} ms, median "
              f"{statistics.median(fetches) * 1000:.0f} ms ({len(client.queries)} queries concurrently, join, sort)")

        # 2. the screen, refreshing at the scrape interval
        from polylog_console.core.model.config import parse_duration
        from polylog_console.ui.fleet.app import FleetApp

        interval = parse_duration(args.interval)
        app = FleetApp(source, interval=interval)
        stamps: list[float] = []

        async def drive() -> None:
            async with app.run_test(size=(160, 48)) as pilot:
                seen = 0
                deadline = time.monotonic() + interval * (args.refreshes + 3) + 30
                while app.refreshes < args.refreshes and time.monotonic() < deadline:
                    await pilot.pause(0.02)
                    if app.refreshes != seen:
                        seen = app.refreshes
                        stamps.append(time.monotonic())
                assert app.query_one("DataTable").row_count == args.workspaces

        asyncio.run(drive())
        durations = app.refresh_times
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        first, last = statistics.median(durations[:3]), statistics.median(durations[-3:])
        # lateness of each refresh against the timer's fixed schedule: bounded, not accumulating
        late = [stamp - (stamps[0] + i * interval) for i, stamp in enumerate(stamps)]
        grows = late[-1] > interval or last > first * 2 + 0.2
        ok &= not grows and max(durations) <= TARGET
        print(f"fleet screen refresh      first {durations[0] * 1000:.0f} ms, median "
              f"{statistics.median(durations) * 1000:.0f} ms, max {max(durations) * 1000:.0f} ms over "
              f"{len(durations)} refreshes (target <= {TARGET * 1000:.0f} ms)")
        renders = app.render_times
        print(f"fleet screen redraw       median {statistics.median(renders) * 1000:.0f} ms, max "
              f"{max(renders) * 1000:.0f} ms ({args.workspaces} rows, on the event loop)")
        print(f"                          first 3 median {first * 1000:.0f} ms, last 3 median {last * 1000:.0f} ms: "
              f"{'GROWING' if grows else 'no growing lag'}; gaps between refreshes "
              f"{min(gaps):.2f}-{max(gaps):.2f}s (interval {interval:g}s); lateness against the schedule "
              f"{min(late):+.2f}..{max(late):+.2f}s, last {late[-1]:+.2f}s; {app.skipped} ticks skipped")
        source.close()
    finally:
        prom.close()
        exporter.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
