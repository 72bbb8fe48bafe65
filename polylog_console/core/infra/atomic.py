"""Crash-safe file writes: temp file in the same directory + fsync + rename + directory fsync.

A reader sees either the old file or the complete new one, never a torn write, whatever happens
to the writer (``kill -9``, power loss after the rename is durable, a full disk: the temp file is
removed and the old file stays).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from polylog_console.core.model.workspace import check_contained


def fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes(path: Path, data: bytes, *, mode: int = 0o644, durable: bool = True) -> None:
    """Atomically replace ``path`` with ``data``."""
    path = Path(path)
    check_contained(path)  # a workspace file or directory linked outside it (or a loop): refused
    directory = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(directory)


def write_text(path: Path, text: str, **kwargs: object) -> None:
    write_bytes(path, text.encode("utf-8"), **kwargs)  # type: ignore[arg-type]


def write_new(directory: Path, name: Callable[[int], str], data: bytes, *, mode: int = 0o644) -> Path:
    """Write ``data`` under a name no other writer has taken: ``name(1)``, else ``name(2)``... The
    complete file is published with ``link()`` (fails with EEXIST, like ``O_EXCL``), so two
    processes writing in the same second never overwrite each other's file and a reader never sees
    a torn one. Where hard links are not supported the name is reserved with ``O_CREAT | O_EXCL``
    and the complete file renamed onto it. Returns the path written; raises OSError."""
    directory = Path(directory)
    check_contained(directory)  # a workspace directory linked outside it (or a loop): refused
    fd, tmp = tempfile.mkstemp(prefix=".new.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        n = 1
        while True:
            path = directory / name(n)
            n += 1
            try:
                os.link(tmp, path)
                break
            except FileExistsError:
                continue
            except OSError:  # no hard links here: reserve the name, then rename the complete file onto it
                try:
                    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
                except FileExistsError:
                    continue
                os.replace(tmp, path)
                break
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    fsync_dir(directory)
    return path
