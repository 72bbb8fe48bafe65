"""The console: a Textual app over a :class:`polylog_console.core.monitor.session.Session`.

Data flows one way: the session follows the feed, the monitor turns records into events, and the
app's single subscriber (:meth:`ConsoleApp.on_session_events`) hands them to the controllers
(:mod:`polylog_console.ui.controllers`), which update small widgets that only display. Worker
threads (runbook actions, the diff, older history, the clipboard) post messages
(:mod:`polylog_console.ui.messages`) and never touch the monitor or a widget.

Keys come from one registry (:mod:`polylog_console.core.model.actions`): every action is a
``Binding`` with its id, remapped through Textual's own ``set_keymap`` from ``[ui.keys]`` (checked
for clashes in core first); the same registry drives the footer, the command palette and the
help screen.

The screen refreshes on events, plus one clock tick a second for ages; an idle console does no
work. It exits when its terminal goes away (:mod:`polylog_console.ui.terminal`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from functools import partial
from typing import Any, ClassVar

from textual import events, on
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
from polylog_console.core.model.events import FeedEvent
from polylog_console.core.model.workspace import Workspace
from polylog_console.core.monitor.activity import from_audit
from polylog_console.core.monitor.rules import format_age
from polylog_console.core.monitor.session import Session
from polylog_console.core.monitor.timeline import Timeline
from polylog_console.core.runbook.operations import unavailable_reason
from polylog_console.ui.controllers.actions import Actions
from polylog_console.ui.controllers.audit_echo import AuditEcho
from polylog_console.ui.controllers.clipboard import Clipboard
from polylog_console.ui.controllers.detail import Detail
from polylog_console.ui.controllers.diff import DiffController
from polylog_console.ui.controllers.history import History
from polylog_console.ui.controllers.panels import Panels
from polylog_console.ui.controllers.theme import ThemeController, no_markup
from polylog_console.ui.controllers.triage import Triage
from polylog_console.ui.keymap import build_keymap, key_display
from polylog_console.ui.layout import PANEL_TITLES, PANELS, MainScreen, is_compact, workspace_label
from polylog_console.ui.messages import ActionDone, ActionProgressed, DiffReady, HistoryPaged, Notice
from polylog_console.ui.runner import ActionRunner, Finished
from polylog_console.ui.screens.detail import DetailScreen
from polylog_console.ui.screens.help import HelpScreen
from polylog_console.ui.terminal import EXIT_HANGUP, HangupWatch
from polylog_console.ui.themes import DEFAULT_THEME, FALLBACK
from polylog_console.ui.widgets.actionbar import ActionBar
from polylog_console.ui.widgets.banner import AlertBanner
from polylog_console.ui.widgets.checkpoints import CheckpointTable
from polylog_console.ui.widgets.diff import DiffPanel, FilterCleared
from polylog_console.ui.widgets.header import HeaderState, StatusHeader
from polylog_console.ui.widgets.linetable import LineTable
from polylog_console.ui.widgets.logs import ActivityTable, ErrorTable
from polylog_console.ui.widgets.replicas import ReplicaTable
from polylog_console.ui.widgets.rowfilter import RowFilter

__all__ = ["PANELS", "ConsoleApp", "is_compact", "run_console", "workspace_label"]

FOOTER_TITLES = {"validate": "Validate", "rehydrate": "Rehydrate", "recompute": "Recompute", "replicas": "Replicas",
                 "bundle": "Bundle", "acknowledge": "Ack", "follow": "Follow", "filter": "Filter",
                 "theme": "Theme", "help": "Help", "quit": "Quit"}
FIRST_FRAME_WAIT = 0.3  # seconds the first frame waits for the feed's history


def _bindings() -> list[BindingType]:
    """One Binding per registry action, with the action's id (``set_keymap`` remaps by id)."""
    from polylog_console.ui.keymap import normalize_key

    out: list[BindingType] = [Binding("ctrl+q", "run('quit')", "Quit", show=False, priority=True)]
    for spec in ACTIONS:
        key = normalize_key(spec.key)
        if key:
            out.append(Binding(key, f"run('{spec.id}')", FOOTER_TITLES.get(spec.id, spec.title), show=spec.footer,
                               id=spec.id))
    return out


class ConsoleApp(App[int]):
    CSS_PATH = "console.tcss"
    TITLE = "polylog-console"
    BINDINGS: ClassVar[list[BindingType]] = _bindings()

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
        self.set_keymap({action_id: ",".join(keys) for action_id, keys in self.keymap.keys.items() if keys})
        self.timeline = Timeline(capacity=max(config.feed.history, 5000))
        shared = getattr(self.session, "dashboard", None)
        self.dashboard: Dashboard = shared if isinstance(shared, Dashboard) else Dashboard(
            config.alerts.runbook_url)
        self._own_dashboard = not isinstance(shared, Dashboard)
        self.themes = ThemeController(self, ws.root, theme or config.ui.theme or DEFAULT_THEME)
        self.themes.apply_at_start()
        self.following = True
        self.loaded = False  # the feed's recent history arrived
        self.ready_event: asyncio.Event | None = None
        self.feed_note: str | None = None
        self.session_error: str | None = None
        self.watch_terminal = watch_terminal
        self.hangup: HangupWatch | None = None
        self.hangup_reason: str | None = None
        self._unavailable: dict[str, str | None] = {}
        self._banner_signature: Any = None
        self.panels = Panels(self)
        self.triage = Triage(self)
        self.history = History(self, self.timeline)
        self.diff = DiffController(self)
        self.actions = Actions(self)
        self.copier = Clipboard(self)
        self.detail = Detail(self)
        self.runner = ActionRunner(self, self.actions.publish)
        self.audit_echo = AuditEcho(self.session.audit)

    # -- compatibility: what tests and benchmarks read ---------------------------------------------

    @property
    def active_panel(self) -> str:
        return self.panels.active

    @property
    def diff_state(self) -> Any:
        return self.diff.state

    @property
    def parity(self) -> Any:
        return self.actions.parity

    @property
    def clipboard_writes(self) -> list[str]:
        return self.copier.writes

    @property
    def theme_problem(self) -> str | None:
        return self.themes.problem

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
                box.border_title = PANEL_TITLES["checkpoints"]
                yield CheckpointTable(self.timeline, id="checkpoint-table")
            diff = DiffPanel(id="diff", classes="panel")
            diff.border_title = PANEL_TITLES["diff"]
            yield diff
            with Vertical(id="replicas", classes="panel") as box:
                box.border_title = PANEL_TITLES["replicas"]
                yield ReplicaTable(id="replica-table")
            with Vertical(id="activity", classes="panel") as box:
                box.border_title = PANEL_TITLES["activity"]
                yield ActivityTable(id="activity-table")
            with Vertical(id="errors", classes="panel") as box:
                box.border_title = PANEL_TITLES["errors"]
                yield ErrorTable(id="error-table")
        yield RowFilter(id="row-filter")
        yield ActionBar(id="actionbar")
        yield Footer(compact=True)

    # -- startup ------------------------------------------------------------------------------------

    async def on_mount(self) -> None:
        self.ready_event = asyncio.Event()
        self.runner.bind_loop()
        if self.themes.problem:
            self.say(self.themes.problem, title="Theme", severity="error", timeout=15)
        for problem in self.keymap.problems:
            self.say(problem, title="monitoring.toml", severity="error", timeout=15)
        if self._own_dashboard:
            self.session.subscribe(self.dashboard.apply)
        self.session.subscribe(self.on_session_events)
        self.query_one(ActivityTable).add([from_audit(r) for r in read_tail(self.ws.audit, 20)])
        self.audit_echo.start(self.ws.audit)
        replicas = self.query_one(ReplicaTable)
        if not self.config.replicas:
            replicas.empty_message = "no replicas configured ([[replicas]] in monitoring.toml)"
        self.refresh_status()
        self.query_one(CheckpointTable).stick_to_end = self.following
        self.watch(self.screen, "focused", self._focus_changed, init=False)
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
            self.say(self.session_error, title="feed", severity="error", timeout=30)
            self.mark_loaded()
            self.refresh_status()

    def mark_loaded(self) -> None:
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

    # -- notifications ---------------------------------------------------------------------------------

    def say(self, message: str, *, title: str = "", severity: str = "information", timeout: float = 6) -> None:
        """A notification of untrusted text (made safe, never parsed as markup), kept in the
        message history (``M``) after it has faded."""
        self.triage.remember(self.clock(), severity, safe_text(title, 80), safe_text(message, 500))
        self.notify(safe_text(message, 500), title=title, severity=severity, timeout=timeout,  # type: ignore[arg-type]
                    markup=False)

    # -- events from the session ---------------------------------------------------------------------

    def on_session_events(self, events: list[Any]) -> None:
        """One batch of monitor/action events: update the models, then the widgets that show them."""
        try:
            self.history.apply(events)
        except NoMatches:  # the screen is being torn down (the session's last events): nothing to show
            pass

    def feed_event(self, event: FeedEvent) -> None:
        if event.kind in ("missing", "deleted", "error"):
            self.feed_note = f"feed {event.kind}" + (f": {event.detail}" if event.detail else "")
        elif event.kind in ("created", "rotated", "truncated"):
            self.feed_note = None

    def rows_shown(self) -> None:
        """The checkpoint table shows new rows: a filtered title counts them again."""
        if self.query_one(CheckpointTable).query is not None:
            self.panels.mark_focus()

    def refresh_status(self) -> None:
        """Header, banner, diff and parity from the monitor's current view (cheap; called per batch)."""
        view = self.session.monitor.snapshot()
        latest = view.latest
        self.query_one(StatusHeader).show(HeaderState(
            status=view.status, stale=view.stale, age=_age(view.age), stored_digest=view.stored_digest,
            stored_error=view.stored_error, latest_label=latest.display_label if latest else None,
            checkpoints=view.checkpoints, following=self.following, workspace=self.workspace_name,
            read_only=self.read_only, loading=not self.loaded, feed_note=self.feed_note))
        if self._own_dashboard:
            self.dashboard.update_consecutive(view.consecutive_mismatches)
        self.show_banner(view)
        self.diff.update(view)
        self.actions.check_parity(view.stored_digest)

    def banner_hints(self, active: list[Any]) -> list[tuple[str, str]]:
        """The keys the banner proposes: the runbook's next step for the top alert's condition
        (once drift was escalated, e.g. it remains after a rehydrate, that is the bundle first)."""
        if not active:
            return []
        top = active[0]
        # The escalation's summary names its reason ("escalate: drift remains after rehydrate").
        escalation = next((b for b in active if b.code == "drift_persistent" and b.dedup_key == top.dedup_key
                           and "after rehydrate" in b.summary), None)
        hints: list[tuple[str, str]] = []
        for action_id in (escalation or top).hints:
            spec = BY_ID.get(action_id)
            key = self.keymap.key_for(action_id)
            if spec is None or key is None or (self.read_only and spec.mutates):
                continue
            hints.append((key_display(key), action_id))
        return hints

    def show_banner(self, view: Any = None) -> None:
        active = self.dashboard.active
        hints = self.banner_hints(active)
        ack = None if self.read_only else self.keymap.key_for("acknowledge")
        ack_display = key_display(ack) if ack else None
        if view is None:
            view = self.session.monitor.snapshot()
        incident = getattr(view, "incident", None)
        signature = (tuple(active), tuple(hints), ack_display, incident)
        if signature == self._banner_signature:
            return
        self._banner_signature = signature
        self.query_one(AlertBanner).show(active, hints, self.clock(), ack_display, incident)

    def _tick(self) -> None:
        """Once a second: ages move on. Nothing else is refreshed on a timer."""
        now = self.clock()
        if self.hangup is not None:
            self.hangup.check()
        if not self.query(StatusHeader):
            return
        foreign = self.audit_echo.foreign()
        if foreign:
            self.query_one(ActivityTable).add(foreign)
        view = self.session.monitor.snapshot()
        header = self.query_one(StatusHeader)
        header.show(replace(header.state, age=_age(view.age)))
        self.query_one(AlertBanner).tick(now)
        self.query_one(ReplicaTable).tick(now)
        self.query_one(ActionBar).tick()

    # -- worker messages ----------------------------------------------------------------------------------

    def on_diff_ready(self, message: DiffReady) -> None:
        self.diff.ready(message)

    def on_history_paged(self, message: HistoryPaged) -> None:
        self.history.paged(message)

    def on_action_progressed(self, message: ActionProgressed) -> None:
        self.actions.progressed(message)

    def on_action_done(self, message: ActionDone) -> None:
        self.actions.done(message)

    def on_notice(self, message: Notice) -> None:
        self.say(message.message, title=message.title, severity=message.severity, timeout=message.timeout)

    # -- hooks for the status line -------------------------------------------------------------------------

    def action_started(self, action_id: str) -> None:
        """An action started (hook)."""

    def action_ended(self, done: Finished) -> None:
        """An action ended (hook)."""

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
            return False  # hidden; the key still answers (on_key)
        if not isinstance(self.screen, MainScreen) and not (
                spec.id in ("copy", "quit") and isinstance(self.screen, DetailScreen)):
            return False
        if self.unavailable(spec.id):
            return None
        return True

    def on_key(self, event: events.Key) -> None:
        """A key nothing took: in read-only mode, a key of an action that changes the workspace is
        answered with why nothing happens."""
        if not self.read_only or not isinstance(self.screen, MainScreen):
            return
        action_id = self.keymap.action_for(event.key)
        spec = BY_ID.get(action_id) if action_id else None
        if spec is not None and spec.mutates:
            event.stop()
            self.say(f"read-only: {spec.id} is disabled", title=spec.title, severity="warning")

    def action_run(self, action_id: str) -> None:
        spec = BY_ID.get(action_id)
        if spec is None:
            self.say(f"unknown action {action_id}", severity="error")
            return
        if self.read_only and spec.mutates:
            self.say(f"read-only: {spec.id} is disabled", title=spec.title, severity="warning")
            return
        why = self.unavailable(action_id)
        if why:
            self.say(why, title=spec.title, severity="warning")
            return
        self.dispatch(spec)

    def dispatch(self, spec: ActionSpec) -> None:
        handlers: dict[str, Callable[[], None]] = {
            "validate": partial(self.actions.run, spec), "rehydrate": partial(self.actions.run, spec),
            "recompute": partial(self.actions.run, spec), "replicas": partial(self.actions.run, spec),
            "bundle": partial(self.actions.run, spec),
            "acknowledge": self.actions.acknowledge, "cancel": self.actions.cancel,
            "follow": self.toggle_follow, "filter": self.triage.open_filter,
            "detail": self.detail.open, "copy": self.detail.copy,
            "next_panel": partial(self.panels.step, 1), "prev_panel": partial(self.panels.step, -1),
            "panel_checkpoints": partial(self.panels.show, "checkpoints"),
            "panel_diff": partial(self.panels.show, "diff"), "panel_replicas": partial(self.panels.show, "replicas"),
            "panel_activity": partial(self.panels.show, "activity"),
            "panel_errors": partial(self.panels.show, "errors"), "alerts": self.triage.open_alerts,
            "next_match": partial(self.triage.find, 1), "prev_match": partial(self.triage.find, -1),
            "wide": self.triage.toggle_wide, "messages": self.triage.open_messages,
            "theme": self.themes.choose, "help": self.open_help, "quit": self.quit_console,
            "timeline": self.open_timeline,
        }
        handlers[spec.id]()

    def open_timeline(self) -> None:
        """The incident timeline (key ``i``): opened at the selected checkpoint when the
        checkpoints table has the focus."""
        from polylog_console.core.runbook.report import TimelineSource
        from polylog_console.ui.screens.timeline import TimelineScreen

        at = None
        cp = self.selected_checkpoint() if self.panels.current() == "checkpoints" else None
        if cp is not None and getattr(cp, "offset", None) is not None:
            at = (cp.offset, cp.line, cp.display_label)
        self.push_screen(TimelineScreen(TimelineSource(self.ws, self.config), at=at))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """The command palette: every available action of the registry, and every theme."""
        for spec in ACTIONS:
            if self.read_only and spec.mutates:
                continue
            key = self.keymap.key_for(spec.id)
            why = self.unavailable(spec.id)
            help_text = spec.description + (f" (key {key_display(key)})" if key else "") + (
                f" (unavailable: {why})" if why else "")
            yield SystemCommand(spec.title, no_markup(help_text), partial(self.action_run, spec.id))
        for theme_id in self.themes.catalog.ids():
            yield SystemCommand(f"Theme: {no_markup(self.themes.catalog.title(theme_id))}",
                                f"Switch to the {theme_id} theme", partial(self.set_console_theme, theme_id),
                                discover=False)

    # -- view actions ----------------------------------------------------------------------------------

    def toggle_follow(self) -> None:
        self.following = not self.following
        table = self.query_one(CheckpointTable)
        table.stick_to_end = self.following
        if self.following:
            table.rows_changed(follow=True)
        self.refresh_status()

    @on(Input.Changed, "#row-filter")
    def _row_filter_changed(self, event: Input.Changed) -> None:
        self.triage.filter_typed(event.value)

    @on(RowFilter.Closed)
    def _row_filter_closed(self) -> None:
        self.panels.mark_focus()

    @on(LineTable.FilterChanged)
    def _filter_changed_title(self) -> None:
        self.panels.mark_focus()

    def apply_filter(self, query: str) -> None:
        self.diff.apply_filter(query)

    @on(Input.Changed, "#diff-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        if not self.diff.large:
            self.diff.apply_filter(event.value)

    @on(FilterCleared)
    def _diff_filter_cleared(self) -> None:
        self.diff.apply_filter("")

    @on(Input.Submitted, "#diff-filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        self.diff.apply_filter(event.value)
        self.query_one(DiffPanel).close_filter()

    def selected_checkpoint(self) -> Checkpoint | None:
        table = self.query_one(CheckpointTable)
        seq = table.selected_seq()
        row = self.timeline.row(seq) if seq is not None else self.timeline.latest
        return row.checkpoint if row is not None else None

    def emit_clipboard(self, text: str) -> None:
        """Put ``text`` on the terminal's clipboard with OSC 52 (wrapped for tmux when inside tmux)."""
        self.copier.emit(text)

    def set_console_theme(self, name: str, *, announce: bool = True) -> None:
        self.themes.switch(name, announce=announce)

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return dict(FALLBACK.variables)

    def open_help(self) -> None:
        rows = []
        for action in ACTIONS:
            key = self.keymap.key_for(action.id)
            if self.read_only and action.mutates:
                why: str | None = "hidden: read-only"
            else:
                why = self.unavailable(action.id)
            rows.append((action, key_display(key) if key else "—", why))
        self.push_screen(HelpScreen(rows, self.read_only))

    def _focus_changed(self, widget: Any) -> None:
        self.panels.mark_focus()

    @on(AlertBanner.MoreClicked)
    def _more_clicked(self) -> None:
        self.triage.open_alerts()

    def show_panel(self, panel_id: str, focus: bool = True) -> None:
        self.panels.show(panel_id, focus)

    def panel_shown(self, panel_id: str) -> None:
        """A panel was shown (hook)."""

    def update_layout(self) -> None:
        screen = self.screen
        compact = is_compact(*self.size)
        if screen.has_class("-compact") != compact:
            screen.set_class(compact, "-compact")

    @on(Tabs.TabActivated, "#panel-tabs")
    def _tab_activated(self, event: Tabs.TabActivated) -> None:
        self.panels.tab_activated(event.tabs, event.tab.id)

    @on(LineTable.Unstuck, "#checkpoint-table")
    def _table_unstuck(self) -> None:
        if self.following:
            self.following = False  # moving up the table pauses it (f follows again)
            self.refresh_status()

    @on(CheckpointTable.NeedOlder)
    def _need_older(self) -> None:
        self.history.need_older()

    # -- leaving ---------------------------------------------------------------------------------------

    def quit_console(self) -> None:
        self.runner.cancel()
        self.session.stop()
        self.exit(0)

    def _on_hangup(self, reason: str) -> None:
        self.hangup_reason = reason
        self.runner.cancel()
        self.session.stop()
        self.exit(EXIT_HANGUP)

    async def on_unmount(self) -> None:
        self.history.close()
        self.runner.cancel()
        self.session.stop()
        if self.hangup is not None:
            self.hangup.stop()
        if self.primer is not None and self.primer.is_alive():
            self.primer.kill()  # quitting while a big registry is digested: do not wait for it (its
            # cache write is atomic: a kill leaves the old cache or the new one)
        if self._frozen:
            gc.unfreeze()  # the app's objects are garbage now (an app made in a longer-lived process)


def _age(seconds: float | None) -> str | None:
    return None if seconds is None else format_age(seconds)


def run_console(ws: Workspace, config: Config, *, theme: str | None = None, read_only: bool = False,
                poll: bool = False, primer: Any = None) -> int:
    """Open the console on ``ws`` and return its exit code (0, or 129 when the terminal went away).
    ``primer``: a process digesting the stored registry (core.registry.start_digest_primer)."""
    app = ConsoleApp(ws, config, theme=theme, read_only=read_only, poll=poll, primer=primer)
    result = app.run()
    if app.hangup_reason is not None:
        return EXIT_HANGUP
    return int(result or 0)
