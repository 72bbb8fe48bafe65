"""Pilot tests: every action of the registry, run by its key and from the command palette, against a
generated workspace, with its observable result (screen, files, audit log, clipboard)."""

from __future__ import annotations

import base64
import hashlib
import json
import re

import orjson
import pytest
from textual.command import CommandPalette

from polylog_console.core.infra.audit import read_tail
from polylog_console.core.model.actions import ACTIONS
from polylog_console.ui.keymap import key_display
from polylog_console.ui.screens.confirm import ConfirmScreen
from polylog_console.ui.screens.detail import DetailScreen
from polylog_console.ui.screens.help import HelpScreen
from polylog_console.ui.widgets.diff import DiffPanel
from polylog_console.ui.widgets.replicas import ReplicaTable
from tests.test_ui_support import make_app, notifications, screen_text, start, wait_for

OSC52 = re.compile(r"\x1b\]52;c;([A-Za-z0-9+/=]*)\x07")


def audit_events(root):
    return list(read_tail(root / "memory" / "audit" / "events.jsonl", 500))


async def finished(pilot, action_id: str):
    app = pilot.app
    done = await wait_for(pilot, lambda: [f for f in app.runner.history if f.action_id == action_id],
                          what=f"{action_id} to finish")
    assert done[-1].thread_name not in ("", "MainThread")  # it ran in a worker thread, not on the UI loop
    return done[-1]


# What each action visibly does, checked after it was triggered (by key or palette).

async def check_validate(pilot, ws):
    done = await finished(pilot, "validate")
    assert done.phase == "finished" and done.outcome.ok
    assert done.thread_name != "MainThread"  # it ran in a worker thread
    assert "VALID" in done.message
    assert any("validate finished" in line for line in screen_activity(pilot.app))
    events = [e for e in audit_events(ws.root) if e.get("action") == "validate"]
    assert [e["event"] for e in events] == ["action_started", "action_finished"]
    assert all(e["actor"] == pilot.app.session.audit.actor for e in events)


async def check_rehydrate(pilot, ws):
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
    await pilot.press("y")
    done = await finished(pilot, "rehydrate")
    assert done.phase == "finished", done.message
    metadata = json.loads((ws.root / "catalogs" / "metadata.json").read_text())
    assert metadata["source_checksum"] == hashlib.sha256((ws.root / "stable_polyforms.jsonl").read_bytes()).hexdigest()
    # the sample's drift persists after rehydrate: escalated, shown in the activity log
    await wait_for(pilot, lambda: any("drift remains after rehydrate" in line for line in screen_activity(app)),
                   what="the escalation")


async def check_recompute(pilot, ws):
    done = await finished(pilot, "recompute")
    assert done.outcome is not None and done.outcome.outcome == "problem"
    assert "differs from stored" in done.message
    assert any("Recompute digest: finished" in n for n in notifications(pilot.app))


async def check_replicas(pilot, ws):
    await finished(pilot, "replicas")
    table = pilot.app.query_one(ReplicaTable)
    assert [(r.name, r.status) for r in table.results] == [("replica-eu", "match"), ("replica-us", "drift")]
    text = screen_text(pilot.app) if pilot.app.active_panel == "replicas" else ""
    pilot.app.show_panel("replicas")
    await pilot.pause(0.05)
    text = screen_text(pilot.app)
    assert "✔ match" in text and "✘ drift" in text


async def check_bundle(pilot, ws):
    done = await finished(pilot, "bundle")
    assert done.phase == "finished", done.message
    files = list((ws.root / "memory" / "escalations").glob("*.md"))
    assert len(files) == 1
    sequence = pilot.app.clipboard_writes[-1]
    match = OSC52.search(sequence)
    assert match, sequence[:40]
    assert base64.b64decode(match.group(1)).decode() == files[0].read_text()
    assert pilot.driver_writes and sequence in pilot.driver_writes  # it went to the terminal


async def check_acknowledge(pilot, ws):
    app = pilot.app
    await wait_for(pilot, lambda: "acknowledged by" in screen_text(app), what="the acknowledgement in the banner")
    acks = [e for e in audit_events(ws.root) if e["event"] == "acknowledged"]
    assert acks and all(e["actor"] == app.session.audit.actor for e in acks)


async def check_cancel(pilot, ws):
    await wait_for(pilot, lambda: any("no action is running" in n for n in notifications(pilot.app)),
                   what="the cancel notice")


async def check_follow(pilot, ws):
    assert pilot.app.following is False
    await wait_for(pilot, lambda: "⏸ paused" in screen_text(pilot.app), what="paused in the header")


async def check_filter(pilot, ws):
    """``/`` filters the focused panel: the checkpoints first (focused at start), then the diff."""
    from polylog_console.ui.widgets.checkpoints import CheckpointTable
    from polylog_console.ui.widgets.rowfilter import RowFilter

    app = pilot.app
    box = app.query_one(RowFilter)
    await wait_for(pilot, lambda: box.has_class("-open") and box.panel == "checkpoints", what="the filter box")
    await pilot.press(*"match:no", "enter")
    table = app.query_one(CheckpointTable)
    assert not box.has_class("-open") and table.query is not None  # enter closed the box and kept the filter
    drifting = [r for r in (app.timeline.row(app.timeline.first_seq + i) for i in range(len(app.timeline)))
                if r.match is False]
    assert table.shown_count() == len(drifting)
    await pilot.pause(0.05)
    assert f"filtered: {len(drifting)} of {len(app.timeline)}" in screen_text(app)
    await pilot.press("escape")  # on the filtered panel: clears it
    assert table.query is None and table.shown_count() == len(app.timeline)
    await pilot.press("2", app.keymap.key_for("filter"))
    panel = app.query_one(DiffPanel)
    assert panel.has_class("-filtering")
    await pilot.press(*"kind:missing")
    await pilot.press("enter")
    await wait_for(pilot, lambda: app.diff_state.query == "kind:missing", what="the filter")
    rows = app.diff_state.rows
    assert rows and {r[0] for r in rows} == {"missing"}
    assert len(rows) == app.diff_state.diff.missing
    assert not panel.has_class("-filtering")  # enter applied and closed it
    await pilot.press(app.keymap.key_for("filter"), "x", "escape")  # escape clears and closes, cancels nothing
    await wait_for(pilot, lambda: not panel.has_class("-filtering"), what="the filter to close")
    await wait_for(pilot, lambda: app.diff_state.query == "", what="the filter to clear")
    assert not any("no action is running" in n for n in notifications(app))


async def check_detail(pilot, ws):
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen), what="the detail screen")
    latest = app.timeline.latest.checkpoint
    assert latest.display_label in screen_text(app)
    assert '"registry_digest"' in screen_text(app)
    await pilot.press("c")  # copy from the detail screen
    await wait_for(pilot, lambda: app.clipboard_writes, what="the copy")
    payload = OSC52.search(app.clipboard_writes[-1]).group(1)
    assert base64.b64decode(payload) == latest.raw
    await pilot.press("escape")
    await wait_for(pilot, lambda: not isinstance(app.screen, DetailScreen), what="the detail screen to close")


async def check_copy(pilot, ws):
    app = pilot.app
    await wait_for(pilot, lambda: app.clipboard_writes, what="the copy")
    payload = OSC52.search(app.clipboard_writes[-1]).group(1)
    assert orjson.loads(base64.b64decode(payload))["label"] == app.timeline.latest.checkpoint.display_label


async def check_next_panel(pilot, ws):
    assert pilot.app.active_panel == "diff"
    assert "missing" in screen_text(pilot.app)


async def check_prev_panel(pilot, ws):
    assert pilot.app.active_panel == "errors"
    assert "no ingest errors" in screen_text(pilot.app)


async def check_theme(pilot, ws):
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette), what="the theme picker")
    await pilot.press(*"High")
    await pilot.pause(0.3)
    await pilot.press("enter")
    await wait_for(pilot, lambda: app.theme == "high-contrast", what="the theme switch")


async def check_help(pilot, ws):
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="the help screen")
    text = str(app.screen.text())
    for spec in ACTIONS:
        assert spec.title in text
    await pilot.press("escape")


async def check_quit(pilot, ws):
    app = pilot.app
    await wait_for(pilot, lambda: app.return_code is not None, what="the app to exit")
    assert app.return_code == 0


def check_panel(panel):
    async def check(pilot, ws):
        assert pilot.app.active_panel == panel and pilot.app.panels.focused() == panel
    return check


async def check_alerts(pilot, ws):
    from polylog_console.ui.screens.alerts import AlertsScreen

    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, AlertsScreen), what="the alert list")
    assert "registry_mismatch" in screen_text(app)
    await pilot.press("escape")


async def check_timeline(pilot, ws):
    from polylog_console.ui.screens.timeline import TimelineScreen

    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, TimelineScreen), what="the incident timeline")
    await pilot.press("escape")


async def check_wide(pilot, ws):
    app = pilot.app
    await wait_for(pilot, lambda: app.triage.wide, what="wide mode")
    await pilot.pause(0.05)
    assert app.timeline.latest.checkpoint.digest in screen_text(app)  # the whole digest
    await pilot.press("w")
    await pilot.pause(0.05)
    assert not app.triage.wide and app.timeline.latest.checkpoint.digest not in screen_text(app)


async def check_messages(pilot, ws):
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen), what="the message history")
    assert "Message history" in screen_text(app)


async def check_match(pilot, ws):
    # no filter set yet: says how to set one
    await wait_for(pilot, lambda: any("/ sets a filter" in n for n in notifications(pilot.app)), what="the hint")


CHECKS = {
    "validate": check_validate, "rehydrate": check_rehydrate, "recompute": check_recompute,
    "replicas": check_replicas, "bundle": check_bundle, "acknowledge": check_acknowledge, "cancel": check_cancel,
    "follow": check_follow, "filter": check_filter, "detail": check_detail, "copy": check_copy,
    "next_panel": check_next_panel, "prev_panel": check_prev_panel, "theme": check_theme, "help": check_help,
    "quit": check_quit, "alerts": check_alerts, "wide": check_wide, "messages": check_messages,
    "next_match": check_match, "prev_match": check_match, "timeline": check_timeline,
    **{f"panel_{p}": check_panel(p) for p in ("checkpoints", "diff", "replicas", "activity", "errors")},
}


def screen_activity(app) -> list[str]:
    from polylog_console.ui.widgets.logs import ActivityTable

    return [a.message for a in app.query_one(ActivityTable).items]


def test_every_action_has_a_check():
    assert set(CHECKS) == {spec.id for spec in ACTIONS}


def _pilot_keys(text: str) -> list[str]:
    names = {" ": "space", "/": "slash", ":": "colon"}
    return [names.get(c, c) for c in text]


@pytest.mark.parametrize("via", ["key", "palette"])
@pytest.mark.parametrize("action_id", [spec.id for spec in ACTIONS])
async def test_action(small_ws, action_id, via):
    app = make_app(small_ws.root)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await start(pilot)
        writes: list[str] = []
        original = app._driver.write

        def record(data: str) -> None:
            writes.append(data)
            original(data)

        app._driver.write = record  # the headless driver discards output; keep what reaches it
        pilot.driver_writes = writes
        if via == "key":
            key = app.keymap.key_for(action_id)
            await pilot.press(key)
        else:
            spec = next(s for s in ACTIONS if s.id == action_id)
            await pilot.press("ctrl+p")
            await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette), what="the palette")
            await pilot.press(*_pilot_keys(spec.title))
            await pilot.pause(0.3)
            await pilot.press("enter")
        await pilot.pause(0.05)
        await CHECKS[action_id](pilot, small_ws)


async def test_help_lists_every_action_with_its_key(small_ws):
    app = make_app(small_ws.root)
    async with app.run_test(size=(100, 30)) as pilot:
        await start(pilot)
        await pilot.press(app.keymap.key_for("help"))
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        text = app.screen.text().plain
        for spec in ACTIONS:
            assert spec.title in text
            assert key_display(app.keymap.key_for(spec.id)) in text


async def test_palette_lists_every_action_and_theme(small_ws):
    app = make_app(small_ws.root)
    async with app.run_test(size=(100, 30)) as pilot:
        await start(pilot)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for spec in ACTIONS:
            assert spec.title in titles
        assert {"Theme: Dark", "Theme: Light", "Theme: High contrast"} <= set(titles)
