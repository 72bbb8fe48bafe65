"""The one bounded, non-blocking way to open and read a file that comes from data or configuration.

Every file the console reads because the workspace or the configuration names it (the stored
registry ``catalogs/registry.json``, a ``registry_snapshot`` named by a checkpoint, a file replica,
``digest --of FILE``, ``monitoring.toml`` and the ``*_file`` secrets, the digest cache) is opened
here, so that no such file can hang, stall signals or exhaust the process:

* **Regular files only.** The path is ``stat``-ed first and anything that is not a regular file is
  refused without being opened (a FIFO, a character or block device such as ``/dev/zero``, a
  socket, a directory), with a one-line reason naming the file: ``catalogs/registry.json: not a
  regular file (character device)``. Symbolic links are followed, but a workspace file whose
  links lead outside the workspace (or loop) is refused before it is opened
  (:func:`check_contained`: ``symbolic link leads outside the workspace, refused``,
  ``symlink loop``); what they point at is checked like anything else.
* **Never blocking.** The file is opened with ``O_NONBLOCK | O_NOCTTY``: if the path was swapped for
  a FIFO between the ``stat`` and the ``open``, the open still returns at once (a blocking open of
  a FIFO waits for a writer forever, and Python retries it after every signal, so SIGTERM could
  never stop ``watch``); the opened descriptor is ``fstat``-ed and refused if it is not a regular
  file after all.
* **Bounded.** A file larger than its limit is refused from its ``fstat`` size before anything is
  read, and the read itself never takes more than ``limit + 1`` bytes, so a file that grows while
  it is read (``/dev/zero``-like growth) costs at most its limit.

The limits per kind of file are in :data:`LIMITS` (documented in the README's reliability list).
:func:`check_regular` is the same check for a descriptor the caller opened itself (the feed).
"""

from __future__ import annotations

import errno
import os
import stat as stat_module

from polylog_console.core.model.errors import PolylogError
from polylog_console.core.model.workspace import ContainmentError, check_contained

MB = 1024 * 1024

#: Size limits in bytes, per kind of file.
LIMITS: dict[str, int] = {
    "stored registry": 512 * MB,   # catalogs/registry.json (a 1,000,000-symbol registry is ~60 MB)
    "registry snapshot": 512 * MB,  # a checkpoint's registry_snapshot, a file replica, digest --of FILE
    "config": 1 * MB,              # monitoring.toml
    "secret": 64 * 1024,           # webhook.secret_file, email.password_file
    "digest cache": 1 * MB,        # memory/cache/registry-digest.json (16 entries of ~200 bytes)
    "outbox entry": 4 * MB,        # memory/outbox/<sink>/*.json (one alert, its diff sample included)
    "outbox groups": 16 * MB,      # memory/outbox/groups.json (what receivers heard, per drift)
}

_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class UnreadableFile(PolylogError):
    """A file that cannot be used: missing, not a regular file, too large, or an I/O error.

    ``str(exc)`` is one line naming the file; ``missing`` is True when it does not exist (some
    callers treat that as "not configured"); ``reason`` is the message without the file's name.
    """

    def __init__(self, label: str, reason: str, *, missing: bool = False) -> None:
        super().__init__(f"{label}: {reason}")
        self.label = label
        self.reason = reason
        self.missing = missing


_FILE_KINDS = ((stat_module.S_ISREG, "regular file"), (stat_module.S_ISDIR, "directory"),
               (stat_module.S_ISFIFO, "FIFO"), (stat_module.S_ISCHR, "character device"),
               (stat_module.S_ISBLK, "block device"), (stat_module.S_ISSOCK, "socket"),
               (stat_module.S_ISLNK, "symbolic link"))


def file_kind(mode: int) -> str:
    """What a ``st_mode`` is, in words (``regular file``, ``FIFO``, ``character device``, ...)."""
    return next((name for test, name in _FILE_KINDS if test(mode)), "special file")


def _refuse_irregular(st: os.stat_result, label: str) -> None:
    if not stat_module.S_ISREG(st.st_mode):
        raise UnreadableFile(label, f"not a regular file ({file_kind(st.st_mode)})")


def _os_error(exc: OSError, label: str, what: str) -> UnreadableFile:
    if isinstance(exc, FileNotFoundError):
        return UnreadableFile(label, f"{what} not found", missing=True)
    if isinstance(exc, NotADirectoryError):
        return UnreadableFile(label, f"{what} not found (a parent is not a directory)", missing=True)
    if isinstance(exc, ContainmentError):
        return UnreadableFile(label, exc.strerror or str(exc))
    if exc.errno == errno.ELOOP:
        return UnreadableFile(label, "symlink loop")
    return UnreadableFile(label, f"cannot read {what}: {exc.strerror or exc}")


def check_regular(target: int | str | os.PathLike[str], label: str | None = None) -> os.stat_result:
    """``fstat`` (for a descriptor) or ``stat`` (for a path) ``target`` and return the result;
    :class:`UnreadableFile` when it is not a regular file (or cannot be stat-ed)."""
    if label is None:
        label = f"descriptor {target}" if isinstance(target, int) else str(target)
    try:
        st = os.fstat(target) if isinstance(target, int) else os.stat(target)
    except OSError as exc:
        raise _os_error(exc, label, "file") from None
    _refuse_irregular(st, label)
    if not isinstance(target, int):
        try:
            check_contained(target)
        except OSError as exc:
            raise _os_error(exc, label, "file") from None
    return st


def open_regular(path: str | os.PathLike[str], *, label: str | None = None,
                 what: str = "file") -> tuple[int, os.stat_result]:
    """Open a regular file for reading without ever blocking: ``(fd, fstat result)``.

    The caller owns (and closes) the descriptor. Raises :class:`UnreadableFile`.
    """
    label = str(path) if label is None else label
    try:
        before = os.stat(path)
    except OSError as exc:
        raise _os_error(exc, label, what) from None
    _refuse_irregular(before, label)  # a device or FIFO is never even opened
    try:
        check_contained(path)  # a workspace file whose symlinks lead outside it: refused unread
    except OSError as exc:
        raise _os_error(exc, label, what) from None
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise _os_error(exc, label, what) from None
    try:
        st = os.fstat(fd)
        _refuse_irregular(st, label)  # swapped between the stat and the open
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def _limit_text(limit: int) -> str:
    if limit >= MB and limit % MB == 0:
        return f"{limit // MB} MB"
    if limit >= 1024 and limit % 1024 == 0:
        return f"{limit // 1024} KB"
    return f"{limit} bytes"


def too_large(label: str, limit: int, what: str = "file") -> UnreadableFile:
    return UnreadableFile(label, f"{what} larger than {_limit_text(limit)}, refused")


def read_fd(fd: int, size_hint: int, limit: int, label: str, what: str = "file") -> bytes:
    """At most ``limit`` bytes from ``fd`` (from its current offset to the end), or
    :class:`UnreadableFile` if there are more. Reads ``size_hint + 1`` bytes first (one
    allocation for a file that does not grow), then whatever it grew by, never past ``limit + 1``."""
    if size_hint > limit:
        raise too_large(label, limit, what)
    pieces: list[bytes] = []
    total = 0
    want = size_hint + 1
    try:
        while total <= limit:
            chunk = os.read(fd, min(want, limit + 1 - total))
            if not chunk:
                break
            pieces.append(chunk)
            total += len(chunk)
            want = 1 << 20  # it grew: go on in megabyte steps up to the limit
    except BlockingIOError:  # not a regular file after all (cannot happen after open_regular)
        raise UnreadableFile(label, "would block: not a regular file") from None
    except OSError as exc:
        raise _os_error(exc, label, what) from None
    if total > limit:
        raise too_large(label, limit, what)
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def read_bytes(path: str | os.PathLike[str], limit: int, *, label: str | None = None,
               what: str = "file") -> bytes:
    """The bytes of the regular file ``path``: at most ``limit`` of them, never blocking.

    Raises :class:`UnreadableFile` (one line naming ``label``, default the path) when the file is
    missing, not a regular file, larger than ``limit`` or unreadable.
    """
    label = str(path) if label is None else label
    fd, st = open_regular(path, label=label, what=what)
    try:
        return read_fd(fd, st.st_size, limit, label, what)
    finally:
        os.close(fd)


def read_text(path: str | os.PathLike[str], limit: int, *, label: str | None = None,
              what: str = "file") -> str:
    """:func:`read_bytes` decoded as UTF-8 (:class:`UnreadableFile` when it is not)."""
    label = str(path) if label is None else label
    raw = read_bytes(path, limit, label=label, what=what)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableFile(label, f"not valid UTF-8 at byte {exc.start}") from None
