"""The durable outbox (SPEC §7): ``memory/outbox/<sink>/``, one file per pending delivery.

A delivery is written (atomically, fsynced) **before** it is sent and removed only after the sink
accepted it, so a crash, a ``kill -9`` or a dead sink never loses an alert: the next dispatcher to
open the outbox replays what is left (at-least-once). After a failed attempt the file is rewritten
with the attempt count and the time of the next attempt, so backoff survives a restart too.

File names sort in creation order (``<ns>-<seq>-<id>.json``), which is the order a sink delivers
in: a resolution never overtakes the alert it resolves. A delivery that a sink refuses for good
(HTTP 4xx, SMTP 5xx) moves to ``memory/outbox/failed/`` with its error: audited, kept for the
operator, not retried. A file that cannot be parsed moves aside as ``*.bad`` (never deleted).

Files hold the notification only: secrets are applied by the sink at send time.

One process at a time delivers from an outbox: :meth:`Outbox.acquire` takes an exclusive
``flock`` on ``memory/outbox/.lock`` (released by the kernel when the process dies), so a console
and a ``watch`` on the same workspace do not both send every alert.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from polylog_console.core.alerts.payload import Notification
from polylog_console.core.infra.atomic import fsync_dir, write_bytes

FORMAT_VERSION = 1
FAILED_DIR = "failed"
LOCK_FILE = ".lock"
_seq = itertools.count()


@dataclass(frozen=True)
class Pending:
    """One delivery of one notification to one sink, as stored in its outbox file."""

    sink: str
    note: Notification
    path: Path
    attempts: int = 0
    next_attempt_at: float = 0.0
    last_error: str | None = None
    created_ns: int = 0

    def to_bytes(self) -> bytes:
        return orjson.dumps({
            "version": FORMAT_VERSION, "sink": self.sink, "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at, "last_error": self.last_error,
            "created_ns": self.created_ns, "notification": self.note.to_json(),
        }, option=orjson.OPT_INDENT_2)

    @classmethod
    def from_bytes(cls, data: bytes, path: Path) -> Pending:
        obj: Any = orjson.loads(data)
        if not isinstance(obj, dict) or obj.get("version") != FORMAT_VERSION:
            raise ValueError("not an outbox entry of this version")
        attempts = obj.get("attempts", 0)
        if not isinstance(attempts, int) or not isinstance(obj.get("sink"), str):
            raise ValueError("bad sink or attempts")
        nxt = obj.get("next_attempt_at") or 0.0
        if not isinstance(nxt, int | float):
            raise ValueError("bad next_attempt_at")
        err = obj.get("last_error")
        return cls(obj["sink"], Notification.from_json(obj.get("notification")), path, attempts, float(nxt),
                   err if isinstance(err, str) else None, int(obj.get("created_ns") or 0))


class OutboxError(Exception):
    """The outbox directory cannot be written (disk full, permissions)."""


class Outbox:
    def __init__(self, root: Path, *, durable: bool = True) -> None:
        self.root = Path(root)
        self.durable = durable
        self._lock_fd: int | None = None

    # -- ownership ---------------------------------------------------------------------------

    def acquire(self) -> bool:
        """Take the outbox for this process (non-blocking). False when another process has it."""
        if self._lock_fd is not None:
            return True
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd
        return True

    def holder(self) -> str | None:
        """The pid written by the process holding the outbox, when readable."""
        try:
            return (self.root / LOCK_FILE).read_text().strip() or None
        except OSError:
            return None

    @property
    def owned(self) -> bool:
        return self._lock_fd is not None

    def release(self) -> None:
        if self._lock_fd is not None:
            fd, self._lock_fd = self._lock_fd, None
            os.close(fd)  # closing releases the flock

    # -- entries -----------------------------------------------------------------------------

    def sink_dir(self, sink: str) -> Path:
        return self.root / sink

    def put(self, sink: str, note: Notification) -> Pending:
        """Write a new pending delivery (durably) and return it. Raises :class:`OutboxError`."""
        ns = time.time_ns()
        directory = self.sink_dir(sink)
        path = directory / f"{ns:020d}-{next(_seq) % 1_000_000:06d}-{note.id}.json"
        pending = Pending(sink, note, path, created_ns=ns)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            write_bytes(path, pending.to_bytes(), durable=self.durable)
        except OSError as exc:
            raise OutboxError(f"outbox {path}: {exc.strerror or exc}") from None
        return pending

    def update(self, pending: Pending, *, attempts: int, next_attempt_at: float, error: str | None) -> Pending:
        """Record a failed attempt (best effort: the in-memory copy goes on either way)."""
        new = replace(pending, attempts=attempts, next_attempt_at=next_attempt_at, last_error=error)
        with contextlib.suppress(OSError):
            if pending.path.exists():
                write_bytes(pending.path, new.to_bytes(), durable=self.durable)
        return new

    def remove(self, pending: Pending) -> None:
        """The sink accepted the delivery."""
        with contextlib.suppress(FileNotFoundError):
            pending.path.unlink()
        if self.durable:
            fsync_dir(pending.path.parent)

    def dead_letter(self, pending: Pending, error: str) -> Path | None:
        """The sink refused the delivery for good: keep it in ``failed/`` with its error."""
        target = self.root / FAILED_DIR / f"{pending.sink}-{pending.path.name}"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            failed = replace(pending, last_error=error)
            write_bytes(target, failed.to_bytes(), durable=self.durable)
            pending.path.unlink(missing_ok=True)
        except OSError:
            return None
        return target

    def load(self, sink: str) -> tuple[list[Pending], list[tuple[Path, str]]]:
        """Every pending delivery of ``sink`` in creation order, and the files set aside as bad."""
        directory = self.sink_dir(sink)
        try:
            names = sorted(n for n in os.listdir(directory) if n.endswith(".json") and not n.startswith("."))
        except FileNotFoundError:
            return [], []
        found: list[Pending] = []
        bad: list[tuple[Path, str]] = []
        for name in names:
            path = directory / name
            try:
                pending = Pending.from_bytes(path.read_bytes(), path)
                if pending.sink != sink:
                    raise ValueError(f"entry for sink {pending.sink!r} in {sink}/")
            except FileNotFoundError:
                continue
            except (OSError, ValueError, TypeError) as exc:
                reason = str(exc) or type(exc).__name__
                with contextlib.suppress(OSError):
                    path.rename(path.with_suffix(".bad"))
                bad.append((path, reason))
                continue
            found.append(pending)
        return found, bad

    def count(self, sink: str) -> int:
        try:
            return sum(1 for n in os.listdir(self.sink_dir(sink)) if n.endswith(".json") and not n.startswith("."))
        except FileNotFoundError:
            return 0
