"""Leave when the terminal goes away (an SSH connection drops, a tmux session is killed).

Three signs, any of which ends the console:

* ``SIGHUP``: the kernel's hangup for the terminal's processes;
* a hangup or error on the terminal's file descriptors (the other end of the pty closed, stdin at
  EOF): a background thread waits in ``poll()`` for ``POLLHUP``/``POLLERR`` only, so it costs
  nothing while the terminal is there (no polling loop);
* a write to the terminal failing (``EIO``): Textual's writer thread dies; the console notices at
  its next clock tick through the same hangup check.

The exit is graceful first (running actions are cancelled, the app exits on its event loop); if
the app has not closed within ``grace`` seconds (the loop may be stuck writing to a dead terminal),
the process ends with ``os._exit`` -- every file the console writes is written atomically, so
nothing is left half-written; clean-up registered with :func:`before_hard_exit` runs first.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
from collections.abc import Callable, Iterator

EXIT_HANGUP = 129  # 128 + SIGHUP, as a shell reports a hung-up process

_BEFORE_HARD_EXIT: list[Callable[[], object]] = []


@contextlib.contextmanager
def before_hard_exit(cleanup: Callable[[], object]) -> Iterator[None]:
    """While in this block, a hangup's hard exit runs ``cleanup`` (briefly: the process is
    ending) before ``os._exit``: clean-up that must happen even when the graceful exit did not
    finish in time (the demo removing its scratch workspace)."""
    _BEFORE_HARD_EXIT.append(cleanup)
    try:
        yield
    finally:
        _BEFORE_HARD_EXIT.remove(cleanup)


def _hard_exit() -> None:
    for cleanup in list(_BEFORE_HARD_EXIT):
        with contextlib.suppress(Exception):
            cleanup()
    os._exit(EXIT_HANGUP)


def terminal_fds() -> list[int]:
    fds = []
    for stream in (sys.__stdin__, sys.__stdout__):
        with contextlib.suppress(AttributeError, ValueError, OSError):
            if stream is not None and stream.isatty():
                fds.append(stream.fileno())
    return sorted(set(fds))


def terminal_gone(fds: list[int]) -> bool:
    """True when any of ``fds`` reports a hangup or error right now (never blocks)."""
    if not fds:
        return False
    poller = select.poll()
    for fd in fds:
        poller.register(fd, 0)  # only POLLHUP / POLLERR / POLLNVAL, which are always reported
    try:
        return bool(poller.poll(0))
    except OSError:
        return True


class HangupWatch:
    """Calls ``on_hangup`` once (from any thread) when the terminal goes away."""

    def __init__(self, on_hangup: Callable[[str], None], *, grace: float = 4.0, fds: list[int] | None = None,
                 hard_exit: bool = True) -> None:
        self.on_hangup = on_hangup
        self.grace = grace
        self.fds = terminal_fds() if fds is None else fds
        self.hard_exit = hard_exit
        self._fired = threading.Event()
        self._stop_r, self._stop_w = os.pipe()
        self._previous_sighup: object = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous_sighup = signal.signal(signal.SIGHUP, self._on_sighup)
        if self.fds:
            self._thread = threading.Thread(target=self._watch, name="terminal-hangup-watch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop watching. A hard exit already armed by a hangup stays armed: the process must end
        soon after its terminal went away, whatever runs after the app (a caller's clean-up gets
        what is left of ``grace``)."""
        with contextlib.suppress(OSError):
            os.write(self._stop_w, b"x")
        if self._previous_sighup is not None and threading.current_thread() is threading.main_thread():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signal.SIGHUP, self._previous_sighup)  # type: ignore[arg-type]

    def check(self) -> None:
        """A cheap non-blocking check (the console's clock tick calls it)."""
        if self.fds and terminal_gone(self.fds):
            self.fire("terminal hung up")

    def _on_sighup(self, signum: int, frame: object) -> None:
        self.fire("SIGHUP")

    def _watch(self) -> None:
        poller = select.poll()
        for fd in self.fds:
            poller.register(fd, 0)
        poller.register(self._stop_r, select.POLLIN)
        while True:
            try:
                ready = poller.poll()
            except InterruptedError:
                continue
            except OSError:
                break
            if any(fd == self._stop_r for fd, _ in ready):
                return
            if ready:
                break
        self.fire("terminal hung up")

    def fire(self, reason: str) -> None:
        if self._fired.is_set():
            return
        self._fired.set()
        if self.hard_exit:
            watchdog = threading.Timer(self.grace, _hard_exit)
            watchdog.daemon = True
            watchdog.start()
        with contextlib.suppress(Exception):
            self.on_hangup(reason)

    @property
    def fired(self) -> bool:
        return self._fired.is_set()
