"""The incident timeline and replay (key ``i``, palette "Incident timeline").

Self-contained: it takes a :class:`~polylog_console.core.runbook.report.TimelineSource` (the
workspace's incidents, reconstructed with the monitor's own rules; no Textual in it) and shows

* the incidents of the feed (oldest first; the newest selected), each with its state and start;
* for the selected one, its events in order (the report's timeline: checkpoints, alerts and their
  deliveries, acknowledgements, actions, resolution);
* a strip of the checkpoints' match state over time, one character each, readable without colour
  (``=`` match, ``x`` drift, ``~`` scheme mismatch, ``?`` not compared) with a ``^`` under the
  chosen one; scrubbing left past the first checkpoint held pages older history in;
* the **replay**: the state as of the chosen checkpoint (status, consecutive count, the symbol diff
  when it carries a state, the alerts active), computed by replaying the monitor over the feed up to
  it against the stored registry of that moment.

Everything that reads files runs on worker threads (``exclusive``: scrubbing fast cancels stale
replays); every untrusted value goes through :mod:`polylog_console.ui.safe`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.cells import cell_len
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.screen import Screen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from polylog_console.core.model.events import iso
from polylog_console.core.runbook.report import STRIP, Cell, Report, StateAt, TimelineSource
from polylog_console.ui.safe import clean, literal

CHAR_STYLE = {"=": "$success", "x": "bold $error", "~": "$warning", "?": "$text-muted"}


def incident_line(rep: Report) -> Content:
    v = rep.view
    state = ("OPEN", "bold $error") if rep.resolved_at is None else ("resolved", "$success")
    return Content.assemble(
        (f"#{rep.id:<3} ", "bold"), (f"{state[0]:<9}", state[1]), f"{iso(rep.started_at)[:19]}Z  ",
        literal(v.get("started_label"), limit=28),
        f"  {v.get('mismatching_checkpoints') or v.get('consecutive_mismatches') or 0} mismatching",
        (f"  {'FLAPPING' if v.get('flapping') else 'flapped'}: {v.get('flap_drifts') or 0} drifts", "bold")
        if v.get("flapped") else "",
    )


def event_lines(rep: Report) -> list[Content]:
    """The incident's events in order, one line each (time of day, what, detail)."""
    lines = [Content.assemble((iso(at)[11:23], "$text-muted"), "  ", (f"{clean(what, 20):<20}", "bold"), " ",
                              literal(detail, limit=200))
             for at, what, detail, _clock in rep.timeline]
    if rep.timeline_dropped:
        lines.append(Content(f"… {rep.timeline_dropped} more events"))
    return lines or [Content("no events")]


def strip_text(cells: list[Cell], cursor: int, width: int, more_before: bool) -> tuple[Content, Content, int]:
    """The strip (one character per checkpoint) and the marker line, scrolled so that ``cursor``
    shows; returns (strip, marker, first index shown)."""
    width = max(10, width)
    avail = width - 2
    first = 0 if len(cells) <= avail else min(max(0, cursor - avail // 2), len(cells) - avail)
    shown = cells[first:first + avail]
    lead = "<" if (first > 0 or more_before) else " "
    tail = ">" if first + avail < len(cells) else " "
    strip = Content.assemble((lead, "$text-muted"), *[(c.char, CHAR_STYLE[c.char]) for c in shown],
                             (tail, "$text-muted"))
    marker = " " * (1 + cursor - first) + "^"
    return strip, Content(marker), first


def state_text(state: StateAt) -> Content:
    cell = state.cell
    when = iso(cell.timestamp) if cell.timestamp is not None else "no time"
    status_style = {"DRIFT": "bold $error", "IN SYNC": "bold $success", "STALE": "bold $warning"}.get(state.status,
                                                                                                    "bold")
    parts: list[Any] = [
        "as of ", literal(cell.label, "bold", limit=40), f" (line {cell.line if cell.line is not None else '?'}, "
        f"{when})\n",
        "status ", (state.status, status_style), "  registry_match ", (str(state.registry_match).lower(), "bold"),
        f"  consecutive {state.consecutive}", ("  scheme mismatch" if state.scheme_mismatch else ""), "\n",
        "stored ", literal((state.stored_digest or "—")[:16]), "  live ", literal(state.live_digest[:16]), "\n",
    ]
    if state.diff is not None:
        d = state.diff
        parts.append(f"diff   missing {d.missing}, unexpected {d.unexpected}, mismatched {d.mismatched}\n")
    else:
        parts += ["diff   ", literal(state.diff_note or "none", "$text-muted", limit=120), "\n"]
    if state.active_alerts:
        parts.append("alerts ")
        parts += [item for code, _summary in state.active_alerts for item in ((code, "bold $warning"), " ")]
    else:
        parts.append(("alerts none active", "$text-muted"))
    return Content.assemble(*parts)


class TimelineScreen(Screen[None]):
    DEFAULT_CSS = """
    TimelineScreen { layout: vertical; }
    TimelineScreen #tl-title { height: 1; background: $primary; color: $text; padding: 0 1; }
    TimelineScreen #tl-incidents { height: 5; border: none; }
    TimelineScreen #tl-events { height: 1fr; border: none; border-top: solid $primary; }
    TimelineScreen #tl-strip-box { height: auto; border-top: solid $primary; padding: 0 0; }
    TimelineScreen #tl-state { height: 5; padding: 0 1; }
    TimelineScreen #tl-keys { height: 1; color: $text-muted; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "close", "Close"),
        # the strip's keys win over the incident list (which keeps ↑ ↓)
        Binding("left", "move(-1)", "Earlier", show=False, priority=True),
        Binding("right", "move(1)", "Later", show=False, priority=True),
        Binding("shift+left,pageup", "move(-20)", "Earlier ×20", show=False, priority=True),
        Binding("shift+right,pagedown", "move(20)", "Later ×20", show=False, priority=True),
        Binding("home", "edge(-1)", "First", show=False, priority=True),
        Binding("end", "edge(1)", "Last", show=False, priority=True),
    ]

    def __init__(self, source: TimelineSource, *, reports: list[Report] | None = None,
                 page: int = STRIP, at: tuple[int, int | None, str] | None = None) -> None:
        """``reports``: the incidents when already loaded (else they are loaded on a worker).
        ``at``: ``(offset, line, label)`` of a checkpoint to replay at once (a row of the console's
        checkpoints table) instead of the latest incident's start."""
        super().__init__()
        self.at = at
        self.source = source
        self.reports: list[Report] = list(reports or [])
        self._preloaded = reports is not None
        self.page = page
        self.selected: Report | None = None
        self.cells: list[Cell] = []
        self.cursor = 0
        self.reached_start = False
        self.state: StateAt | None = None
        self.pending = True  # the incidents are being read
        self.audit_merged = False  # the audit log's records are in the events

    def compose(self) -> ComposeResult:
        yield Static("Incident timeline", id="tl-title")
        yield OptionList(id="tl-incidents")
        yield OptionList(Option("loading the incidents…"), id="tl-events")
        with Vertical(id="tl-strip-box"):
            yield Static("", id="tl-strip")
            yield Static("", id="tl-marker")
        yield Static("", id="tl-state")
        yield Static(Content("↑↓ incident  ←→ checkpoint (shift: ×20)  home/end  esc close"), id="tl-keys")

    def on_mount(self) -> None:
        if self._preloaded:
            self._show_reports(self.reports)
        else:
            self._load()

    # -- workers (files are read off the UI thread) ---------------------------------------------------

    @work(thread=True, exclusive=True, group="timeline-load")
    def _load(self) -> None:
        """The incidents at once (from the index when consistent), then again with the audit log's
        alerts, deliveries, acknowledgements and actions merged in (a big audit log takes longer)."""
        try:
            quick = self.source.load_quick()
            self.app.call_from_thread(self._show_reports, quick)
            full = self.source.load()
        except OSError as exc:
            self.app.call_from_thread(self._error, f"{exc.filename or ''}: {exc.strerror or exc}")
            return
        self.app.call_from_thread(self._merge_reports, full)

    def _merge_reports(self, reports: list[Report]) -> None:
        """The same incidents with the audit log merged in: keep the selection and the strip."""
        if [r.found.key for r in reports] != [r.found.key for r in self.reports]:
            self._show_reports(reports)
            return
        chosen = self.selected.id if self.selected is not None else None
        self.reports = reports
        self.audit_merged = True
        self.selected = next((r for r in reports if r.id == chosen), None)
        if self.selected is not None:
            events = self.query_one("#tl-events", OptionList)
            events.clear_options()
            events.add_options(event_lines(self.selected))

    @work(thread=True, exclusive=True, group="timeline-strip")
    def _load_strip(self, rep: Report | None) -> None:
        at, self.at = self.at, None
        try:
            if at is not None:
                cells = self.source.around_checkpoint(at[0], at[1], self.page)
            elif rep is not None:
                cells = self.source.around(rep, self.page)
            else:
                return
        except OSError as exc:
            self.app.call_from_thread(self._error, f"{exc.strerror or exc}")
            return
        self.app.call_from_thread(self._show_strip, rep, cells, at[2] if at is not None else None)

    @work(thread=True, exclusive=True, group="timeline-older")
    def _load_older(self, first: Cell) -> None:
        try:
            older = self.source.older(first, self.page)
        except OSError:
            older = []
        self.app.call_from_thread(self._prepend, first, older)

    @work(thread=True, exclusive=True, group="timeline-replay")
    def _replay(self, cell: Cell) -> None:
        try:
            state = self.source.state_at(cell)
        except OSError as exc:
            self.app.call_from_thread(self._error, f"replay: {exc.strerror or exc}")
            return
        self.app.call_from_thread(self._show_state, state)

    # -- showing ----------------------------------------------------------------------------------------

    def _error(self, message: str) -> None:
        self.query_one("#tl-state", Static).update(literal(message, "$error"))

    def _show_reports(self, reports: list[Report]) -> None:
        self.reports = reports
        self.pending = False
        options = self.query_one("#tl-incidents", OptionList)
        options.clear_options()
        title = self.query_one("#tl-title", Static)
        if not reports:
            title.update("Incident timeline: no incident in the feed")
            events = self.query_one("#tl-events", OptionList)
            events.clear_options()
            events.add_option(Option("Every checkpoint matched the stored registry of its moment."))
            if self.at is not None:
                self._load_strip(None)
            return
        open_count = sum(1 for r in reports if r.resolved_at is None)
        title.update(f"Incident timeline: {len(reports)} incident{'s' if len(reports) != 1 else ''}, "
                     f"{open_count} open")
        options.add_options([Option(incident_line(r), id=str(r.id)) for r in reports])
        options.highlighted = len(reports) - 1
        options.focus()
        self._select(reports[-1])

    def on_option_list_option_highlighted(self, message: OptionList.OptionHighlighted) -> None:
        if message.option_list.id != "tl-incidents" or message.option.id is None:  # (the events list too)
            return
        rep = next((r for r in self.reports if str(r.id) == message.option.id), None)
        if rep is not None and rep is not self.selected:
            self._select(rep)

    def _select(self, rep: Report) -> None:
        keep_strip = self.selected is not None and self.selected.found.key == rep.found.key and bool(self.cells)
        self.selected = rep
        events = self.query_one("#tl-events", OptionList)
        events.clear_options()
        events.add_options(event_lines(rep))
        if keep_strip:
            return
        self.query_one("#tl-state", Static).update(Content("reading the checkpoints…"))
        self._load_strip(rep)

    def _show_strip(self, rep: Report | None, cells: list[Cell], label: str | None = None) -> None:
        if rep is not None and (self.selected is None or rep.found.key != self.selected.found.key):
            return
        self.cells = cells
        self.reached_start = bool(cells) and cells[0].offset == 0
        start_label = label or (rep.view.get("started_label") if rep is not None else None)
        self.cursor = next((i for i, c in enumerate(cells) if c.label == start_label), 0)
        self._render_strip()
        if cells:
            self._replay(cells[self.cursor])

    def _prepend(self, first: Cell, older: list[Cell]) -> None:
        if not self.cells or self.cells[0] is not first:
            return
        if not older:
            self.reached_start = True
        else:
            self.cells = older + self.cells
            self.cursor += len(older)
            self.cursor = max(0, self.cursor - 1)
            self._replay(self.cells[self.cursor])
        self._render_strip()

    def _render_strip(self) -> None:
        width = self.size.width or 80
        if not self.cells:
            self.query_one("#tl-strip", Static).update(Content("no checkpoint"))
            self.query_one("#tl-marker", Static).update("")
            return
        strip, marker, _ = strip_text(self.cells, self.cursor, width, not self.reached_start)
        self.query_one("#tl-strip", Static).update(strip)
        cell = self.cells[self.cursor]
        label = Content.assemble(marker, " ", literal(cell.label, "bold", limit=30))
        if cell_len(label.plain) > width:
            label = marker
        self.query_one("#tl-marker", Static).update(label)

    def _show_state(self, state: StateAt) -> None:
        if not self.cells or state.cell is not self.cells[self.cursor]:
            return
        self.state = state
        self.query_one("#tl-state", Static).update(state_text(state))

    def on_resize(self) -> None:
        if self.cells:
            self._render_strip()

    # -- actions ----------------------------------------------------------------------------------------

    def action_move(self, step: int) -> None:
        if not self.cells:
            return
        target = self.cursor + step
        if target < 0 and not self.reached_start:
            self.cursor = 0
            self._load_older(self.cells[0])
        self.cursor = max(0, min(len(self.cells) - 1, target))
        self._render_strip()
        self.query_one("#tl-state", Static).update(Content("replaying…"))
        self._replay(self.cells[self.cursor])

    def action_edge(self, direction: int) -> None:
        if self.cells:
            self.action_move(len(self.cells) if direction > 0 else -self.cursor)

    def action_close(self) -> None:
        self.app.pop_screen()

    def select_checkpoint(self, label: str) -> bool:
        """Put the strip's cursor on the checkpoint ``label`` (when held) and replay it."""
        for i, cell in enumerate(self.cells):
            if cell.label == label:
                self.action_move(i - self.cursor)
                return True
        return False
