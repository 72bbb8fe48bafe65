"""The notification shim (core/feed/backends.py): the only user of watchfiles' private binding.
It works with the installed (pinned) watchfiles, and a binding that is missing or changed makes
the follower poll and say why, never fail."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

import polylog_console.core.feed.backends as backends
from polylog_console.core.feed.backends import BackendUnavailable, open_notifier
from polylog_console.core.feed.follower import FeedFollower
from polylog_console.core.model.events import FeedEvent


class Flag:
    def __init__(self) -> None:
        self.set = False

    def is_set(self) -> bool:
        return self.set


def test_the_installed_watchfiles_is_the_pinned_one():
    import tomllib

    import watchfiles

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    [spec] = [d for d in deps if d.startswith("watchfiles")]
    assert spec == "watchfiles>=1.3,<1.4" and watchfiles.__version__.startswith("1.3.")
    assert backends.TESTED == "watchfiles 1.3"


def test_notifier_reports_a_change_in_the_watched_directory(tmp_path):
    notifier = open_notifier([str(tmp_path)])
    try:
        assert notifier.wait(10, 1, 50, Flag()) == "timeout"
        threading.Timer(0.05, (tmp_path / "feed.jsonl").write_bytes, args=(b"{}\n",)).start()
        changes = notifier.wait(10, 1, 5000, Flag())
        assert isinstance(changes, set) and str(tmp_path / "feed.jsonl") in {path for _, path in changes}
        stop = Flag()
        stop.set = True
        assert notifier.wait(10, 1, 5000, stop) == "stop"
    finally:
        notifier.close()
        notifier.close()  # idempotent


def test_notifier_refuses_a_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        open_notifier([str(tmp_path / "absent")])


def test_a_changed_binding_is_reported_as_unavailable(monkeypatch, tmp_path):
    class Changed:
        def __init__(self, paths, debug):  # a future signature
            pass

    monkeypatch.setattr(backends, "_binding", lambda: Changed)
    with pytest.raises(BackendUnavailable, match=r"tested with watchfiles 1\.3"):
        open_notifier([str(tmp_path)])

    def missing():
        raise BackendUnavailable("watchfiles binding not found (No module named 'watchfiles._rust_notify')")

    monkeypatch.setattr(backends, "_binding", missing)
    with pytest.raises(BackendUnavailable, match="not found"):
        open_notifier([str(tmp_path)])


async def test_follower_polls_when_the_binding_is_unusable(monkeypatch, tmp_path):
    def missing():
        raise BackendUnavailable("watchfiles binding not found")

    monkeypatch.setattr(backends, "_binding", missing)
    feed = tmp_path / "feed.jsonl"
    feed.write_bytes(b'{"registry_digest":"' + b"a" * 64 + b'"}\n')
    follower = FeedFollower(feed, poll_interval=0.05)
    events: list[FeedEvent] = []
    checkpoints = 0

    async def consume():
        nonlocal checkpoints
        async for batch in follower:
            events.extend(r for r in batch if isinstance(r, FeedEvent))
            checkpoints += sum(1 for r in batch if getattr(r, "kind", "") == "checkpoint")
            if checkpoints == 2:
                return

    task = asyncio.create_task(consume())
    deadline = time.monotonic() + 10
    while not any(e.kind == "mode" for e in events) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    with open(feed, "ab") as handle:
        handle.write(b'{"registry_digest":"' + b"b" * 64 + b'"}\n')
    await asyncio.wait_for(task, 10)
    mode = [e for e in events if e.kind == "mode"]
    assert mode and mode[0].data["mode"] == "poll" and "binding not found" in mode[0].detail
    assert follower.mode == "poll"
