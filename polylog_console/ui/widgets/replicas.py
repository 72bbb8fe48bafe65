"""Replica parity: one row per configured replica, from the last ``verify replicas`` report. A
report checked against a stored digest that is no longer the current one is shown stale ("◷ was
✔ match") until the re-check arrives."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from polylog_console.core.monitor.rules import format_age
from polylog_console.ui.widgets.checkpoints import latency
from polylog_console.ui.widgets.linetable import Cell, Column, LineTable

STATUS = {
    "match": ("✔ match", "ok"),
    "drift": ("✘ drift", "drift"),
    "scheme mismatch": ("≈ scheme", "stale"),
    "inconsistent": ("✘ inconsistent", "drift"),
    "unreachable": ("✘ unreachable", "drift"),
    "error": ("✘ error", "drift"),
}


class ReplicaTable(LineTable):
    COLUMNS = (
        Column("name", 10, flex=1),
        Column("digest", 12, min_width=76, wide=64),
        Column("match", 14),
        Column("latency", 8, "right"),
        Column("checked", 8, "right", min_width=90),
        Column("error", 10, flex=3),
    )
    EMPTY = "not checked yet: press the verify-replicas key"
    FILTER_FIELDS: ClassVar[dict[str, str]] = {"match": "match", "m": "match", "name": "name", "status": "status"}

    def row_fields(self, index: int) -> tuple[dict[str, str], str]:
        r = self.results[index]
        match = "unknown" if r.match is None else "yes" if r.match else "no"
        return ({"match": match, "name": r.name, "status": r.status},
                f"{r.name} {r.digest or ''} {r.status} {r.error or ''}")

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.results: Sequence[Any] = ()
        self.checked_at: float | None = None  # by the console's clock, when the report arrived
        self.now: float = 0.0
        self.stale: str | None = None  # why the results shown are stale, None when current

    def row_count(self) -> int:
        return len(self.results)

    def row_cells(self, index: int) -> Sequence[Cell]:
        r = self.results[index]
        badge, style = STATUS.get(r.status, (f"? {r.status}", "none"))
        checked = f"{format_age(self.now - self.checked_at)} ago" if self.checked_at is not None else "—"
        if self.stale:
            badge, style = f"◷ was {badge}", "stale"
        digest = r.digest or "—"
        return ((r.name, "bold"), (digest if self.wide else digest[:12], "dim"), (badge, style),
                (latency(r.latency_ms), "dim"), (checked, "dim"), (r.error or "", "error" if r.error else ""))

    def show(self, results: Sequence[Any], checked_at: float | None, now: float, note: str | None = None) -> None:
        self.results = results
        self.stale = None
        self.checked_at = checked_at
        self.now = now
        if note:
            self.empty_message = note
        parent = self.parent
        if parent is not None:
            parent.border_subtitle = None
        self.reset()

    def mark_stale(self, why: str) -> None:
        self.stale = why
        self.empty_message = why
        parent = self.parent
        if parent is not None:
            parent.border_subtitle = why
        self.invalidate_rows()

    def tick(self, now: float) -> None:
        """Time passed: repaint only if the "checked ... ago" shown changed."""
        at = self.checked_at
        changed = at is not None and self.results and format_age(now - at) != format_age(self.now - at)
        self.now = now
        if changed:
            self.refresh()
