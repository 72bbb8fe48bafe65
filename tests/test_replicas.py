"""Replica parity (runbook step 5) against real HTTP servers on 127.0.0.1 and real files."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from polylog_console.core.model.config import ReplicaConfig, load_config
from polylog_console.core.model.errors import RegistryError
from polylog_console.core.model.progress import Cancelled, Progress
from polylog_console.core.model.workspace import Workspace
from polylog_console.core.registry.diff import diff_states
from polylog_console.core.registry.digest import digest
from polylog_console.core.runbook.replicas import check_replicas_sync, display_url
from tests.replica_server import ReplicaServer, free_port


@pytest.fixture
def ws(small_ws):
    return Workspace.open(small_ws.root)


@pytest.fixture
def server(small_ws):
    inc = small_ws.incident
    docs = {
        "ok": {"digest": inc.stored_digest, "generated_at": "2025-11-09T13:53:20Z"},
        "ok_state": {"digest": inc.stored_digest, "state": inc.stored_state, "label": "replica-state"},
        "drifted": {"digest": inc.live_digest, "state": inc.live_state, "generated_at": "2025-11-09T18:00:00Z"},
        "inconsistent": {"digest": inc.stored_digest, "state": inc.live_state},
        "nodigest": {"generated_at": "2025-11-09T13:53:20Z"},
        "baddigest": {"digest": "not-a-digest\x1b[31m"},
        "numdigest": {"digest": 42},
        "array": [inc.stored_digest],
        "canonical": {"digest": digest(inc.stored_state, "canonical")},
    }
    with ReplicaServer(docs) as srv:
        yield srv


def config_with(ws: Workspace, *replicas: ReplicaConfig):
    return replace(load_config(ws.root), replicas=tuple(replicas))


def http(name: str, url: str, timeout: float = 3.0, retries: int = 2) -> ReplicaConfig:
    return ReplicaConfig(name, url=url, timeout=timeout, retries=retries)


def check(ws: Workspace, *replicas: ReplicaConfig):
    report = check_replicas_sync(ws, config_with(ws, *replicas))
    return report, {r.name: r for r in report.replicas}


# --- HTTP ----------------------------------------------------------------------------------------

def test_http_match_and_slow_within_timeout(ws, server, small_ws):
    report, by = check(ws, http("fast", server.url("ok")), http("slow", server.url("slow", delay=0.4)))
    assert report.ok
    assert report.stored_digest == small_ws.incident.stored_digest
    for name in ("fast", "slow"):
        r = by[name]
        assert (r.match, r.status, r.error, r.kind, r.attempts) == (True, "match", None, "http", 1)
        assert r.digest == small_ws.incident.stored_digest
        assert r.generated_at == "2025-11-09T13:53:20Z"
    assert by["slow"].latency_ms >= 400  # the server's delay is measured


def test_served_state_matching_is_verified(ws, server):
    _, by = check(ws, http("s", server.url("ok", doc="ok_state")))
    r = by["s"]
    assert (r.match, r.state_served, r.state_consistent, r.diff, r.label) == (True, True, True, None, "replica-state")


def test_hanging_replica_is_bounded_by_its_timeout_and_does_not_delay_others(ws, server):
    timeout = 1.0
    started = time.monotonic()
    # retries=3: without a budget covering the retries, the hang alone would take 4 x 1 s.
    report, by = check(ws, http("hang", server.url("hang"), timeout=timeout, retries=3),
                       http("ok", server.url("ok")), http("slow", server.url("slow", delay=0.2)))
    elapsed = time.monotonic() - started
    assert elapsed < timeout + 1.5
    hang = by["hang"]
    assert hang.match is None and hang.status == "unreachable"
    assert hang.error == "no complete response within 1 s"
    assert hang.attempts == 1
    assert by["ok"].match is True and by["slow"].match is True
    assert by["ok"].latency_ms < timeout * 1000  # answered while the other one hung
    assert not report.ok


def test_trickling_server_is_cut_by_the_hard_deadline(ws, server):
    # One byte every 0.3 s keeps httpx's per-read timeout happy forever; the budget must still hold.
    started = time.monotonic()
    _, by = check(ws, http("drip", server.url("drip", interval=0.3), timeout=1.0, retries=0))
    assert time.monotonic() - started < 2.5
    assert by["drip"].match is None
    assert "no complete response within 1 s" in by["drip"].error


def test_500_then_200_is_retried(ws, server):
    url = server.url("flaky", key="a", fail=1)
    _, by = check(ws, http("flaky", url, retries=2))
    r = by["flaky"]
    assert (r.match, r.attempts, r.error) == (True, 2, None)
    assert server.hits["/flaky/a"] == 2


def test_persistent_500_gives_up_after_the_retries(ws, server):
    _, by = check(ws, http("broken", server.url("status", code=500), retries=2))
    r = by["broken"]
    assert r.match is None and r.status == "error" and r.reachable
    assert r.error == "HTTP 500 Internal Server Error (after 3 attempts)"
    assert server.hits["/status"] == 3


def test_4xx_is_not_retried(ws, server):
    _, by = check(ws, http("missing", server.url("status", code=404), retries=3))
    r = by["missing"]
    assert (r.match, r.attempts, r.error) == (None, 1, "HTTP 404 Not Found")
    assert server.hits["/status"] == 1


def test_garbage_is_a_clear_error(ws, server):
    _, by = check(ws, http("garbage", server.url("garbage")))
    r = by["garbage"]
    assert r.match is None and r.status == "error"
    assert r.error.startswith("not JSON (")
    assert "\n" not in r.error


def test_closed_connection_is_retried_then_reported(ws, server):
    _, by = check(ws, http("close", server.url("close"), retries=1))
    r = by["close"]
    assert r.match is None and r.status == "unreachable"
    assert r.error == "connection closed without a complete response (after 2 attempts)"
    assert server.hits["/close"] == 2


def test_unreachable_port_is_never_a_match(ws):
    port = free_port()
    _, by = check(ws, http("down", f"http://127.0.0.1:{port}/registry", retries=1))
    r = by["down"]
    assert r.match is None and r.status == "unreachable" and r.digest is None and r.latency_ms is None
    assert "refused" in r.error.lower()
    assert r.to_json()["match"] is None


@pytest.mark.parametrize(("doc", "message"), [
    ("nodigest", "no digest in the response"),
    ("numdigest", "digest is integer, expected a string"),
    ("array", "expected a JSON object, got array"),
])
def test_malformed_documents(ws, server, doc, message):
    _, by = check(ws, http("bad", server.url("ok", doc=doc)))
    assert by["bad"].match is None
    assert by["bad"].error == message


def test_malformed_digest_is_reported_without_control_characters_reaching_the_cli(ws, server, small_ws, cli):
    _, by = check(ws, http("bad", server.url("ok", doc="baddigest")))
    assert by["bad"].match is None and "is not a SHA-256 hex digest" in by["bad"].error
    (small_ws.root / "monitoring.toml").write_text(
        f'[[replicas]]\nname = "bad"\nurl = "{server.url("ok", doc="baddigest")}"\n')
    result = cli("replicas", "--workspace", str(small_ws.root))
    assert result.code == 1
    assert "\x1b" not in result.out and "\\x1b" in result.out


def test_drifted_replica_with_state_localises_the_drift(ws, server, small_ws):
    inc = small_ws.incident
    report, by = check(ws, http("eu", server.url("ok")), http("us", server.url("ok", doc="drifted")))
    r = by["us"]
    assert (r.match, r.status, r.state_served, r.state_consistent) == (False, "drift", True, True)
    expected = diff_states(inc.stored_state, inc.live_state)
    assert r.diff.per_namespace() == expected.per_namespace()
    # The sample incident: 3 dropped symbols, 40 added, 5 corrected + 4 changed.
    assert (r.diff.missing, r.diff.unexpected, r.diff.mismatched) == (3, 40, 9)
    doc = report.to_json()
    assert doc["ok"] is False
    us = next(x for x in doc["replicas"] if x["name"] == "us")
    assert {"name", "digest", "match", "latency_ms", "error"} <= set(us)
    assert us["diff"]["per_namespace"] == expected.per_namespace()
    assert sum(c["unexpected"] for c in us["diff"]["per_namespace"].values()) == 40
    json.dumps(doc)  # serialisable


def test_state_that_does_not_digest_to_the_claimed_digest_is_reported(ws, server):
    _, by = check(ws, http("liar", server.url("ok", doc="inconsistent")))
    r = by["liar"]
    assert (r.match, r.status, r.state_consistent) == (False, "inconsistent", False)
    assert "not to the claimed digest" in r.error
    assert r.diff is not None and not r.diff.empty


def test_digest_under_the_other_scheme_is_a_scheme_mismatch(ws, server):
    _, by = check(ws, http("canon", server.url("ok", doc="canonical")))
    r = by["canon"]
    assert (r.match, r.scheme_mismatch, r.status) == (False, True, "scheme mismatch")


def test_credentials_in_urls_are_masked(ws):
    shown = display_url("http://ops:hunter22@127.0.0.1:9/registry?token=abc123&region=eu")
    assert "hunter22" not in shown and "abc123" not in shown
    assert shown.startswith("http://ops:***@127.0.0.1:9/registry?") and "region=eu" in shown
    port = free_port()
    _, by = check(ws, http("creds", f"http://ops:hunter22@127.0.0.1:{port}/x?token=abc123", retries=0))
    text = json.dumps(by["creds"].to_json())
    assert "hunter22" not in text and "abc123" not in text


def test_cancel_stops_the_check_without_waiting_for_a_hanging_replica(ws, server):
    first = threading.Event()

    def on_update(update):
        if update.done >= 1:  # the first replica answered: the operator presses Escape
            first.set()
            progress.cancel()

    progress = Progress(on_update, min_interval=0)
    config = config_with(ws, http("ok", server.url("ok")), http("hang", server.url("hang"), timeout=10))
    started = time.monotonic()
    with pytest.raises(Cancelled):
        check_replicas_sync(ws, config, progress=progress)
    assert first.is_set()
    assert time.monotonic() - started < 5  # far below the hanging replica's 10 s


# --- files ---------------------------------------------------------------------------------------

def test_sample_file_replicas(sample_ws):
    ws = Workspace.open(sample_ws.root)
    report = check_replicas_sync(ws, load_config(ws.root))
    by = {r.name: r for r in report.replicas}
    assert by["replica-eu"].match is True and by["replica-eu"].kind == "file"
    assert by["replica-eu"].location == "memory/replicas/replica-eu.json"
    us = by["replica-us"]
    assert us.match is False and us.status == "drift"
    assert (us.diff.missing, us.diff.unexpected, us.diff.mismatched) == (3, 40, 9)
    assert not report.ok


def _file(name: str, path: str) -> ReplicaConfig:
    return ReplicaConfig(name, path=Path(path))


def test_file_replica_problems(ws, small_ws, tmp_path):
    root = small_ws.root
    (root / "memory" / "replicas" / "garbage.json").write_bytes(b"\xff\xfe not json")
    (root / "memory" / "replicas" / "bare.json").write_text(json.dumps(small_ws.incident.stored_state))
    (root / "memory" / "replicas" / "empty.json").write_text("{}")
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps({"digest": small_ws.incident.stored_digest}))
    _, by = check(ws,
                  _file("missing", str(root / "memory/replicas/nope.json")),
                  _file("garbage", str(root / "memory/replicas/garbage.json")),
                  _file("bare", str(root / "memory/replicas/bare.json")),
                  _file("empty", str(root / "memory/replicas/empty.json")),
                  _file("outside", str(outside)))
    assert by["missing"].match is None and by["missing"].status == "unreachable"
    assert by["missing"].error == "file not found: memory/replicas/nope.json"
    assert by["garbage"].match is None and by["garbage"].error.startswith("not JSON (")
    assert by["bare"].match is True and by["bare"].digest == small_ws.incident.stored_digest
    assert by["empty"].match is None and by["empty"].error == "neither digest nor state in the file"
    assert by["outside"].match is None and "outside the workspace" in by["outside"].error


def test_unreadable_stored_registry_raises(ws, small_ws):
    small_ws.registry.write_text("{ broken")
    with pytest.raises(RegistryError):
        check_replicas_sync(ws, config_with(ws, _file("x", str(small_ws.root / "memory/replicas/replica-eu.json"))))


# --- command line ---------------------------------------------------------------------------------

def test_cli_json_and_exit_codes(sample_ws, cli):
    root = str(sample_ws.root)
    result = cli("replicas", "--json", "--workspace", root)
    assert result.code == 1, result.err
    doc = json.loads(result.out)
    assert doc["stored_digest"] == sample_ws.incident.stored_digest
    assert [(r["name"], r["match"]) for r in doc["replicas"]] == [("replica-eu", True), ("replica-us", False)]
    for r in doc["replicas"]:
        assert {"name", "digest", "match", "latency_ms", "error"} <= set(r)

    (sample_ws.root / "only-eu.toml").write_text(
        '[[replicas]]\nname = "replica-eu"\npath = "memory/replicas/replica-eu.json"\n')
    result = cli("replicas", "--workspace", root, "--config", str(sample_ws.root / "only-eu.toml"))
    assert result.code == 0, result.err
    assert "replica-eu" in result.out and "parity ok" in result.out

    events = [json.loads(line) for line in (sample_ws.root / "memory/audit/events.jsonl").read_text().splitlines()]
    finished = [e for e in events if e["event"] == "action_finished" and e["action"] == "replicas"]
    assert [e["outcome"] for e in finished] == ["problem", "ok"]
    assert finished[0]["replicas"] == {"replica-eu": "match", "replica-us": "drift"}


def test_cli_human_output_shows_the_drift(sample_ws, cli):
    result = cli("replicas", "--workspace", str(sample_ws.root))
    assert result.code == 1
    assert "replica-us" in result.out and "DRIFT" in result.out
    assert "diff: missing 3, unexpected 40, mismatched 9" in result.out
    assert "parity FAILED: 1 of 2 replicas match" in result.out


def test_cli_errors_exit_2(sample_ws, cli):
    sample_ws.registry.write_text("not json")
    result = cli("replicas", "--workspace", str(sample_ws.root))
    assert result.code == 2
    assert result.err.startswith("polylog-console: error: ") and result.err.count("\n") == 1
    (sample_ws.root / "monitoring.toml").write_text('[[replicas]]\nname = "x"\n')
    result = cli("replicas", "--workspace", str(sample_ws.root))
    assert result.code == 2 and "needs exactly one of url or path" in result.err
