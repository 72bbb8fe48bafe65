"""Audit log (SPEC §8): ``memory/audit/events.jsonl``, one JSON object per line.

Each event is one ``write()`` of a complete line on a file opened with ``O_APPEND`` and held
under an exclusive ``flock`` for the write, so lines from two processes never interleave or
overwrite each other; every event is written (flushed to the kernel) as it happens. Details are
passed through :func:`redact` so that secrets never reach the log.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import os
import socket
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from polylog_console.core.model.events import iso

_SECRET_WORDS = ("secret", "password", "token", "authorization", "api_key", "apikey")


def actor() -> str:
    """``user@host`` of whoever runs the console (the SSH login user when known)."""
    user = os.environ.get("SUDO_USER") or os.environ.get("LOGNAME") or os.environ.get("USER")
    if not user:
        try:
            user = getpass.getuser()
        except Exception:
            user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def redact(value: Any) -> Any:
    """Copy of ``value`` with every mapping entry whose key names a secret replaced by ``***``."""
    if isinstance(value, Mapping):
        return {
            k: ("***" if isinstance(k, str) and any(w in k.lower() for w in _SECRET_WORDS) else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


class AuditLog:
    def __init__(self, path: Path, who: str | None = None) -> None:
        self.path = Path(path)
        self.actor = who or actor()
        self._lock = threading.Lock()
        self.last_error: str | None = None

    def append(self, event: str, **details: Any) -> dict[str, Any]:
        """Append one event; returns the record. Never raises: a failure is kept in
        ``last_error`` (and returned as ``record["audit_error"]``) so the caller can show it."""
        record = {"ts": iso(), "event": event, "actor": self.actor, **redact(details)}
        line = orjson.dumps(record, default=str, option=orjson.OPT_NON_STR_KEYS) + b"\n"
        try:
            with self._lock:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    view = memoryview(line)
                    while view:
                        written = os.write(fd, view)
                        view = view[written:]
                finally:
                    os.close(fd)  # closing releases the lock
            self.last_error = None
        except OSError as exc:
            self.last_error = f"audit log {self.path}: {exc.strerror or exc}"
            record["audit_error"] = self.last_error
        return record

    def tail(self, limit: int = 50) -> list[dict[str, Any]]:
        """The last ``limit`` events (malformed lines skipped)."""
        return list(read_tail(self.path, limit))


def read_tail(path: Path, limit: int) -> Iterator[dict[str, Any]]:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            block = min(size, max(64 * 1024, limit * 1024))
            handle.seek(size - block)
            data = handle.read(block)
    except OSError:
        return
    lines = data.split(b"\n")
    if block < size:
        lines = lines[1:]
    records = []
    for raw in lines:
        if raw.strip():
            with contextlib.suppress(orjson.JSONDecodeError):
                obj = orjson.loads(raw)
                if isinstance(obj, dict):
                    records.append(obj)
    yield from records[-limit:]


def audit_record(event: object) -> tuple[str, dict[str, Any]] | None:
    """The audit entry (name, details) for a monitor or action event, or None if not audited.

    Audited (SPEC §8): alerts raised and resolved, actions started/finished/failed/cancelled with
    their outcome. Delivery results, refresh attempts and acknowledgements are appended by the
    components that perform them.
    """
    from polylog_console.core.model.events import ActionEvent, AlertEvent

    if isinstance(event, AlertEvent):
        a = event.alert
        name = "alert_raised" if a.status == "firing" else "alert_resolved"
        if a.code == "drift_persistent" and a.status == "firing":
            name = "escalation"
        details: dict[str, Any] = {"code": a.code, "status": a.status, "dedup_key": a.dedup_key,
                                   "summary": a.summary, "stored_digest": a.stored_digest,
                                   "live_digest": a.live_digest, "consecutive_mismatches": a.consecutive_mismatches}
        if a.checkpoint:
            details["checkpoint"] = a.checkpoint.get("label")
        if a.diff:
            details["diff"] = {k: a.diff.get(k) for k in ("missing", "unexpected", "mismatched")}
        if a.reason:
            details["reason"] = a.reason
        return name, details
    if isinstance(event, ActionEvent):
        if event.phase == "progress":
            return None
        details = {"action": event.action}
        if event.outcome:
            details["outcome"] = event.outcome
        if event.message:
            details["message"] = event.message
        return f"action_{event.phase}", details
    return None
