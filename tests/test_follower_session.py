"""The follower inside a real Session (as ``watch`` and the console run it)."""

from __future__ import annotations

import asyncio
import json
import threading

from polylog_console.core.model.config import load_config
from polylog_console.core.model.events import CheckpointEvent, FeedEvent
from polylog_console.core.model.workspace import Workspace
from polylog_console.core.monitor.session import Session
from tests.conftest import Workspace as SampleWorkspace


def session_for(ws: SampleWorkspace) -> Session:
    root = Workspace.open(ws.root)
    return Session(root, load_config(root.root))


async def test_a_stop_before_run_is_not_lost(small_ws: SampleWorkspace) -> None:
    """e.g. SIGTERM, or the console quitting, while the session is still starting."""
    session = session_for(small_ws)
    session.stop()
    await asyncio.wait_for(session.run(), 10)  # returns instead of following forever


async def test_session_follows_appends_and_stops_cleanly(small_ws: SampleWorkspace) -> None:
    session = session_for(small_ws)
    seen: list = []
    got = asyncio.Event()

    def subscriber(events: list) -> None:
        seen.extend(events)
        got.set()

    session.subscribe(subscriber)
    baseline = threading.active_count()
    task = asyncio.create_task(session.run())
    async with asyncio.timeout(15):
        while not any(isinstance(e, FeedEvent) and e.kind == "started" for e in seen):
            got.clear()
            await got.wait()
    history = [e for e in seen if isinstance(e, CheckpointEvent)]
    assert [e.checkpoint.line for e in history][-1] == len(small_ws.feed.read_bytes().splitlines())
    with open(small_ws.feed, "ab") as handle:
        handle.write(json.dumps({"label": "live", "registry_digest": small_ws.incident.stored_digest}).encode() + b"\n")
    async with asyncio.timeout(15):
        while not any(isinstance(e, CheckpointEvent) and e.checkpoint.label == "live" for e in seen):
            got.clear()
            await got.wait()
    live = next(e for e in seen if isinstance(e, CheckpointEvent) and e.checkpoint.label == "live")
    assert live.registry_match is True and live.latency_ms is not None and live.latency_ms >= 0
    assert list(session.follower.recent)[-1] is live.checkpoint
    session.stop()
    await asyncio.wait_for(task, 15)
    await asyncio.sleep(0.1)
    assert threading.active_count() <= baseline  # the follower's threads are gone
