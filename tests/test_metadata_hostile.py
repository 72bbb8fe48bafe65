"""metadata.json and registry.json read as polylog6 (or a clumsy hand) writes them (review of issue 12).

A ``source_file`` with a directory is said, an upper-case checksum is the same checksum, a
``registry_digest`` that is not registry.json's is a problem line, and a value orjson refuses
(``1e400``, ``NaN``, a 5000-digit integer, a lone-surrogate escape) in a field nobody uses no
longer makes the whole file "not valid JSON" (the feed parser's tolerant second look). The state
stays strictly ``{str: {str: str}}``."""

from __future__ import annotations

import hashlib
import json

import orjson
import pytest

from polylog_console.core.registry.digest import digest
from polylog_console.core.registry.stored import StoredRegistry, tolerant_loads
from polylog_console.core.runbook.catalogs import verify_catalogs
from tests.conftest import run_cli


def metadata_path(ws):
    return ws.root / "catalogs" / "metadata.json"


def consistent_metadata(ws) -> dict:
    """The workspace's metadata with every checksum made true (the sample's source has drifted)."""
    meta = json.loads(metadata_path(ws).read_text())
    meta["source_checksum"] = hashlib.sha256((ws.root / "stable_polyforms.jsonl").read_bytes()).hexdigest()
    for info in meta["artifacts"].values():
        info["checksum"] = hashlib.sha256((ws.root / info["path"]).read_bytes()).hexdigest()
    meta["registry_digest"] = json.loads(ws.registry.read_text())["digest"]
    return meta


def write_meta(ws, meta: dict | bytes) -> None:
    metadata_path(ws).write_bytes(meta if isinstance(meta, bytes) else json.dumps(meta).encode())


def test_the_baseline_is_consistent(small_ws):
    write_meta(small_ws, consistent_metadata(small_ws))
    check = verify_catalogs(small_ws.root)
    assert check.consistent and check.problems == []


@pytest.mark.parametrize("source_file", ["data/stable_polyforms.jsonl", "C:\\data\\stable_polyforms.jsonl",
                                         "../stable_polyforms.jsonl"])
def test_a_source_file_with_a_directory_is_said(small_ws, source_file):
    meta = consistent_metadata(small_ws)
    meta["source_file"] = source_file
    write_meta(small_ws, meta)
    check = verify_catalogs(small_ws.root)
    said = [p for p in check.problems if "generated from" in p]
    assert len(said) == 1 and json.dumps(source_file)[1:-1].replace("\\\\", "\\") in said[0]


def test_a_plain_or_dotted_source_file_is_not_a_problem(small_ws):
    meta = consistent_metadata(small_ws)
    for name in ("stable_polyforms.jsonl", "./stable_polyforms.jsonl", ".\\stable_polyforms.jsonl"):
        meta["source_file"] = name
        write_meta(small_ws, meta)
        assert verify_catalogs(small_ws.root).problems == []


def test_upper_case_checksums_are_the_same_checksums(small_ws):
    meta = consistent_metadata(small_ws)
    meta["source_checksum"] = meta["source_checksum"].upper()
    for info in meta["artifacts"].values():
        info["checksum"] = info["checksum"].upper()
    meta["registry_digest"] = meta["registry_digest"].upper()
    write_meta(small_ws, meta)
    check = verify_catalogs(small_ws.root)
    assert check.consistent and check.problems == []


@pytest.mark.parametrize("value", ["0" * 64, 5, None, ["x"]])
def test_a_wrong_or_non_string_registry_digest_is_a_problem(small_ws, value):
    meta = consistent_metadata(small_ws)
    meta["registry_digest"] = value
    write_meta(small_ws, meta)
    check = verify_catalogs(small_ws.root)
    assert not check.consistent
    assert len(check.problems) == 1 and "registry_digest" in check.problems[0], check.problems
    if isinstance(value, str):
        assert "differs from catalogs/registry.json's" in check.problems[0]


def test_no_registry_digest_as_polylog6_writes_it_is_fine(small_ws):
    meta = consistent_metadata(small_ws)
    del meta["registry_digest"]
    write_meta(small_ws, meta)
    assert verify_catalogs(small_ws.root).problems == []


@pytest.mark.parametrize("value", [b"1e400", b"NaN", b"-Infinity", b"9" * 5000, b'"bad\\ud800"'])
def test_an_odd_value_in_an_unrelated_metadata_field_is_tolerated(small_ws, value):
    body = json.dumps(consistent_metadata(small_ws)).encode()
    write_meta(small_ws, b'{"written_by": ' + value + b", " + body[1:])
    check = verify_catalogs(small_ws.root)
    assert check.consistent and check.problems == [], check.problems


def test_metadata_that_is_really_not_json_is_still_said(small_ws):
    write_meta(small_ws, b'{"source_file": ')
    check = verify_catalogs(small_ws.root)
    assert len(check.problems) == 1 and "not valid JSON" in check.problems[0]


def registry_with(ws, value: bytes) -> None:
    raw = ws.registry.read_bytes()
    ws.registry.write_bytes(b'{"written_by": ' + value + b", " + raw.lstrip()[1:])


@pytest.mark.parametrize("value", [b"1e400", b"NaN", b"9" * 5000])
def test_an_odd_value_in_an_unrelated_registry_field_is_tolerated(small_ws, value):
    stored = json.loads(small_ws.registry.read_text())["digest"]
    registry_with(small_ws, value)
    result = run_cli("digest", "--json", "-w", str(small_ws.root), timeout=60)
    assert result.code in (0, 1), result.err
    assert json.loads(result.out)["stored_digest"] == stored


@pytest.mark.parametrize("symbol", [b"1e400", b"NaN", b"9" * 5000])
def test_the_state_itself_stays_strict(small_ws, symbol):
    data = json.loads(small_ws.registry.read_text())
    ns = next(iter(data["state"]))
    data["state"][ns]["odd"] = "PLACEHOLDER"
    small_ws.registry.write_bytes(json.dumps(data).encode().replace(b'"PLACEHOLDER"', symbol))
    result = run_cli("digest", "-w", str(small_ws.root), timeout=60)
    assert result.code == 2
    assert "must be a string" in result.err or "not valid JSON" in result.err


def test_a_registry_with_lone_surrogate_escapes_is_read_and_digested(small_ws):
    data = json.loads(small_ws.registry.read_text())
    data["state"]["clusters"]["lone-high"] = "bad\ud800"
    data["state"]["clusters"]["lone-low\udfff"] = "x"
    engine = hashlib.sha256(json.dumps(data["state"], sort_keys=True).encode()).hexdigest()  # polylog6's way
    data["digest"] = engine
    small_ws.registry.write_text(json.dumps(data))  # ensure_ascii: the surrogates as \ud800 escapes
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(small_ws.registry.read_bytes())
    view = StoredRegistry(small_ws.registry, "engine").get()
    assert view.digest == engine
    assert view.file_digest_ok
    canonical_bytes = json.dumps(data["state"], sort_keys=True, separators=(",", ":"),
                                 ensure_ascii=False).encode("utf-8", "surrogatepass")
    assert view.digest_under("canonical") == hashlib.sha256(canonical_bytes).hexdigest()
    assert digest(view.state, "engine") == engine
    result = run_cli("digest", "--json", "-w", str(small_ws.root), timeout=60)
    assert result.code in (0, 1), result.err
    assert json.loads(result.out)["stored_digest"] == engine


def test_tolerant_loads_keeps_orjson_reasons_for_broken_json():
    assert tolerant_loads(b'{"a": 1}') == ({"a": 1}, None)
    value, reason = tolerant_loads(b'{"a": ')
    assert value is None and reason
    value, reason = tolerant_loads(b'{"a": 1e400, "b": NaN}')
    assert reason is None and value["a"] == float("inf") and value["b"] != value["b"]
