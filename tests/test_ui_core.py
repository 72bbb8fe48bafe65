"""The console's logic that lives outside widgets: the action registry and key resolution, the
checkpoint window, diff filtering, the activity lines, theme files."""

from __future__ import annotations

import pytest

from polylog_console.core.feed.records import parse_line
from polylog_console.core.model.actions import ACTIONS, BY_ID, RESERVED_KEYS, available, resolve_keys
from polylog_console.core.model.events import ActionEvent, FeedEvent, Status, StatusEvent
from polylog_console.core.monitor.activity import describe, from_audit
from polylog_console.core.monitor.timeline import Row, Timeline, classify
from polylog_console.core.registry.diff import diff_states
from polylog_console.core.registry.filter import FilterError, filter_rows, iter_diff, parse_query
from polylog_console.core.runbook.operations import REQUIRES, unavailable_reason
from polylog_console.ui.keymap import build_keymap, normalize_key
from polylog_console.ui.themes import ThemeCatalog, ThemeError, load_theme

# --- registry and keys ------------------------------------------------------------------------


def test_registry_ids_and_default_keys_are_unique_and_usable():
    assert len(BY_ID) == len(ACTIONS)
    keys = [normalize_key(spec.key) for spec in ACTIONS]
    assert None not in keys
    assert len(set(keys)) == len(keys)
    assert not set(keys) & set(RESERVED_KEYS)
    assert build_keymap({}).problems == ()


def test_read_only_drops_exactly_the_mutating_actions():
    hidden = {spec.id for spec in ACTIONS} - {spec.id for spec in available(True)}
    assert hidden == {"rehydrate", "bundle", "acknowledge"}
    assert available(False) == ACTIONS


@pytest.mark.parametrize(("text", "key"), [
    ("?", "question_mark"), ("/", "slash"), ("R", "R"), ("r", "r"), ("ctrl+R", "ctrl+r"), ("F5", "f5"),
    ("shift+ctrl+x", "ctrl+shift+x"), (",", "comma"), ("enter", "enter"), ("]", "right_square_bracket"),
])
def test_normalize_key(text, key):
    assert normalize_key(text) == key


@pytest.mark.parametrize("text", ["", " ", "ctrl+", "hyperdrive", "ctrl+ctrl+x", "foo+x", "\x1b"])
def test_normalize_key_refuses(text):
    assert normalize_key(text) is None


def test_remapping_applies_and_reports_problems_one_line_each():
    keymap = build_keymap({"validate": "V", "help": "f1,?", "bogus": "x", "theme": "nonsense-key",
                           "recompute": "ctrl+p"})
    assert keymap.keys["validate"] == ("V",)
    assert keymap.keys["help"] == ("f1", "question_mark")
    assert keymap.key_for("theme") == "t" and keymap.key_for("recompute") == "d"
    problems = "\n".join(keymap.problems)
    assert 'unknown action "bogus"' in problems
    assert '"nonsense-key" is not a key' in problems
    assert "reserved for the command palette" in problems
    assert all("\n" not in p for p in keymap.problems)


def test_clashing_remaps_give_way_to_defaults():
    keymap = build_keymap({"validate": "r"})  # r is rehydrate's
    assert keymap.key_for("validate") == "v" and keymap.key_for("rehydrate") == "r"
    assert any("would run both validate and rehydrate" in p for p in keymap.problems)
    # Swapping two keys is not a clash.
    swapped = build_keymap({"validate": "r", "rehydrate": "v"})
    assert swapped.problems == ()
    assert swapped.key_for("validate") == "r" and swapped.key_for("rehydrate") == "v"
    assert swapped.action_for("v") == "rehydrate"


def test_resolve_keys_is_independent_of_textual():
    keymap = resolve_keys({"quit": "x"}, lambda k: k if len(k) == 1 else None, ACTIONS[-1:])
    assert keymap.keys == {"quit": ("x",)}


# --- the checkpoint window --------------------------------------------------------------------------

def cp(n: int, digest: str = "a" * 64):
    return parse_line(f'{{"label": "c{n}", "registry_digest": "{digest}"}}'.encode(), n, n * 100)


def test_timeline_keeps_sequence_numbers_stable_while_bounded():
    tl = Timeline(capacity=5)
    assert tl.extend([Row(cp(i), True) for i in range(3)]) == 0
    seq_of_c2 = tl.first_seq + 2
    assert tl.extend([Row(cp(i), True) for i in range(3, 8)]) == 3  # c0..c2 fell off
    assert len(tl) == 5 and tl.first_seq == 3 and tl.end_seq == 8
    assert tl.row(seq_of_c2) is None
    assert tl.row(5).checkpoint.label == "c5"
    assert [r.checkpoint.label for r in tl.rows(6, 100)] == ["c6", "c7"]
    assert tl.latest.checkpoint.label == "c7" and tl.oldest.checkpoint.label == "c3"


def test_timeline_pages_older_rows_in_front_within_capacity():
    tl = Timeline(capacity=6)
    tl.extend([Row(cp(i), True) for i in range(10, 14)])
    seq = tl.first_seq + 1  # c11
    assert tl.room() == 2
    taken = tl.prepend([Row(cp(i), True) for i in range(5, 10)])  # oldest first; only 2 fit
    assert taken == 2
    assert [r.checkpoint.label for r in tl.rows(tl.first_seq, tl.end_seq)] == ["c8", "c9", "c10", "c11", "c12", "c13"]
    assert tl.row(seq).checkpoint.label == "c11"  # the same seq still names the same checkpoint
    assert tl.prepend([Row(cp(1), True)]) == 0


def test_classify_history_rows_against_the_stored_digests():
    assert classify(cp(1, "a" * 64), "a" * 64).match is True
    row = classify(cp(1, "b" * 64), "a" * 64, other_digest="b" * 64)
    assert row.match is False and row.scheme_mismatch
    assert classify(cp(1, "c" * 64), "a" * 64, "b" * 64).scheme_mismatch is False
    assert classify(cp(1), None).match is None


# --- diff filter -------------------------------------------------------------------------------------

STORED = {"clusters": {"s1": "▤", "s2": "▥", "s3": "▦"}, "megas": {"m1": "🞀"}}
LIVE = {"clusters": {"s1": "▤", "s2": "X", "s4": "▧"}, "megas": {}}


def rows(query: str):
    diff = diff_states(STORED, LIVE)
    flt = parse_query(query)
    return filter_rows(iter_diff(diff, flt), flt)[0]


def test_diff_filter_by_kind_namespace_and_words():
    assert {r[0] for r in rows("")} == {"missing", "unexpected", "mismatched"}
    assert [r[2] for r in rows("kind:missing")] == ["s3", "m1"]
    assert [r[2] for r in rows("k:mism")] == ["s2"]
    assert [r[2] for r in rows("kind:mis")] == ["s3", "s2", "m1"]  # a prefix of both
    assert [r[2] for r in rows("ns:meg")] == ["m1"]
    assert [r[2] for r in rows("▧")] == ["s4"]
    assert [r[2] for r in rows("clusters x")] == ["s2"]  # every word must match, case-insensitively


def test_diff_filter_errors_and_limits():
    with pytest.raises(FilterError, match="unknown kind"):
        parse_query("kind:weird")
    with pytest.raises(FilterError):
        parse_query("ns:")
    diff = diff_states({"n": {f"s{i}": "a" for i in range(50)}}, {"n": {}})
    flt = parse_query("")
    kept, more = filter_rows(iter_diff(diff, flt), flt, limit=10)
    assert len(kept) == 10 and more
    kept, more = filter_rows(iter_diff(diff, flt), flt, limit=50)
    assert len(kept) == 50 and not more


# --- activity ------------------------------------------------------------------------------------------

def test_activity_lines_for_events_and_audit_records():
    a = describe(ActionEvent("validate", "finished", "ok then", "problem"), now=10.0)
    assert (a.kind, a.level, a.message) == ("action", "warning", "validate finished: ok then")
    assert describe(ActionEvent("validate", "progress"), now=1.0) is None
    s = describe(StatusEvent(Status.IN_SYNC, Status.DRIFT, 5.0, "checkpoint x"))
    assert s.level == "error" and s.message == "IN SYNC → DRIFT (checkpoint x)" and s.at == 5.0
    f = describe(FeedEvent("rotated", "/feed", "renamed"), now=2.0)
    assert f.level == "warning" and f.message == "feed rotated: renamed"
    r = from_audit({"ts": "2025-11-09T14:53:20.000Z", "event": "acknowledged", "actor": "ann@host",
                    "code": "registry_mismatch"})
    assert r.message == "acknowledged by ann@host: registry_mismatch" and r.at == 1762700000.0


# --- operations ------------------------------------------------------------------------------------------

def test_every_runbook_action_is_available_in_this_build():
    for action_id in REQUIRES:
        assert unavailable_reason(action_id) is None
    assert unavailable_reason("follow") is None


def test_a_missing_module_makes_its_action_unavailable(monkeypatch):
    monkeypatch.setitem(REQUIRES, "validate", ("polylog_console.core.no_such_module",))
    assert unavailable_reason("validate") == (
        "validate is not available in this build (polylog_console.core.no_such_module is missing)")


# --- theme files ------------------------------------------------------------------------------------------

def test_shipped_themes_load():
    catalog = ThemeCatalog(None)
    assert {"dark", "light", "high-contrast"} <= set(catalog.ids())
    for theme_id in ("dark", "light", "high-contrast"):
        theme = catalog.get(theme_id)
        assert theme.name == theme_id
        assert {"badge-ok-fg", "badge-drift-bg", "badge-stale-fg", "badge-none-bg"} <= set(theme.variables)
    assert catalog.get("light").dark is False


@pytest.mark.parametrize(("body", "reason"), [
    ("[colors\nprimary = 1", "invalid TOML"),
    ('[colors]\nsecondary = "#fff"\n', "colors.primary is required"),
    ('[colors]\nprimary = "nope"\n', '"nope" is not a colour'),
    ('[colors]\nprimary = "#fff"\nsparkle = "#000"\n', 'unknown key "colors.sparkle"'),
    ('[extra]\n[colors]\nprimary = "#fff"\n', 'unknown section "extra"'),
    ('[colors]\nprimary = "#fff"\n[badges]\nok = "#000"\n', "FOREGROUND on BACKGROUND"),
    ('[theme]\ndark = "yes"\n[colors]\nprimary = "#fff"\n', "theme.dark must be true or false"),
])
def test_broken_theme_files_say_why(tmp_path, body, reason):
    path = tmp_path / "mine.toml"
    path.write_text(body)
    with pytest.raises(ThemeError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        load_theme(path)


def test_workspace_themes_come_first_and_paths_work(tmp_path):
    (tmp_path / "themes").mkdir()
    (tmp_path / "themes" / "dark.toml").write_text('[theme]\ntitle = "Mine"\n[colors]\nprimary = "#123456"\n')
    catalog = ThemeCatalog(tmp_path)
    assert catalog.title("dark") == "Mine"
    other = tmp_path / "elsewhere.toml"
    other.write_text('[colors]\nprimary = "#654321"\n')
    assert catalog.get(str(other)).name == "elsewhere"
    with pytest.raises(ThemeError, match="not found"):
        catalog.get("missing")


# --- the diff panel's decisions -------------------------------------------------------------------------

def test_diff_view_situations_and_notes():
    from types import SimpleNamespace

    from polylog_console.core.registry import diff_view

    def view(**kw):
        base = {"latest": cp(1), "stored_error": None, "latest_match": True, "latest_scheme_mismatch": False,
                "stored_digest": "s" * 64}
        return SimpleNamespace(**{**base, **kw})

    assert diff_view.situation(view(stored_error="broken")) == ("error", "broken")
    assert diff_view.situation(view(latest=None)) == ("none",)
    assert diff_view.situation(view()) == ("match", False)
    drift = diff_view.situation(view(latest_match=False))
    assert drift == ("drift", "s" * 64, "a" * 64)
    assert diff_view.note(drift) is None
    assert "in sync" in diff_view.note(("match", False))
    assert "unreadable: broken" in diff_view.note(("error", "broken"))


def test_diff_view_picks_the_newest_checkpoint_with_a_live_state_and_filters(tmp_path):
    import json

    from polylog_console.core.model.workspace import Workspace
    from polylog_console.core.monitor.rules import Monitor
    from polylog_console.core.registry import diff_view
    from polylog_console.core.registry.digest import digest
    from polylog_console.core.registry.stored import StoredRegistry, save_snapshot

    with_state = parse_line(b'{"label": "s", "registry_digest": "' + b"a" * 64 + b'", "registry_state": {}}', 1, 0)
    tl = Timeline()
    tl.extend([Row(with_state, False), Row(cp(2), False), Row(cp(3, "b" * 64), False)])
    assert diff_view.source(cp(4), tl.find_back).display_label == "s"
    assert diff_view.source(cp(5, "c" * 64), tl.find_back).display_label == "c5"

    # A real stored registry, and a checkpoint carrying the live state inline. The diff is computed
    # by the monitor's job, which reads only immutable inputs (safe on a worker thread: issue 11's
    # worker mutated the monitor's cache); the result enters the cache on the monitor's thread.
    save_snapshot(tmp_path / "registry.json", STORED, label="stored")
    ws = Workspace.open(tmp_path)
    monitor = Monitor(StoredRegistry(tmp_path / "registry.json"), workspace=ws)
    line = json.dumps({"label": "live", "registry_digest": digest(LIVE), "registry_state": LIVE}).encode()
    live = parse_line(line, 7, 0)
    monitor.process([live])
    monitor._diff_cache.clear()  # as if this drift's diff were not computed yet
    assert monitor.cached_diff(live) is None
    key, compute = monitor.diff_job(live)
    diff, error = compute()
    assert error is None and diff is not None
    assert monitor._diff_cache == {} and monitor.cached_diff(live) is None  # the job did not touch the monitor
    monitor.store_diff(key, diff, error)
    assert monitor.cached_diff(live)[0] is diff
    shown = diff_view.present(live.display_label, diff, error, "kind:missing")
    assert [r[2] for r in shown.rows] == ["s3", "m1"] and shown.checkpoint == "live"
    assert diff_view.filtered(shown, "kind:nope").error.startswith("unknown kind")
    assert [r[2] for r in diff_view.filtered(shown, "").rows] == ["s3", "s4", "s2", "m1"]
    none = diff_view.present("c8", None, None)
    assert none.diff is None and "carry no registry_state" in none.note


def test_row_query_language_fields_words_and_errors():
    from polylog_console.core.registry.filter import FilterError, parse_row_query

    fields = {"match": "match", "m": "match", "label": "label"}
    q = parse_row_query("m:no label:check 0171", fields)
    assert q.matches({"match": "no", "label": "checkpoint-0171"}, "checkpoint-0171 abc")
    assert not q.matches({"match": "yes", "label": "checkpoint-0171"}, "checkpoint-0171 abc")
    assert not q.matches({"match": "no", "label": "checkpoint-0172"}, "checkpoint-0172 abc")
    either = parse_row_query("match:no match:scheme", fields)  # a field twice: either value
    assert either.matches({"match": "scheme"}, "") and not either.matches({"match": "yes"}, "")
    with pytest.raises(FilterError, match="unknown field"):
        parse_row_query("colour:red", fields)
    with pytest.raises(FilterError, match="needs a value"):
        parse_row_query("match:", fields)
    assert parse_row_query("", fields).empty


def test_timeline_add_replaces_a_recompared_latest_row_instead_of_copying_it():
    tl = Timeline(capacity=10)
    rows = [Row(cp(n), False, latency_ms=5.0, live=True) for n in range(1, 4)]
    assert tl.add(rows) == (0, False)
    latest = rows[-1].checkpoint
    dropped, updated = tl.add([Row(latest, True)])  # a recheck of the same checkpoint: parity now
    assert (dropped, updated) == (0, True) and len(tl) == 3
    assert tl.latest.match is True and tl.latest.latency_ms == 5.0 and tl.latest.live
    # the same line read again after a reload (another object, same offset and bytes) is the same row
    again = parse_line(latest.raw, latest.line, latest.offset)
    assert tl.add([Row(again, False)]) == (0, True) and len(tl) == 3
    # a new checkpoint and its own recheck in one batch: one row
    new = cp(4)
    assert tl.add([Row(new, False), Row(new, True)]) == (0, False) and len(tl) == 4 and tl.latest.match is True
    tl.clear()
    assert len(tl) == 0 and tl.add([Row(cp(1), None)]) == (0, False) and len(tl) == 1
