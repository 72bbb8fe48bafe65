"""The console's runbook actions on a realistic source (issue 11: validate and rehydrate failed in
the console for every source big enough to use worker processes, because Textual's captured
stderr has no file descriptor and multiprocessing passed its ``-1`` on)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from polylog_console.demo.sample import write_workspace
from polylog_console.ui.screens.confirm import ConfirmScreen
from tests.test_ui_actions import audit_events
from tests.test_ui_support import make_app, start, wait_for

BIG = 250_000


@pytest.fixture(scope="module")
def big_ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("big") / "ws"
    write_workspace(root, polyforms=BIG)
    return root


def test_pool_starts_when_stderr_has_no_descriptor(tmp_path):
    """A fresh process whose sys.stderr reports fileno() == -1 (as Textual's capture does) runs a
    worker pool: the helper processes are started without that descriptor."""
    script = tmp_path / "pool.py"
    script.write_text(textwrap.dedent("""
        import io, sys

        class Capture(io.TextIOBase):
            def write(self, s):
                return sys.__stderr__.write(s)
            def fileno(self):
                return -1

        def count(chunk, first_line):
            return chunk.count(b"\\n")

        if __name__ == "__main__":
            sys.stderr = Capture()
            from polylog_console.core.runbook.validate import run_chunks
            data = b"".join(b"%d\\n" % i for i in range(50_000))
            out = run_chunks(data, count, workers=2, chunk_size=64 << 10)
            assert len(out) > 1 and sum(out) == 50_000, out
            assert isinstance(sys.stderr, Capture)
            print("ok", len(out))
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok ")


@pytest.mark.slow
async def test_validate_and_rehydrate_a_250k_source_in_the_console(big_ws):
    assert (big_ws / "stable_polyforms.jsonl").stat().st_size > 2 << 20
    app = make_app(big_ws)
    async with app.run_test(size=(160, 48)) as pilot:
        await start(pilot)
        await pilot.press("v")
        done = await wait_for(pilot, lambda: [f for f in app.runner.history if f.action_id == "validate"],
                              timeout=120, what="validate")
        assert done[-1].phase == "finished", done[-1].message
        assert f"VALID, {BIG:,} polyforms" in done[-1].message
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        await pilot.press("y")
        done = await wait_for(pilot, lambda: [f for f in app.runner.history if f.action_id == "rehydrate"],
                              timeout=180, what="rehydrate")
        assert done[-1].phase == "finished", done[-1].message
        assert f"{BIG:,} polyforms" in done[-1].message
    events = [(e["event"], e.get("action")) for e in audit_events(big_ws)
              if e.get("action") in ("validate", "rehydrate")]
    assert events == [("action_started", "validate"), ("action_finished", "validate"),
                      ("action_started", "rehydrate"), ("action_finished", "rehydrate")]


async def test_a_failing_rehydrate_closes_its_audit_record(small_ws, monkeypatch):
    """Whatever goes wrong inside rehydrate, the audit log closes the action_started it wrote."""
    from polylog_console.core.runbook import rehydrate as module

    def broken(*args, **kwargs):
        raise ValueError("bad value(s) in fds_to_keep")

    monkeypatch.setattr(module, "_build_and_swap", broken)
    app = make_app(small_ws.root)
    async with app.run_test(size=(160, 48)) as pilot:
        await start(pilot)
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        await pilot.press("y")
        done = await wait_for(pilot, lambda: [f for f in app.runner.history if f.action_id == "rehydrate"],
                              what="rehydrate")
        assert done[-1].phase == "failed"
        assert "ValueError" in done[-1].message
    events = [e["event"] for e in audit_events(small_ws.root) if e.get("action") == "rehydrate"]
    assert events == ["action_started", "action_failed"]
