"""Symlink loops and symlinks leading outside the workspace (review of issue 10, items 2 and 10).

Every workspace path (stored registry, metadata, source, feed, audit log, outbox, locks, atomic
writes) goes through ``check_contained``: a loop is one line ``...: symlink loop`` (exit 2, or a
provider error in a running monitor that keeps running), a link resolving outside the workspace is
refused and nothing is read from or written to the outside file. Real symlinks, real processes."""

from __future__ import annotations

import json
import os
import time

import pytest

from polylog_console.core.infra import atomic, reader
from polylog_console.core.infra.audit import AuditLog
from polylog_console.core.infra.lock import WorkspaceLock
from polylog_console.core.model.errors import PolylogError, RegistryError
from polylog_console.core.model.workspace import ContainmentError, Workspace, check_contained
from polylog_console.core.registry.stored import StoredRegistry
from polylog_console.core.runbook.catalogs import verify_catalogs
from tests.conftest import run_cli
from tests.test_hostile_files import append, checkpoints, watch  # noqa: F401 (the fixture)


def loop(path) -> None:
    """``path`` -> l2 -> ``path``: a two-link symlink loop in place of the file."""
    if path.exists() or path.is_symlink():
        path.unlink()
    other = path.with_name("l2")
    path.symlink_to("l2")
    other.symlink_to(path.name)


def one_line(result) -> str:
    assert "Traceback" not in result.err, result.err
    lines = [line for line in result.err.strip().splitlines() if "error:" in line]
    assert len(lines) == 1, result.err
    return lines[0]


# --- item 2: symlink loops ---------------------------------------------------------------------

@pytest.mark.parametrize("command", [["digest"], ["digest", "--json"], ["replicas", "--json"],
                                     ["watch", "--once"], ["watch", "--once", "--json"]])
def test_a_looped_stored_registry_is_one_line_exit_2(small_ws, command):
    loop(small_ws.registry)
    result = run_cli(*command, "-w", str(small_ws.root), timeout=60)
    assert result.code == 2, (result.out, result.err)
    assert one_line(result).endswith("catalogs/registry.json: symlink loop")


def test_bundle_with_a_looped_registry_is_written_and_says_why(small_ws):
    loop(small_ws.registry)
    result = run_cli("bundle", "-w", str(small_ws.root), timeout=60)
    assert "Traceback" not in result.err, result.err
    bundles = list((small_ws.root / "memory" / "escalations").glob("escalation-*.md"))
    assert len(bundles) == 1
    assert "symlink loop" in bundles[0].read_text()


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_a_looped_feed_is_one_line_exit_2(small_ws, json_flag):
    loop(small_ws.feed)
    result = run_cli("watch", "--once", *json_flag, "-w", str(small_ws.root), timeout=60)
    assert result.code == 2
    assert one_line(result).endswith("memory/coordination/context-brief.jsonl: symlink loop")


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_a_looped_source_is_one_line_exit_2(small_ws, json_flag):
    loop(small_ws.root / "stable_polyforms.jsonl")
    result = run_cli("validate", *json_flag, "-w", str(small_ws.root), timeout=60)
    assert result.code == 2
    assert one_line(result).endswith("stable_polyforms.jsonl: symlink loop")


def test_a_registry_looped_while_watching_is_a_provider_error_and_watch_goes_on(small_ws, watch):  # noqa: F811
    w = watch(small_ws)
    w.until(lambda e: e.get("event") == "checkpoint")
    loop(small_ws.registry)
    last = checkpoints(small_ws)[-1]
    append(small_ws, {**last, "label": "after-loop", "timestamp": time.time()})
    alert = w.until(lambda e: e.get("event") == "alert" and e.get("code") == "registry_provider_error")
    assert "catalogs/registry.json: symlink loop" in json.dumps(alert)
    append(small_ws, {**last, "label": "still-followed", "timestamp": time.time()})
    w.until(lambda e: e.get("event") == "checkpoint" and e.get("label") == "still-followed")
    code, err = w.terminate()
    assert code == 0, err


def test_relative_and_confine_never_raise_on_a_loop(tmp_path):
    ws = Workspace.open(tmp_path)
    loop(tmp_path / "x.json")
    assert ws.relative(tmp_path / "x.json") == "x.json"
    with pytest.raises(PolylogError, match="symlink loop"):
        ws.confine("x.json", what="registry_snapshot")


def test_a_looped_workspace_directory_is_one_line(tmp_path):
    loop(tmp_path / "ws")
    result = run_cli("digest", "-w", str(tmp_path / "ws"), timeout=60)
    assert result.code == 2
    assert one_line(result).endswith("symlink loop")


# --- item 10: links leading outside the workspace -------------------------------------------------

@pytest.fixture
def outside(tmp_path):
    directory = tmp_path / "outside"
    directory.mkdir()
    return directory


def link_out(path, outside, content: bytes | None = None):
    """Move (or create) ``path``'s file outside and leave a symlink to it in its place."""
    target = outside / path.name
    path.parent.mkdir(parents=True, exist_ok=True)
    if content is not None:
        target.write_bytes(content)
    elif path.exists():
        target.write_bytes(path.read_bytes())
        path.unlink()
    else:
        target.write_bytes(b"")
    path.symlink_to(target)
    return target


@pytest.mark.parametrize("command", [["digest"], ["digest", "--json"], ["replicas", "--json"], ["watch", "--once"]])
def test_a_stored_registry_linked_outside_is_refused(small_ws, outside, command):
    link_out(small_ws.registry, outside)
    result = run_cli(*command, "-w", str(small_ws.root), timeout=60)
    assert result.code == 2
    assert one_line(result).endswith("catalogs/registry.json: symbolic link leads outside the workspace, refused")


def test_a_stored_registry_linked_inside_is_still_read(small_ws):
    real = small_ws.root / "catalogs" / "registry-v2.json"
    small_ws.registry.rename(real)
    small_ws.registry.symlink_to(real.name)
    result = run_cli("digest", "--json", "-w", str(small_ws.root), timeout=60)
    assert result.code in (0, 1), result.err
    assert json.loads(result.out)["stored_digest"]


def test_metadata_and_source_linked_outside_are_problems_not_read(small_ws, outside):
    ws = Workspace.open(small_ws.root)
    link_out(ws.metadata, outside)
    check = verify_catalogs(ws.root)
    assert not check.consistent
    assert check.problems == ["catalogs/metadata.json: cannot read (symbolic link leads outside the workspace, "
                              "refused)"]
    ws.metadata.unlink()
    (outside / "metadata.json").rename(ws.metadata)
    link_out(ws.source, outside)
    check = verify_catalogs(ws.root)
    assert "stable_polyforms.jsonl: cannot read (symbolic link leads outside the workspace, refused)" in check.problems


def test_watch_never_appends_to_an_audit_log_linked_outside(small_ws, outside):
    ws = Workspace.open(small_ws.root)
    target = link_out(ws.audit, outside, b"")
    result = run_cli("watch", "--once", "-w", str(small_ws.root), timeout=60)
    assert "Traceback" not in result.err
    assert target.read_bytes() == b""
    assert "audit log" in result.err and "symbolic link leads outside the workspace, refused" in result.err


def test_audit_log_atomic_writes_and_lock_refuse_a_directory_linked_outside(tmp_path, outside):
    (tmp_path / "ws" / "memory").mkdir(parents=True)
    ws = Workspace.open(tmp_path / "ws")
    (ws.root / "memory" / "audit").symlink_to(outside)
    audit = AuditLog(ws.audit)
    audit.append("test_event", message="x")
    assert list(outside.iterdir()) == []
    (ws.root / "memory" / "outbox").symlink_to(outside)
    with pytest.raises(ContainmentError):
        atomic.write_bytes(ws.outbox / "webhook.json", b"{}")
    (ws.root / "memory" / "locks").symlink_to(outside)
    with pytest.raises(PolylogError, match="outside the workspace"):
        WorkspaceLock(ws, "test").acquire()
    assert list(outside.iterdir()) == []


def test_the_reader_refuses_a_workspace_file_linked_outside(tmp_path, outside):
    (tmp_path / "ws").mkdir()
    ws = Workspace.open(tmp_path / "ws")
    (outside / "r.json").write_text("{}")
    (ws.root / "r.json").symlink_to(outside / "r.json")
    with pytest.raises(reader.UnreadableFile, match=r"r\.json: symbolic link leads outside the workspace, refused"):
        reader.read_bytes(ws.root / "r.json", 1024, label="r.json")
    # A file outside every workspace (an absolute path from the configuration) is not refused.
    assert reader.read_bytes(outside / "r.json", 1024) == b"{}"
    check_contained(outside / "r.json")
    with pytest.raises(RegistryError, match="outside the workspace"):
        StoredRegistry(ws.root / "r.json", "engine", None, label="r.json").get()


def test_a_feed_linked_outside_is_refused(small_ws, outside):
    link_out(small_ws.feed, outside)
    result = run_cli("watch", "--once", "-w", str(small_ws.root), timeout=60)
    assert result.code == 2
    assert "symbolic link leads outside the workspace, refused" in one_line(result)
    assert os.path.islink(small_ws.feed)


def test_outbox_incidents_escalations_and_reports_linked_outside_write_nothing_there(tmp_path, outside):
    from polylog_console.core.alerts.outbox import Outbox, OutboxUnlockable
    from polylog_console.core.monitor.incidents import IndexFile

    (tmp_path / "ws" / "memory").mkdir(parents=True)
    ws = Workspace.open(tmp_path / "ws")
    (ws.root / "memory" / "outbox").symlink_to(outside)
    with pytest.raises(OutboxUnlockable, match="outside the workspace"):
        Outbox(ws.outbox).acquire()
    (ws.root / "memory" / "incidents").symlink_to(outside)
    index = IndexFile(ws.root / "memory" / "incidents" / "index.jsonl")
    index.append([{"incident": 1}])
    assert index.last_error is not None and "outside the workspace" in index.last_error
    (ws.root / "memory" / "escalations").symlink_to(outside)
    with pytest.raises(ContainmentError):
        atomic.write_new(ws.escalations, lambda n: f"escalation-{n}.md", b"# x")
    assert list(outside.iterdir()) == []


def test_bundle_into_escalations_linked_outside_is_refused_on_one_line(small_ws, outside):
    escalations = small_ws.root / "memory" / "escalations"
    if escalations.exists():
        for child in escalations.iterdir():
            child.unlink()
        escalations.rmdir()
    escalations.symlink_to(outside)
    result = run_cli("bundle", "-w", str(small_ws.root), timeout=60)
    assert result.code == 2, (result.out, result.err)
    assert "outside the workspace" in one_line(result)
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("how", ["loop", "outside"])
def test_watch_follow_with_a_looped_or_outside_feed_reports_it_and_keeps_running(small_ws, outside, watch, how):  # noqa: F811
    if how == "loop":
        loop(small_ws.feed)
    else:
        link_out(small_ws.feed, outside)
    w = watch(small_ws)
    event = w.until(lambda e: e.get("event") == "feed" and e.get("kind") == "error")
    assert ("symlink loop" if how == "loop" else "symbolic link leads outside the workspace") in event["detail"]
    code, err = w.terminate()
    assert code == 0, err
