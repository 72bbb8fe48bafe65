"""The whole flow through a real Session: the feed followed by the real FeedFollower, another
writer appending checkpoints, the monitor, Session.publish fanning out to the dashboard, the
webhook (real receiver), the audit log and Prometheus metrics served over HTTP."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import httpx

from polylog_console.core.alerts.delivery import Backoff
from polylog_console.core.model.config import load_config
from polylog_console.core.model.events import AlertEvent
from polylog_console.core.model.workspace import Workspace
from polylog_console.core.monitor.session import Session
from polylog_console.demo.sample import write_workspace
from tests.servers import Receiver, checkpoint_line

SECRET = "session-test-secret"
FAST = Backoff(base=0.05, cap=0.2)


def in_sync_workspace(root: Path, url: str, extra: str = ""):
    """200 polyforms, 10 checkpoints all matching; a config with the webhook and no staleness."""
    incident = write_workspace(root, polyforms=200, checkpoints=10, drift_from=10_000, config=None,
                               start=time.time() - 60, interval=1.0)
    (root / "monitoring.toml").write_text(
        f'[monitor]\nstale_after = "1h"\nescalate_after = 3\n[alerts]\nrepeat_interval = "1h"\n'
        f'[webhook]\nurl = "{url}"\ntimeout = 2\n{extra}')
    ws = Workspace.open(root)
    config = load_config(ws.root, env={"POLYLOG_WEBHOOK_SECRET": SECRET})
    return ws, config, incident


def append(ws: Workspace, *lines: bytes) -> None:
    with open(ws.feed, "ab") as handle:
        for line in lines:
            handle.write(line + b"\n")


def scrape(session: Session) -> dict[str, float]:
    host, port = session.metrics.address
    text = httpx.get(f"http://{host}:{port}/metrics", timeout=5).text
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


async def test_session_follows_the_feed_and_fans_out(tmp_path):
    with Receiver(secret=SECRET) as receiver:
        ws, config, inc = in_sync_workspace(tmp_path / "ws", receiver.url)
        session = Session(ws, config, actor="tester@host",
                          dispatcher_options={"resolve_hold": 0.1, "backoff": FAST})
        session.enable_metrics("127.0.0.1", 0)
        seen: list = []
        session.subscribe(seen.extend)
        task = asyncio.create_task(session.run())
        try:
            for _ in range(500):  # the follower has read the history: 10 checkpoints, in sync
                if session.monitor.checkpoints >= 10:
                    break
                await asyncio.sleep(0.01)
            assert session.monitor.latest_match is True
            assert receiver.requests == []

            append(ws, checkpoint_line(11, inc.live_digest, registry_state=inc.live_state))
            (fired,) = await receiver.until(1)
            assert fired.signature_ok and fired.json["code"] == "registry_mismatch"
            assert fired.json["checkpoint"]["label"] == "checkpoint-0011"
            assert session.dashboard.top is not None and session.dashboard.top.code == "registry_mismatch"

            values = await asyncio.to_thread(scrape, session)
            assert values["polylog_registry_match"] == 0.0
            assert values['polylog_status{status="DRIFT"}'] == 1.0
            assert values["polylog_consecutive_mismatches"] == 1.0
            assert values["polylog_checkpoints_total"] == 11.0
            assert values["polylog_detection_latency_seconds_count"] >= 1.0
            for _ in range(200):  # the delivery event follows the receiver's answer
                if any(getattr(e, "event", "") == "delivery" for e in seen):
                    break
                await asyncio.sleep(0.01)
            values = await asyncio.to_thread(scrape, session)
            assert values['polylog_alerts_sent_total{sink="webhook"}'] == 1.0
            assert values['polylog_outbox_pending{sink="webhook"}'] == 0.0

            append(ws, b"{not json", checkpoint_line(13, inc.stored_digest))
            resolved = await receiver.until(2)
            assert resolved[1].json["code"] == "registry_resolved" and resolved[1].json["status"] == "resolved"
            assert session.dashboard.top is None
            values = await asyncio.to_thread(scrape, session)
            assert values["polylog_registry_match"] == 1.0
            assert values["polylog_ingest_errors_total"] == 1.0
        finally:
            session.stop()
            await asyncio.wait_for(task, 15)

    assert any(isinstance(e, AlertEvent) for e in seen)
    assert [e.outcome for e in seen if getattr(e, "event", "") == "delivery"] == ["delivered", "delivered"]
    audit = [json.loads(line)["event"] for line in ws.audit.read_text().splitlines()]
    assert audit.count("alert_delivered") == 2 and "alert_raised" in audit and "alert_resolved" in audit
    assert list((ws.outbox / "webhook").glob("*.json")) == []
    # the metrics server is gone after stop
    assert session.metrics._server is None


async def test_stop_with_a_dead_sink_persists_the_outbox_and_the_next_run_delivers(tmp_path):
    """SIGTERM-like stop while the receiver refuses connections: stopping is prompt, the alert
    stays in the outbox; the next session delivers it and does not announce it twice."""
    from tests.servers import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    ws, config, inc = in_sync_workspace(tmp_path / "ws", url)
    append(ws, checkpoint_line(11, inc.live_digest))
    session = Session(ws, config, dispatcher_options={"resolve_hold": 0.1, "backoff": FAST})
    session.CLOSE_GRACE = 0.5
    task = asyncio.create_task(session.run())
    for _ in range(500):
        if session.alerts.workers["webhook"].retries:
            break
        await asyncio.sleep(0.01)
    assert session.alerts.workers["webhook"].retries >= 1
    loop = asyncio.get_running_loop()
    started = loop.time()
    session.stop()
    await asyncio.wait_for(task, 15)
    assert loop.time() - started < 10  # not the 2 s sink timeout times every pending retry
    assert len(list((ws.outbox / "webhook").glob("*.json"))) == 1
    audit = [json.loads(line) for line in ws.audit.read_text().splitlines()]
    assert any(e["event"] == "alerts_persisted" and e["deliveries"] == 1 for e in audit)

    with Receiver(secret=SECRET, port=port) as receiver:
        again = Session(ws, config, dispatcher_options={"resolve_hold": 0.1, "backoff": FAST})
        task = asyncio.create_task(again.run())
        try:
            (request,) = await receiver.until(1)
            assert request.json["code"] == "registry_mismatch"
            await asyncio.sleep(0.5)  # the re-read history fires the same drift: not announced again
            assert len(receiver.requests) == 1
        finally:
            again.stop()
            await asyncio.wait_for(task, 15)
    assert list((ws.outbox / "webhook").glob("*.json")) == []


async def test_restart_after_parity_returned_resolves_what_receivers_heard(tmp_path):
    """Receivers heard 'firing'; the watcher stopped; parity returned while it was down. The next
    run reads the history, finds no drift, and announces the resolution."""
    with Receiver() as receiver:
        ws, config, inc = in_sync_workspace(tmp_path / "ws", receiver.url)
        append(ws, checkpoint_line(11, inc.live_digest))
        first = Session(ws, config, dispatcher_options={"resolve_hold": 0.1, "backoff": FAST})
        task = asyncio.create_task(first.run())
        await receiver.until(1)
        first.stop()
        await asyncio.wait_for(task, 15)

        append(ws, checkpoint_line(12, inc.stored_digest))
        second = Session(ws, config, dispatcher_options={"resolve_hold": 0.1, "backoff": FAST})
        task = asyncio.create_task(second.run())
        try:
            got = await receiver.until(2)
        finally:
            second.stop()
            await asyncio.wait_for(task, 15)
    assert [r.json["status"] for r in got] == ["firing", "resolved"]
    assert got[1].json["code"] == "registry_resolved" and got[1].json["dedup_key"] == got[0].json["dedup_key"]


async def test_read_only_session_sends_nothing_and_writes_no_outbox(tmp_path):
    with Receiver() as receiver:
        ws, config, inc = in_sync_workspace(tmp_path / "ws", receiver.url)
        append(ws, checkpoint_line(11, inc.live_digest))
        session = Session(ws, config, read_only=True)
        assert session.alerts is None
        task = asyncio.create_task(session.run())
        for _ in range(500):
            if session.dashboard.top is not None:
                break
            await asyncio.sleep(0.01)
        session.stop()
        await asyncio.wait_for(task, 15)
    assert session.dashboard.top.code == "registry_mismatch"
    assert receiver.requests == []
    assert not (ws.outbox / "webhook").exists()


def test_metrics_registries_are_independent():
    from polylog_console.core.infra.metrics import Metrics, parse_address

    a, b = Metrics(), Metrics()
    a.sent.labels("webhook").inc()
    assert b"polylog_alerts_sent_total{sink=\"webhook\"} 1.0" in a.render()
    assert b"polylog_alerts_sent_total{sink=" not in b.render()
    assert parse_address("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_address("[::1]:0") == ("::1", 0)
    assert parse_address(":9464") == ("0.0.0.0", 9464)
    for bad in ("9464", "host:", "host:port", "h:70000"):
        try:
            parse_address(bad)
        except Exception as exc:
            assert re.search("--metrics", str(exc))
        else:
            raise AssertionError(bad)


async def test_without_sinks_nothing_is_written_to_the_outbox(tmp_path):
    ws, config, inc = in_sync_workspace(tmp_path / "ws", "http://127.0.0.1:9/unused")
    from dataclasses import replace

    config = replace(config, alerts=replace(config.alerts, webhook=None))
    append(ws, checkpoint_line(11, inc.live_digest))
    session = Session(ws, config)
    task = asyncio.create_task(session.run())
    for _ in range(500):
        if session.dashboard.top is not None:
            break
        await asyncio.sleep(0.01)
    session.stop()
    await asyncio.wait_for(task, 15)
    assert session.dashboard.top.code == "registry_mismatch"
    assert not ws.outbox.exists()
