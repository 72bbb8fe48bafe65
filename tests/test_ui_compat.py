"""The private Textual APIs the console uses, all in :mod:`polylog_console.ui.compat`, checked
against the installed Textual (pinned in pyproject.toml to the versions tested): each private name
still exists and does what the console relies on, and each fallback gives the same answer."""

from __future__ import annotations

import string
import tomllib
from importlib.metadata import version
from pathlib import Path

import textual.keys
from textual.geometry import Size

from polylog_console.ui import compat
from tests.test_ui_support import make_app, start


def test_private_names_exist_in_the_pinned_textual():
    assert hasattr(textual.keys, "_character_to_key")
    from textual.app import App
    from textual.widget import Widget

    assert hasattr(Widget, "_scroll_update")
    assert "_driver" in App.__init__.__code__.co_names or hasattr(App, "_driver")


def test_character_key_fallback_agrees_with_textual(monkeypatch):
    expected = {c: compat.character_key(c) for c in string.punctuation + "aZ9"}
    assert expected["?"] == "question_mark" and expected["["] == "left_square_bracket" and expected["a"] == "a"
    monkeypatch.delattr(textual.keys, "_character_to_key")
    assert {c: compat.character_key(c) for c in expected} == expected


def test_textual_is_pinned_to_the_tested_minor_version():
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    spec = next(d for d in project["project"]["dependencies"] if d.replace(" ", "").startswith("textual"))
    major, minor = (int(p) for p in version("textual").split(".")[:2])
    assert f">={major}.{minor}" in spec.replace(" ", "") and f"<{major}.{minor + 1}" in spec.replace(" ", "")


async def test_terminal_write_and_scroll_extent(small_ws):
    app = make_app(small_ws.root)
    assert compat.write_to_terminal(app, "\x1b]52;c;\x07") is False  # no driver yet: nothing written
    async with app.run_test(size=(100, 30)) as pilot:
        await start(pilot)
        writes: list[str] = []
        original = app._driver.write
        app._driver.write = lambda data: (writes.append(data), original(data))  # the headless driver discards
        assert compat.write_to_terminal(app, "\x1b]52;c;eA==\x07") is True
        assert writes == ["\x1b]52;c;eA==\x07"]
        table = app.query_one("#checkpoint-table")
        compat.set_scroll_extent(table, Size(table.size.width, 500))
        assert table.virtual_size.height == 500
        assert table.max_scroll_y > 0
