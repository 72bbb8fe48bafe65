"""The console in a real terminal (a pty): first paint, nothing hostile reaches the terminal, and it
ends when the terminal goes away (SSH drop: the pty's other end closes, SIGHUP)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time

import pytest

from polylog_console.demo.sample import INTERVAL, START, checkpoint, write_workspace
from polylog_console.ui.terminal import EXIT_HANGUP, HangupWatch
from tests.test_ui_support import append


class Console:
    """``python -m polylog_console`` on a pty of the given size."""

    def __init__(self, root, cols: int = 80, rows: int = 24, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("POLYLOG_", "TEXTUAL"))}
        env.update(TERM="xterm-256color", COLUMNS=str(cols), LINES=str(rows))
        env.pop("NO_COLOR", None)
        argv = [sys.executable, "-m", "polylog_console", "--workspace", str(root), *args]
        pid, fd = pty.fork()
        if pid == 0:  # the child: size the terminal, then become the console
            try:
                fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
                os.execve(sys.executable, argv, env)
            finally:
                os._exit(127)
        self.pid = pid
        self.fd: int | None = fd
        self.output = b""
        self.status: int | None = None

    def read_until(self, needle: bytes, timeout: float = 30.0) -> bytes:
        deadline = time.monotonic() + timeout
        while needle not in self.output:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{needle!r} not shown; output tail: {self.output[-400:]!r}")
            ready, _, _ = select.select([self.fd], [], [], min(left, 0.5))
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"the console ended before showing {needle!r}: {self.output[-400:]!r}")
                self.output += chunk
        return self.output

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:
                    return
                if not chunk:
                    return
                self.output += chunk

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def hang_up(self) -> None:
        """What an SSH drop does to the pty: its other end closes."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None after ``timeout``. Keeps reading the output meanwhile, as a real
        terminal does: a full pty buffer would block the console's writer and its exit."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                return self.status
            if self.fd is not None:
                self.drain(0.05)
            else:
                time.sleep(0.05)
        return None

    def close(self) -> None:
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.wait(5)
        self.hang_up()


@pytest.fixture
def hostile_ws(tmp_path):
    root = tmp_path / "ws"
    incident = write_workspace(root, polyforms=200, checkpoints=20, drift_from=15)
    record = checkpoint(21, incident.live_digest, START + 20 * INTERVAL)
    record["label"] = "\x1b]52;c;QUFBQQ==\x07"
    append(root / "memory" / "coordination" / "context-brief.jsonl", [json.dumps(record).encode()])
    return root


def test_real_terminal_paints_safely_and_ends_when_the_terminal_drops(hostile_ws):
    console = Console(hostile_ws)
    try:
        console.read_until(b"DRIFT")
        console.read_until(b"\\x1b]52;c;")  # the hostile label, shown as text
        console.drain(0.5)
        assert b"\x1b]52" not in console.output  # ...and never sent as an escape sequence
        # The only OSC sequences are Textual's own (22: the mouse pointer shape).
        assert set(re.findall(rb"\x1b\]([0-9]+);", console.output)) <= {b"22"}
        console.hang_up()
        started = time.monotonic()
        code = console.wait(5.0)
        assert code is not None, "the console did not end within 5 s of its terminal going away"
        assert time.monotonic() - started < 5.0
    finally:
        console.close()


def test_sighup_ends_the_console_cleanly(hostile_ws):
    console = Console(hostile_ws)
    try:
        console.read_until(b"DRIFT")
        os.kill(console.pid, signal.SIGHUP)
        console.drain(0.5)
        assert console.wait(5.0) == EXIT_HANGUP
        # The terminal was given back: alternate screen left, cursor shown.
        assert b"\x1b[?1049l" in console.output
    finally:
        console.close()


def test_quit_key_in_a_real_terminal(hostile_ws):
    console = Console(hostile_ws)
    try:
        console.read_until(b"DRIFT")
        console.send(b"q")
        assert console.wait(10.0) == 0
    finally:
        console.close()


def test_hangup_watch_sees_the_other_end_close_without_polling():
    master, slave = os.openpty()
    fired = threading.Event()
    reasons: list[str] = []

    def on_hangup(reason: str) -> None:
        reasons.append(reason)
        fired.set()

    watch = HangupWatch(on_hangup, fds=[slave], hard_exit=False)
    watch.start()
    try:
        assert not fired.wait(0.3)  # a live terminal: nothing happens
        watch.check()
        assert not fired.is_set()
        os.close(master)
        assert fired.wait(5.0)
        assert reasons == ["terminal hung up"]
    finally:
        watch.stop()
        os.close(slave)


def test_cli_options_reach_the_console(hostile_ws):
    console = Console(hostile_ws, 100, 30, "--read-only", "--theme", "high-contrast")
    try:
        console.read_until(b"READ-ONLY")
        console.read_until(b"DRIFT")
        console.send(b"r")  # rehydrate is not bound in read-only mode: nothing asks for confirmation
        console.drain(0.5)
        assert b"Continue?" not in console.output
        console.send(b"q")
        assert console.wait(10.0) == 0
    finally:
        console.close()


def test_console_refuses_to_run_without_a_terminal(hostile_ws, cli):
    result = cli("--workspace", str(hostile_ws))
    assert result.code == 2
    assert "needs a terminal" in result.err


HARD_EXIT_CHILD = """
import sys, time
from pathlib import Path
from polylog_console.ui.terminal import HangupWatch, before_hard_exit

watch = HangupWatch(lambda reason: None, grace=0.2, fds=[])  # a graceful exit that never comes
with before_hard_exit(lambda: Path(sys.argv[1]).write_text("cleaned")):
    watch.fire("test")
    time.sleep(10)
"""


def test_a_hard_exit_after_a_hangup_still_runs_registered_clean_up(tmp_path):
    marker = tmp_path / "marker"
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", HARD_EXIT_CHILD, str(marker)], timeout=30)
    assert proc.returncode == EXIT_HANGUP and time.monotonic() - started < 5
    assert marker.read_text() == "cleaned"
