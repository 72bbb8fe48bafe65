"""The feed's rows on screen: session events into the checkpoint timeline, the error and activity
tables; older history paged in on demand.

Events are applied in order. A checkpoint compared again (a recompute, a rehydrate) updates its
row instead of adding a copy (issue 11: every ``d`` and ``r`` appended another row for the latest
checkpoint); a truncated, rotated or recreated feed starts the table over, so that the rows shown
are the current file's. The widgets follow the models at most every ``FRAME`` seconds, so that a
fast feed cannot swamp the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from functools import partial
from typing import Any

from textual.css.query import NoMatches

from polylog_console.core.feed.records import Checkpoint
from polylog_console.core.model.errors import PolylogError
from polylog_console.core.model.events import CheckpointEvent, EntryEvent, FeedEvent, IngestErrorEvent
from polylog_console.core.monitor.activity import Activity, describe
from polylog_console.core.monitor.timeline import Row, Timeline, classify
from polylog_console.ui.messages import HistoryPaged
from polylog_console.ui.widgets.checkpoints import CheckpointTable
from polylog_console.ui.widgets.logs import ActivityTable, ErrorTable

FRAME = 0.1  # seconds: the widgets show new events at most this often
PAGE_BACK = 200  # checkpoints paged in per request
RESTART_KINDS = frozenset({"truncated", "rotated", "created"})  # the feed is a new file: rows start over


class History:
    def __init__(self, app: Any, timeline: Timeline) -> None:
        self.app = app
        self.timeline = timeline
        self._flush_pending = False
        self._flush_handle: asyncio.TimerHandle | None = None
        self._rows_pending = False
        self._changed_in_place = False
        self._restarted = False
        self._dropped = 0
        self._paging = False

    # -- session events ------------------------------------------------------------------------------

    def apply(self, events: list[Any]) -> None:
        app = self.app
        rows: list[Row] = []
        problems: list[Any] = []
        activity: list[Activity] = []
        feed_batch = False
        live = app.loaded
        now = app.clock()
        for event in events:
            kind = type(event)
            if kind is CheckpointEvent:
                feed_batch = True
                rows.append(Row.from_event(event, live))
                problems.extend(event.checkpoint.warnings)
                continue
            if kind is IngestErrorEvent:
                feed_batch = True
                problems.append(event.error)
            elif getattr(event, "event", None) == "delivery":
                if getattr(event, "outcome", None) == "delivered":
                    app.triage.note_delivery(event.dedup_key, event.sink)
            elif kind in (EntryEvent, FeedEvent):
                feed_batch = True
                if kind is FeedEvent:
                    app.feed_event(event)
                    if event.kind == "lines_indexed":  # line numbers of the history rows are known now
                        app.query_one(CheckpointTable).invalidate_rows()
                        continue
                    if event.kind in RESTART_KINDS:
                        self._take(rows)
                        rows = []
                        self.restart()
            item = describe(event, now)
            if item is not None:
                activity.append(item)
        self._take(rows)
        if problems:
            app.query_one(ErrorTable).add(problems)
        if activity:
            app.query_one(ActivityTable).add(activity)
        first = feed_batch and not app.loaded
        if feed_batch:
            app.mark_loaded()
        # The models are up to date; the widgets follow at most every FRAME seconds. The first
        # batch (the feed's history) is shown at once.
        if first or not app.loaded:
            self.flush()
        elif not self._flush_pending:
            # A plain event-loop timer: Textual timers cannot be made while the app is closing,
            # which is when the session hands over its last events.
            self._flush_pending = True
            self._flush_handle = asyncio.get_running_loop().call_later(FRAME, self.flush)

    def _take(self, rows: list[Row]) -> None:
        if not rows:
            return
        dropped, updated = self.timeline.add(rows)
        self._dropped += dropped
        self._changed_in_place |= updated
        self._rows_pending = True

    def restart(self) -> None:
        """The feed is another file now: forget the old file's rows (paging starts over too)."""
        self.timeline.clear()
        self._dropped = 0
        self._restarted = True
        self._rows_pending = True

    def flush(self) -> None:
        self._flush_pending = False
        app = self.app
        try:
            if self._rows_pending:
                self._rows_pending = False
                table = app.query_one(CheckpointTable)
                if self._restarted:
                    self._restarted = False
                    self._dropped = 0
                    table.more_history = True
                    table.reset()
                dropped, self._dropped = self._dropped, 0
                if self._changed_in_place:
                    self._changed_in_place = False
                    table.invalidate_rows()
                table.rows_changed(removed_front=dropped, follow=app.following)
                app.rows_shown()
            app.refresh_status()
        except NoMatches:  # closing
            pass

    def close(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()

    # -- older history ---------------------------------------------------------------------------------

    def need_older(self) -> None:
        app = self.app
        follower = app.session.follower
        oldest = self.timeline.oldest
        if self._paging or follower is None or oldest is None or not hasattr(follower, "page_back"):
            return
        self._paging = True
        stored = app.session.stored.peek()
        before = oldest.checkpoint.offset
        count = min(PAGE_BACK, self.timeline.room())
        app.run_worker(partial(self._page_back, follower, before, count, stored), thread=True, group="page-back",
                       exit_on_error=False)

    def _page_back(self, follower: Any, before: int, count: int, stored: Any) -> None:
        """Worker thread: reads the feed file (the follower's page_back is made for this) and
        classifies against the stored view handed over; posts the rows."""
        rows: list[Row] = []
        error = None
        try:
            records = follower.page_back(before, count)
            digest = stored.digest if stored is not None else None
            other = None
            for record in records:
                if isinstance(record, Checkpoint):
                    if digest is not None and other is None and record.digest != digest:
                        with contextlib.suppress(PolylogError):
                            other = stored.other_digest
                    rows.append(classify(record, digest, other))
        except (PolylogError, OSError) as exc:
            error = str(exc)
        self.app.runner.tell(HistoryPaged(rows, error))

    def paged(self, message: HistoryPaged) -> None:
        self._paging = False
        app = self.app
        table = app.query_one(CheckpointTable)
        if message.error:
            app.say(message.error, title="older history", severity="warning")
            return
        rows = message.rows
        oldest = self.timeline.oldest
        if oldest is not None and rows and rows[-1].checkpoint.offset >= oldest.checkpoint.offset:
            return  # paged from a file that has since been replaced
        if not rows:
            table.more_history = False
            self.timeline.reached_start = True
            return
        taken = self.timeline.prepend(rows)
        table.rows_changed(added_front=taken)
