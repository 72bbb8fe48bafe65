"""A table that renders only the rows in view (Textual's Line API), for lists that may be long or
endless: checkpoints, diff rows, replicas, activity, ingest errors.

Why not DataTable: it parses ``str`` cells as markup, re-lays the whole table on every ``add_row``
and ``remove_row`` costs ~20 ms per row at 10,000 rows. Here a subclass supplies ``row_count()``
and ``row_cells(index)`` (raw values and a style name per cell); every value is made safe and cut
to its column by :func:`polylog_console.ui.safe.fit`, and only visible lines are ever built.

Line 0 is a sticky header; the cursor row is highlighted; columns with ``min_width`` disappear on
narrow screens, and ``flex`` columns share the spare width.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.segment import Segment
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from polylog_console.core.registry.filter import RowQuery
from polylog_console.ui.compat import set_scroll_extent
from polylog_console.ui.safe import fit

STYLE_NAMES = ("ok", "drift", "stale", "none", "dim", "error", "warning", "accent", "bold")


@dataclass(frozen=True)
class Column:
    title: str
    width: int  # cells (the minimum, for a flex column)
    align: str = "left"
    flex: int = 0  # share of the spare width
    min_width: int = 0  # hide the column when the table is narrower than this
    wide: int = 0  # its width in wide mode (w), when wider than ``width``
    narrow_only: bool = False  # hidden in wide mode, to make room for the wide columns


Cell = tuple[object, str]  # (untrusted value, style name or "")


class LineTable(ScrollView, can_focus=True):
    """Base class; see the module docstring."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"linetable--header", "linetable--cursor", "linetable--empty",
                         *(f"linetable--{name}" for name in STYLE_NAMES)}

    DEFAULT_CSS = """
    LineTable { height: 1fr; scrollbar-size-vertical: 1; overflow-x: hidden; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "home", "Top", show=False),
        Binding("end", "end", "Bottom", show=False),
        # The conventions of the TUIs operators know (less, vim, k9s, lazygit): issue 15.
        Binding("j", "cursor(1)", "Down", show=False, id="row-down"),
        Binding("k", "cursor(-1)", "Up", show=False, id="row-up"),
        Binding("g", "home", "First row", show=False, id="row-first"),
        Binding("G", "end", "Newest row", show=False, id="row-last"),
        Binding("ctrl+d", "half_page(1)", "Half a page down", show=False, id="half-page-down"),
        Binding("ctrl+u", "half_page(-1)", "Half a page up", show=False, id="half-page-up"),
        Binding("escape", "clear_filter", "Clear the filter", show=False),
    ]

    COLUMNS: Sequence[Column] = ()
    EMPTY = "nothing to show"

    class CursorMoved(Message):
        def __init__(self, table: LineTable, index: int) -> None:
            super().__init__()
            self.table = table
            self.index = index

    class Unstuck(Message):
        """The cursor left the newest row: the table no longer follows new rows."""

        def __init__(self, table: LineTable) -> None:
            super().__init__()
            self.table = table

        @property
        def control(self) -> LineTable:
            return self.table

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.cursor = -1  # row index; -1: none
        self.empty_message = self.EMPTY
        self._layout: list[tuple[int, int, Column]] = []  # (column index, width, column)
        self._layout_width: tuple[int, bool] | None = None
        self._count = 0
        self.stick_to_end = False  # keep the newest row in view (and selected) as rows arrive
        self._lines: dict[object, Strip] = {}  # built lines, by (row key, width, cursor, focus, style)
        self._frame: tuple[Any, ...] | None = None  # styles of the frame: base, header, cursor, empty, names, focus
        self.query: RowQuery | None = None  # the filter applied (issue 15: "/" on any panel)
        self.last_query: RowQuery | None = None  # what n / N look for
        self.view: list[int] | None = None  # filtered: the row indices shown, in order
        self.wide = False  # truncated columns shown in full (w)

    # -- subclass interface ---------------------------------------------------------------------

    def row_count(self) -> int:
        raise NotImplementedError

    def row_cells(self, index: int) -> Sequence[Cell]:
        raise NotImplementedError

    # Filtering: subclasses name their fields (alias -> field) and give each row's values and text.
    FILTER_FIELDS: ClassVar[dict[str, str]] = {}

    def row_fields(self, index: int) -> tuple[dict[str, str], str]:
        """Row ``index``'s filterable fields and the text words are looked for in."""
        return {}, " ".join(str(value) for value, _ in self.row_cells(index))

    def shown_count(self) -> int:
        return len(self.view) if self.view is not None else self.row_count()

    def source_index(self, index: int) -> int:
        """The row index (in the data) of display row ``index``."""
        view = self.view
        if view is None:
            return index
        return view[index] if 0 <= index < len(view) else -1

    @property
    def selected_index(self) -> int:
        """The data index of the cursor's row, -1 when none."""
        return self.source_index(self.cursor) if self.cursor >= 0 else -1

    def _refilter(self) -> None:
        query = self.query
        if query is None:
            self.view = None
            return
        match, fields = query.matches, self.row_fields
        self.view = [i for i in range(self.row_count()) if match(*fields(i))]

    def set_query(self, text: str) -> str | None:
        """Filter the rows by ``text`` (empty: no filter); returns a one-line error, or None."""
        from polylog_console.core.registry.filter import FilterError, parse_row_query

        text = text.strip()
        if not text:
            self.clear_filter()
            return None
        try:
            query = parse_row_query(text, self.FILTER_FIELDS)
        except FilterError as exc:
            return str(exc)
        source = self.selected_index
        self.query = self.last_query = query
        self._lines.clear()
        self._refilter()
        self._after_view_change(source)
        return None

    def clear_filter(self) -> None:
        if self.query is None:
            return
        source = self.selected_index
        self.query = None
        self.view = None
        self._lines.clear()
        self._after_view_change(source)

    def _after_view_change(self, source: int) -> None:
        self._count = self.shown_count()
        self._set_virtual_rows(self._count + 1)
        if self.view is not None:
            index = next((n for n, i in enumerate(self.view) if i >= source), len(self.view) - 1) if source >= 0 else 0
        else:
            index = source
        self.cursor = min(max(-1, index), self._count - 1)
        if self.cursor >= 0:
            top = int(self.scroll_y)
            if not top <= self.cursor < top + self.page_rows:
                self.scroll_to(y=max(0, self.cursor - self.page_rows // 2), animate=False, immediate=True)
        else:
            self.scroll_to(y=0, animate=False, immediate=True)
        self.refresh()
        self.post_message(self.FilterChanged(self))

    def find(self, direction: int) -> bool:
        """Move to the next (1) or previous (-1) row matching the last query; False when none."""
        query = self.last_query
        count = self.shown_count()
        if query is None or not count:
            return False
        start = self.cursor if self.cursor >= 0 else (-1 if direction > 0 else count)
        for step in range(1, count + 1):
            index = (start + direction * step) % count
            if query.matches(*self.row_fields(self.source_index(index))):
                self.move_cursor(index)
                return True
        return False

    def filter_status(self) -> str | None:
        """``filtered: 3 of 5,000`` while a filter is applied."""
        if self.query is None:
            return None
        return f"filtered: {self.shown_count():,} of {self.row_count():,}"

    class FilterChanged(Message):
        def __init__(self, table: LineTable) -> None:
            super().__init__()
            self.table = table

    # -- data changes -------------------------------------------------------------------------------

    def rows_changed(self, *, removed_front: int = 0, added_front: int = 0, follow: bool = False) -> None:
        """Rows were appended at the end and/or removed or added at the front. Keeps the rows in
        view where they were (unless ``follow``: then the newest row is shown and selected)."""
        self._refilter()
        self._count = self.shown_count()
        self._set_virtual_rows(self._count + 1)
        shift = added_front - removed_front
        if self.view is not None:
            shift = 0  # a filtered view is rebuilt: the cursor stays on its display row
        if follow:
            self.stick_to_end = True
            self._to_end()
        elif shift:
            if self.cursor >= 0:
                self.cursor = min(max(0, self.cursor + shift), self._count - 1)
            self.scroll_to(y=max(0, self.scroll_y + shift), animate=False, immediate=True)
        elif self.cursor >= self._count:
            self.cursor = self._count - 1
        self.refresh()

    def _set_virtual_rows(self, rows: int) -> None:
        """Set the scroll extent without a layout pass of the whole screen. The table's height
        comes from its container, never from its rows, so a new row count changes only its own
        scrollbar; assigning ``virtual_size`` would re-lay and repaint every widget on screen
        (~30 ms at 160x48) ten times a second under a busy feed."""
        size = Size(self.size.width, rows)
        if size != self.virtual_size:
            set_scroll_extent(self, size)  # the scrollbar (shown or hidden: that one does re-lay)

    def _to_end(self) -> None:
        self.cursor = self._count - 1
        target = max(0, self._count + 1 - self.size.height)
        if self.size.height:
            self.scroll_to(y=target, animate=False, immediate=True)
        if not self.size.height or self.scroll_y < target:
            # ...again once the layout has settled (the panel may just have been resized).
            self.call_after_refresh(self._scroll_end)

    def _scroll_end(self, attempts: int = 8) -> None:
        if self.stick_to_end:
            self.cursor = self._count - 1
            target = max(0, self._count + 1 - self.size.height) if self.size.height else 0
            self.scroll_to(y=max(target, self.max_scroll_y), animate=False, immediate=True)
            self.refresh()
            if self.scroll_y < target and attempts:
                # the layout has not caught up with the new rows yet: once more after it has
                self.call_after_refresh(self._scroll_end, attempts - 1)

    def reset(self) -> None:
        self._lines.clear()
        self._refilter()
        self._count = self.shown_count()
        self.cursor = min(self.cursor, self._count - 1)
        self._set_virtual_rows(self._count + 1)
        self.scroll_to(y=0, animate=False, immediate=True)
        self.refresh()

    # -- cursor ---------------------------------------------------------------------------------------

    @property
    def page_rows(self) -> int:
        return max(1, self.size.height - 1)

    def move_cursor(self, index: int) -> None:
        count = self.shown_count()
        if count == 0:
            self.cursor = -1
            return
        index = min(max(0, index), count - 1)
        if index == self.cursor:
            return
        if index < count - 1 and self.stick_to_end:
            self.stick_to_end = False  # the operator looks at something: stop jumping to the newest row
            self.post_message(self.Unstuck(self))
        self.cursor = index
        top = int(self.scroll_y)
        if index < top:
            self.scroll_to(y=index, animate=False, immediate=True)
        elif index >= top + self.page_rows:
            self.scroll_to(y=index - self.page_rows + 1, animate=False, immediate=True)
        self.refresh()
        self.post_message(self.CursorMoved(self, index))

    def action_cursor(self, delta: int) -> None:
        if self.cursor < 0:
            self.move_cursor(int(self.scroll_y) if delta > 0 else int(self.scroll_y) + self.page_rows - 1)
        else:
            self.move_cursor(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self.move_cursor(max(0, self.cursor) + direction * self.page_rows)

    def action_half_page(self, direction: int) -> None:
        self.move_cursor(max(0, self.cursor) + direction * max(1, self.page_rows // 2))

    def action_home(self) -> None:
        self.move_cursor(0)

    def action_end(self) -> None:
        self.move_cursor(self.shown_count() - 1)

    def on_click(self, event: events.Click) -> None:
        if event.y >= 1:
            self.move_cursor(int(self.scroll_y) + event.y - 1)

    # -- rendering ------------------------------------------------------------------------------------

    def on_resize(self, event: events.Resize) -> None:
        self._count = self.shown_count()
        self.virtual_size = Size(event.size.width, self._count + 1)
        if self.stick_to_end:
            self.call_after_refresh(self._to_end)

    def _columns(self, width: int) -> list[tuple[int, int, Column]]:
        if (width, self.wide) == self._layout_width:
            return self._layout
        wide = self.wide
        shown = [(i, c) for i, c in enumerate(self.COLUMNS)
                 if width >= c.min_width and not (wide and c.narrow_only)]
        if wide:
            shown = [(i, Column(c.title, max(c.width, c.wide), c.align, c.flex)) for i, c in shown]
        used = sum(c.width for _, c in shown) + max(0, len(shown) - 1)
        spare = max(0, width - used)
        flex_total = sum(c.flex for _, c in shown)
        layout = []
        for i, c in shown:
            extra = spare * c.flex // flex_total if flex_total and c.flex else 0
            layout.append((i, c.width + extra, c))
        self._layout = layout
        self._layout_width = (width, wide)
        return layout

    def row_key(self, index: int) -> object:
        """A key that names row ``index``'s content for the line cache (None: do not cache)."""
        return None

    def set_wide(self, wide: bool) -> None:
        self.wide = wide
        self.invalidate_rows()

    def action_clear_filter(self) -> None:
        self.clear_filter()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "clear_filter":
            return self.query is not None  # esc on a filtered panel clears it; otherwise esc passes on
        return True

    def invalidate_rows(self) -> None:
        """Row contents changed in place: forget the cached lines."""
        self._lines.clear()
        self.refresh()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._lines.clear()  # the theme or the styles changed
        self._frame = None

    def _on_focus(self, event: events.Focus) -> None:
        super()._on_focus(event)
        self.refresh()

    def _on_blur(self, event: events.Blur) -> None:
        super()._on_blur(event)
        self.refresh()

    def render_lines(self, crop: Region) -> list[Strip]:
        # Styles are looked up once per frame, not once per cell (that lookup walks the DOM), and
        # the component styles only when the styles changed (a theme switch, focus).
        base = self.rich_style
        focused = self.has_focus
        frame = self._frame
        if frame is None or frame[0] != base or frame[5] != focused:
            names = {name: self.get_component_rich_style(f"linetable--{name}", partial=True) for name in STYLE_NAMES}
            self._frame = (base, self.get_component_rich_style("linetable--header"),
                           self.get_component_rich_style("linetable--cursor", partial=True),
                           self.get_component_rich_style("linetable--empty"), names, focused)
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        frame = self._frame
        if frame is None:
            return Strip.blank(width)
        base, header, cursor_style, empty, names, focused = frame
        layout = self._columns(width)
        if y == 0:
            segments = []
            for n, (_, w, col) in enumerate(layout):
                if n:
                    segments.append(Segment(" ", header))
                segments.append(Segment(fit(col.title, w, col.align), header))
            return Strip(segments).adjust_cell_length(width, header)
        index = int(self.scroll_y) + y - 1
        count = self._count
        if index >= count:
            if count == 0 and y == 1:
                return Strip([Segment(fit(self.empty_message, width), empty)]).adjust_cell_length(width, base)
            return Strip.blank(width, base)
        is_cursor = index == self.cursor
        source = self.view[index] if self.view is not None else index
        key = self.row_key(source)
        cache_key = (key, width, is_cursor, focused, base, self.wide)
        if key is not None:
            cached = self._lines.get(cache_key)
            if cached is not None:
                return cached
        cells = self.row_cells(source)
        row_style = base + cursor_style if is_cursor else base
        segments = []
        for n, (i, w, col) in enumerate(layout):
            if n:
                segments.append(Segment(" ", row_style))
            value, style_name = cells[i] if i < len(cells) else ("", "")
            style = row_style + names[style_name] if style_name else row_style
            if is_cursor and style_name:
                style = style + cursor_style
            segments.append(Segment(fit(value, w, col.align), style))
        strip = Strip(segments).adjust_cell_length(width, row_style)
        if key is not None:
            # A few screens' worth: the lines of rows long scrolled away are garbage to keep (each
            # strip holds dozens of objects the cyclic GC would walk again and again).
            if len(self._lines) > max(100, 3 * self.size.height):
                self._lines.clear()
            self._lines[cache_key] = strip
        return strip
