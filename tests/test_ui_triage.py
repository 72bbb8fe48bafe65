"""Issue 15 conventions in the console: movement keys, panel number keys, the focus mark, the
active-alert list (key and banner click), the grouped help, and the status line of a running action."""

from __future__ import annotations

from polylog_console.ui.screens.alerts import AlertsScreen
from polylog_console.ui.screens.help import HelpScreen
from polylog_console.ui.widgets.banner import AlertBanner
from polylog_console.ui.widgets.checkpoints import CheckpointTable
from tests.test_ui_support import (
    GatedReplica,
    gated_config,
    in_thread,
    make_app,
    screen_text,
    start,
    wait_for,
)


async def test_movement_keys_move_the_cursor(sample_ws):
    app = make_app(sample_ws.root)
    async with app.run_test(size=(160, 48)) as pilot:
        await start(pilot)
        table = app.query_one(CheckpointTable)
        newest = table.row_count() - 1
        await pilot.press("g")
        assert table.cursor == 0 and not app.following
        await pilot.press("j", "j", "j", "k")
        assert table.cursor == 2
        await pilot.press("ctrl+d")
        assert table.cursor == 2 + table.page_rows // 2
        await pilot.press("ctrl+u")
        assert table.cursor == 2
        await pilot.press("G")
        assert table.cursor == newest
        assert app.selected_checkpoint() is app.timeline.latest.checkpoint


async def test_number_keys_show_panels_and_the_focus_mark_follows(small_ws):
    app = make_app(small_ws.root)
    async with app.run_test(size=(160, 48)) as pilot:
        await start(pilot)
        await pilot.pause(0.05)
        assert "▶ Checkpoints" in screen_text(app)
        await pilot.press("2")
        assert app.active_panel == "diff"
        await pilot.pause(0.05)
        text = screen_text(app)
        assert "▶ Symbol diff" in text and "▶ Checkpoints" not in text
        for key, panel in (("3", "replicas"), ("4", "activity"), ("5", "errors"), ("1", "checkpoints")):
            await pilot.press(key)
            assert app.active_panel == panel and app.panels.focused() == panel
    async with make_app(small_ws.root).run_test(size=(80, 24)) as pilot:  # compact: the tab follows
        await start(pilot)
        await pilot.press("2")
        await pilot.pause(0.1)
        assert pilot.app.query_one("#panel-tabs").active == "tab-diff"
        assert "missing" in screen_text(pilot.app)


async def test_alert_list_by_key_and_by_the_banners_more_link(small_ws):
    app = make_app(small_ws.root)
    async with app.run_test(size=(160, 48)) as pilot:
        await start(pilot)
        banner = app.query_one(AlertBanner)
        await wait_for(pilot, lambda: len(banner.banners) > 1, what="more than one alert")
        await pilot.press("A")
        await wait_for(pilot, lambda: isinstance(app.screen, AlertsScreen), what="the alert list")
        text = screen_text(app)
        codes = [b.code for b in app.dashboard.active]
        assert all(code in text for code in codes)
        assert "consecutive" in text and "acknowledged by" in text
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, AlertsScreen), what="close")
        line = next(i for i, line in enumerate(screen_text(app).splitlines()) if "more" in line and "ALERT" in line)
        column = screen_text(app).splitlines()[line].index("+")
        await pilot.click(offset=(column + 1, line))
        await wait_for(pilot, lambda: isinstance(app.screen, AlertsScreen), what="the alert list by click")


async def test_help_is_grouped_navigation_runbook_view(small_ws):
    app = make_app(small_ws.root)
    async with app.run_test(size=(160, 48)) as pilot:
        await start(pilot)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        text = str(app.screen.text())
        assert text.index("Navigation") < text.index("Runbook") < text.index("View")
        assert "j k" in text and "g G" in text and "never cancels" in text


async def test_status_line_shows_the_running_action_elapsed_and_how_to_cancel(tmp_path):
    from polylog_console.demo.sample import write_workspace

    root = tmp_path / "ws"
    incident = write_workspace(root, polyforms=200, checkpoints=20, drift_from=15, config="")
    with GatedReplica(incident.stored_digest) as replica:
        (root / "monitoring.toml").write_text(gated_config(replica.url))
        app = make_app(root)
        async with app.run_test(size=(80, 24)) as pilot:
            await start(pilot)
            await pilot.press("p")
            await in_thread(lambda: replica.started.wait(10))
            await wait_for(pilot, lambda: "x cancel" in screen_text(app), what="the status line")
            await wait_for(pilot, lambda: any(s in screen_text(app) for s in (" 1s ", " 2s ")), what="elapsed time")
            line = next(line for line in screen_text(app).splitlines() if "x cancel" in line)
            assert "Verify replicas" in line
            replica.release.set()
            await wait_for(pilot, lambda: app.runner.history, what="the action to end")


async def test_the_80x24_footer_keeps_every_essential_key(small_ws):
    from polylog_console.core.model.actions import ACTIONS
    from polylog_console.ui.keymap import key_display

    app = make_app(small_ws.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await start(pilot)
        footer = screen_text(app).splitlines()[-1]
        for spec in ACTIONS:
            if spec.footer:
                assert f"{key_display(app.keymap.key_for(spec.id))} " in footer, spec.id
        assert "^p palette" in footer


async def test_filter_keeps_exactly_the_matching_rows_and_n_finds_them(sample_ws):
    from polylog_console.ui.widgets.rowfilter import RowFilter

    app = make_app(sample_ws.root)
    async with app.run_test(size=(160, 48)) as pilot:
        await start(pilot)
        table = app.query_one(CheckpointTable)
        rows = [app.timeline.row(app.timeline.first_seq + i) for i in range(len(app.timeline))]
        await pilot.press("slash", *"match:no")  # live as you type
        expected = [r.checkpoint.display_label for r in rows if r.match is False]
        assert [rows[table.source_index(i)].checkpoint.display_label for i in range(table.shown_count())] == expected
        await pilot.press("backspace", "backspace", *"yes 016")  # words too: label/digest/time
        assert {rows[table.source_index(i)].checkpoint.display_label for i in range(table.shown_count())} == {
            r.checkpoint.display_label for r in rows if r.match and "016" in r.checkpoint.display_label}
        await pilot.press("escape")  # in the box: clears and closes
        assert table.query is None and not app.query_one(RowFilter).has_class("-open")
        assert app.focused is table
        await pilot.press("g", "n")  # n: the next row matching the last query (no filter applied)
        first = table.selected_index
        assert "016" in rows[first].checkpoint.display_label and rows[first].match
        await pilot.press("n")
        assert table.selected_index > first and "016" in rows[table.selected_index].checkpoint.display_label
        await pilot.press("N")
        assert table.selected_index == first
        await pilot.press("slash", *"colour:red")
        assert "unknown field" in str(app.query_one(RowFilter).border_subtitle)


async def test_filter_on_errors_and_activity_and_esc_never_cancels(small_ws):
    from tests.test_ui_support import append

    append(small_ws.feed, [b"not json", b'{"registry_digest": 5}', b"[1, 2]"])
    app = make_app(small_ws.root)
    async with app.run_test(size=(160, 48), notifications=True) as pilot:
        await start(pilot)
        errors = app.query_one("#error-table")
        await wait_for(pilot, lambda: len(errors.items) == 3, what="three errors")
        first = min(e.line for e in errors.items)
        await pilot.press("5", "slash", *f"line:{first + 2}", "enter")
        assert errors.shown_count() == 1 and "filtered: 1 of 3" in screen_text(app)
        await pilot.press("enter")
        assert app.screen.raw_text == "[1, 2]"  # Enter opens the filtered row itself
        await pilot.press("escape")
        await pilot.pause(0.05)
        await pilot.press("escape")  # on the filtered panel: clears the filter
        assert errors.query is None and errors.shown_count() == 3
        await pilot.press("4", "slash", *"kind:feed", "enter")
        activity = app.query_one("#activity-table")
        assert activity.shown_count() and all(activity.items[activity.source_index(i)].kind == "feed"
                                              for i in range(activity.shown_count()))


async def test_tab_and_shift_tab_step_through_the_panels_in_order(small_ws):
    for size in ((160, 48), (80, 24)):
        app = make_app(small_ws.root)
        async with app.run_test(size=size) as pilot:
            await start(pilot)
            seen = []
            for _ in range(5):
                await pilot.press("tab")
                seen.append((app.active_panel, app.panels.focused()))
            assert seen == [(p, p) for p in ("diff", "replicas", "activity", "errors", "checkpoints")]
            await pilot.press("shift+tab")
            assert app.active_panel == "errors" and app.panels.focused() == "errors"


async def test_alert_list_shows_the_sinks_that_delivered(tmp_path):
    from polylog_console.demo.sample import write_workspace
    from polylog_console.ui.screens.alerts import AlertsScreen
    from tests.servers import Receiver

    root = tmp_path / "ws"
    write_workspace(root, polyforms=200, checkpoints=20, drift_from=15, config="")
    with Receiver() as receiver:
        (root / "monitoring.toml").write_text(f'[webhook]\nurl = "{receiver.url}"\ntimeout = 2\n')
        app = make_app(root)
        async with app.run_test(size=(160, 48)) as pilot:
            await start(pilot)
            await wait_for(pilot, lambda: app.triage.deliveries, what="a delivery")
            await pilot.press("A")
            await wait_for(pilot, lambda: isinstance(app.screen, AlertsScreen), what="the alert list")
            assert "delivered: dashboard, webhook" in screen_text(app)
