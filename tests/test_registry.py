"""Registry state, snapshots, diff, and the stored-digest cache."""

from __future__ import annotations

import orjson
import pytest

from polylog_console.core.model.errors import RegistryError
from polylog_console.core.registry.diff import diff_states
from polylog_console.core.registry.digest import digest
from polylog_console.core.registry.stored import (
    StoredRegistry,
    load_snapshot,
    parse_snapshot,
    save_snapshot,
    state_from_polyforms,
)
from polylog_console.demo.sample import make_polyforms, make_state


def test_state_from_polyforms_uses_namespace_default_and_skips_symbol_less():
    state = state_from_polyforms([
        {"uuid": "a" * 32, "composition": "AB", "unicode_char": "△"},
        {"uuid": "b" * 32, "composition": "AB", "namespace": "megas", "unicode_char": "🞀"},
        {"uuid": "c" * 32, "composition": "AB"},
    ])
    assert state == {"clusters": {"a" * 32: "△"}, "assemblies": {}, "megas": {"b" * 32: "🞀"}}


def test_snapshot_roundtrip(tmp_path):
    state = make_state(500)
    save_snapshot(tmp_path / "r.json", state, label="L")
    snap = load_snapshot(tmp_path / "r.json")
    assert snap.state == state and snap.label == "L" and snap.digest == digest(state) and snap.scheme == "engine"


def test_bare_state_is_a_snapshot_too():
    snap = parse_snapshot({"clusters": {"x": "y"}}, where="w")
    assert snap.state == {"clusters": {"x": "y"}} and snap.digest is None


@pytest.mark.parametrize("bad", [[1], {"state": [1]}, {"clusters": "nope"}])
def test_malformed_snapshots_are_clear_errors(bad):
    with pytest.raises(RegistryError):
        parse_snapshot(bad, where="file.json")


def test_diff_kinds_and_counts_per_namespace():
    stored = {"clusters": {"a": "1", "b": "2", "c": "3"}, "megas": {"m": "x"}}
    live = {"clusters": {"a": "1", "b": "9", "d": "4"}, "assemblies": {"z": "0"}}
    d = diff_states(stored, live)
    assert d.counts() == {"missing": 2, "unexpected": 2, "mismatched": 1}
    assert d.per_namespace() == {
        "assemblies": {"missing": 0, "unexpected": 1, "mismatched": 0},
        "clusters": {"missing": 1, "unexpected": 1, "mismatched": 1},
        "megas": {"missing": 1, "unexpected": 0, "mismatched": 0},
    }
    assert list(d.rows()) == [
        ("unexpected", "assemblies", "z", None, "0"),
        ("missing", "clusters", "c", "3", None),
        ("unexpected", "clusters", "d", None, "4"),
        ("mismatched", "clusters", "b", "2", "9"),
        ("missing", "megas", "m", "x", None),
    ]
    assert d.sample(1)["mismatched"] == [{"namespace": "clusters", "signature": "b", "stored": "2", "live": "9"}]
    assert diff_states(stored, stored).empty


def test_diff_handles_unhashable_values():
    d = diff_states({"n": {"a": [1]}}, {"n": {"a": [2]}})
    assert d.mismatched == 1


def test_stored_registry_reloads_only_on_change_and_uses_the_digest_cache(tmp_path):
    state = state_from_polyforms(make_polyforms(300))
    path = tmp_path / "registry.json"
    cache = tmp_path / "cache.json"
    save_snapshot(path, state, label="x")
    stored = StoredRegistry(path, cache=cache)
    assert stored.get().digest == digest(state)
    for _ in range(10):
        stored.get()
    assert stored.loads == 1
    # A second process (a new instance) finds the digest in the cache: no parse, no digest.
    again = StoredRegistry(path, cache=cache)
    view = again.get()
    assert view.digest == digest(state) and again.loads == 0 and view.loaded_symbols is None
    assert view.symbols == 300  # the state still loads on demand
    # A changed file is re-read, whatever the cache holds.
    state["clusters"]["f" * 32] = "◆"
    save_snapshot(path, state, label="y")
    assert again.get().digest == digest(state) and again.loads == 1


def test_stored_registry_cache_is_keyed_by_content_not_mtime(tmp_path):
    path = tmp_path / "registry.json"
    cache = tmp_path / "cache.json"
    save_snapshot(path, {"clusters": {"a": "b"}}, label="x")
    StoredRegistry(path, cache=cache).get()
    cache.write_bytes(orjson.dumps({"engine:" + "0" * 64: "f" * 64}))  # an unrelated entry
    assert StoredRegistry(path, cache=cache).get().digest == digest({"clusters": {"a": "b"}})


def test_unreadable_registry_is_registry_error(tmp_path):
    with pytest.raises(RegistryError, match="not found"):
        StoredRegistry(tmp_path / "none.json").get()
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(RegistryError, match="not valid JSON"):
        StoredRegistry(tmp_path / "bad.json").get()


def test_registry_file_digest_field_is_checked(tmp_path):
    path = tmp_path / "registry.json"
    path.write_bytes(orjson.dumps({"label": "x", "digest": "0" * 64, "scheme": "engine", "state": {"c": {"a": "b"}}}))
    assert StoredRegistry(path).get().file_digest_ok is False
