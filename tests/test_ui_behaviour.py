"""Pilot tests of the console's behaviour around actions and the live feed: background actions keep
the table live, single-flight, cancel, drift reaching the banner, follow/pause, paging older
history, read-only mode, remapped keys and themes that cannot be used."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import time

from textual.command import CommandPalette

from polylog_console.core.infra.audit import read_tail
from polylog_console.core.model.workspace import Workspace as WorkspaceDir
from polylog_console.core.registry.digest import digest
from polylog_console.core.registry.stored import StoredRegistry, save_snapshot, start_digest_primer
from polylog_console.demo.sample import INTERVAL, START, make_state, write_workspace
from polylog_console.ui.app import PANELS
from polylog_console.ui.screens.confirm import ConfirmScreen
from polylog_console.ui.widgets.checkpoints import CheckpointTable
from tests.test_ui_support import (
    GatedReplica,
    append,
    checkpoint_lines,
    gated_config,
    in_sync_workspace,
    in_thread,
    make_app,
    notifications,
    screen_text,
    start,
    wait_for,
)


def audit(root):
    return list(read_tail(root / "memory" / "audit" / "events.jsonl", 1000))


async def test_table_keeps_updating_while_an_action_runs_and_it_runs_once(tmp_path):
    root = tmp_path / "ws"
    incident = write_workspace(root, polyforms=200, checkpoints=20, drift_from=15, config="")
    with GatedReplica(incident.stored_digest) as replica:
        (root / "monitoring.toml").write_text(gated_config(replica.url))
        app = make_app(root)
        async with app.run_test(size=(100, 30), notifications=True) as pilot:
            await start(pilot)
            await pilot.press("p")
            await in_thread(lambda: replica.started.wait(10))
            assert app.runner.is_running("replicas")
            assert "⟳ Verify replicas" in screen_text(app)  # the progress line with its cancel key
            # A second press while it runs does not start it again.
            await pilot.press("p")
            await wait_for(pilot, lambda: any("already running" in n for n in notifications(app)), what="notice")
            # Another process appends checkpoints meanwhile: the table follows them.
            feed = root / "memory" / "coordination" / "context-brief.jsonl"
            before = len(app.timeline)
            await in_thread(lambda: append(feed, checkpoint_lines(21, 5, incident.live_digest)))
            await wait_for(pilot, lambda: len(app.timeline) == before + 5, what="the new checkpoints")
            await wait_for(pilot, lambda: "checkpoint-0025" in screen_text(app), what="the new rows on screen")
            assert app.runner.is_running("replicas")  # still waiting for the replica
            replica.release.set()
            await wait_for(pilot, lambda: not app.runner.is_running("replicas"), what="the check to finish")
        assert replica.requests == 1
        started = [e for e in audit(root) if e.get("action") == "replicas" and e["event"] == "action_started"]
        assert len(started) == 1
        finished = [e for e in audit(root) if e.get("action") == "replicas" and e["event"] == "action_finished"]
        assert finished and finished[0]["outcome"] == "ok"


async def test_cancel_stops_a_running_action(tmp_path):
    root = tmp_path / "ws"
    incident = write_workspace(root, polyforms=200, checkpoints=20, drift_from=15, config="")
    with GatedReplica(incident.stored_digest) as replica:
        (root / "monitoring.toml").write_text(gated_config(replica.url))
        app = make_app(root)
        async with app.run_test(size=(100, 30), notifications=True) as pilot:
            await start(pilot)
            await pilot.press("p")
            await in_thread(lambda: replica.started.wait(10))
            await pilot.press("escape")  # esc never cancels a running action
            await pilot.pause(0.2)
            assert app.runner.is_running("replicas") and not app.runner.history
            await pilot.press("x")  # x asks first
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
            await pilot.press("y")
            await wait_for(pilot, lambda: app.runner.history, what="the cancellation")
            assert app.runner.history[-1].phase == "cancelled"
            assert app.parity is None
            assert any("replicas cancelled" in a.message for a in app.query_one("#activity-table").items)
    assert [e["event"] for e in audit(root) if e.get("action") == "replicas"] == ["action_started",
                                                                                 "action_cancelled"]


async def test_drift_appended_by_another_process_reaches_the_banner_within_a_second(tmp_path):
    root = tmp_path / "ws"
    incident = in_sync_workspace(root, fresh=True)
    app = make_app(root)
    async with app.run_test(size=(100, 30)) as pilot:
        await start(pilot)
        assert app.dashboard.top is None
        assert "IN SYNC" in screen_text(app)
        line = checkpoint_lines(21, 1, incident.live_digest, start=time.time() - 20 * INTERVAL)[0]
        code = "import sys; open(sys.argv[1], 'ab').write(sys.argv[2].encode() + b'\\n')"
        feed = root / "memory" / "coordination" / "context-brief.jsonl"
        await in_thread(lambda: subprocess.run([sys.executable, "-c", code, str(feed), line.decode()], check=True))
        appended = time.monotonic()
        await wait_for(pilot, lambda: "registry_mismatch" in screen_text(app), timeout=5, what="the banner")
        elapsed = time.monotonic() - appended
        assert elapsed < 1.0, f"drift took {elapsed:.2f} s to reach the banner"
        assert "✘ DRIFT" in screen_text(app)


async def test_pause_keeps_the_view_while_rows_arrive_and_follow_jumps_to_the_newest(tmp_path):
    root = tmp_path / "ws"
    incident = in_sync_workspace(root, checkpoints=60)
    app = make_app(root)
    async with app.run_test(size=(100, 30)) as pilot:
        await start(pilot)
        table = app.query_one(CheckpointTable)
        assert table.cursor == len(app.timeline) - 1  # following: the newest row is selected
        await pilot.press("up", "up", "up")  # moving up pauses the table
        assert app.following is False
        await wait_for(pilot, lambda: "⏸ paused" in screen_text(app), what="paused")
        selected = app.selected_checkpoint().display_label
        top = table.scroll_y
        append(root / "memory" / "coordination" / "context-brief.jsonl",
               checkpoint_lines(61, 10, incident.stored_digest))
        await wait_for(pilot, lambda: len(app.timeline) == 70, what="the new rows")
        assert app.selected_checkpoint().display_label == selected
        assert table.scroll_y == top
        await pilot.press("f")
        await pilot.pause(0.05)
        assert app.selected_checkpoint().display_label == "checkpoint-0070"
        assert "checkpoint-0070" in screen_text(app)


async def test_rows_arriving_in_bursts_keep_the_scroll_extent_and_the_newest_row_in_view(tmp_path):
    # The table sets its scroll extent without re-laying the screen: the scrollbar, the end of
    # the table and paging must still follow every burst.
    root = tmp_path / "ws"
    incident = in_sync_workspace(root, checkpoints=10)
    feed = root / "memory" / "coordination" / "context-brief.jsonl"
    app = make_app(root)
    async with app.run_test(size=(100, 30)) as pilot:
        await start(pilot)
        table = app.query_one(CheckpointTable)
        assert not table.show_vertical_scrollbar  # 10 rows fit
        for burst in range(4):
            append(feed, checkpoint_lines(11 + 25 * burst, 25, incident.stored_digest))
            newest = f"checkpoint-{10 + 25 * (burst + 1):04d}"
            await wait_for(pilot, lambda newest=newest: newest in screen_text(app), what=newest)
        assert len(app.timeline) == 110
        assert table.show_vertical_scrollbar and table.virtual_size.height == 111  # + the header line
        assert table.scroll_y == table.max_scroll_y > 0
        assert table.cursor == 109 and app.following
        await pilot.press("home")
        await pilot.pause(0.05)
        assert table.scroll_y == 0 and "checkpoint-0001" in screen_text(app)
        await pilot.press("end")
        await pilot.pause(0.05)
        assert table.scroll_y == table.max_scroll_y and "checkpoint-0110" in screen_text(app)


async def test_scrolling_to_the_top_pages_in_older_history(tmp_path):
    root = tmp_path / "ws"
    in_sync_workspace(root, checkpoints=400)
    (root / "monitoring.toml").write_text("[feed]\nhistory = 50\n")
    app = make_app(root)
    async with app.run_test(size=(100, 30)) as pilot:
        await start(pilot)
        assert len(app.timeline) == 50
        assert app.timeline.oldest.checkpoint.display_label == "checkpoint-0351"
        await pilot.press("home")
        await wait_for(pilot, lambda: len(app.timeline) > 50, what="older history")
        oldest = app.timeline.oldest.checkpoint
        assert 150 <= int(oldest.display_label.split("-")[1]) <= 160  # 200 records back, a few of them entries
        assert oldest.line is not None and oldest.line < 351
        # the view stayed on the row it showed
        assert app.selected_checkpoint().display_label == "checkpoint-0351"
        assert app.timeline.oldest.match is True


async def test_read_only_hides_and_refuses_what_changes_the_workspace(small_ws):
    app = make_app(small_ws.root, read_only=True)
    before = (small_ws.root / "catalogs" / "metadata.json").read_bytes()
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await start(pilot)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Rehydrate catalogs" not in titles and "Escalation bundle" not in titles
        assert "Acknowledge alert" not in titles and "Validate source" in titles
        footer = screen_text(app).splitlines()[-1]
        assert "Rehydrate" not in footer and "Bundle" not in footer
        await pilot.press("r", "b", "a")  # nothing runs, and each key says why
        await wait_for(pilot, lambda: all(any(f"read-only: {a} is disabled" in n for n in notifications(app))
                                          for a in ("rehydrate", "bundle", "acknowledge")), what="the refusals")
        assert not app.runner.history and not isinstance(app.screen, (CommandPalette, ConfirmScreen))
        app.clear_notifications()
        app.action_run("rehydrate")  # even when asked directly
        await wait_for(pilot, lambda: any("read-only: rehydrate is disabled" in n for n in notifications(app)),
                       what="refusal")
        assert "READ-ONLY" in screen_text(app)
        await pilot.press("v")  # reading is allowed
        await wait_for(pilot, lambda: app.runner.history, what="validate")
    assert (small_ws.root / "catalogs" / "metadata.json").read_bytes() == before
    assert not (small_ws.root / "memory" / "escalations").exists()


async def test_keys_are_remapped_from_monitoring_toml_and_problems_are_reported(small_ws):
    config = small_ws.root / "monitoring.toml"
    config.write_text(config.read_text() + '\n[ui.keys]\nvalidate = "V"\nrecompute = "r"\nbogus = "x"\n')
    app = make_app(small_ws.root)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await start(pilot)
        messages = notifications(app)
        assert any('unknown action "bogus"' in m for m in messages)
        assert any('"r" would run both rehydrate and recompute' in m for m in messages)
        assert app.keymap.key_for("recompute") == "d"  # the clashing remap was not honoured
        await pilot.press("v")
        await pilot.pause(0.1)
        assert not app.runner.history
        await pilot.press("V")
        await wait_for(pilot, lambda: app.runner.history, what="validate on V")
        assert app.runner.history[0].action_id == "validate"
        assert "V Validate" in screen_text(app)  # the footer shows the remapped key


async def test_a_broken_theme_falls_back_with_a_notification(small_ws):
    themes = small_ws.root / "themes"
    themes.mkdir()
    (themes / "broken.toml").write_text('[colors]\nprimary = "not-a-colour"\n')
    app = make_app(small_ws.root, theme="broken")
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await start(pilot)
        assert app.theme == "dark"
        assert any('"not-a-colour" is not a colour' in n for n in notifications(app))
        app.set_console_theme("light")
        assert app.theme == "light"
        app.set_console_theme("nope")
        assert app.theme == "dark"


async def test_compact_layout_uses_tabs_and_wide_layout_shows_every_panel(small_ws):
    app = make_app(small_ws.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await start(pilot)
        assert app.screen.has_class("-compact")
        text = screen_text(app)
        assert "Checkpoints" in text and "Replicas" in text  # the tab bar
        assert "Replica parity" not in text
    app = make_app(small_ws.root)
    async with app.run_test(size=(160, 48)) as pilot:
        await start(pilot)
        assert not app.screen.has_class("-compact")
        text = screen_text(app)
        for title in ("Checkpoints", "Symbol diff", "Replica parity", "Activity", "Ingest errors"):
            assert title in text
        assert len(PANELS) == 5


async def test_history_rows_have_no_latency_and_live_rows_do(tmp_path):
    root = tmp_path / "ws"
    incident = in_sync_workspace(root)
    app = make_app(root)
    async with app.run_test(size=(120, 30)) as pilot:
        await start(pilot)
        assert all(app.timeline.row(s).latency_ms is None for s in range(app.timeline.first_seq,
                                                                           app.timeline.end_seq))
        append(root / "memory" / "coordination" / "context-brief.jsonl",
               checkpoint_lines(21, 1, incident.stored_digest, start=START))
        await wait_for(pilot, lambda: len(app.timeline) == 21, what="the live row")
        assert app.timeline.latest.live and app.timeline.latest.latency_ms is not None


async def test_activity_shows_what_other_processes_audit_and_its_own_events_once(small_ws, cli):
    app = make_app(small_ws.root)
    async with app.run_test(size=(100, 30)) as pilot:
        await start(pilot)
        await pilot.press("v")
        await wait_for(pilot, lambda: app.runner.history, what="validate")
        # Another operator rehydrates from another terminal: its audit records reach the activity log.
        result = await in_thread(lambda: cli("rehydrate", "--workspace", str(small_ws.root)))
        assert result.code in (0, 1), result.err

        def lines():
            return [a.message for a in app.query_one("#activity-table").items]

        await wait_for(pilot, lambda: any("action_finished" in m and "rehydrate" in m for m in lines()),
                       what="the other process's rehydrate")
        await pilot.pause(1.2)  # another clock tick: nothing of our own comes back from the audit log
        mine = [m for m in lines() if "validate" in m]
        assert mine == ["validate started", mine[1]] and mine[1].startswith("validate finished")


HOLD_LOCK = """
import sys
from polylog_console.core.infra.lock import WorkspaceLock
from polylog_console.core.model.workspace import Workspace
with WorkspaceLock(Workspace.open(sys.argv[1]), "maintenance"):
    print("held", flush=True)
    sys.stdin.readline()
"""


async def test_rehydrate_waits_for_the_lock_while_the_table_keeps_following(small_ws):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(small_ws.root)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        app = make_app(small_ws.root)
        async with app.run_test(size=(100, 30)) as pilot:
            await start(pilot)
            await pilot.press("r")
            await pilot.press("y")
            await wait_for(pilot, lambda: app.runner.is_running("rehydrate"), what="rehydrate to start")
            before = len(app.timeline)
            append(small_ws.feed, checkpoint_lines(21, 3, small_ws.incident.live_digest))
            await wait_for(pilot, lambda: len(app.timeline) == before + 3, what="new checkpoints meanwhile")
            await pilot.pause(0.3)
            assert app.runner.is_running("rehydrate")  # still waiting for the other process's lock
            holder.stdin.write("\n")
            holder.stdin.flush()
            await wait_for(pilot, lambda: not app.runner.is_running("rehydrate"), what="rehydrate to finish")
            assert app.runner.history[-1].phase == "finished", app.runner.history[-1].message
    finally:
        holder.kill()
        holder.wait()


async def test_a_big_registry_is_digested_by_the_primer_while_the_screen_opens(tmp_path):
    root = tmp_path / "ws"
    in_sync_workspace(root, checkpoints=5)
    state = make_state(250_000)  # ~11 MB: above PRIME_ABOVE
    save_snapshot(root / "catalogs" / "registry.json", state, label="big")
    big = digest(state)
    del state
    append(root / "memory" / "coordination" / "context-brief.jsonl", checkpoint_lines(6, 3, big))
    primer = start_digest_primer(StoredRegistry.for_workspace(WorkspaceDir.open(root)))
    assert primer is not None
    app = make_app(root, primer=primer)
    async with app.run_test(size=(120, 30)) as pilot:
        await start(pilot)
        await wait_for(pilot, lambda: f"stored {big[:12]}" in screen_text(app), what="the big registry's digest")
        view = app.session.monitor.snapshot()
        assert view.stored_digest == big and view.latest_match is True
        assert app.session.stored.loads == 0  # the console found the primer's digest in the cache
    assert primer.exitcode == 0


async def test_quitting_while_the_primer_digests_does_not_wait_for_it(small_ws):
    # A real child process that takes far longer than any digest stands in for a huge registry.
    primer = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,), daemon=True)
    primer.start()
    app = make_app(small_ws.root, primer=primer)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: "reading the stored registry" in screen_text(app), what="the note")
        assert "NO DATA" in screen_text(app) or "LOADING" in screen_text(app)
        started = time.monotonic()
        await pilot.press("q")
    primer.join(5)
    assert not primer.is_alive() and time.monotonic() - started < 5
