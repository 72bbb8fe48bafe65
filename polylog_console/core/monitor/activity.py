"""The console's activity log: what happened, one line each (actions, alerts, feed events, audit).

:func:`describe` turns a monitor or action event into an :class:`Activity` (or None for events the
log does not show: individual checkpoints, action progress); :func:`from_audit` does the same for an
audit-log record written before the console started. Messages may contain untrusted text (labels,
error messages): the screen passes them through its safe-text helper like everything else.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from polylog_console.core.model.events import (
    ActionEvent,
    AlertEvent,
    EntryEvent,
    FeedEvent,
    IngestErrorEvent,
    StatusEvent,
    StoredEvent,
)


@dataclass(frozen=True, slots=True)
class Activity:
    at: float
    kind: str  # "action", "alert", "feed", "status", "stored", "entry", "audit", "ui"
    message: str
    level: str = "info"
    record: dict[str, Any] | None = field(default=None, compare=False)  # the full event / audit record (detail view)


def describe(event: Any, now: float | None = None) -> Activity | None:
    """``event`` as an activity line carrying the event's JSON form (its detail view)."""
    item = _describe(event, now)
    if item is None:
        return None
    to_json = getattr(event, "to_json", None)
    return replace(item, record=to_json() if to_json is not None else None)


def _describe(event: Any, now: float | None = None) -> Activity | None:
    now = time.time() if now is None else now
    if isinstance(event, ActionEvent):
        if event.phase == "progress":
            return None
        level = {"started": "info", "cancelled": "warning", "failed": "error"}.get(event.phase, "ok")
        if event.phase == "finished" and event.outcome == "problem":
            level = "warning"
        text = f"{event.action} {event.phase}"
        if event.message:
            text += f": {event.message}"
        return Activity(now, "action", text, level)
    if isinstance(event, AlertEvent):
        a = event.alert
        firing = a.status == "firing"
        level = ("error" if a.severity == "critical" else "warning") if firing else "ok"
        return Activity(a.raised_at, "alert", f"{a.code} {a.status}: {a.summary}", level)
    if isinstance(event, StatusEvent):
        level = {"IN SYNC": "ok", "DRIFT": "error", "STALE": "warning"}.get(str(event.status), "info")
        reason = f" ({event.reason})" if event.reason else ""
        return Activity(event.at, "status", f"{event.previous} → {event.status}{reason}", level)
    if isinstance(event, FeedEvent):
        level = "error" if event.kind in ("error", "deleted", "missing") else "info"
        if event.kind in ("rotated", "truncated"):
            level = "warning"
        detail = f": {event.detail}" if event.detail else ""
        return Activity(now, "feed", f"feed {event.kind}{detail}", level)
    if isinstance(event, StoredEvent):
        if event.error:
            return Activity(now, "stored", f"stored registry unreadable: {event.error}", "error")
        symbols = f", {event.symbols:,} symbols" if event.symbols is not None else ""
        return Activity(now, "stored", f"stored registry loaded: digest {(event.digest or '')[:12]}{symbols}")
    if isinstance(event, EntryEvent):
        entry = event.entry
        return Activity(now, "entry", f"line {entry.line}: {entry.entry_kind}")
    if getattr(event, "event", None) == "incident" and hasattr(event, "incident"):
        inc = event.incident
        level = {"opened": "error", "escalated": "error", "resolved": "ok"}.get(event.kind, "info")
        return Activity(now, "incident", f"incident {inc.id} {event.kind}: since {inc.started_label}, "
                        f"{inc.consecutive_mismatches} consecutive", level)
    if isinstance(event, IngestErrorEvent):
        err = event.error
        return Activity(now, "feed", f"ingest error at line {err.line}: {err.reason}", "warning")
    if getattr(event, "event", None) == "outbox":  # the alert outbox's state changed (full disk, standby)
        return Activity(event.at or now, "alert", event.message, event.level)
    return None


def _parse_ts(value: Any) -> float:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return 0.0


def from_audit(record: dict[str, Any]) -> Activity:
    """An audit-log record (SPEC §8) as an activity line: ``event by actor: details``."""
    event = str(record.get("event", "?"))
    actor = record.get("actor")
    details = []
    for key in ("action", "code", "outcome", "message", "summary", "checkpoint"):
        value = record.get(key)
        if value not in (None, ""):
            details.append(str(value))
    text = event + (f" by {actor}" if actor else "") + (f": {' · '.join(details)}" if details else "")
    level = "error" if "failed" in event else "warning" if event in ("escalation", "alert_raised") else "info"
    return Activity(_parse_ts(record.get("ts")), "audit", text, level, record)


class AuditTail:
    """New records of the audit log since the last look (other processes append to it too: a CLI
    rehydrate in another terminal, ``watch`` delivering alerts). One ``stat`` per look when nothing
    changed; a truncated file is read again from its start. Only complete lines count.

    Across rotation (``events.jsonl`` renamed to ``events.jsonl.1``, a new one started): the rest of
    the file it was reading is found among the rotated files by its inode and read to its end
    first, then the new file from its start, so no record written just before a rotation is missed."""

    def __init__(self, path: Any, *, from_end: bool = True) -> None:
        import os
        from pathlib import Path

        self.path = Path(path)
        self._os = os
        self.offset = 0
        self.ident: tuple[int, int] | None = None
        if from_end:
            try:
                st = os.stat(self.path)
                self.offset, self.ident = st.st_size, (st.st_dev, st.st_ino)
            except OSError:
                pass

    def read_new(self, limit: int = 64 * 1024 * 1024) -> list[dict[str, Any]]:
        try:
            st = self._os.stat(self.path)
        except OSError:
            return []
        ident = (st.st_dev, st.st_ino)
        out: list[dict[str, Any]] = []
        if ident != self.ident:
            if self.ident is not None:
                out = self._rest_of_rotated(limit)
            self.ident, self.offset = ident, 0
        elif st.st_size < self.offset:
            self.offset = 0
        if st.st_size == self.offset:
            return out
        got, used = self._read(self.path, self.offset, st.st_size, limit)
        self.offset += used
        return out + got

    def _rest_of_rotated(self, limit: int) -> list[dict[str, Any]]:
        """What was appended to the file being read before it was rotated away."""
        for index in range(1, 1 + self.ROTATED_LOOKUP):
            candidate = self.path.with_name(f"{self.path.name}.{index}")
            try:
                st = self._os.stat(candidate)
            except OSError:
                return []
            if (st.st_dev, st.st_ino) == self.ident:
                got, _ = self._read(candidate, self.offset, st.st_size, limit)
                return got
        return []

    ROTATED_LOOKUP = 8  # rotated files searched for the one being read (a rotation per look at most, usually)

    def _read(self, path: Any, offset: int, size: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """The complete records of ``path`` from ``offset`` (at most ``limit`` bytes) and the bytes used."""
        import orjson

        if size <= offset:
            return [], 0
        try:
            with open(path, "rb") as handle:
                handle.seek(offset)
                data = handle.read(min(limit, size - offset))
        except OSError:
            return [], 0
        end = data.rfind(b"\n")
        if end < 0:
            return [], 0
        out = []
        for line in data[:end].split(b"\n"):
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(record, dict):
                out.append(record)
        return out, end + 1
