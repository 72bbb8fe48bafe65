"""The status line of running actions: one line each with its title, progress, elapsed time, its
last message and how to cancel it (docked above the footer)."""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, ProgressBar

from polylog_console.ui.safe import literal


class ActionRow(Horizontal):
    DEFAULT_CSS = """
    ActionRow { height: 1; }
    ActionRow > .title { width: auto; min-width: 12; padding: 0 1 0 0; text-style: bold; }
    ActionRow > ProgressBar { width: 24; }
    ActionRow > .message { width: 1fr; padding: 0 1; color: $text-muted; }
    ActionRow > .cancel { width: auto; color: $text-muted; }
    ActionRow > .elapsed { width: 7; color: $text-muted; text-align: right; padding: 0 1 0 0; }
    """

    def __init__(self, action_id: str, title: str, cancel_key: str) -> None:
        super().__init__(id=f"action-{action_id}")
        self.action_id = action_id
        self._title = title
        self._cancel_key = cancel_key
        self.started: float | None = None  # by the app's clock (a test's frozen clock stops it)
        self.shown_elapsed = ""

    def compose(self) -> ComposeResult:
        yield Label(literal(f"⟳ {self._title}"), classes="title")
        yield ProgressBar(total=None, show_eta=False, show_percentage=True)
        yield Label("0s", classes="elapsed")
        yield Label("", classes="message")
        yield Label(literal(f"{self._cancel_key} cancel"), classes="cancel")

    def _now(self) -> float:
        clock = getattr(self.app, "clock", None)
        return float(clock()) if callable(clock) else time.time()

    def on_mount(self) -> None:
        self.started = self._now()

    def tick(self) -> None:
        """Once a second: the elapsed time moves on (repainted only when it changes)."""
        if self.started is None:
            return
        seconds = max(0, int(self._now() - self.started))
        text = f"{seconds}s" if seconds < 60 else f"{seconds // 60}m{seconds % 60:02d}s"
        labels = self.query(".elapsed")
        if text != self.shown_elapsed and labels:  # (not composed yet: the next tick)
            self.shown_elapsed = text
            labels.first(Label).update(text)

    def set_progress(self, done: float, total: float | None, message: str) -> None:
        bar = self.query_one(ProgressBar)
        if total:
            bar.update(total=total, progress=min(done, total))
        if message:
            self.query_one(".message", Label).update(literal(message))

    def set_cancelling(self) -> None:
        self.query_one(".message", Label).update(literal("cancelling…", "bold $warning"))


class ActionBar(Vertical):
    DEFAULT_CSS = """
    ActionBar { height: auto; max-height: 4; background: $boost; display: none; }
    ActionBar.-busy { display: block; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.running: set[str] = set()

    def start(self, action_id: str, title: str, cancel_key: str) -> None:
        self.running.add(action_id)
        self.mount(ActionRow(action_id, title, cancel_key))
        self.add_class("-busy")

    def row(self, action_id: str) -> ActionRow | None:
        rows = self.query(f"#action-{action_id}")
        return rows.first(ActionRow) if rows else None

    def tick(self) -> None:
        for row in self.query(ActionRow):
            row.tick()

    def finish(self, action_id: str) -> None:
        row = self.row(action_id)
        self.running.discard(action_id)
        if row is not None:
            row.remove()
        if not self.running:
            self.remove_class("-busy")
