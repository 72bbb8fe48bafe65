"""Alert fan-out (SPEC §7): grouping, repeat, the durable outbox and one delivery task per sink.

The dispatcher consumes the monitor's events (``submit``, called from ``Session.publish``) and
decides what to announce; each announcement (a :class:`~.payload.Notification`) is written to the
outbox for every external sink (webhook, email, Alertmanager) *before* anything is sent, then
delivered by that sink's own asyncio task. Sinks are independent: a slow or dead sink only delays
its own queue, never the monitor (``submit`` does no network I/O) nor the other sinks.

Grouping (one group per alert code and ``dedup_key``, i.e. per distinct drift):

* the first ``firing`` event of a group is announced at once;
* while it fires, a reminder is sent every ``repeat_interval`` (with the current consecutive
  mismatch count); Alertmanager additionally gets the alert re-posted every ``resend_interval``
  (much shorter), as it expects of clients, so it never times the alert out while it lasts;
* a resolution is held for ``resolve_hold`` seconds: if the same drift fires again meanwhile
  (flapping: alternating match/mismatch checkpoints) nothing is sent, so receivers hear one
  alert, not a storm. A drift that returns after its resolution was announced is announced again
  only once ``repeat_interval`` has passed since its last announcement: at most one firing
  notification per drift per ``repeat_interval``;
* what receivers last heard about each group is kept in ``memory/outbox/groups.json``, so a
  restarted watcher neither repeats an announced alert early nor forgets to resolve one
  (:meth:`AlertDispatcher.reconcile`, called once the feed history has been read).

Delivery: in creation order per sink; retried with exponential backoff and jitter
(:class:`~.delivery.Backoff`) on 5xx, 408/429, timeouts and connection errors, also across
restarts (the outbox is replayed by :meth:`start`); a permanent refusal (other 4xx, SMTP 5xx) is
audited as ``alert_failed`` and kept in ``memory/outbox/failed/``. Every attempt's outcome is a
:class:`~.delivery.DeliveryEvent` (handed to ``emit``) and an audit entry.

A full or read-only disk (issue 10): a delivery whose outbox file cannot be written is sent from
memory all the same; the dispatcher says so once (an :class:`~.delivery.OutboxStateEvent`, state
``unwritable``, and the audit event ``alerts_outbox_unwritable``), tries to write what is pending
every :data:`PERSIST_RETRY` seconds, and says when the outbox takes writes again (``writable``,
``alerts_outbox_writable``, with the number of deliveries saved). Only a process that another live
process's ``flock`` keeps out stands by (``alerts_standby``); a lock file that cannot be created
means nobody holds the outbox, so this process delivers and takes the lock once it can.

The sinks are warmed from the moment the dispatcher is made (their ``prewarm()``: a thread builds
the HTTP client and imports what the first request loads) and :meth:`AlertDispatcher.start` waits
for their ``warm()`` (up to :data:`WARM_WAIT` seconds), so the first alert after a start is as fast
as the later ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from polylog_console.core.alerts.delivery import (
    ACTIVE,
    DELIVERED,
    FAILED,
    RETRY,
    STANDBY,
    UNWRITABLE,
    WRITABLE,
    Backoff,
    DeliveryError,
    DeliveryEvent,
    OutboxStateEvent,
    Sink,
)
from polylog_console.core.alerts.outbox import Outbox, OutboxError, OutboxUnlockable, Pending
from polylog_console.core.alerts.payload import Notification, from_alert, hostname
from polylog_console.core.infra import reader
from polylog_console.core.infra.atomic import write_bytes
from polylog_console.core.infra.audit import AuditLog
from polylog_console.core.infra.text import safe_text
from polylog_console.core.model import events as ev
from polylog_console.core.model.config import Config
from polylog_console.core.model.events import AlertEvent, CheckpointEvent

GROUPS_FILE = "groups.json"
DEFAULT_RESOLVE_HOLD = 30.0
DEFAULT_MAX_PENDING = 1000
LOCK_RETRY = 5.0  # seconds between attempts to take an outbox another process holds
SAVE_EVERY = 1.0  # seconds between writes of groups.json (what receivers heard)
WARM_WAIT = 2.0  # seconds start() waits at most for the sinks' warm-up (client, imports, name resolution)
PERSIST_RETRY = 1.0  # seconds between attempts to save what is pending in memory (outbox unwritable)
FIRING = "firing"
RESOLVED = "resolved"

Emit = Callable[[list[Any]], None]


async def wait_event(event: asyncio.Event, timeout: float | None) -> None:
    """Wait until ``event`` is set or ``timeout`` passes.

    Unlike ``asyncio.wait_for`` on Python 3.11, a cancellation arriving as the event is set is
    never swallowed, so a task stopped while being woken really stops.
    """
    if event.is_set():
        return
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=timeout)
    finally:
        waiter.cancel()


# --- one sink's delivery task -----------------------------------------------------------------

class SinkWorker:
    """Delivers one sink's pending deliveries, oldest first, one at a time.

    The head of the queue is retried until accepted or refused for good, so a notification is
    never overtaken by a later one about the same alert (a resolution by its alert).
    """

    def __init__(self, sink: Sink, outbox: Outbox, backoff: Backoff, report: Callable[[DeliveryEvent], None],
                 *, max_pending: int = DEFAULT_MAX_PENDING, clock: Callable[[], float] = time.time,
                 send_timeout: float | None = None) -> None:
        self.sink = sink
        self.name = sink.name
        self.outbox = outbox
        self.backoff = backoff
        self.report = report
        self.max_pending = max_pending
        self.clock = clock
        self.send_timeout = send_timeout
        self.queue: deque[Pending] = deque()
        self.overflow = False  # deliveries on disk that are not in memory (queue was full)
        self.sending = False
        self.stopping = False
        self.delivered = 0
        self.failed = 0
        self.retries = 0
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # queue ------------------------------------------------------------------------------------

    def add(self, pending: Pending) -> bool:
        """Queue ``pending``; False when it had to be dropped (unsaved, and memory is full too)."""
        if not pending.saved:
            # Only in memory: kept whatever the queue holds, up to twice the limit (a full disk
            # and a dead sink at once); beyond that it is lost, and the caller says so.
            if len(self.queue) >= 2 * self.max_pending:
                return False
            self.queue.append(pending)
        elif self.overflow or len(self.queue) >= self.max_pending:
            # Stays on disk, read back (in order, after the older ones) when the queue drains.
            self.overflow = True
        else:
            self.queue.append(pending)
        self._wake.set()
        return True

    def load(self, pendings: Iterable[Pending]) -> int:
        """Queue deliveries read from the outbox (those already queued are skipped)."""
        known = {p.path for p in self.queue}
        count = 0
        for pending in pendings:
            if pending.path in known:
                continue
            self.add(pending)
            count += 1
        return count

    def unsaved(self) -> int:
        return sum(1 for p in self.queue if not p.saved)

    def save_unsaved(self) -> int:
        """Write the deliveries that are only in memory to the outbox (not the one being sent:
        its outcome decides). Returns how many were saved; raises :class:`OutboxError` at the
        first that cannot be (the rest stay as they are)."""
        saved = 0
        for index, pending in enumerate(list(self.queue)):
            if pending.saved or (index == 0 and self.sending):
                continue
            new = self.outbox.save(pending)
            if index < len(self.queue) and self.queue[index] is pending:
                self.queue[index] = new
            saved += 1
        return saved

    @property
    def pending(self) -> int:
        if self.overflow:
            return self.outbox.count(self.name) + self.unsaved()
        return len(self.queue)

    def has_pending(self, group: tuple[str, str]) -> bool:
        return any(p.note.group == group for p in self.queue)

    # task -------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"polylog-sink-{self.name}")

    def quiet(self, *, due_only: bool = False) -> bool:
        """Nothing being sent and nothing left (or, with ``due_only``, nothing due now)."""
        if self.sending:
            return False
        if not self.queue:
            return not self.overflow
        return due_only and self.queue[0].next_attempt_at > self.clock()

    async def wait_idle(self, timeout: float | None = None, *, due_only: bool = False) -> bool:
        """Wait until :meth:`quiet`; False if ``timeout`` passed first. (Checks at least every
        50 ms while waiting: only used when flushing or stopping, never while idle.)"""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.quiet(due_only=due_only):
            remaining = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
            if remaining <= 0:
                return False
            self._changed.clear()
            await wait_event(self._changed, remaining)
        return True

    async def stop(self) -> None:
        self.stopping = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.sink.aclose()

    async def _sleep(self, seconds: float | None) -> None:
        self._wake.clear()
        await wait_event(self._wake, seconds)

    async def _run(self) -> None:
        while not self.stopping:
            if not self.queue:
                if self.overflow:
                    self.overflow = False
                    loaded, _ = self.outbox.load(self.name)
                    self.load(loaded)
                    continue
                self._changed.set()
                await self._sleep(None)
                continue
            head = self.queue[0]
            wait = head.next_attempt_at - self.clock()
            if wait > 0:
                self._changed.set()
                await self._sleep(wait)
                continue
            await self._attempt(head)
            self._changed.set()

    async def _send(self, note: Notification) -> None:
        """``sink.send`` bounded by :attr:`send_timeout` (a safety net over the sink's own)."""
        if self.send_timeout is None:
            await self.sink.send(note)
            return
        task = asyncio.ensure_future(self.sink.send(note))
        try:
            done, _ = await asyncio.wait({task}, timeout=self.send_timeout)
        finally:
            if not task.done():
                task.cancel()
        if not done:
            raise TimeoutError
        task.result()

    async def _attempt(self, head: Pending) -> None:
        attempt = head.attempts + 1
        self.sending = True
        problem = None
        started = time.perf_counter()
        try:
            await self._send(head.note)
        except DeliveryError as exc:
            error, retryable, retry_after, problem = exc.reason, exc.retryable, exc.retry_after, exc.category
        except TimeoutError:
            error, retryable, retry_after = f"{self.name}: no answer within {self.send_timeout:g}s", True, None
        except asyncio.CancelledError:
            self.sending = False
            raise
        except Exception as exc:  # a bug in a sink must not stop deliveries: retry, say what happened
            error = f"{self.name}: {type(exc).__name__}: {safe_text(str(exc), 160)}"
            retryable, retry_after = True, None
        else:
            latency = (time.perf_counter() - started) * 1000
            self.outbox.remove(head)
            self.queue.popleft()
            self.sending = False
            self.delivered += 1
            self.report(_event(head, DELIVERED, attempt, latency_ms=latency, at=self.clock()))
            return
        self.sending = False
        if retryable:
            delay = self.backoff.delay(attempt, retry_after)
            updated = self.outbox.update(head, attempts=attempt, next_attempt_at=self.clock() + delay, error=error)
            if self.queue and self.queue[0] is head:
                self.queue[0] = updated
            self.retries += 1
            self.report(_event(head, RETRY, attempt, error=error, retry_in=delay, at=self.clock(), problem=problem))
        else:
            self.outbox.dead_letter(head, error)
            if self.queue and self.queue[0] is head:
                self.queue.popleft()
            self.failed += 1
            self.report(_event(head, FAILED, attempt, error=error, at=self.clock(), problem=problem))


async def _warm(warm: Callable[[], Any]) -> None:
    """Run a sink's warm-up; a failure there only means the first send does the work."""
    with contextlib.suppress(Exception):
        await warm()


def _event(pending: Pending, outcome: str, attempt: int, **kwargs: Any) -> DeliveryEvent:
    note = pending.note
    return DeliveryEvent(pending.sink, outcome, note.id, note.code, note.status, note.dedup_key, attempt, **kwargs)


# --- grouping -----------------------------------------------------------------------------------

@dataclass
class Group:
    """What is known and what was announced about one alert condition (code, dedup_key)."""

    code: str
    dedup_key: str
    firing: bool = False  # the monitor's current view (since this process started)
    seen: bool = False  # a firing event arrived since this process started
    heard: str | None = None  # what receivers were last told: firing | resolved | None
    last_announced: float | None = None  # when a firing notification was last sent (first or reminder)
    last_posted: float | None = None  # when the alert was last posted to Alertmanager
    note: Notification | None = None  # the latest firing notification (for reminders and re-posts)
    resolution: Notification | None = None  # a resolution being held (flap damping)
    resolve_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "dedup_key": self.dedup_key, "heard": self.heard,
                "last_announced": self.last_announced, "note": self.note.to_json() if self.note else None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Group:
        note = data.get("note")
        heard = data.get("heard")
        last = data.get("last_announced")
        return cls(str(data["code"]), str(data["dedup_key"]),
                   heard=heard if heard in (FIRING, RESOLVED) else None,
                   last_announced=float(last) if isinstance(last, int | float) else None,
                   note=Notification.from_json(note) if isinstance(note, dict) else None)


@dataclass
class DispatcherStats:
    notifications: int = 0
    suppressed: int = 0
    replayed: int = 0
    by_code: dict[str, int] = field(default_factory=dict)


class AlertDispatcher:
    def __init__(
        self,
        outbox_dir: Path,
        sinks: Iterable[Sink],
        *,
        workspace: str,
        runbook_url: str,
        repeat_interval: float = 4 * 3600.0,
        resolve_hold: float = DEFAULT_RESOLVE_HOLD,
        resend_interval: float | None = None,
        backoff: Backoff | None = None,
        audit: AuditLog | None = None,
        emit: Emit | None = None,
        clock: Callable[[], float] = time.time,
        max_pending: int = DEFAULT_MAX_PENDING,
        durable: bool = True,
        host: str | None = None,
        retention: Any = None,
    ) -> None:
        retained = {} if retention is None else {"failed_keep": retention.failed_keep,
                                                 "failed_max_age": retention.failed_max_age}
        self.outbox = Outbox(outbox_dir, durable=durable, **retained)
        self.sinks = list(sinks)
        self.workspace = workspace
        self.runbook_url = runbook_url
        self.repeat_interval = repeat_interval
        self.resolve_hold = resolve_hold
        am = next((s for s in self.sinks if s.name == "alertmanager"), None)
        self.resend_interval = (float(resend_interval) if resend_interval
                                else float(getattr(am, "resend_interval", 60.0)))
        self.backoff = backoff or Backoff()
        self.audit = audit
        self.emit = emit
        self.clock = clock
        self.host = host or hostname()
        for sink in self.sinks:  # warm-up threads start now, while the feed's history is read
            prewarm = getattr(sink, "prewarm", None)
            if prewarm is not None:
                prewarm()
        self.workers = {s.name: SinkWorker(s, self.outbox, self.backoff, self._report, max_pending=max_pending,
                                           clock=clock, send_timeout=_send_timeout(s)) for s in self.sinks}
        self.groups: dict[tuple[str, str], Group] = {}
        self.stats = DispatcherStats()
        self.standby = False  # another process holds the outbox and delivers
        self.unlocked = False  # no lock file could be made: nobody holds the outbox, this process delivers
        self.writable = True  # the outbox took the last write asked of it
        self.outbox_error: str | None = None
        self.lost = 0  # deliveries dropped: neither the disk nor memory could keep them
        self.started = False
        self.closed = False
        self._consecutive: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._timer: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next_lock_try = 0.0
        self._next_persist = 0.0
        self._saved_meanwhile = 0  # deliveries saved since the outbox stopped taking writes
        self._groups_dirty = False
        self._next_save = 0.0
        self._warming: list[asyncio.Task[None]] = []
        # announcements made while another process held the outbox, by group: sent on taking over
        # unless the holder's outbox or groups.json shows it sent them (at-least-once across a takeover)
        self._held_by_standby: dict[tuple[str, str, str], Notification] = {}

    @classmethod
    def from_config(cls, outbox_dir: Path, config: Config, *, workspace: str, audit: AuditLog | None = None,
                    emit: Emit | None = None, sinks: Iterable[Sink] | None = None, **kwargs: Any) -> AlertDispatcher:
        """A dispatcher with the sinks ``config`` configures (``sinks`` overrides them)."""
        if sinks is None:
            sinks = build_sinks(config)
        kwargs.setdefault("retention", getattr(config, "retention", None))
        return cls(outbox_dir, sinks, workspace=workspace, runbook_url=config.alerts.runbook_url,
                   repeat_interval=config.alerts.repeat_interval, audit=audit, emit=emit, **kwargs)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Take the outbox, replay what is pending, start the delivery tasks and the timer, and
        warm the sinks (in the background: nothing waits for it)."""
        if self.started:
            return
        self.started = True
        self._loop = asyncio.get_running_loop()
        self._load_groups()
        if self.sinks:
            self._take_outbox()
            if self.outbox.owned:
                self.outbox.prune_failed()  # limits lowered since the last run apply now
                self.outbox.sweep_temp()  # half-written files of a process killed mid-write
        for worker in self.workers.values():
            worker.start()
        self._timer = asyncio.create_task(self._maintain(), name="polylog-alert-timer")
        for sink in self.sinks:
            warm = getattr(sink, "warm", None)
            if warm is not None:
                self._warming.append(asyncio.create_task(_warm(warm), name=f"polylog-warm-{sink.name}"))
        if self._warming:  # ready means ready to alert at once (bounded: a slow resolver only delays it)
            await asyncio.wait(self._warming, timeout=WARM_WAIT)

    @property
    def outbox_path(self) -> str:
        """The outbox directory as shown to the operator (relative to the workspace when inside)."""
        try:
            return self.outbox.root.relative_to(self.workspace).as_posix()
        except ValueError:
            return str(self.outbox.root)

    def _take_outbox(self) -> bool:
        """Try to hold the outbox lock. True when this process delivers (holding the lock, or
        nobody can hold it); False when another live process holds it (standby)."""
        now = self.clock()
        try:
            owned = self.outbox.acquire()
        except OutboxUnlockable as exc:
            # No lock file exists and none can be made: no process holds this outbox. Deliver
            # (from memory) and try to take the lock every LOCK_RETRY seconds.
            self._next_lock_try = now + LOCK_RETRY
            self._outbox_failed(str(exc))
            if not self.unlocked:
                self.unlocked = True
                self._replay()
            if self.standby:
                self._set_active()
            return True
        if not owned:
            self._next_lock_try = now + LOCK_RETRY
            self.unlocked = False
            if not self.standby:
                self.standby = True
                pid = self.outbox.holder()
                self._audit("alerts_standby", holder_pid=pid,
                            message="another running process holds the outbox lock and delivers this workspace's "
                                    "alerts")
                self._state(STANDBY, holder_pid=pid)
            return False
        error = self.outbox.write_holder()
        if error is not None:
            self._outbox_failed(error)
        took_over = self.standby
        if self.standby:
            self._set_active()
        self.unlocked = False
        self._replay()
        if took_over:
            self._send_held_by_standby()
        return True

    def _send_held_by_standby(self) -> None:
        """Having taken the outbox over from another process: announce what this one would have
        announced meanwhile, unless the other's outbox (replayed) or groups.json shows it did."""
        held, self._held_by_standby = self._held_by_standby, {}
        if not held:
            return
        heard: dict[tuple[str, str], tuple[str | None, float]] = {}
        with contextlib.suppress(OSError, orjson.JSONDecodeError, TypeError, AttributeError, reader.UnreadableFile):
            for item in orjson.loads(self._read_groups()).get("groups", []):
                heard[(str(item["code"]), str(item["dedup_key"]))] = (item.get("heard"),
                                                                      float(item.get("last_announced") or 0.0))
        queued = {(*p.note.group, p.note.status) for w in self.workers.values() for p in w.queue}
        for key, note in sorted(held.items(), key=lambda kv: kv[1].created_at):
            if key in queued:
                continue  # the holder wrote it to the outbox: replayed
            status, last = heard.get(note.group, (None, 0.0))
            if status == note.status and (note.status != FIRING or last >= note.created_at - 1.0):
                continue  # the holder announced it
            for name in self.workers:
                self._put(name, note)

    def _set_active(self) -> None:
        self.standby = False
        self._audit("alerts_active", message="this process now delivers the workspace's alerts")
        self._state(ACTIVE)

    def _replay(self) -> None:
        """Queue what the outbox holds (after a restart, or once this process takes it)."""
        replayed = 0
        for name, worker in self.workers.items():
            pendings, bad = self.outbox.load(name)
            replayed += worker.load(pendings)
            for path, reason in bad:
                self._audit("alert_outbox_bad", sink=name, path=str(path), error=reason)
            for pending in pendings:  # what is still pending was announced: receivers will hear it
                self._note_replayed(pending.note)
        if replayed:
            self.stats.replayed += replayed
            self._audit("alert_replayed", deliveries=replayed)

    # -- an outbox that cannot be written ----------------------------------------------------------

    def _state(self, state: str, **details: Any) -> None:
        """Say a change of the outbox's state (one event per change), after the current batch."""
        if self.emit is None:
            return
        event = OutboxStateEvent(state, self.outbox_path, at=self.clock(), **details)
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon(self.emit, [event])
        else:
            self.emit([event])

    def _outbox_failed(self, error: str) -> None:
        """A write to the outbox failed: from now on deliveries are kept in memory until it works."""
        self._next_persist = self.clock() + PERSIST_RETRY
        if not self.writable:
            return
        self.writable = False
        self.outbox_error = error
        reason = error.rsplit(": ", 1)[-1]
        unsaved = sum(w.unsaved() for w in self.workers.values())
        self._audit("alerts_outbox_unwritable", path=self.outbox_path, error=error,
                    message="alerts are delivered from memory and saved once the outbox can be written")
        self._state(UNWRITABLE, error=reason, unsaved=unsaved)
        self._wake.set()

    def _put(self, name: str, note: Notification) -> None:
        """Write a delivery to the outbox and queue it; when the disk refuses, queue it all the same."""
        worker = self.workers[name]
        pending = self.outbox.entry(name, note)
        if self.writable:  # else do not pound a full disk for every alert: saved with the others
            loop = self._loop if self._loop is not None and self._loop.is_running() else None
            try:
                pending = self.outbox.save(pending, sync_later=loop is not None and self.outbox.durable)
            except OutboxError as exc:
                self._outbox_failed(str(exc))
            else:
                if loop is not None and self.outbox.durable:
                    # flushed to disk in a thread while the send goes out (the file is already in place)
                    loop.run_in_executor(None, self._sync, pending.path)
        if not worker.add(pending):
            self.lost += 1
            self._audit("alert_lost", sink=name, code=note.code, status=note.status, dedup_key=note.dedup_key,
                        error=f"outbox unwritable and {2 * worker.max_pending} deliveries already held in memory")

    def _sync(self, path: Path) -> None:
        """In a worker thread: flush a new outbox file; a failure is said like any write failure."""
        error = self.outbox.sync(path)
        if error is not None and self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._outbox_failed, error)

    def _try_persist(self) -> bool:
        """Save what is only in memory (deliveries, what receivers heard, the lock, the audit
        backlog). True when the outbox is writable again."""
        self._next_persist = self.clock() + PERSIST_RETRY
        if self.audit is not None:
            self.audit.flush()
        if self.unlocked:
            self._take_outbox()
            if self.unlocked:
                return False
        elif self.outbox.owned and self.outbox.write_holder() is not None:
            return False
        try:
            for worker in self.workers.values():
                self._saved_meanwhile += worker.save_unsaved()
        except OutboxError:
            return False
        if any(worker.unsaved() for worker in self.workers.values()):
            return False  # one was being sent: saved at the next turn, unless delivered by then
        if self._groups_dirty and not self._save_groups(force=True):
            return False
        if not self.writable:
            saved, self._saved_meanwhile = self._saved_meanwhile, 0
            self.writable = True
            self.outbox_error = None
            self._audit("alerts_outbox_writable", path=self.outbox_path, saved=saved,
                        message="the outbox can be written again")
            self._state(WRITABLE, saved=saved)
        return True

    async def close(self, grace: float = 5.0) -> bool:
        """Stop: announce held resolutions, give due deliveries up to ``grace`` seconds, then stop
        the tasks. What is not delivered stays in the outbox for the next start. True when
        nothing was left pending."""
        if self.closed:
            return True
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
        self.announce_held()
        self._save_groups(force=True)
        for task in self._warming:
            task.cancel()
        deadline = time.monotonic() + grace
        for worker in self.workers.values():
            await worker.wait_idle(max(0.0, deadline - time.monotonic()), due_only=True)
        left = 0
        unsaved = 0
        for worker in self.workers.values():
            left += len(worker.queue)
            with contextlib.suppress(OutboxError):
                worker.save_unsaved()  # a last chance for what is only in memory
            unsaved += worker.unsaved()
            await worker.stop()
        self.outbox.release()
        if left:
            self._audit("alerts_persisted", deliveries=left - unsaved, message="left in the outbox for the next start")
        if unsaved:
            self._audit("alerts_lost", deliveries=unsaved, error=self.outbox_error,
                        message="the outbox could not be written: these deliveries were never saved")
        if self.audit is not None:
            self.audit.flush()
        return left == 0

    def announce_held(self) -> int:
        """Send the resolutions being held for flap damping now (stopping, or a one-shot run)."""
        if self.standby:
            return 0
        held = [g for g in self.groups.values() if g.resolution is not None]
        for group in held:
            self._send_resolution(group)
        return len(held)

    async def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every sink has delivered (or refused) everything queued. For tests/tools."""
        deadline = time.monotonic() + timeout
        for worker in self.workers.values():
            if not await worker.wait_idle(max(0.0, deadline - time.monotonic())):
                return False
        return True

    # -- events in ---------------------------------------------------------------------------------

    def submit(self, events: Iterable[Any]) -> None:
        """Consume a batch of monitor events (on the event loop; no network I/O here)."""
        now = self.clock()
        changed = False
        for event in events:
            cls = event.__class__
            if cls is CheckpointEvent:
                if event.registry_match is False and event.stored_digest and not event.scheme_mismatch:
                    if len(self._consecutive) > 1000:
                        self._consecutive.clear()
                    self._consecutive[ev.dedup_key(event.stored_digest, event.checkpoint.digest)] = \
                        event.consecutive_mismatches
            elif cls is AlertEvent:
                self._on_alert(event.alert, now)
                changed = True
        if changed:
            self._wake.set()

    def _group(self, code: str, key: str) -> Group:
        group = self.groups.get((code, key))
        if group is None:
            group = self.groups[(code, key)] = Group(code, key)
        return group

    def _on_alert(self, alert: ev.Alert, now: float) -> None:
        note = from_alert(alert, workspace=self.workspace, runbook_url=self.runbook_url, now=now, host=self.host)
        if alert.status == FIRING:
            group = self._group(alert.code, alert.dedup_key)
            group.firing = True
            group.seen = True
            if group.resolution is not None:  # flapping: the resolution was never announced
                group.resolution = None
                group.resolve_at = None
                self.stats.suppressed += 1
                return
            if group.heard == FIRING:
                group.note = note  # already announced (e.g. replayed); reminders go on from here
                self.stats.suppressed += 1
                return
            if group.last_announced is not None and now - group.last_announced < self.repeat_interval:
                group.note = note  # returned within repeat_interval: announced when it is over (timer)
                self.stats.suppressed += 1
                return
            self._announce(group, note, now)
            return
        # resolved: hold it (flap damping) for every group it ends that receivers heard firing
        codes = dict.fromkeys((alert.code, *alert.resolves))
        heard = False
        for code in codes:
            ended = self.groups.get((code, alert.dedup_key))
            if ended is None:
                continue
            ended.firing = False
            if ended.heard == FIRING:
                heard = True
        if not heard:
            return
        # the resolution is attached to the group that first fired (its announcement's group)
        for code in codes:
            ended = self.groups.get((code, alert.dedup_key))
            if ended is not None and ended.heard == FIRING:
                ended.resolution = note
                ended.resolve_at = now + self.resolve_hold
                if self.resolve_hold <= 0:
                    self._send_resolution(ended)
                break

    def _note_replayed(self, note: Notification) -> None:
        group = self._group(note.code, note.dedup_key)
        if note.status == FIRING:
            group.heard = FIRING
            group.note = note
            group.last_announced = max(group.last_announced or 0.0, note.created_at)
        else:
            for code in dict.fromkeys((note.code, *note.resolves)):
                g = self.groups.get((code, note.dedup_key))
                if g is not None:
                    g.heard = RESOLVED

    # -- announcing ------------------------------------------------------------------------------

    def _announce(self, group: Group, note: Notification, now: float) -> None:
        group.heard = FIRING
        group.note = note
        group.last_announced = now
        group.last_posted = now
        self._enqueue(note)

    def _send_resolution(self, group: Group) -> None:
        note = group.resolution
        group.resolution = None
        group.resolve_at = None
        if note is None:
            return
        for code in dict.fromkeys((note.code, *note.resolves)):
            g = self.groups.get((code, note.dedup_key))
            if g is not None and not g.firing:
                g.heard = RESOLVED
                g.last_posted = None
        group.heard = RESOLVED
        group.last_posted = None
        self._enqueue(note)

    def _enqueue(self, note: Notification, sinks: Iterable[str] | None = None) -> None:
        self.stats.notifications += 1
        self.stats.by_code[note.code] = self.stats.by_code.get(note.code, 0) + 1
        self._groups_dirty = True
        if self.standby:  # the process holding the outbox announces it
            if len(self._held_by_standby) < 10_000:
                self._held_by_standby[(*note.group, note.status)] = note
            return
        for name in sinks or self.workers:
            self._put(name, note)

    # -- time ------------------------------------------------------------------------------------

    def due(self, now: float) -> float | None:
        """Do what is due at ``now`` (held resolutions, reminders, Alertmanager re-posts);
        return the time of the next thing due, or None."""
        upcoming: list[float] = []
        am = self.workers.get("alertmanager")
        for group in list(self.groups.values()):
            if group.resolution is not None and group.resolve_at is not None:
                if now >= group.resolve_at:
                    self._send_resolution(group)
                else:
                    upcoming.append(group.resolve_at)
                    continue
            if not group.firing or group.note is None:
                continue
            last = group.last_announced
            if last is None or now - last >= self.repeat_interval:
                consecutive = self._consecutive.get(group.dedup_key)
                note = group.note.again(now, consecutive) if group.heard == FIRING else \
                    replace(group.note, created_at=now, consecutive_mismatches=consecutive
                            if consecutive is not None else group.note.consecutive_mismatches)
                self._announce(group, note, now)
                last = now
            upcoming.append(last + self.repeat_interval)
            if am is not None and group.heard == FIRING and not self.standby:
                posted = group.last_posted or 0.0
                if now - posted >= self.resend_interval:
                    if not am.has_pending(group.note.group):
                        consecutive = self._consecutive.get(group.dedup_key)
                        self._enqueue_repost(group.note.again(now, consecutive))
                    group.last_posted = now
                    posted = now
                upcoming.append(posted + self.resend_interval)
        if self._groups_dirty:
            if now >= self._next_save:  # at most once per SAVE_EVERY: off the delivery path
                self._save_groups(now)
                self._next_save = now + SAVE_EVERY
            else:
                upcoming.append(self._next_save)
        return min(upcoming) if upcoming else None

    def _enqueue_repost(self, note: Notification) -> None:
        self._put("alertmanager", note)

    async def _maintain(self) -> None:
        while not self.closed:
            now = self.clock()
            if self.standby and now >= self._next_lock_try:
                self._take_outbox()
            if (not self.writable or self.unlocked) and now >= self._next_persist:
                self._try_persist()
            nxt = self.due(now)
            if self.standby:
                nxt = min(nxt or self._next_lock_try, self._next_lock_try)
            if not self.writable or self.unlocked:
                nxt = min(nxt or self._next_persist, self._next_persist)
            self._wake.clear()
            timeout = None if nxt is None else max(0.0, nxt - self.clock())
            await wait_event(self._wake, timeout)

    def reconcile(self) -> list[Notification]:
        """After the feed's history was read: a condition that receivers last heard as firing
        (before a restart) and that the monitor no longer reports is resolved now."""
        now = self.clock()
        sent = []
        for group in list(self.groups.values()):
            if group.heard == FIRING and not group.seen and group.note is not None and group.resolution is None:
                base = group.note
                drift = base.code in (ev.REGISTRY_MISMATCH, ev.DRIFT_PERSISTENT)
                note = replace(base.again(now), code=ev.REGISTRY_RESOLVED if drift else base.code, status=RESOLVED,
                               severity=str(ev.Severity.INFO) if drift else base.severity,
                               summary=f"no longer reported after a restart: {base.summary}",
                               resolves=(ev.REGISTRY_MISMATCH, ev.DRIFT_PERSISTENT) if drift else (),
                               reason="cleared while the monitor was not running", repeat=0)
                group.resolution = note
                self._send_resolution(group)
                sent.append(note)
        if sent:
            self._save_groups()
        return sent

    # -- persistence of what receivers heard -------------------------------------------------------

    @property
    def groups_path(self) -> Path:
        return self.outbox.root / GROUPS_FILE

    def _read_groups(self) -> bytes:
        """groups.json through the bounded reader (a FIFO there must not hang the dispatcher)."""
        return reader.read_bytes(self.groups_path, reader.LIMITS["outbox groups"], what="outbox groups")

    def _load_groups(self) -> None:
        if not self.sinks:
            return
        try:
            data = orjson.loads(self._read_groups())
        except reader.UnreadableFile as exc:
            if not exc.missing:
                self._audit("alert_outbox_bad", path=str(self.groups_path), error=str(exc))
            return
        except FileNotFoundError:
            return
        except (OSError, orjson.JSONDecodeError) as exc:
            self._audit("alert_outbox_bad", path=str(self.groups_path), error=str(exc))
            return
        for item in data.get("groups", []) if isinstance(data, dict) else []:
            try:
                group = Group.from_json(item)
            except (KeyError, TypeError, ValueError):
                continue
            self.groups[(group.code, group.dedup_key)] = group

    def _save_groups(self, now: float | None = None, *, force: bool = False) -> bool:
        """Write what receivers heard; False when the outbox refused it (tried again with the
        pending deliveries, see :meth:`_try_persist`)."""
        if self.standby or not self.sinks:  # nothing is announced without sinks: write nothing
            self._groups_dirty = False
            return True
        if not self.writable and not force:
            return False  # the retry timer writes it with the rest
        self._groups_dirty = False
        now = self.clock() if now is None else now
        for key, group in list(self.groups.items()):
            # a group resolved longer than repeat_interval ago no longer limits anything: forget it
            if (not group.firing and group.heard != FIRING and group.resolution is None
                    and (group.last_announced is None or now - group.last_announced >= self.repeat_interval)):
                del self.groups[key]
        keep = [g.to_json() for g in self.groups.values() if g.heard is not None]
        try:
            self.groups_path.parent.mkdir(parents=True, exist_ok=True)
            # Not fsynced: it is a hint (losing it to a power cut costs at most a repeated
            # notification), and it is written after each announcement, on the event loop.
            write_bytes(self.groups_path, orjson.dumps({"version": 1, "groups": keep}), durable=False)
        except OSError as exc:
            self._groups_dirty = True
            self._outbox_failed(f"outbox {self.outbox_path}: {exc.strerror or exc}")
            return False
        return True

    # -- reporting -------------------------------------------------------------------------------

    def _report(self, event: DeliveryEvent) -> None:
        name = event.audit_name
        if name is not None:
            self._audit(name, **event.details())
        if self.emit is not None:
            self.emit([event])

    def _audit(self, name: str, **details: Any) -> None:
        if self.audit is not None:
            self.audit.append(name, **details)

    def pending(self) -> dict[str, int]:
        return {name: worker.pending for name, worker in self.workers.items()}

    def health(self) -> tuple[bool, bool]:
        """(the outbox can be written, the audit log can be written), for the metrics."""
        return self.writable, self.audit is None or self.audit.backlog == 0


def _send_timeout(sink: Sink) -> float | None:
    """A safety net above the sink's own timeouts (a connect plus a response)."""
    timeout = getattr(sink, "timeout", None)
    return None if timeout is None else 3 * float(timeout) + 5.0


def build_sinks(config: Config) -> list[Sink]:
    """The external sinks ``config`` configures, in a fixed order."""
    from polylog_console.core.alerts.alertmanager import AlertmanagerSink
    from polylog_console.core.alerts.email import EmailSink
    from polylog_console.core.alerts.webhook import WebhookSink

    sinks: list[Sink] = []
    alerts = config.alerts
    if alerts.webhook is not None:
        sinks.append(WebhookSink.from_config(alerts.webhook))
    if alerts.email is not None:
        sinks.append(EmailSink.from_config(alerts.email))
    if alerts.alertmanager is not None:
        from polylog_console.core.fleet.identity import workspace_name

        # the fleet name labels the alerts; acknowledgements of a resolved drift are expired (SPEC §12)
        sinks.append(AlertmanagerSink.from_config(alerts.alertmanager, workspace_name=workspace_name(config),
                                                  root=config.workspace))
    return sinks
