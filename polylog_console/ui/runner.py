"""Runs the console's background actions: one thread worker per action, at most one of each kind.

The runner owns the lifecycle only: it publishes ``ActionEvent`` started / finished / failed /
cancelled through the session (which audits them with the actor) and tells the screen with
messages (:class:`~polylog_console.ui.messages.ActionProgressed`, coalescing, and
:class:`~polylog_console.ui.messages.ActionDone`). What an action does is in
:mod:`polylog_console.core.runbook.operations`.

Worker threads never block on the UI: the lifecycle step that audits runs on the loop through
``loop.call_soon_threadsafe`` (Textual's ``call_from_thread`` waits for the loop, which deadlocks
when the app is shutting down and waits for the same threads), so an action that ends while the
console closes is still audited; the messages are only for the screen.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from polylog_console.core.infra.text import safe_text
from polylog_console.core.model.errors import PolylogError
from polylog_console.core.model.events import ActionEvent
from polylog_console.core.model.progress import Cancelled, Progress, ProgressUpdate
from polylog_console.core.runbook.operations import Outcome
from polylog_console.ui.messages import ActionDone, ActionProgressed


@dataclass
class Running:
    action_id: str
    progress: Progress
    started: float
    thread_name: str = ""
    cancel_requested: bool = False
    updates: int = 0
    worker: Any = None


@dataclass
class Finished:
    action_id: str
    phase: str  # finished / failed / cancelled
    outcome: Outcome | None
    message: str
    thread_name: str = ""
    elapsed: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class ActionRunner:
    def __init__(self, app: Any, publish: Callable[[list[Any]], None]) -> None:
        self.app = app
        self.publish = publish
        self.running: dict[str, Running] = {}
        self.history: list[Finished] = []  # what ran, for the activity log and tests
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind_loop(self) -> None:
        self._loop = asyncio.get_running_loop()

    def is_running(self, action_id: str) -> bool:
        return action_id in self.running

    def elapsed(self, action_id: str) -> float:
        running = self.running.get(action_id)
        return time.monotonic() - running.started if running is not None else 0.0

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop is gone: the app is exiting
            loop.call_soon_threadsafe(callback, *args)

    def tell(self, message: Any) -> None:
        """Post a message to the app from any thread (nothing when it has closed)."""
        with contextlib.suppress(RuntimeError):  # the loop is gone: the app is exiting
            self.app.post_message(message)

    def start(self, action_id: str, work: Callable[[Progress], Outcome]) -> bool:
        """Start ``work`` in a thread unless ``action_id`` already runs; True when started."""
        if action_id in self.running:
            return False
        if self._loop is None:
            self.bind_loop()
        progress = Progress(lambda update: self._progress(action_id, update), min_interval=0.1)
        running = Running(action_id, progress, time.monotonic())
        self.running[action_id] = running
        self.publish([ActionEvent(action_id, "started")])

        def body() -> None:
            running.thread_name = threading.current_thread().name
            try:
                outcome = work(progress)
            except Cancelled:
                self._post(self._finish, action_id, "cancelled", None, "cancelled by the operator")
            except PolylogError as exc:
                self._post(self._finish, action_id, "failed", None, str(exc))
            except OSError as exc:
                where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
                self._post(self._finish, action_id, "failed", None, f"{where}{exc.strerror or exc}")
            except Exception as exc:  # a bug must not take the console down during an incident
                self._post(self._finish, action_id, "failed", None, f"{type(exc).__name__}: {exc}")
            else:
                if progress.cancelled:
                    self._post(self._finish, action_id, "cancelled", None,
                               "cancelled by the operator (its result was discarded)")
                else:
                    self._post(self._finish, action_id, "finished", outcome, outcome.message)

        running.worker = self.app.run_worker(body, name=action_id, group=f"action-{action_id}", thread=True,
                                             exit_on_error=False)
        return True

    def _progress(self, action_id: str, update: ProgressUpdate) -> None:
        running = self.running.get(action_id)
        if running is None:
            return
        running.updates += 1
        self.tell(ActionProgressed(action_id, update))

    def _finish(self, action_id: str, phase: str, outcome: Outcome | None, message: str) -> None:
        running = self.running.pop(action_id, None)
        elapsed = time.monotonic() - running.started if running else 0.0
        message = safe_text(message, 500)
        done = Finished(action_id, phase, outcome, message, running.thread_name if running else "", elapsed)
        self.history.append(done)
        self.publish([ActionEvent(action_id, phase, message, outcome.outcome if outcome else None,
                                  outcome.result if outcome else None)])
        self.tell(ActionDone(done))

    def cancel(self, action_id: str | None = None) -> list[str]:
        """Ask running actions (one, or all) to stop at their next safe point; returns their ids."""
        ids = [action_id] if action_id is not None else list(self.running)
        cancelled = []
        for aid in ids:
            running = self.running.get(aid)
            if running is not None and not running.cancel_requested:
                running.cancel_requested = True
                running.progress.cancel()
                cancelled.append(aid)
        return cancelled
