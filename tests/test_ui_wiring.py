"""Keys that open other parts of the project from the console: ``i`` opens the incident timeline
(at the selected checkpoint), and ``a`` with Alertmanager configured also creates a silence of the
current drift (SPEC §12) that a real Alertmanager shows."""

from __future__ import annotations

import httpx

from polylog_console.ui.screens.timeline import TimelineScreen
from polylog_console.ui.widgets.banner import AlertBanner
from tests.servers import Alertmanager
from tests.test_ui_support import make_app, notifications, start, wait_for


async def test_i_opens_the_incident_timeline_and_escape_leaves_it(small_ws):
    app = make_app(small_ws.root)
    async with app.run_test(size=(120, 40)) as pilot:
        await start(pilot)
        await pilot.press("i")
        screen = await wait_for(pilot, lambda: isinstance(app.screen, TimelineScreen) and app.screen,
                                what="the timeline screen")
        assert isinstance(screen, TimelineScreen)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, TimelineScreen), what="back to the console")


async def test_the_timeline_is_in_the_command_palette(small_ws):
    app = make_app(small_ws.root)
    async with app.run_test(size=(120, 40)) as pilot:
        await start(pilot)
        titles = [command.title for command in app.get_system_commands(app.screen)]
        assert "Incident timeline" in titles


async def test_acknowledge_with_alertmanager_creates_a_silence(small_ws, tmp_path):
    with Alertmanager(tmp_path) as am:
        (small_ws.root / "monitoring.toml").write_text(f'[alertmanager]\nurl = "{am.url}"\n')
        app = make_app(small_ws.root)
        async with app.run_test(size=(160, 48)) as pilot:
            await start(pilot)
            await wait_for(pilot, lambda: app.query_one(AlertBanner).display, what="the drift banner")
            await pilot.press("a")
            await wait_for(pilot, lambda: any("silence" in n and "created" in n for n in notifications(app)),
                           timeout=30, what="the silence notice")
        silences = httpx.get(f"{am.url}/api/v2/silences", timeout=5).json()
        active = [s for s in silences if s["status"]["state"] == "active"]
        assert len(active) == 1
        matchers = {m["name"]: m["value"] for m in active[0]["matchers"]}
        assert "workspace" in matchers and "dedup_key" in matchers
