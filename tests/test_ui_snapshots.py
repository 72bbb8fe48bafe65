"""SVG snapshots of the console (pytest-textual-snapshot) at 80x24 and 160x48: in sync, drift with
its diff, stale, a replica failure, each theme, and NO_COLOR. Deterministic: a frozen clock, a
fixed workspace name, fresh generated workspaces, no action running when the picture is taken.

Update after an intended change: ``pytest tests/test_ui_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

import pytest

from polylog_console.demo.sample import INTERVAL, START, write_workspace
from tests.test_ui_support import frozen, in_sync_workspace, make_app, wait_for

SIZES = [(80, 24), (160, 48)]
CHECKPOINTS = 20
LAST = START + (CHECKPOINTS - 1) * INTERVAL


@pytest.fixture(autouse=True)
def _colour(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)


def drift_ws(root, config=None):
    kwargs = {} if config is None else {"config": config}
    write_workspace(root, polyforms=200, checkpoints=CHECKPOINTS, drift_from=15, **kwargs)
    return root


async def ready(pilot, panel: str | None = None) -> None:
    app = pilot.app
    await app.wait_ready()
    await wait_for(pilot, lambda: app.diff_state.diff is not None or "computing" not in app.diff_state.note,
                   what="the diff")
    if panel is not None:
        app.show_panel(panel)
    await pilot.pause(0.1)
    app.clear_notifications()
    await pilot.pause(0.05)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_in_sync(snap_compare, tmp_path, size):
    in_sync_workspace(tmp_path / "ws", CHECKPOINTS)
    app = make_app(tmp_path / "ws", clock=frozen(LAST + 30))
    assert snap_compare(app, terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_drift_with_diff(snap_compare, tmp_path, size):
    app = make_app(drift_ws(tmp_path / "ws"), clock=frozen(LAST + 30))

    async def show_diff(pilot):
        await ready(pilot, "diff")

    assert snap_compare(app, terminal_size=size, run_before=show_diff)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_stale(snap_compare, tmp_path, size):
    in_sync_workspace(tmp_path / "ws", CHECKPOINTS)
    app = make_app(tmp_path / "ws", clock=frozen(LAST + 2 * 3600))
    assert snap_compare(app, terminal_size=size, run_before=ready)


REPLICA_FAILURE = """
[[replicas]]
name = "replica-eu"
path = "memory/replicas/replica-eu.json"

[[replicas]]
name = "replica-us"
path = "memory/replicas/replica-us.json"

[[replicas]]
name = "replica-gone"
path = "memory/replicas/replica-gone.json"
"""


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_replica_failure(snap_compare, tmp_path, size):
    app = make_app(drift_ws(tmp_path / "ws", REPLICA_FAILURE), clock=frozen(LAST + 30))

    async def check_replicas(pilot):
        await ready(pilot)
        await pilot.press("p")
        await wait_for(pilot, lambda: app.runner.history, what="the replica check")
        # Measured latencies vary from run to run: pin them so that the picture is stable.
        for result in app.parity.replicas:
            result.latency_ms = 3.0 if result.latency_ms is not None else None
        await ready(pilot, "replicas")

    assert snap_compare(app, terminal_size=size, run_before=check_replicas)


@pytest.mark.parametrize("theme", ["dark", "light", "high-contrast"])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_theme(snap_compare, tmp_path, size, theme):
    app = make_app(drift_ws(tmp_path / "ws"), clock=frozen(LAST + 30), theme=theme)
    assert snap_compare(app, terminal_size=size, run_before=ready)


def test_no_color(snap_compare, tmp_path, monkeypatch):
    """NO_COLOR: Textual renders in monochrome; the badges still say what they mean."""
    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app(drift_ws(tmp_path / "ws"), clock=frozen(LAST + 30))
    assert app.no_color
    assert snap_compare(app, terminal_size=(80, 24), run_before=ready)


# Issue 15: the focus mark with a filtered title, the active-alert list and the status line of a
# running action, at both sizes.

@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_focus_mark_and_filter(snap_compare, tmp_path, size):
    app = make_app(drift_ws(tmp_path / "ws"), clock=frozen(LAST + 30))

    async def filtered(pilot):
        await ready(pilot)
        await pilot.press("slash", *"match:no", "enter")
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=size, run_before=filtered)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_alert_list(snap_compare, tmp_path, size):
    app = make_app(drift_ws(tmp_path / "ws"), clock=frozen(LAST + 30))

    async def alerts(pilot):
        await ready(pilot)
        await pilot.press("A")
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=size, run_before=alerts)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_status_line(snap_compare, tmp_path, size):
    from tests.test_ui_support import GatedReplica, gated_config, in_thread

    root = tmp_path / "ws"
    incident = write_workspace(root, polyforms=200, checkpoints=CHECKPOINTS, drift_from=15, config="")
    with GatedReplica(incident.stored_digest) as replica:
        (root / "monitoring.toml").write_text(gated_config(replica.url))
        app = make_app(root, clock=frozen(LAST + 30))

        async def running(pilot):
            await ready(pilot)
            await pilot.press("p")
            await in_thread(lambda: replica.started.wait(10))
            await pilot.pause(0.2)
            app.clear_notifications()
            await pilot.pause(0.05)

        assert snap_compare(app, terminal_size=size, run_before=running)
