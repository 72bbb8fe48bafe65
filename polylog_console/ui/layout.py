"""The console's screen layout: its panels in order, when they become tabs, the main screen."""

from __future__ import annotations

import os
from typing import Any, ClassVar

from textual.binding import Binding, BindingType
from textual.screen import Screen

# The panels in their order: the number keys 1-5 and tab / shift+tab follow it.
PANELS = (("checkpoints", "Checkpoints"), ("diff", "Diff"), ("replicas", "Replicas"), ("activity", "Activity"),
          ("errors", "Errors"))
PANEL_IDS = tuple(pid for pid, _ in PANELS)
PANEL_TITLES = {"checkpoints": "Checkpoints", "diff": "Symbol diff", "replicas": "Replica parity",
                "activity": "Activity", "errors": "Ingest errors"}
TABLE_OF = {"checkpoints": "checkpoint-table", "diff": "diff-table", "replicas": "replica-table",
            "activity": "activity-table", "errors": "error-table"}
COMPACT_WIDTH = 120  # below this (or COMPACT_HEIGHT) panels become tabs
COMPACT_HEIGHT = 32


def is_compact(width: int, height: int) -> bool:
    """Tabs instead of side-by-side panels (80x24 and other small terminals)."""
    return width < COMPACT_WIDTH or height < COMPACT_HEIGHT


def workspace_label(root: os.PathLike[str] | str) -> str:
    text = str(root)
    home = os.path.expanduser("~")
    if home not in ("", "/") and (text == home or text.startswith(home + os.sep)):
        text = "~" + text[len(home):]
    return text


class MainScreen(Screen[None]):
    """The console's one screen (modal screens go over it). Tab and shift+tab move between the
    panels in their order (showing each in the compact layout), as the number keys do."""

    AUTO_FOCUS = "#checkpoint-table"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("tab", "app.run('next_panel')", "Next panel", show=False),
        Binding("shift+tab", "app.run('prev_panel')", "Previous panel", show=False),
    ]

    def on_resize(self, event: Any) -> None:
        compact = is_compact(*self.app.size)
        if self.has_class("-compact") != compact:
            self.set_class(compact, "-compact")
