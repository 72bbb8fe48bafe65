"""Helpers for the console's Pilot tests (no tests here): apps on generated workspaces, the
rendered screen as text, waiting on conditions, and a real HTTP replica whose answer the test holds
back (so that an action is still running while the test looks at the screen)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from polylog_console.core.model.config import load_config
from polylog_console.core.model.workspace import Workspace
from polylog_console.demo.sample import INTERVAL, START, checkpoint, write_workspace
from polylog_console.ui.app import ConsoleApp

FIXED_NAME = "/srv/polylog/ws"


def frozen(at: float) -> Callable[[], float]:
    return lambda: at


def make_app(root: Path, *, clock: Callable[[], float] | None = None, **kwargs: Any) -> ConsoleApp:
    ws = Workspace.open(root)
    config = load_config(ws.root)
    kwargs.setdefault("workspace_name", FIXED_NAME)
    kwargs.setdefault("watch_terminal", False)
    return ConsoleApp(ws, config, clock=clock or time.time, **kwargs)


def screen_text(app: ConsoleApp) -> str:
    """The screen as the terminal would show it, one line per row (text only)."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def terminal_output(app: ConsoleApp) -> str:
    """Exactly what the app would write to the terminal for a full repaint (escape sequences included)."""
    return app.screen._compositor.render_full_update().render_segments(app.console)


async def wait_for(pilot: Any, predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)


async def start(pilot: Any) -> ConsoleApp:
    app = pilot.app
    await app.wait_ready()
    await pilot.pause(0.05)
    return app


def notifications(app: ConsoleApp) -> list[str]:
    return [f"{n.title}: {n.message}" for n in app._notifications]


def append(path: Path, lines: list[bytes]) -> None:
    with open(path, "ab") as handle:
        handle.write(b"".join(line + b"\n" for line in lines))


def checkpoint_lines(first: int, count: int, digest: str, start: float = START) -> list[bytes]:
    return [json.dumps(checkpoint(n, digest, start + (n - 1) * INTERVAL)).encode() for n in
            range(first, first + count)]


def in_sync_workspace(root: Path, checkpoints: int = 20, *, fresh: bool = False, **kwargs: Any):
    """All checkpoints match; ``fresh``: the last one was written a minute ago (not stale by the real clock)."""
    if fresh:
        kwargs["start"] = time.time() - checkpoints * INTERVAL
    return write_workspace(root, polyforms=200, checkpoints=checkpoints, drift_from=checkpoints + 1, **kwargs)


class GatedReplica:
    """A real HTTP replica on 127.0.0.1 that answers ``{"digest": ...}`` only once released."""

    def __init__(self, digest: str) -> None:
        self.digest = digest
        self.release = threading.Event()
        self.requests = 0
        self.started = threading.Event()
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                gate.requests += 1
                gate.started.set()
                gate.release.wait(60)
                body = json.dumps({"digest": gate.digest}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/registry"

    def __enter__(self) -> GatedReplica:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def gated_config(url: str) -> str:
    return f"""
[[replicas]]
name = "replica-http"
url = "{url}"
timeout = "60s"
retries = 0
"""


async def in_thread(fn: Callable[[], Any]) -> Any:
    return await asyncio.to_thread(fn)
