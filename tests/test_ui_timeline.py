"""The incident timeline screen (ui/screens/timeline.py) mounted in a tiny App: Pilot tests of the
incidents, the strip, scrubbing back into older history and the replay (while the stored registry
is unchanged, the state at a checkpoint equals what ``digest --checkpoint LABEL`` says for it), and
SVG snapshots at 80x24 and 160x48."""

from __future__ import annotations

import json

import pytest
from textual.app import App

from polylog_console.core.model.config import load_config
from polylog_console.core.model.workspace import Workspace
from polylog_console.core.runbook.report import TimelineSource
from polylog_console.ui.screens.timeline import TimelineScreen
from tests.conftest import run_cli
from tests.test_report import repo_sample
from tests.test_ui_support import wait_for

SIZES = [(80, 24), (160, 48)]


class TimelineApp(App[None]):
    def __init__(self, root, page: int = 120, at=None) -> None:
        super().__init__()
        ws = Workspace.open(root)
        self.source = TimelineSource(ws, load_config(ws.root))
        self.page = page
        self.at = at

    def on_mount(self) -> None:
        self.push_screen(TimelineScreen(self.source, page=self.page, at=self.at))


async def ready(pilot) -> TimelineScreen:
    screen = pilot.app.screen
    assert isinstance(screen, TimelineScreen)
    await wait_for(pilot, lambda: screen.state is not None and screen.audit_merged, what="the replayed state")
    await pilot.pause(0.05)
    return screen


def digest_says(root, label: str) -> dict:
    result = run_cli("digest", "--json", "--checkpoint", label, "--workspace", str(root))
    return json.loads(result.out)


def same_as_digest(state, said: dict) -> None:
    assert state.registry_match == said["registry_match"]
    assert state.stored_digest == said["stored_digest"]
    assert state.live_digest == said["checkpoint"]["registry_digest"]
    if said["diff"] is not None:
        d = state.diff
        assert d is not None
        assert {"missing": d.missing, "unexpected": d.unexpected, "mismatched": d.mismatched} == {
            k: said["diff"][k] for k in ("missing", "unexpected", "mismatched")}
    else:
        assert state.diff is None


async def test_incidents_strip_and_replay_match_digest(tmp_path):
    root = repo_sample(tmp_path / "ws")
    app = TimelineApp(root)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await ready(pilot)
        assert [r.view["started_label"] for r in screen.reports] == ["checkpoint-0171"]
        # the cursor starts on the incident's first checkpoint, which carries a state: its diff
        cell = screen.cells[screen.cursor]
        assert cell.label == "checkpoint-0171" and cell.char == "x"
        state = screen.state
        assert state.status == "DRIFT" and state.consecutive == 1
        assert [code for code, _ in state.active_alerts] == ["registry_mismatch"]
        same_as_digest(state, digest_says(root, "checkpoint-0171"))
        chars = "".join(c.char for c in screen.cells)
        assert chars.index("x") == screen.cursor and set(chars[:screen.cursor]) == {"="}
        # three later: escalated
        await pilot.press("right", "right", "right")
        await wait_for(pilot, lambda: screen.state.cell.label == "checkpoint-0174", what="replay of 0174")
        assert screen.state.consecutive == 4
        assert [c for c, _ in screen.state.active_alerts] == ["drift_persistent", "registry_mismatch"]
        same_as_digest(screen.state, digest_says(root, "checkpoint-0174"))
        # before the start: in sync, nothing active
        await pilot.press("left", "left", "left", "left")
        await wait_for(pilot, lambda: screen.state.cell.label == "checkpoint-0170", what="replay of 0170")
        assert screen.state.status == "IN SYNC" and screen.state.active_alerts == []
        same_as_digest(screen.state, digest_says(root, "checkpoint-0170"))


async def test_scrubbing_back_pages_in_older_history(tmp_path):
    root = repo_sample(tmp_path / "ws")
    app = TimelineApp(root, page=20)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        # readable without colour: the strip is characters, the chosen one marked with ^
        rows = [strip.text for strip in pilot.app.screen._compositor.render_strips()]
        strip_row = next(i for i, r in enumerate(rows) if "xxxxx" in r)
        assert "=" * 5 in rows[strip_row] and "^" in rows[strip_row + 1] and "checkpoint-0171" in rows[strip_row + 1]
        assert rows[strip_row + 1].index("^") == rows[strip_row].index("x")
        assert any("esc close" in r for r in rows) and len(rows) == 24
        held = len(screen.cells)
        first = screen.cells[0].label
        await pilot.press("home")
        await pilot.press("left")
        await wait_for(pilot, lambda: len(screen.cells) > held, what="an older page")
        assert screen.cells[screen.cursor].offset < next(c for c in screen.cells if c.label == first).offset
        labels = [c.label for c in screen.cells]
        assert labels == sorted(labels) and len(set(labels)) == len(labels)  # in order, no duplicate
        # line numbers stay right across pages
        feed = (root / "memory/coordination/context-brief.jsonl").read_bytes().split(b"\n")
        for c in screen.cells[:3]:
            assert json.loads(feed[c.line - 1]).get("label", json.loads(feed[c.line - 1]).get(
                "checkpoint_record", {}).get("label")) == c.label
        label = screen.cells[screen.cursor].label
        await wait_for(pilot, lambda: screen.state.cell.label == label, what="replay after paging")
        same_as_digest(screen.state, digest_says(root, label))
        # all the way to the start of the feed
        for _ in range(12):
            await pilot.press("home", "left")
            await pilot.pause(0.05)
            if screen.reached_start:
                break
        await wait_for(pilot, lambda: screen.reached_start, what="the start of the feed")
        assert screen.cells[0].label == "checkpoint-0001"


async def test_no_incident(tmp_path):
    from polylog_console.demo.sample import write_workspace

    write_workspace(tmp_path / "ws", polyforms=200, checkpoints=10, drift_from=11, config=None)
    app = TimelineApp(tmp_path / "ws")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = pilot.app.screen
        await wait_for(pilot, lambda: not screen.pending, what="the incidents")
        assert screen.reports == []
        assert "no incident" in str(screen.query_one("#tl-title").render())


@pytest.fixture(autouse=True)
def _colour(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot(snap_compare, tmp_path, size):
    root = repo_sample(tmp_path / "ws")

    async def run_before(pilot):
        screen = await ready(pilot)
        await pilot.press("right", "right", "right")
        await wait_for(pilot, lambda: screen.state.cell.label == "checkpoint-0174", what="replay of 0174")
        await pilot.pause(0.1)

    assert snap_compare(TimelineApp(root), terminal_size=size, run_before=run_before)


async def test_events_carry_the_audit_log(tmp_path):
    """The incidents show at once; the audit log's records (here an acknowledgement and a rehydrate
    that failed) join the selected incident's events when read."""
    import orjson

    from polylog_console.core.model.events import dedup_key, iso

    root = repo_sample(tmp_path / "ws")
    stored = "dda10887e8050571cf6f1883e4296f96e094a858102b146eadbb34b3f9d21c1d"
    live = "09dc58693e67fed4e157dc2caf4bb6a0867bd0f609a00fe6b12965fa4c734e43"
    t0 = 1762710200.0
    audit = root / "memory" / "audit" / "events.jsonl"
    audit.parent.mkdir(parents=True)
    audit.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in [
        {"ts": iso(t0 + 3), "event": "alert_raised", "actor": "w@h", "code": "registry_mismatch",
         "dedup_key": dedup_key(stored, live), "stored_digest": stored, "live_digest": live, "summary": "drift"},
        {"ts": iso(t0 + 60), "event": "acknowledged", "actor": "ann@ops", "code": "registry_mismatch",
         "dedup_key": dedup_key(stored, live)},
        {"ts": iso(t0 + 90), "event": "action_started", "actor": "ann@ops", "action": "rehydrate"},
        {"ts": iso(t0 + 95), "event": "action_failed", "actor": "ann@ops", "action": "rehydrate",
         "outcome": "error", "message": "[bold]boom\x1b[2J"},
    ]))
    app = TimelineApp(root)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await ready(pilot)
        events = screen.query_one("#tl-events")
        texts = [str(events.get_option_at_index(i).prompt) for i in range(events.option_count)]
        assert any("acknowledged" in t and "ann@ops" in t for t in texts), texts
        assert any("rehydrate failed" in t for t in texts), texts
        assert not any("\x1b" in t for t in texts)
        assert screen.reports[0].observed_at == t0 + 3


async def test_opened_at_a_checkpoint_of_the_table(tmp_path):
    """From the console's checkpoints table: the strip around that checkpoint, replayed at once."""
    from polylog_console.core.runbook.recompute import find_checkpoint

    root = repo_sample(tmp_path / "ws")
    cp = find_checkpoint(root / "memory/coordination/context-brief.jsonl", "checkpoint-0100")
    app = TimelineApp(root, at=(cp.offset, cp.line, cp.display_label))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        assert screen.state.cell.label == "checkpoint-0100" and screen.state.cell.line == cp.line
        assert screen.state.status == "IN SYNC"
        same_as_digest(screen.state, digest_says(root, "checkpoint-0100"))
