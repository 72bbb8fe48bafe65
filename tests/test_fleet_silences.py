"""Acknowledgements as Alertmanager silences, with a real Alertmanager: the silence a drift's ack
created is expired when that drift resolves (and a silence of another drift is not); without
Alertmanager the acknowledgement stays local (audit log)."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from polylog_console.core.alerts.alertmanager import AlertmanagerSink
from polylog_console.core.alerts.delivery import Backoff
from polylog_console.core.alerts.dispatcher import AlertDispatcher
from polylog_console.core.fleet.silences import (
    ACKS_FILE,
    AlertmanagerClient,
    NothingToAcknowledge,
    acknowledge,
    read_acks,
)
from polylog_console.core.infra.audit import AuditLog
from polylog_console.core.model.config import MonitorConfig, load_config
from polylog_console.core.model.workspace import Workspace
from polylog_console.core.monitor.rules import Monitor
from polylog_console.core.registry.stored import StoredRegistry
from tests.promstack import AlertmanagerNode
from tests.servers import checkpoint_line, records, wait_until

pytestmark = pytest.mark.e2e


def with_fleet(root, name: str, am_url: str | None = None) -> None:
    config = root / "monitoring.toml"
    text = config.read_text() if config.exists() else ""
    text += f'\n[fleet]\nname = "{name}"\n'
    if am_url:
        text += f'\n[alertmanager]\nurl = "{am_url}"\n'
    config.write_text(text)


def audit_events(root) -> list[dict]:
    path = root / "memory" / "audit" / "events.jsonl"
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


async def test_the_ack_of_a_drift_is_expired_when_it_resolves(small_ws, tmp_path):
    with AlertmanagerNode(tmp_path) as am:
        with_fleet(small_ws.root, "ws-one", am.url)
        config = load_config(small_ws.root)
        ws = Workspace.open(small_ws.root)
        monitor = Monitor(StoredRegistry.for_workspace(ws), MonitorConfig(escalate_after=50), ws)
        sink = AlertmanagerSink(am.url, timeout=5, resend_interval=0.5, workspace_name="ws-one", root=ws.root)
        dispatcher = AlertDispatcher(ws.outbox, [sink], workspace=str(ws.root), runbook_url="https://rb.example/",
                                     audit=AuditLog(ws.audit, "t@h"), resolve_hold=0.0,
                                     backoff=Backoff(base=0.05, cap=0.2))
        await dispatcher.start()
        inc = small_ws.incident
        try:
            dispatcher.submit(monitor.process(records(checkpoint_line(1, inc.stored_digest),
                                                      checkpoint_line(2, inc.live_digest))))
            assert await asyncio.to_thread(wait_until, lambda: any(
                a["labels"].get("workspace") == "ws-one" for a in am.alerts()), 15)
            (alert,) = [a for a in am.alerts() if a["labels"]["alertname"] == "registry_mismatch"]
            # the ack reads the current drift from the workspace's feed + stored registry: the same key
            client = AlertmanagerClient(am.url)
            result = await asyncio.to_thread(acknowledge, config, "oncall@laptop", client=client,
                                             comment="looking")
            assert result.matchers == {"workspace": "ws-one", "dedup_key": alert["labels"]["dedup_key"]}
            assert [a["id"] for a in read_acks(ws.root)] == [result.silence_id]
            # a silence of another drift of the same workspace must survive this drift's resolution
            other = await asyncio.to_thread(client.create_silence, {"workspace": "ws-one", "dedup_key": "other"},
                                            created_by="x@y", comment="other drift", ends_at=4102444800)
            assert await asyncio.to_thread(wait_until, lambda: [
                a["status"]["state"] for a in am.alerts() if a["labels"]["alertname"] == "registry_mismatch"]
                == ["suppressed"], 15)

            dispatcher.submit(monitor.process(records(checkpoint_line(3, inc.stored_digest), first_line=3)))

            def states() -> dict[str, str]:
                return {s["id"]: s["status"]["state"] for s in am.silences()}

            assert await asyncio.to_thread(wait_until, lambda: states().get(result.silence_id) == "expired", 15), \
                states()
            assert states()[other] == "active"
            assert sink.expired == [result.silence_id]
            assert read_acks(ws.root) == []
            expired = [e for e in audit_events(ws.root) if e["event"] == "acknowledgement_expired"]
            assert expired and expired[0]["silence_ids"] == [result.silence_id]
            client.close()
        finally:
            await dispatcher.close(grace=1.0)


def test_without_alertmanager_the_ack_stays_local(small_ws):
    with_fleet(small_ws.root, "lonely")
    config = load_config(small_ws.root)
    result = acknowledge(config, "me@here", comment="seen")
    assert result.silence_id is None and result.alertmanager is None
    assert result.matchers["workspace"] == "lonely" and len(result.matchers["dedup_key"]) == 24
    (event,) = [e for e in audit_events(small_ws.root) if e["event"] == "acknowledged"]
    assert event["actor"] == "me@here" and event["where"] == "local" and event["matchers"] == result.matchers
    assert not (small_ws.root / ACKS_FILE).exists()


def test_nothing_to_acknowledge_on_a_workspace_in_sync(small_ws):
    from tests.test_ui_support import in_sync_workspace

    root = small_ws.root.parent / "sync"
    in_sync_workspace(root, 5)
    with_fleet(root, "sync")
    with pytest.raises(NothingToAcknowledge):
        acknowledge(load_config(root), "me@here")
    # --all needs no drift
    assert acknowledge(load_config(root), "me@here", all_alerts=True).matchers == {"workspace": "sync"}


def test_own_name_without_a_feed_asks_alertmanager(tmp_path):
    with AlertmanagerNode(tmp_path) as am:
        root = tmp_path / "bare"
        root.mkdir()
        with_fleet(root, "bare", am.url)
        import httpx

        alert = [{"labels": {"alertname": "registry_mismatch", "workspace": "bare", "dedup_key": "abc123"},
                  "startsAt": "2026-01-01T00:00:00Z"}]
        httpx.post(f"{am.url}/api/v2/alerts", json=alert, timeout=5).raise_for_status()
        assert wait_until(lambda: any(a["labels"].get("workspace") == "bare" for a in am.alerts()), 10)
        result = acknowledge(load_config(root, env={}), "me@here")
        assert result.matchers == {"workspace": "bare", "dedup_key": "abc123"}
