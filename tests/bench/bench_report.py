"""Benchmark: the post-incident report over a 2 GB feed with 1,000 incidents and a 100 MB audit log.

    .venv/bin/python -m tests.bench.bench_report [--dir /tmp/polylog-bench-report] [--size-gb 2]
                                                 [--incidents 1000] [--audit-mb 100] [--keep]

Targets (issue 14): from the incident index <= 5 s, from scratch <= 30 s, the console's timeline
opens (incidents listed, the latest one's strip and its replayed state) <= 1 s.

The workspace is generated in ``--dir`` (default under /tmp; reused with ``--keep`` when the sizes
match): the sample's catalogs, a feed of ~230-byte checkpoints one second apart in which 1,000
incidents of 30 checkpoints each (each its own live digest) are spread evenly, and an audit log
with every incident's records (alert raised, webhook and email deliveries, escalation,
acknowledgement, a validate and a rehydrate, resolution) among ~100 MB of unrelated records
(scheduled replica checks and digests). "From scratch" replays the whole feed through the monitor
(``--no-index``) and writes the index; "from the index" is the next report, which reads the index
(the same records a running ``watch`` appends) and replays only the feed after its last mark.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import orjson

from polylog_console.core.model.config import load_config
from polylog_console.core.model.events import dedup_key, iso
from polylog_console.core.model.workspace import Workspace
from polylog_console.core.monitor import incidents as idx
from polylog_console.core.runbook import report as rp
from polylog_console.demo.sample import write_workspace

LINE = (b'{"label":"checkpoint-%09d","path":"storage/chunks/checkpoint-%09d","polygons":%d,"chunk_count":%d,'
        b'"module_refs":%d,"registry_digest":"%s","timestamp":%d.0}\n')
START = 1_700_000_000
DRIFT = 30  # checkpoints per incident


def live_digest(i: int) -> bytes:
    return (f"{i:08x}" * 8).encode()


def write_feed(path: Path, size: int, incidents: int, stored: str) -> tuple[int, list[int]]:
    """About ``size`` bytes; returns (checkpoints, the first checkpoint number of each incident)."""
    per_line = len(LINE % (0, 0, 100, 5, 2, stored.encode(), START))
    total = size // per_line
    period = total // incidents
    starts = [k * period + period // 2 for k in range(incidents)]
    s = stored.encode()
    with open(path, "wb") as out:
        buf: list[bytes] = []
        n = 0
        for k in range(incidents + 1):
            drift_at = starts[k] if k < incidents else total
            live = live_digest(k + 1)
            while n < min(drift_at + (DRIFT if k < incidents else 0), total):
                dg = live if n >= drift_at else s
                buf.append(LINE % (n, n, 96 + n % 160, 4 + n % 12, 1 + n % 5, dg, START + n))
                n += 1
                if len(buf) >= 50_000:
                    out.write(b"".join(buf))
                    buf = []
        out.write(b"".join(buf))
    return total, starts


def incident_records(i: int, base: float, stored: str, label: str) -> list[tuple[float, dict]]:
    live = live_digest(i + 1).decode()
    key = dedup_key(stored, live)
    common = {"dedup_key": key, "stored_digest": stored, "live_digest": live}
    return [
        (base + 0.05, {"event": "alert_raised", "code": "registry_mismatch", "status": "firing", "summary": "drift",
                       "checkpoint": label, "consecutive_mismatches": 1,
                       "diff": {"missing": 1, "unexpected": 2, "mismatched": 3}, **common}),
        (base + 0.2, {"event": "alert_delivered", "sink": "webhook", "outcome": "delivered",
                      "code": "registry_mismatch", "status": "firing", "dedup_key": key, "attempt": 1,
                      "latency_ms": 150.0}),
        (base + 0.9, {"event": "alert_delivered", "sink": "email", "outcome": "delivered",
                      "code": "registry_mismatch", "status": "firing", "dedup_key": key, "attempt": 1,
                      "latency_ms": 850.0}),
        (base + 2.05, {"event": "escalation", "code": "drift_persistent", "status": "firing",
                       "summary": "escalate: 3 consecutive checkpoints mismatch", "consecutive_mismatches": 3,
                       **common}),
        (base + 4, {"event": "acknowledged", "code": "registry_mismatch", "dedup_key": key, "summary": "drift"}),
        (base + 6, {"event": "action_started", "action": "validate"}),
        (base + 7, {"event": "action_finished", "action": "validate", "outcome": "ok"}),
        (base + 9, {"event": "action_started", "action": "rehydrate", "workers": "auto"}),
        (base + 12, {"event": "action_finished", "action": "rehydrate", "outcome": "ok", "registry_digest": stored,
                     "duration": 3.0}),
        (base + DRIFT + 0.05, {"event": "alert_resolved", "code": "registry_resolved", "status": "resolved",
                               "summary": "parity", "reason": "parity", **common}),
        (base + DRIFT + 0.3, {"event": "alert_delivered", "sink": "webhook", "outcome": "delivered",
                              "code": "registry_resolved", "status": "resolved", "dedup_key": key, "attempt": 1,
                              "latency_ms": 250.0}),
    ]


NOISE = ((0.0, {"event": "action_started", "action": "replicas"}),
         (0.4, {"event": "action_finished", "action": "replicas", "outcome": "ok", "matching": 2, "replicas": 2}),
         (1.0, {"event": "action_started", "action": "digest"}),
         (1.2, {"event": "action_finished", "action": "digest", "outcome": "ok", "registry_match": True}))


def _line(ts: float, record: dict) -> bytes:
    return orjson.dumps({"ts": iso(ts), "actor": "ops@bench", **record}) + b"\n"


def write_audit(path: Path, size: int, starts: list[int], stored: str) -> int:
    """Every incident's records among unrelated scheduled checks, in time order; about ``size`` bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    incidents = [incident_records(i, START + s, stored, f"checkpoint-{s:09d}") for i, s in enumerate(starts)]
    incident_bytes = sum(len(_line(t, r)) for recs in incidents for t, r in recs)
    group = sum(len(_line(START, r)) for _, r in NOISE)
    end = START + (starts[-1] if starts else 0) + 2 * DRIFT
    groups = max(1, (size - incident_bytes) // group)
    every = (end - START) / groups
    records = 0
    with open(path, "wb") as out:
        buf: list[bytes] = []
        k = 0
        for recs in [*incidents, [(float("inf"), {})]]:
            upto = recs[0][0]
            while k < groups and START + k * every < upto:
                base = START + k * every
                buf.extend(_line(base + lag, r) for lag, r in NOISE)
                k += 1
                if len(buf) > 40_000:
                    out.write(b"".join(buf))
                    buf = []
            if upto != float("inf"):
                buf.extend(_line(t, r) for t, r in recs)
        out.write(b"".join(buf))
        records = len(incidents) * 11 + groups * len(NOISE)
    return records


def timed(label: str, fn):
    started = time.perf_counter()
    value = fn()
    elapsed = time.perf_counter() - started
    print(f"{label:<46} {elapsed:8.2f} s", flush=True)
    return value, elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/polylog-bench-report"))
    parser.add_argument("--size-gb", type=float, default=2.0)
    parser.add_argument("--incidents", type=int, default=1000)
    parser.add_argument("--audit-mb", type=float, default=100.0)
    parser.add_argument("--keep", action="store_true", help="reuse (and keep) the generated workspace")
    args = parser.parse_args(argv)
    root = args.dir / "ws"
    size = int(args.size_gb * 1e9)
    stamp = root / ".bench-sizes"
    want = f"{size} {args.incidents} {args.audit_mb}"
    if not (args.keep and stamp.exists() and stamp.read_text() == want):
        shutil.rmtree(args.dir, ignore_errors=True)
        incident = write_workspace(root, polyforms=200, checkpoints=1, drift_from=2, config=None)
        feed = root / "memory" / "coordination" / "context-brief.jsonl"
        (_total, starts), _ = timed(f"generate feed ({args.size_gb:g} GB)",
                                    lambda: write_feed(feed, size, args.incidents, incident.stored_digest))
        timed(f"generate audit log ({args.audit_mb:g} MB)",
              lambda: write_audit(root / "memory" / "audit" / "events.jsonl", int(args.audit_mb * 1e6), starts,
                                  incident.stored_digest))
        stamp.write_text(want)
    ws = Workspace.open(root)
    config = load_config(ws.root)
    feed_size = os.path.getsize(config.feed.path)
    audit_size = os.path.getsize(ws.audit)
    print(f"feed {feed_size / 1e9:.2f} GB, audit log {audit_size / 1e6:.1f} MB, cores {os.cpu_count()}")
    idx.index_path(ws).unlink(missing_ok=True)

    scratch, t_scratch = timed("report --incident all, from scratch",
                               lambda: rp.build_report(ws, config, incident="all", use_index=False))
    assert scratch.source == "scratch", scratch.source
    assert len(scratch.reports) == args.incidents, len(scratch.reports)
    indexed, t_index = timed("report --incident all, from the index",
                             lambda: rp.build_report(ws, config, incident="all"))
    assert indexed.source == "index", indexed.source
    assert [r.to_json()["started_label"] for r in indexed.reports] == [
        r.to_json()["started_label"] for r in scratch.reports]
    latest, _ = timed("report (latest), from the index", lambda: rp.build_report(ws, config))
    doc = latest.reports[0].to_json()
    assert doc["acknowledged_by"] and doc["actions"] and doc["alerts"][0]["delivered"], doc
    text, _ = timed("Markdown of all incidents", lambda: rp.render_markdown(indexed, ws, config))

    def open_timeline():
        source = rp.TimelineSource(ws, config)
        reports = source.load_quick()
        cells = source.around(reports[-1])
        state = source.state_at(next(c for c in cells if c.label == reports[-1].view["started_label"]))
        return reports, cells, state

    (reports, _cells, state), t_open = timed("timeline opens (incidents, strip, replay)", open_timeline)
    assert len(reports) == args.incidents and state.status == "DRIFT", state.status

    def screen_opens() -> float:
        """The real screen in a headless App: until the incidents, the strip and the replay show."""
        import asyncio

        from textual.app import App

        from polylog_console.ui.screens.timeline import TimelineScreen

        class Bench(App[None]):
            def on_mount(self) -> None:
                self.push_screen(TimelineScreen(rp.TimelineSource(ws, config)))

        async def run() -> tuple[float, float]:
            app = Bench()
            async with app.run_test(size=(120, 40)) as pilot:
                started = time.perf_counter()
                listed = None
                while not (isinstance(app.screen, TimelineScreen) and app.screen.state is not None):
                    if listed is None and isinstance(app.screen, TimelineScreen) and app.screen.reports:
                        listed = time.perf_counter() - started
                    await pilot.pause(0.01)
                return listed or 0.0, time.perf_counter() - started

        return asyncio.run(run())

    t_screen, t_state = screen_opens()
    print(f"{'console timeline screen: incidents listed':<46} {t_screen:8.2f} s", flush=True)
    print(f"{'console timeline screen: first replayed state':<46} {t_state:8.2f} s", flush=True)

    def full_timeline():
        source = rp.TimelineSource(ws, config)
        return source.load()

    timed("timeline: the audit log merged in (background)", full_timeline)
    print(f"index {idx.index_path(ws).stat().st_size / 1e3:.0f} kB; Markdown {len(text) / 1e6:.1f} MB")
    ok = t_index <= 5 and t_scratch <= 30 and t_open <= 1 and t_screen <= 1
    print(f"targets: from index {t_index:.2f} s <= 5 s, from scratch {t_scratch:.2f} s <= 30 s, "
          f"timeline opens {t_open:.2f} s (the screen lists the incidents in {t_screen:.2f} s, its first replay "
          f"in {t_state:.2f} s) <= 1 s: {'met' if ok else 'NOT met'}")
    if not args.keep:
        shutil.rmtree(args.dir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
