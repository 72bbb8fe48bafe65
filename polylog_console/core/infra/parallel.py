"""Worker processes that start from any host process, the console included.

``multiprocessing`` starts two helper processes the first time a ``forkserver`` (or ``spawn``) pool
starts a worker: the resource tracker and the fork server. The resource tracker hands its child
``sys.stderr.fileno()`` among the descriptors to keep. Inside the console ``sys.stderr`` is
Textual's capture, whose ``fileno()`` is ``-1``, and the start fails with ``ValueError: bad
value(s) in fds_to_keep`` (issue 11: validate and rehydrate failed in the console for every
source large enough to use a pool, while the CLI worked).

:func:`process_context` starts both helpers itself, once, with ``sys.stderr`` replaced for that
moment by a view of it that has no descriptor (``fileno()`` raises, so the tracker passes none;
its child keeps the process's real descriptor 2 anyway). Writes during that moment go to the
stream in place. After that, starting workers never reads ``sys.stderr`` again. One lock makes
the swap safe when two actions start pools at once.
"""

from __future__ import annotations

import contextlib
import io
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import Any

_LOCK = threading.Lock()


class _NoDescriptor(io.TextIOBase):
    """A text stream forwarding to ``target`` but owning no file descriptor."""

    def __init__(self, target: Any) -> None:
        super().__init__()
        self._target = target

    def write(self, text: str) -> int:
        with contextlib.suppress(Exception):
            self._target.write(text)
        return len(text)

    def flush(self) -> None:
        with contextlib.suppress(Exception):
            self._target.flush()

    def fileno(self) -> int:
        raise io.UnsupportedOperation("no file descriptor")


def _has_descriptor(stream: Any) -> bool:
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    return isinstance(fd, int) and fd >= 0


@contextlib.contextmanager
def stderr_without_bad_descriptor() -> Iterator[None]:
    """While inside: ``sys.stderr`` has a valid descriptor or none at all (never ``-1``)."""
    current = sys.stderr
    if current is None or _has_descriptor(current):
        yield
        return
    sys.stderr = _NoDescriptor(current)  # type: ignore[assignment]
    try:
        yield
    finally:
        if isinstance(sys.stderr, _NoDescriptor):
            sys.stderr = current


def process_context(preload: Iterable[str] = ()) -> Any:
    """A ``multiprocessing`` context for worker pools, its helper processes already running.

    ``forkserver`` (a fork of a multi-threaded console would copy its locks; ``spawn`` is slower),
    else ``spawn``. ``preload``: modules the fork server imports once for all its children."""
    import multiprocessing
    from multiprocessing import resource_tracker

    ctx: Any
    try:
        ctx = multiprocessing.get_context("forkserver")
    except ValueError:
        ctx = multiprocessing.get_context("spawn")
    modules = list(preload)
    with _LOCK, stderr_without_bad_descriptor():
        if ctx.get_start_method() == "forkserver":
            if modules:
                with contextlib.suppress(Exception):
                    ctx.set_forkserver_preload(modules)
            from multiprocessing import forkserver

            forkserver.ensure_running()  # starts the resource tracker too
        else:
            resource_tracker.ensure_running()
    return ctx
