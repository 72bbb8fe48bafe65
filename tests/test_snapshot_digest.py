"""The digest of a snapshot file from its bytes (core/snapshot_digest.py): equal to the ordinary
parse-and-digest path whenever it answers, and it answers for the layout this project writes."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polylog_console.core.model.errors import RegistryError
from polylog_console.core.registry import snapshot_digest as sd
from polylog_console.core.registry.digest import SCHEMES, digest
from polylog_console.core.registry.stored import StoredRegistry, parse_snapshot, snapshot_bytes

from .conftest import VECTORS

VECTOR_LIST = [orjson.loads(line) for line in VECTORS.read_bytes().splitlines() if line.strip()]

# Anything JSON can hold in keys and symbols, including what forces the ordinary path.
any_text = st.text(max_size=12)
any_states = st.dictionaries(any_text, st.dictionaries(any_text, st.text(max_size=3), max_size=8), max_size=4)
# What the fast path must take: printable keys (no quote or backslash) and symbols from anywhere
# above the control characters but the quote, backslash and DEL.
plain_keys = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\'),
                     max_size=34)
plain_symbols = st.text(alphabet=st.characters(min_codepoint=0x20, exclude_characters='"\\\x7f',
                                               exclude_categories=("Cs",)), max_size=3)
plain_states = st.dictionaries(plain_keys, st.dictionaries(plain_keys, plain_symbols, max_size=30), max_size=4)


def reference(raw: bytes, scheme: str) -> str | None:
    """What the ordinary path says of a file: its digest, or None when it refuses the file."""
    try:
        return digest(parse_snapshot(orjson.loads(raw), where="test").state, scheme)
    except (orjson.JSONDecodeError, RegistryError, TypeError, ValueError):
        return None


@pytest.mark.parametrize("vector", VECTOR_LIST, ids=[v["name"] for v in VECTOR_LIST])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_vectors_in_saved_snapshots(vector, scheme):
    raw = snapshot_bytes(vector["state"], label=vector["name"])
    fast = sd.digest_of_snapshot_bytes(raw, scheme)
    assert fast in (None, vector[scheme])
    keys = [k for ns, table in vector["state"].items() for k in (ns, *table)]
    plain = all(isinstance(v, str) for table in vector["state"].values() for v in table.values())
    if (plain and b"\\" not in raw and all(c >= " " and c != "\x7f" for c in raw.decode())
            and all(k.isascii() for k in keys)):
        assert fast == vector[scheme]  # taken whenever the layout allows


@settings(max_examples=400, deadline=None)
@given(plain_states, st.sampled_from(SCHEMES))
def test_the_layout_this_project_writes_is_taken_and_digests_right(state, scheme):
    raw = snapshot_bytes(state, label="t", source_checksum="x" * 8)
    assert sd.digest_of_snapshot_bytes(raw, scheme) == digest(state, scheme)
    only_state = orjson.dumps({"state": state}, option=orjson.OPT_SORT_KEYS)
    assert sd.digest_of_snapshot_bytes(only_state, scheme) == digest(state, scheme)


@settings(max_examples=400, deadline=None)
@given(any_states, st.sampled_from(SCHEMES))
def test_any_state_digests_right_or_is_left_to_the_ordinary_path(state, scheme):
    raw = snapshot_bytes(state, label="t")
    assert sd.digest_of_snapshot_bytes(raw, scheme) in (None, digest(state, scheme))


@settings(max_examples=600, deadline=None)
@given(plain_states, st.data())
def test_damaged_files_are_never_digested_wrong(state, data):
    raw = bytearray(snapshot_bytes(state, label="t"))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(raw) - 1))
        byte = data.draw(st.sampled_from(b'"{}:, \\\n\x7fa0\xc3\xa9\xff'))
        action = data.draw(st.sampled_from(["replace", "insert", "delete"]))
        if action == "replace":
            raw[at] = byte
        elif action == "insert":
            raw.insert(at, byte)
        elif len(raw) > 1:
            del raw[at]
    for scheme in SCHEMES:
        fast = sd.digest_of_snapshot_bytes(bytes(raw), scheme)
        assert fast is None or fast == reference(bytes(raw), scheme)


STATE = {"assemblies": {"a1": "é", "a2": "😀"}, "clusters": {"c1": "x", "c2": "ÿ"}, "megas": {}}


@pytest.mark.parametrize("raw", [
    json.dumps({"state": STATE}).encode(),  # spaces
    json.dumps({"state": STATE}, separators=(",", ":")).encode(),  # \u escapes
    orjson.dumps({"state": STATE}, option=orjson.OPT_INDENT_2),  # indented
    orjson.dumps(STATE, option=orjson.OPT_SORT_KEYS),  # a bare state
    orjson.dumps({"state": {"clusters": {"b": "x", "a": "y"}}}),  # keys out of order
    orjson.dumps({"state": {"megas": {}, "clusters": {}}}),  # namespaces out of order
    b'{"state":{"clusters":{"a":"x","a":"y"}}}',  # a key twice
    b'{"state":{"clusters":{"a":"x"},"clusters":{"b":"y"}}}',  # a namespace twice
    b'{"state":{"clusters":{"a":{"b":"c"}}}}',  # too deep
    b'{"state":{"clusters":{"a":1}}}',  # not a string
    b'{"state":{"clusters":"x"}}',  # not a table
    b'{"state":{"clusters":{"\xc3\xa9":"x"}}}',  # a key json.dumps escapes
    b'{"state":{"clusters":{"a":"\x7f"}}}',  # DEL: escaped by json.dumps
    b'{"state":{"clusters":{"a":"\xff"}}}',  # invalid UTF-8
    b'{"meta":{"x":1,"state":{"clusters":{}}},"state":{"clusters":{}}}',  # "state" nested in the head
    b'{"state":{"clusters":{}},"state":{"clusters":{"a":"b"}}}',  # "state" twice
    b'{"state":{"clusters":{"a":"b"}}',  # truncated
])
def test_other_layouts_take_the_ordinary_path(raw):
    for scheme in SCHEMES:
        assert sd.digest_of_snapshot_bytes(raw, scheme) is None


def test_a_trailing_newline_keeps_the_fast_path():
    """A snapshot written with a final newline (the sample, editors, ``jq``) is still this layout."""
    for ending in (b"\n", b"\r\n", b"\n\n"):
        raw = orjson.dumps({"digest": "d", "state": STATE}, option=orjson.OPT_SORT_KEYS) + ending
        for scheme in SCHEMES:
            assert sd.digest_of_snapshot_bytes(raw, scheme) == digest(STATE, scheme)
        assert sd.snapshot_head(raw) == {"digest": "d"}


def test_big_tables_are_checked_across_chunks():
    table = {f"{i:08d}": chr(0x4E00 + i % 2000) + chr(0x1F600 + i % 50) for i in range(20_000)}
    state = {"clusters": table, "megas": {"m": "x"}}
    raw = snapshot_bytes(state, label="big")
    assert len(raw) > 4 * sd.CHUNK
    for scheme in SCHEMES:
        assert sd.digest_of_snapshot_bytes(raw, scheme) == digest(state, scheme)
    # Symbols that look like the structure, around every chunk boundary.
    tricky = {f"{i:08d}": ('","', "}", ":{", ",", '"}', "{") [i % 6].replace('"', "'") for i in range(20_000)}
    tricky.update({f"{i:08d}": "," for i in range(0, 20_000, 3)})
    state2 = {"a": tricky, "b": {"k": "}"}}
    raw2 = snapshot_bytes(state2, label="tricky")
    for scheme in SCHEMES:
        assert sd.digest_of_snapshot_bytes(raw2, scheme) == digest(state2, scheme)
    # One key out of order far from the start, on a chunk boundary or not: refused.
    for n in (9_000, 17_500):
        swapped = raw.replace(b'"%08d"' % n, b'"%08d"' % (n + 1), 1)
        assert sd.digest_of_snapshot_bytes(swapped, "engine") is None


def test_stored_registry_digests_a_saved_snapshot_without_parsing_it(tmp_path):
    state = {"clusters": {"c1": "é", "c2": "x"}, "megas": {"m1": "😀"}}
    path = tmp_path / "registry.json"
    path.write_bytes(snapshot_bytes(state, label="r"))
    stored = StoredRegistry(path, "engine", tmp_path / "cache.json")
    view = stored.get()
    assert view.digest == digest(state) and view.loaded_symbols is None and stored.loads == 1
    assert view.other_digest == digest(state, "canonical") and view.loaded_symbols is None
    assert view.symbols == 3 and view.label == "r"  # the state still parses on demand
    # A file in another layout takes the ordinary path, with the same answer.
    path.write_text(json.dumps({"label": "r", "state": state}), encoding="utf-8")
    assert stored.get().digest == digest(state) and stored.get().loaded_symbols == 3
