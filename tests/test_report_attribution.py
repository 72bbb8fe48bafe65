"""The post-incident report's review defects (issue 14 review): which incident each audit record
belongs to when the same drift recurs, re-audits by ``watch --once`` runs, one definition per derived
time, the timeline's two clocks, ``--since`` alone, ``watch --once`` keeping the incident index and
a start without a timestamp.

Workspaces are the repository's sample with a feed written from a spec, one letter per checkpoint
60 s apart (``s``: the stored digest, ``a`` / ``b``: two drifting live digests; ``u`` prefix-free
upper case: the same without a ``timestamp``), and run through the real ``watch --once``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import orjson
import pytest

from polylog_console.core.model.config import load_config
from polylog_console.core.model.events import dedup_key, iso
from polylog_console.core.model.workspace import Workspace
from polylog_console.core.runbook import report as rp
from tests.conftest import run_cli
from tests.test_report import repo_sample

A = "09dc58693e67fed4e157dc2caf4bb6a0867bd0f609a00fe6b12965fa4c734e43"
B = "b" * 64
FEED = Path("memory/coordination/context-brief.jsonl")


def stored_of(root: Path) -> str:
    return json.loads((root / "catalogs" / "registry.json").read_text())["digest"]


def write_feed(root: Path, spec: str, t0: float, *, first: int = 1, append: bool = False) -> list[float | None]:
    """One checkpoint per letter of ``spec`` 60 s apart from ``t0`` (numbered from ``first``):
    ``s`` stored, ``a``/``b`` drift; upper case: the same digest without a ``timestamp``."""
    digests = {"s": stored_of(root), "a": A, "b": B}
    times: list[float | None] = []
    with open(root / FEED, "ab" if append else "wb") as handle:
        for i, ch in enumerate(spec):
            n = first + i
            ts = None if ch.isupper() else round(t0 + 60 * (n - 1), 3)
            record = {"label": f"checkpoint-{n:04d}", "path": "x", "polygons": 1, "chunk_count": 1, "module_refs": 1,
                      "registry_digest": digests[ch.lower()]}
            if ts is not None:
                record["timestamp"] = ts
            handle.write(orjson.dumps(record) + b"\n")
            times.append(ts)
    return times


def workspace(tmp_path: Path, spec: str, t0: float) -> Path:
    root = repo_sample(tmp_path / "ws")
    write_feed(root, spec, t0)
    return root


def once(root: Path, *extra: str) -> None:
    result = run_cli("watch", "--once", "--workspace", str(root), *extra)
    assert result.code in (0, 1), result.err


def report(root: Path, *args: str) -> dict:
    result = run_cli("report", "--json", "--workspace", str(root), *args)
    assert result.code in (0, 1), result.err
    return json.loads(result.out)


def audit(root: Path) -> list[dict]:
    return [json.loads(x) for x in (root / "memory" / "audit" / "events.jsonl").read_text().splitlines()]


def number(label: str | None) -> int:
    assert label is not None
    return int(label.rsplit("-", 1)[1])


def assert_alerts_are_their_own(inc: dict) -> None:
    """Every alert listed names a checkpoint of this incident (start to resolution)."""
    lo, hi = number(inc["started_label"]), number(inc["resolved_label"]) if inc["resolved_label"] else 10 ** 6
    for alert in inc["alerts"]:
        assert lo <= number(alert["checkpoint"]) <= hi, (inc["id"], alert)


# --- 1: the same drift recurring ---------------------------------------------------------------

def test_a_recurring_drift_keeps_each_incidents_own_alerts(tmp_path):
    t0 = time.time() - 600
    root = workspace(tmp_path, "saas", t0)
    once(root)
    first_run_end = time.time()
    write_feed(root, "aas", t0, first=5, append=True)
    once(root)
    doc = report(root, "--incident", "all")
    one, two = doc["incidents"]
    assert (one["started_label"], one["resolved_label"]) == ("checkpoint-0002", "checkpoint-0004")
    assert (two["started_label"], two["resolved_label"]) == ("checkpoint-0005", "checkpoint-0007")
    # incident 1 was observed by the first run; its alerts are listed once (the second run's re-audit is not)
    assert one["observed_at"] is not None and rp.parse_time(one["observed_at"]) <= first_run_end
    assert one["time_to_detect_s"] is not None and one["time_to_detect_s"] > 0
    assert [(a["code"], a["status"], a["checkpoint"]) for a in one["alerts"]] == [
        ("registry_mismatch", "firing", "checkpoint-0002"), ("registry_resolved", "resolved", "checkpoint-0004")]
    assert [(a["code"], a["status"], a["checkpoint"]) for a in two["alerts"]] == [
        ("registry_mismatch", "firing", "checkpoint-0005"), ("registry_resolved", "resolved", "checkpoint-0007")]
    # incident 2 was observed by the second run, after its checkpoints existed
    assert rp.parse_time(two["observed_at"]) > first_run_end
    for inc in (one, two):
        assert_alerts_are_their_own(inc)
    # one incident alone (--incident 2) gets only its own records too
    [only] = report(root, "--incident", "2")["incidents"]
    assert only["alerts"] == two["alerts"] and only["observed_at"] == two["observed_at"]


def test_a_flapping_drift_attributes_no_alert_to_another_incident(tmp_path):
    root = workspace(tmp_path, "sasasaass", time.time() - 900)
    once(root)
    once(root)
    doc = report(root, "--incident", "all")
    labels = [(i["started_label"], i["resolved_label"]) for i in doc["incidents"]]
    assert labels == [("checkpoint-0002", "checkpoint-0003"), ("checkpoint-0004", "checkpoint-0005"),
                      ("checkpoint-0006", "checkpoint-0008")]
    # every incident keeps its own alerts (the drift's key is shared by all three): the session audits
    # every alert in event order, and the second run writes nothing it already wrote
    for inc in doc["incidents"][:2]:
        assert [(a["code"], a["status"]) for a in inc["alerts"]] == [
            ("registry_mismatch", "firing"), ("registry_resolved", "resolved")]
    assert [(a["code"], a["status"]) for a in doc["incidents"][2]["alerts"]] == [
        ("registry_mismatch", "firing"), ("registry_resolved", "resolved")]
    for inc in doc["incidents"]:
        assert_alerts_are_their_own(inc)
    listed = [(a["code"], a["status"], a["checkpoint"]) for i in doc["incidents"] for a in i["alerts"]]
    assert len(listed) == len(set(listed))  # nothing listed twice, in one incident or across them


def test_deliveries_and_acknowledgements_go_to_the_incident_of_their_alert(tmp_path):
    """Hand-written audit records (two incidents of one drift, one delivery and one ack each)."""
    t0 = 1_762_700_000.0
    root = workspace(tmp_path, "saasaas", t0)
    stored = stored_of(root)
    key = dedup_key(stored, A)
    records = []
    for start, end in ((2, 4), (5, 7)):
        ts_start, ts_end = t0 + 60 * (start - 1), t0 + 60 * (end - 1)
        base = {"actor": "w@h", "dedup_key": key, "stored_digest": stored, "live_digest": A}
        records += [
            {"ts": iso(ts_start + 1), "event": "alert_raised", "code": "registry_mismatch", "status": "firing",
             "checkpoint": f"checkpoint-{start:04d}", "checkpoint_ts": ts_start, **base},
            {"ts": iso(ts_start + 2), "event": "alert_delivered", "code": "registry_mismatch", "status": "firing",
             "sink": "webhook", "latency_ms": 5, **base},
            {"ts": iso(ts_start + 30), "event": "acknowledged", "code": "registry_mismatch", "actor": f"op{start}@h",
             "dedup_key": key},
            {"ts": iso(ts_end + 1), "event": "alert_resolved", "code": "registry_resolved", "status": "resolved",
             "checkpoint": f"checkpoint-{end:04d}", "checkpoint_ts": ts_end, "reason": "parity", **base},
        ]
    path = root / "memory" / "audit" / "events.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    one, two = report(root, "--incident", "all")["incidents"]
    for inc, start in ((one, 2), (two, 5)):
        ts_start = t0 + 60 * (start - 1)
        firing = inc["alerts"][0]
        assert firing["checkpoint"] == f"checkpoint-{start:04d}"
        assert [d["at"] for d in firing["delivered"]] == [iso(ts_start + 2)]
        assert inc["acknowledged_by"] == f"op{start}@h" and inc["time_to_acknowledge_s"] == 30.0
        assert inc["time_to_detect_s"] == 1.0
        assert len(inc["alerts"]) == 2


# --- 12: re-audits by watch --once ----------------------------------------------------------------

def test_reruns_of_watch_once_are_not_listed_twice(tmp_path):
    root = workspace(tmp_path, "ssaaaa", time.time() - 600)
    for _ in range(3):
        once(root)
    raised = [r for r in audit(root) if r["event"] == "alert_raised" and r["code"] == "registry_mismatch"]
    assert len(raised) == 1  # a re-run does not audit the open incident's alert again
    [inc] = report(root, "--incident", "all")["incidents"]
    assert [(a["code"], a["status"]) for a in inc["alerts"]] == [("registry_mismatch", "firing"),
                                                                 ("drift_persistent", "firing")]
    keys = [(a["code"], a["status"], a["checkpoint"]) for a in inc["alerts"]]
    assert len(keys) == len(set(keys)) and ("registry_mismatch", "firing", "checkpoint-0003") in keys
    assert inc["alert_records_repeated"] == 0
    assert inc["observed_at"] == min(r["ts"] for r in audit(root) if r["event"] == "incident_opened") \
        or rp.parse_time(inc["observed_at"]) <= rp.parse_time(raised[0]["ts"])
    whats = [e["what"] for e in inc["timeline"]]
    assert whats.count("alert firing") == 1


# --- 9: one definition per derived time ------------------------------------------------------------

def test_times_are_measured_from_started_at_to_the_checkpoint_times(tmp_path):
    t0 = 1_762_700_000.0
    root = workspace(tmp_path, "saas", t0)
    ws = Workspace.open(root)
    config = load_config(ws.root, None)
    stored = stored_of(root)
    key = dedup_key(stored, A)
    start, end = t0 + 60, t0 + 180
    base = {"actor": "w@h", "dedup_key": key, "stored_digest": stored, "live_digest": A}
    path = ws.audit
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in [
        {"ts": iso(start + 3), "event": "alert_raised", "code": "registry_mismatch", "status": "firing",
         "checkpoint": "checkpoint-0002", "checkpoint_ts": start, **base},
        {"ts": iso(start + 30), "event": "acknowledged", "code": "registry_mismatch", "actor": "bob@h",
         "dedup_key": key},
        # parity seen here long after the matching checkpoint (the host caught up late)
        {"ts": iso(end + 500), "event": "alert_resolved", "code": "registry_resolved", "status": "resolved",
         "checkpoint": "checkpoint-0004", "checkpoint_ts": end, "reason": "parity", **base}]))
    [rep] = rp.build_report(ws, config, incident="all", write_index=False).reports
    doc = rep.to_json()
    assert doc["started_at"] == iso(start) and doc["resolved_at"] == iso(end)
    assert doc["time_to_detect_s"] == 3.0
    assert doc["time_to_acknowledge_s"] == 30.0
    assert doc["time_to_resolve_s"] == 120.0  # resolved_at − started_at, whatever the host saw
    assert doc["resolution_observed_at"] == iso(end + 500)
    assert doc["clock_skew_s"] is None


# --- 8: two clocks in one timeline; the stored digest the drift was against ---------------------------

def test_timeline_with_the_engine_clock_ahead_is_in_order_and_says_its_clocks(tmp_path):
    t0 = 1_762_700_000.0
    root = workspace(tmp_path, "ssaaa", t0)  # escalates at checkpoint-0005 (escalate_after 3)
    ws = Workspace.open(root)
    config = load_config(ws.root, None)
    stored = stored_of(root)
    key = dedup_key(stored, A)
    start = t0 + 120  # checkpoint-0003, engine clock; this host is 5 s behind and saw it 0.1 s after
    base = {"actor": "w@h", "dedup_key": key, "stored_digest": stored, "live_digest": A}
    ws.audit.parent.mkdir(parents=True, exist_ok=True)
    ws.audit.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in [
        {"ts": iso(start - 4.9), "event": "alert_raised", "code": "registry_mismatch", "status": "firing",
         "checkpoint": "checkpoint-0003", "checkpoint_ts": start, **base},
        {"ts": iso(start + 120 - 4.9), "event": "escalation", "code": "drift_persistent", "status": "firing",
         "checkpoint": "checkpoint-0005", "checkpoint_ts": start + 120, **base}]))
    [rep] = rp.build_report(ws, config, incident="all", write_index=False).reports
    doc = rep.to_json()
    assert doc["clock_skew_s"] == 4.9 and doc["time_to_detect_s"] == 0.0
    timeline = doc["timeline"]
    assert [e["what"] for e in timeline][:2] == ["started", "alert firing"]
    assert {e["what"]: e["clock"] for e in timeline} == {"started": "engine", "alert firing": "host",
                                                         "escalated": "engine", "alert escalated": "host"}
    corrected = [rp.parse_time(e["at"]) - (4.9 if e["clock"] == "engine" else 0) for e in timeline]
    assert corrected == sorted(corrected)
    text = rp.render_markdown(rp.ReportSet([rep], "scratch", t0), ws, config)
    assert "| `" in text and "engine" in text and "host" in text


def test_stored_digest_is_the_one_the_drift_was_against():
    opened = {"id": 1, "started_at": iso(100.0), "started_label": "c1", "started_line": 1, "stored_digest": "s1" * 32,
              "live_digests": [A], "resolved_at": None}
    later = {**opened, "stored_digest": "s2" * 32}  # a rehydrate changed the stored registry, the drift remained
    rep = rp.build_reports([rp.Found(later, 0, [("opened", opened), ("escalated", later)])], [])[0]
    doc = rep.to_json()
    assert doc["stored_digest"] == "s1" * 32 and doc["stored_digest_at_end"] == "s2" * 32


# --- 10: --since alone ---------------------------------------------------------------------------------

def test_since_without_incident_returns_every_incident_since_then(tmp_path):
    t0 = time.time() - 3600
    root = workspace(tmp_path, "saassaas", t0)
    doc = report(root, "--since", "2h")
    assert [i["started_label"] for i in doc["incidents"]] == ["checkpoint-0002", "checkpoint-0006"]
    later = report(root, "--since", str(t0 + 60 * 4))  # after incident 1 resolved
    assert [i["id"] for i in later["incidents"]] == [2]
    assert [i["id"] for i in report(root)["incidents"]] == [2]  # no --since: the latest


# --- 3: watch --once keeps the index; a start without a timestamp ----------------------------------------

def test_watch_once_keeps_the_incident_index(tmp_path):
    root = workspace(tmp_path, "ssaas", time.time() - 600)
    once(root, "--json")
    index = root / "memory" / "incidents" / "index.jsonl"
    assert index.exists()
    kinds = [json.loads(x)["kind"] for x in index.read_text().splitlines()]
    assert "incident" in kinds and "mark" in kinds
    doc = report(root, "--incident", "all")
    assert doc["source"] == "index"
    [inc] = doc["incidents"]
    assert inc["observed_by"] == "watch"


@pytest.mark.parametrize("use_index", [True, False])
def test_an_untimed_start_is_when_this_workspaces_monitor_read_it(tmp_path, use_index):
    root = workspace(tmp_path, "ssAA", time.time() - 600)  # the drift's checkpoints carry no timestamp
    before = time.time()
    once(root, "--json")
    after = time.time()
    opened = next(r for r in audit(root) if r["event"] == "incident_opened")
    ws = Workspace.open(root)
    config = load_config(ws.root, None)
    later = after + 5000.0  # the report's replay reads it much later
    [rep] = rp.build_report(ws, config, incident="all", use_index=use_index, write_index=False, now=later).reports
    doc = rep.to_json()
    assert doc["started_at"] == opened["started_at"] and before <= rp.parse_time(doc["started_at"]) <= after
    assert doc["started_at_source"] == "monitor"
    assert doc["clock_skew_s"] is None  # never the replay's own read time
    assert doc["time_to_detect_s"] is not None and 0.0 <= doc["time_to_detect_s"] < 5


def test_an_untimed_start_no_monitor_saw_has_no_skew_and_no_times(tmp_path):
    root = workspace(tmp_path, "ssAA", time.time() - 600)
    ws = Workspace.open(root)
    config = load_config(ws.root, None)
    [rep] = rp.build_report(ws, config, incident="all", write_index=False).reports
    doc = rep.to_json()
    assert doc["started_at_source"] == "replay"
    assert doc["clock_skew_s"] is None and doc["time_to_detect_s"] is None
