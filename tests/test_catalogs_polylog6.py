"""Drop-in for polylog6 (issue 12): the catalogs ``rehydrate`` writes are the ones polylog6's own
``scripts/populate_catalogs.py`` writes for the same source, and a ``metadata.json`` that polylog6 wrote
(on Windows too) is read and checked by ``digest``, ``bundle`` and the console.

The reference is ``vectors/catalogs/`` (a 400-polyform source and the three files polylog6 wrote from it).
Beyond it, the artifacts are compared with a straightforward reimplementation of SPEC §4's rules written
here (``spec_graph`` / ``spec_scaler``), over generated sources of other shapes, and their bytes with
Python's ``json.dumps(indent=2, sort_keys=True)`` (the encoding polylog6's script uses)."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polylog_console.core.model.config import load_config
from polylog_console.core.model.progress import Progress
from polylog_console.core.model.workspace import Workspace
from polylog_console.core.runbook import catalogs
from polylog_console.core.runbook import rehydrate as rh
from polylog_console.core.runbook.catalogs import verify_catalogs
from polylog_console.core.runbook.operations import OPERATIONS, OperationContext
from polylog_console.core.runbook.validate import ValidationFailed
from polylog_console.demo.sample import make_polyforms, polyform_lines, write_workspace

VECTOR = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "catalogs"
if not VECTOR.exists():  # a clone elsewhere: the vector travels with the tests
    VECTOR = Path(__file__).parent / "data" / "catalogs"
ARTIFACTS = ("attachment_graph", "scaler_tables")


# -- SPEC §4, reimplemented plainly -------------------------------------------------------------


def spec_graph(polyforms: list[dict[str, Any]]) -> dict[str, Any]:
    """attachment_graph.json by SPEC §4's words."""
    graph: dict[str, Any] = {}
    for polyform in polyforms:
        codes = sorted({ord(ch) for ch in polyform.get("composition", "")})
        entry = {"polyform_uuid": polyform.get("uuid"), "fold_angles": []}
        if "fold_angles" in polyform:  # present: kept as it is, null included
            entry["fold_angles"] = polyform["fold_angles"]
        entry["stability_score"] = 0.8
        if "stability" in polyform:
            entry["stability_score"] = polyform["stability"]
        for i in range(len(codes)):
            for j in range(i, len(codes)):
                key = chr(codes[i]) + "\u2194" + chr(codes[j])
                if key not in graph:
                    graph[key] = {"pairs": [], "scores": {}}
                graph[key]["pairs"].append(entry)
    return graph


def spec_scaler(polyforms: list[dict[str, Any]]) -> dict[str, Any]:
    """scaler_tables.json by SPEC §4's words."""
    table: dict[str, Any] = {}
    for polyform in polyforms:
        key = polyform["unicode_char"] if "unicode_char" in polyform else polyform["uuid"][0]
        o = 1
        if "O" in polyform:
            o = polyform["O"]
        i = 3 * o
        if "I" in polyform:
            i = polyform["I"]
        table[key] = {"O": o, "I": i, "composition": polyform.get("composition")}
    return table


def polylog6_bytes(value: Any) -> bytes:
    """How polylog6's script encodes a catalog (``json.dumps(..., indent=2, sort_keys=True)``)."""
    return json.dumps(value, indent=2, sort_keys=True).encode("ascii")


def load_lines(data: bytes) -> list[dict[str, Any]]:
    """The source parsed with Python's json, line by line. (polylog6's loader splits with
    ``str.splitlines()``, which also breaks a line at a raw U+2028 inside a string, and then fails;
    SPEC §2 lines end at ``\n`` only.)"""
    return [json.loads(line) for line in data.decode("utf-8").split("\n") if line.strip()]


# -- helpers ---------------------------------------------------------------------------------


def rehydrated(root: Path, source: bytes, **kw: Any) -> rh.RehydrateResult:
    root.mkdir(parents=True, exist_ok=True)
    (root / "stable_polyforms.jsonl").write_bytes(source)
    ws = Workspace.open(root)
    return rh.rehydrate(ws, load_config(ws.root), **kw)


def parsed(root: Path, name: str) -> Any:
    return json.loads((root / "catalogs" / f"{name}.json").read_bytes())


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def polylog6_workspace(root: Path, *, windows: bool = True, source_file: str = "tier0_dataset.jsonl") -> Path:
    """A sample workspace whose source and catalogs are the vector's, with a ``metadata.json`` of the
    shape polylog6 writes on Windows: ``\\`` separators, another ``source_file``, no ``registry_digest``,
    no ``registry`` artifact (its checksums are those of the files, as polylog6 computes them)."""
    write_workspace(root, polyforms=200, checkpoints=20, drift_from=15)
    shutil.copyfile(VECTOR / "stable_polyforms.jsonl", root / "stable_polyforms.jsonl")
    for name in ARTIFACTS:
        shutil.copyfile(VECTOR / f"{name}.json", root / "catalogs" / f"{name}.json")
    sep = "\\" if windows else "/"
    metadata = {
        "source_file": source_file,
        "source_checksum": sha(root / "stable_polyforms.jsonl"),
        "generated_at": "2026-12-01T08:28:59.995691Z",
        "artifacts": {name: {"path": f"catalogs{sep}{name}.json", "checksum": sha(root / "catalogs" / f"{name}.json")}
                      for name in ARTIFACTS},
    }
    (root / "catalogs" / "metadata.json").write_bytes(polylog6_bytes(metadata).replace(b"\n", b"\r\n"))
    return root


# -- the vector ------------------------------------------------------------------------------


def test_rehydrate_reproduces_both_vector_artifacts(tmp_path):
    root = tmp_path / "ws"
    result = rehydrated(root, (VECTOR / "stable_polyforms.jsonl").read_bytes(), workers=1)
    assert result.polyforms == 400
    for name in ARTIFACTS:
        reference = json.loads((VECTOR / f"{name}.json").read_bytes())
        ours = parsed(root, name)
        assert ours == reference, name  # dict equality: every list in the same order
        assert list(ours) == sorted(reference), name  # and the keys in polylog6's (sorted) order
        # Byte for byte what polylog6 wrote: the checksums are those its own metadata.json records.
        assert (root / "catalogs" / f"{name}.json").read_bytes() == (VECTOR / f"{name}.json").read_bytes()
    theirs = json.loads((VECTOR / "metadata.json").read_bytes())
    for name in ARTIFACTS:
        assert result.artifacts[name]["checksum"] == theirs["artifacts"][name]["checksum"]


def test_the_vector_exercises_what_polylog6_treats_specially(tmp_path):
    """The vector is only a reference if it holds the cases the layout rules single out."""
    polyforms = load_lines((VECTOR / "stable_polyforms.jsonl").read_bytes())
    graph = json.loads((VECTOR / "attachment_graph.json").read_bytes())
    assert any(len(set(p["composition"])) < len(p["composition"]) for p in polyforms)  # repeated types
    assert any(key[0] == key[2] and key[0] not in "AB" for key in graph)  # self pairs of every type
    assert any("unicode_char" not in p for p in polyforms)
    assert any("stability" not in p for p in polyforms) and any("fold_angles" not in p for p in polyforms)
    assert any("O" not in p for p in polyforms) and any("I" not in p for p in polyforms)
    assert any(ord(max(p.get("unicode_char", "a"))) > 0xFFFF for p in polyforms)  # astral symbols
    assert any(not p["composition"].isascii() for p in polyforms)
    symbols = [p["unicode_char"] for p in polyforms if "unicode_char" in p]
    assert len(symbols) > len(set(symbols))  # the same symbol in two namespaces


def test_parallel_rehydrate_of_the_vector_is_byte_identical(tmp_path):
    root = tmp_path / "ws"
    result = rehydrated(root, (VECTOR / "stable_polyforms.jsonl").read_bytes(), workers=2, chunk_size=8 << 10)
    assert result.workers == 2
    for name in ARTIFACTS:
        assert (root / "catalogs" / f"{name}.json").read_bytes() == (VECTOR / f"{name}.json").read_bytes()


def test_metadata_has_every_field_polylog6_writes_plus_ours(tmp_path):
    root = tmp_path / "ws"
    result = rehydrated(root, (VECTOR / "stable_polyforms.jsonl").read_bytes())
    theirs = json.loads((VECTOR / "metadata.json").read_bytes())
    raw = (root / "catalogs" / "metadata.json").read_bytes()
    ours = json.loads(raw)
    assert raw == polylog6_bytes(ours)  # encoded as polylog6 encodes it
    assert set(ours) == set(theirs) | {"registry_digest"}
    assert set(ours["artifacts"]) == set(theirs["artifacts"]) | {"registry"}
    for name, info in theirs["artifacts"].items():
        assert set(ours["artifacts"][name]) == set(info)
        assert ours["artifacts"][name] == info  # same path spelling, same checksum
    assert ours["source_file"] == theirs["source_file"] == "stable_polyforms.jsonl"
    assert ours["source_checksum"] == theirs["source_checksum"] == sha(root / "stable_polyforms.jsonl")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", ours["generated_at"])
    assert ours["registry_digest"] == result.registry_digest
    assert ours["artifacts"]["registry"] == {"path": "catalogs/registry.json",
                                             "checksum": sha(root / "catalogs" / "registry.json")}


def test_metadata_polylog6_wrote_reads_consistent(tmp_path):
    """The vector's three files, as polylog6 left them (no registry entries): consistent."""
    root = tmp_path / "ws"
    root.mkdir()
    shutil.copyfile(VECTOR / "stable_polyforms.jsonl", root / "stable_polyforms.jsonl")
    shutil.copytree(VECTOR, root / "catalogs", ignore=shutil.ignore_patterns("stable_polyforms.jsonl", "*.md"))
    check = verify_catalogs(root)
    assert check.consistent and check.problems == []
    assert {a.name: (a.path, a.status) for a in check.artifacts} == {
        "attachment_graph": ("catalogs/attachment_graph.json", "ok"),
        "scaler_tables": ("catalogs/scaler_tables.json", "ok")}
    assert check.to_json()["registry_digest"] is None


# -- round trip and other shapes ---------------------------------------------------------------


def test_round_trip_generated_source_through_the_layout_rules(tmp_path):
    """Our catalogs, parsed, equal SPEC §4's rules applied to the source parsed as polylog6 parses it."""
    rng = random.Random(12)
    polyforms = make_polyforms(3000, seed=12)
    for p in polyforms:  # other shapes than the generator's: defaults, symbols, repeated characters
        roll = rng.random()
        if roll < 0.15:
            p.pop("unicode_char", None)
        elif roll < 0.25:
            p.pop("stability", None)
        elif roll < 0.3:
            p["stability"] = 0.0
        if rng.random() < 0.2:
            p.pop("fold_angles", None)
        if rng.random() < 0.2:
            p.pop("O", None)
        if rng.random() < 0.2:
            p.pop("I", None)
        if rng.random() < 0.1:
            p["composition"] += rng.choice(["\u25b3\u25b3", "\u25a1", "\U0001f7c5", ""])
    source = polyform_lines(polyforms)
    root = tmp_path / "ws"
    rehydrated(root, source, workers=2, chunk_size=32 << 10)
    as_polylog6 = load_lines(source)
    graph, scaler = parsed(root, "attachment_graph"), parsed(root, "scaler_tables")
    assert graph == spec_graph(as_polylog6)
    assert scaler == spec_scaler(as_polylog6)
    assert (root / "catalogs" / "attachment_graph.json").read_bytes() == polylog6_bytes(spec_graph(as_polylog6))
    assert (root / "catalogs" / "scaler_tables.json").read_bytes() == polylog6_bytes(spec_scaler(as_polylog6))
    check = verify_catalogs(root)
    assert check.consistent, check.problems


CHARS = st.sampled_from(["A", "B", "C", "D", "a", "\u25b3", "\u25a1", "\u00e9", "\U0001f7c5", "\U0001f791",
                         "\u2194", "\x7f", '"', "\\", "\n", "\u2028", "0"])
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
JSON = st.recursive(st.none() | st.booleans() | st.integers(-(2**80), 2**80) | FLOATS | st.text(CHARS, max_size=3),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(CHARS, max_size=2), inner,
                                                                                max_size=3),
                    max_leaves=8)
HEX = st.text("0123456789abcdef", min_size=32, max_size=32)


@st.composite
def polyform_shapes(draw: Any) -> dict[str, Any]:
    """Any shape the layout rules must handle, SPEC §2-valid or not (null stability, nested angles)."""
    p: dict[str, Any] = {"uuid": draw(HEX), "composition": draw(st.text(CHARS, max_size=10))}
    if draw(st.booleans()):
        p["unicode_char"] = draw(st.sampled_from(["\U0001f7c5", "\U0001f791", "\u25c8", "x", "ab", "\U0001f7c5\u25c8"]))
    if draw(st.booleans()):
        p["O"] = draw(st.integers(1, 2**70))
    if draw(st.booleans()):
        p["I"] = draw(st.integers(1, 2**70))
    if draw(st.booleans()):
        p["stability"] = draw(st.none() | st.just(0.0) | st.just(0) | st.just(1) | FLOATS)
    if draw(st.booleans()):
        p["fold_angles"] = draw(st.none() | st.lists(FLOATS | st.integers(-360, 360), max_size=5)
                                | st.lists(JSON, max_size=3))
    if draw(st.booleans()):
        p["namespace"] = draw(st.sampled_from(["clusters", "assemblies", "megas"]))
    return p


@settings(max_examples=150, deadline=None)
@given(st.lists(polyform_shapes(), max_size=12), st.data())
def test_builders_follow_the_rules_for_any_shape(polyforms, data):
    graph, scaler = spec_graph(polyforms), spec_scaler(polyforms)
    assert catalogs.build_attachment_graph(polyforms) == graph
    assert catalogs.build_scaler_tables(polyforms) == scaler
    # The fast path rehydrate uses (chunks split anywhere, entries serialised once) writes exactly the
    # bytes polylog6's encoder writes for the rule's value.
    cuts = sorted(data.draw(st.lists(st.integers(0, len(polyforms)), max_size=3)))
    bounds = [0, *cuts, len(polyforms)]
    chunks = [polyforms[a:b] for a, b in itertools.pairwise(bounds)]
    parts = [catalogs.attachment_fragments(chunk) for chunk in chunks]
    assert b"".join(catalogs.graph_pieces(parts)) == polylog6_bytes(graph)
    items: dict[str, bytes] = {}
    for p in polyforms:
        key, item = catalogs.scaler_item(p)
        items[key] = item
    assert b"".join(catalogs.scaler_pieces(items)) == polylog6_bytes(scaler)


@settings(max_examples=1000, deadline=None)
@given(FLOATS)
def test_every_float_is_spelled_as_python_spells_it(value):
    entry = {"polyform_uuid": "0" * 32, "fold_angles": [value, -value], "stability_score": value}
    assert catalogs.python_json(entry) == json.dumps(entry, indent=2, sort_keys=True).encode()
    inner = catalogs.attachment_fragments([{"uuid": "0" * 32, "composition": "A", "fold_angles": [value],
                                            "stability": value}])
    assert b"".join(catalogs.graph_pieces([inner])) == polylog6_bytes(
        {"A\u2194A": {"pairs": [{"polyform_uuid": "0" * 32, "fold_angles": [value], "stability_score": value}],
                      "scores": {}}})


@st.composite
def valid_sources(draw: Any) -> bytes:
    """SPEC §2-valid sources (unique uuids, symbols unique per namespace), lines with and without
    ASCII escapes, symbols repeated across namespaces, polyforms without symbols."""
    count = draw(st.integers(0, 25))
    uuids = draw(st.lists(HEX, min_size=count, max_size=count, unique=True))
    pool = ["\U0001f7c5", "\U0001f791", "\u25c8", "Z", "\u00e9\u00e9"]
    used: set[tuple[str, str]] = set()
    lines = []
    for uuid in uuids:
        p = draw(polyform_shapes())
        p["uuid"] = uuid
        if p.get("stability", 0) is None or not isinstance(p.get("stability", 0), (int, float)) \
                or not 0 <= p.get("stability", 0) <= 1:
            p["stability"] = draw(st.floats(0, 1))
        if "fold_angles" in p and not isinstance(p["fold_angles"], list):
            p["fold_angles"] = []
        ns = p.get("namespace", "clusters")
        if "unicode_char" in p:
            p["unicode_char"] = draw(st.sampled_from(pool))
            if (ns, p["unicode_char"]) in used:
                del p["unicode_char"]
            else:
                used.add((ns, p["unicode_char"]))
        lines.append(json.dumps(p, ensure_ascii=draw(st.booleans())))
    return "".join(line + "\n" for line in lines).encode("utf-8")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_sources())
def test_rehydrate_matches_the_rules_on_valid_sources(source):
    with tempfile.TemporaryDirectory(prefix="pl6-") as tmp:
        root = Path(tmp) / "ws"
        rehydrated(root, source, workers=1, chunk_size=1 << 10)
        polyforms = load_lines(source)
        for name, rule in (("attachment_graph", spec_graph), ("scaler_tables", spec_scaler)):
            assert parsed(root, name) == rule(polyforms)
            assert (root / "catalogs" / f"{name}.json").read_bytes() == polylog6_bytes(rule(polyforms))


def test_sources_polylog6_rejects_are_rejected_too(tmp_path):
    """null stability, a null or empty unicode_char, a non-string composition: SPEC §2 (and polylog6's
    own schema check, which runs before its script builds anything) reject them; nothing is written."""
    root = tmp_path / "ws"
    good = {"uuid": "a" * 32, "composition": "AB"}
    for bad in ({"stability": None}, {"unicode_char": None}, {"unicode_char": ""}, {"composition": None},
                {"O": None}):
        with pytest.raises(ValidationFailed):
            rehydrated(root, (json.dumps({**good, **bad}) + "\n").encode())
        assert not (root / "catalogs").exists()


# -- metadata.json written by polylog6 on Windows ---------------------------------------------


def test_windows_metadata_is_read_and_checked_by_digest(tmp_path, cli):
    root = polylog6_workspace(tmp_path / "ws")
    result = cli("digest", "--workspace", str(root), "--json")
    doc = json.loads(result.out)["catalogs"]
    assert doc["consistent"] is True
    assert doc["source_file"] == "tier0_dataset.jsonl" and doc["checked_source"] == "stable_polyforms.jsonl"
    assert len(doc["problems"]) == 1
    assert "tier0_dataset.jsonl" in doc["problems"][0] and "stable_polyforms.jsonl" in doc["problems"][0]
    assert not any("cannot read" in p for p in doc["problems"])
    assert doc["artifacts"] == {
        name: {"path": f"catalogs/{name}.json", "status": "ok", "checksum": sha(root / "catalogs" / f"{name}.json")}
        for name in ARTIFACTS}
    text = cli("digest", "--workspace", str(root))
    assert "catalogs        consistent" in text.out and "tier0_dataset.jsonl" in text.out


def test_windows_metadata_mismatches_are_named(tmp_path, cli):
    root = polylog6_workspace(tmp_path / "ws")
    table = root / "catalogs" / "scaler_tables.json"
    table.write_bytes(table.read_bytes().replace(b'"O": 1', b'"O": 2', 1))
    (root / "stable_polyforms.jsonl").write_bytes((root / "stable_polyforms.jsonl").read_bytes() + b"\n")
    doc = json.loads(cli("digest", "--workspace", str(root), "--json").out)["catalogs"]
    assert doc["consistent"] is False
    problems = doc["problems"]
    assert any(p.startswith("catalogs/scaler_tables.json: checksum ") and "differs" in p for p in problems)
    assert any(p.startswith("stable_polyforms.jsonl: checksum ") for p in problems)
    assert not any("attachment_graph" in p for p in problems)  # the one that matches is not named
    assert doc["artifacts"]["attachment_graph"]["status"] == "ok"
    assert doc["artifacts"]["scaler_tables"]["status"] == "mismatch"
    (root / "catalogs" / "attachment_graph.json").unlink()
    doc = json.loads(cli("digest", "--workspace", str(root), "--json").out)["catalogs"]
    assert doc["artifacts"]["attachment_graph"]["status"] == "missing"
    assert any("catalogs/attachment_graph.json" in p and "missing" in p for p in doc["problems"])


def test_paths_relative_to_another_directory_are_missing_with_a_hint(tmp_path):
    """polylog6 records paths relative to its working directory: run from the workspace's parent,
    they name ``ws\\catalogs\\...``; taken relative to the workspace they are missing, and said so."""
    root = polylog6_workspace(tmp_path / "ws")
    meta = root / "catalogs" / "metadata.json"
    meta.write_bytes(meta.read_bytes().replace(b'"catalogs\\\\', b'"ws\\\\catalogs\\\\'))
    check = verify_catalogs(root)
    assert not check.consistent
    assert {a.name: (a.path, a.status) for a in check.artifacts} == {
        name: (f"ws/catalogs/{name}.json", "missing") for name in ARTIFACTS}
    assert all("catalogs/" in p and "exists" in p for p in check.problems[:2])


def test_windows_metadata_in_the_bundle(tmp_path, cli):
    root = polylog6_workspace(tmp_path / "ws")
    result = cli("bundle", "--workspace", str(root), "--json")
    assert result.code == 0, result.err
    path = json.loads(result.out)["path"]
    markdown = (root / path if not Path(path).is_absolute() else Path(path)).read_text(encoding="utf-8")
    section = markdown.split("## Catalog metadata", 1)[1].split("\n## ", 1)[0]
    assert "Catalogs consistent" in section
    assert "tier0_dataset.jsonl" in section
    assert "cannot read" not in section and "Unavailable" not in section
    assert "catalogs/attachment_graph.json" in section and "ok" in section


def test_windows_metadata_in_the_console_recompute_action(tmp_path):
    root = polylog6_workspace(tmp_path / "ws")
    ws = Workspace.open(root)
    outcome = OPERATIONS["recompute"](OperationContext(ws, load_config(ws.root), "tester"), Progress())
    assert outcome.result["catalogs"]["consistent"] is True
    assert "inconsistent" not in outcome.message
    (root / "catalogs" / "attachment_graph.json").write_bytes(b"{}")
    outcome = OPERATIONS["recompute"](OperationContext(ws, load_config(ws.root), "tester"), Progress())
    assert "catalogs inconsistent" in outcome.message and "catalogs/attachment_graph.json" in outcome.message


def test_rehydrate_over_a_polylog6_workspace_writes_our_metadata(tmp_path):
    root = polylog6_workspace(tmp_path / "ws")
    before = {name: (root / "catalogs" / f"{name}.json").read_bytes() for name in ARTIFACTS}
    ws = Workspace.open(root)
    rh.rehydrate(ws, load_config(ws.root))
    for name in ARTIFACTS:  # the same source: polylog6's own bytes again
        assert (root / "catalogs" / f"{name}.json").read_bytes() == before[name]
    check = verify_catalogs(root)
    assert check.consistent and check.problems == []
    assert check.metadata is not None and check.metadata["source_file"] == "stable_polyforms.jsonl"


# -- confinement and odd files ----------------------------------------------------------------


def write_metadata(root: Path, artifacts: dict[str, Any], **extra: Any) -> None:
    doc = {"source_file": "stable_polyforms.jsonl", "source_checksum": sha(root / "stable_polyforms.jsonl"),
           "generated_at": "2026-12-01T08:28:59.995691Z", "artifacts": artifacts, **extra}
    (root / "catalogs" / "metadata.json").write_bytes(polylog6_bytes(doc))


def test_paths_outside_the_workspace_are_problems_and_never_read(tmp_path, monkeypatch):
    root = polylog6_workspace(tmp_path / "ws", windows=False, source_file="stable_polyforms.jsonl")
    outside = tmp_path / "outside.json"
    outside.write_bytes(b"{}")
    (root / "catalogs" / "link.json").symlink_to(outside)
    good = {name: {"path": f"catalogs/{name}.json", "checksum": sha(root / "catalogs" / f"{name}.json")}
            for name in ARTIFACTS}
    hostile = {
        "climb": "..\\outside.json", "climb2": "catalogs/../../outside.json", "absolute": str(outside),
        "drive": "C:\\polylog6\\catalogs\\x.json", "unc": "\\\\server\\share\\x.json", "link": "catalogs/link.json",
    }
    write_metadata(root, {**good, **{k: {"path": v, "checksum": sha(outside)} for k, v in hostile.items()}})
    opened: list[Path] = []
    real = catalogs.sha256_file
    monkeypatch.setattr(catalogs, "sha256_file", lambda path: opened.append(Path(path)) or real(path))
    check = verify_catalogs(root)
    assert not check.consistent
    status = {a.name: a.status for a in check.artifacts}
    assert status == {**dict.fromkeys(ARTIFACTS, "ok"), **dict.fromkeys(hostile, "refused")}
    assert len(check.problems) == len(hostile)
    assert all("not read" in p for p in check.problems)
    real_root = Path(os.path.realpath(root))
    assert all(Path(os.path.realpath(p)).is_relative_to(real_root) for p in opened)


def test_fifo_and_oversized_files_do_not_hang_or_fill_memory(tmp_path):
    root = polylog6_workspace(tmp_path / "ws", windows=False, source_file="stable_polyforms.jsonl")
    os.mkfifo(root / "catalogs" / "pipe.json")
    artifacts = {name: {"path": f"catalogs/{name}.json", "checksum": sha(root / "catalogs" / f"{name}.json")}
                 for name in ARTIFACTS}
    write_metadata(root, {**artifacts, "pipe": {"path": "catalogs/pipe.json", "checksum": "0" * 64}})
    found: list[Any] = []
    worker = threading.Thread(target=lambda: found.append(verify_catalogs(root)), daemon=True)
    worker.start()
    worker.join(10)
    assert found, "verify_catalogs blocked on a FIFO"
    assert {a.name: a.status for a in found[0].artifacts}["pipe"] == "unreadable"
    meta = root / "catalogs" / "metadata.json"
    meta.write_bytes(b" " * (catalogs.METADATA_MAX + 1))
    check = verify_catalogs(root)
    assert not check.consistent and "cannot read" in check.problems[0] and check.raw is None


def test_metadata_with_a_bom_and_missing_entries(tmp_path):
    root = polylog6_workspace(tmp_path / "ws", windows=True, source_file="stable_polyforms.jsonl")
    meta = root / "catalogs" / "metadata.json"
    meta.write_bytes(b"\xef\xbb\xbf" + meta.read_bytes())
    check = verify_catalogs(root)
    assert check.consistent and check.problems == []
    doc = json.loads(meta.read_bytes()[3:])
    del doc["artifacts"]["scaler_tables"]
    doc["artifacts"]["attachment_graph"]["checksum"] = None  # polylog6 writes null when the file was absent
    meta.write_bytes(polylog6_bytes(doc))
    check = verify_catalogs(root)
    assert not check.consistent
    assert any("no scaler_tables artifact listed" in p for p in check.problems)
    assert any("catalogs/attachment_graph.json: checksum" in p and "metadata none" in p for p in check.problems)


def test_sample_workspace_catalogs_are_in_polylog6_layout():
    """The committed sample (the repository root) carries catalogs in the new layout too."""
    repo = Path(__file__).resolve().parents[1]
    graph = json.loads((repo / "catalogs" / "attachment_graph.json").read_bytes())
    assert all(set(v) == {"pairs", "scores"} for v in graph.values())
    assert {"A\u2194A", "F\u2194F"} <= set(graph)
    first = next(iter(graph.values()))["pairs"][0]
    assert set(first) == {"polyform_uuid", "fold_angles", "stability_score"}
    scaler = json.loads((repo / "catalogs" / "scaler_tables.json").read_bytes())
    assert all(set(v) == {"O", "I", "composition"} for v in scaler.values())
    assert not set(scaler) & {"clusters", "assemblies", "megas"}  # flat, not per namespace


def test_integers_beyond_64_bits_stay_exact(tmp_path):
    """orjson reads 99999999999999999999 as 1e+20; polylog6 (Python's json) keeps the integer, and so
    do our catalogs, whichever worker builds the line."""
    lines = [{"uuid": f"{i:032x}", "composition": "AB", "unicode_char": chr(0x1F700 + i), "O": 1,
              "I": 99999999999999999999 + i, "fold_angles": [123456789012345678901234567890, -(2**70), 1.5]}
             for i in range(3)]
    lines.append({"uuid": "f" * 32, "composition": "B", "stability": 0.5})
    source = "".join(json.dumps(p) + "\n" for p in lines).encode()
    root = tmp_path / "ws"
    rehydrated(root, source, workers=1)
    polyforms = load_lines(source)
    for name, rule in (("attachment_graph", spec_graph), ("scaler_tables", spec_scaler)):
        assert parsed(root, name) == rule(polyforms)
        assert (root / "catalogs" / f"{name}.json").read_bytes() == polylog6_bytes(rule(polyforms))
    assert parsed(root, "scaler_tables")["\U0001f700"]["I"] == 99999999999999999999
