"""Hostile strings and numbers in the feed never crash anything, never stop the monitor, and reach
every output safely (issue 10, items 1, 7 and 10).

The feed parser decides once how such values enter (``core/feed/records.py``): lone surrogates are
kept as written (a digest holding one is compared as it is: a mismatch) with a field warning;
integers of more than 4,300 digits and values nested too deeply become ``Unreadable`` markers with
a warning, the line still a checkpoint. Each output has one sanitiser (``core/infra/text.py``):
JSON (``watch --json``, the audit log, webhook bodies) is valid UTF-8 with lone surrogates as
U+FFFD and C1/bidi characters as ``\\u`` escapes; human text (``watch``, ``digest``, email, the
bundle's Markdown) shows them as visible escapes. Real processes, a real HTTP receiver, a real
SMTP server (aiosmtpd), the console under Pilot.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from polylog_console.core.feed.records import Checkpoint, Entry, IngestError, Unreadable, parse_line, read_records
from polylog_console.core.infra.text import dumps_json, json_safe, safe_text
from polylog_console.core.model.events import dedup_key
from tests.servers import Receiver, SmtpServer, checkpoint_line, read_json_until, stop_following

# Raw UTF-8 of the characters that must never reach an output as they are: C1 CSI (U+009B),
# C1 OSC (U+009D), RIGHT-TO-LEFT OVERRIDE (U+202E), LEFT-TO-RIGHT ISOLATE (U+2066), LRM (U+200E).
RAW_UNSAFE = re.compile(rb"\xc2[\x80-\x9f]|\xe2\x80[\x8e\x8f\xaa-\xae]|\xe2\x81[\xa6-\xa9]|\xed[\xa0-\xbf]")
# The label as the feed line carries it: a lone-surrogate escape, then raw C1 and bidi characters,
# then an escaped CR LF that would start a new mail header.
HOSTILE_LABEL_JSON = b"bad\\ud800" + "\x9b\x9d\u202e\u2066".encode() + b"\\r\\nBcc: evil@example.org"
HOSTILE_LABEL = "bad\ud800\x9b\x9d\u202e\u2066\r\nBcc: evil@example.org"
SHOWN_LABEL = "bad\\ud800\\x9b\\x9d\\u202e\\u2066\\x0d\\x0aBcc: evil@example.org"  # as human text shows it
JSON_LABEL = "bad\ufffd\x9b\x9d\u202e\u2066\r\nBcc: evil@example.org"  # as a JSON consumer reads it back
BIG = "9" * 5000


def assert_clean_bytes(data: bytes, what: str) -> None:
    data.decode("utf-8")  # strict: valid UTF-8 (no encoded surrogates either)
    found = RAW_UNSAFE.search(data)
    assert found is None, f"{what}: raw {found.group()!r} at byte {found.start()}"


def hostile_lines(stored: str, live: str, now: float) -> list[bytes]:
    """Appended to a drifting sample feed: parity, then a drift whose checkpoints carry every
    hostile value, the last one with a hostile label and a digest holding a lone surrogate."""
    return [
        checkpoint_line(1001, stored, timestamp=now - 5),  # parity
        (b'{"label":"big-polygons","polygons":' + BIG.encode() + b',"registry_digest":"' + live.encode()
         + b'","timestamp":' + repr(now - 4).encode() + b"}"),
        (b'{"label":"deep","registry_snapshot":"memory/\\ud800.json","polygons":1e400,"module_refs":-'
         + BIG.encode() + b',"extra":' + b"[" * 5000
         + b"]" * 5000 + b',"registry_digest":"' + live.encode() + b'","timestamp":' + repr(now - 3).encode() + b"}"),
        b'{"kind":"note\\udc00","registry_state":{"\\udfff":{"sig\\ud801":"\\udc02"}}}',
        (b'{"label":"' + HOSTILE_LABEL_JSON + b'","registry_digest":"\\udfff' + stored[1:].encode()
         + b'","timestamp":' + repr(now - 2).encode() + b"}"),
    ]


@pytest.fixture
def hostile_ws(small_ws):
    now = time.time()
    with open(small_ws.feed, "ab") as handle:
        for line in hostile_lines(small_ws.incident.stored_digest, small_ws.incident.live_digest, now):
            handle.write(line + b"\n")
    return small_ws


# --- the one sanitiser per output kind --------------------------------------------------------

def test_dumps_json_is_always_valid_utf8_with_controls_escaped():
    value = {"label": "a\ud800b\x9b\x9d\u202e\u2066\u200e\U000e0041\x1b\x7f", "\udfffkey": 1, "big": 2**80,
             "huge": 10**400, "nan": float("nan"), 7: [Unreadable("an integer of 5,000 digits")]}
    data = dumps_json(value)
    assert_clean_bytes(data, "dumps_json")
    for escape in (b"\\u009b", b"\\u009d", b"\\u202e", b"\\u2066", b"\\u200e", b"\\udb40\\udc41", b"\\u001b",
                   b"\\u007f"):
        assert escape in data
    back = json.loads(data)
    assert back["label"] == "a\ufffdb\x9b\x9d\u202e\u2066\u200e\U000e0041\x1b\x7f"  # the same text, read back
    assert back["\ufffdkey"] == 1 and back["big"] == float(2**80) and back["huge"] is None and back["nan"] is None
    assert back["7"] == ["<an integer of 5,000 digits>"]
    assert dumps_json({"plain": "ascii ■ text"}) == '{"plain":"ascii ■ text"}'.encode()  # nothing else changes
    assert json_safe({"k\ud800": ["v\udc00"]}) == {"k\ufffd": ["v\ufffd"]}


def test_safe_text_shows_every_unsafe_character_as_an_escape_and_is_idempotent():
    shown = safe_text(HOSTILE_LABEL)
    assert shown == SHOWN_LABEL
    assert safe_text(shown) == shown
    shown.encode("utf-8")
    assert safe_text("\u200f\u2069\ufeff\U000e0020") == "\\u200f\\u2069\\ufeff\\U000e0020"


def test_dedup_key_of_a_digest_with_a_lone_surrogate():
    assert dedup_key("a" * 64, "\udfff" + "a" * 63) != dedup_key("a" * 64, "\udffe" + "a" * 63)


# --- the parser: where hostile values enter -------------------------------------------------

D = "ab" * 32


def parsed(raw: bytes):
    return parse_line(raw, 7)


def warnings_of(record) -> dict[str, str]:
    return {w.field: w.reason for w in record.warnings}


def test_lone_surrogates_anywhere_keep_a_checkpoint_with_a_warning():
    cp = parsed(b'{"label":"bad\\ud800","registry_digest":"' + D.encode() + b'"}')
    assert type(cp) is Checkpoint and cp.digest == D and cp.label == "bad\ud800"
    assert "lone surrogate (\\ud800)" in warnings_of(cp)["label"]
    bad_digest = parsed(b'{"registry_digest":"\\udfff' + D[1:].encode() + b'"}')
    assert type(bad_digest) is Checkpoint and bad_digest.digest == "\udfff" + D[1:]  # compared as written
    assert "lone surrogate" in warnings_of(bad_digest)["registry_digest"]
    state = parsed(b'{"registry_state":{"ns":{"\\udfff":"x"}},"registry_digest":"' + D.encode() + b'"}')
    assert type(state) is Checkpoint and "lone surrogate" in warnings_of(state)["registry_state"]
    envelope = parsed(b'{"checkpoint_record":{"label":"\\udc00","registry_digest":"' + D.encode()
                      + b'"},"detection_telemetry":{"k":"\\ud800"}}')
    assert type(envelope) is Checkpoint and set(warnings_of(envelope)) == {"label", "detection_telemetry"}
    entry = parsed(b'{"kind":"\\udc00x"}')
    assert type(entry) is Entry and entry.entry_kind == "\udc00x"
    assert_clean_bytes(dumps_json(cp.to_json()), "checkpoint JSON")
    assert_clean_bytes(dumps_json(entry.to_json()), "entry JSON")


@pytest.mark.parametrize("field, value, reason", [
    ("polygons", BIG, "an integer of 5,000 digits"),
    ("polygons", "-" + BIG, "an integer of 5,000 digits"),
    ("chunk_count", "1e400", "expected an integer, got number"),
    ("timestamp", "-1e400", "not a usable time"),
    ("extra", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ("extra", '{"a":' * 5000 + "1" + "}" * 5000, "nested too deeply"),
    ("registry_state", '[{"a":' * 3000 + "[]" + "}]" * 3000, "nested too deeply"),
    ("label", "[" + BIG + "]", "an integer of 5,000 digits"),
    ("registry_state", '{"clusters":{"sig":' + BIG + "}}", "an integer of 5,000 digits: the field is read as absent"),
])
def test_unusable_numbers_and_depths_in_other_fields_are_warnings(field, value, reason):
    raw = ('{"label":"x","' + field + '":' + value + ',"registry_digest":"' + D + '"}').encode()
    cp = parsed(raw)
    assert type(cp) is Checkpoint and cp.digest == D, getattr(cp, "reason", None)
    assert reason in warnings_of(cp)[field]
    assert getattr(cp, field, None) is None or field in ("extra", "label")
    assert_clean_bytes(dumps_json(cp.to_json()), "checkpoint JSON")
    inside = parsed(('{"checkpoint_record":{"' + field + '":' + value + ',"registry_digest":"' + D + '"}}').encode())
    assert type(inside) is Checkpoint and reason in warnings_of(inside)[field]


def test_invalid_json_at_any_depth_is_still_an_ingest_error():
    deep = "[" * 100_000
    for raw, reason in [
        ('{"x":' + deep + "]" * 99_999 + ',"registry_digest":"' + D + '"}', "invalid JSON"),
        ('{"x":' + deep + "}" * 100_000 + ',"registry_digest":"' + D + '"}', "invalid JSON"),
        ('{"x":' + deep, "invalid JSON"),
        ('{"registry_digest":' + deep + "]" * 100_000 + "}", "registry_digest must be a string"),
        ('{"registry_digest":' + BIG + "}", "registry_digest must be a string (got an integer of 5,000 digits)"),
        (deep + "]" * 100_000, "not a JSON object"),
    ]:
        record = parsed(raw.encode())
        assert type(record) is IngestError and reason in record.reason, (raw[:40], record)


def test_a_64_mib_deep_line_is_checked_in_bounded_time():
    n = 10_000_000
    raw = b'{"x":' + b'[{"k":' * n + b"1" + b"}]" * n + b',"registry_digest":"' + D.encode() + b'"}'
    started = time.perf_counter()
    cp = parsed(raw)
    assert type(cp) is Checkpoint and "nested too deeply" in warnings_of(cp)["x"]
    assert time.perf_counter() - started < 20  # ~1.5 s here; linear, never recursive


# --- every output, real processes ------------------------------------------------------------

def json_lines(out: bytes) -> list[dict]:
    assert_clean_bytes(out, "stdout")
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def run(*args: str, root: Path, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    full = {**os.environ, "NO_COLOR": "1", **(env or {})}
    full.pop("POLYLOG_WORKSPACE", None)
    return subprocess.run([sys.executable, "-m", "polylog_console", *args, "--workspace", str(root)],
                          capture_output=True, env=full, timeout=timeout)


def test_watch_once_json_compares_every_hostile_checkpoint(hostile_ws):
    result = run("watch", "--once", "--json", root=hostile_ws.root)
    assert result.returncode == 1, result.stderr.decode()  # DRIFT
    assert b"Traceback" not in result.stderr
    events = json_lines(result.stdout)
    cps = {e["label"]: e for e in events if e["event"] == "checkpoint"}
    big = cps["big-polygons"]
    assert big["registry_match"] is False and big["status"] == "DRIFT"
    assert any(w["field"] == "polygons" and "5,000 digits" in w["reason"] for w in big["warnings"])
    deep = cps["deep"]
    assert deep["registry_match"] is False
    assert {w["field"] for w in deep["warnings"]} >= {"polygons", "module_refs", "extra", "registry_snapshot"}
    hostile = cps[JSON_LABEL]
    assert hostile["registry_match"] is False
    assert hostile["registry_digest"] == "\ufffd" + hostile_ws.incident.stored_digest[1:]
    assert {w["field"] for w in hostile["warnings"]} >= {"label", "registry_digest"}
    assert b"\\u009b" in result.stdout and b"\\u202e" in result.stdout
    firing = [e for e in events if e["event"] == "alert" and e["code"] == "registry_mismatch"
              and e["status"] == "firing"]
    assert firing and firing[-1]["checkpoint"]["label"] == JSON_LABEL
    assert not any(e["event"] == "ingest_error" for e in events if e.get("line", 0) > 20)


def test_watch_once_human_and_digest_show_escapes(hostile_ws):
    human = run("watch", "--once", root=hostile_ws.root)
    assert human.returncode == 1, human.stderr.decode()
    assert_clean_bytes(human.stdout, "watch --once")
    assert SHOWN_LABEL.split("\\x0d")[0].encode() in human.stdout
    assert b"Traceback" not in human.stderr

    digest = run("digest", root=hostile_ws.root)
    assert digest.returncode == 1, digest.stderr.decode()  # the last checkpoint drifts
    assert_clean_bytes(digest.stdout, "digest")
    assert b"bad\\ud800\\x9b\\x9d\\u202e" in digest.stdout and b"DRIFT" in digest.stdout
    as_json = run("digest", "--json", root=hostile_ws.root)
    assert as_json.returncode == 1, as_json.stderr.decode()
    doc = json_lines(as_json.stdout)[0]
    assert doc["checkpoint"]["label"] == JSON_LABEL and doc["registry_match"] is False


def test_bundle_markdown_shows_hostile_text_as_escapes(hostile_ws):
    result = run("bundle", root=hostile_ws.root)
    assert result.returncode == 0, result.stderr.decode()
    [path] = (hostile_ws.root / "memory" / "escalations").glob("escalation-*.md")
    data = path.read_bytes()
    assert_clean_bytes(data, "bundle")
    text = data.decode()
    assert "bad\\ud800\\x9b\\x9d\\u202e" in text  # the feed excerpt and the status table
    assert "\x1b" not in text and "\r" not in text


def test_webhook_email_and_audit_receive_safe_text(hostile_ws, tmp_path):
    with Receiver() as receiver, SmtpServer(tmp_path) as smtp:
        with open(hostile_ws.root / "monitoring.toml", "a") as handle:
            handle.write(f'\n[webhook]\nurl = "{receiver.url}"\ntimeout = 5\n'
                         f'\n[email]\nhost = "127.0.0.1"\nport = {smtp.port}\ntls = "none"\nto = ["ops@example.org"]\n')
        result = run("watch", "--once", root=hostile_ws.root)
        assert result.returncode == 1, result.stderr.decode()
        assert b"Traceback" not in result.stderr
        bodies = [r.body for r in receiver.wait_for(3)]
        messages = smtp.wait_for(3)
    for body in bodies:
        assert_clean_bytes(body, "webhook body")
    hostile = [json.loads(b) for b in bodies if b"bad" in b]
    assert hostile, [json.loads(b)["checkpoint"] for b in bodies]
    assert hostile[-1]["checkpoint"]["label"] == JSON_LABEL
    assert hostile[-1]["checkpoint"]["registry_digest"].startswith("\ufffd")
    assert any(b"\\u009b" in b and b"\\u202e" in b for b in bodies)

    mails = [email.message_from_bytes(m.content, policy=email.policy.default) for m in messages]
    bad = [m for m in mails if "bad" in m.get_content()]
    assert bad
    for message in mails:
        assert message["Bcc"] is None  # the label's CR LF did not start a header
        assert "\r" not in message["Subject"] and "\n" not in message["Subject"]
        body = message.get_content()
        assert_clean_bytes(body.encode("utf-8"), "email body")
        assert_clean_bytes(str(message["Subject"]).encode("utf-8"), "email subject")
    # A notification holds JSON-safe data (the outbox stores it): the surrogate is U+FFFD by then.
    assert any("bad\ufffd\\x9b\\x9d\\u202e\\u2066\\x0d\\x0aBcc: evil@example.org" in m.get_content() for m in bad)

    audit = (hostile_ws.root / "memory" / "audit" / "events.jsonl").read_bytes()
    assert_clean_bytes(audit, "audit log")
    records = [json.loads(line) for line in audit.splitlines()]
    assert any("\\u009b" in line.decode() for line in audit.splitlines() if b"alert" in line)
    assert any(JSON_LABEL in text for r in records for text in strings(r))  # the exact text, read back


def strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def _clean_json(line: bytes) -> dict:
    assert_clean_bytes(line, "watch --json line")
    return json.loads(line)


def read_until(proc: subprocess.Popen, predicate, timeout: float) -> list[dict]:
    """JSON lines from ``proc``'s stdout until one satisfies ``predicate`` (bounded wait)."""
    return read_json_until(proc, predicate, timeout, _clean_json)


def test_watch_json_follows_through_hostile_lines_and_stops_cleanly(small_ws):
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "polylog_console", "watch", "--json", "--workspace",
                             str(small_ws.root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        read_until(proc, lambda e: e["event"] == "feed" and e["kind"] == "started", 60)
        lines = hostile_lines(small_ws.incident.stored_digest, small_ws.incident.live_digest, time.time())
        after = checkpoint_line(2000, small_ws.incident.stored_digest)
        writer = ("import sys\nwith open(sys.argv[1], 'ab') as f:\n"
                  "    for line in sys.stdin.buffer.read().split(b'\\n'):\n"
                  "        f.write(line + b'\\n'); f.flush()\n")
        subprocess.run([sys.executable, "-c", writer, str(small_ws.feed)], input=b"\n".join([*lines, after]),
                       check=True, timeout=30)
        seen = read_until(proc, lambda e: e["event"] == "checkpoint" and e["label"] == "checkpoint-2000", 60)
        labels = [e["label"] for e in seen if e["event"] == "checkpoint"]
        assert labels[-3:] == ["deep", JSON_LABEL, "checkpoint-2000"]
        assert seen[-1]["registry_match"] is True
        assert proc.poll() is None  # still following
    finally:
        code, err = stop_following(proc)
    assert code == 0, err.decode(errors="replace")
    assert b"Traceback" not in err


def test_read_records_of_hostile_lines_never_raises(hostile_ws):
    kinds = [type(r).__name__ for batch in read_records(hostile_ws.feed) for r in batch]
    assert kinds.count("Checkpoint") == 20 + 4 and "IngestError" not in kinds[20:]


async def test_console_keeps_following_after_a_hostile_line(small_ws):
    from tests.test_ui_support import append, make_app, screen_text, start, terminal_output, wait_for

    app = make_app(small_ws.root)
    async with app.run_test(size=(160, 48)) as pilot:
        await start(pilot)
        await wait_for(pilot, lambda: app.timeline is not None and len(app.timeline) >= 20, what="the history")
        lines = hostile_lines(small_ws.incident.stored_digest, small_ws.incident.live_digest, time.time())
        append(small_ws.feed, [*lines, checkpoint_line(2000, small_ws.incident.stored_digest)])
        await wait_for(pilot, lambda: "checkpoint-2000" in screen_text(app), what="the checkpoint after them")
        shown = screen_text(app)
        assert "bad\\ud800\\x9b" in shown and "big-polygons" in shown  # shown as escapes, and compared
        shown.encode("utf-8")
        assert not RAW_UNSAFE.search(terminal_output(app).encode("utf-8", "surrogatepass"))


def test_console_text_helpers_escape_lone_surrogates_c1_and_bidi():
    from polylog_console.ui.safe import clean, fit, literal

    for value in (HOSTILE_LABEL, "\udfff" * 3):
        for text in (literal(value).plain, fit(value, 12), clean(value)):
            text.encode("utf-8")
            assert not RAW_UNSAFE.search(text.encode("utf-8")) and "\r" not in text
    assert literal(HOSTILE_LABEL).plain == SHOWN_LABEL


def test_command_output_lines_are_guarded_whatever_the_caller_passed(capsys):
    from polylog_console.cli.common import say

    say("label\tbad\ud800\x9b\u202e\x1b[2J\r\nnext line")  # tab and newline are the caller's layout
    out = capsys.readouterr().out
    assert out == "label\tbad\\ud800\\x9b\\u202e\\x1b[2J\\x0d\nnext line\n"
    say(out)  # already safe: unchanged
    assert capsys.readouterr().out == out + "\n"
