"""The session's pipeline, review of issues 10 and 11 (defects A-F):

* A: every alert and incident event is audited, in event order (no record merged across
  incidents nor moved past a later one);
* B: a re-run of ``watch --once`` does not audit again what a previous run wrote;
* C: a history that begins in drift opens its incident at the true start (scan before the first
  comparison): the first alert's ``since`` and count are right;
* D: ``stale_digest`` carries the consecutive count and the incident's start;
* E: a consumer that raises is isolated and reported, the monitor keeps comparing;
* F: ``watch --once --json`` says a provider error in one line on stderr.

Feeds are written from a spec, one checkpoint per letter 60 s apart (``s``: the stored digest,
``a`` / ``b``: two drifting live digests), into a fresh sample workspace, and run through the
real command line.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from polylog_console.core.model.config import load_config
from polylog_console.core.model.events import AlertEvent, CheckpointEvent
from polylog_console.core.model.workspace import Workspace
from polylog_console.core.monitor import session as session_module
from polylog_console.core.monitor.incident import IncidentEvent
from polylog_console.core.monitor.session import ConsumerErrorEvent, Session
from polylog_console.demo.sample import write_workspace
from tests.conftest import run_cli

LIVE_A = "a1" * 32
LIVE_B = "b2" * 32
FEED = Path("memory/coordination/context-brief.jsonl")
START = "2025-11-09T17:43:20.000Z"  # the sample's drift begins at checkpoint-0171


def sample(tmp_path: Path) -> tuple[Path, str]:
    root = tmp_path / "ws"
    incident = write_workspace(root)
    return root, incident.stored_digest


def write_spec(root: Path, stored: str, spec: str, t0: float, *, first: int = 1, append: bool = False) -> None:
    digests = {"s": stored, "a": LIVE_A, "b": LIVE_B}
    with open(root / FEED, "ab" if append else "wb") as handle:
        for i, ch in enumerate(spec):
            n = first + i
            handle.write(orjson.dumps({"label": f"checkpoint-{n:04d}", "path": "x", "polygons": 1,
                                       "chunk_count": 1, "module_refs": 1, "registry_digest": digests[ch],
                                       "timestamp": t0 + 60 * (n - 1)}) + b"\n")


def audit(root: Path) -> list[dict]:
    path = root / "memory" / "audit" / "events.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def monitor_records(records: list[dict]) -> list[tuple]:
    """(record, what it is about) for the alert and incident records, in log order."""
    out = []
    for r in records:
        if r["event"].startswith("incident_"):
            out.append((r["event"], r["incident"], r.get("last_label")))
        elif r["event"] in ("alert_raised", "alert_resolved", "escalation"):
            out.append((r["event"], r["code"], r.get("checkpoint")))
    return out


def stream_records(events: list[dict]) -> list[tuple]:
    """What the audit should hold for the --json stream's alert and incident events, in order."""
    out = []
    for e in events:
        if e["event"] == "incident" and e["kind"] != "noted":
            out.append((f"incident_{e['kind']}", e["id"], e.get("last_label")))
        elif e["event"] == "alert":
            name = "alert_raised" if e["status"] == "firing" else "alert_resolved"
            if e["code"] == "drift_persistent" and e["status"] == "firing":
                name = "escalation"
            out.append((name, e["code"], e["checkpoint"]["label"] if e.get("checkpoint") else None))
    return out


# -- A: every record, in event order -----------------------------------------------------------

@pytest.mark.parametrize("spec", ["sasasaass", "aabbaasss", "saasbbsaab"])
def test_every_alert_and_incident_is_audited_in_event_order(tmp_path, spec):
    root, stored = sample(tmp_path)
    write_spec(root, stored, spec, time.time() - 60 * len(spec))
    result = run_cli("watch", "--once", "--json", "--workspace", str(root))
    assert result.code in (0, 1), result.err
    events = [json.loads(x) for x in result.out.splitlines()]
    records = audit(root)
    assert monitor_records(records) == stream_records(events)
    assert not any(r.get("repeated") for r in records)
    if spec == "sasasaass":  # three incidents, each opened and resolved, none lost
        opened = [r["incident"] for r in records if r["event"] == "incident_opened"]
        resolved = [r["incident"] for r in records if r["event"] == "incident_resolved"]
        assert opened == resolved == [1, 2, 3]
    if spec == "aabbaasss":  # A again at checkpoint-0005: its alert and escalation before the resolution
        kinds = [(r[0], r[2]) for r in monitor_records(records)]
        assert kinds.index(("alert_raised", "checkpoint-0005")) < kinds.index(("incident_resolved", "checkpoint-0006"))
        assert kinds.index(("escalation", "checkpoint-0005")) < kinds.index(("incident_resolved", "checkpoint-0006"))


def test_consecutive_identical_records_merge_without_moving(tmp_path):
    """The only merge: a record identical to the one just before it (same incident, same alert,
    same checkpoint) is counted into it."""
    root, stored = sample(tmp_path)
    ws = Workspace.open(root)
    write_spec(root, stored, "ssa", time.time() - 200)
    session = Session(ws, load_config(ws.root))
    asyncio.run(session.run_once(emit_checkpoints=False, grace=0.0))
    before = len(audit(root))
    alert_event = AlertEvent(_alert(session))
    incident_event = IncidentEvent("escalated", session.monitor.snapshot().incident)
    session.publish([alert_event, alert_event, incident_event, alert_event])
    new = audit(root)[before:]
    assert [(r["event"], r.get("repeated")) for r in new] == [
        ("alert_raised", 1), ("incident_escalated", None), ("alert_raised", None)]


def _alert(session: Session):
    from polylog_console.core.model.events import Alert

    incident = session.monitor.snapshot().incident
    return Alert("registry_mismatch", "firing", "k" * 24, "test", time.time(),
                 {"label": "checkpoint-0003", "line": 3, "timestamp": 1.0, "registry_digest": LIVE_A},
                 incident.stored_digest, LIVE_A, 1, incident.started_at)


# -- B: re-runs ----------------------------------------------------------------------------------

def test_a_rerun_does_not_audit_the_same_open_incident_again(tmp_path):
    root, stored = sample(tmp_path)
    write_spec(root, stored, "ssaaaa", time.time() - 600)
    for _ in range(3):
        assert run_cli("watch", "--once", "--workspace", str(root)).code == 1
    names = [r["event"] for r in audit(root)]
    assert names.count("incident_opened") == 1 and names.count("escalation") == 1
    assert sum(1 for r in audit(root) if r["event"] == "alert_raised" and r["code"] == "registry_mismatch") == 1
    # a new checkpoint of the same incident is new: audited (its stale alert, at a new checkpoint, too)
    write_spec(root, stored, "b", time.time() - 600, first=7, append=True)
    assert run_cli("watch", "--once", "--workspace", str(root)).code == 1
    raised = [r["checkpoint"] for r in audit(root) if r["event"] == "alert_raised" and r["code"] == "registry_mismatch"]
    assert raised == ["checkpoint-0003", "checkpoint-0007"]


# -- C: a history that begins in drift ---------------------------------------------------------------

def _watch_json_until(root: Path, predicate, timeout: float = 30.0) -> list[dict]:
    proc = subprocess.Popen([sys.executable, "-m", "polylog_console", "watch", "--json", "--workspace", str(root)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    events: list[dict] = []
    deadline = time.monotonic() + timeout
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            events.append(json.loads(line))
            if predicate(events[-1]) or time.monotonic() > deadline:
                break
    finally:
        proc.terminate()
        proc.wait(15)
    return events


def test_a_short_history_in_drift_alerts_with_the_true_start(tmp_path):
    root, _ = sample(tmp_path)
    toml = root / "monitoring.toml"
    toml.write_text(toml.read_text().replace("history = 500", "history = 5"))
    assert "history = 5 " in toml.read_text()
    events = _watch_json_until(root, lambda e: e["event"] == "alert" and e["code"] == "stale_digest")
    firing = next(e for e in events if e["event"] == "alert" and e["code"] == "registry_mismatch")
    assert firing["since"] == START  # Alertmanager's startsAt: checkpoint-0171, not checkpoint-0196
    assert firing["checkpoint"]["label"] == "checkpoint-0196"
    assert firing["consecutive_mismatches"] == 26  # checkpoint-0171 .. checkpoint-0196
    opened = next(e for e in events if e["event"] == "incident" and e["kind"] == "opened")
    assert (opened["started_label"], opened["start_in_history"], opened["started_at"]) == (
        "checkpoint-0171", True, START)
    drift = next(e for e in events if e["event"] == "status" and e["status"] == "DRIFT")
    assert drift["checkpoint_ts"] == START
    escalation = next(e for e in events if e["event"] == "alert" and e["code"] == "drift_persistent")
    assert escalation["since"] == START and escalation["summary"] == "escalate: 26 consecutive checkpoints mismatch"
    assert not any(e["event"] == "incident" and e["kind"] == "restarted" for e in events)
    last = [e for e in events if e["event"] == "checkpoint"][-1]
    assert last["label"] == "checkpoint-0200" and last["consecutive_mismatches"] == 30


async def test_a_scan_cut_short_leaves_the_rest_to_the_background_scan(tmp_path, monkeypatch):
    root, stored = sample(tmp_path)
    write_spec(root, stored, "s" * 10 + "a" * 40, 1_762_700_000.0)
    (root / "monitoring.toml").write_text("[feed]\nhistory = 5\n")
    monkeypatch.setattr(session_module, "PRESCAN_SECONDS", -1.0)  # the scan before the history stops at once
    ws = Workspace.open(root)
    session = Session(ws, load_config(ws.root))
    seen: list[IncidentEvent] = []
    done = asyncio.Event()

    def subscriber(events):
        for e in events:
            if isinstance(e, IncidentEvent):
                seen.append(e)
                if e.kind == "restarted":
                    done.set()

    session.subscribe(subscriber)
    task = asyncio.create_task(session.run())
    try:
        await asyncio.wait_for(done.wait(), 20)
    finally:
        session.stop()
        await asyncio.wait_for(task, 15)
    assert seen[0].kind == "opened" and not seen[0].incident.start_in_history  # said as "or earlier"
    assert seen[-1].incident.started_label == "checkpoint-0011" and seen[-1].incident.start_in_history


# -- D: stale_digest's count ------------------------------------------------------------------------------

def test_stale_digest_carries_the_count_and_the_incident_start(tmp_path):
    root, _ = sample(tmp_path)
    result = run_cli("watch", "--once", "--json", "--workspace", str(root))
    events = [json.loads(x) for x in result.out.splitlines()]
    stale = next(e for e in events if e["event"] == "alert" and e["code"] == "stale_digest")
    assert stale["consecutive_mismatches"] == 30 and stale["since"] == START
    record = next(r for r in audit(root) if r["event"] == "alert_raised" and r["code"] == "stale_digest")
    assert record["consecutive_mismatches"] == 30


# -- E: a failing consumer ----------------------------------------------------------------------------------

async def test_a_failing_subscriber_is_isolated_and_reported(tmp_path, capsys):
    from polylog_console.cli.common import report_faults

    root, stored = sample(tmp_path)
    write_spec(root, stored, "sss", time.time() - 180)
    (root / "monitoring.toml").write_text("[feed]\nhistory = 50\n")
    ws = Workspace.open(root)
    session = Session(ws, load_config(ws.root))
    report_faults(session)
    batches = {"n": 0}
    labels: list[str] = []
    errors: list[ConsumerErrorEvent] = []

    def fragile(events):
        batches["n"] += 1
        if batches["n"] == 1:
            raise RuntimeError("boom in a view")

    def watcher(events):
        labels.extend(e.checkpoint.label for e in events if isinstance(e, CheckpointEvent))
        errors.extend(e for e in events if isinstance(e, ConsumerErrorEvent))

    session.subscribe(fragile)
    session.subscribe(watcher)
    task = asyncio.create_task(session.run())
    try:
        for _ in range(100):
            if "checkpoint-0003" in labels:
                break
            await asyncio.sleep(0.05)
        write_spec(root, stored, "sa", time.time() - 60, first=4, append=True)
        for _ in range(200):
            if "checkpoint-0005" in labels:
                break
            await asyncio.sleep(0.05)
    finally:
        session.stop()
        await asyncio.wait_for(task, 15)
    assert labels[-2:] == ["checkpoint-0004", "checkpoint-0005"]  # later checkpoints still arrive
    assert session.monitor.snapshot().status.name == "DRIFT"  # ... and are compared
    [error] = errors
    assert error.count == 1 and "boom in a view" in error.error and "fragile" in error.consumer
    assert any(r["event"] == "consumer_error" and "boom" in r["error"] for r in audit(root))
    assert "boom in a view" in capsys.readouterr().err


def test_a_failing_consumer_is_reported_once_per_kind_with_a_count(tmp_path):
    root, stored = sample(tmp_path)
    write_spec(root, stored, "s", time.time())
    ws = Workspace.open(root)
    session = Session(ws, load_config(ws.root))
    reported: list[ConsumerErrorEvent] = []
    session.subscribe(lambda events: reported.extend(e for e in events if isinstance(e, ConsumerErrorEvent)))

    def always(events):
        raise ValueError("bad")

    session.subscribe(always)
    for _ in range(10):
        session.publish([object()])
    assert [e.count for e in reported] == [1, 2, 4, 8]  # not one per failure: a flapping feed never floods
    assert session.consumer_errors[(reported[0].consumer, "ValueError")] == 10


# -- F: a provider error on stderr ----------------------------------------------------------------------------

def test_watch_once_json_says_a_provider_error_on_stderr(tmp_path):
    root, _ = sample(tmp_path)
    (root / "catalogs" / "registry.json").write_text("{not json")
    result = run_cli("watch", "--once", "--json", "--workspace", str(root))
    assert result.code == 2
    lines = result.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("polylog-console: error: ") and "registry" in lines[0]
    assert json.loads(result.out.splitlines()[-1])["event"] == "summary"
