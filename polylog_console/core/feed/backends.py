"""The file-change notification backend of the feed follower: the one place that touches
watchfiles' private Rust binding.

watchfiles' public API (``watch()``, ``awatch()``) fixes the step for the life of a generator and
runs each wait of ``awatch`` in a fresh worker thread; the follower needs a step that adapts (1 ms
while the feed is active, 10-40 ms when it is quiet) on one long-lived thread, so it drives the
binding those functions are built on, ``watchfiles._rust_notify.RustNotify``, directly. That is a
private API: it is used here only, through :class:`Notifier`, and ``pyproject.toml`` pins
watchfiles to the versions this module is tested with (``tests/test_feed_backends.py``).

Should a future watchfiles change or drop the binding, :func:`open_notifier` raises
:class:`BackendUnavailable` with the reason, and the follower falls back to polling (and says so
with a ``mode`` feed event) instead of failing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

TESTED = "watchfiles 1.3"  # the versions pyproject.toml allows


class BackendUnavailable(RuntimeError):
    """inotify cannot be used here (the binding is missing or changed, or the kernel refused)."""


class StopFlag(Protocol):
    def is_set(self) -> bool: ...


Changes = set[tuple[int, str]]


class Notifier:
    """A non-recursive watch on some directories. :meth:`wait` returns the changes seen (a set of
    ``(change, path)``), or ``"timeout"``, ``"stop"`` (``stop.is_set()`` became true) or
    ``"signal"``; :meth:`close` ends the watch (idempotent)."""

    __slots__ = ("_watcher",)

    def __init__(self, watcher: Any) -> None:
        self._watcher = watcher

    def wait(self, debounce_ms: int, step_ms: int, timeout_ms: int, stop: StopFlag) -> Changes | str:
        try:
            return self._watcher.watch(debounce_ms, step_ms, timeout_ms, stop)
        except TypeError as exc:  # the binding's signature changed
            raise BackendUnavailable(f"watchfiles binding not usable ({exc}); tested with {TESTED}") from None

    def close(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.close()


def _binding() -> Any:
    try:
        from watchfiles._rust_notify import RustNotify
    except ImportError as exc:
        raise BackendUnavailable(f"watchfiles binding not found ({exc}); tested with {TESTED}") from None
    return RustNotify


def open_notifier(directories: Sequence[str]) -> Notifier:
    """Watch ``directories`` (not recursively). Raises FileNotFoundError when one does not exist,
    OSError or :class:`BackendUnavailable` when inotify cannot be used (e.g. the watch limit)."""
    rust_notify = _binding()
    try:
        # (watch_paths, debug, force_polling, poll_delay_ms, recursive, ignore_permission_denied)
        watcher = rust_notify(list(directories), False, False, 0, False, False)
    except TypeError as exc:
        raise BackendUnavailable(f"watchfiles binding not usable ({exc}); tested with {TESTED}") from None
    except RuntimeError as exc:
        raise BackendUnavailable(str(exc)) from None
    return Notifier(watcher)
