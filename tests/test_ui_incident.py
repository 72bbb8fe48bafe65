"""Issue 11 in the console: no phantom rows, parity tied to its stored digest, the incident's real
start in the banner, and the console state bugs (tabs, palette, Enter on any row, read-only
feedback, acknowledging without an audit log, the wheel and following, the escalated banner's
next step, the clipboard inside tmux)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest
from textual import events
from textual.command import CommandPalette

from polylog_console.core.infra.audit import read_tail
from polylog_console.ui.screens.confirm import ConfirmScreen
from polylog_console.ui.screens.detail import DetailScreen
from polylog_console.ui.widgets.banner import AlertBanner
from polylog_console.ui.widgets.checkpoints import CheckpointTable
from polylog_console.ui.widgets.replicas import ReplicaTable
from tests.test_ui_support import append, checkpoint_lines, make_app, notifications, screen_text, start, wait_for


def audit(root):
    return list(read_tail(root / "memory" / "audit" / "events.jsonl", 1000))


async def finished(pilot, action_id, count=1, timeout=60):
    app = pilot.app
    return (await wait_for(pilot, lambda: len([f for f in app.runner.history if f.action_id == action_id]) >= count
                           and [f for f in app.runner.history if f.action_id == action_id], timeout=timeout,
                           what=f"{action_id} to finish"))[-1]


# -- phantom rows ------------------------------------------------------------------------------------------

async def test_recompute_and_rehydrate_add_no_rows_and_update_the_latest(small_ws):
    app = make_app(small_ws.root)
    async with app.run_test(size=(160, 48)) as pilot:
        await start(pilot)
        rows = len(app.timeline)
        assert rows == 20
        labels = [app.timeline.row(app.timeline.first_seq + i).checkpoint.display_label for i in range(rows)]
        await pilot.press("d")
        await finished(pilot, "recompute")
        await pilot.press("d")
        await finished(pilot, "recompute", 2)
        await pilot.pause(0.3)
        assert len(app.timeline) == rows
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        await pilot.press("y")
        done = await finished(pilot, "rehydrate")
        assert done.phase == "finished", done.message
        await pilot.pause(0.3)
        assert len(app.timeline) == rows
        assert [app.timeline.row(app.timeline.first_seq + i).checkpoint.display_label
                for i in range(rows)] == labels
        assert app.query_one(CheckpointTable).row_count() == rows


async def test_a_fixed_drift_updates_the_latest_row_in_place(small_ws):
    """A rehydrate that restores parity: the same row turns ✔ (the demo showed it twice, DRIFT and ✔)."""
    app = make_app(small_ws.root)
    async with app.run_test(size=(160, 48)) as pilot:
        await start(pilot)
        latest = app.timeline.latest
        assert latest.match is False
        # the stored registry becomes what the live checkpoints carry, as a rehydrate would make it
        stored = json.loads(small_ws.registry.read_text())
        stored["digest"] = latest.checkpoint.digest
        stored["state"] = small_ws.incident.live_state
        small_ws.registry.write_text(json.dumps(stored))
        app.session.recheck(after_rehydrate=True)
        await wait_for(pilot, lambda: app.timeline.latest.match is True, what="the row to turn ✔")
        assert len(app.timeline) == 20
        assert app.timeline.latest.checkpoint is latest.checkpoint


async def test_truncation_and_rotation_start_the_table_over(small_ws):
    app = make_app(small_ws.root)
    feed = small_ws.feed
    digest = small_ws.incident.live_digest
    async with app.run_test(size=(160, 48)) as pilot:
        await start(pilot)
        assert len(app.timeline) == 20
        feed.write_bytes(b"".join(line + b"\n" for line in checkpoint_lines(101, 3, digest)))  # truncated
        await wait_for(pilot, lambda: [app.timeline.row(app.timeline.first_seq + i).checkpoint.display_label
                                       for i in range(len(app.timeline))] ==
                       ["checkpoint-0101", "checkpoint-0102", "checkpoint-0103"], what="the truncated feed's rows")
        assert app.query_one(CheckpointTable).row_count() == 3
        os.rename(feed, feed.with_suffix(".1"))  # rotated
        append(feed, checkpoint_lines(201, 2, digest))
        await wait_for(pilot, lambda: [app.timeline.row(app.timeline.first_seq + i).checkpoint.display_label
                                       for i in range(len(app.timeline))] == ["checkpoint-0201", "checkpoint-0202"],
                       what="the rotated feed's rows")
        assert app.query_one(CheckpointTable).row_count() == 2
        assert "checkpoint-0101" not in screen_text(app)


# -- parity belongs to a stored digest ----------------------------------------------------------------------

async def test_parity_is_shown_stale_and_rechecked_when_the_stored_digest_changes(sample_ws):
    app = make_app(sample_ws.root)
    async with app.run_test(size=(160, 48)) as pilot:
        await start(pilot)
        await pilot.press("p")
        await finished(pilot, "replicas")
        table = app.query_one(ReplicaTable)
        assert [(r.name, r.status) for r in table.results] == [("replica-eu", "match"), ("replica-us", "drift")]
        old = app.parity.stored_digest
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        await pilot.press("y")
        await finished(pilot, "rehydrate")
        await wait_for(pilot, lambda: table.stale or app.parity.stored_digest != old, what="stale parity")
        report = await finished(pilot, "replicas", 2)  # re-checked by itself
        assert report.phase == "finished"
        assert app.parity.stored_digest != old and app.parity.stored_digest == app.session.stored.peek().digest
        assert table.stale is None
        assert all(r.status != "match" for r in table.results)  # neither matches the new stored digest
        assert "✔ match" not in screen_text(app)


async def test_stale_parity_is_marked_on_screen(sample_ws):
    from polylog_console.core.runbook.replicas import ParityReport

    app = make_app(sample_ws.root)
    async with app.run_test(size=(160, 48)) as pilot:
        await start(pilot)
        await pilot.press("p")
        await finished(pilot, "replicas")
        # parity checked against another digest than the stored one (as before a rehydrate)
        app.actions.parity = ParityReport("0" * 64, "engine", app.parity.replicas)
        app.refresh_status()
        table = app.query_one(ReplicaTable)
        assert table.stale and "old stored digest 000000000000" in table.stale
        assert table.row_cells(0)[2][0] == "◷ was ✔ match"
        await finished(pilot, "replicas", 2)
        assert table.stale is None


# -- the banner: the incident's start ---------------------------------------------------------------------------

async def test_banner_shows_the_drift_start_from_the_incident(sample_ws):
    app = make_app(sample_ws.root)
    async with app.run_test(size=(160, 48)) as pilot:
        await start(pilot)
        banner = app.query_one(AlertBanner)
        await wait_for(pilot, lambda: banner.banners, what="the banner")
        view = app.session.monitor.snapshot()
        incident = getattr(view, "incident", None)
        if incident is None:
            pytest.skip("the monitor has no incident model yet")
        text = screen_text(app)
        assert incident.started_label == "checkpoint-0171"
        assert "17:43:20Z (checkpoint-0171)" in text
        assert f"{incident.consecutive_mismatches} consecutive" in text
        assert "first observed" in text


# -- console state bugs ---------------------------------------------------------------------------------------------

async def test_panel_keys_pressed_quickly_keep_tabs_and_content_together(small_ws):
    app = make_app(small_ws.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await start(pilot)
        await pilot.press("right_square_bracket", "right_square_bracket", "right_square_bracket")
        await pilot.pause(0.3)
        tabs = app.query_one("#panel-tabs")
        assert app.active_panel == "activity"
        assert tabs.active == "tab-activity"
        shown = [pid for pid in ("checkpoints", "diff", "replicas", "activity", "errors")
                 if app.query_one(f"#{pid}").has_class("-active")]
        assert shown == ["activity"]
        await pilot.press("left_square_bracket", "left_square_bracket")
        await pilot.pause(0.3)
        assert app.active_panel == "diff" and tabs.active == "tab-diff"


async def test_palette_shows_the_bracket_keys(small_ws):
    app = make_app(small_ws.root)
    async with app.run_test(size=(160, 48)) as pilot:
        await start(pilot)
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette), what="the palette")
        await pilot.press(*"Next panel")
        await pilot.pause(0.5)
        text = screen_text(app)
        assert "(key ])" in text and "(key ))" not in text


async def test_enter_on_an_error_row_shows_that_line_in_full(small_ws):
    reason_tail = "x" * 300
    bad = b'{"registry_digest": 42, "note": "' + reason_tail.encode() + b'", "esc": "\\u001b[2J"}'
    first = small_ws.feed.read_bytes().count(b"\n") + 1
    append(small_ws.feed, [b"not json at all \x1b[31m" + b"y" * 200, bad])
    app = make_app(small_ws.root)
    async with app.run_test(size=(160, 48)) as pilot:
        await start(pilot)
        table = app.query_one("#error-table")
        await wait_for(pilot, lambda: len(table.items) == 2, what="two ingest errors")
        app.show_panel("errors")
        await pilot.pause(0.05)
        table.move_cursor(0)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen), what="the detail")
        await pilot.pause(0.1)
        text = screen_text(app)
        assert f"ingest error at line {first}" in text and "raw line" in text
        assert "not json at all" in text and "\x1b" not in text
        assert app.screen.raw_text.startswith("not json at all")
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, DetailScreen), what="close")
        table.move_cursor(1)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen), what="the second detail")
        assert f"line {first + 1}" in screen_text(app)
        assert reason_tail in app.screen.raw_text  # the whole raw line, copyable


async def test_enter_on_an_activity_row_shows_its_audit_record(small_ws):
    app = make_app(small_ws.root)
    async with app.run_test(size=(160, 48)) as pilot:
        await start(pilot)
        await pilot.press("v")
        await finished(pilot, "validate")
        app.show_panel("activity")
        table = app.query_one("#activity-table")
        index = max(i for i, a in enumerate(table.items) if a.message.startswith("validate finished"))
        table.move_cursor(index)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen), what="the detail")
        record = json.loads(app.screen.raw_text)
        assert record["action"] == "validate" and record["phase"] == "finished"
        assert "latest" not in app.screen._title and "checkpoint-" not in app.screen._title


async def test_acknowledge_without_an_audit_log_says_it_failed(small_ws):
    log = small_ws.root / "memory" / "audit" / "events.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    if log.exists():
        log.unlink()
    os.symlink("/dev/full", log)  # every write fails (ENOSPC), as on a full or read-only disk
    app = make_app(small_ws.root)
    async with app.run_test(size=(160, 48), notifications=True) as pilot:
        await start(pilot)
        await wait_for(pilot, lambda: app.dashboard.active, what="the alert")
        await pilot.press("a")
        await wait_for(pilot, lambda: any("acknowledge failed" in n for n in notifications(app)), what="failure")
        assert not any(n.startswith("Acknowledged") for n in notifications(app))
        assert all(b.acknowledged_by is None for b in app.dashboard.active)
        assert "acknowledged by" not in screen_text(app)
    # nothing was queued that would claim the acknowledgement once the log can be written again
    os.unlink(log)
    app.session.audit.append("probe")
    assert not [e for e in audit(small_ws.root) if e["event"] == "acknowledged"]


async def test_mouse_wheel_pauses_following(tmp_path):
    from polylog_console.demo.sample import write_workspace

    root = tmp_path / "ws"
    write_workspace(root, polyforms=200, checkpoints=300, drift_from=301)
    app = make_app(root)
    async with app.run_test(size=(160, 48)) as pilot:
        await start(pilot)
        assert app.following
        table = app.query_one(CheckpointTable)
        region = table.region
        x, y = region.x + 5, region.y + region.height // 2
        app.post_message(events.MouseScrollUp(None, x, y, 0, -1, 0, False, False, False, x, y))
        await wait_for(pilot, lambda: not app.following, what="following to pause")
        assert "⏸ paused" in screen_text(app)


async def test_after_drift_remains_the_banner_proposes_the_bundle_first(small_ws):
    app = make_app(small_ws.root)
    async with app.run_test(size=(160, 48)) as pilot:
        await start(pilot)
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        await pilot.press("y")
        await finished(pilot, "rehydrate")
        banner = app.query_one(AlertBanner)
        await wait_for(pilot, lambda: any(b.code == "drift_persistent" for b in banner.banners), what="escalation")
        assert banner.hints[0][1] == "bundle"
        line = next(line for line in screen_text(app).splitlines() if "keys" in line)
        assert line.index("bundle") < (line.index("rehydrate") if "rehydrate" in line else len(line))


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
async def test_bundle_inside_tmux_without_passthrough_says_it_may_not_have_reached_the_clipboard(small_ws, tmp_path,
                                                                                                  monkeypatch):
    sock = tmp_path / "tmux.sock"
    subprocess.run(["tmux", "-S", str(sock), "-f", "/dev/null", "new-session", "-d", "-s", "h4", "sleep 60"],
                   check=True)
    try:
        subprocess.run(["tmux", "-S", str(sock), "set", "-g", "allow-passthrough", "off"], check=True)
        pid = subprocess.run(["tmux", "-S", str(sock), "display", "-p", "#{pid}"], capture_output=True, text=True,
                             check=True).stdout.strip()
        monkeypatch.setenv("TMUX", f"{sock},{pid},0")
        app = make_app(small_ws.root)
        async with app.run_test(size=(160, 48), notifications=True) as pilot:
            await start(pilot)
            await pilot.press("b")
            await finished(pilot, "bundle")
            await wait_for(pilot, lambda: any("Clipboard" in n for n in notifications(app)), what="the notice")
            note = next(n for n in notifications(app) if "Clipboard" in n)
            assert "may not have reached the clipboard" in note
            assert "tmux set -g allow-passthrough on" in note
            assert "wrote memory/escalations/" in note
        subprocess.run(["tmux", "-S", str(sock), "set", "-g", "allow-passthrough", "on"], check=True)
        app = make_app(small_ws.root)
        async with app.run_test(size=(160, 48), notifications=True) as pilot:
            await start(pilot)
            await pilot.press("b")
            await finished(pilot, "bundle")
            await wait_for(pilot, lambda: any("Clipboard" in n for n in notifications(app)), what="the notice")
            note = next(n for n in notifications(app) if "Clipboard" in n)
            assert "may not have reached" not in note and "through tmux" in note
    finally:
        subprocess.run(["tmux", "-S", str(sock), "kill-server"], check=False)
        time.sleep(0.05)
