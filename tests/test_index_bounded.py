"""The incident index stays bounded on a flapping feed: with flap detection off its writer stops
after MAX_RUN_RECORDS incident records (the coverage it wrote ends before the batch it did not
write); with it on (the default) the feed makes a few incidents. Either way the report is the same
read from the index (and a replay of the rest) as from scratch."""

from __future__ import annotations

import json
import time

from polylog_console.core.monitor import incidents
from polylog_console.core.registry.digest import digest
from polylog_console.core.registry.stored import save_snapshot
from polylog_console.demo.sample import make_state, write_big_feed
from tests.conftest import run_cli


def flapping_workspace(root, *, detect: bool, lines: int = 30_001):
    state = make_state(200)
    stored = digest(state)
    (root / "catalogs").mkdir(parents=True)
    (root / "memory" / "coordination").mkdir(parents=True)
    save_snapshot(root / "catalogs" / "registry.json", state, label="t")
    write_big_feed(root / "memory" / "coordination" / "context-brief.jsonl", lines=lines,
                   digests=(stored, stored, "f" * 64), start=time.time() - 3000)
    if not detect:
        (root / "monitoring.toml").write_text("[monitor]\nflap_threshold = 0\n")


def test_flapping_feed_stops_the_index_and_the_report_is_unchanged(tmp_path, monkeypatch):
    root = tmp_path / "ws"
    flapping_workspace(root, detect=False)
    result = run_cli("watch", "--once", "--json", "--workspace", str(root))
    assert result.code in (0, 1) and not result.err, result.err
    index = root / "memory" / "incidents" / "index.jsonl"
    lines = index.read_bytes().splitlines()
    written = [json.loads(x) for x in lines if b'"kind":"incident"' in x]
    assert 0 < len(written) <= incidents.MAX_RUN_RECORDS < 20_000  # stopped: not one record per incident event
    assert index.stat().st_size < 4 * incidents.MAX_BYTES
    from_index = run_cli("report", "--incident", "all", "--json", "--workspace", str(root))
    scratch = run_cli("report", "--incident", "all", "--json", "--no-index", "--workspace", str(root))
    a, b = json.loads(from_index.out), json.loads(scratch.out)
    assert len(a["incidents"]) == len(b["incidents"]) == 10_000
    assert [(i["started_label"], i["resolved_label"]) for i in a["incidents"]] == \
        [(i["started_label"], i["resolved_label"]) for i in b["incidents"]]


def test_a_flapping_incident_read_from_the_index_equals_the_replay(tmp_path):
    """The index's coverage ends inside the flapping incident: the report resumes it at its start
    as a flapping incident (what made it one came before), so it is one incident either way."""
    root = tmp_path / "ws"
    flapping_workspace(root, detect=True)
    for args in (("--json",), ()):
        result = run_cli("watch", "--once", *args, "--workspace", str(root))
        assert result.code in (0, 1) and not result.err, result.err
        from_index = run_cli("report", "--incident", "all", "--json", "--workspace", str(root))
        scratch = run_cli("report", "--incident", "all", "--json", "--no-index", "--workspace", str(root))
        a, b = json.loads(from_index.out), json.loads(scratch.out)
        assert len(a["incidents"]) == len(b["incidents"]) == 20  # 19 ordinary, the 20th flapping
        keys = ("started_label", "resolved_label", "state", "flapping", "flap_drifts", "mismatching_checkpoints",
                "matching_checkpoints")
        assert [[i[k] for k in keys] for i in a["incidents"]] == [[i[k] for k in keys] for i in b["incidents"]]
        last = a["incidents"][-1]
        assert last["state"] == "open" and last["flapping"] and last["flap_drifts"] == 10_000 - 19
        assert last["mismatching_checkpoints"] == 10_000 - 19
    index = root / "memory" / "incidents" / "index.jsonl"
    # two watch runs and two scratch reports wrote it: a few records per incident, none per flap
    assert sum(b'"kind":"incident"' in x for x in index.read_bytes().splitlines()) < 400


def test_runs_that_index_the_same_incidents_again_do_not_repeat_their_timeline(tmp_path):
    """watch --once and scratch reports each add their records to the index: an incident event is
    the same one whichever run wrote it (its kind and checkpoint, not when that run observed it)."""
    root = tmp_path / "ws"
    flapping_workspace(root, detect=True, lines=30)
    assert run_cli("watch", "--once", "--workspace", str(root)).code in (0, 1)
    for _ in range(3):
        assert run_cli("report", "--incident", "all", "--json", "--no-index", "--workspace", str(root)).code in (0, 1)
    report = json.loads(run_cli("report", "--incident", "all", "--json", "--workspace", str(root)).out)
    assert len(report["incidents"]) == 10
    for incident in report["incidents"]:
        whats = [t["what"] for t in incident["timeline"]]
        assert whats.count("started") == 1 and whats.count("resolved") == (incident["state"] == "resolved"), whats
