"""Webhook delivery end to end: a real monitor's alerts, the durable outbox, and a real HTTP
receiver on 127.0.0.1 that checks the body and the HMAC signature; faults (500, hang, 4xx,
connection refused across a restart) with no alert lost."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest

from polylog_console.core.alerts.delivery import Backoff
from polylog_console.core.alerts.dispatcher import AlertDispatcher
from polylog_console.core.alerts.webhook import WebhookSink
from polylog_console.core.infra.audit import AuditLog
from polylog_console.core.model.config import MonitorConfig, Secret
from polylog_console.core.model.workspace import Workspace
from polylog_console.core.monitor.rules import Monitor
from polylog_console.core.registry.stored import StoredRegistry
from tests.servers import Receiver, checkpoint_line, free_port, records, refused_url, wait_until

SECRET = "s3cr3t-hmac-key-for-tests"
FAST = Backoff(base=0.05, factor=2.0, cap=0.2)
SPEC_FIELDS = ["version", "code", "status", "severity", "dedup_key", "workspace", "host", "sent_at", "checkpoint",
               "stored_digest", "consecutive_mismatches", "diff", "runbook_url"]


def setup(root: Path, url: str, *, secret: str | None = SECRET, timeout: float = 2.0, **kwargs):
    ws = Workspace.open(root)
    monitor = Monitor(StoredRegistry.for_workspace(ws), MonitorConfig(escalate_after=3), ws)
    audit = AuditLog(ws.audit, "tester@host")
    events: list = []
    sink = WebhookSink(url, secret=Secret(secret, "test") if secret else None, timeout=timeout)
    options = {"repeat_interval": 3600.0, "resolve_hold": 0.0, "backoff": FAST, **kwargs}
    dispatcher = AlertDispatcher(ws.outbox, [sink], workspace=str(ws.root), runbook_url="https://rb.example/drift",
                                 audit=audit, emit=events.extend, **options)
    return ws, monitor, dispatcher, audit, events


def drift_lines(incident, n: int = 1, start: int = 1) -> list[bytes]:
    return [checkpoint_line(start + i, incident.live_digest, registry_state=incident.live_state) for i in range(n)]


def audit_events(ws: Workspace) -> list[dict]:
    if not ws.audit.exists():
        return []
    return [json.loads(line) for line in ws.audit.read_text().splitlines()]


def outbox_files(ws: Workspace, sink: str = "webhook") -> list[Path]:
    directory = ws.outbox / sink
    return sorted(directory.glob("*.json")) if directory.exists() else []


async def test_drift_is_posted_with_the_spec_body_and_a_valid_signature(small_ws):
    with Receiver(secret=SECRET) as receiver:
        ws, monitor, dispatcher, _audit, events = setup(small_ws.root, receiver.url)
        await dispatcher.start()
        inc = small_ws.incident
        dispatcher.submit(monitor.process(records(checkpoint_line(1, inc.stored_digest), *drift_lines(inc, start=2))))
        (request,) = await receiver.until(1)
        assert await dispatcher.flush(5)
        await dispatcher.close()

    body = request.json
    assert list(body) == SPEC_FIELDS
    assert request.signature_ok is True
    assert request.headers["x-polylog-signature"].startswith("sha256=")
    assert request.headers["content-type"] == "application/json"
    assert body["version"] == 1 and body["code"] == "registry_mismatch" and body["status"] == "firing"
    assert body["severity"] == "critical"
    assert body["workspace"] == str(ws.root)
    assert body["stored_digest"] == inc.stored_digest
    assert body["checkpoint"] == {"label": "checkpoint-0002", "timestamp": body["checkpoint"]["timestamp"],
                                  "registry_digest": inc.live_digest}
    assert body["consecutive_mismatches"] == 1
    assert body["runbook_url"] == "https://rb.example/drift"
    assert body["sent_at"].endswith("Z")
    diff = body["diff"]
    assert set(diff) == {"missing", "unexpected", "mismatched", "sample"}
    assert diff["missing"] == 3 and diff["mismatched"] == 4 + 5 and diff["unexpected"] == 40
    assert {len(v) for v in diff["sample"].values()} <= {3, 9, 10}
    # the outbox is empty once accepted; the delivery is audited and visible as an event
    assert outbox_files(ws) == []
    delivered = [e for e in audit_events(ws) if e["event"] == "alert_delivered"]
    assert delivered and delivered[0]["sink"] == "webhook" and delivered[0]["code"] == "registry_mismatch"
    assert [e.outcome for e in events] == ["delivered"]
    assert events[0].to_json()["event"] == "delivery"
    # the secret appears nowhere on disk
    for path in ws.root.joinpath("memory").rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


async def test_without_secret_no_signature_header(small_ws):
    with Receiver() as receiver:
        _ws, monitor, dispatcher, *_ = setup(small_ws.root, receiver.url, secret=None)
        await dispatcher.start()
        dispatcher.submit(monitor.process(records(*drift_lines(small_ws.incident))))
        (request,) = await receiver.until(1)
        await dispatcher.close()
    assert "x-polylog-signature" not in request.headers
    assert request.headers["x-polylog-delivery"] == outbox_id_of(request)


def outbox_id_of(request) -> str:
    return request.headers["x-polylog-delivery"]


async def test_outbox_file_is_written_before_sending(small_ws):
    """While the receiver holds the request, the delivery is already on disk, without secrets."""
    with Receiver(secret=SECRET, script=["hang"], hang_for=2.0) as receiver:
        ws, monitor, dispatcher, *_ = setup(small_ws.root, receiver.url, timeout=5.0)
        await dispatcher.start()
        dispatcher.submit(monitor.process(records(*drift_lines(small_ws.incident))))
        await receiver.until(1, accepted=False)
        files = outbox_files(ws)
        assert len(files) == 1
        stored = orjson.loads(files[0].read_bytes())
        assert stored["sink"] == "webhook" and stored["notification"]["code"] == "registry_mismatch"
        assert SECRET not in files[0].read_text()
        receiver._release.set()
        await dispatcher.close(grace=0.1)


async def test_500_then_200_is_delivered_once_the_receiver_recovers(small_ws):
    with Receiver(secret=SECRET, script=[500, 503, 500]) as receiver:
        ws, monitor, dispatcher, _audit, events = setup(small_ws.root, receiver.url)
        await dispatcher.start()
        dispatcher.submit(monitor.process(records(*drift_lines(small_ws.incident))))
        (ok,) = await receiver.until(1)
        assert await dispatcher.flush(5)
        await dispatcher.close()
    assert [r.answered for r in receiver.requests] == [500, 503, 500, 200]
    assert ok.signature_ok is True
    # the same notification each time (same delivery id), re-signed per attempt
    assert len({r.headers["x-polylog-delivery"] for r in receiver.requests}) == 1
    assert [e.outcome for e in events] == ["retry", "retry", "retry", "delivered"]
    retries = [e for e in audit_events(ws) if e["event"] == "alert_retry"]
    assert [r["attempt"] for r in retries] == [1, 2, 3]
    assert "HTTP 500" in retries[0]["error"]
    assert outbox_files(ws) == []


async def test_429_and_hanging_receiver_are_retried(small_ws):
    with Receiver(script=[429, "hang"], hang_for=5.0) as receiver:
        _ws, monitor, dispatcher, _audit, events = setup(small_ws.root, receiver.url, secret=None, timeout=0.3)
        await dispatcher.start()
        dispatcher.submit(monitor.process(records(*drift_lines(small_ws.incident))))
        await receiver.until(1)
        assert await dispatcher.flush(5)
        await dispatcher.close()
    assert [r.answered for r in receiver.requests] == [429, "hang", 200]
    assert [e.outcome for e in events] == ["retry", "retry", "delivered"]
    assert "timed out" in events[1].error


async def test_4xx_is_not_retried_and_is_audited_and_kept(small_ws):
    with Receiver(script=[400]) as receiver:
        ws, monitor, dispatcher, _audit, events = setup(small_ws.root, receiver.url, secret=None)
        await dispatcher.start()
        dispatcher.submit(monitor.process(records(*drift_lines(small_ws.incident))))
        await receiver.until(1, accepted=False)
        assert await dispatcher.flush(5)
        await asyncio.sleep(0.3)  # a retry (base 0.05 s) would have happened by now
        await dispatcher.close()
    assert len(receiver.requests) == 1
    assert [e.outcome for e in events] == ["failed"]
    failed = [e for e in audit_events(ws) if e["event"] == "alert_failed"]
    assert len(failed) == 1 and "HTTP 400" in failed[0]["error"] and failed[0]["sink"] == "webhook"
    assert outbox_files(ws) == []
    kept = list((ws.outbox / "failed").glob("webhook-*.json"))
    assert len(kept) == 1 and "HTTP 400" in orjson.loads(kept[0].read_bytes())["last_error"]


async def test_dead_sink_does_not_block_the_monitor_or_other_sinks(small_ws):
    """One sink hangs; the other gets the alert at once and submit() returns immediately."""
    with Receiver(script=["hang"], hang_for=10.0) as slow, Receiver() as fast:
        ws = Workspace.open(small_ws.root)
        monitor = Monitor(StoredRegistry.for_workspace(ws), MonitorConfig(), ws)

        class Named(WebhookSink):
            name = "slow"

        dispatcher = AlertDispatcher(ws.outbox, [Named(slow.url, timeout=8.0), WebhookSink(fast.url)],
                                     workspace=str(ws.root), runbook_url="u", resolve_hold=0.0, backoff=FAST)
        await dispatcher.start()
        loop = asyncio.get_running_loop()
        started = loop.time()
        dispatcher.submit(monitor.process(records(*drift_lines(small_ws.incident))))
        assert loop.time() - started < 4.0  # far below the slow sink's 8 s: submit does no network I/O
        await fast.until(1, 5.0)
        assert len(slow.requests) == 1 and slow.accepted() == []
        slow._release.set()
        await dispatcher.close(grace=0.1)


CHILD = textwrap.dedent(f"""
    import asyncio, sys, time
    from polylog_console.core.alerts.delivery import Backoff
    from polylog_console.core.alerts.dispatcher import AlertDispatcher
    from polylog_console.core.alerts.webhook import WebhookSink
    from polylog_console.core.infra.audit import AuditLog
    from polylog_console.core.model.config import Secret
    from polylog_console.core.monitor.rules import Monitor
    from polylog_console.core.feed.records import read_records
    from polylog_console.core.registry.stored import StoredRegistry
    from polylog_console.core.model.workspace import Workspace

    async def main(root, url):
        ws = Workspace.open(root)
        monitor = Monitor(StoredRegistry.for_workspace(ws), workspace=ws)
        sink = WebhookSink(url, secret=Secret("{SECRET}", "env"), timeout=1.0)
        d = AlertDispatcher(ws.outbox, [sink], workspace=str(ws.root), runbook_url="u",
                            audit=AuditLog(ws.audit), backoff=Backoff(base=0.05, cap=0.2), resolve_hold=0.0)
        await d.start()
        for batch in read_records(ws.feed):
            d.submit(monitor.process(batch))
        print("submitted", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main(sys.argv[1], sys.argv[2]))
""")


async def test_connection_refused_then_kill_9_then_restart_delivers_from_the_outbox(small_ws):
    """The watcher cannot reach the receiver, is killed with SIGKILL; a new dispatcher replays
    the outbox once the receiver is up: the alert arrives, signed, nothing lost."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    ws = Workspace.open(small_ws.root)
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(ws.root), url], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "submitted"
        assert wait_until(lambda: any(e["event"] == "alert_retry" for e in audit_events(ws)), timeout=20)
        # the sample feed ends in a drift (escalated: 6 mismatching checkpoints) that is old (stale)
        codes = [orjson.loads(p.read_bytes())["notification"]["code"] for p in outbox_files(ws)]
        assert sorted(codes) == ["drift_persistent", "registry_mismatch", "stale_digest"]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert len(outbox_files(ws)) == 3

    with Receiver(secret=SECRET, port=port) as receiver:  # up again, where the dead watcher was sending
        _, _, dispatcher, _, _events = setup(ws.root, url)
        await dispatcher.start()
        got = await receiver.until(3, 10.0)
        assert await dispatcher.flush(5)
        await dispatcher.close()
    assert [r.json["code"] for r in got] == codes  # in order, each once
    assert all(r.signature_ok for r in got)
    assert got[0].json["stored_digest"] == small_ws.incident.stored_digest
    assert outbox_files(ws) == []
    names = [e["event"] for e in audit_events(ws)]
    assert "alert_replayed" in names and "alert_delivered" in names


async def test_second_process_on_the_same_outbox_stands_by(small_ws):
    with Receiver() as receiver:
        _ws, monitor, first, *_ = setup(small_ws.root, receiver.url, secret=None)
        _, monitor2, second, _, _ = setup(small_ws.root, receiver.url, secret=None)
        await first.start()
        await second.start()
        assert not first.standby and second.standby
        second.submit(monitor2.process(records(*drift_lines(small_ws.incident))))
        first.submit(monitor.process(records(*drift_lines(small_ws.incident))))
        await receiver.until(1)
        assert await first.flush(5)
        await asyncio.sleep(0.2)
        await first.close()
        await second.close()
    assert len(receiver.requests) == 1


def test_refused_url_helper_refuses():
    import httpx

    with pytest.raises(httpx.ConnectError):
        httpx.post(refused_url(), content=b"{}", timeout=2)
