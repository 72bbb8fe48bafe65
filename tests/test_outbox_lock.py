"""The outbox lock and the memory bound of an outbox that cannot be written (issue 10, item 4),
in finer grain than the full-disk tests: a real second process holds the lock; a disk that takes
no byte is a real RLIMIT_FSIZE; an outbox under a regular file can never be created."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from polylog_console.core.alerts.delivery import Backoff
from polylog_console.core.alerts.dispatcher import AlertDispatcher
from polylog_console.core.alerts.outbox import Outbox, OutboxUnlockable
from polylog_console.core.alerts.webhook import WebhookSink
from polylog_console.core.infra.audit import AuditLog
from tests.servers import refused_url

REPO = Path(__file__).resolve().parents[1]

HOLD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from polylog_console.core.alerts.outbox import Outbox
    box = Outbox(Path(sys.argv[1]))
    assert box.acquire()
    print("held", flush=True)
    sys.stdin.read()
""")


def test_only_a_live_holder_keeps_the_outbox(tmp_path):
    root = tmp_path / "outbox"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(root)], cwd=REPO, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        mine = Outbox(root)
        assert mine.acquire() is False and mine.holder() == str(holder.pid)
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    assert mine.acquire() is True  # the holder is gone: its lock went with it
    assert mine.holder() == str(os.getpid())
    (root / ".lock").write_text("4194303999\n")  # a pid left by a dead holder (a live one could not rewrite it)
    assert Outbox(root).holder() is None
    mine.release()


NO_SPACE = textwrap.dedent("""
    import os, resource, sys
    from pathlib import Path
    from polylog_console.core.alerts.outbox import Outbox
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    box = Outbox(Path(sys.argv[1]))
    assert box.acquire() is True          # the lock is taken though its pid cannot be written
    assert box.write_holder() is not None  # ... and says why
    box.release()
    other = Outbox(Path(sys.argv[1]))
    assert other.acquire() is True        # nothing leaked: taken again at once
    print("ok")
""")


def test_a_disk_that_takes_no_byte_still_gives_the_lock_and_leaks_nothing(tmp_path):
    done = subprocess.run([sys.executable, "-c", NO_SPACE, str(tmp_path / "outbox")], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_a_lock_file_that_cannot_exist_means_nobody_holds_it(tmp_path):
    blocker = tmp_path / "memory"
    blocker.write_text("a file where a directory should be")
    with pytest.raises(OutboxUnlockable, match=r"cannot create \.lock"):
        Outbox(blocker / "outbox").acquire()


async def test_deliveries_held_in_memory_are_bounded_and_the_excess_is_audited(tmp_path, small_ws):
    """Nothing can be written and the sink is down: the dispatcher keeps delivering (it is the only
    one who can), holds at most 2 x max_pending per sink and says what it had to drop."""
    from polylog_console.core.model.workspace import Workspace
    from polylog_console.core.monitor.rules import Monitor
    from polylog_console.core.registry.stored import StoredRegistry
    from tests.servers import checkpoint_line, records

    blocker = tmp_path / "nowhere"
    blocker.write_text("not a directory")
    states: list = []
    audit = AuditLog(tmp_path / "audit.jsonl", "t@h")
    dispatcher = AlertDispatcher(blocker / "outbox", [WebhookSink(refused_url(), timeout=1)], workspace=str(tmp_path),
                                 runbook_url="u", audit=audit, emit=states.extend, max_pending=2,
                                 backoff=Backoff(base=30.0, cap=60.0), resolve_hold=3600.0)
    await dispatcher.start()
    assert not dispatcher.standby and dispatcher.unlocked and not dispatcher.writable
    ws = Workspace.open(small_ws.root)
    monitor = Monitor(StoredRegistry.for_workspace(ws), workspace=ws)
    for n in range(8):  # eight distinct drifts: eight firing alerts
        dispatcher.submit(monitor.process(records(checkpoint_line(n + 1, f"{n + 1:064x}"), first_line=n + 1)))
    worker = dispatcher.workers["webhook"]
    assert len(worker.queue) == 4 and worker.unsaved() == 4  # 2 x max_pending, all in memory
    await dispatcher.close(grace=0.0)
    events = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    lost = [e for e in events if e["event"] == "alert_lost"]
    assert len(lost) >= 4 and all("outbox unwritable" in e["error"] for e in lost)
    assert any(e["event"] == "alerts_lost" and e["deliveries"] == 4 for e in events)
    assert any(e["event"] == "alerts_outbox_unwritable" for e in events)
    assert [s.state for s in states if getattr(s, "event", None) == "outbox"] == ["unwritable"]
