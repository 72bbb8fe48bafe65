"""The workspace lock: exclusive across processes, names its holder, waits, is cancellable, and is
released by the kernel when its holder is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from polylog_console.core.infra.lock import LockHeld, WorkspaceLock, current_holder, lock_path
from polylog_console.core.model.errors import PolylogError
from polylog_console.core.model.progress import Cancelled, Progress
from polylog_console.core.model.workspace import Workspace

HOLDER = textwrap.dedent("""
    import sys
    from polylog_console.core.infra.lock import WorkspaceLock
    from polylog_console.core.model.workspace import Workspace
    with WorkspaceLock(Workspace.open(sys.argv[1]), "test-holder", actor="alice@testhost"):
        print("locked", flush=True)
        sys.stdin.read()  # hold until the test closes our stdin (or kills us)
    print("released", flush=True)
""")


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace.open(tmp_path)


@pytest.fixture
def holder(ws):
    """A real process holding the workspace lock until its stdin is closed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(ws.root)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


def test_free_lock_has_no_holder_and_is_taken_and_released(ws):
    assert current_holder(ws) is None
    with WorkspaceLock(ws, "rehydrate", actor="bob@here") as lock:
        assert lock.held
        holder = current_holder(ws)
        assert holder == {"actor": "bob@here", "pid": os.getpid(), "host": holder["host"], "action": "rehydrate",
                          "since": holder["since"]}
        assert holder["since"].endswith("Z")
    assert current_holder(ws) is None
    assert lock_path(ws).exists() and lock_path(ws).read_bytes() == b""  # kept, and no stale name inside


def test_second_lock_in_another_process_fails_naming_the_holder(ws, holder):
    with pytest.raises(LockHeld) as info:
        WorkspaceLock(ws, "rehydrate").acquire()
    message = str(info.value)
    assert "alice@testhost" in message and f"pid {holder.pid}" in message and "test-holder" in message
    assert "since 20" in message
    assert info.value.holder["pid"] == holder.pid
    assert current_holder(ws)["action"] == "test-holder"


def test_two_locks_in_one_process_also_exclude_each_other(ws):
    with WorkspaceLock(ws, "first"), pytest.raises(LockHeld, match=f"pid {os.getpid()}, first"):
        WorkspaceLock(ws, "second").acquire()


def test_waiting_gets_the_lock_once_the_holder_releases_it(ws, holder):
    threading.Timer(0.3, holder.stdin.close).start()
    with WorkspaceLock(ws, "rehydrate", wait=60) as lock:
        assert lock.held and current_holder(ws)["pid"] == os.getpid()
    assert holder.wait(10) == 0 and holder.stdout.read().strip() == "released"


def test_waiting_gives_up_after_the_timeout_naming_the_holder(ws, holder):
    with pytest.raises(LockHeld, match=r"alice@testhost .* after waiting 0\.3s"):
        WorkspaceLock(ws, "rehydrate", wait=0.3).acquire()


def test_waiting_is_cancellable(ws, holder):
    progress = Progress()
    threading.Timer(0.2, progress.cancel).start()
    with pytest.raises(Cancelled):
        WorkspaceLock(ws, "rehydrate", wait=60, progress=progress).acquire()


def test_a_killed_holder_releases_the_lock(ws, holder):
    assert current_holder(ws)["pid"] == holder.pid
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(10)
    assert current_holder(ws) is None  # its name is still in the file, but nobody holds the lock
    with WorkspaceLock(ws, "rehydrate") as lock:
        assert lock.held


def test_lock_file_that_cannot_be_created_is_a_clear_error(ws):
    (ws.root / "memory").mkdir()
    (ws.root / "memory" / "locks").write_text("not a directory")
    with pytest.raises(PolylogError, match="cannot create the workspace lock"):
        WorkspaceLock(ws, "rehydrate").acquire()
