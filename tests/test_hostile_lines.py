"""Hostile but parseable feed lines never stop monitoring and never hide a drift (issue 10 review:
items 1, 3, 4 and 11).

* **Times** no datetime can hold (``9e15``, ``1e20``, ``1e300``, ``253402300800`` = year 10000,
  ``-62135596801`` = year 0, ``-1e18``, NaN, Infinity): the feed parser decides once
  (``core/feed/records.py`` :func:`usable_time`, years 1 to 9999 UTC): a field warning, and the
  checkpoint counts as written when it was read, so it is still compared; ``iso()`` is total.
* **Envelopes**: any object with a string ``registry_digest`` (top level or inside an object
  ``checkpoint_record``) is a checkpoint; a non-object ``checkpoint_record`` is a warning; two
  different digests: the inner one is compared, with a warning naming both.
* **NaN / Infinity / -Infinity** literals (Python's ``json.dumps`` writes them) are read as
  non-finite floats with a warning, never an ingest error; JSON output writes ``null``.
* **Age** of a checkpoint at ``timestamp`` 0 is its real age, not ``0s``.

Real processes: ``watch --json`` following a workspace while a writer process appends each line,
``watch --once`` (JSON and human) and ``report --json`` on the same feed.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from polylog_console.core.feed.records import TIME_MAX, TIME_MIN, Checkpoint, IngestError, parse_line, usable_time
from polylog_console.core.infra.text import dumps_json, json_line
from polylog_console.core.model.events import iso
from polylog_console.core.monitor.rules import format_age
from tests.servers import checkpoint_line, read_json_until, stop_following

E = "e" * 64

BAD_TIMES = ["9e15", "1e20", "1e300", "253402300800", "-62135596801", "-1e18", "NaN", "Infinity", "-Infinity",
             "1e400", "-0.5e400", "99999999999999999999999"]
GOOD_TIMES = ["0", "-0", "-0.0", "-62135596800", "253402300799", "1762700000.25", "-1"]
# checkpoint_record values beside a string top-level registry_digest: the top-level one is compared
BAD_RECORDS = ['"x"', "null", "[1]", "{}", '{"label":"x"}', '{"registry_digest":5}', "NaN", "true"]
NONFINITE_FIELDS = [
    ('"label":NaN', "label"),
    ('"polygons":Infinity', "polygons"),
    ('"chunk_count":-Infinity', "chunk_count"),
    ('"extra":[1,NaN,{"a":-Infinity}]', "extra"),
    ('"registry_state":{"clusters":{"sig":NaN}}', "registry_state"),
    ('"deep":' + "[" * 3000 + "NaN" + "]" * 3000, "deep"),
]


def strict_json(data: bytes | str) -> object:
    """json.loads that refuses NaN / Infinity (what a strict consumer does)."""
    def refuse(name: str) -> None:
        raise ValueError(f"{name} in JSON output")
    return json.loads(data, parse_constant=refuse)


def warning_fields(record) -> dict[str, str]:
    return {w.field: w.reason for w in record.warnings}


# --- the parser: one decision per kind of value ----------------------------------------------

@pytest.mark.parametrize("ts", BAD_TIMES)
def test_an_unusable_time_is_a_warning_and_the_checkpoint_is_still_one(ts):
    cp = parse_line(f'{{"label":"t","registry_digest":"{E}","timestamp":{ts}}}'.encode(), 3)
    assert type(cp) is Checkpoint, getattr(cp, "reason", cp)
    assert cp.digest == E and cp.timestamp is None  # read time applies
    assert "not a usable time" in warning_fields(cp)["timestamp"]
    assert strict_json(dumps_json(cp.to_json()))["timestamp"] is None
    inner = parse_line(f'{{"checkpoint_record":{{"registry_digest":"{E}","timestamp":{ts}}}}}'.encode(), 3)
    assert type(inner) is Checkpoint and inner.timestamp is None and "timestamp" in warning_fields(inner)


@pytest.mark.parametrize("ts", GOOD_TIMES)
def test_every_time_datetime_can_hold_is_kept(ts):
    cp = parse_line(f'{{"registry_digest":"{E}","timestamp":{ts}}}'.encode(), 3)
    assert type(cp) is Checkpoint and cp.timestamp == float(ts) and cp.warnings == ()
    datetime.fromisoformat(iso(cp.timestamp))


def test_the_range_is_what_datetime_represents():
    assert iso(TIME_MIN) == "0001-01-01T00:00:00.000Z"
    assert iso(TIME_MAX - 0.001).startswith("9999-12-31T23:59:59")
    assert usable_time(TIME_MAX) is None and usable_time(TIME_MIN - 1) is None
    assert usable_time(True) is None and usable_time(10**400) is None and usable_time(-(10**400)) is None


@pytest.mark.parametrize("ts", [9e15, 1e20, 1e300, 253402300800, -62135596801, -1e18, math.nan, math.inf,
                                -math.inf, 10**30, TIME_MAX, TIME_MIN - 0.5])
def test_iso_never_raises_and_always_writes_iso_8601(ts):
    text = iso(ts)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert moment.year in (1, 9999)


@pytest.mark.parametrize("record", BAD_RECORDS)
def test_a_top_level_digest_beside_an_unusable_checkpoint_record_is_compared(record):
    cp = parse_line(f'{{"checkpoint_record":{record},"registry_digest":"{E}"}}'.encode(), 9)
    assert type(cp) is Checkpoint, getattr(cp, "reason", cp)
    assert cp.digest == E and cp.display_label == "line 9"
    assert "the top-level registry_digest is compared" in warning_fields(cp)["checkpoint_record"]


def test_two_different_digests_compare_the_inner_one_and_say_so():
    d = "d" * 64
    cp = parse_line(f'{{"checkpoint_record":{{"label":"in","registry_digest":"{d}"}},"registry_digest":"{E}"}}'
                    .encode(), 4)
    assert type(cp) is Checkpoint and cp.digest == d and cp.label == "in" and cp.envelope
    reason = warning_fields(cp)["registry_digest"]
    assert "eeeeeeeeeeee" in reason and "dddddddddddd" in reason and "checkpoint_record's is compared" in reason
    same = parse_line(f'{{"checkpoint_record":{{"registry_digest":"{d}"}},"registry_digest":"{d}"}}'.encode(), 4)
    assert type(same) is Checkpoint and same.warnings == ()  # agreeing digests: nothing to say
    odd = parse_line(f'{{"checkpoint_record":{{"registry_digest":"{d}"}},"registry_digest":5}}'.encode(), 4)
    assert type(odd) is Checkpoint and odd.digest == d and "not a string" in warning_fields(odd)["registry_digest"]


def test_lines_without_any_string_digest_stay_what_they_were():
    assert type(parse_line(b'{"checkpoint_record":[1]}', 1)) is IngestError
    assert type(parse_line(b'{"checkpoint_record":{"label":"x"}}', 1)) is IngestError
    err = parse_line(b'{"registry_digest":NaN}', 1)
    assert type(err) is IngestError and err.reason == "registry_digest must be a string (got NaN)"


@pytest.mark.parametrize(("member", "field"), NONFINITE_FIELDS)
def test_nonfinite_literals_anywhere_are_warnings_never_ingest_errors(member, field):
    for raw in (f'{{"label":"n",{member},"registry_digest":"{E}"}}',
                f'{{"checkpoint_record":{{{member},"registry_digest":"{E}"}},"detection_telemetry":{{"q":NaN}}}}'):
        cp = parse_line(raw.encode(), 2)
        assert type(cp) is Checkpoint and cp.digest == E, getattr(cp, "reason", cp)
        fields = warning_fields(cp)
        assert field in fields, fields
        assert "finite" in fields[field] or "nested too deeply" in fields[field]
        strict_json(dumps_json(cp.to_json()))


def test_json_output_writes_nonfinite_floats_as_null():
    value = {"a": math.nan, "b": [math.inf, -math.inf], "big": 2**70, "s": "\ud800", math.nan: 1}
    for data in (dumps_json(value), dumps_json(value, indent=True, sort_keys=True), json_line(value)):
        doc = strict_json(data)
        assert doc["a"] is None and doc["b"] == [None, None]


# --- real processes ------------------------------------------------------------------------

def hostile_lines(stored: str) -> list[tuple[bytes, str, str | None]]:
    """(line, the warning field its checkpoint must carry, its label: None for "line N") for every
    hostile case."""
    out: list[tuple[bytes, str, str | None]] = []
    for i, ts in enumerate(BAD_TIMES):
        out.append((f'{{"label":"ts-{i}","registry_digest":"{E}","timestamp":{ts}}}'.encode(), "timestamp",
                    f"ts-{i}"))
    for i, record in enumerate(BAD_RECORDS):
        out.append((f'{{"checkpoint_record":{record},"registry_digest":"{E}","label":"env-{i}"}}'.encode(),
                    "checkpoint_record", f"env-{i}"))
    out.append((f'{{"checkpoint_record":{{"label":"conflict","registry_digest":"{stored}"}},'
                f'"registry_digest":"{E}"}}'.encode(), "registry_digest", "conflict"))
    for i, (member, field) in enumerate(NONFINITE_FIELDS):
        if field == "label":
            out.append((f'{{{member},"registry_digest":"{E}"}}'.encode(), field, None))
        else:
            out.append((f'{{"label":"nan-{i}",{member},"registry_digest":"{E}"}}'.encode(), field, f"nan-{i}"))
    return out


def feed_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


def env() -> dict[str, str]:
    full = {**os.environ, "NO_COLOR": "1"}
    full.pop("POLYLOG_WORKSPACE", None)
    return full


def run(*args: str, root: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "polylog_console", *args, "--workspace", str(root)],
                          capture_output=True, env=env(), timeout=timeout)


def events_of(out: bytes) -> list[dict]:
    return [strict_json(line) for line in out.splitlines() if line.strip()]


def read_until(proc: subprocess.Popen, predicate, timeout: float) -> list[dict]:
    """JSON lines from ``proc``'s stdout until one satisfies ``predicate`` (bounded wait)."""
    return read_json_until(proc, predicate, timeout, strict_json)


def test_watch_json_follows_every_hostile_line_and_compares_the_next_drift(small_ws):
    stored, live = small_ws.incident.stored_digest, small_ws.incident.live_digest
    first = feed_lines(small_ws.feed) + 1  # line number of the first appended line
    proc = subprocess.Popen([sys.executable, "-m", "polylog_console", "watch", "--json", "--workspace",
                             str(small_ws.root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
    try:
        read_until(proc, lambda e: e.get("event") == "feed" and e.get("kind") == "started", 60)
        lines: list[bytes] = []
        expect: list[tuple[str, str | None, bool]] = []  # label, warning field, registry_match
        for i, (raw, field, label) in enumerate(hostile_lines(stored)):
            lines.append(checkpoint_line(3000 + i, stored))  # parity: the hostile line is a fresh drift
            lines.append(raw)
            expect.append((label or f"line {first + len(lines) - 1}", field, label == "conflict"))
            lines.append(checkpoint_line(4000 + i, live))  # a plain drifting checkpoint after it
            expect.append((f"checkpoint-{4000 + i:04d}", None, False))
        writer = ("import sys\nwith open(sys.argv[1], 'ab') as f:\n"
                  "    for line in sys.stdin.buffer.read().split(b'\\n'):\n"
                  "        f.write(line + b'\\n'); f.flush()\n")
        subprocess.run([sys.executable, "-c", writer, str(small_ws.feed)], input=b"\n".join(lines), check=True,
                       timeout=30)
        last = expect[-1][0]
        seen = read_until(proc, lambda e: e.get("event") == "checkpoint" and e.get("label") == last, 90)
        cps = {e["label"]: e for e in seen if e.get("event") == "checkpoint"}
        for label, field, match in expect:
            assert label in cps, f"{label} never compared"
            event = cps[label]
            assert event["registry_match"] is match, event
            if field is not None:
                assert field in {w["field"] for w in event["warnings"]}, event
        assert not [e for e in seen if e.get("event") == "ingest_error"]
        mismatches = [e for e in seen if e.get("event") == "alert" and e["code"] == "registry_mismatch"
                      and e["status"] == "firing"]
        assert {a["checkpoint"]["label"] for a in mismatches} >= {"ts-0", "ts-5", "env-0"}  # each a fresh drift
        assert proc.poll() is None  # still following
    finally:
        code, err = stop_following(proc)
    assert code == 0, err.decode(errors="replace")[-3000:]
    assert b"Traceback" not in err


@pytest.mark.parametrize("ts", ["9e15", "-1e18", "253402300800", "NaN"])
def test_watch_once_ends_in_a_checkpoint_with_an_unusable_time(small_ws, ts):
    with small_ws.feed.open("ab") as handle:
        handle.write(f'{{"label":"t","registry_digest":"{E}","timestamp":{ts}}}\n'.encode())
    result = run("watch", "--once", "--json", root=small_ws.root)
    err = result.stderr.decode(errors="replace")
    assert result.returncode == 1, err  # DRIFT, not a crash (2 or a traceback)
    assert "Traceback" not in err and "Value too large" not in err
    events = events_of(result.stdout)
    summary = events[-1]
    assert summary["event"] == "summary" and summary["status"] == "DRIFT"
    assert summary["latest"]["label"] == "t" and summary["latest"]["timestamp"] is None
    cp = next(e for e in events if e.get("event") == "checkpoint" and e.get("label") == "t")
    assert cp["registry_match"] is False and "timestamp" in {w["field"] for w in cp["warnings"]}
    human = run("watch", "--once", root=small_ws.root)
    assert human.returncode == 1 and b"Traceback" not in human.stderr, human.stderr.decode(errors="replace")
    assert b"latest          t (line" in human.stdout


def test_watch_once_and_report_over_every_hostile_line(small_ws):
    stored, live = small_ws.incident.stored_digest, small_ws.incident.live_digest
    first = feed_lines(small_ws.feed) + 1
    with small_ws.feed.open("ab") as handle:
        for i, (raw, _, _) in enumerate(hostile_lines(stored)):
            handle.write(checkpoint_line(3000 + i, stored) + b"\n" + raw + b"\n")
        handle.write(checkpoint_line(5000, live) + b"\n")
    result = run("watch", "--once", "--json", root=small_ws.root)
    assert result.returncode == 1 and b"Traceback" not in result.stderr, result.stderr.decode(errors="replace")
    events = events_of(result.stdout)
    assert not [e for e in events if e.get("event") == "ingest_error" and e["line"] >= first]
    compared = [e for e in events if e.get("event") == "checkpoint" and e["line"] >= first]
    assert len(compared) == 2 * len(hostile_lines(stored)) + 1
    summary = events[-1]
    assert summary["status"] == "DRIFT" and summary["latest"]["label"] == "checkpoint-5000"
    for args in (("report", "--json"), ("report", "--json", "--no-index"), ("report", "--incident", "all")):
        report = run(*args, root=small_ws.root)
        err = report.stderr.decode(errors="replace")
        assert report.returncode in (0, 1) and "Traceback" not in err, (args, err[-3000:])
        if "--json" in args:
            assert strict_json(report.stdout)["incidents"]


@pytest.mark.parametrize("ts", ["0", "-0"])
def test_the_stale_alert_gives_the_real_age_of_a_checkpoint_at_the_epoch(small_ws, ts):
    with small_ws.feed.open("ab") as handle:
        handle.write(f'{{"label":"epoch","registry_digest":"{E}","timestamp":{ts}}}\n'.encode())
    before = time.time()
    result = run("watch", "--once", "--json", root=small_ws.root)
    assert result.returncode == 1, result.stderr.decode(errors="replace")
    stale = [e for e in events_of(result.stdout) if e.get("event") == "alert" and e["code"] == "stale_digest"
             and e["status"] == "firing"]
    assert stale, "no stale_digest alert"
    summary = stale[-1]["summary"]
    assert summary.startswith(f"latest checkpoint is {format_age(before)[:5]}"), summary  # ~20,000 days
    assert " 0s old" not in summary


def test_the_fleet_view_shows_an_unshowable_scraped_time_as_unknown():
    from polylog_console.ui.fleet.app import _clock_text

    now = time.time()
    assert _clock_text(1e300, now) == "?" and _clock_text(-1e18, now) == "?"
    assert _clock_text(now - 5, now).endswith("(5s)")
