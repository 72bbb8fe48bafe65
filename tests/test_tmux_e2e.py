"""End-to-end in a real terminal: the installed ``polylog-console`` in tmux at 80x24.

Keys go in with ``send-keys``, the screen comes back with ``capture-pane -p``, and everything the
program writes to its terminal is recorded raw with ``pipe-pane`` (so the OSC 52 clipboard
sequence, wrapped for tmux passthrough, can be found in it). Each test uses a private tmux server
(``-L`` with a unique socket name, ``-f`` with a config file of its own), so it never touches a
user's tmux. Every wait polls the screen against a deadline; nothing sleeps for a fixed time.

Keys are looked up in the console's action registry (:mod:`polylog_console.core.model.actions`), never
hardcoded. Without tmux the tests skip, except under ``CI=true`` where they fail.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from polylog_console.demo.sample import checkpoint, write_workspace

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

COLUMNS, ROWS = 80, 24
EXIT_DEADLINE = 5.0  # killing the session must end the process within this many seconds


def _tmux_binary() -> str:
    path = shutil.which("tmux")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("tmux is required for the end-to-end tests in CI (install the tmux package)")
        pytest.skip("tmux is not installed")
    return path


def console_command() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m polylog_console``."""
    script = Path(sys.executable).parent / "polylog-console"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "polylog_console"]


def tmux_key(key: str) -> str:
    """A Textual key name from the action registry, as tmux ``send-keys`` spells it."""
    from textual.keys import key_to_character

    named = {"escape": "Escape", "enter": "Enter", "tab": "Tab", "space": "Space", "backspace": "BSpace",
             "up": "Up", "down": "Down", "left": "Left", "right": "Right", "pageup": "PPage", "pagedown": "NPage",
             "home": "Home", "end": "End"}
    *mods, last = key.split("+")
    if last in named:
        name = named[last]
    elif re.fullmatch(r"f\d{1,2}", last):
        name = last.upper()
    else:
        character = key_to_character(last)
        if character is None:
            raise ValueError(f"no tmux spelling for key {key!r}")
        name = character
    prefix = "".join({"ctrl": "C-", "alt": "M-", "meta": "M-", "shift": "S-"}[m] for m in mods)
    return prefix + name


def registry_key(action_id: str) -> str:
    """The default key of a console action, from the action registry (tmux spelling)."""
    from polylog_console.core.model.actions import BY_ID
    from polylog_console.ui.keymap import normalize_key

    key = normalize_key(BY_ID[action_id].key)
    assert key is not None, f"action {action_id} has no usable default key"
    return tmux_key(key)


class Terminal:
    """One program running in a private tmux server, at 80x24."""

    def __init__(self, tmux: str, directory: Path) -> None:
        self.tmux = tmux
        self.env = clean_env()  # the tmux server's environment, inherited by the program
        self.socket = f"polylog-e2e-{os.getpid()}-{secrets.token_hex(4)}"
        self.directory = directory
        self.raw = directory / "terminal-output.raw"
        self.conf = directory / "tmux.conf"
        self.conf.write_text(
            "set -g default-terminal screen-256color\n"
            "set -g history-limit 2000\n"
            "set -g remain-on-exit off\n"
            "set -g status off\n"  # the whole 80x24 is the program's
            "set -g escape-time 0\n",
            encoding="utf-8",
        )
        self.pid: int | None = None

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.tmux, "-L", self.socket, "-f", str(self.conf), *args], capture_output=True,
                              text=True, timeout=20, check=check, env=self.env)

    def start(self, command: list[str], cwd: Path | None = None) -> int:
        self._run("new-session", "-d", "-s", "main", "-x", str(COLUMNS), "-y", str(ROWS),
                  "-c", str(cwd or self.directory), "--", *command)
        self._run("pipe-pane", "-o", "-t", "main", f"cat >> '{self.raw}'")
        self.pid = int(self._run("display-message", "-p", "-t", "main", "#{pane_pid}").stdout.strip())
        return self.pid

    def screen(self) -> str:
        result = self._run("capture-pane", "-p", "-t", "main", check=False)
        return result.stdout

    def output(self) -> bytes:
        try:
            return self.raw.read_bytes()
        except FileNotFoundError:
            return b""

    def send(self, *keys: str) -> None:
        self._run("send-keys", "-t", "main", *keys)

    def wait_screen(self, predicate: Callable[[str], bool] | str, timeout: float = 20.0, what: str = "") -> str:
        """Poll the screen until ``predicate`` (or the substring) holds; fail with the last screen."""
        test = (lambda s: predicate in s) if isinstance(predicate, str) else predicate
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if test(screen):
                return screen
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what or predicate!r}; the screen was:\n{screen}")

    def wait_output(self, predicate: Callable[[bytes], bool], timeout: float = 20.0, what: str = "") -> bytes:
        deadline = time.monotonic() + timeout
        data = b""
        while time.monotonic() < deadline:
            data = self.output()
            if predicate(data):
                return data
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what} in the terminal output ({len(data)} bytes)")

    def kill_session(self) -> None:
        self._run("kill-session", "-t", "main", check=False)

    def close(self) -> None:
        self._run("kill-server", check=False)


def process_gone(pid: int) -> bool:
    """True when ``pid`` has exited (a zombie waiting for tmux to reap it counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def wait_gone(pid: int, timeout: float) -> float:
    """Seconds until ``pid`` exited; fails after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if process_gone(pid):
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"process {pid} still running {timeout:g} s after its tmux session was killed")


def clean_env() -> dict[str, str]:
    """The environment of the private tmux server and so of the program: no workspace or config
    leaking in from the caller, not nested in the caller's tmux, UTF-8."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("POLYLOG_", "TMUX")) and name not in ("NO_COLOR", "CI")}
    env.update({"PYTHONUNBUFFERED": "1", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"})
    return env


@pytest.fixture
def terminal(tmp_path: Path):
    term = Terminal(_tmux_binary(), tmp_path)
    try:
        yield term
    finally:
        term.close()


# --- the demo, headless, in a real terminal ---------------------------------------------------------------

def test_headless_demo_in_tmux_ends_and_cleans_up_when_the_session_is_killed(terminal: Terminal, tmp_path: Path):
    scratch = tmp_path / "scratch"
    pid = terminal.start([*console_command(), "demo", "--headless", "--speed", "2", "--workspace", str(scratch)])
    terminal.wait_screen("status      IN SYNC", what="the headless demo's first status")
    assert scratch.is_dir()
    terminal.kill_session()
    wait_gone(pid, EXIT_DEADLINE)
    # The demo's finally block ran: engine stopped, scratch workspace removed.
    deadline = time.monotonic() + EXIT_DEADLINE
    while scratch.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not scratch.exists()


# --- the console on a generated workspace -------------------------------------------------------------------

OSC52_TMUX = re.compile(rb"\x1bPtmux;\x1b\x1b\]52;c;([A-Za-z0-9+/=]*)\x07\x1b\\")


def action_title(action_id: str) -> str:
    from polylog_console.core.model.actions import BY_ID

    return BY_ID[action_id].title


def header(screen: str) -> str:
    return screen.splitlines()[0] if screen else ""


def test_console_in_tmux_shows_drift_runs_actions_copies_the_bundle_and_dies_with_its_session(
        terminal: Terminal, tmp_path: Path):
    root = tmp_path / "ws"
    incident = write_workspace(root, polyforms=200, checkpoints=20, drift_from=15)
    pid = terminal.start([*console_command(), "--workspace", str(root)])

    # Drift shown: the header's status badge and the banner with the alert code.
    screen = terminal.wait_screen(lambda s: "DRIFT" in header(s) and "registry_mismatch" in s, what="the drift")
    assert "checkpoint-0020" in screen
    lines = screen.splitlines()
    assert len(lines) <= ROWS and all(len(line) <= COLUMNS for line in lines)

    # A checkpoint appended by another process appears live.
    feed = root / "memory" / "coordination" / "context-brief.jsonl"
    record = checkpoint(21, incident.live_digest, time.time())
    with open(feed, "ab") as handle:
        handle.write(orjson.dumps(record) + b"\n")
    terminal.wait_screen("checkpoint-0021", what="the appended checkpoint")

    # An action: recompute the digest; its result appears and is audited.
    terminal.send(registry_key("recompute"))
    terminal.wait_screen(f"{action_title('recompute')}: finished", what="the recompute result")
    audit = [orjson.loads(line) for line in (root / "memory" / "audit" / "events.jsonl").read_bytes().splitlines()]
    assert any(event["event"] == "action_finished" and event.get("action") == "recompute" and event.get("actor")
               for event in audit)

    # The escalation bundle: written to a file and copied with OSC 52, wrapped for tmux passthrough.
    terminal.send(registry_key("bundle"))
    output = terminal.wait_output(lambda data: OSC52_TMUX.search(data) is not None, what="the OSC 52 sequence")
    assert b"\x1bPtmux;\x1b\x1b]52;c;" in output
    bundles = sorted((root / "memory" / "escalations").glob("*.md"))
    assert len(bundles) == 1
    copied = base64.b64decode(OSC52_TMUX.search(output).group(1)).decode("utf-8")
    assert copied == bundles[0].read_text(encoding="utf-8")
    terminal.wait_screen("copied the bundle", what="the bundle's clipboard notice")

    # Killing the tmux session (the terminal goes away) ends the console within 5 s.
    assert not process_gone(pid)
    terminal.kill_session()
    wait_gone(pid, EXIT_DEADLINE)


# --- the demo in the console ------------------------------------------------------------------------------

def test_demo_in_tmux_drifts_then_rehydrate_restores_parity(terminal: Terminal, tmp_path: Path):
    scratch = tmp_path / "scratch"
    pid = terminal.start([*console_command(), "demo", "--speed", "2", "--workspace", str(scratch)])
    terminal.wait_screen(lambda s: "IN SYNC" in header(s), what="the demo in sync")
    terminal.wait_screen(lambda s: "DRIFT" in header(s) and "registry_mismatch" in s, timeout=30,
                         what="the demo's drift")

    # Replica parity: the engine-fed replica is the drifted one.
    terminal.send(registry_key("replicas"))
    terminal.wait_screen("1 drift, 1 match", what="the replicas result")

    # Rehydrate (confirmed with the key the dialog shows): parity returns.
    terminal.send(registry_key("rehydrate"))
    dialog = terminal.wait_screen(lambda s: re.search(r"Yes \((\w)\)", s) is not None, what="the confirmation")
    terminal.send(re.search(r"Yes \((\w)\)", dialog).group(1))
    terminal.wait_screen(lambda s: "IN SYNC" in header(s), timeout=30, what="parity after the rehydrate")
    screen = terminal.wait_screen(f"{action_title('rehydrate')}: finished", what="the rehydrate result")
    # No phantom rows (issue 11: the re-compared latest checkpoint was shown twice, DRIFT and ✔).
    rows = re.findall(r"^\d\d:\d\d:\d\d (checkpoint-\d+)", screen, re.MULTILINE)
    assert rows and len(rows) == len(set(rows)), rows

    # Quit: the console closes, the engine and replicas stop and the scratch workspace goes.
    terminal.send(registry_key("quit"))
    wait_gone(pid, EXIT_DEADLINE)
    deadline = time.monotonic() + EXIT_DEADLINE
    while scratch.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not scratch.exists()


@pytest.mark.parametrize("how", ["kill-session", "SIGTERM"])
def test_demo_console_ended_from_outside_stops_and_removes_the_scratch_workspace(terminal: Terminal,
                                                                                 tmp_path: Path, how: str):
    scratch = tmp_path / "scratch"
    pid = terminal.start([*console_command(), "demo", "--workspace", str(scratch)])
    terminal.wait_screen(lambda s: "IN SYNC" in header(s), what="the demo in sync")
    assert (scratch / "monitoring.toml").exists()
    if how == "kill-session":
        terminal.kill_session()
    else:
        os.kill(pid, signal.SIGTERM)
    wait_gone(pid, EXIT_DEADLINE)
    deadline = time.monotonic() + EXIT_DEADLINE
    while scratch.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not scratch.exists()


def test_a_whole_triage_by_keyboard_only_in_tmux(terminal: Terminal, tmp_path: Path):
    """Issue 15: filter to the first drifting checkpoint, open it, read the diff, recompute, open the
    alert list, acknowledge and write the bundle: keys only, at 80x24."""
    root = tmp_path / "ws"
    write_workspace(root, polyforms=200, checkpoints=20, drift_from=15)
    pid = terminal.start([*console_command(), "--workspace", str(root)])
    terminal.wait_screen(lambda s: "DRIFT" in header(s) and "registry_mismatch" in s, what="the drift")

    terminal.send("/")  # the filter key (tmux has no spelling for Textual's "slash")
    terminal.wait_screen("filter Checkpoints", what="the filter box")
    terminal.send("match:no")
    terminal.wait_screen("filtered: 6 of 20", what="the live filter")
    terminal.send("Enter", "g", "Enter")  # keep the filter; the first match; open it
    screen = terminal.wait_screen("checkpoint-0015 (line", what="the first drifting checkpoint's JSON")
    assert '"registry_digest"' in screen
    terminal.send("Escape")  # close it (a key right after esc would be read as alt+key)
    terminal.wait_screen(lambda s: "esc close" not in s, what="the detail to close")
    terminal.send("2")  # the diff
    terminal.wait_screen(lambda s: "missing" in s and "mismatched" in s and "live state" in s, what="the diff")
    terminal.send(registry_key("recompute"))
    terminal.wait_screen("Recompute digest: finished", what="the recompute")
    terminal.send(registry_key("alerts"))
    terminal.wait_screen("Active alerts", what="the alert list")
    terminal.send("Escape")
    terminal.wait_screen(lambda s: "Active alerts" not in s, what="the alert list to close")
    terminal.send(registry_key("acknowledge"))
    terminal.wait_screen("acknowledged by", what="the acknowledgement")
    terminal.send(registry_key("bundle"))
    terminal.wait_screen("copied the bundle", what="the bundle")
    assert len(list((root / "memory" / "escalations").glob("*.md"))) == 1
    events = [orjson.loads(line)["event"] for line in (root / "memory" / "audit" / "events.jsonl").read_bytes()
              .splitlines()]
    assert "acknowledged" in events
    terminal.kill_session()
    wait_gone(pid, EXIT_DEADLINE)
