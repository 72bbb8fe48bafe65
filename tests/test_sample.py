"""The sample workspace (the repository root): deterministic, and telling the runbook's incident."""

from __future__ import annotations

import json
from pathlib import Path

from polylog_console.core.runbook.catalogs import verify_catalogs
from polylog_console.demo.sample import write_workspace

from .conftest import REPO

SAMPLE_FILES = [
    "stable_polyforms.jsonl",
    "monitoring.toml",
    "catalogs/registry.json",
    "catalogs/attachment_graph.json",
    "catalogs/scaler_tables.json",
    "catalogs/metadata.json",
    "memory/coordination/context-brief.jsonl",
    "memory/coordination/snapshots/live-registry.json",
    "memory/replicas/replica-eu.json",
    "memory/replicas/replica-us.json",
]


def test_repository_root_is_exactly_the_generated_sample(tmp_path):
    write_workspace(tmp_path)
    for rel in SAMPLE_FILES:
        assert (REPO / rel).read_bytes() == (tmp_path / rel).read_bytes(), rel


def test_generator_is_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_workspace(a, polyforms=300, checkpoints=40)
    write_workspace(b, polyforms=300, checkpoints=40)
    for rel in SAMPLE_FILES:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_sample_sizes_and_contents(sample_ws):
    lines = (sample_ws.root / "stable_polyforms.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2000
    namespaces = {json.loads(line)["namespace"] for line in lines}
    assert namespaces == {"clusters", "assemblies", "megas"}
    feed = sample_ws.feed.read_bytes().splitlines()
    assert sum(b"registry_digest" in line for line in feed) >= 200
    assert any(b"checkpoint_record" in line for line in feed)
    assert any(b'"kind"' in line for line in feed)
    # the source changed after the last hydration: catalogs inconsistent with it
    check = verify_catalogs(sample_ws.root)
    assert not check.consistent
    assert len(check.problems) == 1 and "stable_polyforms.jsonl" in check.problems[0]


def test_digest_json_in_the_repository_root_reports_the_drift(cli):
    result = cli("digest", "--json", cwd=REPO)
    assert result.code == 1, result.err
    doc = json.loads(result.out)
    assert doc["registry_match"] is False and doc["scheme"] == "engine"
    assert doc["checkpoint"]["label"] == "checkpoint-0200"
    assert (doc["diff"]["missing"], doc["diff"]["unexpected"], doc["diff"]["mismatched"]) == (3, 40, 9)
    assert doc["stored_digest"] != doc["checkpoint"]["registry_digest"]


def test_watch_once_in_the_repository_root(cli):
    result = cli("watch", "--once", "--json", cwd=REPO)
    assert result.code == 1  # DRIFT
    events = [json.loads(line) for line in result.out.splitlines()]
    checkpoints = [e for e in events if e["event"] == "checkpoint"]
    errors = [e for e in events if e["event"] == "ingest_error"]
    assert len(checkpoints) == 200
    assert checkpoints[-1]["status"] == "DRIFT" and checkpoints[-1]["consecutive_mismatches"] == 30
    assert [e["line"] for e in errors] == [94]
    codes = [(e["code"], e["status"]) for e in events if e["event"] == "alert"]
    assert ("registry_mismatch", "firing") in codes and ("drift_persistent", "firing") in codes
    warned = [c for c in checkpoints if c.get("warnings")]
    assert [c["label"] for c in warned] == ["checkpoint-0042"]


def test_digest_with_checkpoint_label(cli):
    result = cli("digest", "--json", "--checkpoint", "checkpoint-0100", cwd=REPO)
    assert result.code == 1  # in sync, but the catalogs are inconsistent with the source
    doc = json.loads(result.out)
    assert doc["registry_match"] is True and doc["diff"] is None
    assert doc["catalogs"]["consistent"] is False
    missing = cli("digest", "--checkpoint", "no-such-label", cwd=REPO)
    assert missing.code == 2 and "no checkpoint labelled 'no-such-label'" in missing.err


def test_generated_files_are_ignored_by_git():
    ignored = (REPO / ".gitignore").read_text()
    for path in ("memory/audit/", "memory/outbox/", "memory/escalations/", "memory/cache/"):
        assert path in ignored
    assert Path(REPO / "memory" / "coordination" / "context-brief.jsonl").exists()


def test_latest_checkpoint_is_found_from_the_end(tmp_path):
    from polylog_console.core.feed.records import Checkpoint, read_records
    from polylog_console.core.runbook.recompute import find_checkpoint

    feed = tmp_path / "feed.jsonl"
    body = (REPO / "memory" / "coordination" / "context-brief.jsonl").read_bytes()
    # trailing entries and an incomplete last line after the last checkpoint; blocks of 1 KiB
    feed.write_bytes(body + b'{"kind": "note"}\n\n{"registry_digest": "cut')
    expected = [r for batch in read_records(REPO / "memory" / "coordination" / "context-brief.jsonl")
                for r in batch if isinstance(r, Checkpoint)][-1]
    import polylog_console.core.runbook.recompute as rc

    found = rc._last_checkpoint(feed, None, block=1024)
    assert (found.label, found.line, found.offset) == (expected.label, expected.line, expected.offset)
    assert find_checkpoint(feed).label == "checkpoint-0200"
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b'{"kind": "x"}\n')
    assert find_checkpoint(empty) is None
