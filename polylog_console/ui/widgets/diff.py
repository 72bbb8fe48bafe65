"""The symbol diff panel: totals, counts per namespace, and the (filterable) list of differences."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import Input, Static

from polylog_console.core.registry.diff_view import DiffView
from polylog_console.core.registry.filter import DiffRow
from polylog_console.ui.safe import literal
from polylog_console.ui.widgets.linetable import Cell, Column, LineTable

KIND_STYLE = {"missing": ("− missing", "drift"), "unexpected": ("+ unexpected", "stale"),
              "mismatched": ("≠ mismatched", "warning")}


DiffState = DiffView  # what the panel shows, decided in core (polylog_console.core.registry.diff_view)


class FilterCleared(Message):
    """esc in the diff's filter box, or on a filtered diff: clear the filter."""


class FilterInput(Input):
    """The diff filter's input: escape clears the filter and closes the box (enter keeps it)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Clear the filter", show=False)]

    def action_close(self) -> None:
        panel = self.parent
        if isinstance(panel, DiffPanel):
            self.post_message(FilterCleared())
            panel.close_filter()


class DiffTable(LineTable):
    COLUMNS = (
        Column("kind", 12),
        Column("namespace", 10),
        Column("signature", 12, flex=4),
        Column("stored", 6, flex=1),
        Column("live", 6, flex=1),
    )
    EMPTY = "no differences"

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.rows: Sequence[DiffRow] = ()
        self.filtered = False  # the diff's own filter is applied (esc clears it)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "clear_filter":
            return self.filtered
        return True

    def action_clear_filter(self) -> None:
        self.post_message(FilterCleared())

    def row_count(self) -> int:
        return len(self.rows)

    def row_key(self, index: int) -> object:
        return index  # the rows are replaced as a whole (reset() forgets the cached lines)

    def row_cells(self, index: int) -> Sequence[Cell]:
        kind, ns, sig, stored, live = self.rows[index]
        label, style = KIND_STYLE.get(kind, (kind, ""))
        return ((label, style), (ns, ""), (sig, "dim"), (stored if stored is not None else "—", ""),
                (live if live is not None else "—", ""))


class DiffPanel(Vertical):
    DEFAULT_CSS = """
    DiffPanel #diff-summary { height: auto; max-height: 5; }
    DiffPanel #diff-filter { display: none; }
    DiffPanel.-filtering #diff-filter { display: block; }
    """

    def compose(self) -> ComposeResult:
        yield Static(id="diff-summary")
        yield FilterInput(placeholder="filter: words, kind:missing, ns:megas (enter to apply, esc to close)",
                          id="diff-filter")
        yield DiffTable(id="diff-table")

    def show(self, state: DiffState) -> None:
        self.query_one("#diff-summary", Static).update(summary(state))
        table = self.query_one(DiffTable)
        table.rows = state.rows
        table.filtered = bool(state.query)
        table.empty_message = "no difference matches the filter" if state.query else (
            state.note if state.diff is None else "no differences")
        table.reset()

    def open_filter(self, query: str) -> None:
        self.add_class("-filtering")
        box = self.query_one("#diff-filter", Input)
        box.value = query
        box.focus()

    def close_filter(self) -> None:
        self.remove_class("-filtering")
        self.query_one(DiffTable).focus()


def summary(state: DiffState) -> Content:
    if state.diff is None:
        return literal(state.note, "$text-muted")
    d = state.diff
    parts: list[Content | str | tuple[str, str]] = [
        ("− missing ", "bold"), (f"{d.missing:,}", "bold $error"), "   ",
        ("+ unexpected ", "bold"), (f"{d.unexpected:,}", "bold $warning"), "   ",
        ("≠ mismatched ", "bold"), (f"{d.mismatched:,}", "bold $warning"), "   ",
        ("live state: ", "$text-muted"), literal(state.checkpoint or "?"),
    ]
    for ns, counts in d.per_namespace().items():
        parts += ["\n", literal(f"{ns}: ", "bold"),
                  f"missing {counts['missing']:,} · unexpected {counts['unexpected']:,} · "
                  f"mismatched {counts['mismatched']:,}"]
    if state.query or state.error:
        parts += ["\n", ("filter ", "$text-muted"), literal(state.query or "")]
        if state.error:
            parts += ["  ", literal(state.error, "$error")]
        else:
            shown = f"{len(state.rows):,}{'+' if state.truncated else ''}"
            parts += [("  ", ""), (f"{shown} of {d.total:,} shown", "$text-muted")]
    return Content.assemble(*parts)
