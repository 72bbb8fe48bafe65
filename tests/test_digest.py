"""Digest schemes (SPEC §3): every reference vector, both paths, and the CLI's ``digest --of``."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polylog_console.core.registry import digest as dg

from .conftest import VECTORS

VECTOR_LIST = [orjson.loads(line) for line in VECTORS.read_bytes().splitlines() if line.strip()]


def test_vectors_file_is_complete():
    assert len(VECTOR_LIST) >= 14
    assert {v["name"] for v in VECTOR_LIST} >= {"empty", "ascii", "astral-emoji", "escapes", "key-order-case"}


@pytest.mark.parametrize("vector", VECTOR_LIST, ids=[v["name"] for v in VECTOR_LIST])
def test_reference_vectors(vector):
    assert dg.digest(vector["state"], "engine") == vector["engine"]
    assert dg.digest(vector["state"], "canonical") == vector["canonical"]


@pytest.mark.parametrize("vector", VECTOR_LIST, ids=[v["name"] for v in VECTOR_LIST])
@pytest.mark.parametrize("scheme", ["engine", "canonical"])
def test_cli_digest_of_file_reproduces_vectors(vector, scheme, tmp_path, cli):
    bare = tmp_path / "state.json"
    bare.write_text(json.dumps(vector["state"]), encoding="utf-8")
    result = cli("digest", "--of", str(bare), "--scheme", scheme, "--json", cwd=tmp_path)
    assert result.code == 0, result.err
    assert json.loads(result.out) == {"digest": vector[scheme], "scheme": scheme, "file": str(bare),
                                      "symbols": sum(len(t) for t in vector["state"].values())}


def test_cli_digest_of_snapshot_file(tmp_path, cli):
    vector = next(v for v in VECTOR_LIST if v["name"] == "bmp-symbols")
    snap = tmp_path / "snap.json"
    snap.write_text(json.dumps({"label": "x", "digest": "ignored", "scheme": "engine", "state": vector["state"]}))
    result = cli("digest", "--of", str(snap), "--json", cwd=tmp_path)
    assert json.loads(result.out)["digest"] == vector["engine"]


def test_cli_digest_of_missing_file_is_exit_2(tmp_path, cli):
    result = cli("digest", "--of", str(tmp_path / "nope.json"), cwd=tmp_path)
    assert result.code == 2
    assert "not found" in result.err and result.err.count("\n") == 1


def test_fast_path_is_taken_for_registry_shaped_states():
    state = {"clusters": {"a" * 32: "△", "b" * 32: "🔷"}, "megas": {"c" * 32: "é"}}
    assert dg._joined_values(state) is not None
    assert dg.engine_bytes(state) == dg.engine_bytes_reference(state)
    assert dg.canonical_bytes(state) == dg.canonical_bytes_reference(state)


def test_unknown_scheme_is_refused():
    with pytest.raises(ValueError, match="unknown digest scheme"):
        dg.digest({}, "sha1")  # type: ignore[arg-type]


keys = st.text(min_size=0, max_size=40)
symbols = st.text(min_size=0, max_size=3)
tables = st.dictionaries(keys, symbols, max_size=12)
states = st.dictionaries(st.sampled_from(["clusters", "assemblies", "megas", "é", "B", "b", ""]), tables, max_size=4)
hex_keys = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)
registry_states = st.dictionaries(
    st.sampled_from(["clusters", "assemblies", "megas"]),
    st.dictionaries(hex_keys, st.text(alphabet=st.characters(min_codepoint=0x20), min_size=1, max_size=2),
                    max_size=30),
    max_size=3,
)


@settings(max_examples=400, deadline=None)
@given(states)
def test_fast_paths_equal_reference_for_any_text(state):
    assert dg.engine_bytes(state) == dg.engine_bytes_reference(state)
    assert dg.canonical_bytes(state) == dg.canonical_bytes_reference(state)


@settings(max_examples=300, deadline=None)
@given(registry_states)
def test_fast_paths_equal_reference_for_registry_states(state):
    assert dg.engine_bytes(state) == dg.engine_bytes_reference(state)
    assert dg.canonical_bytes(state) == dg.canonical_bytes_reference(state)
