"""``polylog-console watch`` without ``--once``: follow the feed headless until SIGTERM/SIGINT.

A :class:`~polylog_console.core.monitor.session.Session` follows the feed (the feed follower), runs the
monitor and the alert fan-out and writes the audit log; this module only prints what it
publishes:

* ``--json``: one JSON line per event (``event.to_json()``), flushed as it happens, so that it can
  be piped (JSON escapes every control character, so nothing from the feed reaches a terminal raw).
* otherwise one short line per checkpoint, alert, status change, feed event and ingest error,
  everything from the feed passed through :func:`~polylog_console.core.infra.text.safe_text`. The
  feed's recent history (the first batch) shows its last :data:`HISTORY_SHOWN` checkpoints, like
  ``tail -f``, with a line saying how many earlier ones were read.

``--poll`` overrides ``feed.poll``. SIGTERM and SIGINT stop it cleanly (exit 0): the session
stops following, gives due alert deliveries a few seconds and leaves the rest in the outbox. A
second signal while stopping falls back to the default action. A reader that goes away (``| head``)
stops it quietly.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from dataclasses import replace
from typing import Any, TextIO

from polylog_console.cli.common import EXIT_OK, fail, report_faults
from polylog_console.core.infra.text import json_line, safe_text, short_digest
from polylog_console.core.model.events import (
    AlertEvent,
    CheckpointEvent,
    FeedEvent,
    IngestErrorEvent,
    StatusEvent,
    StoredEvent,
)
from polylog_console.core.monitor.incident import IncidentEvent
from polylog_console.core.monitor.session import Session

HISTORY_SHOWN = 10  # checkpoints of the start-up history printed in human mode


class JsonPrinter:
    """One JSON line per event, flushed per batch (a batch is what one append produced)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out.buffer  # type: ignore[attr-defined]

    def __call__(self, events: list[Any]) -> None:
        # json_line: valid UTF-8 whatever the feed held, controls escaped (core/infra/text.py)
        self.out.write(b"".join([json_line(event.to_json()) for event in events]))
        self.out.flush()


class HumanPrinter:
    """Short lines for an operator watching a terminal."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.started = False

    def __call__(self, events: list[Any]) -> None:
        lines: list[str] = []
        shown = None
        if not self.started and any(isinstance(e, FeedEvent) and e.kind == "started" for e in events):
            self.started = True
            checkpoints = [e for e in events if isinstance(e, CheckpointEvent)]
            if len(checkpoints) > HISTORY_SHOWN:
                shown = {id(e) for e in checkpoints[-HISTORY_SHOWN:]}
                lines.append(self._line("history", f"{len(checkpoints)} recent checkpoints read; "
                                                   f"the last {HISTORY_SHOWN} follow"))
        for event in events:
            if shown is not None and isinstance(event, CheckpointEvent) and id(event) not in shown:
                continue
            text = self.format(event)
            if text is not None:
                lines.append(text)
        if lines:
            self.out.write("\n".join(lines) + "\n")
            self.out.flush()

    @staticmethod
    def _line(kind: str, text: str) -> str:
        return f"{time.strftime('%H:%M:%S')}  {kind:<12} {text}"

    def format(self, event: Any) -> str | None:
        if isinstance(event, CheckpointEvent):
            cp = event.checkpoint
            where = f" (line {cp.line})" if cp.line is not None else ""
            if event.registry_match is None:
                verdict = "not compared (stored registry unreadable)"
            elif event.registry_match:
                verdict = "match"
            elif event.scheme_mismatch:
                verdict = "scheme mismatch"
            else:
                verdict = f"DRIFT: {short_digest(cp.digest)} vs stored {short_digest(event.stored_digest)}"
            latency = f"  {event.latency_ms:.1f} ms" if event.latency_ms is not None else ""
            warn = f"  {len(cp.warnings)} warning(s)" if cp.warnings else ""
            return self._line("checkpoint", f"{safe_text(cp.display_label, 60)}{where}  {verdict}  "
                                            f"[{event.status}]{warn}{latency}")
        if isinstance(event, AlertEvent):
            a = event.alert  # the summary verbatim, as --json and watch --once print it
            return self._line("alert", f"{a.code} {a.status}: {safe_text(a.summary)}")
        if isinstance(event, IncidentEvent):
            i = event.incident
            start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(i.started_at))
            if event.kind == "noted":
                return None
            earlier = "" if i.start_in_history else " or earlier"
            return self._line("incident", f"#{i.id} {event.kind}: drift since {start}{earlier} "
                                          f"({safe_text(i.started_label, 60)}), {i.mismatching_checkpoints} "
                                          f"mismatching checkpoint(s)")
        if isinstance(event, StatusEvent):
            reason = f" ({safe_text(event.reason, 80)})" if event.reason else ""
            return self._line("status", f"{event.previous} -> {event.status}{reason}")
        if isinstance(event, IngestErrorEvent):
            e = event.error
            where = f"line {e.line}" if e.line is not None else f"offset {e.offset}"
            return self._line("ingest error", f"{where}: {safe_text(e.reason, 200)}")
        if isinstance(event, FeedEvent):
            if event.kind == "started":
                return self._line("feed", f"following {safe_text(event.path)} ({event.data.get('mode', '')})")
            return self._line("feed", f"{event.kind}: {safe_text(event.detail or event.path, 200)}")
        if isinstance(event, StoredEvent):
            if event.error:
                return self._line("stored", f"cannot read the stored registry: {safe_text(event.error, 200)}")
            return self._line("stored", f"stored registry digest {short_digest(event.digest)}")
        kind = getattr(event, "event", None)
        if kind == "delivery":  # an alert delivery attempt (core/alerts/delivery.py)
            error = f": {safe_text(event.error, 160)}" if event.error else ""
            later = f" (next try in {event.retry_in:.1f}s)" if event.retry_in is not None else ""
            return self._line("delivery", f"{event.sink} {event.outcome}: {event.code} {event.alert_status}"
                                          f"{error}{later}")
        if kind == "refresh":  # an automatic refresh attempt (core/refresh.py)
            outcome = f": {event.outcome}" if event.outcome and event.outcome != "failed" else ""
            error = f": {safe_text(event.error, 200)}" if event.error else ""
            return self._line("refresh", f"{event.phase}{outcome}{error}")
        if kind == "consumer_error":  # a consumer of the events raised; the monitor goes on (also on stderr)
            return self._line("error", safe_text(event.message, 300))
        return None  # coordination entries and action progress: not for this view


def run_follow(ctx, args) -> int:
    """Follow the feed until a signal; exit 0 after a clean stop."""
    config = ctx.config
    if getattr(args, "poll", False):
        config = replace(config, feed=replace(config.feed, poll=True))
    session = Session(ctx.workspace, config)
    from polylog_console.core.monitor.incidents import attach_incident_index

    index = attach_incident_index(session)  # memory/incidents/index.jsonl, for `report` (issue 14)
    if getattr(args, "metrics", None):  # Prometheus metrics (issue 5)
        from polylog_console.core.infra.metrics import parse_address

        host, port = parse_address(args.metrics)
        try:
            session.enable_metrics(host, port)
        except OSError as exc:
            return fail(f"--metrics {args.metrics}: cannot listen: {exc.strerror or exc}")
        if not ctx.json:
            bound = session.metrics.address
            sys.stdout.write(HumanPrinter._line("metrics", f"serving http://{bound[0]}:{bound[1]}/metrics") + "\n")
    printer = JsonPrinter(sys.stdout) if ctx.json else HumanPrinter(sys.stdout)
    reader_gone = False

    def print_events(events: list[Any]) -> None:
        nonlocal reader_gone
        if reader_gone:
            return
        try:
            printer(events)
        except BrokenPipeError:
            reader_gone = True
            session.stop()

    session.subscribe(print_events)
    report_faults(session)  # an outbox that cannot be written: one line on stderr (issue 10)
    asyncio.run(_follow(session))
    if index is not None:
        index.flush()
    if reader_gone:
        # Point stdout at devnull so that the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return EXIT_OK


async def _follow(session: Session) -> None:
    loop = asyncio.get_running_loop()
    requested = False

    def on_signal(signum: int) -> None:
        nonlocal requested
        if requested:  # a second signal: do what it would do by default
            loop.remove_signal_handler(signum)
            signal.raise_signal(signum)
            return
        requested = True
        session.stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await session.run()  # a stop requested even before run() starts is remembered
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
