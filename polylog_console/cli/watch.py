"""``polylog-console watch``: the headless monitor.

``--once`` runs the session's pipeline (:meth:`Session.run_once`) to the end of the feed and exits
(1 when the last status is DRIFT or STALE): the same monitor, alerts, audit, automatic refresh and
delivery as the following ``watch`` (:mod:`polylog_console.cli.watch_follow`). ``--json`` prints
one JSON line per event as it happens and, last, a ``summary`` event whose counts are the ones
the human summary prints; each alert's ``summary`` is printed verbatim by both.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter, deque
from typing import Any

from polylog_console.cli.common import EXIT_OK, EXIT_PROBLEM, fail, open_context, report_faults, say
from polylog_console.core.infra.text import safe_text, short_digest
from polylog_console.core.model.events import AlertEvent, EntryEvent, IngestErrorEvent, Status
from polylog_console.core.monitor.incident import IncidentEvent
from polylog_console.core.monitor.rules import MonitorView, format_age
from polylog_console.core.monitor.session import Session

SHOWN_ERRORS = 20  # ingest errors listed by the human summary (all are counted)
SHOWN_ALERTS = 10  # last alerts listed
SHOWN_DELIVERIES = 20  # last delivery attempts listed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--once", action="store_true", help="read the feed to its end and exit")
    parser.add_argument("--poll", action="store_true", help="follow by polling (network file systems)")
    parser.add_argument("--metrics", metavar="ADDR:PORT", help="serve Prometheus metrics on ADDR:PORT")


def run(args: argparse.Namespace) -> int:
    ctx = open_context(args)
    if args.once:
        return run_once(ctx)
    from polylog_console.cli.watch_follow import run_follow

    return run_follow(ctx, args)


class Tally:
    """What a one-shot run saw, counted the same way for both outputs (bounded: counters and the
    last few items only, whatever the feed's length)."""

    def __init__(self) -> None:
        self.alerts: Counter[tuple[str, str]] = Counter()  # (code, status)
        self.incidents: Counter[str] = Counter()  # incident event kind
        self.errors: list[IngestErrorEvent] = []
        self.error_count = 0
        self.entry_events = 0
        self.last_alerts: deque[AlertEvent] = deque(maxlen=SHOWN_ALERTS)
        self.deliveries: deque[Any] = deque(maxlen=SHOWN_DELIVERIES)
        self.delivery_count = 0
        self.refreshes: list[Any] = []

    def __call__(self, events: list[Any]) -> None:
        for event in events:
            cls = event.__class__
            if cls is AlertEvent:
                alert = event.alert
                self.alerts[(alert.code, alert.status)] += 1
                self.last_alerts.append(event)
            elif cls is IncidentEvent:
                self.incidents[event.kind] += 1
            elif cls is IngestErrorEvent:
                self.error_count += 1
                if len(self.errors) < SHOWN_ERRORS:
                    self.errors.append(event)
            elif cls is EntryEvent:
                self.entry_events += 1
            else:
                kind = getattr(event, "event", None)
                if kind == "delivery":
                    self.delivery_count += 1
                    self.deliveries.append(event)
                elif kind == "refresh" and len(self.refreshes) < 100:
                    self.refreshes.append(event)

    def alert_counts(self) -> dict[str, int]:
        """Alerts raised by "code status", sorted."""
        return {f"{code} {status}": n for (code, status), n in sorted(self.alerts.items())}

    def summary(self, view: MonitorView, elapsed: float) -> dict[str, Any]:
        latest = view.latest
        return {
            "event": "summary",
            "checkpoints": view.checkpoints,
            "entries": view.entries,
            "ingest_errors": view.ingest_errors,
            "warnings": view.warnings,
            "status": str(view.status),
            "stale": view.stale,
            "consecutive_mismatches": view.consecutive_mismatches,
            "stored_digest": view.stored_digest,
            "latest": {"label": latest.display_label, "line": latest.line, "timestamp": latest.timestamp,
                       "registry_digest": latest.digest} if latest is not None else None,
            "alerts": self.alert_counts(),
            "incidents": view.incidents,
            "incident": view.incident.to_json() if view.incident is not None else None,
            "last_incident": view.last_incident.to_json() if view.last_incident is not None else None,
            "deliveries": self.delivery_count,
            "elapsed_s": round(elapsed, 3),
        }


def feed_missing_reason(feed: Any) -> str:
    """Why a feed that does not exist cannot be read: a symlink loop or a link leading outside the
    workspace is said as such, anything else is "feed not found"."""
    from polylog_console.core.model.workspace import check_contained

    try:
        check_contained(feed)
    except OSError as exc:
        return exc.strerror or str(exc)
    return "feed not found"


def run_once(ctx: Any) -> int:
    config = ctx.config
    feed = config.feed.path
    if not feed.exists():
        return fail(f"{ctx.workspace.relative(feed)}: {feed_missing_reason(feed)}")
    session = Session(ctx.workspace, config)
    from polylog_console.core.monitor.incidents import attach_incident_index

    index = attach_incident_index(session)  # memory/incidents/index.jsonl, as the following watch keeps it
    tally = Tally()
    session.subscribe(tally)
    report_faults(session)  # an outbox that cannot be written: one line on stderr (issue 10)
    if ctx.json:
        from polylog_console.cli.watch_follow import JsonPrinter

        printer = JsonPrinter(sys.stdout)
        session.subscribe(printer)
    else:
        session.subscribe(_live_lines)
    started = time.perf_counter()
    try:
        asyncio.run(session.run_once(emit_checkpoints=ctx.json))
    except OSError as exc:  # not the feed's: read_records raises UnreadableFile (naming the feed) for those
        where = f"{safe_text(exc.filename)}: " if exc.filename else ""
        return fail(f"watch --once stopped by an unexpected error: {where}{exc.strerror or exc}")
    if index is not None:
        index.flush()  # the last coverage mark
    elapsed = session.read_seconds or (time.perf_counter() - started)  # reading, not the deliveries' grace
    view = session.monitor.snapshot()
    if ctx.json:
        printer([_Summary(tally.summary(view, elapsed))])
    else:
        print_summary(ctx, view, tally, elapsed)
    if view.stored_error is not None:  # one line on stderr in both outputs (SPEC §11); --json has its summary
        return fail(view.stored_error)
    # a flapping incident held open is a problem even when the latest checkpoint happens to match
    flapping = view.incident is not None and view.incident.flapping
    return EXIT_PROBLEM if view.status in (Status.DRIFT, Status.STALE) or flapping else EXIT_OK


class _Summary:
    event = "summary"

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def to_json(self) -> dict[str, Any]:
        return self.data


def _live_lines(events: list[Any]) -> None:
    """Human mode: delivery and refresh outcomes as they happen (the summary follows at the end)."""
    for event in events:
        kind = getattr(event, "event", None)
        if kind == "delivery":
            error = f": {safe_text(event.error, 160)}" if event.error else ""
            say(f"delivery        {event.sink} {event.outcome}: {event.code} {event.alert_status}{error}")
        elif kind == "refresh":
            outcome = f": {event.outcome}" if event.outcome and event.outcome != "failed" else ""
            error = f": {safe_text(event.error, 200)}" if event.error else ""
            say(f"refresh         {event.phase}{outcome}{error}")


def print_summary(ctx: Any, view: MonitorView, tally: Tally, elapsed: float) -> None:
    rate = view.checkpoints / elapsed if elapsed > 0 else 0.0
    say(f"feed            {safe_text(ctx.workspace.relative(ctx.config.feed.path))}")
    say(f"read            {view.checkpoints} checkpoints, {view.entries} other entries, "
        f"{view.ingest_errors} ingest errors in {elapsed:.2f}s ({rate:,.0f} checkpoints/s); "
        f"{view.warnings} checkpoints with field warnings (details: --json)")
    say(f"stored digest   {short_digest(view.stored_digest, 64) if view.stored_digest else 'unreadable'}")
    latest = view.latest
    if latest is not None:
        age = f", {format_age(view.age)} old" if view.age is not None else ""
        say(f"latest          {safe_text(latest.display_label, 60)} (line {latest.line}{age}) "
            f"digest {short_digest(latest.digest)}")
    stale = " (stale)" if view.stale and view.status == Status.DRIFT else ""
    say(f"status          {view.status}{stale}, {view.consecutive_mismatches} consecutive mismatches")
    incident = view.incident
    if incident is not None:
        start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(incident.started_at))
        say(f"incident        #{incident.id} open: drift since {start} ({safe_text(incident.started_label, 60)}, "
            f"line {incident.started_line}), {incident.mismatching_checkpoints} mismatching checkpoints"
            f"{', escalated' if incident.escalated else ''}")
        if incident.flapping:
            say(f"                flapping: {incident.flap_drifts} drifts, {incident.matching_checkpoints} matching "
                f"checkpoints; held open until parity or drift holds for {ctx.config.monitor.flap_settle} "
                "checkpoints")
    if view.incidents:
        resolved = tally.incidents.get("resolved", 0)
        say(f"incidents       {view.incidents} opened, {resolved} resolved")
    for event in tally.errors:
        say(f"ingest error    line {event.error.line}: {safe_text(event.error.reason, 160)}")
    if tally.error_count > len(tally.errors):
        say(f"                ... and {tally.error_count - len(tally.errors)} more ingest errors")
    if tally.alerts:
        say("alerts          " + ", ".join(f"{key}: {n}" for key, n in tally.alert_counts().items()))
    for event in tally.last_alerts:
        a = event.alert
        say(f"alert           {a.code} {a.status}: {safe_text(a.summary)}")
