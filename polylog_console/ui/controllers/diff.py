"""The symbol-diff panel: which diff to show (decided in core by
:mod:`polylog_console.core.registry.diff_view`). The monitor is asked on the event loop (its own
thread): a cached diff is shown at once; otherwise it hands out a job over immutable inputs, the
job runs on a worker thread, and its result goes back into the monitor's cache on the loop (issue
11: the worker used to call the monitor itself and mutated its cache while the loop used it)."""

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
        monitor = app.session.monitor
        query = self.query
        cached = monitor.cached_diff(cp)
        if cached is not None:
            self.show(diff_view.present(cp.display_label, cached[0], cached[1], query))
            return
        job = monitor.diff_job(cp)
        if job is None:
            self.show(DiffView(note="waiting for the stored registry…"))
            self.key = None
            return
        self.show(DiffView(note=f"computing the diff for {cp.display_label}…"))
        cache_key, compute = job
        runner, label = app.runner, cp.display_label

        def work() -> None:
            diff, error = compute()
            runner.tell(DiffReady(key, diff_view.present(label, diff, error, query), (cache_key, diff, error)))

        app.run_worker(work, thread=True, group="diff", exclusive=True, exit_on_error=False)

    def ready(self, message: DiffReady) -> None:
        if message.result is not None:  # into the monitor's cache, on its own thread
            cache_key, diff, error = message.result
            self.app.session.monitor.store_diff(cache_key, diff, error)
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
