"""``polylog-console report`` and the reconstruction of incidents (SPEC §13).

* The sample workspace (a copy of the repository root): one open incident from checkpoint-0171.
* A whole incident with real processes in a scratch workspace: in sync, drift, ``watch`` alerts a
  local webhook, ``ack``, ``rehydrate``, parity returns; every time of the report is checked against
  what the processes recorded (the feed, the audit log, the webhook's arrivals), from the index that
  ``watch`` kept and from scratch (the two agree).
* The pieces: rotated and old audit logs, clock skew, the index's consistency checks, secrets.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import orjson
import pytest

from polylog_console.core.model.config import load_config
from polylog_console.core.model.events import dedup_key, iso
from polylog_console.core.model.workspace import Workspace as Ws
from polylog_console.core.monitor import incidents as idx
from polylog_console.core.registry.digest import digest
from polylog_console.core.registry.stored import state_from_polyforms
from polylog_console.core.runbook import report as rp
from polylog_console.demo.sample import checkpoint, write_workspace
from tests.conftest import REPO, run_cli
from tests.test_watch_follow import WatchProcess


def repo_sample(dest: Path) -> Path:
    """A copy of the repository root's sample workspace (the report writes into memory/)."""
    dest.mkdir(parents=True)
    for name in ("stable_polyforms.jsonl", "monitoring.toml"):
        shutil.copy2(REPO / name, dest / name)
    shutil.copytree(REPO / "catalogs", dest / "catalogs")
    shutil.copytree(REPO / "memory" / "coordination", dest / "memory" / "coordination")
    shutil.copytree(REPO / "memory" / "replicas", dest / "memory" / "replicas")
    return dest


def ms(ts: float) -> str:
    return iso(ts)


def report_json(root: Path, *args: str) -> tuple[int, dict]:
    result = run_cli("report", "--json", "--workspace", str(root), *args)
    assert result.code in (0, 1), result.err
    return result.code, json.loads(result.out)


# --- the sample ------------------------------------------------------------------------------------

def test_sample_one_open_incident_from_checkpoint_0171(tmp_path):
    root = repo_sample(tmp_path / "ws")
    code, doc = report_json(root, "--incident", "all")
    assert code == 1  # an open incident
    assert len(doc["incidents"]) == 1
    inc = doc["incidents"][0]
    assert inc["state"] == "open" and inc["id"] == 1
    assert inc["started_label"] == "checkpoint-0171"
    assert inc["started_at"] == "2025-11-09T17:43:20.000Z"
    assert inc["resolved_at"] is None and inc["resolved_label"] is None and inc["time_to_resolve_s"] is None
    assert inc["consecutive_mismatches"] == 30 and inc["escalated"] is True
    assert inc["diff_at_start"] == {"missing": 3, "unexpected": 40, "mismatched": 9}
    assert inc["observed_at"] is None  # no monitor of this workspace ever recorded it (no audit log)
    assert [e["what"] for e in inc["timeline"]][:2] == ["started", "escalated"]
    assert doc["source"] == "scratch"
    # the report was written, and the second run uses the index the first one left
    assert Path(doc["path"]).parent == root / "memory" / "reports" and Path(doc["path"]).exists()
    _, doc2 = report_json(root, "--incident", "all")
    assert doc2["source"] == "index"
    strip = ("path", "generated_at", "source")
    assert {k: v for k, v in doc2.items() if k not in strip} == {k: v for k, v in doc.items() if k not in strip}


def test_sample_markdown_is_written_and_printed(tmp_path):
    root = repo_sample(tmp_path / "ws")
    result = run_cli("report", "--workspace", str(root))
    assert result.code == 1
    assert "## Incident 1: **OPEN**" in result.out
    assert "`2025-11-09T17:43:20.000Z` at `checkpoint-0171`" in result.out
    written = list((root / "memory" / "reports").glob("report-*.md"))
    assert len(written) == 1 and written[0].read_text() in result.out


def test_usage_errors_exit_2(tmp_path):
    root = repo_sample(tmp_path / "ws")
    bad = run_cli("report", "--workspace", str(root), "--incident", "7")
    assert bad.code == 2 and "no such incident" in bad.err and bad.err.count("\n") == 1
    assert run_cli("report", "--workspace", str(root), "--since", "yesterday").code == 2
    (root / "memory" / "coordination" / "context-brief.jsonl").unlink()
    gone = run_cli("report", "--workspace", str(root))
    assert gone.code == 2 and "feed not found" in gone.err


# --- a whole incident, real processes -----------------------------------------------------------------

def _append(feed: Path, n: int, dg: str) -> float:
    ts = round(time.time(), 3)
    with open(feed, "ab") as handle:
        handle.write(orjson.dumps(checkpoint(n, dg, ts)) + b"\n")
    return ts


def _audit(root: Path) -> list[dict]:
    return [json.loads(x) for x in (root / "memory" / "audit" / "events.jsonl").read_text().splitlines()]


def _t(value: str) -> float:
    return rp.parse_time(value)  # type: ignore[return-value]


def test_whole_incident_with_real_processes(tmp_path):
    from tests.servers import Receiver

    root = tmp_path / "ws"
    start = time.time() - 10 * 60
    incident = write_workspace(root, polyforms=200, checkpoints=10, drift_from=11, start=start, config=None)
    feed = root / "memory" / "coordination" / "context-brief.jsonl"
    # upstream updated stable_polyforms.jsonl: the engine now computes the new source's digest
    live = digest(state_from_polyforms(incident.current))
    assert live != incident.stored_digest
    with Receiver() as hook:
        (root / "monitoring.toml").write_text(f'[webhook]\nurl = "{hook.url}"\n\n[monitor]\nescalate_after = 3\n')
        watch = WatchProcess(root, "--json")
        try:
            watch.json_until(lambda e: e["event"] == "feed" and e["kind"] == "started")
            t11 = _append(feed, 11, live)  # drift
            firing = hook.wait_for(1, timeout=20)[0]
            assert firing.json["code"] == "registry_mismatch" and firing.json["status"] == "firing"
            _append(feed, 12, live)
            t13 = _append(feed, 13, live)
            watch.json_until(lambda e: e["event"] == "alert" and e["code"] == "drift_persistent")
            ack = run_cli("ack", "--json", "--workspace", str(root))
            assert ack.code == 0, ack.err
            rehydrate = run_cli("rehydrate", "--workspace", str(root))
            assert rehydrate.code == 0, rehydrate.err
            watch.json_until(lambda e: e["event"] == "alert" and e["code"] == "registry_resolved")
            _append(feed, 14, live)  # parity holds
            watch.json_until(lambda e: e["event"] == "checkpoint" and e["label"] == "checkpoint-0014")
            # (the resolved notification is held 30 s against flapping: it stays in the outbox here)
        finally:
            code, _, err = watch.stop()
        assert code == 0, err

    audit = _audit(root)
    raised = next(r for r in audit if r["event"] == "alert_raised" and r["code"] == "registry_mismatch")
    opened = next(r for r in audit if r["event"] == "incident_opened")
    acked = next(r for r in audit if r["event"] == "acknowledged")
    rh_start = next(r for r in audit if r["event"] == "action_started" and r.get("action") == "rehydrate")
    rh_end = next(r for r in audit if r["event"] == "action_finished" and r.get("action") == "rehydrate")
    delivered = [r for r in audit if r["event"] == "alert_delivered" and r["code"] == "registry_mismatch"]
    assert delivered and delivered[0]["sink"] == "webhook"

    for args in ((), ("--no-index",)):
        code, doc = report_json(root, *args)
        assert code == 0  # resolved
        assert doc["source"] == ("index" if not args else "scratch")
        [inc] = doc["incidents"]
        assert inc["state"] == "resolved"
        assert inc["started_label"] == "checkpoint-0011" and inc["started_at"] == ms(t11)
        assert inc["stored_digest"] == incident.stored_digest and inc["live_digests"] == [live]
        # observed: when watch first compared it (its incident record), after the checkpoint was written
        assert inc["observed_at"] == opened["observed_at"] and _t(opened["observed_at"]) <= _t(raised["ts"])
        assert inc["clock_skew_s"] is None
        assert inc["time_to_detect_s"] == pytest.approx(_t(opened["observed_at"]) - _t(ms(t11)), abs=0.002)
        assert 0 <= inc["time_to_detect_s"] < 10
        assert inc["acknowledged_at"] == acked["ts"] and inc["acknowledged_by"] == acked["actor"]
        assert inc["time_to_acknowledge_s"] == pytest.approx(_t(acked["ts"]) - _t(ms(t11)), abs=0.002)
        # parity returned when the rehydrated registry was compared with the latest checkpoint (0013):
        # resolved_at is that checkpoint's time (SPEC §13), and the time to resolve runs to it (one definition);
        # when watch saw parity is information beside it
        resolved = next(r for r in audit if r["event"] == "alert_resolved" and r["code"] == "registry_resolved")
        assert inc["resolved_label"] == "checkpoint-0013" and inc["resolved_at"] == ms(t13)
        assert inc["resolution_observed_at"] == resolved["ts"]
        assert _t(rh_end["ts"]) <= _t(resolved["ts"])
        assert inc["time_to_resolve_s"] == pytest.approx(t13 - t11, abs=0.002)
        assert inc["consecutive_mismatches"] == 3 and inc["escalated"] is True
        # alerts and their delivery per sink
        codes = [(a["code"], a["status"]) for a in inc["alerts"]]
        assert ("registry_mismatch", "firing") in codes and ("drift_persistent", "firing") in codes
        assert ("registry_resolved", "resolved") in codes
        first = next(a for a in inc["alerts"] if a["code"] == "registry_mismatch")
        assert first["raised_at"] == raised["ts"]
        assert first["delivered"][0]["sink"] == "webhook" and first["delivered"][0]["at"] == delivered[0]["ts"]
        assert first["delivered"][0]["after_raised_s"] == pytest.approx(_t(delivered[0]["ts"]) - _t(raised["ts"]),
                                                                         abs=0.002)
        # the rehydrate: actor, outcome, duration
        [action] = [a for a in inc["actions"] if a["action"] == "rehydrate"]
        assert action["outcome"] == "ok" and action["actor"] == rh_end["actor"]
        assert action["started_at"] == rh_start["ts"] and action["finished_at"] == rh_end["ts"]
        assert action["duration_s"] == rh_end["duration"]
        whats = [e["what"] for e in inc["timeline"]]
        for expected in ("started", "alert firing", "delivered", "escalated", "acknowledged", "rehydrate started",
                         "rehydrate finished", "resolved"):
            assert expected in whats, (expected, whats)
        assert [e["at"] for e in inc["timeline"]] == sorted(e["at"] for e in inc["timeline"])


# --- the pieces --------------------------------------------------------------------------------------

def _ws(tmp_path: Path, **kw) -> tuple[Ws, object, object]:
    root = tmp_path / "ws"
    incident = write_workspace(root, polyforms=200, checkpoints=kw.pop("checkpoints", 20),
                               drift_from=kw.pop("drift_from", 15), config=None, **kw)
    ws = Ws.open(root)
    return ws, load_config(ws.root, None), incident


def _write_audit(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))


def test_rotated_and_old_audit_logs_and_clock_skew(tmp_path):
    ws, config, incident = _ws(tmp_path)
    from polylog_console.demo.sample import INTERVAL, START

    started = START + 14 * INTERVAL  # checkpoint-0015
    key = dedup_key(incident.stored_digest, incident.live_digest)
    # the oldest file (events.jsonl.2): an action from before incidents existed, unknown events, junk
    _write_audit(ws.audit.with_name("events.jsonl.2"), [
        {"ts": iso(started + 20), "event": "action_started", "actor": "old@host"},  # no action field: ignored
        {"ts": iso(started + 21), "event": "something_new", "actor": "x@y", "whatever": [1]},
        {"ts": iso(started + 22), "event": "action_started", "action": "validate", "actor": "ann@host"},
    ])
    ws.audit.with_name("events.jsonl.2").open("ab").write(b"{not json\n\n[1,2]\n")
    # events.jsonl.1: the drift observed 2.5 s *before* the checkpoint's own time: the engine's clock is ahead
    _write_audit(ws.audit.with_name("events.jsonl.1"), [
        {"ts": iso(started - 2.5), "event": "alert_raised", "actor": "watch@host", "code": "registry_mismatch",
         "dedup_key": key, "stored_digest": incident.stored_digest, "live_digest": incident.live_digest,
         "summary": "drift", "diff": {"missing": 3, "unexpected": 40, "mismatched": 9}},
        {"ts": iso(started + 23), "event": "action_finished", "action": "validate", "actor": "ann@host",
         "outcome": "ok"},
    ])
    _write_audit(ws.audit, [
        {"ts": iso(started + 60), "event": "acknowledged", "actor": "bob@host", "code": "registry_mismatch",
         "dedup_key": key},
    ])
    rs = rp.build_report(ws, config, incident="all", write_index=False)
    [rep] = rs.reports
    doc = rep.to_json()
    assert doc["clock_skew_s"] == 2.5
    assert doc["time_to_detect_s"] == 0.0  # never negative
    assert doc["time_to_acknowledge_s"] == pytest.approx(60.0)  # acknowledged_at − started_at (one definition)
    assert doc["acknowledged_by"] == "bob@host"
    [action] = doc["actions"]
    assert action["action"] == "validate" and action["actor"] == "ann@host" and action["duration_s"] == 1.0


def test_stored_registry_of_each_moment(tmp_path):
    """A rehydrate changed the stored registry: checkpoints before it are compared with the old one."""
    ws, config, incident = _ws(tmp_path, checkpoints=12, drift_from=13)  # all in sync with the old registry
    from polylog_console.demo.sample import INTERVAL, START

    feed = config.feed.path
    live = digest(state_from_polyforms(incident.current))
    with open(feed, "ab") as handle:
        for n in (13, 14, 15):
            handle.write(orjson.dumps(checkpoint(n, live, START + (n - 1) * INTERVAL)) + b"\n")
    fixed = START + 14 * INTERVAL + 30  # after checkpoint-0015
    assert run_cli("rehydrate", "--workspace", str(ws.root)).code == 0
    records = [r for r in _audit(ws.root)]
    finished = next(r for r in records if r["event"] == "action_finished")
    assert finished["registry_digest"] == live
    # place the rehydrate at `fixed` (its real time is now) and tell of the old stored digest
    finished["ts"] = iso(fixed)
    _write_audit(ws.audit, [
        {"ts": iso(START + 12 * INTERVAL + 1), "event": "alert_raised", "code": "registry_mismatch",
         "stored_digest": incident.stored_digest, "live_digest": live, "actor": "w@h",
         "dedup_key": dedup_key(incident.stored_digest, live)}, finished])
    with open(feed, "ab") as handle:
        handle.write(orjson.dumps(checkpoint(16, live, START + 15 * INTERVAL)) + b"\n")
    [rep] = rp.build_report(ws, config, incident="all", write_index=False).reports
    doc = rep.to_json()
    assert doc["started_label"] == "checkpoint-0013" and doc["resolved_label"] == "checkpoint-0015"
    assert doc["consecutive_mismatches"] == 3
    # the timeline's strip and replay use the registry of each moment too
    source = rp.TimelineSource(ws, config)
    [trep] = source.load()
    cells = source.around(trep, before=13)  # (lines: one of them is a coordination entry)
    assert "".join(c.char for c in cells) == "=" * 12 + "xxx="
    assert [c.label for c in cells][-4:] == ["checkpoint-0013", "checkpoint-0014", "checkpoint-0015",
                                             "checkpoint-0016"]
    at14 = source.state_at(cells[13])
    assert at14.status == "DRIFT" and at14.consecutive == 2 and at14.stored_digest == incident.stored_digest
    assert [code for code, _ in at14.active_alerts] == ["registry_mismatch"]
    at16 = source.state_at(cells[15])
    assert at16.status == "IN SYNC" and at16.active_alerts == [] and at16.stored_digest == live
    # without the audit log, today's registry would call checkpoints 1-12 drift
    ws.audit.unlink()
    [naive] = rp.build_report(ws, config, incident="all", write_index=False).reports
    assert naive.to_json()["started_label"] == "checkpoint-0001"


def test_index_is_used_only_when_consistent(tmp_path):
    ws, config, _ = _ws(tmp_path)
    first = rp.build_report(ws, config, incident="all")
    assert first.source == "scratch" and idx.index_path(ws).exists()
    assert rp.build_report(ws, config, incident="all").source == "index"
    feed = config.feed.path
    # the feed replaced by another file (another inode): the index is not used
    data = feed.read_bytes()
    fresh = feed.with_name("new.jsonl")
    fresh.write_bytes(data)
    os.replace(fresh, feed)
    again = rp.build_report(ws, config, incident="all")
    assert again.source == "scratch"
    assert [r.to_json()["started_label"] for r in again.reports] == [r.to_json()["started_label"]
                                                                    for r in first.reports]
    assert rp.build_report(ws, config, incident="all").source == "index"
    # truncated below what the index covers
    os.truncate(feed, len(data) // 2)
    assert rp.build_report(ws, config, incident="all").source == "scratch"


def test_index_resumes_the_open_incident_and_reads_only_the_tail(tmp_path):
    ws, config, incident = _ws(tmp_path)
    rp.build_report(ws, config, incident="all")
    with open(config.feed.path, "ab") as handle:
        for n in (21, 22):
            handle.write(orjson.dumps(checkpoint(n, incident.live_digest, time.time())) + b"\n")
    rs = rp.build_report(ws, config, incident="all", write_index=False)
    assert rs.source == "index"
    [rep] = rs.reports
    assert rep.to_json()["started_label"] == "checkpoint-0015" and rep.to_json()["consecutive_mismatches"] == 8
    with open(config.feed.path, "ab") as handle:
        handle.write(orjson.dumps(checkpoint(23, incident.stored_digest, time.time())) + b"\n")
    [rep] = rp.build_report(ws, config, incident="all", write_index=False).reports
    assert rep.to_json()["resolved_label"] == "checkpoint-0023"


def test_secrets_never_in_the_report(tmp_path, monkeypatch):
    ws, _, _ = _ws(tmp_path)
    secret = "s3cr3t-value-xyz"
    _write_audit(ws.audit, [{"ts": iso(time.time()), "event": "action_started", "action": "rehydrate",
                             "actor": "a@b"},
                            {"ts": iso(time.time()), "event": "action_failed", "action": "rehydrate",
                             "actor": "a@b", "message": f"token {secret} refused \x1b[31m"}])
    monkeypatch.setenv("POLYLOG_WEBHOOK_SECRET", secret)
    result = run_cli("report", "--workspace", str(ws.root), env={"POLYLOG_WEBHOOK_SECRET": secret})
    assert secret not in result.out and "\x1b" not in result.out
    jresult = run_cli("report", "--json", "--workspace", str(ws.root), env={"POLYLOG_WEBHOOK_SECRET": secret})
    assert secret not in jresult.out


def test_since_and_incident_selection(tmp_path):
    ws, config, incident = _ws(tmp_path, checkpoints=12, drift_from=13)
    feed = config.feed.path
    from polylog_console.demo.sample import INTERVAL, START

    with open(feed, "ab") as handle:  # two incidents: 13-14 and 17
        for n, dg in ((13, incident.live_digest), (14, incident.live_digest), (15, incident.stored_digest),
                      (16, incident.stored_digest), (17, incident.live_digest)):
            handle.write(orjson.dumps(checkpoint(n, dg, START + (n - 1) * INTERVAL)) + b"\n")
    all_ = rp.build_report(ws, config, incident="all", write_index=False)
    assert [r.to_json()["started_label"] for r in all_.reports] == ["checkpoint-0013", "checkpoint-0017"]
    assert [r.id for r in all_.reports] == [1, 2]
    one = rp.build_report(ws, config, incident="1", write_index=False).reports
    assert one[0].to_json()["resolved_label"] == "checkpoint-0015"
    latest = rp.build_report(ws, config, write_index=False).reports
    assert latest[0].id == 2 and latest[0].to_json()["state"] == "open"
    since = rp.build_report(ws, config, incident="all", since=START + 15 * INTERVAL, write_index=False).reports
    assert [r.id for r in since] == [2]
    assert rp.parse_since("2h", now=10_000.0) == 10_000.0 - 7200


def test_escalation_bundle_holds_the_timeline_so_far(tmp_path):
    root = repo_sample(tmp_path / "ws")
    result = run_cli("bundle", "--json", "--workspace", str(root))
    assert result.code == 0, result.err
    text = Path(json.loads(result.out)["path"]).read_text()
    section = text.split("## Incident timeline so far", 1)[1].split("\n## ", 1)[0]
    assert "`2025-11-09T17:43:20.000Z` at `checkpoint-0171`" in section
    assert "### Timeline" in section and "`escalated`" in section and "still open" in section


def test_parallel_replay_equals_the_serial_one(tmp_path, monkeypatch):
    """A big feed is parsed by worker processes in ranges (the same parser, folded into runs) and run
    through one monitor in order: the incidents are exactly those of the serial replay, including a
    stored-registry change that falls inside a range."""
    ws, config, incident = _ws(tmp_path, checkpoints=60, drift_from=61)
    from polylog_console.demo.sample import INTERVAL, START

    live = digest(state_from_polyforms(incident.current))
    with open(config.feed.path, "ab") as handle:
        for n in range(61, 121):  # drift from 61 until the rehydrate; another drift 91-100
            dg = incident.live_digest if 91 <= n <= 100 else live
            handle.write(orjson.dumps(checkpoint(n, dg, START + (n - 1) * INTERVAL)) + b"\n")
    assert run_cli("rehydrate", "--workspace", str(ws.root)).code == 0  # the current registry: `live`
    _write_audit(ws.audit, [
        {"ts": iso(START + 60 * INTERVAL + 1), "event": "alert_raised", "code": "registry_mismatch",
         "stored_digest": incident.stored_digest, "live_digest": live, "actor": "w@h", "dedup_key": "k"},
        {"ts": iso(START + 69 * INTERVAL + 30), "event": "action_finished", "action": "rehydrate", "outcome": "ok",
         "registry_digest": live, "actor": "w@h"}])
    epochs = rp.epochs_for(ws, config, list(rp.iter_audit(ws)))
    serial = rp.replay(ws, config, epochs=epochs, parallel=False)
    monkeypatch.setattr(rp, "PARALLEL_ABOVE", 0)
    monkeypatch.setattr(rp, "RANGE_BYTES", 3000)
    parallel = rp.replay(ws, config, epochs=epochs)

    def strip(result):
        return [({k: v for k, v in f.view.items() if k not in ("observed_at", "notes")}, f.offset)
                for f in result.incidents]

    labels = [(f.view["started_label"], f.view["resolved_label"]) for f in serial.incidents]
    assert labels == [("checkpoint-0061", "checkpoint-0070"), ("checkpoint-0091", "checkpoint-0101")]
    assert strip(parallel) == strip(serial)
    assert (parallel.end_offset, parallel.end_line) == (serial.end_offset, serial.end_line)


def test_index_stays_bounded_and_usable(tmp_path, monkeypatch):
    """Past its size limit the index is rewritten (atomically) with its coverage merged and every
    incident's records kept; reports from it are unchanged."""
    ws, config, _ = _ws(tmp_path)
    before = rp.build_report(ws, config, incident="all")
    path = idx.index_path(ws)
    writer = idx.IndexWriter(path, config.feed.path)
    writer.feed = idx.feed_identity(config.feed.path)
    writer.start, writer.line = 0, 1
    writer.open_key = before.reports[-1].found.key  # the drift is still open
    monkeypatch.setattr(idx, "MAX_BYTES", 20_000)
    for end in range(100, 60_100, 100):  # marks as a long-running watch writes them
        writer.end = min(end, config.feed.path.stat().st_size)
        writer.file.append([writer._mark()])
    assert path.stat().st_size < 20_000 + 2_000
    after = rp.build_report(ws, config, incident="all")
    assert after.source == "index"
    assert [r.to_json()["started_label"] for r in after.reports] == [r.to_json()["started_label"]
                                                                    for r in before.reports]
    assert [r.to_json()["timeline"] for r in after.reports] == [r.to_json()["timeline"] for r in before.reports]


def test_index_state_at_an_offset_is_the_latest_mark(tmp_path):
    """A resolution found by comparing the latest checkpoint again (after a rehydrate) adds no feed
    bytes: its mark has the same offset as the one before, and the later one says what holds."""
    path = tmp_path / "index.jsonl"
    feed = {"dev": 1, "ino": 2, "head": "h", "head_len": 1}
    file = idx.IndexFile(path)
    file.append([{"kind": "mark", "feed": feed, "from": 0, "to": 500, "line": 9, "stored_digest": "a",
                  "open": "k", "at": 10.0}])
    file.append([{"kind": "mark", "feed": feed, "from": 0, "to": 500, "line": 9, "stored_digest": "b",
                  "open": None, "at": 11.0}])
    assert [r[:5] for r in idx.read_index(path).coverage[(1, 2, "h")]] == [(0, 500, 9, "b", None)]


def test_observed_from_the_index_a_watch_wrote(tmp_path):
    """Without an alert record (no audit log kept), the observation a running watch put in the
    index is used; a replay's own clock never is."""
    ws, config, _ = _ws(tmp_path)
    from polylog_console.core.monitor.incident import IncidentEvent

    [found] = rp.replay(ws, config).incidents
    assert rp.build_reports([found], [])[0].observed_at is None  # a replay observed nothing
    writer = idx.IndexWriter(idx.index_path(ws), config.feed.path)
    writer.feed = idx.feed_identity(config.feed.path)
    writer.start, writer.end, writer.line = 0, config.feed.path.stat().st_size, 25

    class View:  # the picture a live monitor publishes
        id = 1
        started_line = found.view["started_line"]
        resolved_at = None

        @staticmethod
        def to_json():
            return {**{k: v for k, v in found.view.items() if k != "observed_by"},
                    "observed_at": "2025-11-09T16:10:00.250Z"}

    writer._starts[1] = found.offset
    writer([IncidentEvent("opened", View)])
    rs = rp.build_report(ws, config, write_index=False)
    assert rs.source == "index"
    doc = rs.reports[0].to_json()
    assert doc["observed_at"] == "2025-11-09T16:10:00.250Z" and doc["observed_by"] == "watch (index)"


def test_across_watch_restarts_and_an_engine_clock_ahead(tmp_path):
    """An incident that outlives a ``watch`` (stopped during the drift, started again): one
    incident in the report, from the index both runs kept. The engine's clock is 5 s ahead of this
    host: the skew is reported and the time to detect is 0, never negative."""
    root = tmp_path / "ws"
    write_workspace(root, polyforms=200, checkpoints=10, drift_from=11, start=time.time() - 600, config=None)
    feed = root / "memory" / "coordination" / "context-brief.jsonl"
    incident_live = "ab" * 32
    stored = json.loads((root / "catalogs" / "registry.json").read_text())["digest"]

    def engine(n: int, dg: str) -> float:
        ts = round(time.time() + 5.0, 3)  # the engine's clock runs 5 s ahead
        with open(feed, "ab") as handle:
            handle.write(orjson.dumps(checkpoint(n, dg, ts)) + b"\n")
        return ts

    first = WatchProcess(root, "--json")
    try:
        first.json_until(lambda e: e["event"] == "feed" and e["kind"] == "started")
        t11 = engine(11, incident_live)
        first.json_until(lambda e: e["event"] == "alert" and e["code"] == "registry_mismatch")
        engine(12, incident_live)
        first.json_until(lambda e: e["event"] == "checkpoint" and e["label"] == "checkpoint-0012")
    finally:
        assert first.stop()[0] == 0
    second = WatchProcess(root, "--json")
    try:
        second.json_until(lambda e: e["event"] == "feed" and e["kind"] == "started")
        engine(13, incident_live)
        second.json_until(lambda e: e["event"] == "checkpoint" and e["label"] == "checkpoint-0013")
        t14 = engine(14, stored)  # the engine is back in sync
        second.json_until(lambda e: e["event"] == "alert" and e["code"] == "registry_resolved")
    finally:
        assert second.stop()[0] == 0
    code, doc = report_json(root, "--incident", "all")
    assert code == 0 and doc["source"] == "index"
    [inc] = doc["incidents"]
    assert inc["started_label"] == "checkpoint-0011" and inc["started_at"] == ms(t11)
    assert inc["resolved_label"] == "checkpoint-0014" and inc["resolved_at"] == ms(t14)
    assert inc["consecutive_mismatches"] == 3
    assert 3.0 < inc["clock_skew_s"] <= 5.0  # 5 s ahead, less the detection latency
    assert inc["time_to_detect_s"] == 0.0
    assert inc["time_to_resolve_s"] >= 0
    _, scratch = report_json(root, "--incident", "all", "--no-index")
    assert [(i["started_label"], i["resolved_label"]) for i in scratch["incidents"]] == [
        ("checkpoint-0011", "checkpoint-0014")]


def test_report_and_index_import_no_textual():
    import subprocess
    import sys

    code = ("import sys; import polylog_console.core.runbook.report, polylog_console.core.monitor.incidents, "
            "polylog_console.cli.report; print('textual' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
