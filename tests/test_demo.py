"""The demo's core without the console: the scratch workspace, the simulated engine's feed, the HTTP
replicas, clean stops and the scratch directory's removal; and the ``demo`` command as a real
process (headless), including SIGTERM/SIGHUP."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest

from polylog_console.core.feed.records import Checkpoint, Entry, parse_line, read_records
from polylog_console.core.infra import atomic
from polylog_console.core.model.config import MonitorConfig, load_config
from polylog_console.core.model.events import AlertEvent, Status
from polylog_console.core.model.workspace import Workspace
from polylog_console.core.monitor.rules import Monitor
from polylog_console.core.registry.digest import digest
from polylog_console.core.registry.stored import StoredRegistry, load_snapshot
from polylog_console.core.runbook import catalogs
from polylog_console.demo.engine import (
    MARKER,
    Demo,
    DemoError,
    DemoSettings,
    Engine,
    EngineStep,
    Story,
    create_scratch,
    iter_feed,
    prepare_workspace,
    remove_scratch,
    run_headless,
    snapshot_path,
)

FAST = 20.0  # speed for tests: 60 checkpoints/s


def wait_for_step(steps: queue.Queue[EngineStep], predicate, timeout: float = 20.0) -> EngineStep:
    """The first engine step satisfying ``predicate`` (waits on the engine, no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("the engine did not reach the expected step in time")
        step = steps.get(timeout=remaining)
        if predicate(step):
            return step


def rehydrate_from_source(root: Path) -> str:
    """Rebuild the catalogs from the current source (what the rehydrate action writes); returns the
    new stored digest."""
    source = (root / "stable_polyforms.jsonl").read_bytes()
    polyforms = [orjson.loads(line) for line in source.splitlines() if line.strip()]
    files = catalogs.build_all(polyforms, source, label="demo-test-rehydrate")
    for rel, data in files.items():
        atomic.write_bytes(root / rel, data, durable=False)
    return orjson.loads(files["catalogs/registry.json"])["digest"]


def monitor_over(root: Path, escalate_after: int = 12) -> tuple[Monitor, list]:
    """The real monitor over the whole feed, as the console's first read does."""
    ws = Workspace.open(root)
    monitor = Monitor(StoredRegistry.for_workspace(ws), MonitorConfig(escalate_after=escalate_after), ws)
    events = []
    for batch in read_records(root / "memory" / "coordination" / "context-brief.jsonl"):
        events += monitor.process(batch)
    return monitor, events


def alerts(events: list) -> list[tuple[str, str]]:
    return [(e.alert.code, e.alert.status) for e in events if isinstance(e, AlertEvent)]


# --- settings and the scratch directory -----------------------------------------------------------

def test_settings_refuse_bad_speed_and_scenario():
    with pytest.raises(DemoError, match="speed"):
        DemoSettings(speed=0)
    with pytest.raises(DemoError, match="speed"):
        DemoSettings(speed=1000)
    with pytest.raises(DemoError, match="scenario"):
        DemoSettings(scenario="nope")  # type: ignore[arg-type]
    assert DemoSettings(speed=2).rate == 6.0


def test_scratch_refuses_a_non_empty_directory_and_leaves_it_alone(tmp_path: Path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(DemoError, match="not empty"):
        create_scratch(tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "keep me"
    assert not (tmp_path / MARKER).exists()


def test_remove_scratch_needs_the_marker(tmp_path: Path):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "data").write_text("x")
    assert remove_scratch(plain, True) is False
    assert (plain / "data").exists()


def test_scratch_in_an_existing_empty_directory_is_emptied_not_deleted(tmp_path: Path):
    target = tmp_path / "empty"
    target.mkdir()
    root, created = create_scratch(target)
    assert created is False
    (root / "memory").mkdir()
    (root / "memory" / "x").write_text("x")
    assert remove_scratch(root, created) is True
    assert target.is_dir() and list(target.iterdir()) == []


# --- the starting workspace and the engine's feed -----------------------------------------------------

@pytest.fixture
def prepared(tmp_path: Path):
    settings = DemoSettings(speed=FAST)
    story, _ = Story.build(settings)
    root = tmp_path / "demo"
    root.mkdir()
    prepare_workspace(root, settings, story)
    return root, settings, story


def test_starting_workspace_is_consistent_and_in_sync(prepared):
    root, settings, story = prepared
    check = catalogs.verify_catalogs(root)
    assert check.consistent, check.problems
    monitor, events = monitor_over(root)
    assert monitor.status is Status.IN_SYNC
    assert monitor.checkpoints == settings.history
    assert monitor.ingest_errors == 0 and monitor.warnings == 0
    assert alerts(events) == []
    assert not monitor.stale  # the history ends now, not an hour ago
    assert monitor.stored_digest == story.stored_digest
    assert not (root / "memory" / "replicas").exists()  # no leftover path replicas from the sample


@pytest.mark.parametrize("scenario", ["fixable", "persistent"])
def test_engine_writes_valid_checkpoints_in_the_story_order(tmp_path: Path, scenario: str):
    settings = DemoSettings(speed=FAST, scenario=scenario)  # type: ignore[arg-type]
    story, _ = Story.build(settings)
    root = tmp_path / "demo"
    root.mkdir()
    prepare_workspace(root, settings, story)
    feed = root / "memory" / "coordination" / "context-brief.jsonl"
    before = feed.stat().st_size
    engine = Engine(root, settings, story, first=settings.history + 1)
    total = settings.in_sync + 20
    with open(feed, "ab") as handle:
        for _ in range(total):
            engine.write_one(handle)

    lines = feed.read_bytes()[before:].splitlines()
    records = [parse_line(raw, i + 1) for i, raw in enumerate(lines)]
    checkpoints = [r for r in records if isinstance(r, Checkpoint)]
    entries = [r for r in records if isinstance(r, Entry)]
    assert len(checkpoints) == total
    assert all(not cp.warnings for cp in checkpoints)
    numbers = [int(cp.label.split("-")[1]) for cp in checkpoints]
    assert numbers == list(range(settings.history + 1, settings.history + 1 + total))
    stamps = [cp.timestamp for cp in checkpoints]
    assert stamps == sorted(stamps)
    # In sync first, then the upstream update, then every checkpoint carries the new live digest.
    assert {cp.digest for cp in checkpoints[: settings.in_sync]} == {story.stored_digest}
    assert {cp.digest for cp in checkpoints[settings.in_sync :]} == {story.live_after_digest}
    update_at = next(i for i, r in enumerate(records) if isinstance(r, Entry) and r.entry_kind == "source_update")
    hint = records[update_at + 1]
    assert isinstance(hint, Entry) and hint.entry_kind == "demo_hint" and "rehydrate" in hint.data["note"]
    assert records.index(checkpoints[settings.in_sync]) == update_at + 2
    assert any(e.entry_kind == "handoff" for e in entries)
    assert any(cp.telemetry for cp in checkpoints)  # envelope form with detection telemetry
    assert (root / "stable_polyforms.jsonl").read_bytes() == story.source_after
    # Each checkpoint's snapshot holds the state its digest was computed from.
    for cp in (checkpoints[0], checkpoints[-1]):
        assert cp.registry_snapshot == snapshot_path(cp.digest)
        assert digest(load_snapshot(root / cp.registry_snapshot).state) == cp.digest

    # What the console's monitor makes of it: drift with the symbol diff, then escalation.
    monitor, events = monitor_over(root)
    assert monitor.status is Status.DRIFT
    fired = [e.alert for e in events if isinstance(e, AlertEvent) and e.alert.status == "firing"]
    assert [a.code for a in fired] == ["registry_mismatch", "drift_persistent"]
    diff = fired[0].diff
    if scenario == "fixable":
        assert (diff["missing"], diff["unexpected"], diff["mismatched"]) == (0, 40, 5)
    else:
        assert (diff["missing"], diff["unexpected"], diff["mismatched"]) == (3, 40, 9)

    # The operator rehydrates from the updated source.
    new_stored = rehydrate_from_source(root)
    assert new_stored == story.source_after_digest
    after = monitor.recheck(after_rehydrate=True)
    if scenario == "fixable":
        assert monitor.status is Status.IN_SYNC
        assert ("registry_resolved", "resolved") in alerts(after)
    else:
        assert monitor.status is Status.DRIFT
        escalations = [e.alert for e in after if isinstance(e, AlertEvent) and e.alert.code == "drift_persistent"]
        assert escalations and escalations[-1].reason == "drift remains after rehydrate"


# --- the running demo: engine thread and HTTP replicas ---------------------------------------------------

def test_replicas_answer_over_http_and_follow_the_story(tmp_path: Path):
    with Demo(DemoSettings(speed=FAST), directory=tmp_path / "demo") as demo:
        story = demo.story
        steps = demo.subscribe()
        config = demo.config()
        assert [r.name for r in config.replicas] == ["replica-eu", "replica-us"]
        urls = {r.name: r.url for r in config.replicas}
        assert all(url.startswith("http://127.0.0.1:") for url in urls.values())

        def fetch(name: str) -> dict:
            response = httpx.get(urls[name], timeout=5)
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/json"
            body = response.json()
            assert digest(body["state"]) == body["digest"]  # a replica serves a coherent snapshot
            assert isinstance(body["generated_at"], str)
            return body

        # In sync: both replicas serve the stored registry. (The engine may already have taken
        # the update at this speed, so only check replica-us before it.)
        assert fetch("replica-eu")["digest"] == story.stored_digest
        if not demo.engine.updated:
            assert fetch("replica-us")["digest"] in (story.stored_digest, story.live_after_digest)

        wait_for_step(steps, lambda s: s.updated and s.kind == "checkpoint")
        assert fetch("replica-eu")["digest"] == story.stored_digest
        assert fetch("replica-us")["digest"] == story.live_after_digest  # the drifted one

        rehydrate_from_source(demo.root)
        assert fetch("replica-eu")["digest"] == story.source_after_digest == story.live_after_digest
        assert fetch("replica-us")["digest"] == story.live_after_digest

        assert httpx.get(urls["replica-eu"].replace("/registry", "/nope"), timeout=5).status_code == 404
        assert httpx.post(urls["replica-eu"], timeout=5).status_code == 405
        head = httpx.head(urls["replica-us"], timeout=5)
        assert head.status_code == 200 and head.content == b""


def test_replica_reports_an_unreadable_stored_registry_as_503(tmp_path: Path):
    with Demo(DemoSettings(speed=FAST), directory=tmp_path / "demo") as demo:
        (demo.root / "catalogs" / "registry.json").write_bytes(b"{ torn")
        response = httpx.get(demo.replicas["replica-eu"].url, timeout=5)
        assert response.status_code == 503
        assert "not valid JSON" in response.json()["error"]


def test_engine_appends_live_and_a_session_sees_the_drift(tmp_path: Path):
    """The demo is watched by the console's own pipeline (a Session following the feed)."""
    import asyncio

    from polylog_console.core.monitor.session import Session

    with Demo(DemoSettings(speed=FAST), directory=tmp_path / "demo") as demo:
        session = Session(demo.workspace, demo.config())
        seen: list = []
        session.subscribe(seen.extend)

        async def follow() -> None:
            task = asyncio.create_task(session.run())
            try:
                async with asyncio.timeout(20):
                    while session.monitor.status is not Status.DRIFT:
                        await asyncio.sleep(0.05)
            finally:
                session.stop()
                await task

        asyncio.run(follow())
        statuses = [str(e.status) for e in seen if e.__class__.__name__ == "StatusEvent"]
        assert statuses[:2] == ["IN SYNC", "DRIFT"]
        assert ("registry_mismatch", "firing") in alerts(seen)
        assert session.monitor.incident is not None
        assert demo.engine.appended > demo.settings.in_sync


def test_stop_ends_everything_and_removes_the_scratch_workspace(tmp_path: Path):
    demo = Demo(DemoSettings(speed=FAST), directory=tmp_path / "demo").start()
    root = demo.root
    ports = [server.port for server in demo.replicas.values()]
    steps = demo.subscribe()
    wait_for_step(steps, lambda s: s.kind == "checkpoint")
    assert demo.running
    assert demo.stop(timeout=5.0) is True
    assert not demo.running
    assert not any(t.name == "polylog-demo" for t in threading.enumerate())
    feed = root / "memory" / "coordination" / "context-brief.jsonl"
    size = feed.stat().st_size
    with pytest.raises(queue.Empty):
        steps.get(timeout=5 * demo.settings.interval)  # no more appends
    assert feed.stat().st_size == size
    for port in ports:
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert demo.close() is True
    assert not root.exists()


def test_keep_leaves_a_usable_workspace(tmp_path: Path):
    demo = Demo(DemoSettings(speed=FAST), directory=tmp_path / "demo", keep=True).start()
    wait_for_step(demo.subscribe(), lambda s: s.kind == "checkpoint")
    assert demo.close() is False
    root = tmp_path / "demo"
    assert (root / "catalogs" / "registry.json").exists()
    assert load_config(root, env={}).replicas  # the config still parses (the replicas are gone)
    assert all(isinstance(obj, dict) for obj in iter_feed(root / "memory" / "coordination" / "context-brief.jsonl"))


def test_headless_story_runs_the_runbook(tmp_path: Path):
    lines: list[str] = []
    with Demo(DemoSettings(speed=FAST), directory=tmp_path / "demo") as demo:
        result = run_headless(demo, lines.append, tail=3, timeout=120)
    assert result.finished
    assert result.statuses[:2] == ["IN SYNC", "DRIFT"]
    assert ("registry_mismatch", "firing") in result.alerts
    assert ("drift_persistent", "firing") in result.alerts
    assert [s.command for s in result.steps] == ["validate", "replicas", "rehydrate", "digest", "replicas"]
    # Exit codes of the real commands: the first parity check finds replica-us drifted (1).
    assert [s.code for s in result.steps] == [0, 1, 0, 0, 0], result.steps
    assert result.resolved and result.statuses[-1] == "IN SYNC"
    assert any(line.startswith("operator    drift escalated") for line in lines)
    assert not (tmp_path / "demo").exists()


# --- the command, as a real process ---------------------------------------------------------------------

def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYLOG_")}
    env["NO_COLOR"] = "1"
    return env


def test_cli_headless_plays_the_story_and_cleans_up(tmp_path: Path, cli):
    target = tmp_path / "scratch"
    result = cli("demo", "--headless", "--speed", str(FAST), "--workspace", str(target), timeout=180)
    assert "status      IN SYNC" in result.out
    assert "alert       registry_mismatch firing" in result.out
    assert "status      DRIFT" in result.out
    assert "operator    drift escalated" in result.out
    # The real `replicas` command against the demo's HTTP replicas: replica-us is the drifted one.
    assert "operator    replicas: replica-eu match, replica-us DRIFTED" in result.out
    assert "operator    rehydrate: 240 polyforms" in result.out
    assert "alert       registry_resolved resolved" in result.out
    assert "operator    replicas: replica-eu match, replica-us match" in result.out
    assert result.out.rstrip().splitlines()[-1].startswith("done")
    assert result.out.rstrip().endswith("final status IN SYNC")
    assert result.code == 0
    assert not target.exists()


def test_cli_headless_persistent_scenario_escalates_after_rehydrate(tmp_path: Path, cli):
    result = cli("demo", "--headless", "--scenario", "persistent", "--speed", str(FAST),
                 "--workspace", str(tmp_path / "scratch"), timeout=180)
    assert result.code == 0, result.err
    assert "alert       drift_persistent firing: escalate: drift remains after rehydrate" in result.out
    assert "(missing 3, unexpected 0, mismatched 4)" in result.out  # what the rehydrate could not fix
    assert "operator    bundle: " in result.out and "memory/escalations/escalation-" in result.out
    assert result.out.rstrip().endswith("final status DRIFT")
    assert not (tmp_path / "scratch").exists()


def test_cli_rejects_bad_arguments(tmp_path: Path, cli):
    result = cli("demo", "--speed", "fast")
    assert result.code == 2 and "--speed" in result.err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    result = cli("demo", "--headless", "--workspace", str(tmp_path / "busy"))
    assert result.code == 2
    assert result.err.strip().count("\n") == 0 and "not empty" in result.err
    assert (tmp_path / "busy" / "file").read_text() == "x"
    result = cli("demo", "--headless", "--config", "x.toml", "--workspace", str(tmp_path / "new"))
    assert result.code == 2 and "--config" in result.err
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_cli_headless_stops_cleanly_on_signal(tmp_path: Path, signum: int):
    target = tmp_path / "scratch"
    proc = subprocess.Popen([sys.executable, "-m", "polylog_console", "demo", "--headless", "--speed", "1",
                             "--workspace", str(target)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_env(), text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # wait until the monitor has read the feed
            if line.startswith("status      IN SYNC"):
                break
        else:
            raise AssertionError(f"no status line; stderr: {proc.stderr.read() if proc.stderr else ''}")
        assert target.is_dir()
        proc.send_signal(signum)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not target.exists()


def test_an_engine_failure_is_reported_not_hung_on(tmp_path: Path):
    lines: list[str] = []
    with Demo(DemoSettings(speed=5), directory=tmp_path / "demo") as demo:
        # The engine writes its live snapshot when it takes the source update (in_sync checkpoints
        # from now, 1.6 s at this speed): make that write fail.
        snapshots = demo.root / "memory" / "coordination" / "snapshots"
        for child in snapshots.iterdir():
            child.unlink()
        snapshots.rmdir()
        snapshots.write_text("not a directory")
        assert not demo.engine.updated
        result = run_headless(demo, lines.append, timeout=60)
        assert not demo.running
        assert isinstance(demo.error, OSError)
    assert not result.finished
    assert any(line.startswith("engine      stopped: ") for line in lines)
    assert not (tmp_path / "demo").exists()
