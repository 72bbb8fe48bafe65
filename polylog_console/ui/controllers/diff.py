"""The symbol-diff panel: which diff to show (decided in core by
:mod:`polylog_console.core.registry.diff_view`), computed on a worker thread from immutable inputs
taken on the event loop (the stored view, the checkpoint, the workspace): the worker never touches
the monitor (issue 11: it mutated the monitor's diff cache while the loop used it)."""

from __future__ import annotations

import contextlib
from typing import Any

from textual.css.query import NoMatches

from polylog_console.core.registry import diff_view
from polylog_console.core.registry.diff_view import DiffView
from polylog_console.ui.messages import DiffReady
from polylog_console.ui.widgets.diff import DiffPanel

INLINE_FILTER_LIMIT = 50_000  # diffs larger than this are filtered in a worker thread


class DiffController:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.state = DiffView()
        self.query = ""
        self.key: tuple[Any, ...] | None = None

    def update(self, view: Any) -> None:
        """The monitor's view changed: recompute the diff if the situation did."""
        key = diff_view.situation(view)
        if key == self.key:
            return
        self.key = key
        text = diff_view.note(key)
        if text is not None:
            self.show(DiffView(note=text))
            return
        app = self.app
        cp = diff_view.source(view.latest, app.timeline.find_back)
        stored = app.session.stored.peek()  # immutable once loaded
        if stored is None or stored.digest != view.stored_digest:
            self.show(DiffView(note="waiting for the stored registry…"))
            self.key = None
            return
        self.show(DiffView(note=f"computing the diff for {cp.display_label}…"))
        query, ws, runner = self.query, app.ws, app.runner

        def work() -> None:
            runner.tell(DiffReady(key, diff_view.compute(stored, cp, ws, query)))

        app.run_worker(work, thread=True, group="diff", exclusive=True, exit_on_error=False)

    def ready(self, message: DiffReady) -> None:
        if message.key == self.key:
            self.show(message.state)

    def show(self, state: DiffView) -> None:
        self.state = state
        with contextlib.suppress(NoMatches):  # closing
            self.app.query_one(DiffPanel).show(state)

    @property
    def large(self) -> bool:
        return self.state.diff is not None and self.state.diff.total > INLINE_FILTER_LIMIT

    def apply_filter(self, query: str) -> None:
        self.query = query = query.strip()
        state = self.state
        if self.large:
            key, runner = self.key, self.app.runner

            def work() -> None:
                runner.tell(DiffReady(key, diff_view.filtered(state, query)))

            self.app.run_worker(work, thread=True, group="diff-filter", exclusive=True, exit_on_error=False)
        else:
            self.show(diff_view.filtered(state, query))
