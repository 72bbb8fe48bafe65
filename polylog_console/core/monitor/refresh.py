"""Automatic refresh (runbook §3 ``on_refresh``, §5 ``refresh.enabled``; SPEC §6).

With ``refresh.enabled = true``, a **new** drift (the monitor's first ``registry_mismatch``
firing for a (stored digest, live digest) pair) triggers exactly one attempt of the runbook's
steps 3 and 4: rehydrate the catalogs from ``stable_polyforms.jsonl``, then compare the latest
checkpoint again (``Session.recheck(after_rehydrate=True)``).

* The rehydrate runs in a worker thread, so the event loop (the monitor, the alert sinks, the
  screen) keeps going while it works; the recheck runs back on the loop, where the monitor lives.
* Every attempt is audited: ``refresh_started``, then ``refresh_finished`` (outcome ``parity``
  or ``drift_remains``) or ``refresh_failed`` (the error), and visible as a :class:`RefreshEvent`.
* A refresh that fails raises ``registry_provider_error`` (runbook §6: "auto-refresh fails with
  registry_provider_error codes"), resolved when the drift it was for ends. A refresh that leaves
  the drift in place escalates: the monitor emits ``drift_persistent`` ("drift remains after
  rehydrate") from the recheck.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from polylog_console.core.infra.text import safe_text
from polylog_console.core.model import events as ev
from polylog_console.core.model.errors import PolylogError
from polylog_console.core.model.events import Alert, AlertEvent, iso

STARTED = "started"
FINISHED = "finished"
FAILED = "failed"
PARITY = "parity"
DRIFT_REMAINS = "drift_remains"


@dataclass(frozen=True)
class RefreshEvent:
    """One automatic refresh attempt's phase: ``started``, ``finished`` or ``failed``."""

    phase: str
    dedup_key: str
    at: float
    outcome: str | None = None  # parity | drift_remains | failed (set when the attempt ended)
    error: str | None = None
    elapsed_ms: float | None = None
    registry_digest: str | None = None

    event = "refresh"

    def details(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dedup_key": self.dedup_key}
        if self.outcome:
            out["outcome"] = self.outcome
        if self.error:
            out["error"] = self.error
        if self.elapsed_ms is not None:
            out["elapsed_ms"] = round(self.elapsed_ms, 1)
        if self.registry_digest:
            out["registry_digest"] = self.registry_digest
        return out

    def to_json(self) -> dict[str, Any]:
        return {"event": "refresh", "phase": self.phase, "at": iso(self.at), **self.details()}


def _default_rehydrate() -> Callable[..., Any]:
    from polylog_console.core.runbook.rehydrate import rehydrate

    return rehydrate


class AutoRefresh:
    """Runs one refresh attempt per distinct drift for a session (duck-typed: ``ws``,
    ``config``, ``audit``, ``monitor``, ``publish(events)``, ``recheck(after_rehydrate=...)``)."""

    MAX_REMEMBERED = 4096

    def __init__(self, session: Any, *, enabled: bool | None = None, rehydrate: Callable[..., Any] | None = None,
                 lock_wait: float = 30.0, workers: str | int = "auto") -> None:
        self.session = session
        self.enabled = session.config.monitor.refresh_enabled if enabled is None else enabled
        self._rehydrate = rehydrate
        self.lock_wait = lock_wait
        self.workers = workers
        self.attempted: set[str] = set()
        self.failed: dict[str, Alert] = {}  # drift key -> the registry_provider_error raised for it
        self.running: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._serial = asyncio.Lock()
        self._rechecking = False
        self.results: list[RefreshEvent] = []

    def submit(self, events: Iterable[Any]) -> None:
        """Watch a batch of session events for new drifts and for the end of drifts."""
        for event in events:
            if event.__class__ is not AlertEvent:
                continue
            alert = event.alert
            if alert.code == ev.REGISTRY_MISMATCH and alert.status == "firing":
                if self._rechecking:
                    # The drift our own rehydrate left (new stored digest): escalated by the monitor,
                    # not refreshed again.
                    self.attempted.add(alert.dedup_key)
                elif self.enabled and alert.dedup_key not in self.attempted and not self._standby():
                    if len(self.attempted) >= self.MAX_REMEMBERED:
                        self.attempted.clear()
                    self.attempted.add(alert.dedup_key)
                    self._start(alert)
            elif alert.status == "resolved" and ev.REGISTRY_MISMATCH in (alert.code, *alert.resolves):
                raised = self.failed.pop(alert.dedup_key, None)
                if raised is not None:
                    self._later([AlertEvent(Alert(
                        ev.REGISTRY_PROVIDER_ERROR, "resolved", raised.dedup_key,
                        "the drift the failed refresh was for has ended", time.time(), alert.checkpoint,
                        raised.stored_digest, raised.live_digest, reason="drift ended"))])

    def _standby(self) -> bool:
        """Another process (e.g. the host's ``watch``) holds the workspace's outbox: it acts for
        the workspace, this one (e.g. a console) only shows."""
        alerts = getattr(self.session, "alerts", None)
        return bool(alerts is not None and alerts.standby)

    def _later(self, events: list[Any]) -> None:
        """Publish after the batch being handled (``submit`` runs inside ``publish``)."""
        try:
            asyncio.get_running_loop().call_soon(self.session.publish, events)
        except RuntimeError:
            self.session.publish(events)

    def _start(self, alert: Alert) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): nothing can run in the background
            return
        task = loop.create_task(self._attempt(alert), name=f"polylog-refresh-{alert.dedup_key}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _emit(self, event: RefreshEvent, audit_name: str) -> None:
        self.results.append(event)
        self.session.audit.append(audit_name, **event.details())
        self.session.publish([event])

    async def _attempt(self, alert: Alert) -> None:
        async with self._serial:
            started = time.perf_counter()
            key = alert.dedup_key
            self._emit(RefreshEvent(STARTED, key, time.time()), "refresh_started")
            rehydrate = self._rehydrate or _default_rehydrate()
            try:
                result = await asyncio.to_thread(rehydrate, self.session.ws, self.session.config,
                                                 workers=self.workers, lock_wait=self.lock_wait,
                                                 actor=f"{self.session.audit.actor} (auto-refresh)")
            except (PolylogError, OSError, ValueError) as exc:
                error = safe_text(str(exc) or type(exc).__name__, 300)
                self._fail(alert, error, started)
                return
            except Exception as exc:  # a bug must still be reported, not swallowed by the task
                self._fail(alert, f"{type(exc).__name__}: {safe_text(str(exc), 300)}", started)
                return
            self._rechecking = True
            try:
                self.session.recheck(after_rehydrate=True)
            finally:
                self._rechecking = False
            match = self.session.monitor.latest_match
            outcome = PARITY if match is True else DRIFT_REMAINS
            digest = getattr(result, "registry_digest", None)
            self._emit(RefreshEvent(FINISHED, key, time.time(), outcome,
                                    elapsed_ms=(time.perf_counter() - started) * 1000,
                                    registry_digest=digest if isinstance(digest, str) else None),
                       "refresh_finished")

    def _fail(self, alert: Alert, error: str, started: float) -> None:
        self._emit(RefreshEvent(FAILED, alert.dedup_key, time.time(), FAILED, error,
                                elapsed_ms=(time.perf_counter() - started) * 1000), "refresh_failed")
        raised = Alert(ev.REGISTRY_PROVIDER_ERROR, "firing", ev.dedup_key("refresh", alert.dedup_key),
                       f"automatic refresh failed: {error}", time.time(), alert.checkpoint, alert.stored_digest,
                       alert.live_digest, alert.consecutive_mismatches, alert.since, reason="refresh failed")
        self.failed[alert.dedup_key] = raised
        self.session.publish([AlertEvent(raised)])

    async def wait(self, timeout: float | None = None) -> None:
        """Wait for the attempts in progress (tests, orderly shutdown)."""
        tasks = list(self._tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    async def close(self, grace: float = 5.0) -> None:
        """Give a running attempt ``grace`` seconds, then stop waiting for it (the rehydrate
        itself writes atomically and releases the workspace lock when its thread ends)."""
        await self.wait(grace)
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
