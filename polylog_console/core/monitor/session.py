"""The running monitor, shared by the console and the headless ``watch``.

A :class:`Session` owns the workspace's stored registry, the monitor and the audit log, follows
the feed and turns each batch of records into events that it hands, in order, to every
subscriber (the screen, the alert fan-out, the audit log, ``watch --json``). Data flows one way:
feed -> monitor -> events -> subscribers. Nothing here knows about Textual.

:meth:`Session.publish` is the single fan-out point. Before the subscribers, every batch goes to
the session's own consumers: the dashboard banners (:attr:`dashboard`), the metrics
(:attr:`metrics`, when enabled), the alert dispatcher (:attr:`alerts`: webhook, email,
Alertmanager through the durable outbox) and the automatic refresh (:attr:`refresh`). A
read-only session (observer mode) keeps the dashboard but sends nothing and refreshes nothing:
the outbox and the catalogs are workspace writes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from polylog_console.core.alerts.dashboard import Dashboard
from polylog_console.core.infra.audit import AuditLog, audit_record
from polylog_console.core.model.config import Config
from polylog_console.core.model.workspace import Workspace
from polylog_console.core.monitor.refresh import AutoRefresh
from polylog_console.core.monitor.rules import Monitor
from polylog_console.core.registry.stored import StoredRegistry

if TYPE_CHECKING:  # imported only when used: the console starts faster without them
    from polylog_console.core.alerts.dispatcher import AlertDispatcher
    from polylog_console.core.infra.metrics import Metrics

Subscriber = Callable[[list[Any]], None]


class Session:
    TICK = 1.0  # seconds between staleness checks (a timer, not a busy loop)
    PARITY_INTERVAL = 60.0  # seconds between replica parity checks for the metrics
    CLOSE_GRACE = 5.0  # seconds given to due alert deliveries when stopping; the rest stays in the outbox

    def __init__(self, ws: Workspace, config: Config, *, read_only: bool = False, actor: str | None = None,
                 clock: Callable[[], float] = time.time, alerts: AlertDispatcher | None = None,
                 dispatcher_options: dict[str, Any] | None = None) -> None:
        self.ws = ws
        self.config = config
        self.read_only = read_only or config.ui.read_only
        self.stored = StoredRegistry.for_workspace(ws, config.scheme)  # type: ignore[arg-type]
        self.monitor = Monitor(self.stored, config.monitor, ws, clock=clock)
        self.audit = AuditLog(ws.audit, actor)
        self.follower: Any = None
        self._subscribers: list[Subscriber] = []
        self._stop: asyncio.Event | None = None
        self._stop_requested = False  # stop() before run() has made its event: not lost
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

    # -- events ---------------------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> None:
        """``callback(events)`` for every batch of events, on the session's event loop."""
        self._subscribers.append(callback)

    def publish(self, events: list[Any]) -> None:
        if not events:
            return
        for event in events:
            record = audit_record(event)
            if record is not None:
                self.audit.append(record[0], **record[1])
        self.dashboard.apply(events)
        if self.metrics is not None:
            self.metrics.apply(events, self.monitor.snapshot())
        if self.alerts is not None:
            self.alerts.submit(events)
        self.refresh.submit(events)
        for callback in list(self._subscribers):
            callback(events)

    # -- alerts and metrics -------------------------------------------------------------------

    def enable_metrics(self, host: str | None = None, port: int | None = None) -> Metrics:
        """Keep Prometheus metrics for this session; serve them on ``host:port`` when given
        (raises ``OSError`` when the address cannot be bound)."""
        if self.metrics is None:
            from polylog_console.core.fleet.identity import workspace_info
            from polylog_console.core.infra.metrics import Metrics

            self.metrics = Metrics(workspace_info(self.config))
            self.metrics.view = self.monitor.snapshot()
            if self.alerts is not None:
                self.metrics.outbox_source = self.alerts.pending
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

    async def run(self) -> None:
        """Follow the feed until :meth:`stop`. The first batch is the feed's recent history."""
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
                self.publish(self.monitor.process(batch))
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
            self.follower.stop()
            await self.close_alerts()

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
