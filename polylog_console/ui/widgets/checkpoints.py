"""The live checkpoints table: a window over :class:`polylog_console.core.monitor.timeline.Timeline`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from textual import events
from textual.message import Message

from polylog_console.core.monitor.timeline import Timeline
from polylog_console.ui.badges import match_badge
from polylog_console.ui.widgets.linetable import Cell, Column, LineTable


def clock_time(ts: float | None) -> str:
    """``HH:MM:SS`` in UTC (the console shows every time in UTC, said in the header)."""
    if ts is None:
        return "—"
    try:
        return datetime.fromtimestamp(ts, tz=UTC).strftime("%H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return "?"


def latency(ms: float | None) -> str:
    if ms is None:
        return "—"
    if ms < 10:
        return f"{ms:.1f} ms"
    if ms < 10_000:
        return f"{ms:.0f} ms"
    return f"{ms / 1000:.0f} s"


def number(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


class CheckpointTable(LineTable):
    COLUMNS = (
        Column("time", 8),
        Column("label", 14, flex=3),
        Column("polygons", 8, "right"),
        Column("chunks", 6, "right"),
        Column("refs", 4, "right", min_width=70),
        Column("digest", 12, flex=1),
        Column("match", 8),
        Column("latency", 9, "right", min_width=84),
    )
    EMPTY = "no checkpoint yet: waiting for the feed"

    class NeedOlder(Message):
        """The view reached the oldest row held: page older history in, if there is any."""

    def __init__(self, timeline: Timeline, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.timeline = timeline
        self.more_history = True  # the feed may hold older checkpoints than the window

    def row_count(self) -> int:
        return len(self.timeline)

    def row_cells(self, index: int) -> Sequence[Cell]:
        row = self.timeline.row(self.timeline.first_seq + index)
        if row is None:
            return ()
        cp = row.checkpoint
        badge, style = match_badge(row.match, row.scheme_mismatch)
        return (
            (clock_time(cp.timestamp), "dim"),
            (cp.display_label, "warning" if cp.warnings else ""),
            (number(cp.polygons), ""),
            (number(cp.chunk_count), ""),
            (number(cp.module_refs), ""),
            (cp.digest[:12], "drift" if row.match is False and not row.scheme_mismatch else "dim"),
            (badge, style),
            (latency(row.latency_ms), "dim"),
        )

    def row_key(self, index: int) -> object:
        return self.timeline.first_seq + index  # a seq names the same checkpoint for as long as it is held

    def selected_seq(self) -> int | None:
        if self.cursor < 0 or self.cursor >= len(self.timeline):
            return None
        return self.timeline.first_seq + self.cursor

    # Reaching the top asks for older history (the app pages it in from the feed file).
    def _maybe_need_older(self) -> None:
        if self.more_history and len(self.timeline) and self.timeline.room() > 0:
            self.post_message(self.NeedOlder())

    def action_cursor(self, delta: int) -> None:
        at_top = self.cursor == 0
        super().action_cursor(delta)
        if delta < 0 and at_top:
            self._maybe_need_older()

    def action_page(self, direction: int) -> None:
        super().action_page(direction)
        if direction < 0 and self.cursor == 0:
            self._maybe_need_older()

    def action_home(self) -> None:
        super().action_home()
        self._maybe_need_older()

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        if self.stick_to_end:  # the operator scrolls back to look: stop following (f follows again)
            self.stick_to_end = False
            self.post_message(self.Unstuck(self))
        if self.scroll_y < 1:  # already at the top: the wheel asks for older history
            self._maybe_need_older()

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if new_value < 1 <= old_value:
            self._maybe_need_older()
