"""The workspace lock: one workspace-mutating action at a time, across processes and users.

The lock is an ``fcntl.flock`` on ``memory/locks/workspace.lock``. The kernel releases it when the
holder's file descriptor closes, so a holder that dies (``kill -9``, a crash, a lost SSH session)
never leaves a stale lock behind. While it holds the lock, the holder writes who it is into the
file (``actor`` user@host, ``pid``, ``action``, ``since``), so that a second console or a script can
name it: :class:`LockHeld` says who holds the lock, :func:`current_holder` reads it for display.

Waiting (``wait`` seconds) sleeps between attempts with a growing delay (10 ms up to 200 ms): no
busy loop, and a :class:`~polylog_console.core.model.progress.Progress` passed in can cancel the wait.
The file is never deleted: deleting a flock file lets two processes lock two different inodes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from polylog_console.core.infra.audit import actor as default_actor
from polylog_console.core.infra.text import safe_text
from polylog_console.core.model.errors import PolylogError
from polylog_console.core.model.events import iso
from polylog_console.core.model.progress import Progress
from polylog_console.core.model.workspace import check_contained

LOCK_NAME = "workspace.lock"
_MAX_DELAY = 0.2
_HOLDER_BYTES = 4096


class LockHeld(PolylogError):
    """Another process holds the workspace lock. ``holder`` is what it wrote about itself."""

    def __init__(self, message: str, holder: dict[str, Any]) -> None:
        super().__init__(message)
        self.holder = holder


def lock_path(ws: Any) -> Path:
    """The lock file of workspace ``ws`` (``memory/locks/workspace.lock``)."""
    return Path(ws.locks) / LOCK_NAME


def describe_holder(holder: dict[str, Any] | None) -> str:
    """``alice@host (pid 42, rehydrate, since 2025-11-09T14:53:20Z)``, made safe for a terminal."""
    if not holder or holder.get("unknown"):
        return "another process (it has not said who it is yet)"
    who = safe_text(holder.get("actor") or "unknown user", 80)
    details = [f"pid {safe_text(holder.get('pid'), 12)}"]
    if holder.get("action"):
        details.append(safe_text(holder["action"], 40))
    if holder.get("since"):
        details.append(f"since {safe_text(holder['since'], 40)}")
    return f"{who} ({', '.join(details)})"


def _parse_holder(raw: bytes) -> dict[str, Any] | None:
    if not raw.strip():
        return None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None  # being written right now, or garbage
    if not isinstance(data, dict):
        return None
    return {k: data.get(k) for k in ("actor", "pid", "host", "action", "since")}


def _read_holder(fd: int) -> dict[str, Any] | None:
    try:
        return _parse_holder(os.pread(fd, _HOLDER_BYTES, 0))
    except OSError:
        return None


def current_holder(ws: Any) -> dict[str, Any] | None:
    """Who holds the workspace lock now, or None when nobody does.

    A holder that has not written its details yet reads as ``{"unknown": True}``. The check takes a
    shared lock for an instant when the lock is free (that is how "free" is known without guessing
    from the file's content, which a killed holder leaves behind)."""
    try:
        fd = os.open(lock_path(ws), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd) or {"unknown": True}
        except OSError:
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class WorkspaceLock:
    """``with WorkspaceLock(ws, "rehydrate", wait=5.0): ...`` holds the workspace lock.

    Raises :class:`LockHeld` (naming the holder) when the lock is still held after ``wait`` seconds,
    :class:`~polylog_console.core.model.progress.Cancelled` when ``progress`` is cancelled while waiting,
    and :class:`PolylogError` when the lock file cannot be created.
    """

    def __init__(self, ws: Any, action: str, wait: float = 0.0, *, progress: Progress | None = None,
                 actor: str | None = None) -> None:
        self.path = lock_path(ws)
        self.action = action
        self.wait = max(0.0, float(wait))
        self.progress = progress
        self.actor = actor or default_actor()
        self.holder: dict[str, Any] | None = None
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            raise PolylogError(f"workspace lock for {self.action} is already held by this object")
        try:
            check_contained(self.path)  # a lock linked outside the workspace (or a loop): refused
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise PolylogError(f"cannot create the workspace lock {self.path}: {exc.strerror or exc}") from None
        try:
            self._lock(fd)
            info = {"actor": self.actor, "pid": os.getpid(), "host": socket.gethostname(),
                    "action": self.action, "since": iso()}
            data = orjson.dumps(info) + b"\n"
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, data, 0)
            except OSError:
                pass  # the lock is held all the same; others just cannot name us
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self.holder = info

    def _lock(self, fd: int) -> None:
        deadline = time.monotonic() + self.wait
        delay = 0.01
        unnamed = 0
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            except OSError as exc:
                raise PolylogError(f"cannot lock {self.path}: {exc.strerror or exc}") from None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                holder = _read_holder(fd)
                # A holder names itself right after locking, and current_holder() takes the lock
                # for an instant: give an unnamed holder a moment before giving up.
                if holder is None and unnamed < 10:
                    unnamed += 1
                    time.sleep(0.01)
                    continue
                holder = holder or {"unknown": True}
                waited = f" after waiting {self.wait:g}s" if self.wait else ""
                raise LockHeld(f"workspace is locked by {describe_holder(holder)}{waited}; "
                               f"{safe_text(self.action, 40)} not started", holder)
            if self.progress is not None:
                self.progress.check()
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, _MAX_DELAY)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # nobody holds it: no stale name for the next reader
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        self.holder = None

    def __enter__(self) -> WorkspaceLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
