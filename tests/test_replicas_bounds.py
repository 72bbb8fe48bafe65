"""Replica checks bounded in total (review of issue 10, item 6): file replicas share the 512 MB body
budget of HTTP replicas, a report keeps only each replica's diff counts and sample (not its
entries), and every untrusted string in a diff sample is cut to SAMPLE_TEXT_MAX characters.
Real files, the real command line."""

from __future__ import annotations

import gc
import json
import tracemalloc

from polylog_console.core.model.config import load_config
from polylog_console.core.model.workspace import Workspace
from polylog_console.core.registry.diff import CUT_MARK, SAMPLE_TEXT_MAX, diff_states, sample_value
from polylog_console.core.runbook import replicas as replicas_module
from polylog_console.core.runbook.replicas import check_replicas_sync
from tests.conftest import run_cli


def stored_state(ws) -> dict:
    return json.loads(ws.registry.read_text())["state"]


def write_replicas(ws, states: list[dict]) -> None:
    lines = []
    for index, state in enumerate(states):
        name = f"replica-{index}.json"
        (ws.root / name).write_text(json.dumps({"label": name, "state": state}))
        lines.append(f'[[replicas]]\nname = "r{index}"\npath = "{name}"\n')
    (ws.root / "monitoring.toml").write_text("\n".join(lines))


def drifted(state: dict, extra: int, tag: str) -> dict:
    out = {ns: dict(table) for ns, table in state.items()}
    out["clusters"].update({f"{tag}-{i:07d}": f"sym{i}" for i in range(extra)})
    return out


def test_file_replicas_share_the_total_body_budget(small_ws, monkeypatch):
    state = stored_state(small_ws)
    write_replicas(small_ws, [drifted(state, 2000, f"r{i}") for i in range(3)])
    size = (small_ws.root / "replica-0.json").stat().st_size
    monkeypatch.setattr(replicas_module, "TOTAL_BODY", int(size * 2.5))  # room for two bodies at once
    ws = Workspace.open(small_ws.root)
    report = check_replicas_sync(ws, load_config(ws.root, env={}))
    assert [r.status for r in report.replicas] == ["drift"] * 3, [r.error for r in report.replicas]
    assert size * 2 <= report.body_peak <= int(size * 2.5)


def test_a_report_keeps_the_diff_counts_and_sample_not_the_entries(small_ws):
    state = stored_state(small_ws)
    write_replicas(small_ws, [drifted(state, 40_000, f"r{i}") for i in range(3)])
    ws = Workspace.open(small_ws.root)
    config = load_config(ws.root, env={})
    gc.collect()
    tracemalloc.start()
    try:
        report = check_replicas_sync(ws, config)
        gc.collect()
        retained, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [r.diff.unexpected for r in report.replicas] == [40_000] * 3
    assert report.replicas[0].to_json()["diff"]["sample"]["unexpected"][0]["signature"] == "r0-0000000"
    # Three diffs of 40,000 entries each held ~10 MB; counts and samples are a few KB.
    assert retained < 3 * 1024 * 1024, retained


def test_a_huge_symbol_or_signature_is_cut_in_the_replicas_json_sample(small_ws):
    state = stored_state(small_ws)
    live = {ns: dict(table) for ns, table in state.items()}
    live["clusters"]["huge-symbol"] = "S" * 2_000_000
    live["clusters"]["G" * 50_000] = "x"
    write_replicas(small_ws, [live])
    result = run_cli("replicas", "--json", "-w", str(small_ws.root), timeout=60)
    assert result.code == 1, result.err
    assert len(result.out) < 20_000
    unexpected = json.loads(result.out)["replicas"][0]["diff"]["sample"]["unexpected"]
    by_sig = {e["signature"]: e["symbol"] for e in unexpected}
    assert by_sig["huge-symbol"] == "S" * SAMPLE_TEXT_MAX + CUT_MARK
    assert "G" * SAMPLE_TEXT_MAX + CUT_MARK in by_sig


def test_sample_value_cuts_strings_and_describes_big_nested_values():
    assert sample_value("abc") == "abc"
    assert sample_value("a" * (SAMPLE_TEXT_MAX + 1)) == "a" * SAMPLE_TEXT_MAX + CUT_MARK
    assert sample_value([1, 2]) == [1, 2]
    assert sample_value(list(range(1000))).startswith("<array: ")
    assert sample_value({"k": "v" * 500}).startswith("<object: ")
    d = diff_states({"ns": {"a": "x" * 1000}}, {"ns": {"a": "y" * 1000}})
    (entry,) = d.sample()["mismatched"]
    assert entry["stored"] == "x" * SAMPLE_TEXT_MAX + CUT_MARK and entry["live"] == "y" * SAMPLE_TEXT_MAX + CUT_MARK
    assert d.summarised(5).summary() == d.summary(5)


def test_digest_of_a_file_in_our_layout_is_digested_from_its_bytes_with_the_same_answer(tmp_path):
    """digest --of: our layout takes the from-bytes path (memory ~ the file, not a parsed state);
    the answer and the symbol count are those of the parsed state, in both schemes."""
    from polylog_console.core.registry.digest import digest
    from polylog_console.core.registry.stored import digest_file, snapshot_bytes

    state = {"clusters": {f"{i:032x}": chr(0x2500 + i % 50) + "é" for i in range(3000)},
             "assemblies": {"a": "x"}, "megas": {}}
    compact = tmp_path / "compact.json"
    compact.write_bytes(snapshot_bytes(state, label="c"))
    pretty = tmp_path / "pretty.json"
    pretty.write_text(json.dumps({"state": state}, indent=2))
    for scheme in ("engine", "canonical"):
        assert digest_file(compact, scheme) == (digest(state, scheme), 3001)
        assert digest_file(pretty, scheme) == (digest(state, scheme), 3001)
    result = run_cli("digest", "--of", str(compact), "--json", timeout=60)
    assert result.code == 0 and json.loads(result.out)["symbols"] == 3001
