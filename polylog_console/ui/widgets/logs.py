"""The activity log and the ingest-error list: bounded, newest at the bottom."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import ClassVar

from polylog_console.core.feed.records import FieldWarning, IngestError
from polylog_console.core.monitor.activity import Activity
from polylog_console.ui.badges import LEVEL_STYLE, LEVEL_SYMBOL
from polylog_console.ui.widgets.checkpoints import clock_time
from polylog_console.ui.widgets.linetable import Cell, Column, LineTable


class ActivityTable(LineTable):
    COLUMNS = (
        Column("time", 8),
        Column("", 1),
        Column("what", 8),
        Column("message", 20, flex=1),
    )
    EMPTY = "no activity yet"
    FILTER_FIELDS: ClassVar[dict[str, str]] = {"kind": "kind", "k": "kind", "level": "level"}

    def row_fields(self, index: int) -> tuple[dict[str, str], str]:
        a = self.items[index]
        return {"kind": a.kind, "level": a.level}, f"{clock_time(a.at)} {a.kind} {a.message}"

    def __init__(self, limit: int = 2000, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.items: deque[Activity] = deque(maxlen=limit)
        self.added = 0

    def row_key(self, index: int) -> object:
        return self.added - len(self.items) + index

    def row_count(self) -> int:
        return len(self.items)

    def row_cells(self, index: int) -> Sequence[Cell]:
        a = self.items[index]
        style = LEVEL_STYLE.get(a.level, "")
        return ((clock_time(a.at), "dim"), (LEVEL_SYMBOL.get(a.level, "·"), style), (a.kind, "dim"),
                (a.message, style if a.level in ("error", "warning") else ""))

    def add(self, items: Sequence[Activity]) -> None:
        if not items:
            return
        at_end = self.cursor < 0 or self.cursor >= self.shown_count() - 1
        before = len(self.items)
        self.items.extend(items)
        self.added += len(items)
        removed = before + len(items) - len(self.items)
        self.rows_changed(removed_front=removed, follow=at_end)
        if not at_end:
            self.stick_to_end = False


class ErrorTable(LineTable):
    """Ingest errors (lines that are not checkpoints or entries) and checkpoint field warnings."""

    COLUMNS = (
        Column("line", 8, "right"),
        Column("kind", 9),
        Column("field", 12),
        Column("reason", 20, flex=1),
    )
    EMPTY = "no ingest errors"
    FILTER_FIELDS: ClassVar[dict[str, str]] = {"kind": "kind", "k": "kind", "field": "field", "line": "line"}

    def row_fields(self, index: int) -> tuple[dict[str, str], str]:
        item = self.items[index]
        kind = "error" if isinstance(item, IngestError) else "warning"
        field = "" if isinstance(item, IngestError) else item.field
        line = "" if item.line is None else str(item.line)
        return {"kind": kind, "field": field, "line": line}, f"{line} {kind} {field} {item.reason}"

    def __init__(self, limit: int = 2000, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.items: deque[IngestError | FieldWarning] = deque(maxlen=limit)
        self.total = 0

    def row_count(self) -> int:
        return len(self.items)

    def row_key(self, index: int) -> object:
        return self.total - len(self.items) + index

    def row_cells(self, index: int) -> Sequence[Cell]:
        item = self.items[index]
        line = "—" if item.line is None else f"{item.line:,}"
        if isinstance(item, IngestError):
            return ((line, ""), ("✘ error", "drift"), ("—", "dim"), (item.reason, ""))
        return ((line, ""), ("⚠ warning", "stale"), (item.field, ""), (item.reason, ""))

    def add(self, items: Sequence[IngestError | FieldWarning]) -> None:
        if not items:
            return
        at_end = self.cursor < 0 or self.cursor >= self.shown_count() - 1
        before = len(self.items)
        self.items.extend(items)
        self.total += len(items)
        removed = before + len(items) - len(self.items)
        self.rows_changed(removed_front=removed, follow=at_end)
        if not at_end:
            self.stick_to_end = False
