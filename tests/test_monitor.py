"""Monitor semantics (SPEC §6): statuses, scheme mismatch, drift grouping, escalation, staleness."""

from __future__ import annotations

import orjson
import pytest

from polylog_console.core.feed.records import parse_line
from polylog_console.core.model import events as ev
from polylog_console.core.model.config import MonitorConfig
from polylog_console.core.model.events import AlertEvent, CheckpointEvent, Status, StatusEvent
from polylog_console.core.model.workspace import Workspace
from polylog_console.core.monitor.rules import Monitor
from polylog_console.core.registry.digest import digest
from polylog_console.core.registry.stored import StoredRegistry, save_snapshot

STORED = {"clusters": {"a" * 32: "△", "b" * 32: "▲"}, "megas": {"c" * 32: "🞀"}}
LIVE = {"clusters": {"a" * 32: "△", "d" * 32: "◆"}, "megas": {"c" * 32: "🞁"}}
NOW = 1_800_000_000.0


class Clock:
    def __init__(self, t: float = NOW) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def setup(tmp_path):
    (tmp_path / "catalogs").mkdir()
    save_snapshot(tmp_path / "catalogs" / "registry.json", STORED, label="stored")
    clock = Clock()
    stored = StoredRegistry(tmp_path / "catalogs" / "registry.json")
    monitor = Monitor(stored, MonitorConfig(stale_after=3600, escalate_after=3), Workspace(tmp_path), clock=clock)
    return monitor, clock, tmp_path


def cp(n: int, state=None, dg: str | None = None, ts: float | None = NOW, **extra):
    record = {"label": f"cp-{n}", "registry_digest": dg or digest(state if state is not None else STORED)}
    if ts is not None:
        record["timestamp"] = ts
    record.update(extra)
    return parse_line(orjson.dumps(record), n, n * 100)


def alerts(events, status=None):
    return [(e.alert.code, e.alert.status) for e in events if isinstance(e, AlertEvent)
            and (status is None or e.alert.status == status)]


def statuses(events):
    return [(e.previous, e.status) for e in events if isinstance(e, StatusEvent)]


def test_no_data_then_in_sync(setup):
    monitor, _, _ = setup
    assert monitor.status is Status.NO_DATA
    events = monitor.process([cp(1)])
    checkpoint = next(e for e in events if isinstance(e, CheckpointEvent))
    assert checkpoint.registry_match is True and checkpoint.status is Status.IN_SYNC
    assert statuses(events) == [(Status.NO_DATA, Status.IN_SYNC)]
    assert alerts(events) == []


def test_drift_alert_once_per_distinct_drift_with_diff(setup):
    monitor, _, _ = setup
    events = monitor.process([cp(1), cp(2, LIVE, registry_state=LIVE), cp(3, LIVE)])
    assert monitor.status is Status.DRIFT
    assert alerts(events) == [("registry_mismatch", "firing")]
    alert = next(e.alert for e in events if isinstance(e, AlertEvent))
    assert alert.diff["missing"] == 1 and alert.diff["unexpected"] == 1 and alert.diff["mismatched"] == 1
    assert alert.diff["per_namespace"] == {"clusters": {"missing": 1, "unexpected": 1, "mismatched": 0},
                                           "megas": {"missing": 0, "unexpected": 0, "mismatched": 1}}
    assert alert.dedup_key == ev.dedup_key(digest(STORED), digest(LIVE))
    assert monitor.consecutive == 2


def test_escalation_after_consecutive_mismatches_then_resolved(setup):
    monitor, _, _ = setup
    events = monitor.process([cp(1, LIVE), cp(2, LIVE)])
    assert alerts(events) == [("registry_mismatch", "firing")]
    events = monitor.process([cp(3, LIVE), cp(4, LIVE)])
    assert alerts(events) == [("drift_persistent", "firing")]  # once, at the 3rd
    events = monitor.process([cp(5)])
    assert alerts(events) == [("registry_resolved", "resolved")]
    resolved = next(e.alert for e in events if isinstance(e, AlertEvent))
    assert set(resolved.resolves) == {"registry_mismatch", "drift_persistent"}
    assert monitor.status is Status.IN_SYNC and monitor.consecutive == 0


def test_quiet_processing_reaches_the_same_state(setup, tmp_path):
    monitor, _, _ = setup
    other = Monitor(StoredRegistry(monitor.stored.path), MonitorConfig(stale_after=3600, escalate_after=3),
                    clock=monitor.clock)
    batch = [cp(1), cp(2), cp(3, LIVE), cp(4, LIVE), cp(5, LIVE), cp(6, LIVE), cp(7), cp(8, LIVE)]
    loud = monitor.process(batch)
    quiet = other.process(batch, emit_checkpoints=False)
    assert alerts(loud) == alerts(quiet)
    assert (monitor.status, monitor.consecutive, monitor.checkpoints) == (other.status, other.consecutive,
                                                                          other.checkpoints)


def test_new_live_digest_supersedes_the_previous_drift(setup):
    monitor, _, _ = setup
    monitor.process([cp(1, LIVE)])
    third = {"clusters": {}}
    events = monitor.process([cp(2, third)])
    assert alerts(events) == [("registry_mismatch", "resolved"), ("registry_mismatch", "firing")]
    assert next(e.alert for e in events if isinstance(e, AlertEvent)).reason == "superseded"
    assert monitor.consecutive == 2


def test_scheme_mismatch_is_not_drift(setup):
    monitor, _, _ = setup
    events = monitor.process([cp(1, dg=digest(STORED, "canonical"))])
    checkpoint = next(e for e in events if isinstance(e, CheckpointEvent))
    assert checkpoint.registry_match is False and checkpoint.scheme_mismatch is True
    assert checkpoint.status is Status.IN_SYNC
    assert alerts(events) == [("scheme_mismatch", "firing")]
    assert alerts(monitor.process([cp(2)])) == [("scheme_mismatch", "resolved")]


def test_stale_after_time_passes_and_drift_stays_drift(setup):
    monitor, clock, _ = setup
    monitor.process([cp(1)])
    clock.t += 3599
    assert monitor.tick() == []
    clock.t += 2
    events = monitor.tick()
    assert alerts(events) == [("stale_digest", "firing")]
    assert statuses(events) == [(Status.IN_SYNC, Status.STALE)]
    events = monitor.process([cp(2, LIVE, ts=clock.t - 7200)])
    assert monitor.status is Status.DRIFT and monitor.stale  # old and drifting: DRIFT, stale beside it
    events = monitor.process([cp(3, ts=clock.t)])
    assert ("stale_digest", "resolved") in alerts(events)
    assert monitor.status is Status.IN_SYNC


def test_checkpoint_without_timestamp_counts_from_when_it_was_read(setup):
    monitor, clock, _ = setup
    monitor.process([cp(1, ts=None)])
    assert not monitor.stale
    clock.t += 4000
    monitor.tick()
    assert monitor.status is Status.STALE


def test_provider_error_and_recovery(setup):
    monitor, _, root = setup
    registry = root / "catalogs" / "registry.json"
    saved = registry.read_bytes()
    registry.write_bytes(b"{broken")
    events = monitor.process([cp(1)])
    assert alerts(events) == [("registry_provider_error", "firing")]
    assert monitor.status is Status.NO_DATA and monitor.latest_match is None
    registry.write_bytes(saved)
    events = monitor.process([cp(2)])
    assert ("registry_provider_error", "resolved") in alerts(events)
    assert monitor.status is Status.IN_SYNC


def test_stored_digest_is_cached_until_the_file_changes(setup):
    monitor, _, root = setup
    for n in range(50):
        monitor.process([cp(n)])
    assert monitor.stored.loads == 1
    save_snapshot(root / "catalogs" / "registry.json", LIVE, label="rehydrated")
    events = monitor.process([])
    assert monitor.stored.loads == 2
    # the latest checkpoint is compared again with the new stored registry
    assert monitor.latest_match is False and monitor.status is Status.DRIFT
    assert ("registry_mismatch", "firing") in alerts(events)


def test_drift_remaining_after_rehydrate_escalates(setup):
    monitor, _, root = setup
    monitor.process([cp(1, LIVE)])
    assert alerts(monitor.process([])) == []
    # a rehydrate rewrote the registry, but the engine's state still differs
    save_snapshot(root / "catalogs" / "registry.json", {"clusters": {}}, label="rehydrated")
    events = monitor.recheck(after_rehydrate=True)
    assert ("drift_persistent", "firing") in alerts(events)
    persistent = next(e.alert for e in events if isinstance(e, AlertEvent) and e.alert.code == "drift_persistent")
    assert persistent.reason == "drift remains after rehydrate"


def test_rehydrate_that_fixes_drift_resolves(setup):
    monitor, _, root = setup
    monitor.process([cp(1, LIVE)])
    save_snapshot(root / "catalogs" / "registry.json", LIVE, label="rehydrated")
    events = monitor.recheck(after_rehydrate=True)
    assert alerts(events) == [("registry_resolved", "resolved")]
    assert monitor.status is Status.IN_SYNC


def test_snapshot_path_outside_workspace_is_refused(setup, tmp_path_factory):
    monitor, _, _ = setup
    outside = tmp_path_factory.mktemp("outside") / "state.json"
    save_snapshot(outside, LIVE, label="x")
    record = cp(1, LIVE, registry_snapshot=str(outside))
    assert monitor.diff_for(record) is None
    monitor.process([record])
    assert "outside the workspace" in monitor.diff_error(record)


def test_compacted_runs_reach_the_same_state(setup):
    from polylog_console.core.monitor.rules import Run, compact

    monitor, _, _ = setup
    other = Monitor(StoredRegistry(monitor.stored.path), MonitorConfig(stale_after=3600, escalate_after=3),
                    clock=monitor.clock)
    records = [cp(1), cp(2), cp(3), parse_line(b"[1]", 4), cp(5, LIVE), cp(6, LIVE), cp(7, LIVE), cp(8, LIVE),
               parse_line(b'{"kind": "x"}', 9), cp(10, LIVE), cp(11), cp(12)]
    items: list = []
    compact(records[:6], items)
    compact(records[6:], items)
    assert sum(isinstance(i, Run) for i in items) == 3
    loud = monitor.process(records)
    quiet = other.process(items, emit_checkpoints=False)
    assert alerts(loud) == alerts(quiet)
    assert (monitor.status, monitor.consecutive, monitor.checkpoints, monitor.ingest_errors, monitor.entries) == (
        other.status, other.consecutive, other.checkpoints, other.ingest_errors, other.entries)
    assert other.latest.label == "cp-12"


def test_steady_fast_path_matches_full_evaluation(setup):
    """Repeated digests take a shortcut in process(); its events equal one-by-one evaluation."""
    monitor, clock, _ = setup
    other = Monitor(StoredRegistry(monitor.stored.path), MonitorConfig(stale_after=3600, escalate_after=3),
                    clock=clock)
    batch = [cp(1), cp(2), cp(3, ts=NOW - 7200), cp(4), cp(5, LIVE), cp(6, LIVE), cp(7, LIVE), cp(8, LIVE),
             cp(9, LIVE, polygons="x"), cp(10), cp(11)]
    fast = monitor.process(batch)
    # staleness is judged once the batch is read: one by one, it is judged at the end too
    slow = [e for record in batch for e in other.process([record], check_stale=False)] + other.tick()

    def shape(events):
        return [(type(e).__name__, getattr(e, "status", None), getattr(e, "consecutive_mismatches", None),
                 getattr(e, "registry_match", None), getattr(e, "stale", None),
                 (e.alert.code, e.alert.status) if isinstance(e, AlertEvent) else None)
                for e in events if not isinstance(e, ev.StoredEvent)]

    assert shape(fast) == shape(slow)
    assert (monitor.warnings, monitor.checkpoints, monitor.consecutive) == (1, 11, 0)


def test_rehydrate_escalates_even_when_a_tick_reloaded_the_registry_first(setup):
    """The new registry may be picked up by the 1 s tick between the swap and the recheck."""
    monitor, _, root = setup
    monitor.process([cp(1, LIVE)])
    save_snapshot(root / "catalogs" / "registry.json", {"clusters": {}}, label="rehydrated")
    monitor.tick()  # reloads the registry and compares the latest checkpoint again
    events = monitor.recheck(after_rehydrate=True)
    assert ("drift_persistent", "firing") in alerts(events)


def test_rehydrate_escalation_is_announced_even_after_the_count_escalated(setup):
    monitor, _, root = setup
    monitor.process([cp(1, LIVE), cp(2, LIVE), cp(3, LIVE), cp(4, LIVE)])  # escalated by count
    save_snapshot(root / "catalogs" / "registry.json", {"clusters": {}}, label="rehydrated")
    tick_events = monitor.tick()  # the reload re-compares the same checkpoint: not one more mismatch
    assert monitor.consecutive == 4
    events = tick_events + monitor.recheck(after_rehydrate=True)
    reasons = [e.alert.reason for e in events if isinstance(e, AlertEvent) and e.alert.code == "drift_persistent"]
    assert "drift remains after rehydrate" in reasons
