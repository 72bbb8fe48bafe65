"""Issue 10, item 4: ``watch`` started on a full (or read-only) disk, a real process against a real
webhook receiver. The watcher that holds the outbox lock delivers, from memory while nothing can be
written; it says so once on stderr and in its metrics; it saves what is still pending as soon as
space returns, and what it audited meanwhile reaches the audit log then. "Another process
delivers" is said only when a live process holds the lock.

The disk is a small tmpfs filled to its last page (when this test may mount one) or, anywhere, a
``RLIMIT_FSIZE`` of 0 on the watcher (writes fail with EFBIG; raised again with prlimit). The feed
lives on another disk, as an engine's feed may: only the workspace's own writes are refused.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from polylog_console.demo.sample import write_workspace
from tests.fulldisk import FullDisk, can_mount
from tests.servers import Receiver, checkpoint_line, free_port, wait_until

SECRET = "disk-full-webhook-secret"
MODES = [pytest.param("tmpfs", marks=pytest.mark.skipif(not can_mount(), reason="cannot mount a tmpfs here")),
         "rlimit"]


class Watch:
    """A real ``polylog-console watch --json`` process; stdout events and stderr lines collected."""

    def __init__(self, root: Path, *, metrics_port: int | None = None, preexec=None) -> None:
        env = {**os.environ, "POLYLOG_WEBHOOK_SECRET": SECRET, "NO_COLOR": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        env.pop("POLYLOG_WORKSPACE", None)
        args = [sys.executable, "-m", "polylog_console", "watch", "--json", "--workspace", str(root)]
        if metrics_port is not None:
            args += ["--metrics", f"127.0.0.1:{metrics_port}"]
        self.port = metrics_port
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                     preexec_fn=preexec)
        self.events: list[dict] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._read, args=(self.proc.stdout, True), daemon=True),
                         threading.Thread(target=self._read, args=(self.proc.stderr, False), daemon=True)]
        for thread in self._threads:
            thread.start()

    def _read(self, stream, is_json: bool) -> None:
        for raw in stream:
            with self._lock:
                if is_json:
                    self.events.append(json.loads(raw))
                else:
                    self.errors.append(raw.decode("utf-8", "replace"))

    def stderr_lines(self) -> list[str]:
        with self._lock:
            return [line for chunk in self.errors for line in chunk.splitlines()]

    def has_event(self, **match) -> bool:
        with self._lock:
            return any(all(e.get(k) == v for k, v in match.items()) for e in self.events)

    def metric(self, name: str) -> str | None:
        try:
            text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return None
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return line.split()[-1]
        return None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(timeout=10)
        for thread in self._threads:
            thread.join(timeout=5)
        return code


def workspace_on(disk: FullDisk, tmp_path: Path, url: str) -> tuple[Path, Path]:
    """The small sample workspace on ``disk``, its feed on another disk. Returns (root, feed)."""
    root = disk.dir / "ws"
    write_workspace(root, polyforms=200, checkpoints=20, drift_from=15)
    feed = tmp_path / "feed" / "context-brief.jsonl"
    feed.parent.mkdir()
    source = root / "memory" / "coordination" / "context-brief.jsonl"
    feed.write_bytes(source.read_bytes())
    source.unlink()
    with open(root / "monitoring.toml", "a") as handle:
        handle.write(f'\n[webhook]\nurl = "{url}"\ntimeout = 2\n')
    text = (root / "monitoring.toml").read_text().replace("[feed]\n", f'[feed]\npath = "{feed}"\n', 1)
    (root / "monitoring.toml").write_text(text)
    return root, feed


def received(receiver: Receiver, digest: str) -> bool:
    return any(r.json.get("checkpoint", {}).get("registry_digest") == digest and r.json["code"] == "registry_mismatch"
               for r in receiver.accepted())


def append(feed: Path, n: int, digest: str) -> None:
    with open(feed, "ab") as handle:
        handle.write(checkpoint_line(n, digest) + b"\n")


def audit_records(root: Path) -> list[dict]:
    path = root / "memory" / "audit" / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def outbox_files(root: Path) -> list[Path]:
    return sorted((root / "memory" / "outbox" / "webhook").glob("*.json"))


@pytest.mark.parametrize("mode", MODES)
def test_watch_started_on_a_full_disk_delivers_and_saves_when_space_returns(tmp_path, mode):
    with FullDisk(tmp_path, mode) as disk, Receiver(secret=SECRET) as receiver:
        root, feed = workspace_on(disk, tmp_path, receiver.url)
        disk.fill()
        watch = Watch(root, metrics_port=free_port(), preexec=disk.preexec())
        try:
            # the alerts of the feed's history are delivered although nothing can be written
            receiver.wait_for(3, 30)
            assert wait_until(lambda: any("outbox" in line for line in watch.stderr_lines()), 10), watch.errors
            assert wait_until(lambda: watch.metric("polylog_outbox_writable") == "0.0", 10)
            # a new drift appended while the disk is still full: announced at once, from memory
            append(feed, 21, "a" * 64)
            assert wait_until(lambda: received(receiver, "a" * 64), 15)
            # the next one meets a receiver that is down: it waits in memory (no file can be written)
            receiver.default = 503
            append(feed, 22, "b" * 64)
            assert wait_until(lambda: watch.has_event(event="delivery", outcome="retry"), 15)
            assert outbox_files(root) == []
            # space returns: what is pending is saved in the outbox within seconds
            disk.free(watch.proc.pid)
            assert wait_until(lambda: any(json.loads(p.read_bytes())["notification"]["checkpoint"]["registry_digest"]
                                          == "b" * 64 for p in outbox_files(root)), 15)
            assert wait_until(lambda: watch.metric("polylog_outbox_writable") == "1.0", 10)
            # the receiver is back: delivered, and the outbox is drained
            receiver.default = 200
            assert wait_until(lambda: received(receiver, "b" * 64), 30)
            assert wait_until(lambda: outbox_files(root) == [], 10)
        finally:
            code = watch.stop()
        audit = audit_records(root)
    assert code == 0, watch.errors
    lines = watch.stderr_lines()
    unwritable = [line for line in lines if "cannot be written" in line]
    assert len(unwritable) == 1, lines
    assert "outbox" in unwritable[0] and "from memory" in unwritable[0]
    assert any("alert outbox" in line and "can be written again" in line for line in lines), lines
    assert len([line for line in lines if "audit log" in line and "kept in memory" in line]) == 1, lines
    assert any("audit log" in line and "can be written again" in line for line in lines), lines
    assert not any("Traceback" in line for line in lines), lines
    events = [r["event"] for r in audit]
    assert "alerts_standby" not in events, events
    # what was audited while the disk was full reached the log once space returned
    delivered = [r for r in audit if r["event"] == "alert_delivered"]
    assert len(delivered) >= 5, events
    assert "alerts_outbox_unwritable" in events and "alerts_outbox_writable" in events
    assert all(SECRET not in json.dumps(r) for r in audit)


@pytest.mark.parametrize("mode", MODES)
def test_a_disk_that_fills_while_watch_runs(tmp_path, mode):
    """The neighbour of the start-up case: the disk fills under a running watcher."""
    with FullDisk(tmp_path, mode) as disk, Receiver(secret=SECRET) as receiver:
        root, feed = workspace_on(disk, tmp_path, receiver.url)
        watch = Watch(root)
        try:
            receiver.wait_for(3, 30)
            assert wait_until(lambda: (root / "memory" / "outbox" / "groups.json").exists(), 10)
            disk.fill_running(watch.proc.pid)
            receiver.default = 503
            append(feed, 21, "e" * 64)
            assert wait_until(lambda: any("cannot be written" in line for line in watch.stderr_lines()), 15), \
                watch.errors
            assert wait_until(lambda: watch.has_event(event="delivery", outcome="retry"), 15)
            disk.free(watch.proc.pid)
            assert wait_until(lambda: any("alert outbox" in line and "can be written again" in line
                                          for line in watch.stderr_lines()), 15), watch.errors
            assert outbox_files(root)  # what waited in memory is in the outbox now
            receiver.default = 200
            assert wait_until(lambda: received(receiver, "e" * 64), 30)
            assert wait_until(lambda: outbox_files(root) == [], 10)
        finally:
            code = watch.stop()
        events = [r["event"] for r in audit_records(root)]
    assert code == 0, watch.errors
    assert "alerts_standby" not in events and "alerts_outbox_writable" in events


@pytest.mark.skipif(not can_mount(), reason="cannot mount a tmpfs here")
def test_watch_on_a_read_only_disk_delivers_and_saves_once_writable(tmp_path):
    """No lock file can even be created (a read-only file system): no other process can hold the
    outbox, so this watcher delivers, and takes the lock once the disk is writable again."""
    with FullDisk(tmp_path, "tmpfs") as disk, Receiver(secret=SECRET) as receiver:
        root, feed = workspace_on(disk, tmp_path, receiver.url)
        disk.read_only()
        watch = Watch(root)
        try:
            receiver.wait_for(3, 30)
            assert wait_until(lambda: any("cannot be written" in line for line in watch.stderr_lines()), 10)
            receiver.default = 503
            append(feed, 21, "c" * 64)
            assert wait_until(lambda: watch.has_event(event="delivery", outcome="retry"), 15)
            disk.read_only(False)
            assert wait_until(lambda: len(outbox_files(root)) >= 1, 15)
            assert (root / "memory" / "outbox" / ".lock").read_text().strip() == str(watch.proc.pid)
            receiver.default = 200
            assert wait_until(lambda: received(receiver, "c" * 64), 30)
        finally:
            code = watch.stop()
        events = [r["event"] for r in audit_records(root)]
    assert code == 0, watch.errors
    assert "alerts_standby" not in events
    assert "alert_delivered" in events  # audited while read-only, written once writable


@pytest.mark.parametrize("mode", MODES)
def test_a_second_watcher_stands_by_only_for_a_live_holder(tmp_path, mode):
    """Two watchers on a full disk: the first holds the lock (it could not even write its pid), so
    the second stands by, saying so; once the first is gone, the second delivers."""
    with FullDisk(tmp_path, mode) as disk, Receiver(secret=SECRET) as receiver:
        root, feed = workspace_on(disk, tmp_path, receiver.url)
        disk.fill()
        first = Watch(root, preexec=disk.preexec())
        second = None
        try:
            receiver.wait_for(3, 30)
            second = Watch(root, preexec=disk.preexec())
            assert wait_until(lambda: any("another running process" in line for line in second.stderr_lines()), 15), \
                second.errors
            time.sleep(0.5)
            assert len(receiver.requests) == 3  # the standby watcher announced nothing
            first.proc.kill()
            first.proc.wait(timeout=10)
            append(feed, 21, "d" * 64)
            assert wait_until(lambda: received(receiver, "d" * 64), 30)
        finally:
            first.stop()
            code = second.stop() if second is not None else 0
    assert code == 0


def test_the_console_activity_log_shows_the_outbox_state():
    from polylog_console.core.alerts.delivery import OutboxStateEvent
    from polylog_console.core.monitor.activity import describe

    full = describe(OutboxStateEvent("unwritable", "memory/outbox", error="No space left on device", at=5.0))
    assert full is not None and full.level == "error" and "cannot be written" in full.message
    back = describe(OutboxStateEvent("writable", "memory/outbox", saved=2, at=6.0))
    assert back is not None and back.level == "info" and "2 pending deliveries saved" in back.message
    standby = describe(OutboxStateEvent("standby", "memory/outbox", holder_pid="42", at=7.0))
    assert standby is not None and standby.level == "warning" and "pid 42" in standby.message
