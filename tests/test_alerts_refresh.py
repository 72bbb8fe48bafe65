"""Automatic refresh with the real rehydrate: one attempt per new drift, run in a thread, audited;
drift left in place escalates (drift_persistent); a failed refresh raises registry_provider_error
(fanned out to a real webhook receiver) and is resolved when the drift ends."""

from __future__ import annotations

import json

from polylog_console.core.model.config import load_config
from polylog_console.core.model.events import AlertEvent
from polylog_console.core.model.workspace import Workspace
from polylog_console.core.monitor.session import Session
from polylog_console.core.registry.digest import digest
from polylog_console.core.registry.stored import state_from_polyforms
from tests.servers import Receiver, checkpoint_line, records


def session_for(root, *, refresh: bool = True, env: dict | None = None) -> tuple[Session, list]:
    ws = Workspace.open(root)
    config = load_config(ws.root, env={"POLYLOG_REFRESH_ENABLED": "true" if refresh else "false",
                                       "POLYLOG_MONITOR_ESCALATE_AFTER": "100", "POLYLOG_MONITOR_STALE_AFTER": "1000d",
                                       **(env or {})})
    session = Session(ws, config, actor="tester@host", dispatcher_options={"resolve_hold": 0.0})
    seen: list = []
    session.subscribe(seen.extend)
    return session, seen


def audit(session: Session) -> list[dict]:
    return [json.loads(line) for line in session.ws.audit.read_text().splitlines()]


def alerts(seen: list) -> list[tuple[str, str, str | None]]:
    return [(e.alert.code, e.alert.status, e.alert.reason) for e in seen if isinstance(e, AlertEvent)]


async def test_refresh_that_leaves_the_drift_escalates(small_ws):
    session, seen = session_for(small_ws.root)
    await session.start_alerts()
    inc = small_ws.incident
    session.publish(session.monitor.process(records(checkpoint_line(1, inc.stored_digest),
                                                    checkpoint_line(2, inc.live_digest))))
    await session.refresh.wait(60)
    # the catalogs were rebuilt from the current source (S1), which still differs from the live registry
    s1 = digest(state_from_polyforms(inc.current))
    assert json.loads(session.ws.registry.read_text())["digest"] == s1
    names = [e["event"] for e in audit(session)]
    assert names.count("refresh_started") == 1 and names.count("refresh_finished") == 1
    finished = next(e for e in audit(session) if e["event"] == "refresh_finished")
    assert finished["outcome"] == "drift_remains" and finished["registry_digest"] == s1
    assert ("drift_persistent", "firing", "drift remains after rehydrate") in alerts(seen)
    assert [e.phase for e in seen if getattr(e, "event", "") == "refresh"] == ["started", "finished"]
    # one attempt per distinct drift: more mismatching checkpoints do not refresh again
    session.publish(session.monitor.process(records(checkpoint_line(3, inc.live_digest), first_line=3)))
    await session.refresh.wait(60)
    assert [e["event"] for e in audit(session)].count("refresh_started") == 1
    await session.close_alerts()


async def test_refresh_that_restores_parity_resolves(small_ws):
    session, seen = session_for(small_ws.root)
    await session.start_alerts()
    inc = small_ws.incident
    s1 = digest(state_from_polyforms(inc.current))  # the engine already runs on the current source
    session.publish(session.monitor.process(records(checkpoint_line(1, s1))))
    assert alerts(seen)[0][:2] == ("registry_mismatch", "firing")
    await session.refresh.wait(60)
    assert session.monitor.latest_match is True
    assert ("registry_resolved", "resolved", "parity") in alerts(seen)
    assert not any(code == "drift_persistent" for code, *_ in alerts(seen))
    finished = next(e for e in audit(session) if e["event"] == "refresh_finished")
    assert finished["outcome"] == "parity"
    await session.close_alerts()


async def test_failed_refresh_raises_registry_provider_error_to_the_sinks(small_ws):
    (small_ws.root / "stable_polyforms.jsonl").open("a").write('{"uuid": "not-a-uuid"}\n')
    before = (small_ws.root / "catalogs" / "registry.json").read_bytes()
    with Receiver() as receiver:
        (small_ws.root / "monitoring.toml").write_text(f'[webhook]\nurl = "{receiver.url}"\n')
        session, seen = session_for(small_ws.root)
        await session.start_alerts()
        inc = small_ws.incident
        session.publish(session.monitor.process(records(checkpoint_line(1, inc.live_digest))))
        await session.refresh.wait(60)
        got = await receiver.until(2)
        assert [(r.json["code"], r.json["status"]) for r in got] == [("registry_mismatch", "firing"),
                                                                       ("registry_provider_error", "firing")]
        assert got[1].json["severity"] == "critical"
        # parity returns (the engine went back): the provider error for that drift is resolved too
        session.publish(session.monitor.process(records(checkpoint_line(2, inc.stored_digest), first_line=2)))
        got = await receiver.until(4)
        await session.close_alerts()
    assert sorted((r.json["code"], r.json["status"]) for r in got[2:]) == [
        ("registry_provider_error", "resolved"), ("registry_resolved", "resolved")]
    assert (small_ws.root / "catalogs" / "registry.json").read_bytes() == before  # nothing written
    failed = next(e for e in audit(session) if e["event"] == "refresh_failed")
    assert "stable_polyforms.jsonl" in failed["error"] and "nothing written" in failed["error"]
    assert ("registry_provider_error", "firing", "refresh failed") in alerts(seen)


async def test_refresh_disabled_does_nothing(small_ws):
    session, _seen = session_for(small_ws.root, refresh=False)
    await session.start_alerts()
    session.publish(session.monitor.process(records(checkpoint_line(1, small_ws.incident.live_digest))))
    await session.refresh.wait(5)
    assert not any(e["event"].startswith("refresh_") for e in audit(session))
    await session.close_alerts()
