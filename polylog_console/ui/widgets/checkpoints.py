"""The live checkpoints table: a window over :class:`polylog_console.core.monitor.timeline.Timeline`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import ClassVar

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
        Column("polygons", 8, "right", narrow_only=True),
        Column("chunks", 6, "right", narrow_only=True),
        Column("refs", 4, "right", min_width=70, narrow_only=True),
        Column("digest", 12, flex=1, wide=64),
        Column("match", 8),
        Column("latency", 9, "right", min_width=84, narrow_only=True),
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
            (cp.digest if self.wide else cp.digest[:12],
             "drift" if row.match is False and not row.scheme_mismatch else "dim"),
            (badge, style),
            (latency(row.latency_ms), "dim"),
        )

    def row_key(self, index: int) -> object:
        return self.timeline.first_seq + index  # a seq names the same checkpoint for as long as it is held

    # "/" here: match:yes|no|scheme|unknown, label:, digest: (prefixes), time:HH:MM; words search
    # label, digest and time.
    FILTER_FIELDS: ClassVar[dict[str, str]] = {"match": "match", "m": "match", "label": "label", "l": "label",
                                               "digest": "digest", "d": "digest", "time": "time", "t": "time"}

    def row_fields(self, index: int) -> tuple[dict[str, str], str]:
        row = self.timeline.row(self.timeline.first_seq + index)
        if row is None:
            return {}, ""
        cp = row.checkpoint
        match = "unknown" if row.match is None else "yes" if row.match else "scheme" if row.scheme_mismatch else "no"
        label, time = cp.display_label, clock_time(cp.timestamp)
        return {"match": match, "label": label, "digest": cp.digest, "time": time}, f"{label} {cp.digest} {time}"

    def selected_seq(self) -> int | None:
        index = self.selected_index
        if index < 0 or index >= len(self.timeline):
            return None
        return self.timeline.first_seq + index

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
