"""The running monitor, shared by the console and the headless ``watch``.

A :class:`Session` owns the workspace's stored registry, the monitor and the audit log, follows
the feed and turns each batch of records into events that it hands, in order, to every
subscriber (the screen, the alert fan-out, the audit log, ``watch --json``). Data flows one way:
feed -> monitor -> events -> subscribers. Nothing here knows about Textual.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from polylog_console.core.audit import AuditLog, audit_record
from polylog_console.core.config import Config
from polylog_console.core.monitor import Monitor
from polylog_console.core.registry import StoredRegistry
from polylog_console.core.workspace import Workspace

Subscriber = Callable[[list[Any]], None]


class Session:
    TICK = 1.0  # seconds between staleness checks (a timer, not a busy loop)

    def __init__(self, ws: Workspace, config: Config, *, read_only: bool = False, actor: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.ws = ws
        self.config = config
        self.read_only = read_only or config.ui.read_only
        self.stored = StoredRegistry.for_workspace(ws, config.scheme)  # type: ignore[arg-type]
        self.monitor = Monitor(self.stored, config.monitor, ws, clock=clock)
        self.audit = AuditLog(ws.audit, actor)
        self.follower: Any = None
        self._subscribers: list[Subscriber] = []
        self._stop: asyncio.Event | None = None

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
        for callback in list(self._subscribers):
            callback(events)

    # -- running ----------------------------------------------------------------------------

    def make_follower(self) -> Any:
        from polylog_console.core.follower import FeedFollower

        feed = self.config.feed
        return FeedFollower(feed.path, poll=feed.poll, poll_interval=feed.poll_interval, history=feed.history)

    async def run(self) -> None:
        """Follow the feed until :meth:`stop`. The first batch is the feed's recent history."""
        self._stop = asyncio.Event()
        self.follower = self.make_follower()
        ticker = asyncio.create_task(self._tick())
        stopper = asyncio.create_task(self._stop.wait())
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
        finally:
            ticker.cancel()
            stopper.cancel()
            self.follower.stop()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.TICK)
            self.publish(self.monitor.tick())

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self.follower is not None:
            self.follower.stop()

    # -- after actions ------------------------------------------------------------------------

    def recheck(self, *, after_rehydrate: bool = False) -> None:
        """Compare the latest checkpoint again (after recompute or rehydrate) and publish."""
        self.publish(self.monitor.recheck(after_rehydrate=after_rehydrate))
