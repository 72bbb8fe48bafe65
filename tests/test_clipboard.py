"""Clipboard: the OSC 52 sequence (exact bytes, and through a real tmux), pyperclip's local
clipboard (absent on this machine; present through a stand-in ``xclip`` program on PATH)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from polylog_console.core.infra.clipboard import copy, copy_local, osc52_sequence

TEXT = "héllo\n"  # UTF-8: 68 c3 a9 6c 6c 6f 0a -> base64 aMOpbGxvCg==


def test_osc52_plain_exact_bytes():
    assert osc52_sequence(TEXT, tmux=False) == "\x1b]52;c;aMOpbGxvCg==\x07"
    assert osc52_sequence("", tmux=False) == "\x1b]52;c;\x07"


def test_osc52_tmux_passthrough_exact_bytes():
    # DCS "tmux;" + the sequence with every ESC doubled + ST
    assert osc52_sequence(TEXT, tmux=True) == "\x1bPtmux;\x1b\x1b]52;c;aMOpbGxvCg==\x07\x1b\\"


def test_osc52_follows_tmux_environment(monkeypatch):
    monkeypatch.setenv("TMUX", "/tmp/tmux-0/default,123,0")
    assert osc52_sequence(TEXT).startswith("\x1bPtmux;")
    assert osc52_sequence(TEXT, tmux=False) == "\x1b]52;c;aMOpbGxvCg==\x07"
    monkeypatch.delenv("TMUX")
    assert osc52_sequence(TEXT) == "\x1b]52;c;aMOpbGxvCg==\x07"


def test_osc52_payload_cannot_inject_escapes():
    evil = "\x1b]52;c;ZXZpbA==\x07\x1b[2J\x1bP+q\x1b\\"
    sequence = osc52_sequence(evil, tmux=False)
    assert sequence.count("\x1b") == 1 and sequence.count("\x07") == 1
    wrapped = osc52_sequence(evil, tmux=True)
    assert wrapped.count("\x1b") == 4  # DCS, the doubled ESC pair, ST


@pytest.fixture
def no_display(monkeypatch):
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "TMUX"):
        monkeypatch.delenv(name, raising=False)


def test_copy_local_without_a_clipboard_says_so(no_display):
    ok, message = copy_local("bundle text")
    assert ok is False
    assert message.startswith("no local clipboard on this machine")
    assert "nothing was copied" in message


def test_copy_without_terminal_reports_nothing_copied(no_display):
    assert copy("x") == [copy_local("x")[1], "no terminal to send OSC 52 to: the text was not copied"]


def test_copy_sends_osc52_to_the_terminal_when_there_is_no_local_clipboard(no_display):
    written: list[str] = []
    messages = copy(TEXT, write_terminal=written.append)
    assert written == [osc52_sequence(TEXT, tmux=False)]
    assert messages[0].startswith("no local clipboard")
    assert messages[1] == "sent 6 characters to the terminal's clipboard (OSC 52)"


def test_copy_reports_a_failing_terminal(no_display):
    def broken(_: str) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    assert copy("x", write_terminal=broken)[1] == "terminal clipboard (OSC 52) failed: Broken pipe"


def test_copy_local_uses_the_clipboard_tool_pyperclip_finds(monkeypatch, tmp_path):
    # No X server here, so a stand-in ``xclip`` on PATH records what pyperclip pipes into it:
    # pyperclip's own detection and subprocess call run for real.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    out = tmp_path / "clipboard.txt"
    tool = bin_dir / "xclip"
    tool.write_text(f'#!/bin/sh\ncat > "{out}"\n')
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    ok, message = copy_local("escalation ✓")
    assert ok is True
    assert message == "copied 12 characters to the local clipboard (xclip)"
    assert out.read_text(encoding="utf-8") == "escalation ✓"


# --- through a real tmux -------------------------------------------------------------------------

def _tmux() -> str:
    path = shutil.which("tmux")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("tmux is required under CI=true")
        pytest.skip("tmux not installed")
    return path


def _buffer(tmux: str, sock: str, deadline: float = 10.0) -> str | None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        shown = subprocess.run([tmux, "-S", sock, "show-buffer"], capture_output=True, text=True)
        if shown.returncode == 0:
            return shown.stdout
        time.sleep(0.1)
    return None


def _emitter(tmp: Path, text: str, tmux_flag: str) -> str:
    script = tmp / "emit.py"
    script.write_text(
        "import sys, time\n"
        "from polylog_console.core.infra.clipboard import osc52_sequence\n"
        "time.sleep(0.3)\n"
        f"sys.stdout.write(osc52_sequence({text!r}, tmux={tmux_flag}))\n"
        "sys.stdout.flush()\n"
        "time.sleep(5)\n", encoding="utf-8")
    return f"{sys.executable} {script}"


@pytest.mark.e2e
def test_osc52_sets_tmux_clipboard():
    """tmux with ``set-clipboard on`` takes OSC 52 from a pane into its paste buffer."""
    tmux = _tmux()
    tmp = Path(tempfile.mkdtemp(prefix="osc52-", dir="/tmp"))  # short: sockets have a path limit
    sock = str(tmp / "s")
    env = {k: v for k, v in os.environ.items() if k != "TMUX"}
    try:
        subprocess.run([tmux, "-S", sock, "-f", "/dev/null", "new-session", "-d", "sleep 30"], check=True, env=env)
        subprocess.run([tmux, "-S", sock, "set", "-s", "set-clipboard", "on"], check=True, env=env)
        subprocess.run([tmux, "-S", sock, "new-window", "-d", _emitter(tmp, "plain ✓ bundle", "False")],
                       check=True, env=env)
        assert _buffer(tmux, sock) == "plain ✓ bundle"
    finally:
        subprocess.run([tmux, "-S", sock, "kill-server"], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.e2e
def test_osc52_tmux_passthrough_reaches_the_outer_terminal():
    """The wrapped form, written inside an inner tmux (allow-passthrough on), comes out of it as a
    plain OSC 52 that the outer terminal (here: an outer tmux with set-clipboard on) receives."""
    tmux = _tmux()
    tmp = Path(tempfile.mkdtemp(prefix="osc52-", dir="/tmp"))
    outer, inner = str(tmp / "o"), str(tmp / "i")
    conf = tmp / "inner.conf"
    conf.write_text("set -g allow-passthrough on\nset -s set-clipboard off\n")
    env = {k: v for k, v in os.environ.items() if k != "TMUX"}
    try:
        subprocess.run([tmux, "-S", outer, "-f", "/dev/null", "new-session", "-d", "sleep 30"], check=True, env=env)
        subprocess.run([tmux, "-S", outer, "set", "-s", "set-clipboard", "on"], check=True, env=env)
        inner_cmd = f"{tmux} -S {inner} -f {conf} new-session '{_emitter(tmp, 'wrapped ✓ bundle', 'None')}'"
        subprocess.run([tmux, "-S", outer, "new-window", "-d", inner_cmd], check=True, env=env)
        assert _buffer(tmux, outer) == "wrapped ✓ bundle"
    finally:
        subprocess.run([tmux, "-S", inner, "kill-server"], capture_output=True)
        subprocess.run([tmux, "-S", outer, "kill-server"], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
