"""Triage from the keyboard (issue 15): filtering any panel (``/``), jumping between matches
(``n``/``N``), wide columns (``w``), the active-alert list (``A``, or a click on the banner's
"+N more") with the sinks that delivered each alert, and the message history (``M``)."""

from __future__ import annotations

from collections import deque
from typing import Any

from polylog_console.ui.keymap import key_display
from polylog_console.ui.layout import PANEL_TITLES
from polylog_console.ui.screens.detail import DetailScreen
from polylog_console.ui.widgets.checkpoints import clock_time
from polylog_console.ui.widgets.diff import DiffPanel
from polylog_console.ui.widgets.linetable import LineTable
from polylog_console.ui.widgets.rowfilter import RowFilter

MESSAGES_KEPT = 500
DELIVERIES_KEPT = 1000  # alert conditions whose deliveries are remembered (then forgotten at once)


class Triage:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.wide = False
        self.messages: deque[tuple[float, str, str, str]] = deque(maxlen=MESSAGES_KEPT)  # at, severity, title, text
        self.deliveries: dict[str, list[str]] = {}  # dedup key -> sinks that delivered it

    # -- filtering -----------------------------------------------------------------------------------

    def open_filter(self) -> None:
        """``/``: filter the focused panel (the diff has its own box, with its counts)."""
        app = self.app
        panel = app.panels.current()
        if panel == "diff":
            app.show_panel("diff", focus=False)
            app.query_one(DiffPanel).open_filter(app.diff.query)
            return
        table = app.panels.table(panel)
        if table is None:
            return
        app.show_panel(panel, focus=False)
        current = table.query.query if table.query is not None else ""
        app.query_one(RowFilter).open_for(panel, PANEL_TITLES[panel], current, table)

    def filter_typed(self, value: str) -> None:
        app = self.app
        box = app.query_one(RowFilter)
        table = app.panels.table(box.panel) if box.panel else None
        if table is not None:
            box.border_subtitle = table.set_query(value)  # a query it cannot understand: why, in the box
            app.panels.mark_focus()

    def find(self, direction: int) -> None:
        app = self.app
        table = app.panels.current_table()
        if table is None or table.last_query is None:
            app.say("nothing to look for: / sets a filter, and n / N find its matches")
            return
        if not table.find(direction):
            app.say(f"no row matches {table.last_query.query}")

    def toggle_wide(self) -> None:
        self.wide = not self.wide
        for table in self.app.query(LineTable):
            table.set_wide(self.wide)
        self.app.say("wide columns: " + ("on (digests in full)" if self.wide else "off"))

    # -- alerts and messages -------------------------------------------------------------------------------

    def note_delivery(self, dedup_key: str, sink: str) -> None:
        """A sink delivered an alert (the session's delivery events): the alert list shows it."""
        if len(self.deliveries) > DELIVERIES_KEPT:
            self.deliveries.clear()
        sinks = self.deliveries.setdefault(dedup_key, [])
        if sink not in sinks:
            sinks.append(sink)

    def delivered_sinks(self) -> dict[str, list[str]]:
        return {key: ["dashboard", *sinks] for key, sinks in self.deliveries.items()}

    def open_alerts(self) -> None:
        from polylog_console.ui.screens.alerts import AlertsScreen

        app = self.app
        view = app.session.monitor.snapshot()
        app.push_screen(AlertsScreen(app.dashboard.active, getattr(view, "incident", None), app.clock(),
                                     self.delivered_sinks()))

    def remember(self, at: float, severity: str, title: str, message: str) -> None:
        self.messages.append((at, severity, title, message))

    def open_messages(self) -> None:
        app = self.app
        lines = [f"{clock_time(at)}Z  {severity:<11} {title + ': ' if title else ''}{message}"
                 for at, severity, title, message in self.messages]
        text = "\n".join(lines) if lines else "no notification yet"
        key = app.keymap.key_for("copy")
        app.push_screen(DetailScreen(f"Message history ({len(lines)})", text, key,
                                     key_display(key) if key else None, what="the message history"))
