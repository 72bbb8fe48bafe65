"""The fleet console: every workspace's drift in one table, worst first (SPEC §12).

Data comes from a :class:`~polylog_console.core.fleet.model.FleetSource` (Prometheus + Alertmanager),
fetched on a worker thread at the scrape interval (a Textual timer: no busy loop). A refresh that
is still running when the timer fires again is not doubled: that tick is skipped, so a slow
Prometheus never builds a queue of late refreshes (the lag cannot grow). When a server cannot be
reached the last good rows stay on screen and the banner says how old they are.

Keys: ``/`` filter, ``Enter`` detail (alerts, silences, the command that opens the workspace's own
console, ``c`` copies it with OSC 52), ``a`` acknowledge (an Alertmanager silence), ``r`` refresh,
``q`` quit.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Input, Static

from polylog_console.core.fleet.model import DOWN, DRIFT, IN_SYNC, NO_DATA, STALE, FleetRow, FleetSnapshot
from polylog_console.core.infra.text import safe_text
from polylog_console.core.monitor.rules import format_age

STATUS_STYLE = {DRIFT: "bold white on red", STALE: "bold black on yellow", DOWN: "bold white on magenta",
                NO_DATA: "dim", IN_SYNC: "green"}
COLUMNS = ("status", "workspace", "host", "drift since", "consec", "checkpoint", "replicas", "outbox", "alert",
           "scraped")
DEFAULT_INTERVAL = 15.0


def _clock_text(ts: float | None, now: float) -> str:
    if ts is None:
        return "—"
    try:  # a scraped value no clock can show (1e300): "?" rather than a crash
        clock = time.strftime('%H:%M:%S', time.gmtime(ts))
    except (OverflowError, OSError, ValueError):
        return "?"
    return f"{clock} ({format_age(now - ts)})"


def _age(ts: float | None, now: float) -> str:
    return "—" if ts is None else format_age(now - ts)


def _unreachable(name: str, error: str | None, kept: str, at: float | None, now: float) -> str:
    """The banner part for a source that did not answer: its error, and how old the ``kept`` data is."""
    since = f"; {kept} from {format_age(now - at)} ago" if at else ""
    return f"{name} UNREACHABLE: {safe_text(error, 120)}{since}"


def row_cells(row: FleetRow, now: float) -> list[Any]:
    status = Text(f" {row.status} ", style=STATUS_STYLE.get(row.status, ""))
    replicas = f"{row.replicas_matching}/{row.replicas_total}" if row.replicas_total else "—"
    age = row.latest_checkpoint_age
    name = safe_text(row.workspace, 60) if row.workspace else Text(f"? {safe_text(row.instance, 56)}", style="dim")
    return [status, name, safe_text(row.host, 30) or "?", _clock_text(row.drift_started_at, now),
            "flap" if row.flapping else "—" if row.consecutive_mismatches is None else str(row.consecutive_mismatches),
            "—" if age is None else format_age(age), replicas,
            "—" if row.outbox_pending is None else str(row.outbox_pending),
            safe_text(row.alert_summary(), 50), _age(row.last_scrape, now)]


def matches(row: FleetRow, needle: str) -> bool:
    if not needle:
        return True
    needle = needle.lower()
    return any(needle in field.lower() for field in (row.workspace, row.host, row.status, row.instance))


class DetailScreen(ModalScreen[None]):
    """One workspace: its figures, alerts, silences and the command that opens its own console."""

    BINDINGS: ClassVar[list[Any]] = [Binding("escape,q", "dismiss", "Back"),
                                     Binding("c", "copy_command", "Copy ssh command"),
                                     Binding("a", "ack", "Acknowledge")]
    DEFAULT_CSS = """
    DetailScreen { align: center middle; }
    DetailScreen > VerticalScroll { width: 90%; height: 90%; border: round $accent; padding: 0 1;
                                    background: $surface; }
    """

    def __init__(self, row: FleetRow, snapshot: FleetSnapshot, now: float) -> None:
        super().__init__()
        self.row = row
        self.snapshot = snapshot
        self.now = now

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(self.render_text(), id="detail")
        yield Footer()

    def update(self, snapshot: FleetSnapshot, now: float) -> None:
        key = (self.row.instance, self.row.job)
        row = next((r for r in snapshot.rows if (r.instance, r.job) == key), None)
        if row is None:
            return
        self.row, self.snapshot, self.now = row, snapshot, now
        self.query_one("#detail", Static).update(self.render_text())

    def render_text(self) -> Text:
        row, now = self.row, self.now
        out = Text()
        out.append(f"{safe_text(row.workspace, 200) or 'workspace unknown'}\n", style="bold")
        if not row.workspace:
            out.append("  this target is down and never exported polylog_workspace_info (a watcher that never "
                       "started? a wrong address or port?)\n", style="dim")
        out.append(f" {row.status} ", style=STATUS_STYLE.get(row.status, ""))
        out.append(f"  host {safe_text(row.host, 60)}  instance {safe_text(row.instance, 60)}  "
                   f"job {safe_text(row.job, 40)}\n\n")
        facts = [("drift since", _clock_text(row.drift_started_at, now)),
                 ("consecutive", "flapping: an incident held open until flap_settle checkpoints agree"
                  if row.flapping else "—" if row.consecutive_mismatches is None
                  else str(row.consecutive_mismatches)),
                 ("latest checkpoint", _clock_text(row.latest_checkpoint_at, now)),
                 ("replicas matching", f"{row.replicas_matching} of {row.replicas_total}"),
                 ("outbox pending", "—" if row.outbox_pending is None else str(row.outbox_pending)),
                 ("last scrape", _clock_text(row.last_scrape, now)),
                 ("scheme / version", f"{safe_text(row.scheme, 20)} / {safe_text(row.version, 20)}")]
        for name, value in facts:
            out.append(f"{name:<20}{value}\n")
        out.append("\nAlerts\n", style="bold")
        if not row.alerts:
            out.append("  none\n", style="dim")
        for alert in row.alerts:
            out.append(f"  {alert.alertname:<20} {alert.display:<36} since {_clock_text(alert.starts_at, now)}\n")
            if alert.summary:
                out.append(f"    {safe_text(alert.summary, 160)}\n", style="dim")
        out.append("\nSilences\n", style="bold")
        silences = [s for s in self.snapshot.silences if s.equals().get("workspace") == row.workspace]
        if not silences:
            out.append("  none\n", style="dim")
        for silence in silences:
            matchers = ", ".join(f"{k}={safe_text(v, 40)}" for k, v in silence.equals().items())
            out.append(f"  {silence.id[:8]}  {silence.state:<8} by {safe_text(silence.created_by, 40)} until "
                       f"{_clock_text(silence.ends_at, now)}\n    {matchers}\n")
            if silence.comment:
                out.append(f"    {safe_text(silence.comment, 160)}\n", style="dim")
        if not row.host:
            return out
        out.append("\nOpen its console\n", style="bold")
        out.append(f"  {safe_text(row.console_command(), 300)}\n", style="reverse")
        out.append("  c copies it (OSC 52)\n", style="dim")
        return out

    def action_copy_command(self) -> None:
        app = self.app
        if isinstance(app, FleetApp) and self.row.host:
            app.copy_text(self.row.console_command(), "the ssh command")

    def action_ack(self) -> None:
        app = self.app
        if isinstance(app, FleetApp):
            app.acknowledge(self.row)


class FleetApp(App[int]):
    TITLE = "polylog fleet"
    BINDINGS: ClassVar[list[Any]] = [
        Binding("q", "quit", "Quit"), Binding("slash", "filter", "Filter", key_display="/"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("a", "ack", "Acknowledge"), Binding("r", "refresh", "Refresh"),
        Binding("enter", "detail", "Detail", show=False)]
    DEFAULT_CSS = """
    #banner { height: auto; padding: 0 1; }
    #banner.problem { background: $error 30%; }
    #filter { display: none; height: 3; }
    #filter.shown { display: block; }
    DataTable { height: 1fr; }
    """

    def __init__(self, source: Any, *, interval: float | None = None, clock: Callable[[], float] = time.time,
                 ack: Callable[[FleetRow], Any] | None = None, fetch_interval_from_source: bool = True) -> None:
        super().__init__()
        self.source = source
        self.interval = interval
        self.clock = clock
        self.ack_callback = ack
        self.fetch_interval_from_source = fetch_interval_from_source and interval is None
        self.snapshot: FleetSnapshot | None = None
        self.needle = ""
        self.shown: list[FleetRow] = []
        self.fetching = False
        self.skipped = 0  # timer ticks skipped because a refresh was still running
        self.refreshes = 0
        self.refresh_times: list[float] = []  # seconds per fetch, on the worker (bench, tests)
        self.render_times: list[float] = []  # seconds to redraw the table, on the event loop
        self.clipboard_writes: list[str] = []
        self._timer: Any = None

    def compose(self) -> ComposeResult:
        yield Static("connecting…", id="banner")
        yield Input(placeholder="filter: workspace, host, status", id="filter")
        table: DataTable[Any] = DataTable(id="fleet", cursor_type="row", zebra_stripes=True)
        yield table
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for name in COLUMNS:
            table.add_column(name, key=name)
        table.focus()
        self.action_refresh()

    # -- refreshing -----------------------------------------------------------------------------

    def _arm_timer(self) -> None:
        if self._timer is None:
            self._timer = self.set_interval(self.interval or DEFAULT_INTERVAL, self.action_refresh,
                                            name="fleet-refresh")

    def action_refresh(self) -> None:
        if self.fetching:
            self.skipped += 1
            return
        self.fetching = True
        self.run_worker(self._fetch, thread=True, group="fleet-fetch", exit_on_error=False)

    def _fetch(self) -> None:
        started = time.perf_counter()
        interval = None
        try:
            if self.fetch_interval_from_source and self.interval is None:
                prom = getattr(self.source, "prometheus", None)
                interval = prom.scrape_interval() if prom is not None and hasattr(prom, "scrape_interval") else None
            snap = self.source.fetch()
        except Exception as exc:  # a source bug must not kill the screen: say it
            self.call_from_thread(self._failed, f"{type(exc).__name__}: {exc}")
            return
        self.call_from_thread(self._show, snap, interval, time.perf_counter() - started)

    def _failed(self, message: str) -> None:
        self.fetching = False
        self.notify(safe_text(message, 200), severity="error", markup=False)
        self._arm_timer()

    def _show(self, snap: FleetSnapshot, interval: float | None, elapsed: float) -> None:
        self.fetching = False
        self.refreshes += 1
        self.refresh_times.append(elapsed)
        del self.refresh_times[:-100]
        if interval and self.interval is None:
            self.interval = max(1.0, interval)
        self.snapshot = snap
        drawn = time.perf_counter()
        self._render_banner()
        self._render_rows()
        self.render_times.append(time.perf_counter() - drawn)
        del self.render_times[:-100]
        screen = self.screen
        if isinstance(screen, DetailScreen):  # the open detail follows the data (an ack shows at once)
            screen.update(snap, self.clock())
        self._arm_timer()

    def _render_banner(self) -> None:
        snap = self.snapshot
        banner = self.query_one("#banner", Static)
        if snap is None:
            return
        now = self.clock()
        parts: list[str] = []
        problem = False
        counts: dict[str, int] = {}
        for row in snap.rows:
            counts[row.status] = counts.get(row.status, 0) + 1
        summary = "  ".join(f"{status} {counts[status]}" for status in (DRIFT, STALE, DOWN, NO_DATA, IN_SYNC)
                            if counts.get(status))
        parts.append(f"{len(snap.rows)} workspaces  {summary}" if snap.rows else "no workspace exports polylog metrics")
        if snap.prometheus.ok:
            parts.append(f"Prometheus {safe_text(snap.prometheus.url, 60)} ok")
        else:
            problem = True
            parts.append(_unreachable("Prometheus", snap.prometheus.error, "showing data", snap.rows_at, now))
        if snap.alertmanager.url is None:
            parts.append("no Alertmanager")
        elif snap.alertmanager.ok:
            parts.append(f"Alertmanager ok ({len(snap.alerts)} alerts, {len(snap.silences)} silences)")
        else:
            problem = True
            parts.append(_unreachable("Alertmanager", snap.alertmanager.error, "alerts", snap.alerts_at, now))
        parts.append(f"every {self.interval or DEFAULT_INTERVAL:g}s")
        banner.update(Text("  ·  ".join(parts)))
        banner.set_class(problem, "problem")

    def _render_rows(self) -> None:
        snap = self.snapshot
        table = self.query_one(DataTable)
        now = self.clock()
        selected = self.selected_row()
        keep = (selected.instance, selected.job) if selected is not None else None
        self.shown = [row for row in (snap.rows if snap else []) if matches(row, self.needle)]
        table.clear()
        cursor = 0
        for index, row in enumerate(self.shown):
            table.add_row(*row_cells(row, now), key=f"{row.instance}|{row.job}|{index}")
            if keep == (row.instance, row.job):
                cursor = index
        if self.shown:
            table.move_cursor(row=cursor, animate=False)

    def selected_row(self) -> FleetRow | None:
        try:
            table = self.query_one(DataTable)
        except Exception:
            return None
        index = table.cursor_row
        if 0 <= index < len(self.shown):
            return self.shown[index]
        return None

    # -- actions --------------------------------------------------------------------------------

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("shown")
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.remove_class("shown")
        self.needle = ""
        self._render_rows()
        self.query_one(DataTable).focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.needle = event.value.strip()
        self._render_rows()

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        self.query_one(DataTable).focus()

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_detail()

    def action_detail(self) -> None:
        row = self.selected_row()
        if row is not None and self.snapshot is not None:
            self.push_screen(DetailScreen(row, self.snapshot, self.clock()))

    def action_ack(self) -> None:
        row = self.selected_row()
        if row is not None:
            self.acknowledge(row)

    def acknowledge(self, row: FleetRow) -> None:
        if not row.workspace:  # never fall back to this workspace's own name
            self.notify(f"{row.instance}: workspace unknown (the target never exported its name): nothing to "
                        "acknowledge", severity="warning", markup=False)
            return
        if self.ack_callback is None:
            self.notify("acknowledging needs Alertmanager (--alertmanager or [fleet] alertmanager_url)",
                        severity="warning", markup=False)
            return

        def work() -> None:
            try:
                result = self.ack_callback(row)  # type: ignore[misc]
            except Exception as exc:
                message, severity = f"not acknowledged: {exc}", "error"
            else:
                sid = getattr(result, "silence_id", None)
                message = f"acknowledged {row.workspace}" + (f": silence {sid}" if sid else " (locally)")
                severity = "information"
            self.call_from_thread(self.notify, safe_text(message, 200), severity=severity, markup=False)
            self.call_from_thread(self.action_refresh)

        self.run_worker(work, thread=True, group="fleet-ack", exit_on_error=False)

    def copy_text(self, text: str, what: str) -> None:
        from polylog_console.core.infra.clipboard import osc52_sequence

        sequence = osc52_sequence(text)
        self.clipboard_writes.append(sequence)
        self._clipboard = text
        driver = self._driver
        if driver is not None:
            with contextlib.suppress(OSError):
                driver.write(sequence)
                driver.flush()
        self.notify(f"copied {what} (OSC 52)", markup=False)


def run_fleet(source: Any, config: Any) -> int:
    """Open the fleet console (``polylog-console fleet``)."""
    from polylog_console.core.infra.audit import actor

    ack = None
    if getattr(source, "alertmanager", None) is not None:
        from polylog_console.core.fleet.silences import acknowledge

        who = actor()

        def ack(row: FleetRow) -> Any:
            return acknowledge(config, who, name=row.workspace, client=source.alertmanager)

    app = FleetApp(source, interval=config.fleet.refresh, ack=ack)
    try:
        app.run()
    finally:
        source.close()
    return 0
