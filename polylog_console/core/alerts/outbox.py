"""The durable outbox (SPEC §7): ``memory/outbox/<sink>/``, one file per pending delivery.

A delivery is written (atomically, fsynced) **before** it is sent and removed only after the sink
accepted it, so a crash, a ``kill -9`` or a dead sink never loses an alert: the next dispatcher to
open the outbox replays what is left (at-least-once). After a failed attempt the file is rewritten
with the attempt count and the time of the next attempt, so backoff survives a restart too.

File names sort in creation order (``<ns>-<seq>-<id>.json``), which is the order a sink delivers
in: a resolution never overtakes the alert it resolves. A delivery that a sink refuses for good
(HTTP 4xx, SMTP 5xx) moves to ``memory/outbox/failed/`` with its error: audited, kept for the
operator, not retried; ``failed/`` keeps at most ``failed_keep`` files, none older than
``failed_max_age`` (``[retention]``; the newest is always kept), pruned as each is added. A file
that cannot be parsed moves aside as ``*.bad`` (never deleted).

Files hold the notification only: secrets are applied by the sink at send time.

One process at a time delivers from an outbox: :meth:`Outbox.acquire` takes an exclusive
``flock`` on ``memory/outbox/.lock`` (released by the kernel when the process dies), so a console
and a ``watch`` on the same workspace do not both send every alert. Only a refused ``flock``
(``EWOULDBLOCK``) means that another live process holds it. Writing the holder's pid into the file
is best effort (a full disk takes the lock, not the pid); a lock file that can only be opened
read-only (read-only file system) is locked all the same; one that cannot be created at all raises
:class:`OutboxUnlockable`: no process can hold a lock file that does not exist, so the caller
delivers and tries to take the lock again later.

A delivery whose file cannot be written (:class:`OutboxError` carries it, ``saved`` False) is
delivered from memory and written by :meth:`Outbox.save` once the disk takes writes again.
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
from polylog_console.core.infra import reader
from polylog_console.core.infra.atomic import fsync_dir, write_bytes
from polylog_console.core.infra.retention import prune
from polylog_console.core.model.workspace import ContainmentError, check_contained

FORMAT_VERSION = 1
FAILED_DIR = "failed"
FAILED_KEEP = 1000  # defaults of [retention] failed_keep / failed_max_age
FAILED_MAX_AGE = 30 * 86400.0
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
    saved: bool = True  # False: only in memory (its file could not be written yet)

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
        notification = obj.get("notification")
        if not isinstance(notification, dict):
            raise ValueError("bad notification")
        return cls(obj["sink"], Notification.from_json(notification), path, attempts, float(nxt),
                   err if isinstance(err, str) else None, int(obj.get("created_ns") or 0))


class OutboxError(Exception):
    """The outbox directory cannot be written (disk full, read-only, permissions). ``pending`` is
    the delivery that could not be saved (``saved`` False, its intended path), when there is one."""

    def __init__(self, message: str, pending: Pending | None = None) -> None:
        super().__init__(message)
        self.pending = pending


class OutboxUnlockable(OutboxError):
    """The lock file can neither be created nor opened: no process holds this outbox."""


class Outbox:
    def __init__(self, root: Path, *, durable: bool = True, failed_keep: int = FAILED_KEEP,
                 failed_max_age: float | None = FAILED_MAX_AGE) -> None:
        self.root = Path(root)
        self.durable = durable
        self.failed_keep = failed_keep
        self.failed_max_age = failed_max_age
        self._lock_fd: int | None = None

    # -- ownership ---------------------------------------------------------------------------

    def acquire(self) -> bool:
        """Take the outbox for this process (non-blocking). True when this process holds it, False
        when another live process does. Raises :class:`OutboxUnlockable` when the lock file cannot
        be created or opened (then nobody holds it)."""
        if self._lock_fd is not None:
            return True
        path = self.root / LOCK_FILE
        with contextlib.suppress(OSError):
            self.root.mkdir(parents=True, exist_ok=True)  # an empty directory fits on a full disk
        try:
            check_contained(path)  # an outbox linked outside the workspace (or a loop): refused
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except ContainmentError as exc:
            raise OutboxUnlockable(f"outbox {self.root}: {exc.strerror}") from None
        except OSError as exc:
            try:  # a read-only file system: an existing lock file can still be locked
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                raise OutboxUnlockable(f"outbox {self.root}: cannot create {LOCK_FILE}: "
                                       f"{exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError as exc:  # no locking on this file system (ENOLCK...): nobody can hold it
            os.close(fd)
            raise OutboxUnlockable(f"outbox {self.root}: cannot lock {LOCK_FILE}: {exc.strerror or exc}") from None
        self._lock_fd = fd
        self.write_holder()
        return True

    def write_holder(self) -> str | None:
        """Write this process's pid into the lock file it holds (best effort: the lock is held
        either way). Returns why it could not be written, None when written."""
        if self._lock_fd is None:
            return "the outbox lock is not held"
        data = f"{os.getpid()}\n".encode()
        try:
            os.ftruncate(self._lock_fd, 0)
            os.pwrite(self._lock_fd, data, 0)
        except OSError as exc:
            return f"outbox {self.root}: cannot write the holder's pid into {LOCK_FILE}: {exc.strerror or exc}"
        return None

    def holder(self) -> str | None:
        """The pid written by the process holding the outbox, when readable and alive (a holder
        that could not write its pid may have left an earlier, dead holder's pid in the file)."""
        try:
            with open(self.root / LOCK_FILE, "rb") as handle:
                text = handle.read(64).decode("ascii", "replace").strip()
        except OSError:
            return None
        if not text.isdigit():
            return None
        try:
            os.kill(int(text), 0)
        except (ProcessLookupError, OverflowError):
            return None
        except PermissionError:
            pass  # alive, under another user
        return text

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

    def entry(self, sink: str, note: Notification) -> Pending:
        """A new delivery of ``note`` to ``sink``, not written yet (``saved`` False)."""
        ns = time.time_ns()
        path = self.sink_dir(sink) / f"{ns:020d}-{next(_seq) % 1_000_000:06d}-{note.id}.json"
        return Pending(sink, note, path, created_ns=ns, saved=False)

    def put(self, sink: str, note: Notification) -> Pending:
        """Write a new pending delivery (durably) and return it. Raises :class:`OutboxError`, whose
        ``pending`` is the unsaved delivery (to send from memory and :meth:`save` later)."""
        return self.save(self.entry(sink, note))

    def save(self, pending: Pending, *, sync_later: bool = False) -> Pending:
        """Write ``pending`` to its file (again); returns it with ``saved`` True. Raises :class:`OutboxError`.

        ``sync_later``: the file is complete and in place (a crash of this process loses nothing)
        but not yet flushed to disk; the caller runs :meth:`sync` (in a thread, while the send
        already goes out), so the event loop does not wait for the disk before sending."""
        try:
            pending.path.parent.mkdir(parents=True, exist_ok=True)
            write_bytes(pending.path, pending.to_bytes(), durable=self.durable and not sync_later)
        except OSError as exc:
            raise OutboxError(f"outbox {pending.path.parent}: {exc.strerror or exc}", pending) from None
        return replace(pending, saved=True)

    def sync(self, path: Path) -> str | None:
        """Flush a file written with ``sync_later`` (and its directory) to disk. Returns the error,
        None when flushed or already removed (delivered)."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            return f"outbox {path.parent}: {exc.strerror or exc}"
        try:
            os.fsync(fd)
        except OSError as exc:
            return f"outbox {path.parent}: {exc.strerror or exc}"
        finally:
            os.close(fd)
        fsync_dir(path.parent)
        return None

    def update(self, pending: Pending, *, attempts: int, next_attempt_at: float, error: str | None) -> Pending:
        """Record a failed attempt (best effort: the in-memory copy goes on either way)."""
        new = replace(pending, attempts=attempts, next_attempt_at=next_attempt_at, last_error=error)
        if pending.saved:
            with contextlib.suppress(OSError):
                if pending.path.exists():
                    write_bytes(pending.path, new.to_bytes(), durable=self.durable)
        return new

    def remove(self, pending: Pending) -> None:
        """The sink accepted the delivery."""
        try:
            pending.path.unlink()
        except OSError:  # never saved, or a read-only disk (then it is sent again after a restart)
            return
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
        self.prune_failed()
        return target

    def prune_failed(self) -> list[Path]:
        """Apply the retention of ``failed/`` (never deleting its newest file)."""
        return prune(self.root / FAILED_DIR, keep=self.failed_keep, max_age=self.failed_max_age)

    def sweep_temp(self, max_age: float = 3600.0, now: float | None = None) -> int:
        """Remove the temporary files of atomic writes that a killed process left behind
        (``.<name>.<random>.tmp``, older than ``max_age``) in the outbox and its sink folders."""
        now = time.time() if now is None else now
        removed = 0
        try:
            folders = [self.root, *(p for p in self.root.iterdir() if p.is_dir() and not p.is_symlink())]
        except OSError:
            return 0
        for folder in folders:
            try:
                names = [n for n in os.listdir(folder) if n.startswith(".") and n.endswith(".tmp")]
            except OSError:
                continue
            for name in names:
                path = folder / name
                try:
                    if now - path.lstat().st_mtime > max_age:
                        path.unlink()
                        removed += 1
                except OSError:
                    continue
        return removed

    def load(self, sink: str) -> tuple[list[Pending], list[tuple[Path, str]]]:
        """Every pending delivery of ``sink`` in creation order, and the files set aside as bad."""
        directory = self.sink_dir(sink)
        try:
            names = sorted(n for n in os.listdir(directory) if n.endswith(".json") and not n.startswith("."))
        except OSError:  # missing, or not readable (nothing to replay from it)
            return [], []
        found: list[Pending] = []
        bad: list[tuple[Path, str]] = []
        for name in names:
            path = directory / name
            try:
                raw = reader.read_bytes(path, reader.LIMITS["outbox entry"], what="outbox entry")
                pending = Pending.from_bytes(raw, path)
                if pending.sink != sink:
                    raise ValueError(f"entry for sink {pending.sink!r} in {sink}/")
            except (FileNotFoundError, reader.UnreadableFile) as exc:
                if isinstance(exc, FileNotFoundError) or exc.missing:
                    continue
                reason = exc.reason  # a FIFO, a device, too large: set aside like a damaged entry
                with contextlib.suppress(OSError):
                    path.rename(path.with_suffix(".bad"))
                bad.append((path, reason))
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
        except OSError:
            return 0
