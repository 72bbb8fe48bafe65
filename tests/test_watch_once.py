"""``watch --once`` is the session's pipeline run to the end of the feed (issue 11 items 4, 5, 8;
issue 10 item 13): the human and JSON outputs agree on every count and every alert's text, the
incident starts at the first mismatching checkpoint's time, alerts are audited without sinks, an
automatic refresh runs when enabled, and a flapping feed keeps bounded state."""

from __future__ import annotations

import json
import re
import time
from collections import Counter

import orjson

from polylog_console.core.model.config import load_config
from polylog_console.core.model.workspace import Workspace
from polylog_console.core.monitor.incident import MAX_NOTES, IncidentEvent
from polylog_console.core.monitor.rules import format_age
from polylog_console.core.monitor.session import Session

START = "2025-11-09T17:43:20.000Z"  # checkpoint-0171's timestamp: where the sample's drift begins


def audit_lines(root) -> list[dict]:
    path = root / "memory" / "audit" / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_once_and_json_agree_on_every_count_and_every_alert_text(sample_ws, cli):
    human = cli("watch", "--once", cwd=sample_ws.root)
    machine = cli("watch", "--once", "--json", cwd=sample_ws.root)
    assert human.code == machine.code == 1, human.err + machine.err
    events = [json.loads(line) for line in machine.out.splitlines()]
    summary = events[-1]
    assert summary["event"] == "summary"
    by_kind = Counter(e["event"] for e in events)
    alerts = [e for e in events if e["event"] == "alert"]
    # the JSON stream and its summary agree ...
    assert by_kind["checkpoint"] == summary["checkpoints"] == 200
    assert by_kind["entry"] == summary["entries"] == 9
    assert by_kind["ingest_error"] == summary["ingest_errors"] == 1
    assert sum(1 for e in events if e.get("event") == "checkpoint" and e.get("warnings")) == summary["warnings"] == 1
    assert Counter(f"{a['code']} {a['status']}" for a in alerts) == Counter(summary["alerts"])
    last = [e for e in events if e["event"] == "checkpoint"][-1]
    assert last["consecutive_mismatches"] == summary["consecutive_mismatches"] == 30
    # ... and the human summary prints the same numbers
    out = human.out
    assert (f"read            {summary['checkpoints']} checkpoints, {summary['entries']} other entries, "
            f"{summary['ingest_errors']} ingest errors") in out
    assert f"{summary['warnings']} checkpoints with field warnings" in out
    assert f"status          DRIFT (stale), {summary['consecutive_mismatches']} consecutive mismatches" in out
    listed = ", ".join(f"{key}: {n}" for key, n in sorted(summary["alerts"].items()))
    assert f"alerts          {listed}\n" in out
    # every alert's summary, verbatim, in both
    for alert in alerts:
        assert f"alert           {alert['code']} {alert['status']}: {alert['summary']}\n" in out
    escalation = next(a for a in alerts if a["code"] == "drift_persistent")
    assert escalation["summary"] == "escalate: 3 consecutive checkpoints mismatch"  # escalate_after = 3
    assert escalation["checkpoint"]["label"] == "checkpoint-0173"
    # staleness is the latest checkpoint's age (checkpoint-0200), not the first's
    stale = next(a for a in alerts if a["code"] == "stale_digest")
    latest_ts = summary["latest"]["timestamp"]
    ages = {format_age(time.time() - latest_ts + d) for d in (-120, 0, 120)}
    assert re.match(r"latest checkpoint is (\S+) old", stale["summary"]).group(1) in ages
    assert stale["checkpoint"]["label"] == "checkpoint-0200"


def test_the_incident_starts_at_the_first_mismatching_checkpoint(sample_ws, cli):
    machine = cli("watch", "--once", "--json", cwd=sample_ws.root)
    events = [json.loads(line) for line in machine.out.splitlines()]
    opened = next(e for e in events if e["event"] == "incident" and e["kind"] == "opened")
    assert (opened["started_at"], opened["started_label"], opened["start_in_history"]) == (
        START, "checkpoint-0171", True)
    drift = next(e for e in events if e["event"] == "status" and e["status"] == "DRIFT")
    assert drift["checkpoint_ts"] == START and drift["at"] != START  # the checkpoint's time and the read time
    firing = next(e for e in events if e["event"] == "alert" and e["code"] == "registry_mismatch")
    assert firing["since"] == START  # what Alertmanager's startsAt reads
    assert events[-1]["incident"]["started_label"] == "checkpoint-0171"
    human = cli("watch", "--once", cwd=sample_ws.root)
    assert "incident        #1 open: drift since 2025-11-09T17:43:20Z (checkpoint-0171, line 179)" in human.out


async def test_the_session_and_the_bundle_agree_on_the_start(sample_ws, cli):
    ws = Workspace.open(sample_ws.root)
    session = Session(ws, load_config(ws.root))
    await session.run_once(emit_checkpoints=False)
    incident = session.monitor.snapshot().incident
    assert incident is not None and incident.started_label == "checkpoint-0171"
    assert incident.to_json()["started_at"] == START
    assert incident.mismatching_checkpoints == 30 and incident.escalated
    bundle = cli("bundle", "--json", cwd=sample_ws.root)
    assert bundle.code == 0, bundle.err
    text = (sample_ws.root / json.loads(bundle.out)["relative_path"]).read_text()
    assert f"| drift observed since | `{START}` (`checkpoint-0171`, line 179) |" in text


def test_once_without_sinks_audits_every_alert(sample_ws, cli):
    """Issue 10 item 13: SPEC §8, every alert raised is audited, with or without sinks."""
    result = cli("watch", "--once", "--json", cwd=sample_ws.root)
    raised = [e for e in map(json.loads, result.out.splitlines()) if e["event"] == "alert"]
    audit = audit_lines(sample_ws.root)
    audited = [(a["code"], a["status"]) for a in audit if a["event"] in ("alert_raised", "escalation")]
    assert sorted(audited) == sorted((a["code"], a["status"]) for a in raised) and len(raised) == 3
    assert [a["started_label"] for a in audit if a["event"] == "incident_opened"] == ["checkpoint-0171"]


def test_once_with_refresh_enabled_attempts_it_and_audits_every_alert(sample_ws, cli):
    config = sample_ws.root / "monitoring.toml"
    config.write_text(config.read_text().replace("enabled = false", "enabled = true"))
    result = cli("watch", "--once", cwd=sample_ws.root)
    assert "refresh         started" in result.out, result.out + result.err
    assert re.search(r"refresh         finished: (parity|drift_remains)", result.out), result.out
    audit = audit_lines(sample_ws.root)
    names = [a["event"] for a in audit]
    assert "refresh_started" in names and "refresh_finished" in names
    printed = dict(re.findall(r"(\S+ \S+): (\d+)", result.out.split("alerts          ")[1].splitlines()[0]))
    audited = Counter()
    for a in audit:
        if a["event"] in ("alert_raised", "alert_resolved", "escalation"):
            audited[f"{a['code']} {a['status']}"] += a.get("repeated", 1)
    assert printed and {key: int(n) for key, n in printed.items()} == dict(audited)


def test_a_usage_error_is_one_line_on_stderr(cli, tmp_path):
    for args in (("valdate",), ("validate", "--jsn")):
        result = cli(*args, cwd=tmp_path)
        assert result.code == 2 and result.out == ""
        assert len(result.err.splitlines()) == 1, result.err
        assert result.err.startswith("polylog-console: error: ") and "--help" in result.err


def flapping_feed(path, stored: str, n: int, start: float) -> None:
    with open(path, "wb") as handle:
        for i in range(n):
            digest = "f" * 64 if i % 3 == 2 else stored
            handle.write(orjson.dumps({"label": f"cp-{i:06d}", "registry_digest": digest,
                                       "timestamp": start + i}) + b"\n")


async def test_a_flapping_feed_keeps_bounded_state(small_ws):
    """Item 8, scaled down: 30,001 checkpoints, every third mismatching. The 20th incident within
    200 checkpoints is a flapping one, held open: 20 incidents in all, a bounded audit."""
    ws = Workspace.open(small_ws.root)
    n = 30_001
    flapping_feed(small_ws.feed, small_ws.incident.stored_digest, n, time.time() - n)
    session = Session(ws, load_config(ws.root))
    seen = Counter()
    session.subscribe(lambda events: seen.update(e.kind for e in events if isinstance(e, IncidentEvent)))
    await session.run_once(emit_checkpoints=False)
    monitor = session.monitor
    view = monitor.snapshot()
    assert view.checkpoints == n and view.incidents == 20 == seen["opened"] and seen["resolved"] == 19
    incident = view.incident
    assert incident is not None and incident.id == 20 and incident.flapping and incident.started_label == "cp-000059"
    assert incident.flap_drifts == incident.mismatching_checkpoints == n // 3 - 19
    assert incident.matching_checkpoints == (n - 60) - (incident.mismatching_checkpoints - 1)  # after cp-000059
    assert len(incident.notes) <= MAX_NOTES and len(incident.live_digests) == 1
    assert len(monitor._diff_cache) <= 64 and len(monitor._dedup) <= monitor.DEDUP_CACHE
    # every alert and incident event is audited, in order (SPEC §8): the flapping incident's drifts
    # are counted in it, not alerted one by one
    from polylog_console.core.infra.audit import iter_records

    audit = list(iter_records(ws.audit))
    assert not any(a.get("repeated") for a in audit)
    kinds = [a["event"] for a in audit if a["event"] != "alert_raised" or a["code"] != "stale_digest"]
    assert kinds == ["incident_opened", "alert_raised", "alert_resolved", "incident_resolved"] * 19 + [
        "incident_opened", "alert_raised", "escalation", "incident_escalated"], kinds[-8:]
    assert [a["incident"] for a in audit if a["event"] == "incident_opened"] == list(range(1, 21))


async def test_alertmanager_starts_at_reads_the_incident_start(sample_ws):
    """Alertmanager's startsAt is when the drift began (the incident's first mismatching
    checkpoint), not when this workspace's monitor read it."""
    from polylog_console.core.alerts.payload import alertmanager_alerts, from_alert
    from polylog_console.core.model.events import AlertEvent

    ws = Workspace.open(sample_ws.root)
    session = Session(ws, load_config(ws.root))
    raised = []
    session.subscribe(lambda events: raised.extend(e.alert for e in events if isinstance(e, AlertEvent)))
    await session.run_once(emit_checkpoints=False)
    firing = next(a for a in raised if a.code == "registry_mismatch")
    note = from_alert(firing, workspace="ws", runbook_url="https://x", now=time.time())
    assert alertmanager_alerts(note, time.time(), 300)[0]["startsAt"] == START
