"""The running monitor: the one pipeline of the console, ``watch``, ``watch --once`` and the demo.

A :class:`Session` owns the workspace's stored registry, the monitor and the audit log, reads the
feed and turns each batch of records into events that it hands, in order, to every subscriber
(the screen, ``watch`` output). Data flows one way: feed -> monitor (rules -> incident -> events)
-> consumers. Nothing here knows about Textual.

* :meth:`run` follows the feed (the follower) until :meth:`stop`; the first batch is the feed's
  recent history. When that history begins in drift, a bounded backwards scan
  (:mod:`~polylog_console.core.monitor.backscan`, :data:`PRESCAN_SECONDS`) finds the drift's start
  before the history's first comparison, so the first alert's ``since`` and count are right; a
  scan cut short by its bound goes on in the background (the incident says "or earlier" meanwhile).
* :meth:`run_once` is the same pipeline run to the end of the feed (``watch --once``): the file
  is read in large chunks, staleness is judged on the latest checkpoint at the end, the alerts
  raised are delivered within a bounded grace, and an automatic refresh runs when enabled.
  A big registry whose digest is not cached is digested by a child process meanwhile (the
  digest primer) while the feed is folded into runs of repeated digests.

:meth:`publish` is the single fan-out point; a consumer that raises is isolated (the others get
the batch, the monitor goes on) and reported as a :class:`ConsumerErrorEvent`. Before the
subscribers, every batch goes to the session's own consumers: the audit log (every alert raised
and resolved, every escalation and incident event, in event order, one write per batch; only a
record identical to the one just before it is merged into it with a count; a record that a
previous run already wrote for the same checkpoint, among the log's last :data:`REAUDIT_WINDOW`
records, is not written again), the dashboard banners
(:attr:`dashboard`), the metrics (:attr:`metrics`, when enabled), the alert dispatcher
(:attr:`alerts`: webhook, email, Alertmanager through the durable outbox) and the automatic
refresh (:attr:`refresh`). A read-only session (observer mode) keeps the dashboard but sends
nothing and refreshes nothing: the outbox and the catalogs are workspace writes.

Threads: the monitor and every consumer are touched only on the session's event loop. A worker
thread hands work back with :meth:`call_soon` (or :meth:`publish_threadsafe`); :meth:`diff`
computes a symbol diff on a thread without touching the monitor.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from polylog_console.core.alerts.dashboard import Dashboard
from polylog_console.core.feed.records import Checkpoint
from polylog_console.core.infra.audit import AuditLog, audit_record
from polylog_console.core.infra.gcpause import gc_paused
from polylog_console.core.model.config import Config
from polylog_console.core.model.events import AlertEvent, CheckpointEvent, EntryEvent, IngestErrorEvent, StatusEvent
from polylog_console.core.model.workspace import Workspace
from polylog_console.core.monitor.incident import IncidentEvent, IncidentView
from polylog_console.core.monitor.refresh import AutoRefresh
from polylog_console.core.monitor.rules import Monitor, Run, compact, exact_keep
from polylog_console.core.registry.stored import StoredRegistry

if TYPE_CHECKING:  # imported only when used: the console starts faster without them
    from polylog_console.core.alerts.dispatcher import AlertDispatcher
    from polylog_console.core.infra.metrics import Metrics
    from polylog_console.core.registry.diff import RegistryDiff

Subscriber = Callable[[list[Any]], None]

PRESCAN_SECONDS = 5.0  # the backwards scan run before the history is compared (then: in the background)
PENDING_LIMIT = 200_000  # items (records or runs) buffered while the stored digest is computed
PENDING_BYTES = 8 << 20  # ... and bytes of lines kept whole (a flapping feed does not fold: ~40,000 lines)


def incident_audit(event: IncidentEvent) -> tuple[str, dict[str, Any]]:
    """The audit entry for an incident event: ``incident_<kind>`` with the incident's picture
    (notes left out: each was audited when it happened)."""
    data = event.incident.to_json()
    data.pop("notes", None)
    data["incident"] = data.pop("id")
    return f"incident_{event.kind}", data


# per-checkpoint and per-line events that audit_record never audits (skipped without asking it)
_NOT_AUDITED = frozenset((CheckpointEvent, StatusEvent, EntryEvent, IngestErrorEvent))


AUDIT_CHUNK = 1024  # audit records written per write() at most
REAUDIT_WINDOW = 2000  # audit records read back at start: what a previous run wrote is not written again
MAX_CONSUMER_ERRORS = 64  # (consumer, exception type) pairs counted; beyond, counted as dropped
_ALERT_RECORDS = frozenset(("alert_raised", "alert_resolved", "escalation"))


def _signature(name: str, record: dict[str, Any]) -> tuple[Any, ...] | None:
    """What identifies an alert or incident record across runs: its kind and the checkpoint it
    was written for (None for a record that names no checkpoint: always written)."""
    if name.startswith("incident_"):
        if not record.get("started_label"):
            return None
        return (name, record.get("started_label"), record.get("started_line"), record.get("started_at"),
                record.get("last_label"), record.get("resolved_label"), record.get("consecutive_mismatches"))
    if not record.get("checkpoint"):
        return None
    return (name, record.get("code"), record.get("status"), record.get("dedup_key"), record.get("checkpoint"),
            record.get("checkpoint_line"), record.get("checkpoint_ts"), record.get("consecutive_mismatches"))


def _digests_differ(items: list[Any]) -> bool:
    """Whether the buffered checkpoints (records or runs) carry more than one digest."""
    seen: str | None = None
    for item in items:
        cp = item.first if item.__class__ is Run else item
        digest = cp.digest if cp.__class__ is Checkpoint else None
        if digest is not None:
            if seen is None:
                seen = digest
            elif digest != seen:
                return True
    return False


def _consumer_name(callback: Any) -> str:
    owner = getattr(callback, "__self__", None)
    if owner is not None:
        return f"{type(owner).__name__}.{getattr(callback, '__name__', 'call')}"
    name = getattr(callback, "__qualname__", None)
    return name if isinstance(name, str) else type(callback).__name__


class ConsumerErrorEvent:
    """A consumer of the session's events (a subscriber, the audit, the dashboard, the alerts,
    ...) raised: it is isolated and the monitor goes on. Published at the 1st, 2nd, 4th, ...
    failure of the same consumer with the same exception type, with the ``count`` so far."""

    event = "consumer_error"

    def __init__(self, consumer: str, error: str, count: int, at: float) -> None:
        self.consumer = consumer
        self.error = error
        self.count = count
        self.at = at

    @property
    def message(self) -> str:
        return (f"{self.consumer} failed ({self.count} time{'s' if self.count != 1 else ''} so far): "
                f"{self.error}; it is skipped for that batch, the monitor goes on")

    def details(self) -> dict[str, Any]:
        return {"consumer": self.consumer, "error": self.error, "count": self.count}

    def to_json(self) -> dict[str, Any]:
        from polylog_console.core.model.events import iso

        return {"event": self.event, "at": iso(self.at), **self.details(), "message": self.message}


def _audit_entry(event: Any) -> tuple[str, dict[str, Any]]:
    if event.__class__ is IncidentEvent:
        return incident_audit(event)
    record = audit_record(event)
    assert record is not None
    return record


class Session:
    TICK = 1.0  # seconds between staleness checks (a timer, not a busy loop)
    PARITY_INTERVAL = 60.0  # seconds between replica parity checks for the metrics
    CLOSE_GRACE = 5.0  # seconds given to due alert deliveries when stopping; the rest stays in the outbox
    ONCE_GRACE = 10.0  # watch --once: seconds given to deliveries and a refresh at the end of the feed

    def __init__(self, ws: Workspace, config: Config, *, read_only: bool = False, actor: str | None = None,
                 clock: Callable[[], float] = time.time, alerts: AlertDispatcher | None = None,
                 dispatcher_options: dict[str, Any] | None = None) -> None:
        self.ws = ws
        self.config = config
        self.clock = clock
        self.read_only = read_only or config.ui.read_only
        self.stored = StoredRegistry.for_workspace(ws, config.scheme)  # type: ignore[arg-type]
        self.monitor = Monitor(self.stored, config.monitor, ws, clock=clock)
        self.audit = AuditLog(ws.audit, actor)
        self.follower: Any = None
        self._subscribers: list[Subscriber] = []
        self._stop: asyncio.Event | None = None
        self._stop_requested = False  # stop() before run() has made its event: not lost
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # The alert fan-out (SPEC §7) and what rides on the event stream with it.
        self.dashboard = Dashboard(config.alerts.runbook_url)
        self.metrics: Metrics | None = None
        self.alerts: AlertDispatcher | None = None
        sinks_configured = any((config.alerts.webhook, config.alerts.email, config.alerts.alertmanager))
        if not self.read_only and (alerts is not None or sinks_configured):
            from polylog_console.core.alerts.dispatcher import AlertDispatcher

            self.alerts = alerts or AlertDispatcher.from_config(
                ws.outbox, config, workspace=str(ws.root), audit=self.audit, emit=self.publish,
                **(dispatcher_options or {}))
        self.refresh = AutoRefresh(self, enabled=config.monitor.refresh_enabled and not self.read_only)
        self._history_read = False
        self._audited: set[Any] | None = None  # records a previous run wrote (read at the first batch)
        self.consumer_errors: dict[tuple[str, str], int] = {}  # (consumer, exception type) -> failures
        self.consumer_errors_dropped = 0
        self._reporting = False
        self.read_seconds: float | None = None  # run_once: seconds to read and compare the whole feed

    # -- events ---------------------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> None:
        """``callback(events)`` for every batch of events, on the session's event loop."""
        self._subscribers.append(callback)

    def unsubscribe(self, callback: Subscriber) -> None:
        if callback in self._subscribers:
            self._subscribers.remove(callback)

    def publish(self, events: list[Any]) -> None:
        """Hand ``events`` to the session's consumers, then to every subscriber, in order. A
        consumer that raises is isolated: the others still get the batch, the monitor goes on,
        and the failure is reported once per (consumer, exception type) as a
        :class:`ConsumerErrorEvent` (audited, shown by every view, a line on stderr in the CLI)
        with how many times it happened so far."""
        if not events:
            return
        self._guard("audit", self._audit, events)
        self._guard("dashboard", self.dashboard.apply, events)
        metrics = self.metrics
        if metrics is not None:
            self._guard("metrics", lambda: metrics.apply(events, self.monitor.snapshot()))
        if self.alerts is not None:
            self._guard("alerts", self.alerts.submit, events)
        self._guard("refresh", self.refresh.submit, events)
        for callback in list(self._subscribers):
            self._guard(callback, callback, events)

    def _guard(self, consumer: Any, call: Callable[..., Any], *args: Any) -> None:
        try:
            call(*args)
        except Exception as exc:  # never let one consumer stop the pipeline (nor fail silently)
            self._consumer_failed(consumer, exc)

    def _consumer_failed(self, consumer: Any, exc: Exception) -> None:
        name = consumer if isinstance(consumer, str) else _consumer_name(consumer)
        key = (name, type(exc).__name__)
        count = self.consumer_errors.get(key, 0) + 1
        if count == 1 and len(self.consumer_errors) >= MAX_CONSUMER_ERRORS:
            self.consumer_errors_dropped += 1  # bounded: the kinds beyond are counted, not kept
            return
        self.consumer_errors[key] = count
        if count & (count - 1):  # reported at the 1st, 2nd, 4th, 8th, ... failure: never floods
            return
        event = ConsumerErrorEvent(name, f"{type(exc).__name__}: {exc}", count, self.clock())
        if self._reporting:  # a failure while reporting one: counted, not reported again
            return
        self._reporting = True
        try:
            with contextlib.suppress(Exception):
                self.audit.append("consumer_error", **event.details())
            for callback in list(self._subscribers):
                if callback is not consumer:
                    with contextlib.suppress(Exception):
                        callback([event])
        finally:
            self._reporting = False

    def _audit(self, events: list[Any]) -> None:
        """Audit a batch (SPEC §8): every alert raised and resolved, every escalation and every
        incident event, in event order, with one write per batch. Only a record identical to the
        one just before it (same code, status and drift, or same incident and kind, same
        checkpoint) is merged into it (``repeated``: how many more times): a merge never moves a
        record past a later one. A record that a previous run already wrote for the same
        checkpoint (it is among the audit log's last :data:`REAUDIT_WINDOW` records, e.g. a second
        ``watch --once`` over the same feed while the incident is still open) is not written again."""
        entries: list[tuple[str, dict[str, Any]]] = []
        written = self._audited
        if written is None:
            written = self._audited = self._seed_audited()
        last_key: Any = None
        repeats = 0
        for event in events:
            cls = event.__class__
            if cls in _NOT_AUDITED:
                continue
            if cls is AlertEvent:
                alert = event.alert
                ref = alert.checkpoint
                key: Any = (alert.code, alert.status, alert.dedup_key, alert.consecutive_mismatches,
                            ref.get("label") if ref else None, ref.get("line") if ref else None)
            elif cls is IncidentEvent:
                if event.kind == "noted":  # audited by whoever noted it (an acknowledgement, an action)
                    continue
                i = event.incident
                key = (event.kind, i.id, i.consecutive_mismatches, i.last_label, i.started_label)
            else:
                record = audit_record(event)
                if record is not None:
                    if repeats:
                        entries[-1][1]["repeated"] = repeats
                    entries.append(record)
                    last_key, repeats = None, 0
                continue
            if key == last_key:
                repeats += 1
                continue
            if repeats:
                entries[-1][1]["repeated"] = repeats
            last_key, repeats = key, 0
            name, details = _audit_entry(event)
            if written:
                signature = _signature(name, details)
                if signature in written:
                    written.discard(signature)  # written by a previous run: once is enough
                    last_key = None
                    continue
            if len(entries) >= AUDIT_CHUNK:  # memory bounded by the chunk, not by the batch's events
                self.audit.append_many(entries, fixed_keys=True)
                entries = []
            entries.append((name, details))
        if repeats:
            entries[-1][1]["repeated"] = repeats
        if entries:
            self.audit.append_many(entries, fixed_keys=True)

    def _seed_audited(self) -> set[Any]:
        """Signatures of the alert and incident records among the audit log's last
        :data:`REAUDIT_WINDOW` records that name a checkpoint (bounded; empty when unreadable)."""
        from polylog_console.core.infra.audit import read_tail

        seen: set[Any] = set()
        try:
            for record in read_tail(self.audit.path, REAUDIT_WINDOW):
                name = record.get("event")
                if isinstance(name, str) and (name.startswith("incident_") or name in _ALERT_RECORDS):
                    signature = _signature(name, record)
                    if signature is not None:
                        seen.add(signature)
        except Exception:  # an unreadable log: nothing is skipped, everything is written
            return set()
        seen.discard(None)
        return seen

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback(*args)`` on the session's event loop, from any thread (a worker's way
        back to the monitor: nothing else may touch it)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            callback(*args)
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            callback(*args)
        else:
            loop.call_soon_threadsafe(callback, *args)

    def publish_threadsafe(self, events: list[Any]) -> None:
        self.call_soon(self.publish, events)

    # -- the incident, for views ------------------------------------------------------------

    @property
    def incident(self) -> IncidentView | None:
        """The open incident's picture (event loop only)."""
        return self.monitor.snapshot().incident

    def note(self, what: str, detail: str = "", *, actor: str | None = None,
             data: dict[str, Any] | None = None) -> IncidentView | None:
        """Record an acknowledgement, an action, ... on the open incident and publish
        ``IncidentEvent("noted")``; None when no incident is open. Event loop only."""
        view = self.monitor.note(what, detail, actor=actor or self.audit.actor, data=data)
        if view is not None:
            self.publish([IncidentEvent("noted", view)])
        return view

    async def diff(self, cp: Checkpoint) -> tuple[RegistryDiff | None, str | None]:
        """The symbol diff for ``cp`` (stored vs its live state) and the reason when there is
        none, computed on a worker thread; the monitor's diff cache is updated on the loop."""
        cached = self.monitor.cached_diff(cp)
        if cached is not None:
            return cached
        job = self.monitor.diff_job(cp)
        if job is None:
            return None, self.monitor.diff_error(cp)
        key, compute = job
        result, error = await asyncio.to_thread(compute)
        self.monitor.store_diff(key, result, error)
        return result, error

    # -- alerts and metrics -------------------------------------------------------------------

    def enable_metrics(self, host: str | None = None, port: int | None = None) -> Metrics:
        """Keep Prometheus metrics for this session; serve them on ``host:port`` when given
        (raises ``OSError`` when the address cannot be bound)."""
        if self.metrics is None:
            from polylog_console.core.fleet.identity import workspace_info
            from polylog_console.core.infra.metrics import Metrics

            self.metrics = Metrics(workspace_info(self.config))  # polylog_workspace_info (SPEC §12)
            self.metrics.view = self.monitor.snapshot()
            if self.alerts is not None:
                self.metrics.outbox_source = self.alerts.pending
                self.metrics.outbox_health = self.alerts.health
        if host is not None and port is not None:
            self.metrics.serve(host, port)
        return self.metrics

    async def start_alerts(self) -> None:
        """Start delivering: take the outbox, replay what a previous run left, start the sinks."""
        if self.alerts is not None:
            await self.alerts.start()

    def history_read(self) -> None:
        """The feed's history has been compared: resolve what receivers heard firing before a
        restart and the monitor no longer reports (once)."""
        if not self._history_read and self.monitor.latest is not None:  # an empty feed proves nothing
            self._history_read = True
            if self.alerts is not None and self.alerts.started:
                self.alerts.reconcile()

    async def close_alerts(self, grace: float | None = None) -> None:
        """Stop cleanly: due deliveries get ``grace`` seconds, the rest stays in the outbox."""
        await self.refresh.close(self.CLOSE_GRACE if grace is None else grace)
        if self.alerts is not None:
            await self.alerts.close(self.CLOSE_GRACE if grace is None else grace)
        if self.metrics is not None:
            self.metrics.close()

    async def _parity(self) -> None:
        """Replica parity for the metrics, every :attr:`PARITY_INTERVAL` seconds."""
        from polylog_console.core.runbook.replicas import check_replicas

        while True:
            try:
                report = await check_replicas(self.ws, self.config)
            except Exception:  # a parity failure shows as NaN, never stops the watcher
                report = None
            if report is not None and self.metrics is not None:
                self.metrics.observe_parity(report)
            await asyncio.sleep(self.PARITY_INTERVAL)

    # -- running ----------------------------------------------------------------------------

    def make_follower(self) -> Any:
        from polylog_console.core.feed.follower import FeedFollower

        feed = self.config.feed
        return FeedFollower(feed.path, poll=feed.poll, poll_interval=feed.poll_interval, history=feed.history)

    def _process(self, batch: list[Any], **options: Any) -> None:
        # the batch's events are acyclic: the cyclic GC is paused while they are made and handed
        # out (a flapping feed makes several per checkpoint), freed by reference counting
        with gc_paused():
            self.publish(self.monitor.process(batch, **options))
        if self.monitor.incident is not None and not self.monitor.incident.start_in_history:
            self._start_backscan()

    async def _scan_before_history(self, batch: list[Any]) -> None:
        """Before the history's first comparison: when its first checkpoint drifts and the feed
        holds lines before it, scan backwards (bounded: :data:`PRESCAN_SECONDS`, the scan's
        checkpoint limit) for the drift's start and hand it to the monitor, so the incident's
        first alert (``since``, the count), status and escalation are right from the start.
        A scan that reaches its limit leaves the rest to the background scan."""
        page_back = getattr(self.follower, "page_back", None)
        first = next((r for r in batch if r.__class__ is Checkpoint), None)
        if page_back is None or first is None or not first.offset:
            return
        try:
            view = self.stored.get()
            digests = (view.digest, view.other_digest)
        except Exception:  # unreadable: nothing can be compared, the monitor says so
            return
        if first.digest in digests:
            return
        from polylog_console.core.monitor.backscan import find_start

        try:
            result = await asyncio.to_thread(find_start, page_back, first.offset, digests,
                                             max_seconds=PRESCAN_SECONDS)
        except Exception:  # the background scan will try again and say why it fails
            return
        self.monitor.found_before(result.start, result.drifting, result.complete, result.detail)

    def _start_backscan(self) -> None:
        """The open incident began before the history read: find its start in the background."""
        page_back = getattr(self.follower, "page_back", None)
        if page_back is None or self._loop is None:
            return
        request = self.monitor.scan_request()
        if request is None:
            return
        ident, before, stored, other = request

        async def scan() -> None:
            from polylog_console.core.monitor.backscan import find_start

            try:
                result = await asyncio.to_thread(find_start, page_back, before, (stored, other))
            except Exception as exc:  # a failed scan leaves the start marked "or earlier", never stops the watch
                self.publish(self.monitor.restart_incident(
                    ident, None, complete=False, failed=True,
                    detail=f"backwards scan failed: {type(exc).__name__}: {exc}"))
                return
            self.publish(self.monitor.restart_incident(ident, result.start, complete=result.complete,
                                                       detail=result.detail, earlier=result.drifting,
                                                       failed=result.reason == "file replaced"))

        self._spawn(scan())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self) -> None:
        """Follow the feed until :meth:`stop`. The first batch is the feed's recent history."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self._stop_requested:
            self._stop.set()
        self.follower = self.make_follower()
        await self.start_alerts()
        ticker = asyncio.create_task(self._tick())
        stopper = asyncio.create_task(self._stop.wait())
        parity = (asyncio.create_task(self._parity())
                  if self.metrics is not None and self.config.replicas else None)
        nxt: asyncio.Future[Any] | None = None
        try:
            iterator = self.follower.__aiter__()
            while not self._stop.is_set():
                nxt = asyncio.ensure_future(iterator.__anext__())
                done, _ = await asyncio.wait({nxt, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if nxt not in done:
                    nxt.cancel()
                    break
                try:
                    batch = nxt.result()
                except StopAsyncIteration:
                    break
                if not self._history_read:
                    await self._scan_before_history(batch)
                self._process(batch)
                self.history_read()
        finally:
            if nxt is not None and not nxt.done():
                nxt.cancel()
                # retrieve its outcome (StopAsyncIteration once the follower stops) so that asyncio
                # does not report "Task exception was never retrieved" at exit
                nxt.add_done_callback(lambda f: f.cancelled() or f.exception())
            ticker.cancel()
            stopper.cancel()
            if parity is not None:
                parity.cancel()
            for task in list(self._tasks):
                task.cancel()
            self.follower.stop()
            await self.close_alerts()

    async def run_once(self, *, emit_checkpoints: bool = True, grace: float | None = None,
                       primer: bool = True) -> None:
        """Read the feed to its end through the pipeline, then judge staleness on the latest
        checkpoint, resolve what receivers heard firing and the feed no longer shows, run the
        automatic refresh (when enabled) and deliver, within ``grace`` seconds for each. Raises
        ``OSError`` when the feed cannot be read.

        Without ``emit_checkpoints`` no per-checkpoint events are made (the human summary) and a
        big registry not yet in the digest cache is digested by a child process while the feed
        is read and folded into runs of repeated digests (:func:`~polylog_console.core.monitor.
        rules.compact`): the same state and alerts, ~1 s sooner for a 1,000,000-symbol registry.
        """
        from polylog_console.core.feed.records import read_records
        from polylog_console.core.registry.stored import start_digest_primer

        grace = self.ONCE_GRACE if grace is None else grace
        started = time.perf_counter()
        self._loop = asyncio.get_running_loop()
        child = start_digest_primer(self.stored) if primer and not emit_checkpoints else None
        await self.start_alerts()
        try:
            pending: list[Any] = []
            pending_bytes = 0
            keep = exact_keep(self.config.monitor)
            for batch in read_records(self.config.feed.path):
                if child is not None:
                    if child.is_alive() and len(pending) < PENDING_LIMIT and pending_bytes < PENDING_BYTES:
                        pending_bytes += compact(batch, pending, keep=keep)
                        continue
                    await self._drain_primer(child, pending)
                    child = None
                    pending = []
                self._process(batch, emit_checkpoints=emit_checkpoints, check_stale=False)
                await asyncio.sleep(0)  # deliveries start while the rest is read
            if child is not None:
                await self._drain_primer(child, pending)
                child = None
            self.publish(self.monitor.tick())
            self.read_seconds = time.perf_counter() - started
            self.history_read()
            await self.refresh.wait(grace)
            if self.alerts is not None:
                self.alerts.announce_held()
                self.alerts.due(self.alerts.clock())
                await self.alerts.flush(grace)
        finally:
            if child is not None:
                child.kill()
                child.join()
            await self.close_alerts(0.0)  # the grace was spent above; what is left stays in the outbox

    async def _drain_primer(self, child: Any, pending: list[Any]) -> None:
        """Wait for the child digesting the registry, then compare what was buffered meanwhile.
        When the buffer holds more than one digest (a drift or a change ahead), the digest under
        the other scheme that its comparison needs is made here while the child works."""
        if child.is_alive() and _digests_differ(pending):
            await asyncio.to_thread(self.stored.precompute_other)
        await asyncio.to_thread(child.join)
        self._process(pending, emit_checkpoints=False, check_stale=False)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.TICK)
            self.publish(self.monitor.tick())

    def stop(self) -> None:
        self._stop_requested = True
        if self._stop is not None:
            self._stop.set()
        if self.follower is not None:
            self.follower.stop()

    # -- after actions ------------------------------------------------------------------------

    def recheck(self, *, after_rehydrate: bool = False) -> None:
        """Compare the latest checkpoint again (after recompute or rehydrate) and publish."""
        self.publish(self.monitor.recheck(after_rehydrate=after_rehydrate))
