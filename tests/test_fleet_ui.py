"""The fleet screen with Pilot, on stub data sources (the e2e tests run the real servers): rows
worst first, ``/`` filter, Enter detail with the ssh command copied by OSC 52, ``a`` acknowledge,
an unreachable Prometheus (last good rows kept, their age shown), refresh at the interval without
piling up, and SVG snapshots at 80x24 and 160x48."""

from __future__ import annotations

import base64
import time

import pytest
from textual.widgets import DataTable, Static

from polylog_console.core.fleet.model import FleetSource
from polylog_console.ui.fleet.app import DetailScreen, FleetApp
from tests.fleetdata import NOW, StubAlertmanager, StubPrometheus, ack_silence, drift_alert

SIZES = [(80, 24), (160, 48)]


def specs() -> list[dict]:
    def spec(name: str, status: str, started: float = 0.0) -> dict:
        return {"name": f"{name}:/srv/polylog/{name}", "host": name, "instance": f"{name}:9464", "status": status,
                "drift_started": started}

    return [spec("gamma", "IN SYNC"), spec("delta", "NO DATA"), spec("beta", "DRIFT", NOW - 900),
            spec("eps", "DOWN"), spec("alpha", "DRIFT", NOW - 5400), spec("zeta", "STALE")]


def make(prom: StubPrometheus | None = None, am: StubAlertmanager | None = None, **kwargs) -> FleetApp:
    items = specs()
    prom = prom or StubPrometheus(items)
    if am is None:
        alpha = next(s for s in items if s["host"] == "alpha")
        beta = next(s for s in items if s["host"] == "beta")
        am = StubAlertmanager([drift_alert(alpha, silenced_by=("5d1e-ack",)), drift_alert(beta)],
                              [ack_silence(alpha)])
    source = FleetSource(prom, am, clock=lambda: NOW)
    kwargs.setdefault("interval", 3600)
    return FleetApp(source, clock=lambda: NOW, **kwargs)


async def loaded(pilot, count: int = 1) -> None:
    app = pilot.app
    deadline = time.monotonic() + 10
    while app.refreshes < count:
        assert time.monotonic() < deadline, "the fleet never loaded"
        await pilot.pause(0.02)
    await pilot.pause(0.05)


def column(app: FleetApp, name: str) -> list[str]:
    table = app.query_one(DataTable)
    return [str(table.get_row_at(i)[list(table.columns).index(name)]) for i in range(table.row_count)]


async def test_rows_worst_first_with_alert_state():
    app = make()
    async with app.run_test(size=(160, 48)) as pilot:
        await loaded(pilot)
        assert [s.strip() for s in column(app, "status")] == ["DRIFT", "DRIFT", "STALE", "DOWN", "NO DATA", "IN SYNC"]
        assert column(app, "host")[:2] == ["alpha", "beta"]  # the older drift first
        alerts = column(app, "alert")
        assert alerts[0].startswith("ack alice@laptop until") and alerts[1] == "firing"
        assert column(app, "replicas")[:2] == ["1/2", "1/2"] and column(app, "consec")[0] == "12"
        assert column(app, "drift since")[0].endswith("(1h30m)")
        banner = str(app.query_one("#banner", Static).render())
        assert "6 workspaces" in banner and "DRIFT 2" in banner and "Prometheus" in banner


async def test_filter_with_slash():
    app = make()
    async with app.run_test(size=(160, 48)) as pilot:
        await loaded(pilot)
        await pilot.press("slash")
        await pilot.press(*"bet")
        await pilot.pause(0.05)
        assert column(app, "host") == ["beta"]
        await pilot.press("enter")  # back to the table
        await pilot.press("escape")  # clear
        await pilot.pause(0.05)
        assert len(column(app, "host")) == 6
        await pilot.press("slash", *"drift")
        await pilot.pause(0.05)
        assert column(app, "host") == ["alpha", "beta"]  # by status too


async def test_enter_opens_the_detail_and_c_copies_the_ssh_command():
    app = make()
    async with app.run_test(size=(160, 48)) as pilot:
        await loaded(pilot)
        await pilot.press("enter")
        await pilot.pause(0.1)
        screen = app.screen
        assert isinstance(screen, DetailScreen) and screen.row.host == "alpha"
        text = str(screen.query_one("#detail", Static).render())
        assert "ssh alpha polylog-console --workspace /srv/polylog/alpha" in text
        assert "alice@laptop" in text and "on it" in text and "registry_mismatch" in text
        await pilot.press("c")
        await pilot.pause(0.05)
        payload = base64.b64encode(b"ssh alpha polylog-console --workspace /srv/polylog/alpha").decode()
        assert any(payload in seq and seq.startswith("\x1b") for seq in app.clipboard_writes)
        await pilot.press("escape")
        await pilot.pause(0.05)
        assert not isinstance(app.screen, DetailScreen)


async def test_a_acknowledges_the_selected_workspace():
    called = []

    def ack(row):
        called.append(row.workspace)

        class Result:
            silence_id = "abc123"

        return Result()

    app = make(ack=ack)
    async with app.run_test(size=(160, 48)) as pilot:
        await loaded(pilot)
        await pilot.press("down", "a")
        await loaded(pilot, 2)  # the ack refreshes the view
        assert called == ["beta:/srv/polylog/beta"]


async def test_unreachable_prometheus_keeps_the_last_rows_and_says_so():
    prom = StubPrometheus(specs())
    am = StubAlertmanager()
    clock = [NOW]
    source = FleetSource(prom, am, clock=lambda: clock[0])
    app = FleetApp(source, clock=lambda: clock[0], interval=3600)
    async with app.run_test(size=(160, 48)) as pilot:
        await loaded(pilot)
        prom.fail = "Prometheus http://prometheus.example:9090: [Errno 111] Connection refused"
        am.fail = "Alertmanager http://alertmanager.example:9093: timed out"
        clock[0] = NOW + 95
        await pilot.press("r")
        await loaded(pilot, 2)
        banner = str(app.query_one("#banner", Static).render())
        assert "Prometheus UNREACHABLE" in banner and "Connection refused" in banner
        assert "showing data from 1m ago" in banner and "Alertmanager UNREACHABLE" in banner
        assert "problem" in app.query_one("#banner").classes
        assert len(column(app, "host")) == 6  # the last good rows stay
        prom.fail = am.fail = None
        await pilot.press("r")
        await loaded(pilot, 3)
        assert "UNREACHABLE" not in str(app.query_one("#banner", Static).render())


async def test_refresh_at_the_interval_never_piles_up():
    prom = StubPrometheus(specs(), delay=0.25)
    app = make(prom, StubAlertmanager(), interval=0.05)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        await pilot.pause(1.2)
        # a refresh takes 0.25 s and the timer fires every 0.05 s: ticks are skipped, never queued
        assert app.skipped > 5
        assert prom.calls <= app.refreshes + 1
        assert 3 <= app.refreshes <= 7


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_fleet(snap_compare, size, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TZ", "UTC")
    assert snap_compare(make(), terminal_size=size, run_before=loaded)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_detail(snap_compare, size, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TZ", "UTC")

    async def detail(pilot):
        await loaded(pilot)
        await pilot.press("enter")
        await pilot.pause(0.2)

    assert snap_compare(make(), terminal_size=size, run_before=detail)


async def test_an_ack_from_the_detail_shows_in_it_after_the_refresh():
    items = specs()
    beta = next(s for s in items if s["host"] == "beta")
    am = StubAlertmanager([drift_alert(beta)], [])

    def ack(row):
        am._silences.append(ack_silence(beta, "beta-ack"))
        am._alerts = [drift_alert(beta, silenced_by=("beta-ack",))]

    app = make(StubPrometheus(items), am, ack=ack)
    async with app.run_test(size=(160, 48)) as pilot:
        await loaded(pilot)
        await pilot.press("down", "enter")
        await pilot.pause(0.1)
        assert isinstance(app.screen, DetailScreen) and app.screen.row.host == "beta"
        assert "alice@laptop" not in str(app.screen.query_one("#detail", Static).render())
        await pilot.press("a")
        await loaded(pilot, 2)
        text = str(app.screen.query_one("#detail", Static).render())
        assert "beta-ack" in text and "ack alice@laptop until" in text


async def test_a_target_that_never_came_up_is_shown_and_cannot_be_acknowledged():
    """A DOWN row known by ``up`` only: its instance shown, its detail says why, ``a`` and ``c`` do
    nothing (``ack`` with no name would silence *this* workspace instead)."""
    from polylog_console.core.fleet.prometheus import Sample

    class DeadTarget(StubPrometheus):
        def fleet(self):
            data = super().fleet()
            data.results["up"].append(Sample({"instance": "10.0.0.9:9464", "job": "polylog"}, 0.0, NOW))
            return data

    called = []
    items = [s for s in specs() if s["status"] == "IN SYNC"]
    app = make(DeadTarget(items), StubAlertmanager(), ack=lambda row: called.append(row))
    async with app.run_test(size=(160, 48)) as pilot:
        await loaded(pilot)
        assert column(app, "workspace") == ["? 10.0.0.9:9464", "gamma:/srv/polylog/gamma"]
        assert column(app, "status")[0].strip() == "DOWN"
        await pilot.press("a")
        await pilot.pause(0.1)
        assert called == []
        await pilot.press("enter")
        await pilot.pause(0.1)
        screen = app.screen
        assert isinstance(screen, DetailScreen)
        text = str(screen.query_one("#detail", Static).render())
        assert "workspace unknown" in text and "never exported" in text and "ssh" not in text
        await pilot.press("c", "a")
        await pilot.pause(0.1)
        assert app.clipboard_writes == [] and called == []
