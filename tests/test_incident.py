"""The incident model (SPEC §6, issue 11 item 4): opens at the first mismatching checkpoint, keeps
its start (the checkpoint's time and label), stays one incident across live-digest changes, closes
at the first matching checkpoint; status events carry the checkpoint's time."""

from __future__ import annotations

from polylog_console.core.model.events import AlertEvent, StatusEvent
from polylog_console.core.monitor.incident import MAX_NOTES, IncidentEvent
from tests.test_monitor import LIVE, NOW, cp, setup  # noqa: F401  (fixture)

T0 = NOW - 600.0


def kinds(events):
    return [e.kind for e in events if isinstance(e, IncidentEvent)]


def test_incident_opens_at_the_first_mismatch_with_the_checkpoints_time(setup):  # noqa: F811
    monitor, clock, _ = setup
    events = monitor.process([cp(1, ts=T0), cp(2, LIVE, ts=T0 + 10), cp(3, LIVE, ts=T0 + 20)])
    assert kinds(events) == ["opened"]
    opened = next(e.incident for e in events if isinstance(e, IncidentEvent))
    assert (opened.started_at, opened.started_label, opened.started_line) == (T0 + 10, "cp-2", 2)
    assert opened.observed_at == clock.t and opened.start_in_history
    view = monitor.snapshot()
    assert view.incident is not None and view.incident.consecutive_mismatches == 2
    assert view.incident.mismatching_checkpoints == 2 and view.drift_since == T0 + 10
    status = next(e for e in events if isinstance(e, StatusEvent) and e.status == "DRIFT")
    assert status.checkpoint_ts == T0 + 10 and status.at == clock.t
    assert status.to_json()["checkpoint_ts"].startswith("2027-01-15T")  # ISO, the checkpoint's time
    firing = [e.alert for e in events if isinstance(e, AlertEvent) and e.alert.code == "registry_mismatch"]
    assert firing[0].since == T0 + 10  # startsAt: when the drift began, not when it was read


def test_a_new_live_digest_is_the_same_incident_and_parity_closes_it(setup):  # noqa: F811
    monitor, _, _ = setup
    monitor.process([cp(1, LIVE, ts=T0)])
    events = monitor.process([cp(2, {"clusters": {}}, ts=T0 + 5), cp(3, {"clusters": {}}, ts=T0 + 6),
                              cp(4, {"clusters": {}}, ts=T0 + 7)])
    assert kinds(events) == ["escalated"]
    incident = monitor.snapshot().incident
    assert incident.id == 1 and len(incident.live_digests) == 2 and incident.escalated
    assert incident.started_label == "cp-1" and incident.consecutive_mismatches == 4
    events = monitor.process([cp(5, ts=T0 + 8), cp(6, LIVE, ts=T0 + 9)])
    assert kinds(events) == ["resolved", "opened"]
    resolved = next(e.incident for e in events if isinstance(e, IncidentEvent))
    assert (resolved.resolved_at, resolved.resolved_label, resolved.state) == (T0 + 8, "cp-5", "resolved")
    assert resolved.mismatching_checkpoints == 4 and resolved.duration(0) == 8.0
    view = monitor.snapshot()
    assert view.last_incident == resolved and view.incident.id == 2 and view.incidents == 2


def test_scheme_mismatch_is_not_an_incident(setup):  # noqa: F811
    from polylog_console.core.registry.digest import digest
    from tests.test_monitor import STORED

    monitor, _, _ = setup
    events = monitor.process([cp(1, dg=digest(STORED, "canonical"))])
    assert kinds(events) == [] and monitor.snapshot().incident is None


def test_feed_starting_in_drift_marks_the_start_as_not_in_history(setup):  # noqa: F811
    monitor, _, _ = setup
    first = cp(7, LIVE)  # offset 700: the history read does not begin at the feed's start
    monitor.process([first])
    incident = monitor.snapshot().incident
    assert not incident.start_in_history and incident.started_label == "cp-7"
    request = monitor.scan_request()
    assert request is not None and request[0] == incident.id and request[1] == 700
    events = monitor.restart_incident(incident.id, cp(3, LIVE, ts=T0), complete=True)
    assert kinds(events) == ["restarted"]
    restarted = events[0].incident
    assert restarted.started_label == "cp-3" and restarted.started_at == T0 and restarted.start_in_history


def test_notes_stay_bounded(setup):  # noqa: F811
    monitor, _, _ = setup
    monitor.process([cp(1, LIVE)])
    for i in range(MAX_NOTES * 3):
        monitor.note("acknowledged", f"ack {i}", actor="a@b")
    incident = monitor.snapshot().incident
    assert len(incident.notes) == MAX_NOTES and incident.notes_dropped == MAX_NOTES * 2
    assert incident.notes[-1].detail == f"ack {MAX_NOTES * 3 - 1}"


async def _follow_until_restarted(root, stored: str, *, drift_from: int, total: int, history: int,
                                  until: str = "restarted"):
    import asyncio

    import orjson

    from polylog_console.core.model.config import load_config
    from polylog_console.core.model.workspace import Workspace
    from polylog_console.core.monitor.session import Session

    feed = root / "memory" / "coordination" / "context-brief.jsonl"
    with open(feed, "wb") as handle:
        for i in range(total):
            digest = stored if i < drift_from else "e" * 64
            handle.write(orjson.dumps({"label": f"cp-{i:05d}", "registry_digest": digest,
                                       "timestamp": T0 + i}) + b"\n")
    (root / "monitoring.toml").write_text(f"[feed]\nhistory = {history}\n")
    ws = Workspace.open(root)
    session = Session(ws, load_config(ws.root))
    seen: list = []
    done = asyncio.Event()

    def subscriber(events):
        for e in events:
            if isinstance(e, IncidentEvent):
                seen.append(e)
                if e.kind == until:
                    done.set()

    session.subscribe(subscriber)
    task = asyncio.create_task(session.run())
    try:
        await asyncio.wait_for(done.wait(), 30)
    finally:
        session.stop()
        await asyncio.wait_for(task, 15)
    return seen


async def test_an_incident_older_than_the_history_is_found_by_a_backwards_scan(small_ws):
    """Item 4: the follower loads only the last ``feed.history`` checkpoints; the drift began
    long before them, so its start is found by a bounded scan backwards through the feed."""
    seen = await _follow_until_restarted(small_ws.root, small_ws.incident.stored_digest,
                                         drift_from=1_000, total=20_000, history=100, until="opened")
    # the scan runs before the history's first comparison: the incident opens with its true start
    # (no provisional start at the history's first checkpoint, no "restarted" afterwards)
    opened = seen[0]
    assert opened.kind == "opened" and opened.incident.start_in_history and opened.incident.scan == "found"
    assert opened.incident.started_label == "cp-01000" and opened.incident.started_at == T0 + 1_000
    # the drifting checkpoints before the history count: 1000 .. 19900 at the history's first one
    assert opened.incident.mismatching_checkpoints == opened.incident.consecutive_mismatches == 18_901


async def test_a_feed_in_drift_from_its_first_line_starts_there(small_ws):
    seen = await _follow_until_restarted(small_ws.root, small_ws.incident.stored_digest,
                                         drift_from=0, total=5_000, history=50, until="opened")
    assert seen[-1].incident.started_label == "cp-00000" and seen[-1].incident.start_in_history


def test_a_view_carries_every_field(setup):  # noqa: F811
    from polylog_console.core.monitor.incident import IncidentView

    monitor, _, _ = setup
    monitor.process([cp(1, LIVE)])
    view = monitor.snapshot().incident
    assert len(view) == len(IncidentView._fields) and set(view.to_json()) >= {"id", "started_at", "scan"}


def test_the_backwards_scan_is_bounded_and_stops_at_parity():
    from polylog_console.core.monitor.backscan import find_start

    stored = "a" * 64
    records = [cp(i, dg=stored if i < 10 else "e" * 64) for i in range(1, 200)]  # offsets 100, 200, ...

    def page_back(before: int, count: int) -> list:
        older = [r for r in records if r.offset < before]
        return older[-count:]

    found = find_start(page_back, records[-1].offset, (stored, "c" * 64), page=16)
    assert found.complete and found.reason == "parity" and found.start.label == "cp-10"
    limited = find_start(page_back, records[-1].offset, (stored, "c" * 64), page=16, max_checkpoints=50)
    assert not limited.complete and limited.reason == "limit" and limited.scanned <= 50 + 16


def test_superseded_drift_churn_keeps_one_bounded_incident(setup):  # noqa: F811
    """Every checkpoint a new live digest: one incident, bounded digests, notes and caches."""
    from polylog_console.core.monitor.incident import MAX_LIVE_DIGESTS

    monitor, _, _ = setup
    n = 3000
    events = monitor.process([cp(i, dg=f"{i:064x}") for i in range(1, n + 1)])
    assert kinds(events).count("opened") == 1
    incident = monitor.snapshot().incident
    assert incident.live_digests_total == n and len(incident.live_digests) == MAX_LIVE_DIGESTS
    assert len(incident.notes) == MAX_NOTES and incident.notes_dropped > 0
    assert len(monitor._dedup) <= monitor.DEDUP_CACHE and len(monitor._diff_cache) <= 64
    assert incident.mismatching_checkpoints == incident.consecutive_mismatches == n


def test_the_headline_says_since_when_for_how_long_and_how_many(setup):  # noqa: F811
    monitor, clock, _ = setup
    monitor.process([cp(1, ts=T0), cp(2, LIVE, ts=T0 + 10), cp(3, LIVE, ts=T0 + 20)])
    line = monitor.snapshot().incident.headline(T0 + 10 + 7500)
    assert line.startswith("drift since 2027-01-15T") and "(cp-2), 2h05m, 2 consecutive mismatches" in line
    from polylog_console.core.model.events import iso

    assert line.endswith(f"first observed {iso(clock.t)[11:19]}Z")
