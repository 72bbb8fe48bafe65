"""The escalation bundle (SPEC §9, runbook §6): contents, untrusted input, secrets, the CLI."""

from __future__ import annotations

import json
import re
import time
from dataclasses import replace

import orjson
import pytest
from markdown_it import MarkdownIt

from polylog_console.core.feed.records import read_records
from polylog_console.core.infra.audit import AuditLog
from polylog_console.core.model.config import load_config
from polylog_console.core.model.progress import Cancelled, Progress
from polylog_console.core.model.workspace import Workspace
from polylog_console.core.monitor.rules import Monitor
from polylog_console.core.registry.stored import StoredRegistry
from polylog_console.core.runbook.bundle import FEED_ENTRIES, LINE_LIMIT, build_bundle, write_bundle
from polylog_console.core.runbook.replicas import ParityReport, ReplicaResult
from polylog_console.core.runbook.validate import validate_file

SECTIONS = [
    "Status", "Digests", "Diff summary", "Incident timeline so far", "Replica parity",
    "Catalog metadata (`catalogs/metadata.json`)",
    "Schema validation", f"Feed: last {FEED_ENTRIES} entries", "Recent audit events",
]
# Anything a terminal or viewer would act on: C0 (but newline), DEL, C1, bidi/invisible format characters.
CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def parse(markdown: str) -> list:
    return MarkdownIt("commonmark").enable("table").parse(markdown)


def headings(markdown: str) -> list[str]:
    tokens = parse(markdown)
    return [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open" and t.tag == "h2"]


def fences(markdown: str) -> dict[str, str]:
    """Section title -> content of the first fenced block under it."""
    out: dict[str, str] = {}
    current = None
    tokens = parse(markdown)
    for i, t in enumerate(tokens):
        if t.type == "heading_open" and t.tag == "h2":
            current = tokens[i + 1].content
        elif t.type == "fence" and current is not None and current not in out:
            out[current] = t.content
    return out


def feed_lines(path) -> list[bytes]:
    return [ln for ln in path.read_bytes().split(b"\n")[:-1] if ln.strip()]


@pytest.fixture
def ws(sample_ws):
    return Workspace.open(sample_ws.root)


def test_bundle_holds_every_section(ws, sample_ws):
    config = load_config(ws.root)
    AuditLog(ws.audit).append("alert_raised", code="registry_mismatch", summary="drift seen")
    bundle = write_bundle(ws, config)
    assert bundle.path.parent == ws.escalations
    assert re.fullmatch(r"escalation-\d{8}T\d{6}Z\.md", bundle.path.name)
    text = bundle.path.read_text(encoding="utf-8")
    assert text == bundle.markdown
    assert bundle.to_json() == {"path": str(bundle.path), "size": len(text.encode())}
    assert headings(text) == SECTIONS

    inc = sample_ws.incident
    assert inc.stored_digest in text and inc.live_digest in text
    assert "**DRIFT**" in text
    assert "**missing 3, unexpected 40, mismatched 9**" in text
    assert "30 consecutive checkpoints mismatch" in text  # escalation criterion (checkpoints 171-200)
    assert re.search(r"`replica-eu` \| file \| \*\*match\*\*", text)
    assert re.search(r"`replica-us` \| file \| \*\*drift\*\*", text)
    blocks = fences(text)
    metadata = json.loads(ws.metadata.read_text())
    assert json.loads(blocks["Catalog metadata (`catalogs/metadata.json`)"]) == metadata
    assert "**INCONSISTENT**" in text  # the sample's source changed after the last hydration
    assert blocks["Schema validation"].rstrip("\n") == validate_file(ws.source).render_text()
    audit = [json.loads(line) for line in blocks["Recent audit events"].splitlines()]
    assert audit[-1]["event"] == "alert_raised" and audit[-1]["summary"] == "drift seen"


def test_feed_section_is_the_last_20_entries_verbatim(ws, sample_ws):
    text = build_bundle(ws, load_config(ws.root))
    shown = fences(text)[f"Feed: last {FEED_ENTRIES} entries"].splitlines()
    expected = feed_lines(sample_ws.feed)[-FEED_ENTRIES:]
    assert len(shown) == FEED_ENTRIES
    for got, raw in zip(shown, expected, strict=True):
        if len(raw) <= LINE_LIMIT:
            assert got == raw.decode("utf-8")
        else:  # the last checkpoint carries the whole live state inline
            prefix = got.split(" …[line cut: ")[0]
            assert raw.decode("utf-8").startswith(prefix) and len(prefix.encode()) >= LINE_LIMIT - 3
            assert got.endswith(" more bytes]")


def test_incomplete_last_line_is_left_out(ws, sample_ws):
    with open(sample_ws.feed, "ab") as handle:
        handle.write(b'{"label": "checkpoint-0201", "registry_dig')
    text = build_bundle(ws, load_config(ws.root))
    shown = fences(text)[f"Feed: last {FEED_ENTRIES} entries"]
    assert "checkpoint-0201" not in shown
    assert "An incomplete last line (42 bytes, still being written) is not shown." in text


def test_malicious_feed_lines_cannot_break_out_or_inject_escapes(ws, sample_ws):
    evil = [
        b"```",
        b"## Injected heading",
        b"`````````` <script>alert(1)</script>",
        b'{"label": "\x1b]52;c;ZXZpbA==\x07\x1b[2J\x1b[31mred", "registry_digest": "' + b"a" * 64 + b'"}',
        b'{"note": "carriage\rreturn \xe2\x80\xae reversed \xc2\x9b31m c1 \x00 nul \xff\xfe bad utf8"}',
        b"~~~",
        b"</pre></code>",
    ]
    with open(sample_ws.feed, "ab") as handle:
        handle.write(b"\n".join(evil) + b"\n")
    AuditLog(ws.audit).append("action_finished", action="x", message="```\n## Audit injection \x1b[2J")
    text = write_bundle(ws, load_config(ws.root)).path.read_text(encoding="utf-8")
    assert headings(text) == SECTIONS  # nothing escaped its fence
    assert not CONTROL.search(text)
    shown = fences(text)[f"Feed: last {FEED_ENTRIES} entries"].splitlines()
    assert shown[-7:-4] == ["```", "## Injected heading", "`````````` <script>alert(1)</script>"]
    assert "\\x1b]52;c;ZXZpbA==\\x07\\x1b[2J" in shown[-4]
    assert "carriage\\x0dreturn \\u202e reversed \\x9b31m c1 \\x00 nul \\xff\\xfe bad utf8" in shown[-3]
    tokens = parse(text)
    assert not any(t.type == "html_block" for t in tokens)
    assert "Audit injection" in fences(text)["Recent audit events"]


def test_secrets_never_appear(sample_ws, cli):
    root = sample_ws.root
    password = "smtp-pa55word-XYZ"
    secret = "whsec-0123456789abcdef"
    (root / "smtp.pass").write_text(password + "\n")
    config = (root / "monitoring.toml").read_text()
    config += ('\n[webhook]\nurl = "http://127.0.0.1:9/hook"\n'
               '\n[email]\nhost = "127.0.0.1"\npassword_file = "smtp.pass"\n')
    (root / "monitoring.toml").write_text(config)
    # The untrusted inputs carry the values too: a feed entry and an audit event under harmless keys.
    with open(sample_ws.feed, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"kind": "note", "text": f"leaked {secret} and {password}"}) + "\n")
    AuditLog(root / "memory/audit/events.jsonl").append("note", text=f"{secret} / {password}")
    result = cli("bundle", "--json", "--workspace", str(root), env={"POLYLOG_WEBHOOK_SECRET": secret})
    assert result.code == 0, result.err
    with open(json.loads(result.out)["path"], encoding="utf-8") as handle:
        text = handle.read()
    assert "leaked *** and ***" in text
    assert secret not in text and password not in text
    assert secret not in result.out + result.err and password not in result.out + result.err
    logged = (root / "memory/audit/events.jsonl").read_text().splitlines()
    by_bundle = logged[[i for i, line in enumerate(logged) if '"event":"note"' in line][-1] + 1:]
    assert len(by_bundle) == 2  # action_started, action_finished: neither holds a secret
    assert not any(secret in line or password in line for line in by_bundle)


def test_unreadable_stored_registry_still_gives_a_bundle(ws, sample_ws):
    sample_ws.registry.write_text("{ not json")
    bundle = write_bundle(ws, load_config(ws.root))
    text = bundle.markdown
    assert headings(text) == SECTIONS
    assert text.count("_Unavailable:_") >= 2  # digests and replica parity say why
    assert "not valid JSON" in text
    assert "the stored registry cannot be read (`registry_provider_error`)" in text
    assert len(fences(text)[f"Feed: last {FEED_ENTRIES} entries"].splitlines()) == FEED_ENTRIES


def test_given_parity_and_monitor_view_are_used(ws, sample_ws):
    config = load_config(ws.root)
    monitor = Monitor(StoredRegistry.for_workspace(ws), config.monitor, ws)
    for batch in read_records(sample_ws.feed):
        monitor.process(batch, emit_checkpoints=False, now=1762712000.0)
    view = monitor.snapshot(1762712000.0)
    given = ParityReport(sample_ws.incident.stored_digest, "engine", [
        ReplicaResult("replica-from-console", "http", None, None, None, "HTTP 503 Service Unavailable",
                      time.time(), location="http://127.0.0.1:1/", reachable=True)])
    text = build_bundle(ws, replace(config, replicas=()), parity=given, monitor_view=view)
    assert "`replica-from-console` | http | **error**" in text
    assert "HTTP 503 Service Unavailable" in text and "replica-eu" not in text.split("## Replica parity")[1][:600]
    assert "| status since | `2025-11-09T18:13:20.000Z` |" in text  # the console's observation time


def test_two_bundles_in_one_second_get_distinct_names(ws):
    config = load_config(ws.root)
    first = write_bundle(ws, config, now=1762700000.0)
    second = write_bundle(ws, config, now=1762700000.0)
    assert first.path.name == "escalation-20251109T145320Z.md"
    assert second.path.name == "escalation-20251109T145320Z-2.md"
    assert first.path.exists() and second.path.exists()


def test_cancel_writes_nothing(ws):
    progress = Progress()
    progress.cancel()
    with pytest.raises(Cancelled):
        write_bundle(ws, load_config(ws.root), progress=progress)
    assert not ws.escalations.exists() or not list(ws.escalations.iterdir())


# --- command line ---------------------------------------------------------------------------------

def test_cli_bundle_json_and_audit(sample_ws, cli):
    result = cli("bundle", "--json", "--workspace", str(sample_ws.root))
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    path = doc["path"]
    assert doc["relative_path"].startswith("memory/escalations/escalation-")
    with open(path, encoding="utf-8") as handle:
        assert handle.read().startswith("# Escalation bundle")
    raw = (sample_ws.root / "memory/audit/events.jsonl").read_bytes()
    events = [orjson.loads(line) for line in raw.splitlines()]
    assert [e["event"] for e in events if e.get("action") == "bundle"] == ["action_started", "action_finished"]
    assert events[-1]["path"] == doc["relative_path"] and events[-1]["outcome"] == "ok"


def test_cli_copy_without_clipboard_says_so(sample_ws, cli):
    env = {"DISPLAY": "", "WAYLAND_DISPLAY": ""}
    result = cli("bundle", "--copy", "--workspace", str(sample_ws.root), env=env)
    assert result.code == 0, result.err
    assert "escalation bundle written: " in result.out
    assert "clipboard: no local clipboard on this machine" in result.out
    result = cli("bundle", "--copy", "--json", "--workspace", str(sample_ws.root), env=env)
    doc = json.loads(result.out)
    assert doc["copied"] is False and doc["clipboard"][0].startswith("no local clipboard")


def test_cli_unwritable_escalations_exit_2(sample_ws, cli):
    (sample_ws.root / "memory" / "escalations").write_text("a file where the directory should be")
    result = cli("bundle", "--workspace", str(sample_ws.root))
    assert result.code == 2
    assert result.err.startswith("polylog-console: error: cannot write the escalation bundle: ")
    assert result.err.count("\n") == 1
    events = (sample_ws.root / "memory/audit/events.jsonl").read_text()
    assert '"event":"action_failed","actor"' in events.replace(" ", "")


def test_cli_copy_on_a_terminal_sends_osc52(sample_ws):
    """Over SSH there is no local clipboard: with stdout on a (real pseudo-)terminal the bundle goes
    to the operator's terminal clipboard as OSC 52."""
    import os
    import subprocess
    import sys

    from polylog_console.core.infra.clipboard import osc52_sequence

    master, slave = os.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "TMUX")}
    proc = subprocess.Popen([sys.executable, "-m", "polylog_console", "bundle", "--copy", "--workspace",
                             str(sample_ws.root)], stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE,
                            env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    output = b"".join(chunks).decode("utf-8")
    path = next((sample_ws.root / "memory" / "escalations").iterdir())
    assert osc52_sequence(path.read_text(encoding="utf-8"), tmux=False) in output
    assert "clipboard: no local clipboard on this machine" in output
    assert "clipboard: sent " in output and "to the terminal's clipboard (OSC 52)" in output


@pytest.mark.parametrize("lines", [
    [],
    [b"only one"],
    [b"a", b"", b"b", b"   ", b"c"],  # blank lines are not entries
    [b"x" * 100_000 + str(i).encode() for i in range(25)],  # lines longer than the first read block
    [f"line {i}".encode() for i in range(5000)],
])
def test_tail_lines_matches_a_full_read(tmp_path, lines):
    from polylog_console.core.runbook.bundle import tail_lines

    path = tmp_path / "feed.jsonl"
    data = b"".join(line + b"\n" for line in lines)
    path.write_bytes(data + b'{"partial')
    tail = tail_lines(path, FEED_ENTRIES, block=4096)
    assert tail.lines == [ln for ln in lines if ln.strip()][-FEED_ENTRIES:]
    assert tail.partial == len(b'{"partial') and tail.size == len(data) + tail.partial
    if tail.lines:
        assert data[tail.start:].startswith(tail.lines[0] + b"\n")
