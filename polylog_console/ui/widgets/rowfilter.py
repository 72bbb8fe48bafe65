"""The filter box of the panels other than the diff (``/``): live as you type; enter closes it and
keeps the filter; esc clears the filter and closes it (esc never cancels an action)."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Input


class RowFilter(Input):
    DEFAULT_CSS = """
    RowFilter { display: none; height: 3; }
    RowFilter.-open { display: block; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "clear", "Clear the filter", show=False),
                                             Binding("enter", "keep", "Keep the filter", show=False)]

    class Closed(Message):
        """The box closed (the filter kept or cleared)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(placeholder="filter: words, field:value (enter keeps it, esc clears it)", id=id)
        self.panel: str | None = None  # the panel filtered
        self.target: Any = None  # its table

    def open_for(self, panel: str, title: str, query: str, target: Any) -> None:
        self.panel = panel
        self.target = target
        self.border_title = f"filter {title}"
        self.value = query
        self.add_class("-open")
        self.focus()

    def close(self) -> None:
        """Close now and give the focus back to the table at once: keys typed right after enter
        (``/ match:no`` enter ``g``) reach the table, not the box."""
        self.remove_class("-open")
        if self.target is not None:
            self.screen.set_focus(self.target)
        self.post_message(self.Closed())

    def action_keep(self) -> None:
        self.close()

    def action_clear(self) -> None:
        if self.target is not None:
            self.target.clear_filter()
        self.close()
