"""Audit log (SPEC §8): one JSON line per event, complete, correct with two processes appending."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from polylog_console.core.infra.audit import AuditLog, audit_record, read_tail
from polylog_console.core.model.events import Alert, AlertEvent

WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from polylog_console.core.infra.audit import AuditLog
    log = AuditLog(Path(sys.argv[1]), who=sys.argv[2])
    for i in range(int(sys.argv[3])):
        log.append("alert_raised", n=i, payload="x" * (i % 5000))
""")


def test_two_processes_appending_never_interleave(tmp_path):
    path = tmp_path / "memory" / "audit" / "events.jsonl"
    n = 1500
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), who, str(n)]) for who in ("a@h", "b@h")]
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    records = [json.loads(line) for line in lines[:-1]]
    assert len(records) == 2 * n
    for who in ("a@h", "b@h"):
        assert [r["n"] for r in records if r["actor"] == who] == list(range(n))
    assert all(set(r) >= {"ts", "event", "actor"} and r["ts"].endswith("Z") for r in records)


def test_each_event_is_on_disk_as_soon_as_append_returns(tmp_path):
    log = AuditLog(tmp_path / "a.jsonl", who="me@host")
    log.append("action_started", action="validate")
    # read by another handle, before anything else happens
    assert json.loads((tmp_path / "a.jsonl").read_text())["action"] == "validate"


def test_secrets_are_redacted(tmp_path):
    log = AuditLog(tmp_path / "a.jsonl", who="me@host")
    record = log.append("alert_delivered", sink="webhook", headers={"Authorization": "Bearer t0k"}, secret="s")
    text = (tmp_path / "a.jsonl").read_text()
    assert "t0k" not in text and '"secret":"***"' in text
    assert record["headers"] == {"Authorization": "***"}


def test_unwritable_log_is_reported_not_raised(tmp_path):
    (tmp_path / "blocker").write_text("a file where a directory should be")
    log = AuditLog(tmp_path / "blocker" / "events.jsonl", who="me@host")
    record = log.append("action_started", action="x")
    assert "audit_error" in record and log.last_error


def test_alert_events_map_to_audit_records():
    alert = Alert("drift_persistent", "firing", "k", "escalate: 3 consecutive", 0.0, {"label": "cp-3"}, "s", "l", 3)
    name, details = audit_record(AlertEvent(alert))
    assert name == "escalation" and details["checkpoint"] == "cp-3" and details["consecutive_mismatches"] == 3


def test_read_tail(tmp_path):
    log = AuditLog(tmp_path / "a.jsonl", who="me@host")
    for i in range(300):
        log.append("e", i=i)
    with open(tmp_path / "a.jsonl", "ab") as handle:
        handle.write(b"not json\n")
    assert [r["i"] for r in read_tail(tmp_path / "a.jsonl", 5)] == [295, 296, 297, 298, 299]
