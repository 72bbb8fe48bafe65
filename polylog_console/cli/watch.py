"""``polylog-console watch``: the headless monitor.

``--once`` reads the feed to its end and exits (1 when the last status is DRIFT or STALE);
without it the feed is followed until SIGTERM/SIGINT. ``--json`` prints one JSON line per event,
flushed as it happens.
"""

from __future__ import annotations

import argparse
import time

from polylog_console.cli.common import EXIT_ERROR, EXIT_OK, EXIT_PROBLEM, fail, open_context, say, write_json_line
from polylog_console.core.feed.records import read_records
from polylog_console.core.infra.text import safe_text, short_digest
from polylog_console.core.model.events import AlertEvent, IngestErrorEvent, Status
from polylog_console.core.monitor.rules import Monitor, compact, format_age
from polylog_console.core.registry.stored import StoredRegistry, start_digest_primer


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


def run_once(ctx) -> int:
    config = ctx.config
    feed = config.feed.path
    if not feed.exists():
        return fail(f"{ctx.workspace.relative(feed)}: feed not found")
    stored = StoredRegistry.for_workspace(ctx.workspace, config.scheme)
    monitor = Monitor(stored, config.monitor, ctx.workspace)
    started = time.perf_counter()
    errors: list[IngestErrorEvent] = []
    alerts: list[AlertEvent] = []
    fanout: list[AlertEvent] = []  # what the alert sinks are told (issue 5)

    def handle(events) -> None:
        fanout.extend(e for e in events if isinstance(e, AlertEvent))
        if ctx.json:
            for event in events:
                write_json_line(event.to_json())
            return
        for event in events:
            if isinstance(event, IngestErrorEvent):
                errors.append(event)
            elif isinstance(event, AlertEvent):
                alerts.append(event)

    # A big registry whose digest is not cached yet is digested by a child process while this
    # one reads the feed, folding it into runs (monitor.compact) until the digest is known.
    primer = None if ctx.json else start_digest_primer(stored)
    pending: list = []
    try:
        for batch in read_records(feed):
            if primer is not None:
                if primer.is_alive() and len(pending) < PENDING_LIMIT:
                    compact(batch, pending)
                    continue
                primer.join()
                primer = None
                handle(monitor.process(pending, emit_checkpoints=False))
                pending = []
            handle(monitor.process(batch, emit_checkpoints=ctx.json))
        if primer is not None:
            primer.join()
            handle(monitor.process(pending, emit_checkpoints=False))
        tail = monitor.tick()
    except OSError as exc:
        return fail(f"{ctx.workspace.relative(feed)}: {exc.strerror or exc}")
    elapsed = time.perf_counter() - started
    if ctx.json:
        for event in tail:
            write_json_line(event.to_json())
    else:
        alerts.extend(e for e in tail if isinstance(e, AlertEvent))
        print_summary(ctx, monitor, errors, alerts, elapsed)
    fanout.extend(e for e in tail if isinstance(e, AlertEvent))
    deliver(ctx, fanout, reconcile=monitor.latest is not None)
    if monitor.stored_error is not None:
        if not ctx.json:
            return fail(monitor.stored_error)
        return EXIT_ERROR
    return EXIT_PROBLEM if monitor.status in (Status.DRIFT, Status.STALE) else EXIT_OK


def deliver(ctx, alerts: list[AlertEvent], *, reconcile: bool = True) -> None:
    """Fan the run's alerts out to the configured sinks (webhook, email, Alertmanager) through the
    durable outbox; print each delivery's outcome. Undelivered ones wait in the outbox."""
    from polylog_console.core.alerts.dispatcher import deliver_once

    for event in deliver_once(ctx.workspace, ctx.config, alerts, reconcile=reconcile):
        if ctx.json:
            write_json_line(event.to_json())
        else:
            error = f": {safe_text(event.error, 160)}" if event.error else ""
            say(f"delivery        {event.sink} {event.outcome}: {event.code} {event.alert_status}{error}")


PENDING_LIMIT = 200_000  # items (records or runs) buffered while the stored digest is computed


def print_summary(ctx, monitor: Monitor, errors, alerts, elapsed: float) -> None:
    view = monitor.snapshot()
    rate = view.checkpoints / elapsed if elapsed > 0 else 0.0
    say(f"feed            {safe_text(ctx.workspace.relative(ctx.config.feed.path))}")
    say(f"read            {view.checkpoints} checkpoints, {view.entries} other entries, "
        f"{view.ingest_errors} ingest errors in {elapsed:.2f}s ({rate:,.0f} checkpoints/s); "
        "per-checkpoint field warnings: --json")
    say(f"stored digest   {short_digest(view.stored_digest, 64) if view.stored_digest else 'unreadable'}")
    latest = view.latest
    if latest is not None:
        age = f", {format_age(view.age)} old" if view.age is not None else ""
        say(f"latest          {safe_text(latest.display_label, 60)} (line {latest.line}{age}) "
            f"digest {short_digest(latest.digest)}")
    stale = " (stale)" if view.stale and view.status == Status.DRIFT else ""
    say(f"status          {view.status}{stale}, {view.consecutive_mismatches} consecutive mismatches")
    for event in errors[:20]:
        say(f"ingest error    line {event.error.line}: {safe_text(event.error.reason, 160)}")
    if len(errors) > 20:
        say(f"                ... and {len(errors) - 20} more ingest errors")
    for event in alerts[-10:]:
        a = event.alert
        say(f"alert           {a.code} {a.status}: {safe_text(a.summary, 160)}")
