"""Untrusted text is shown literally: markup is never interpreted and no escape sequence from the
feed reaches the terminal (issue 6)."""

from __future__ import annotations

import json
import re

from rich.segment import Segment
from textual.content import Content
from textual.widgets import Static

from polylog_console.demo.sample import INTERVAL, START, checkpoint, write_workspace
from polylog_console.ui.safe import fit, literal
from polylog_console.ui.screens.detail import DetailScreen
from polylog_console.ui.widgets.logs import ActivityTable
from tests.test_ui_support import append, frozen, make_app, screen_text, start, terminal_output, wait_for

HOSTILE = [
    "[bold red]x[/]",
    "[@click=app.quit]click me",
    "a [/] b",
    "\x1b]52;c;QUFBQQ==\x07",
    "\x1b[2J\x1b[31mred\x9b1m\x00nul",
    "rtl\u202eevil",
]
# How each label reads on screen (controls and bidi overrides as visible escapes).
SHOWN = [
    "[bold red]x[/]",
    "[@click=app.quit]click me",
    "a [/] b",
    "\\x1b]52;c;QUFBQQ==\\x07",
    "\\x1b[2J\\x1b[31mred\\x9b1m\\x00nul",
    "rtl\\u202eevil",
]


def test_literal_and_fit_never_interpret():
    for raw, shown in zip(HOSTILE, SHOWN):
        assert literal(raw).plain == shown
        assert literal(raw).spans == []
        cell = fit(raw, 60)
        assert cell.rstrip() == shown
        assert not re.search("[\x00-\x1f\x7f-\x9f\u202e]", cell)


def hostile_workspace(root):
    incident = write_workspace(root, polyforms=200, checkpoints=10, drift_from=11)
    feed = root / "memory" / "coordination" / "context-brief.jsonl"
    lines = []
    for n, label in enumerate(HOSTILE, start=11):
        record = checkpoint(n, incident.stored_digest, START + (n - 1) * INTERVAL)
        record["label"] = label
        lines.append(json.dumps(record).encode())
    # A drifting checkpoint whose live state carries hostile namespaces and symbols (the diff).
    live = {ns: dict(table) for ns, table in incident.stored_state.items()}
    live["[red]ns"] = {"sig\x1b]0;title\x07": "\x1b[5m"}
    drift = checkpoint(20, "f" * 64, START + 19 * INTERVAL, registry_state=live)
    drift["label"] = "[@click=app.quit]"
    lines.append(json.dumps(drift).encode())
    lines.append(json.dumps({"kind": "[b]handoff\x1b[0m", "note": "x"}).encode())
    append(feed, lines)
    return incident


def no_raw_controls(output: str) -> None:
    """Only the app's own SGR and cursor sequences: no OSC/DCS, no BEL, no C1, no NUL."""
    stripped = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output)
    assert "\x1b" not in stripped, repr(stripped[stripped.index("\x1b") - 20:][:60])
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]", stripped)


async def test_hostile_labels_render_literally(tmp_path):
    hostile_workspace(tmp_path / "ws")
    app = make_app(tmp_path / "ws", clock=frozen(START + 20 * INTERVAL))
    async with app.run_test(size=(160, 48)) as pilot:
        await start(pilot)
        await wait_for(pilot, lambda: app.diff_state.diff is not None, what="the diff")
        await pilot.pause(0.1)
        text = screen_text(app)
        for shown in SHOWN:
            assert shown[:24] in text, shown
        assert "\\x1b[5m" in text  # the hostile symbol in the diff
        assert "[red]ns" in text  # the hostile namespace
        no_raw_controls(terminal_output(app))
        # Nothing is a link or an action: no segment carries @click meta or a hyperlink.
        for strip in app.screen._compositor.render_strips():
            for segment in strip:
                assert isinstance(segment, Segment)
                style = segment.style
                if style is not None:
                    assert not style.link
                    assert "@click" not in str(style.meta or {})
        # The activity log shows the hostile entry kind literally too.
        assert any("[b]handoff\x1b[0m" in a.message for a in app.query_one(ActivityTable).items)
        assert "[b]handoff\\x1b[0m" in text
        # The detail view of the hostile checkpoint.
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen), what="the detail view")
        await pilot.pause(0.05)
        detail = screen_text(app)
        assert "[@click=app.quit]" in detail
        shown = app.screen.query_one("#detail-json", Static).content
        assert isinstance(shown, Content) and not shown.spans
        assert '"sig\\u001b]0;title\\u0007": "\\u001b[5m"' in shown.plain  # JSON escapes, literally
        no_raw_controls(terminal_output(app))
        await pilot.press("escape")
        # Clicking where the [@click=app.quit] label is does not quit the app.
        await pilot.click("#checkpoint-table", offset=(20, 10))
        await pilot.pause(0.05)
        assert app.return_code is None and app.is_running
