"""Hostile replicas (issue 10, items 3 and 11) against real HTTP servers on 127.0.0.1: a redirect
loop, a body nested too deep to digest, FIFOs and devices as file replicas, and several big bodies
at once, whose total held in memory is bounded by one shared budget."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import pytest

from polylog_console.core.model.config import ReplicaConfig, load_config
from polylog_console.core.model.workspace import Workspace
from polylog_console.core.runbook import replicas as replicas_module
from polylog_console.core.runbook.replicas import check_replicas_sync
from tests.conftest import run_cli
from tests.replica_server import ReplicaServer

MB = 1024 * 1024


@pytest.fixture
def ws(small_ws):
    return Workspace.open(small_ws.root)


@pytest.fixture
def server(small_ws):
    inc = small_ws.incident
    # Nested within orjson's depth limit, beyond what the digest's serialiser can recurse into.
    deep = b'{"state":{"clusters":{"a":' + b"[" * 1020 + b'"x"' + b"]" * 1020 + b"}}}"
    docs = {"ok": {"digest": inc.stored_digest}, "deep": deep}
    with ReplicaServer(docs) as srv:
        yield srv


def check(ws: Workspace, *replicas: ReplicaConfig):
    report = check_replicas_sync(ws, replace(load_config(ws.root), replicas=tuple(replicas)))
    return report, {r.name: r for r in report.replicas}


def write_config(small_ws, replicas: list[tuple[str, str, str]]) -> None:
    toml = "".join(f'[[replicas]]\nname = "{name}"\n{key} = "{value}"\ntimeout = 5\nretries = 0\n\n'
                   for name, key, value in replicas)
    (small_ws.root / "monitoring.toml").write_text(toml)


# --- item 3: a redirect loop, and any other surprise, stays that replica's own error ---------------

def test_replicas_json_reports_every_replica_when_one_redirects_to_itself(small_ws, server):
    write_config(small_ws, [("good", "url", server.url("ok")), ("loop", "url", server.url("loop")),
                            ("file", "path", "memory/replicas/replica-eu.json")])
    result = run_cli("replicas", "--json", "-w", str(small_ws.root), timeout=60)
    assert result.code == 1, result.err
    assert "Traceback" not in result.err
    report = json.loads(result.out)
    by = {r["name"]: r for r in report["replicas"]}
    assert set(by) == {"good", "loop", "file"}
    assert by["good"]["match"] is True
    assert by["loop"]["match"] is None and by["loop"]["status"] == "error"
    assert "too many redirects" in by["loop"]["error"]
    assert by["file"]["error"] is None


def test_a_redirect_loop_is_not_retried(ws, server):
    _, by = check(ws, ReplicaConfig("loop", url=server.url("loop"), timeout=5, retries=3))
    assert by["loop"].attempts == 1
    assert by["loop"].error.startswith("too many redirects")
    assert server.hits["/loop"] == replicas_module.MAX_REDIRECTS + 1


def test_a_state_too_deep_to_digest_is_that_replicas_error(ws, server):
    report, by = check(ws, ReplicaConfig("deep", url=server.url("ok", doc="deep"), timeout=5, retries=0),
                       ReplicaConfig("good", url=server.url("ok"), timeout=5, retries=0))
    assert by["deep"].match is None and "nested too deeply" in by["deep"].error
    assert by["good"].match is True
    assert not report.ok


def test_an_unexpected_exception_in_one_check_keeps_the_others(ws, server, monkeypatch):
    """Whatever one replica's check raises becomes its error line; the others are still reported."""
    real = replicas_module.analyse

    def exploding(raw, stored, scheme, *, kind):
        if b"boom" in raw:
            raise KeyError("boom")
        return real(raw, stored, scheme, kind=kind)

    monkeypatch.setattr(replicas_module, "analyse", exploding)
    server.add_document("boom", {"digest": "0" * 64, "boom": 1})
    _, by = check(ws, ReplicaConfig("boom", url=server.url("ok", doc="boom"), timeout=5, retries=0),
                  ReplicaConfig("good", url=server.url("ok"), timeout=5, retries=0))
    assert by["boom"].match is None and by["boom"].error == "check failed: KeyError: 'boom'"
    assert by["good"].match is True


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_file_replicas_that_are_not_regular_files_are_refused_without_blocking(ws, small_ws, kind):
    path = small_ws.root / "memory" / "replicas" / "odd.json"
    os.mkfifo(path) if kind == "fifo" else path.mkdir()
    _, by = check(ws, ReplicaConfig("odd", path=path, timeout=3), ReplicaConfig("good", url="http://127.0.0.1:9/"))
    what = "FIFO" if kind == "fifo" else "directory"
    assert by["odd"].match is None
    assert by["odd"].error == f"memory/replicas/odd.json: not a regular file ({what})"
    assert by["good"].error  # the other replica is still reported (here: refused connection)


def test_a_file_replica_linked_to_dev_zero_is_refused(ws, small_ws):
    path = small_ws.root / "memory" / "replicas" / "zero.json"
    path.symlink_to("/dev/zero")
    _, by = check(ws, ReplicaConfig("zero", path=path, timeout=3))
    assert by["zero"].match is None and "refused" in by["zero"].error


def test_a_file_replica_over_the_limit_is_refused_unread(ws, small_ws):
    path = small_ws.root / "memory" / "replicas" / "huge.json"
    with open(path, "wb") as handle:
        handle.truncate(600 * MB)  # sparse
    report, by = check(ws, ReplicaConfig("huge", path=path, timeout=3))
    assert by["huge"].error == "file larger than 512 MB, refused"
    assert report.body_peak == 0


# --- item 11: several big bodies at once ----------------------------------------------------------

def big(server, name: str, size: int, *, length: bool = False, digest: str = "0" * 64) -> ReplicaConfig:
    params = {"size": size, "digest": digest, **({"length": 1} if length else {})}
    return ReplicaConfig(name, url=server.url("big", **params), timeout=20, retries=0)


def test_bodies_over_the_limit_are_refused_and_the_total_held_is_bounded(ws, server, monkeypatch):
    monkeypatch.setattr(replicas_module, "MAX_BODY", 8 * MB)
    monkeypatch.setattr(replicas_module, "TOTAL_BODY", 8 * MB)
    report, by = check(ws, *(big(server, f"big{i}", 20 * MB) for i in range(4)),
                       ReplicaConfig("good", url=server.url("ok"), timeout=20, retries=0))
    assert by["good"].match is True
    for i in range(4):
        result = by[f"big{i}"]
        assert result.match is None
        assert result.error in ("response larger than 8 MB, refused",
                                "response refused at 8 MB: the replicas' bodies together would exceed the "
                                "8 MB held at once")
    assert 0 < report.body_peak <= 8 * MB


def test_a_declared_length_over_the_limit_is_refused_unread(ws, server, monkeypatch):
    monkeypatch.setattr(replicas_module, "MAX_BODY", 8 * MB)
    report, by = check(ws, big(server, "declared", 600 * MB, length=True))
    assert by["declared"].error == "response larger than 8 MB, refused"
    assert report.body_peak == 0


def test_big_bodies_within_the_limit_share_the_budget_and_all_get_checked(ws, server, small_ws, monkeypatch):
    """Three 5 MB replicas with an 8 MB budget: none is refused; they take turns, never holding
    more than the budget, and each one's digest is compared."""
    monkeypatch.setattr(replicas_module, "MAX_BODY", 8 * MB)
    monkeypatch.setattr(replicas_module, "TOTAL_BODY", 8 * MB)
    stored = small_ws.incident.stored_digest
    report, by = check(ws, *(big(server, f"r{i}", 5 * MB, digest=stored) for i in range(3)))
    assert [by[f"r{i}"].error for i in range(3)] == [None, None, None]
    assert all(by[f"r{i}"].match is True for i in range(3))
    assert report.ok
    assert report.body_peak <= 8 * MB


def test_the_default_limits_are_documented_figures():
    assert replicas_module.MAX_BODY == 512 * MB
    assert replicas_module.TOTAL_BODY == 512 * MB
