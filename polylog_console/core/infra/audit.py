"""Audit log (SPEC §8): ``memory/audit/events.jsonl``, one JSON object per line.

Each event is one ``write()`` of a complete line on a file opened with ``O_APPEND`` and held
under an exclusive ``flock`` for the write, so lines from two processes never interleave or
overwrite each other; every event is written (flushed to the kernel) as it happens. Details are
passed through :func:`redact` so that secrets never reach the log.

Rotation by size (``[audit] max_bytes``, ``keep``): a writer that holds the lock and finds that its
line would take the file over ``max_bytes`` renames ``events.jsonl.{k}`` to ``.{k+1}`` (the oldest
beyond ``keep`` is replaced), ``events.jsonl`` to ``events.jsonl.1``, and writes to a new
``events.jsonl``. A writer that waited for the lock checks, once it has it, that its descriptor is
still the file at ``events.jsonl`` (same inode) and opens it again otherwise, so two processes
never rotate twice nor write into a rotated file. At most ``(keep + 1) * max_bytes`` (plus one
line) is kept. Every reader reads across rotation: :func:`read_tail` (newest records, spanning
files), :func:`iter_records` (all, oldest first), and the console's follower
(:class:`~polylog_console.core.monitor.activity.AuditTail`) finishes a file rotated under it.

A full or read-only disk: a record that cannot be written is kept in memory (at most
:data:`BACKLOG` records; beyond that the oldest are counted and an ``audit_lost`` record says how
many) and written before the next record, or by :meth:`AuditLog.flush` (the alert dispatcher calls
it while its outbox cannot be written). A write that fails half-way is cut back to the last whole
line, so a retried record never fuses with a torn one.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import os
import socket
import stat
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from polylog_console.core.infra.text import json_line
from polylog_console.core.model.events import iso
from polylog_console.core.model.workspace import check_contained

_SECRET_WORDS = ("secret", "password", "token", "authorization", "api_key", "apikey")

DEFAULT_MAX_BYTES = 16 * 1024 * 1024  # events.jsonl rotates when a record would take it over this
DEFAULT_KEEP = 5  # rotated files kept: events.jsonl.1 (newest) .. events.jsonl.5
MAX_KEEP = 1000  # readers look no further than events.jsonl.1000
BACKLOG = 1000  # records held in memory while the log cannot be written
TAIL_BUDGET = 16 * 1024 * 1024  # bytes read at most by read_tail, over every file
_BLOCK = 64 * 1024
_limits = {"max_bytes": DEFAULT_MAX_BYTES, "keep": DEFAULT_KEEP}


def configure(max_bytes: int | None = None, keep: int | None = None) -> None:
    """The rotation limits of every :class:`AuditLog` this process makes without its own (the
    command line sets them from ``[audit]`` once the configuration is loaded)."""
    if max_bytes is not None:
        _limits["max_bytes"] = int(max_bytes)
    if keep is not None:
        _limits["keep"] = int(keep)


def rotated(path: Path, index: int) -> Path:
    """``events.jsonl.<index>`` (index 0: the live file)."""
    return path if index == 0 else path.with_name(f"{path.name}.{index}")


def actor() -> str:
    """``user@host`` of whoever runs the console (the SSH login user when known)."""
    user = os.environ.get("SUDO_USER") or os.environ.get("LOGNAME") or os.environ.get("USER")
    if not user:
        try:
            user = getpass.getuser()
        except Exception:
            user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


_SCALARS = frozenset((str, int, float, bool, type(None)))
_secret_keys: dict[Any, bool] = {}  # key -> names a secret (the audit's keys are few: decided once each)


def _is_secret(key: Any) -> bool:
    known = _secret_keys.get(key)
    if known is None:
        known = isinstance(key, str) and any(w in key.lower() for w in _SECRET_WORDS)
        if len(_secret_keys) < 4096:  # bounded: keys from data beyond that are decided each time
            _secret_keys[key] = known
    return known


def redact(value: Any) -> Any:
    """Copy of ``value`` with every mapping entry whose key names a secret replaced by ``***``."""
    if value.__class__ in _SCALARS:  # most values: no ABC check
        return value
    if isinstance(value, Mapping):
        return {k: ("***" if _is_secret(k) else redact(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


class AuditLog:
    def __init__(self, path: Path, who: str | None = None, *, max_bytes: int | None = None,
                 keep: int | None = None) -> None:
        self.path = Path(path)
        self.actor = who or actor()
        self.max_bytes = max_bytes
        self.keep = keep
        self._lock = threading.Lock()
        self.last_error: str | None = None
        self._backlog: deque[bytes] = deque()
        self.lost = 0  # records dropped from a full backlog (said in an audit_lost record)
        # called with the error when the log stops taking writes, with None when it takes them again
        self.on_change: Callable[[str | None], None] | None = None
        # called with (ts, event) of every record this log is given, in order (e.g. the console
        # telling its own records from other processes' when it reads the file back)
        self.listeners: list[Callable[[str, str], None]] = []

    @property
    def limits(self) -> tuple[int, int]:
        """(max_bytes, keep) in force: this log's own, else the process's (:func:`configure`)."""
        return (self.max_bytes if self.max_bytes is not None else _limits["max_bytes"],
                max(1, self.keep if self.keep is not None else _limits["keep"]))

    @property
    def backlog(self) -> int:
        """Records waiting in memory for the disk."""
        return len(self._backlog)

    def append(self, event: str, **details: Any) -> dict[str, Any]:
        """Append one event; returns the record. Never raises: a failure is kept in
        ``last_error`` (and returned as ``record["audit_error"]``) so the caller can show it;
        the record waits in memory and is written with the next one that can be."""
        record = {"ts": iso(), "event": event, "actor": self.actor, **redact(details)}
        line = json_line(record)  # valid UTF-8 whatever the feed held; controls escaped (core/infra/text.py)
        with self._lock:
            if len(self._backlog) >= BACKLOG:
                self._backlog.popleft()
                self.lost += 1
            self._backlog.append(line)
            error = self._drain()
        if error is not None:
            record["audit_error"] = error
        for listener in self.listeners:
            listener(record["ts"], event)
        return record

    def append_many(self, entries: list[tuple[str, dict[str, Any]]], *, fixed_keys: bool = False) -> str | None:
        """Append several events, in order, with one ``write()`` (a batch of the monitor's
        events: a flapping feed makes a few per checkpoint). Same guarantees as :meth:`append`
        (whole lines, held in memory while the disk refuses them); returns the error. Details
        are redacted unless ``fixed_keys``: the caller vouches that every key, nested ones
        included, is one the code wrote (the monitor's alert and incident records), never one
        from data or configuration, so that none can name a secret."""
        if not entries:
            return None
        ts = iso()
        who = self.actor
        clean = (lambda d: d) if fixed_keys else redact
        lines = [json_line({"ts": ts, "event": name, "actor": who, **clean(details)}) for name, details in entries]
        with self._lock:
            self._backlog.extend(lines)
            error = self._drain()
            while len(self._backlog) > BACKLOG:  # not written: hold the newest BACKLOG, count the rest
                self._backlog.popleft()
                self.lost += 1
        for listener in self.listeners:
            for name, _ in entries:
                listener(ts, name)
        return error

    def flush(self) -> bool:
        """Write what waits in memory; True when nothing is left waiting."""
        with self._lock:
            if self._backlog:
                self._drain()
            return not self._backlog

    def _drain(self) -> str | None:
        """Write the backlog (under ``self._lock``); the error, or None once written."""
        lines = list(self._backlog)
        if self.lost:
            lost = {"ts": iso(), "event": "audit_lost", "actor": self.actor, "records": self.lost,
                    "message": "records that could not be written nor held in memory"}
            lines.insert(0, json_line(lost))
        try:
            self._write(b"".join(lines))
        except OSError as exc:
            was_ok = self.last_error is None
            self.last_error = f"audit log {self.path}: {exc.strerror or exc}"
            if was_ok and self.on_change is not None:
                self.on_change(self.last_error)
            return self.last_error
        self._backlog.clear()
        self.lost = 0
        if self.last_error is not None:
            self.last_error = None
            if self.on_change is not None:
                self.on_change(None)
        return None

    def _write(self, data: bytes) -> None:
        """Append ``data`` (whole lines) under the file's lock, rotating first when it would take
        the file over ``max_bytes``. Raises ``OSError``."""
        max_bytes, keep = self.limits
        check_contained(self.path)  # linked outside the workspace (or a loop): refused, nothing written there
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(16):  # each turn follows one rotation made by another process
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK, 0o644)
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    raise OSError(f"{self.path} is not a regular file")
                fcntl.flock(fd, fcntl.LOCK_EX)
                st = os.fstat(fd)
                try:
                    current = os.stat(self.path)
                except FileNotFoundError:
                    continue  # rotated away while this process waited: open the new one
                if (current.st_dev, current.st_ino) != (st.st_dev, st.st_ino):
                    continue
                if max_bytes > 0 and st.st_size > 0 and st.st_size + len(data) > max_bytes:
                    _rotate(self.path, keep)
                    continue  # write into the new file (under its own lock)
                try:
                    view = memoryview(data)
                    while view:
                        written = os.write(fd, view)
                        view = view[written:]
                except OSError:
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, st.st_size)  # no torn line left behind
                    raise
                return
            finally:
                os.close(fd)  # closing releases the lock
        raise OSError(f"{self.path} keeps being rotated by other processes")

    def tail(self, limit: int = 50) -> list[dict[str, Any]]:
        """The last ``limit`` events (malformed lines skipped)."""
        return list(read_tail(self.path, limit))


def _rotate(path: Path, keep: int) -> None:
    """``events.jsonl`` -> ``.1`` -> ... -> ``.keep`` (the caller holds the live file's lock)."""
    index = keep + 1
    while index <= MAX_KEEP and os.path.lexists(rotated(path, index)):  # keep was lowered: drop the excess
        with contextlib.suppress(FileNotFoundError):
            os.unlink(rotated(path, index))
        index += 1
    for index in range(keep - 1, 0, -1):
        with contextlib.suppress(FileNotFoundError):
            os.replace(rotated(path, index), rotated(path, index + 1))
    os.replace(path, rotated(path, 1))


def _open_files(path: Path) -> list[tuple[Any, int]]:
    """The audit log's files, newest first, opened (handle, size). Opened newest first and told
    apart by inode, so a rotation during the call repeats no file (it may miss the newest lines)."""
    files: list[tuple[Any, int]] = []
    seen: set[tuple[int, int]] = set()
    for index in range(MAX_KEEP + 1):
        try:  # non-blocking: a FIFO put in its place never hangs a reader
            fd = os.open(rotated(path, index), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            if index == 0:
                continue  # rotated a moment ago: the older ones are still there
            break
        except OSError:
            break
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) in seen or not stat.S_ISREG(st.st_mode):
            os.close(fd)
            continue
        seen.add((st.st_dev, st.st_ino))
        files.append((os.fdopen(fd, "rb"), st.st_size))
    return files


def _parse(lines: list[bytes]) -> list[dict[str, Any]]:
    records = []
    for raw in lines:
        if raw.strip():
            with contextlib.suppress(orjson.JSONDecodeError):
                obj = orjson.loads(raw)
                if isinstance(obj, dict):
                    records.append(obj)
    return records


def _tail_of(handle: Any, size: int, want: int, budget: int) -> tuple[list[dict[str, Any]], int]:
    """The last ``want`` records of one file (oldest first), reading backwards at most ``budget``
    bytes. Returns them and the bytes read."""
    end = size
    carry = b""
    records: list[dict[str, Any]] = []
    used = 0
    while end > 0 and len(records) < want and used < budget:
        start = max(0, end - min(_BLOCK, budget - used))
        handle.seek(start)
        data = handle.read(end - start) + carry
        used += end - start
        end = start
        lines = data.split(b"\n")
        carry = lines.pop(0) if start > 0 else b""
        records = _parse(lines) + records
    return records[-want:] if want else [], used


def read_tail(path: Path, limit: int) -> Iterator[dict[str, Any]]:
    """The newest ``limit`` records of the audit log, oldest first, across its rotated files
    (malformed lines skipped; at most :data:`TAIL_BUDGET` bytes read)."""
    files = _open_files(Path(path))
    collected: list[dict[str, Any]] = []
    budget = TAIL_BUDGET
    try:
        for handle, size in files:
            if len(collected) >= limit or budget <= 0:
                break
            try:
                got, used = _tail_of(handle, size, limit - len(collected), budget)
            except OSError:
                break
            budget -= used
            collected = got + collected
    finally:
        for handle, _ in files:
            handle.close()
    yield from collected[-limit:] if limit > 0 else []


def iter_records(path: Path) -> Iterator[dict[str, Any]]:
    """Every record of the audit log, oldest first, across its rotated files (malformed lines skipped)."""
    files = _open_files(Path(path))
    try:
        for handle, size in reversed(files):
            remaining = size  # what the file held when opened: a live file's newer lines come next time
            carry = b""
            while remaining > 0:
                data = handle.read(min(_BLOCK, remaining))
                if not data:
                    break
                remaining -= len(data)
                lines = (carry + data).split(b"\n")
                carry = lines.pop()
                yield from _parse(lines)
            if carry:
                yield from _parse([carry])
    finally:
        for handle, _ in files:
            handle.close()


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
            # where the checkpoint is (the report attributes the record to its incident by these)
            details["checkpoint_ts"] = a.checkpoint.get("timestamp")
            details["checkpoint_line"] = a.checkpoint.get("line")
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
