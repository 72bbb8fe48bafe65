"""Typed events: the one-way flow feed -> monitor -> events -> (screen, alerts, audit).

Every event has a JSON form (``to_json()``) used by ``watch --json``, the audit log and tests.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from polylog_console.core.feed.records import Checkpoint, Entry, IngestError


class Status(StrEnum):
    IN_SYNC = "IN SYNC"
    DRIFT = "DRIFT"
    STALE = "STALE"
    NO_DATA = "NO DATA"


class Severity(StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


# Alert codes (SPEC §6)
REGISTRY_MISMATCH = "registry_mismatch"
REGISTRY_RESOLVED = "registry_resolved"
SCHEME_MISMATCH = "scheme_mismatch"
STALE_DIGEST = "stale_digest"
REGISTRY_PROVIDER_ERROR = "registry_provider_error"
DRIFT_PERSISTENT = "drift_persistent"

ALERT_CODES = (REGISTRY_MISMATCH, REGISTRY_RESOLVED, SCHEME_MISMATCH, STALE_DIGEST,
               REGISTRY_PROVIDER_ERROR, DRIFT_PERSISTENT)

SEVERITY = {
    REGISTRY_MISMATCH: Severity.CRITICAL,
    DRIFT_PERSISTENT: Severity.CRITICAL,
    REGISTRY_PROVIDER_ERROR: Severity.CRITICAL,
    SCHEME_MISMATCH: Severity.WARNING,
    STALE_DIGEST: Severity.WARNING,
    REGISTRY_RESOLVED: Severity.INFO,
}


_ISO_MIN = "0001-01-01T00:00:00.000Z"
_ISO_MAX = "9999-12-31T23:59:59.999Z"
_iso_second: tuple[int, str] = (-1, "")  # the last whole second formatted (one entry: feeds are in order)


def iso(ts: float | None = None) -> str:
    """ISO-8601 UTC with milliseconds and ``Z``. Total: it never raises. The feed parser already
    reads a checkpoint time outside years 1 to 9999 as no time (``core/feed/records.py``
    :func:`usable_time`); as a second line of defence any other number datetime cannot represent is
    clamped to the nearest bound (``0001-01-01T00:00:00.000Z`` or ``9999-12-31T23:59:59.999Z``;
    NaN to the lower one), still valid ISO-8601 for every reader (Alertmanager, ``report``)."""
    if ts is None:
        ts = time.time()
    if ts.__class__ is float and 0.0 <= ts < 253402300799.0:  # the common case, ~4x faster (same text)
        sec = int(ts)
        us = round((ts - sec) * 1e6)  # as datetime.fromtimestamp rounds (half to even)
        if us >= 1_000_000:
            sec += 1
            us -= 1_000_000
        cached = _iso_second
        if cached[0] != sec:
            cached = (sec, datetime.fromtimestamp(sec, tz=UTC).isoformat()[:19])
            globals()["_iso_second"] = cached
        return f"{cached[1]}.{us // 1000:03d}Z"
    try:
        moment = datetime.fromtimestamp(ts, tz=UTC)
    except (OverflowError, OSError, ValueError, TypeError):
        return _ISO_MAX if isinstance(ts, int | float) and ts > 0 else _ISO_MIN  # NaN > 0 is False: the lower one
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dedup_key(*parts: str) -> str:
    """A stable key for one distinct condition (e.g. one drift = stored digest + live digest).
    ``surrogatepass``: a digest read from the feed may hold lone surrogates (SPEC §5 keeps it a
    checkpoint); each still has its own key."""
    return hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:24]


@dataclass(slots=True)  # not frozen (treat as immutable): a flapping feed makes two per few checkpoints
class Alert:
    """A condition raised or cleared by the monitor. ``status`` is ``firing`` or ``resolved``.

    ``resolves`` names the codes a resolution ends (``registry_resolved`` ends ``registry_mismatch``
    and ``drift_persistent`` for the same drift); ``reason`` says why (e.g. ``superseded`` when a
    drift is replaced by another drift, ``parity`` when digests match again).
    """

    code: str
    status: str
    dedup_key: str
    summary: str
    raised_at: float
    checkpoint: dict[str, Any] | None = None
    stored_digest: str | None = None
    live_digest: str | None = None
    consecutive_mismatches: int = 0
    since: float | None = None
    diff: dict[str, Any] | None = None
    resolves: tuple[str, ...] = ()
    reason: str | None = None

    @property
    def severity(self) -> Severity:
        return SEVERITY.get(self.code, Severity.WARNING)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "code": self.code,
            "status": self.status,
            "severity": str(self.severity),
            "dedup_key": self.dedup_key,
            "summary": self.summary,
            "raised_at": iso(self.raised_at),
            "checkpoint": self.checkpoint,
            "stored_digest": self.stored_digest,
            "live_digest": self.live_digest,
            "consecutive_mismatches": self.consecutive_mismatches,
        }
        if self.since is not None:
            out["since"] = iso(self.since)
        if self.diff is not None:
            out["diff"] = self.diff
        if self.resolves:
            out["resolves"] = list(self.resolves)
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass(slots=True)  # not frozen: one is made per checkpoint, and frozen __init__ costs more
class CheckpointEvent:
    checkpoint: Checkpoint
    registry_match: bool | None
    scheme_mismatch: bool
    status: Status
    consecutive_mismatches: int
    stored_digest: str | None
    latency_ms: float | None
    stale: bool = False

    event = "checkpoint"

    def to_json(self) -> dict[str, Any]:
        cp = self.checkpoint
        out: dict[str, Any] = {
            "event": "checkpoint",
            "line": cp.line,
            "label": cp.display_label,
            "registry_match": self.registry_match,
            "status": str(self.status),
            "registry_digest": cp.digest,
            "stored_digest": self.stored_digest,
            "consecutive_mismatches": self.consecutive_mismatches,
            "timestamp": cp.timestamp,
        }
        if self.scheme_mismatch:
            out["scheme_mismatch"] = True
        if self.stale:
            out["stale"] = True
        if cp.warnings:
            out["warnings"] = [w.to_json() for w in cp.warnings]
        if self.latency_ms is not None:
            out["latency_ms"] = round(self.latency_ms, 3)
        return out


class _Carrier:
    """An event that carries one record (named by ``carries``): its JSON is the record's, after ``event``."""

    __slots__ = ()
    event: ClassVar[str]
    carries: ClassVar[str]

    def to_json(self) -> dict[str, Any]:
        return {"event": self.event, **getattr(self, self.carries).to_json()}


@dataclass(slots=True)  # not frozen (treat as immutable): frozen __init__ costs ~5x
class IngestErrorEvent(_Carrier):
    error: IngestError

    event = "ingest_error"
    carries = "error"


@dataclass(slots=True)  # not frozen (treat as immutable): frozen __init__ costs ~5x
class EntryEvent(_Carrier):
    entry: Entry

    event = "entry"
    carries = "entry"


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """Something happened to the feed file: ``started``, ``missing``, ``created``, ``rotated``,
    ``truncated``, ``deleted``, ``error``, ``lines_indexed``..."""

    kind: str
    path: str
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    event = "feed"

    def to_json(self) -> dict[str, Any]:
        out = {"event": "feed", "kind": self.kind, "path": self.path}
        if self.detail:
            out["detail"] = self.detail
        out.update(self.data)
        return out


@dataclass(slots=True)  # not frozen (treat as immutable): frozen __init__ costs ~5x
class StatusEvent:
    """The status changed. ``at`` is when it was read (the monitor's clock), ``checkpoint_ts`` the
    time of the checkpoint that changed it (its ``timestamp``, else when it was read; None when
    no checkpoint did, e.g. the stored registry became unreadable)."""

    previous: Status
    status: Status
    at: float
    reason: str = ""
    checkpoint_ts: float | None = None

    event = "status"

    def to_json(self) -> dict[str, Any]:
        return {"event": "status", "previous": str(self.previous), "status": str(self.status),
                "at": iso(self.at),
                "checkpoint_ts": iso(self.checkpoint_ts) if self.checkpoint_ts is not None else None,
                "reason": self.reason}


@dataclass(slots=True)  # not frozen (treat as immutable): frozen __init__ costs ~5x
class AlertEvent(_Carrier):
    alert: Alert

    event = "alert"
    carries = "alert"


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """The stored registry was (re)loaded, or could not be read (``error`` set)."""

    digest: str | None
    symbols: int | None
    path: str
    error: str | None = None

    event = "stored"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"event": "stored", "path": self.path, "stored_digest": self.digest,
                               "symbols": self.symbols}
        if self.error:
            out["error"] = self.error
        return out


@dataclass(frozen=True, slots=True)
class ActionEvent:
    """A runbook action's lifecycle: ``started``, ``progress``, ``finished``, ``failed``, ``cancelled``.

    ``outcome`` is ``ok`` or ``problem`` for a finished action (a problem was found: invalid
    source, drift, parity failure); ``result`` is the action's JSON result."""

    action: str
    phase: str
    message: str = ""
    outcome: str | None = None
    result: dict[str, Any] | None = None
    done: float | None = None
    total: float | None = None

    event = "action"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"event": "action", "action": self.action, "phase": self.phase}
        if self.message:
            out["message"] = self.message
        if self.outcome is not None:
            out["outcome"] = self.outcome
        if self.result is not None:
            out["result"] = self.result
        if self.done is not None:
            out["done"] = self.done
            out["total"] = self.total
        return out


Event = (ActionEvent | CheckpointEvent | IngestErrorEvent | EntryEvent | FeedEvent | StatusEvent | AlertEvent
         | StoredEvent)
