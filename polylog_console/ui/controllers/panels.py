"""Which panel is shown (compact layout: tabs) and which has the focus.

The tabs and the panels have one source of truth, :attr:`Panels.active`. Showing a panel sets the
tab; the tab's own ``TabActivated`` message arrives later, and is honoured only if that tab is
still the active one (issue 11: ``]`` ``]`` pressed quickly had the first, late message re-apply a
stale tab, so that underline and content disagreed).
"""

from __future__ import annotations

import contextlib
from typing import Any

from textual.css.query import NoMatches
from textual.widget import Widget
from textual.widgets import Tab, Tabs

from polylog_console.ui.layout import PANEL_IDS, PANEL_TITLES, PANELS, TABLE_OF
from polylog_console.ui.widgets.linetable import LineTable

PANELS_SHORT = dict(PANELS)
FOCUS_MARK = "▶ "  # in the focused panel's title: focus is never shown by colour alone


class Panels:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.active = "checkpoints"

    def show(self, panel_id: str, focus: bool = True) -> None:
        app = self.app
        self.active = panel_id
        for pid in PANEL_IDS:
            app.query_one(f"#{pid}").set_class(pid == panel_id, "-active")
        tabs = app.query_one("#panel-tabs", Tabs)
        if tabs.active != f"tab-{panel_id}":
            tabs.active = f"tab-{panel_id}"
        if focus:
            table = self.table(panel_id)
            if table is not None:
                table.focus()
        app.panel_shown(panel_id)
        self.mark_focus()

    def step(self, delta: int) -> None:
        ids = list(PANEL_IDS)
        current = self.focused() or self.active
        self.show(ids[(ids.index(current) + delta) % len(ids)])

    def tab_activated(self, tabs: Tabs, tab_id: str | None) -> None:
        panel_id = (tab_id or "tab-checkpoints").removeprefix("tab-")
        if tab_id != tabs.active:
            return  # a late message for a tab that is no longer the active one
        if panel_id != self.active:
            self.show(panel_id, focus=False)

    def table(self, panel_id: str) -> LineTable | None:
        try:
            return self.app.query_one(f"#{TABLE_OF[panel_id]}", LineTable)
        except (NoMatches, KeyError):
            return None

    def mark_focus(self) -> None:
        """The focused panel's title carries the focus mark; the others do not."""
        focused = self.focused()
        for pid in PANEL_IDS:
            try:
                panel = self.app.query_one(f"#{pid}")
            except NoMatches:
                return
            title = PANEL_TITLES[pid]
            table = self.table(pid)
            status = table.filter_status() if table is not None else None
            if status:
                title = f"{title} · {status}"
            tab_label = PANELS_SHORT[pid] + (f" · {status}" if status and pid == self.active else "")
            title = f"{FOCUS_MARK}{title}" if pid == focused else title
            if panel.border_title != title:
                panel.border_title = title
            with contextlib.suppress(NoMatches):  # compact layout: the tab says it too
                tab = self.app.query_one(f"#tab-{pid}", Tab)
                if str(tab.label) != tab_label:
                    tab.label = tab_label

    def focused(self) -> str | None:
        """The panel holding the focus (None: the focus is elsewhere, e.g. in a filter box)."""
        widget: Widget | None = self.app.focused
        while widget is not None:
            if widget.id in PANEL_IDS:
                return widget.id
            parent = widget.parent
            widget = parent if isinstance(parent, Widget) else None
        return None

    def current(self) -> str:
        """The panel the operator is looking at: the focused one, else the one shown."""
        return self.focused() or self.active

    def current_table(self) -> LineTable | None:
        return self.table(self.current())
