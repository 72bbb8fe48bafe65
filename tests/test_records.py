"""Feed records (SPEC §5) and ``watch --once --json`` surviving every kind of bad line."""

from __future__ import annotations

import gc
import json
import random

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polylog_console.core.feed import records as records_module
from polylog_console.core.feed.records import Checkpoint, Entry, IngestError, LineSplitter, parse_line, parse_lines
from polylog_console.core.infra.gcpause import gc_paused

DIGEST = "ab" * 32


def cp_line(n: int, **extra) -> bytes:
    return orjson.dumps({"label": f"checkpoint-{n:04d}", "polygons": 3, "chunk_count": 1, "module_refs": 1,
                         "registry_digest": DIGEST, "timestamp": 1762700000.0 + n, **extra})


def test_plain_checkpoint_fields():
    cp = parse_line(cp_line(7, path="storage/x"), 3, 100)
    assert isinstance(cp, Checkpoint)
    assert (cp.label, cp.line, cp.offset, cp.digest, cp.polygons, cp.path) == ("checkpoint-0007", 3, 100, DIGEST, 3,
                                                                              "storage/x")
    assert cp.timestamp == 1762700007.0 and cp.warnings == () and not cp.envelope


def test_envelope_with_detection_telemetry():
    raw = orjson.dumps({"checkpoint_record": orjson.loads(cp_line(5)), "detection_telemetry": {"queued_ms": 4}})
    cp = parse_line(raw, 1)
    assert isinstance(cp, Checkpoint) and cp.envelope
    assert cp.label == "checkpoint-0005" and cp.telemetry == {"queued_ms": 4}


def test_other_entries_are_entries_not_errors():
    entry = parse_line(b'{"kind": "handoff", "note": "x"}', 9)
    assert isinstance(entry, Entry) and entry.entry_kind == "handoff"


def test_minimal_checkpoint_needs_only_a_string_digest():
    cp = parse_line(b'{"registry_digest": "zz"}', 12)
    assert isinstance(cp, Checkpoint)
    assert cp.display_label == "line 12"
    assert [(w.field, w.reason) for w in cp.warnings] == [("registry_digest", "not 64 lowercase hex characters")]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe{}", "invalid UTF-8 at byte 0"),
        (b'{"label": "\xc3\x28"}', "invalid UTF-8 at byte 11"),
        (b"[1, 2, 3]", "not a JSON object (got array)"),
        (b'"just a string"', "not a JSON object (got string)"),
        (b'{"registry_digest": NaN}', "registry_digest must be a string (got NaN)"),  # NaN read as a float
        (b'{"label": "x", "registry_digest": 5}', "registry_digest must be a string (got integer)"),
        (b'{"registry_digest": null}', "registry_digest must be a string (got null)"),
        (b'{"label": "cut', "invalid JSON: Unterminated string starting at (column 11)"),
        (b'{"checkpoint_record": [1]}', "checkpoint_record must be an object (got array)"),
    ],
)
def test_ingest_errors_have_line_and_reason(raw, reason):
    err = parse_line(raw, 41, 7)
    assert isinstance(err, IngestError)
    assert (err.line, err.offset, err.reason) == (41, 7, reason)


def test_integers_beyond_64_bits_are_read():
    big = 2**70
    cp = parse_line(b'{"registry_digest": "' + DIGEST.encode() + b'", "polygons": ' + str(big).encode() + b"}", 1)
    assert isinstance(cp, Checkpoint) and cp.polygons == big


def test_ill_typed_fields_are_warnings_attached_to_the_checkpoint():
    cp = parse_line(cp_line(1, polygons="128", label=7, timestamp="noon", registry_state=[1]), 5)
    assert isinstance(cp, Checkpoint)
    assert cp.polygons is None and cp.label is None and cp.timestamp is None and cp.registry_state is None
    assert {(w.line, w.field) for w in cp.warnings} == {(5, "polygons"), (5, "label"), (5, "timestamp"),
                                                       (5, "registry_state")}
    assert cp.display_label == "line 5"


def test_bom_and_crlf_and_blank():
    assert isinstance(parse_line(b"\xef\xbb\xbf" + cp_line(1), 1, 0), Checkpoint)
    assert isinstance(parse_line(cp_line(1) + b"\r", 2, 10), Checkpoint)
    assert parse_line(b"   ", 3) is None
    assert parse_line(b"\r", 3) is None


def test_line_splitter_holds_incomplete_line():
    sp = LineSplitter()
    assert sp.feed(b'{"a"') == (0, [])
    assert sp.feed(b":1}\n{") == (0, [b'{"a":1}'])
    assert sp.feed(b"}\n\n") == (8, [b"{}", b""])
    assert sp.consumed == 12 and sp.partial == 0


def test_line_splitter_drops_overlong_line_but_keeps_offsets():
    sp = LineSplitter(max_line=10)
    assert sp.feed(b"x" * 25) == (0, [])
    assert sp.feed(b"yyyy\nok\n") == (0, [29, b"ok"])
    records = parse_lines([29, b'{"registry_digest": "d"}'], 1, 0, max_line=10)
    assert isinstance(records[0], IngestError) and "29 bytes" in records[0].reason
    assert records[1].offset == 30 and records[1].line == 2


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=30), st.randoms())
def test_line_splitter_any_chunking_gives_the_same_lines(lines, rnd):
    data = b"".join(line + b"\n" for line in lines)
    cuts = sorted(rnd.sample(range(len(data) + 1), min(len(data) + 1, rnd.randint(0, 8))))
    sp = LineSplitter()
    got = []
    last = 0
    for cut in [*cuts, len(data)]:
        _first, pieces = sp.feed(data[last:cut])
        got.extend(pieces)
        last = cut
    assert got == lines
    assert sp.consumed == len(data)


# --- watch --once --json on hostile feeds (a real process each) --------------------------------

def write_feed(ws, data: bytes):
    ws.feed.write_bytes(data)


def watch_json(cli, ws):
    result = cli("watch", "--once", "--json", cwd=ws.root)
    events = [json.loads(line) for line in result.out.splitlines()]
    return result, events


def by_event(events, name):
    return [e for e in events if e["event"] == name]


def test_watch_once_json_one_line_per_checkpoint_and_error(cli, small_ws):
    stored = small_ws.incident.stored_digest
    lines = [orjson.dumps({"label": "a", "registry_digest": stored, "timestamp": 1.0}),
             b"\xff\xfe garbage",
             b"[1, 2]",
             b'{"registry_digest": NaN}',
             b'{"registry_digest": "' + stored.encode() + b'", "polygons": 123456789012345678901234567890}',
             b'{"label": "missing digest"}',
             b'{"registry_digest": ' + b"7" + b"}",
             b'{"registry_digest": "' + stored.encode() + b'", "polygons": "x", "chunk_count": [], "label": 3}']
    write_feed(small_ws, b"\xef\xbb\xbf" + b"\r\n".join(lines) + b"\r\n")
    result, events = watch_json(cli, small_ws)
    checkpoints = by_event(events, "checkpoint")
    errors = by_event(events, "ingest_error")
    assert [c["line"] for c in checkpoints] == [1, 5, 8]
    assert all(c["registry_match"] is True for c in checkpoints)
    assert [(e["line"], e["reason"]) for e in errors] == [
        (2, "invalid UTF-8 at byte 0"),
        (3, "not a JSON object (got array)"),
        (4, "registry_digest must be a string (got NaN)"),
        (7, "registry_digest must be a string (got integer)"),
    ]
    assert [e["line"] for e in by_event(events, "entry")] == [6]
    warned = checkpoints[2]["warnings"]
    assert {w["field"] for w in warned} == {"polygons", "chunk_count", "label"}
    assert checkpoints[2]["label"] == "line 8"
    # The last checkpoint has no timestamp (counts as read now) and matches: IN SYNC, exit 0.
    assert result.code == 0


def test_watch_once_survives_a_10_mb_line(cli, small_ws):
    stored = small_ws.incident.stored_digest.encode()
    huge = b'{"kind": "blob", "data": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    write_feed(small_ws, huge + b"\n" + b'{"registry_digest": "' + stored + b'"}\n')
    result, events = watch_json(cli, small_ws)
    assert [e["line"] for e in by_event(events, "entry")] == [1]
    assert [(c["line"], c["registry_match"]) for c in by_event(events, "checkpoint")] == [(2, True)]
    assert result.code == 0  # no timestamp: counted as fresh, in sync


def test_watch_once_empty_feed_is_no_data(cli, small_ws):
    write_feed(small_ws, b"")
    result, events = watch_json(cli, small_ws)
    assert by_event(events, "checkpoint") == [] and by_event(events, "ingest_error") == []
    assert result.code == 0


def test_watch_once_missing_feed_is_exit_2_with_clear_message(cli, small_ws):
    small_ws.feed.unlink()
    result = cli("watch", "--once", "--json", cwd=small_ws.root)
    assert result.code == 2
    assert result.out == ""
    assert result.err.strip() == "polylog-console: error: memory/coordination/context-brief.jsonl: feed not found"


def test_watch_once_last_line_without_newline_is_read(cli, small_ws):
    write_feed(small_ws, cp_line(1).replace(DIGEST.encode(), small_ws.incident.stored_digest.encode()))
    _, events = watch_json(cli, small_ws)
    assert [c["label"] for c in by_event(events, "checkpoint")] == ["checkpoint-0001"]


def test_random_garbage_never_crashes(cli, small_ws):
    rnd = random.Random(3)
    blob = bytes(rnd.getrandbits(8) for _ in range(20000))
    write_feed(small_ws, blob)
    result, events = watch_json(cli, small_ws)
    assert result.code in (0, 1), result.err
    assert len(events) >= 1


def test_parsing_pauses_the_cyclic_gc_and_always_leaves_it_as_it_was():
    lines = [b'{"registry_digest": "' + b"a" * 64 + b'"}'] * 3
    assert gc.isenabled()
    seen = []
    real_loads = records_module.loads

    def spy(raw):
        seen.append(gc.isenabled())
        return real_loads(raw)

    records_module.loads = spy
    try:
        assert len(parse_lines(lines, 1, 0)) == 3
    finally:
        records_module.loads = real_loads
    assert seen == [False] * 3 and gc.isenabled()  # paused while parsing, enabled again after
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError("a failure inside still re-enables it")
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # a caller that had it disabled keeps it disabled
    finally:
        gc.enable()
