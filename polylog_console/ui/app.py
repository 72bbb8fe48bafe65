"""The console: a Textual app over a :class:`polylog_console.core.monitor.session.Session`.

Data flows one way: the session follows the feed, the monitor turns records into events, and the
app's single subscriber (:meth:`ConsoleApp.on_session_events`) hands them to small widgets that
only display. Keys come from one registry (:mod:`polylog_console.core.model.actions`) that also drives
the footer, the command palette and the help screen; runbook actions run as thread workers
(:mod:`polylog_console.ui.runner`) and report through the session (audit log with the actor), the
activity log and notifications.

The screen refreshes on events, plus one clock tick a second for ages; an idle console does no
work. It exits when its terminal goes away (:mod:`polylog_console.ui.terminal`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from functools import partial
from typing import Any, ClassVar

from textual import on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Container, Vertical
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Footer, Input, Tab, Tabs

from polylog_console.core.alerts.dashboard import Dashboard
from polylog_console.core.feed.records import Checkpoint
from polylog_console.core.infra.audit import read_tail
from polylog_console.core.infra.text import safe_text
from polylog_console.core.model.actions import ACTIONS, BY_ID, ActionSpec
from polylog_console.core.model.config import Config
from polylog_console.core.model.errors import PolylogError, RegistryError
from polylog_console.core.model.events import (
    ActionEvent,
    CheckpointEvent,
    EntryEvent,
    FeedEvent,
    IngestErrorEvent,
)
from polylog_console.core.model.progress import ProgressUpdate
from polylog_console.core.model.workspace import Workspace
from polylog_console.core.monitor.activity import Activity, AuditTail, describe, from_audit
from polylog_console.core.monitor.rules import format_age
from polylog_console.core.monitor.session import Session
from polylog_console.core.monitor.timeline import Row, Timeline, classify
from polylog_console.core.registry import diff_view
from polylog_console.core.runbook.operations import (
    OPERATIONS,
    RECHECK,
    RECHECK_AFTER_REHYDRATE,
    SELF_AUDITED,
    OperationContext,
    unavailable_reason,
)
from polylog_console.ui.keymap import build_keymap, key_display
from polylog_console.ui.runner import ActionRunner, Finished
from polylog_console.ui.screens.confirm import ConfirmScreen
from polylog_console.ui.screens.detail import DetailScreen
from polylog_console.ui.screens.help import HelpScreen
from polylog_console.ui.terminal import EXIT_HANGUP, HangupWatch
from polylog_console.ui.themes import DEFAULT_THEME, FALLBACK, ThemeCatalog, ThemeError
from polylog_console.ui.widgets.actionbar import ActionBar
from polylog_console.ui.widgets.banner import AlertBanner
from polylog_console.ui.widgets.checkpoints import CheckpointTable
from polylog_console.ui.widgets.diff import DiffPanel, DiffState
from polylog_console.ui.widgets.header import HeaderState, StatusHeader
from polylog_console.ui.widgets.linetable import LineTable
from polylog_console.ui.widgets.logs import ActivityTable, ErrorTable
from polylog_console.ui.widgets.replicas import ReplicaTable

PANELS = (("checkpoints", "Checkpoints"), ("diff", "Diff"), ("replicas", "Replicas"), ("activity", "Activity"),
          ("errors", "Errors"))
COMPACT_WIDTH = 120  # below this (or COMPACT_HEIGHT) panels become tabs
COMPACT_HEIGHT = 32
INLINE_FILTER_LIMIT = 50_000  # diffs larger than this are filtered in a worker thread
PAGE_BACK = 200  # checkpoints paged in per request
FRAME = 0.1  # seconds: the widgets show new events at most this often
FOOTER_TITLES = {"validate": "Validate", "rehydrate": "Rehydrate", "recompute": "Recompute", "replicas": "Replicas",
                 "bundle": "Bundle", "acknowledge": "Ack", "follow": "Follow", "filter": "Filter",
                 "theme": "Theme", "help": "Help", "quit": "Quit"}
SEVERITY = {"ok": "information", "problem": "warning"}


def is_compact(width: int, height: int) -> bool:
    """Tabs instead of side-by-side panels (80x24 and other small terminals)."""
    return width < COMPACT_WIDTH or height < COMPACT_HEIGHT


def workspace_label(root: os.PathLike[str] | str) -> str:
    text = str(root)
    home = os.path.expanduser("~")
    if home not in ("", "/") and (text == home or text.startswith(home + os.sep)):
        text = "~" + text[len(home):]
    return text


class MainScreen(Screen[None]):
    """The console's one screen (modal screens go over it)."""

    AUTO_FOCUS = "#checkpoint-table"

    def on_resize(self, event: Any) -> None:
        self.app.update_layout()  # type: ignore[attr-defined]


FIRST_FRAME_WAIT = 0.3  # seconds the first frame waits for the feed's history


class ConsoleApp(App[int]):
    CSS_PATH = "console.tcss"
    TITLE = "polylog-console"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("ctrl+q", "run('quit')", "Quit", show=False, priority=True)]

    def __init__(self, ws: Workspace, config: Config, *, theme: str | None = None, read_only: bool = False,
                 poll: bool = False, clock: Callable[[], float] = time.time, workspace_name: str | None = None,
                 watch_terminal: bool = True, primer: Any = None) -> None:
        super().__init__()
        self.primer = primer
        self._frozen = False
        if poll:
            config = replace(config, feed=replace(config.feed, poll=True))
        self.ws = ws
        self.config = config
        self.read_only = read_only or config.ui.read_only
        self.clock = clock
        self.workspace_name = workspace_name or workspace_label(ws.root)
        self.session = Session(ws, config, read_only=self.read_only, clock=clock)
        self.keymap = build_keymap(config.ui.keys)
        self.timeline = Timeline(capacity=max(config.feed.history, 5000))
        shared = getattr(self.session, "dashboard", None)
        self.dashboard: Dashboard = shared if isinstance(shared, Dashboard) else Dashboard(
            config.alerts.runbook_url)
        self._own_dashboard = not isinstance(shared, Dashboard)
        self.themes = ThemeCatalog(ws.root)
        self.theme_request = theme or config.ui.theme or DEFAULT_THEME
        self.theme_problem: str | None = None
        # The theme is in place before the first styling pass (switching later restyles every widget).
        start_theme = self._resolve_theme(self.theme_request)
        self.register_theme(start_theme)
        self.set_reactive(App.theme, start_theme.name)
        self.stylesheet.set_variables(self.get_css_variables())
        self.add_class(f"-theme-{start_theme.name}")
        self.set_class(start_theme.dark, "-dark-mode")
        self.set_class(not start_theme.dark, "-light-mode")
        self.following = True
        self.parity: Any = None
        self.parity_at: float | None = None
        self.diff_state = DiffState()
        self.diff_query = ""
        self._diff_key: tuple[Any, ...] | None = None
        self.loaded = False  # the feed's recent history arrived
        self.ready_event: asyncio.Event | None = None
        self.feed_note: str | None = None
        self.session_error: str | None = None
        self.watch_terminal = watch_terminal
        self.hangup: HangupWatch | None = None
        self.hangup_reason: str | None = None
        self.clipboard_writes: list[str] = []  # OSC 52 sequences written to the terminal (tests read this)
        self.active_panel = "checkpoints"
        self._unavailable: dict[str, str | None] = {}
        self._paging = False
        self._flush_pending = False
        self._flush_handle: asyncio.TimerHandle | None = None
        self._banner_signature: Any = None
        self._rows_pending = False
        self._dropped = 0
        self.runner = ActionRunner(self, self._publish_action, self._on_progress, self._on_done)
        self.audit_tail: AuditTail | None = None
        self._own_audit: set[tuple[Any, Any]] = set()
        self._record_own_audit()
        for spec in ACTIONS:
            keys = self.keymap.keys.get(spec.id, ())
            if not keys or (self.read_only and spec.mutates):
                continue
            self.bind(",".join(keys), f"run('{spec.id}')", description=FOOTER_TITLES.get(spec.id, spec.title),
                      show=spec.footer)

    # -- composition ------------------------------------------------------------------------------

    def get_default_screen(self) -> Screen[Any]:
        # The layout class is right from the start: changing it later restyles every widget.
        width, height = self.size
        return MainScreen(id="main", classes="-compact" if is_compact(width, height) else None)

    def compose(self) -> ComposeResult:
        yield StatusHeader(id="header")
        yield AlertBanner(id="banner")
        yield Tabs(*(Tab(title, id=f"tab-{pid}") for pid, title in PANELS), id="panel-tabs")
        with Container(id="panels"):
            with Vertical(id="checkpoints", classes="panel -active") as box:
                box.border_title = "Checkpoints"
                yield CheckpointTable(self.timeline, id="checkpoint-table")
            diff = DiffPanel(id="diff", classes="panel")
            diff.border_title = "Symbol diff"
            yield diff
            with Vertical(id="replicas", classes="panel") as box:
                box.border_title = "Replica parity"
                yield ReplicaTable(id="replica-table")
            with Vertical(id="activity", classes="panel") as box:
                box.border_title = "Activity"
                yield ActivityTable(id="activity-table")
            with Vertical(id="errors", classes="panel") as box:
                box.border_title = "Ingest errors"
                yield ErrorTable(id="error-table")
        yield ActionBar(id="actionbar")
        yield Footer(compact=True)

    # -- startup ------------------------------------------------------------------------------------

    async def on_mount(self) -> None:
        self.ready_event = asyncio.Event()
        self.runner.bind_loop()
        if self.theme_problem:
            self.notify(self.theme_problem, title="Theme", severity="error", timeout=15, markup=False)
        for problem in self.keymap.problems:
            self.notify(safe_text(problem), title="monitoring.toml", severity="error", timeout=15, markup=False)
        if self._own_dashboard:
            self.session.subscribe(self.dashboard.apply)
        self.session.subscribe(self.on_session_events)
        self.query_one(ActivityTable).add([from_audit(r) for r in read_tail(self.ws.audit, 20)])
        self.audit_tail = AuditTail(self.ws.audit)  # what other processes audit from now on
        replicas = self.query_one(ReplicaTable)
        if not self.config.replicas:
            replicas.empty_message = "no replicas configured ([[replicas]] in monitoring.toml)"
        self.update_layout()
        self.refresh_status()
        self.query_one(CheckpointTable).stick_to_end = self.following
        self.run_worker(self._run_session(), name="session", group="session", exit_on_error=False)
        # Give the feed's recent history a moment to arrive, so that the first frame already shows
        # it (one full render instead of an empty one and then another); a slow start (a huge
        # registry being digested) shows the screen without it and fills in later.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ready_event.wait(), FIRST_FRAME_WAIT)
        self.set_interval(1.0, self._tick)
        if self.watch_terminal and not self.is_headless:
            loop = asyncio.get_running_loop()
            self.hangup = HangupWatch(lambda reason: loop.call_soon_threadsafe(self._on_hangup, reason))
            self.hangup.start()

    def _freeze_startup_objects(self) -> None:
        """Exclude everything alive once the first screen is up (Textual, the widgets, the styles,
        the feed's history: ~80,000 objects) from later cyclic-GC passes: otherwise a full
        collection walks it all every couple of seconds under a busy feed, a 60-100 ms pause
        that delays key presses. Reference counting still frees these objects when they go; no
        collection first (that would be the very pause avoided), so the few cycles that are
        garbage at this moment stay allocated, once."""
        self._frozen = True
        gc.freeze()

    async def _primer_done(self) -> None:
        """Until the primer process has exited: its sentinel (a pipe) turns readable then. No
        thread blocks in waitpid meanwhile, so quitting never waits for it."""
        primer = self.primer
        loop = asyncio.get_running_loop()
        exited = loop.create_future()
        loop.add_reader(primer.sentinel, lambda: exited.done() or exited.set_result(None))
        try:
            await exited
        finally:
            loop.remove_reader(primer.sentinel)
        primer.join()  # reaps it: it has exited
        self.primer = None

    async def _run_session(self) -> None:
        # Load (and digest) the stored registry off the event loop first: for a 1,000,000-symbol
        # registry that is the slow part of starting, and the screen must stay live meanwhile.
        self.feed_note = "reading the stored registry…"
        self.refresh_status()
        if self.primer is not None:  # digesting it already: wait for its answer in the cache
            await self._primer_done()
        with contextlib.suppress(RegistryError, OSError):
            await asyncio.to_thread(self.session.stored.get)
        self.feed_note = None
        try:
            await self.session.run()
        except ImportError as exc:
            self.session_error = f"cannot follow the feed: {exc}"
        except PolylogError as exc:
            self.session_error = str(exc)
        except OSError as exc:
            self.session_error = f"feed: {exc.strerror or exc}"
        if self.session_error:
            self.feed_note = self.session_error
            self.notify(safe_text(self.session_error), title="feed", severity="error", timeout=30, markup=False)
            self._mark_loaded()
            self.refresh_status()

    def _mark_loaded(self) -> None:
        if not self.loaded:
            self.loaded = True
            if self.ready_event is not None:
                self.ready_event.set()
            self.call_after_refresh(self._freeze_startup_objects)

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Until the feed's recent history is on screen (tests, benchmarks)."""
        while self.ready_event is None:
            await asyncio.sleep(0.01)
        await asyncio.wait_for(self.ready_event.wait(), timeout)

    # -- events from the session ---------------------------------------------------------------------

    def on_session_events(self, events: list[Any]) -> None:
        """One batch of monitor/action events: update the models, then the widgets that show them."""
        try:
            self._apply_events(events)
        except NoMatches:  # the screen is being torn down (the session's last events): nothing to show
            pass

    def _apply_events(self, events: list[Any]) -> None:
        rows: list[Row] = []
        problems: list[Any] = []
        activity: list[Activity] = []
        feed_batch = False
        live = self.loaded
        now = self.clock()
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
            elif kind in (EntryEvent, FeedEvent):
                feed_batch = True
                if kind is FeedEvent:
                    self._feed_event(event)
                    if event.kind == "lines_indexed":  # line numbers of the history rows are known now
                        self.query_one(CheckpointTable).invalidate_rows()
                        continue
            item = describe(event, now)
            if item is not None:
                activity.append(item)
        if rows:
            self._dropped += self.timeline.extend(rows)
            self._rows_pending = True
        if problems:
            self.query_one(ErrorTable).add(problems)
        if activity:
            self.query_one(ActivityTable).add(activity)
        first = feed_batch and not self.loaded
        if feed_batch:
            self._mark_loaded()
        # The models are up to date; the widgets follow at most every FRAME seconds, so that a fast
        # feed (hundreds of checkpoints a second, one small batch each) cannot swamp the event loop
        # and keys stay answered. The first batch (the feed's history) is shown at once.
        if first or not self.loaded:
            self._flush_frame()
        elif not self._flush_pending:
            # A plain event-loop timer: Textual timers cannot be made while the app is closing,
            # which is when the session hands over its last events.
            self._flush_pending = True
            self._flush_handle = asyncio.get_running_loop().call_later(FRAME, self._flush_frame)

    def _flush_frame(self) -> None:
        self._flush_pending = False
        try:
            if self._rows_pending:
                self._rows_pending = False
                dropped, self._dropped = self._dropped, 0
                self.query_one(CheckpointTable).rows_changed(removed_front=dropped, follow=self.following)
            self.refresh_status()
        except NoMatches:  # closing
            pass

    def _feed_event(self, event: FeedEvent) -> None:
        if event.kind in ("missing", "deleted", "error"):
            self.feed_note = f"feed {event.kind}" + (f": {event.detail}" if event.detail else "")
        elif event.kind in ("created", "rotated", "truncated"):
            self.feed_note = None

    def refresh_status(self) -> None:
        """Header, banner and diff from the monitor's current view (cheap; called per batch)."""
        view = self.session.monitor.snapshot()
        latest = view.latest
        self.query_one(StatusHeader).show(HeaderState(
            status=view.status, stale=view.stale, age=_age(view.age), stored_digest=view.stored_digest,
            stored_error=view.stored_error, latest_label=latest.display_label if latest else None,
            checkpoints=view.checkpoints, following=self.following, workspace=self.workspace_name,
            read_only=self.read_only, loading=not self.loaded, feed_note=self.feed_note))
        if self._own_dashboard:
            self.dashboard.update_consecutive(view.consecutive_mismatches)
        self._show_banner()
        self._update_diff(view)

    def _show_banner(self) -> None:
        active = self.dashboard.active
        hints: list[tuple[str, str]] = []
        if active:
            for action_id in active[0].hints:
                spec = BY_ID.get(action_id)
                key = self.keymap.key_for(action_id)
                if spec is None or key is None or (self.read_only and spec.mutates):
                    continue
                hints.append((key_display(key), action_id))
        ack = None if self.read_only else self.keymap.key_for("acknowledge")
        ack_display = key_display(ack) if ack else None
        signature = (tuple(active), tuple(hints), ack_display)
        if signature == self._banner_signature:
            return
        self._banner_signature = signature
        self.query_one(AlertBanner).show(active, hints, self.clock(), ack_display)

    def _tick(self) -> None:
        """Once a second: ages move on. Nothing else is refreshed on a timer."""
        now = self.clock()
        if self.hangup is not None:
            self.hangup.check()
        if not self.query(StatusHeader):
            return
        self._foreign_audit()
        view = self.session.monitor.snapshot()
        header = self.query_one(StatusHeader)
        header.show(replace(header.state, age=_age(view.age)))
        self.query_one(AlertBanner).tick(now)
        self.query_one(ReplicaTable).tick(now)

    def _record_own_audit(self) -> None:
        """Remember what this console writes to the audit log, so that the activity log shows the
        audit records of *other* processes (their own events this console shows directly)."""
        audit = self.session.audit
        original = audit.append

        def append(event: str, **details: Any) -> dict[str, Any]:
            record = original(event, **details)
            if event in SHOWN_DIRECTLY:
                if len(self._own_audit) > 10_000:
                    self._own_audit.clear()
                self._own_audit.add((record.get("ts"), event))
            return record

        audit.append = append  # type: ignore[method-assign]

    def _foreign_audit(self) -> None:
        tail = self.audit_tail
        if tail is None:
            return
        records = []
        for record in tail.read_new():
            key = (record.get("ts"), record.get("event"))
            if key in self._own_audit:
                self._own_audit.discard(key)
            else:
                records.append(record)
        if records:
            self.query_one(ActivityTable).add([from_audit(r) for r in records])

    # -- the symbol diff ---------------------------------------------------------------------------------

    def _update_diff(self, view: Any) -> None:
        key = diff_view.situation(view)
        if key == self._diff_key:
            return
        self._diff_key = key
        text = diff_view.note(key)
        if text is not None:
            self._show_diff(DiffState(note=text))
            return
        cp = diff_view.source(view.latest, self.timeline.find_back)
        self._show_diff(DiffState(note=f"computing the diff for {cp.display_label}…"))
        query = self.diff_query

        def work() -> None:
            self.runner._post(self._diff_ready, key, diff_view.compute(self.session.monitor, cp, query))

        self.run_worker(work, thread=True, group="diff", exclusive=True, exit_on_error=False)

    def _diff_ready(self, key: tuple[Any, ...], state: DiffState) -> None:
        if key == self._diff_key:
            self._show_diff(state)

    def _show_diff(self, state: DiffState) -> None:
        self.diff_state = state
        self.query_one(DiffPanel).show(state)

    def apply_filter(self, query: str) -> None:
        self.diff_query = query = query.strip()
        state = self.diff_state
        if state.diff is not None and state.diff.total > INLINE_FILTER_LIMIT:
            key = self._diff_key

            def work() -> None:
                self.runner._post(self._diff_ready, key, diff_view.filtered(state, query))

            self.run_worker(work, thread=True, group="diff-filter", exclusive=True, exit_on_error=False)
        else:
            self._show_diff(diff_view.filtered(state, query))

    @on(Input.Changed, "#diff-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        if self.diff_state.diff is None or self.diff_state.diff.total <= INLINE_FILTER_LIMIT:
            self.apply_filter(event.value)

    @on(Input.Submitted, "#diff-filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        self.apply_filter(event.value)
        self.query_one(DiffPanel).close_filter()

    # -- layout ------------------------------------------------------------------------------------------

    def update_layout(self) -> None:
        screen = self.screen
        compact = is_compact(*self.size)
        if screen.has_class("-compact") != compact:
            screen.set_class(compact, "-compact")

    def show_panel(self, panel_id: str, focus: bool = True) -> None:
        self.active_panel = panel_id
        for pid, _ in PANELS:
            self.query_one(f"#{pid}").set_class(pid == panel_id, "-active")
        tabs = self.query_one(Tabs)
        if tabs.active != f"tab-{panel_id}":
            tabs.active = f"tab-{panel_id}"
        if focus:
            tables = self.query_one(f"#{panel_id}").query(LineTable)
            if tables:
                tables.first().focus()

    @on(Tabs.TabActivated, "#panel-tabs")
    def _tab_activated(self, event: Tabs.TabActivated) -> None:
        panel_id = (event.tab.id or "tab-checkpoints").removeprefix("tab-")
        if panel_id != self.active_panel:
            self.show_panel(panel_id, focus=False)

    # -- paging older history ----------------------------------------------------------------------------

    @on(LineTable.Unstuck, "#checkpoint-table")
    def _table_unstuck(self) -> None:
        if self.following:
            self.following = False  # moving up the table pauses it (f follows again)
            self.refresh_status()

    @on(CheckpointTable.NeedOlder)
    def _need_older(self) -> None:
        follower = self.session.follower
        oldest = self.timeline.oldest
        if self._paging or follower is None or oldest is None or not hasattr(follower, "page_back"):
            return
        self._paging = True
        stored = self.session.stored.peek()
        before = oldest.checkpoint.offset
        count = min(PAGE_BACK, self.timeline.room())
        self.run_worker(partial(self._page_back, follower, before, count, stored), thread=True, group="page-back",
                        exit_on_error=False)

    def _page_back(self, follower: Any, before: int, count: int, stored: Any) -> None:
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
        self.runner._post(self._paged, rows, error)

    def _paged(self, rows: list[Row], error: str | None) -> None:
        self._paging = False
        table = self.query_one(CheckpointTable)
        if error:
            self.notify(safe_text(error), title="older history", severity="warning", markup=False)
            return
        if not rows:
            table.more_history = False
            self.timeline.reached_start = True
            return
        taken = self.timeline.prepend(rows)
        table.rows_changed(added_front=taken)

    # -- actions: dispatch --------------------------------------------------------------------------------

    def unavailable(self, action_id: str) -> str | None:
        if action_id not in self._unavailable:
            self._unavailable[action_id] = unavailable_reason(action_id)
        return self._unavailable[action_id]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action != "run" or not parameters:
            return True
        spec = BY_ID.get(str(parameters[0]))
        if spec is None:
            return False
        if self.read_only and spec.mutates:
            return False
        if not isinstance(self.screen, MainScreen) and not (
                spec.id in ("copy", "quit") and isinstance(self.screen, DetailScreen)):
            return False
        if self.unavailable(spec.id):
            return None
        return True

    def action_run(self, action_id: str) -> None:
        spec = BY_ID.get(action_id)
        if spec is None:
            self.notify(f"unknown action {safe_text(action_id)}", severity="error", markup=False)
            return
        if self.read_only and spec.mutates:
            self.notify(f"{spec.title} changes the workspace: refused in read-only mode", severity="warning",
                        markup=False)
            return
        why = self.unavailable(action_id)
        if why:
            self.notify(why, title=spec.title, severity="warning", markup=False)
            return
        getattr(self, f"do_{action_id}")(spec)

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """The command palette: every available action of the registry, and every theme."""
        for spec in ACTIONS:
            if self.read_only and spec.mutates:
                continue
            key = self.keymap.key_for(spec.id)
            why = self.unavailable(spec.id)
            help_text = spec.description + (f" (key {key_display(key)})" if key else "") + (
                f" (unavailable: {why})" if why else "")
            yield SystemCommand(spec.title, _no_markup(help_text), partial(self.action_run, spec.id))
        for theme_id in self.themes.ids():
            yield SystemCommand(f"Theme: {_no_markup(self.themes.title(theme_id))}",
                                f"Switch to the {theme_id} theme", partial(self.set_console_theme, theme_id),
                                discover=False)

    # -- actions: background runbook steps ------------------------------------------------------------

    def _start(self, spec: ActionSpec) -> None:
        if self.runner.is_running(spec.id):
            self.notify(f"{spec.title} is already running", severity="warning", markup=False)
            return
        ctx = OperationContext(self.ws, self.config, self.session.audit.actor,
                               monitor_view=self.session.monitor.snapshot(), parity=self.parity)
        operation = OPERATIONS[spec.id]
        if self.runner.start(spec.id, lambda progress: operation(ctx, progress)):
            cancel = self.keymap.key_for("cancel")
            self.query_one(ActionBar).start(spec.id, spec.title, key_display(cancel) if cancel else "—")

    def do_validate(self, spec: ActionSpec) -> None:
        self._start(spec)

    def do_recompute(self, spec: ActionSpec) -> None:
        self._start(spec)

    def do_replicas(self, spec: ActionSpec) -> None:
        self._start(spec)

    def do_bundle(self, spec: ActionSpec) -> None:
        self._start(spec)

    def do_rehydrate(self, spec: ActionSpec) -> None:
        if self.runner.is_running(spec.id):
            self.notify(f"{spec.title} is already running", severity="warning", markup=False)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._start(spec)
            else:
                self.notify("rehydrate not started", markup=False)

        self.push_screen(ConfirmScreen(spec.title, spec.confirm or "Continue?"), answered)

    def _publish_action(self, events: list[Any]) -> None:
        """Action lifecycle events go through the session (audited with the actor), except for
        actions whose core function writes its own audit events: the activity log shows those from
        the audit log itself (see :meth:`_foreign_audit`)."""
        if not (events and all(getattr(e, "action", None) in SELF_AUDITED for e in events)):
            self.session.publish(events)

    def _on_progress(self, action_id: str, update: ProgressUpdate) -> None:
        bars = self.query(ActionBar)
        row = bars.first().row(action_id) if bars else None
        if row is not None:
            row.set_progress(update.done, update.total, safe_text(update.message, 120))

    def _on_done(self, done: Finished) -> None:
        if not self.query(ActionBar):  # finished while the console was closing: audited, nothing to show
            return
        self.query_one(ActionBar).finish(done.action_id)
        spec = BY_ID[done.action_id]
        outcome = done.outcome
        if done.phase == "finished" and outcome is not None:
            if outcome.followup == RECHECK:
                self.session.recheck()
            elif outcome.followup == RECHECK_AFTER_REHYDRATE:
                self.session.recheck(after_rehydrate=True)
            if done.action_id == "replicas":
                self.parity = outcome.data
                self.parity_at = self.clock()
                self.query_one(ReplicaTable).show(list(outcome.data.replicas), self.parity_at, self.clock())
            elif done.action_id == "bundle":
                self.emit_clipboard(outcome.data.markdown)
            severity = SEVERITY.get(outcome.outcome, "information")
        else:
            severity = "warning" if done.phase == "cancelled" else "error"
        self.notify(done.message, title=f"{spec.title}: {done.phase}", severity=severity,  # type: ignore[arg-type]
                    timeout=8, markup=False)
        self.refresh_status()

    def do_cancel(self, spec: ActionSpec) -> None:
        cancelled = self.runner.cancel()
        if not cancelled:
            self.notify("no action is running", markup=False)
            return
        bar = self.query_one(ActionBar)
        for action_id in cancelled:
            row = bar.row(action_id)
            if row is not None:
                row.set_cancelling()

    # -- actions: immediate ------------------------------------------------------------------------------

    def do_acknowledge(self, spec: ActionSpec) -> None:
        actor = self.session.audit.actor
        done = self.dashboard.acknowledge(actor, now=self.clock())
        if not done:
            self.notify("no unacknowledged alert", markup=False)
            return
        for banner in done:
            self.session.audit.append("acknowledged", code=banner.code, dedup_key=banner.dedup_key,
                                      summary=banner.summary)
        codes = ", ".join(b.code for b in done)
        message = f"acknowledged {codes} as {actor}"
        self.session.publish([ActionEvent("acknowledge", "finished", message, "ok",
                                          {"acknowledged": [b.to_json() for b in done]})])
        self.notify(safe_text(message), title="Acknowledged", markup=False)
        self._show_banner()

    def do_follow(self, spec: ActionSpec) -> None:
        self.following = not self.following
        table = self.query_one(CheckpointTable)
        table.stick_to_end = self.following
        if self.following:
            table.rows_changed(follow=True)
        self.refresh_status()

    def do_filter(self, spec: ActionSpec) -> None:
        self.show_panel("diff", focus=False)
        self.query_one(DiffPanel).open_filter(self.diff_query)

    def selected_checkpoint(self) -> Checkpoint | None:
        table = self.query_one(CheckpointTable)
        seq = table.selected_seq()
        row = self.timeline.row(seq) if seq is not None else self.timeline.latest
        return row.checkpoint if row is not None else None

    def do_detail(self, spec: ActionSpec) -> None:
        cp = self.selected_checkpoint()
        if cp is None:
            self.notify("no checkpoint to show yet", markup=False)
            return
        key = self.keymap.key_for("copy")
        where = f"line {cp.line:,}" if cp.line is not None else f"offset {cp.offset:,}"
        self.push_screen(DetailScreen(f"{cp.display_label} ({where})", cp.raw, key,
                                      key_display(key) if key else None))

    def do_copy(self, spec: ActionSpec) -> None:
        if isinstance(self.screen, DetailScreen):
            text, what = self.screen.raw_text, "checkpoint JSON"
        else:
            cp = self.selected_checkpoint()
            if cp is None:
                self.notify("no checkpoint to copy yet", markup=False)
                return
            text, what = cp.raw.decode("utf-8", errors="replace"), f"{cp.display_label} JSON"
        self.emit_clipboard(text)
        self.run_worker(partial(self._copy_local, text, what), thread=True, group="clipboard", exit_on_error=False)

    def _copy_local(self, text: str, what: str) -> None:
        from polylog_console.core.infra.clipboard import copy_local

        ok, how = copy_local(text)
        message = f"copied {what} (OSC 52" + (f", {how})" if ok and how else ")")
        self.runner._post(lambda: self.notify(safe_text(message), title="Clipboard", markup=False))

    def emit_clipboard(self, text: str) -> None:
        """Put ``text`` on the terminal's clipboard with OSC 52 (wrapped for tmux when inside tmux)."""
        from polylog_console.core.infra.clipboard import osc52_sequence

        sequence = osc52_sequence(text)
        self._clipboard = text  # Textual's own clipboard (paste inside the app)
        self.clipboard_writes.append(sequence)
        if self._driver is not None:
            with contextlib.suppress(OSError):
                self._driver.write(sequence)
                self._driver.flush()

    def do_theme(self, spec: ActionSpec) -> None:
        from textual.command import SimpleCommand  # the palette's module, loaded when first needed

        commands = []
        for theme_id in self.themes.ids():
            title = _no_markup(self.themes.title(theme_id))
            commands.append(SimpleCommand(title, partial(self.set_console_theme, theme_id),
                                          f"themes/{theme_id}.toml"))
        self.search_commands(commands, placeholder="Choose a theme…")

    def _resolve_theme(self, name: str) -> Any:
        """The theme ``name``, or the default with :attr:`theme_problem` saying why."""
        try:
            return self.themes.get(name)
        except ThemeError as exc:
            fallback = FALLBACK
            if name != DEFAULT_THEME:
                with contextlib.suppress(ThemeError):
                    fallback = self.themes.get(DEFAULT_THEME)
            self.theme_problem = f"{exc}; using the {fallback.name} theme"
            return fallback

    def set_console_theme(self, name: str, *, announce: bool = True) -> None:
        """Switch to theme ``name``; a missing or broken theme falls back to the default, said aloud."""
        try:
            theme = self.themes.get(name)
        except ThemeError as exc:
            fallback = FALLBACK
            if name != DEFAULT_THEME:
                with contextlib.suppress(ThemeError):
                    fallback = self.themes.get(DEFAULT_THEME)
            self.register_theme(fallback)
            self.theme = fallback.name
            self.notify(f"{exc}; using the {fallback.name} theme", title="Theme", severity="error", timeout=15,
                        markup=False)
            return
        self.register_theme(theme)
        self.theme = theme.name
        if announce:
            self.notify(f"theme: {safe_text(self.themes.title(theme.name))}", markup=False)

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return dict(FALLBACK.variables)

    def do_help(self, spec: ActionSpec) -> None:
        rows = []
        for action in ACTIONS:
            key = self.keymap.key_for(action.id)
            if self.read_only and action.mutates:
                why: str | None = "hidden: read-only"
            else:
                why = self.unavailable(action.id)
            rows.append((action, key_display(key) if key else "—", why))
        self.push_screen(HelpScreen(rows, self.read_only))

    def do_next_panel(self, spec: ActionSpec) -> None:
        ids = [pid for pid, _ in PANELS]
        self.show_panel(ids[(ids.index(self.active_panel) + 1) % len(ids)])

    def do_prev_panel(self, spec: ActionSpec) -> None:
        ids = [pid for pid, _ in PANELS]
        self.show_panel(ids[(ids.index(self.active_panel) - 1) % len(ids)])

    def do_quit(self, spec: ActionSpec | None = None) -> None:
        self.runner.cancel()
        self.session.stop()
        self.exit(0)

    def _on_hangup(self, reason: str) -> None:
        self.hangup_reason = reason
        self.runner.cancel()
        self.session.stop()
        self.exit(EXIT_HANGUP)

    async def on_unmount(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self.runner.cancel()
        self.session.stop()
        if self.hangup is not None:
            self.hangup.stop()
        if self.primer is not None and self.primer.is_alive():
            self.primer.kill()  # quitting while a big registry is digested: do not wait for it (its
            # cache write is atomic: a kill leaves the old cache or the new one)
        if self._frozen:
            gc.unfreeze()  # the app's objects are garbage now (an app made in a longer-lived process)


# Audit events this console also shows from its own event stream (not again from the audit log).
SHOWN_DIRECTLY = frozenset({"alert_raised", "alert_resolved", "escalation", "action_started", "action_finished",
                            "action_failed", "action_cancelled", "acknowledged"})


def _age(seconds: float | None) -> str | None:
    return None if seconds is None else format_age(seconds)


def _no_markup(text: str) -> str:
    """For the command palette, which parses its entries as markup: safe text without brackets."""
    return safe_text(text).replace("[", "(").replace("]", ")")


def run_console(ws: Workspace, config: Config, *, theme: str | None = None, read_only: bool = False,
                poll: bool = False, primer: Any = None) -> int:
    """Open the console on ``ws`` and return its exit code (0, or 129 when the terminal went away).
    ``primer``: a process digesting the stored registry (core.registry.start_digest_primer)."""
    app = ConsoleApp(ws, config, theme=theme, read_only=read_only, poll=poll, primer=primer)
    result = app.run()
    if app.hangup_reason is not None:
        return EXIT_HANGUP
    return int(result or 0)
