"""Progress reporting and cancellation for long actions (validate, rehydrate, replicas...).

An action takes a :class:`Progress` and calls :meth:`Progress.update` as it goes and
:meth:`Progress.check` at safe points; the console runs the action in a worker thread, shows a
progress bar from the callback and cancels through :meth:`Progress.cancel`. The CLI passes a
Progress without a callback (or one that prints to stderr).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from polylog_console.core.model.errors import PolylogError


class Cancelled(PolylogError):
    """The action was cancelled by the operator; nothing was changed."""


@dataclass(frozen=True)
class ProgressUpdate:
    done: float
    total: float | None
    message: str


class Progress:
    def __init__(self, callback: Callable[[ProgressUpdate], None] | None = None, *, min_interval: float = 0.05) -> None:
        self._callback = callback
        self._cancel = threading.Event()
        self._min_interval = min_interval
        self._last = 0.0
        self.done = 0.0
        self.total: float | None = None
        self.message = ""

    def update(self, done: float | None = None, total: float | None = None, message: str | None = None,
               *, force: bool = False) -> None:
        """Record progress; the callback runs at most every ``min_interval`` seconds (or when forced)."""
        if done is not None:
            self.done = done
        if total is not None:
            self.total = total
        if message is not None:
            self.message = message
            force = True
        if self._callback is None:
            return
        now = time.monotonic()
        if force or now - self._last >= self._min_interval:
            self._last = now
            self._callback(ProgressUpdate(self.done, self.total, self.message))

    def advance(self, amount: float = 1.0) -> None:
        self.update(self.done + amount)

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if cancellation was requested."""
        if self._cancel.is_set():
            raise Cancelled("cancelled by the operator")
