"""``polylog-console watch`` (without --once) as a real subprocess: appended checkpoints appear as
they are written, SIGTERM/SIGINT stop it with exit 0, nothing from the feed reaches the terminal
raw, a missing stored registry does not stop it."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import Workspace

DIGEST = "0" * 64


class WatchProcess:
    """``polylog-console watch ...`` with its stdout read line by line in a thread."""

    def __init__(self, ws: Path, *args: str, reader: bool = True) -> None:
        env = {**os.environ, "NO_COLOR": "1"}
        env.pop("POLYLOG_WORKSPACE", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "polylog_console", "watch", "--workspace", str(ws), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        if reader:  # (without it, the test reads proc.stdout itself)
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put(raw.decode("utf-8"))
        self.lines.put(None)

    def next_line(self, timeout: float = 15.0) -> str:
        line = self.lines.get(timeout=timeout)
        if line is None:
            raise AssertionError(f"watch ended early: {self.proc.wait()} {self.proc.stderr.read().decode()}")
        self.seen.append(line)
        return line

    def until(self, predicate, timeout: float = 15.0) -> list[str]:
        """Lines up to and including the first one that satisfies ``predicate``."""
        out = []
        deadline = time.monotonic() + timeout
        while True:
            line = self.next_line(max(0.1, deadline - time.monotonic()))
            out.append(line)
            if predicate(line):
                return out

    def json_until(self, predicate, timeout: float = 15.0) -> list[dict]:
        return [json.loads(x) for x in self.until(lambda x: predicate(json.loads(x)), timeout)]

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 10.0) -> tuple[int, float, str]:
        started = time.monotonic()
        self.proc.send_signal(signum)
        code = self.proc.wait(timeout)
        elapsed = time.monotonic() - started
        return code, elapsed, self.proc.stderr.read().decode()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def watch():
    started: list[WatchProcess] = []

    def start(ws: Path, *args: str, reader: bool = True) -> WatchProcess:
        process = WatchProcess(ws, *args, reader=reader)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def checkpoint(label: str, digest: str = DIGEST) -> bytes:
    return json.dumps({"label": label, "registry_digest": digest, "timestamp": time.time()}).encode() + b"\n"


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as handle:
        handle.write(data)


@pytest.mark.parametrize("poll", [False, True], ids=["inotify", "poll"])
def test_watch_json_streams_appended_checkpoints_and_stops_on_sigterm(small_ws: Workspace, watch, poll: bool) -> None:
    process = watch(small_ws.root, "--json", *(["--poll"] if poll else []))
    start = process.json_until(lambda e: e["event"] == "feed" and e["kind"] == "started")
    history = [e for e in start if e["event"] == "checkpoint"]
    assert [e["label"] for e in history] == [f"checkpoint-{n:04d}" for n in range(1, 21)]
    assert history[-1]["status"] == "DRIFT" and start[-1]["mode"] == ("poll" if poll else "inotify")
    stored = small_ws.incident.stored_digest

    line = checkpoint("live-1", stored)
    append(small_ws.feed, line[:17])  # a checkpoint written in two pieces
    time.sleep(0.3)
    append(small_ws.feed, line[17:])
    got = process.json_until(lambda e: e["event"] == "checkpoint")
    cp = got[-1]
    assert cp["label"] == "live-1" and cp["registry_match"] is True and cp["status"] == "IN SYNC"
    assert cp["line"] == len(small_ws.feed.read_bytes().splitlines())
    assert any(e["event"] == "alert" and e["code"] == "registry_resolved" for e in got)

    append(small_ws.feed, checkpoint("live-2") + b"{not json\n")
    got = process.json_until(lambda e: e["event"] == "ingest_error")
    assert [e["event"] for e in got if e["event"] in ("checkpoint", "ingest_error")] == ["checkpoint", "ingest_error"]
    assert got[-1]["line"] == cp["line"] + 2 and got[-1]["reason"].startswith("invalid JSON")

    os.rename(small_ws.feed, small_ws.feed.with_suffix(".1"))  # rotation: reported, then the new file
    small_ws.feed.write_bytes(checkpoint("live-3", stored))
    got = process.json_until(lambda e: e["event"] == "checkpoint")
    assert [(e.get("kind"), e.get("label")) for e in got if e["event"] in ("feed", "checkpoint")] == [
        ("rotated", None), ("created", None), (None, "live-3")]
    assert got[-1]["line"] == 1

    code, elapsed, err = process.stop(signal.SIGTERM)
    assert code == 0 and err == ""
    assert elapsed < 8  # prompt (the alert fan-out may take its short grace)


def test_watch_human_output_is_safe_and_sigint_stops_it(small_ws: Workspace, watch) -> None:
    process = watch(small_ws.root)
    start = process.until(lambda x: " feed " in x and "following" in x)
    text = "".join(start)
    assert "history      20 recent checkpoints read; the last 10 follow" in text
    assert sum(x[10:].startswith("checkpoint ") for x in start) == 10
    assert "alert        registry_mismatch firing" in text
    append(small_ws.feed, checkpoint("evil-\x1b]52;c;cGF3bmVk\x07-\x1b[2J"))
    got = "".join(process.until(lambda x: "evil" in x))
    assert "\x1b" not in got and "\x07" not in got
    assert "evil-\\x1b]52;c;cGF3bmVk\\x07-\\x1b[2J" in got
    code, _elapsed, err = process.stop(signal.SIGINT)
    assert code == 0 and err == ""


def test_watch_keeps_running_without_a_stored_registry(small_ws: Workspace, watch) -> None:
    small_ws.registry.unlink()
    process = watch(small_ws.root, "--json")
    start = process.json_until(lambda e: e["event"] == "feed" and e["kind"] == "started")
    alerts = [e for e in start if e["event"] == "alert"]
    assert alerts[0]["code"] == "registry_provider_error" and alerts[0]["status"] == "firing"
    append(small_ws.feed, checkpoint("live-1"))
    cp = process.json_until(lambda e: e["event"] == "checkpoint")[-1]
    assert cp["label"] == "live-1" and cp["registry_match"] is None and cp["status"] == "NO DATA"
    code, _elapsed, err = process.stop()
    assert code == 0 and err == ""


def test_watch_waits_for_a_feed_that_does_not_exist_yet(small_ws: Workspace, watch) -> None:
    small_ws.feed.unlink()
    process = watch(small_ws.root, "--json")
    start = process.json_until(lambda e: e["event"] == "feed" and e["kind"] == "started")
    assert [e["kind"] for e in start if e["event"] == "feed"] == ["missing", "started"]
    small_ws.feed.write_bytes(checkpoint("first", small_ws.incident.stored_digest))
    got = process.json_until(lambda e: e["event"] == "checkpoint")
    assert [e.get("kind") for e in got if e["event"] == "feed"] == ["created"]
    assert got[-1]["label"] == "first" and got[-1]["line"] == 1 and got[-1]["registry_match"] is True
    code, _elapsed, _err = process.stop()
    assert code == 0


def test_watch_json_into_a_reader_that_goes_away_exits_quietly(small_ws: Workspace, watch) -> None:
    process = watch(small_ws.root, "--json", reader=False)
    while True:
        event = json.loads(process.proc.stdout.readline())
        if event["event"] == "feed" and event["kind"] == "started":
            break
    process.proc.stdout.close()  # like `watch --json | head -30`
    append(small_ws.feed, checkpoint("after-close"))
    code = process.proc.wait(15)
    assert code == 0
    assert process.proc.stderr.read().decode() == ""
