"""Flapping (issue 11 item 8): when ``flap_threshold`` incidents open within ``flap_window``
checkpoints, the last of them is held open as one flapping incident until ``flap_settle``
consecutive checkpoints agree. The inline fast path for a flapping feed reaches exactly what
checkpoint-by-checkpoint evaluation reaches, and so do folded runs."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest

from polylog_console.core.feed.records import parse_line
from polylog_console.core.model import events as ev
from polylog_console.core.model.config import ConfigError, MonitorConfig, load_config
from polylog_console.core.model.events import AlertEvent, CheckpointEvent, Status, StatusEvent
from polylog_console.core.model.workspace import Workspace
from polylog_console.core.monitor.incident import IncidentEvent
from polylog_console.core.monitor.rules import Monitor, compact, exact_keep
from polylog_console.core.registry.digest import digest
from polylog_console.core.registry.stored import StoredRegistry, save_snapshot
from tests.test_monitor import LIVE, NOW, STORED, Clock

S = digest(STORED)
F = "f" * 64
G = "e" * 64
OTHER = digest(STORED, scheme="canonical")  # a scheme mismatch under the default (engine) scheme
FLAP = dict(stale_after=3600, escalate_after=3, flap_threshold=3, flap_window=20, flap_settle=4)


@pytest.fixture
def root(tmp_path):
    (tmp_path / "catalogs").mkdir()
    save_snapshot(tmp_path / "catalogs" / "registry.json", STORED, label="stored")
    return tmp_path


def monitor(root, **options) -> Monitor:
    config = MonitorConfig(**{**FLAP, **options})
    return Monitor(StoredRegistry(root / "catalogs" / "registry.json"), config, Workspace(root), clock=Clock())


def cp(n: int, dg: str, ts: float | None = None, **extra):
    record = {"label": f"cp-{n}", "registry_digest": dg, **extra}
    record["timestamp"] = NOW - 1000 + n if ts is None else ts
    if ts == -1:
        del record["timestamp"]
    return parse_line(orjson.dumps(record), n, n * 100)


def feed(pattern: str, start: int = 1) -> list:
    """``s`` matching, ``f`` / ``g`` two drifts, ``o`` an old (stale) match, ``w`` a match with an
    odd field (a warning), ``u`` a match without timestamp, ``x`` the stored state's digest under
    the other scheme (a scheme mismatch), ``l`` the digest of the LIVE state."""
    out = []
    for i, c in enumerate(pattern, start):
        if c == "s":
            out.append(cp(i, S))
        elif c == "f":
            out.append(cp(i, F))
        elif c == "g":
            out.append(cp(i, G))
        elif c == "o":
            out.append(cp(i, S, ts=NOW - 7200))
        elif c == "w":
            out.append(cp(i, S, polygons="x"))
        elif c == "u":
            out.append(cp(i, S, ts=-1))
        elif c == "x":
            out.append(cp(i, OTHER))
        elif c == "l":
            out.append(cp(i, digest(LIVE)))
    return out


def write_flapping(path, stored: str, n: int, every: int = 3) -> None:
    """A feed of ``n`` checkpoints, every ``every``-th one (from the ``every``-th) mismatching."""
    with open(path, "wb") as handle:
        for i in range(n):
            dg = "f" * 64 if i % every == every - 1 else stored
            handle.write(orjson.dumps({"label": f"cp-{i:04d}", "registry_digest": dg, "timestamp": NOW + i}) + b"\n")


def alerts(events):
    return [(e.alert.code, e.alert.status) for e in events if isinstance(e, AlertEvent)]


def incidents(events):
    return [(e.kind, e.incident.id, e.incident.flapping) for e in events if isinstance(e, IncidentEvent)]


def test_the_threshold_th_incident_is_held_open_as_one_flapping_incident(root):
    m = monitor(root)
    out = m.process(feed("sf" * 30 + "s"))
    # incidents 1 and 2 are ordinary; the 3rd (within 20 checkpoints) flaps and stays open
    assert incidents(out) == [("opened", 1, False), ("resolved", 1, False), ("opened", 2, False),
                              ("resolved", 2, False), ("opened", 3, True), ("escalated", 3, True)]
    assert alerts(out) == [("registry_mismatch", "firing"), ("registry_resolved", "resolved")] * 2 + [
        ("registry_mismatch", "firing"), ("drift_persistent", "firing")]
    firing = [e.alert for e in out if isinstance(e, AlertEvent)][4]
    assert "flapping: 3 incidents within 5 checkpoints" in firing.summary
    view = m.snapshot()
    assert view.incidents == 3 and view.incident is not None and view.incident.flapping
    assert view.incident.flap_drifts == 28 and view.incident.mismatching_checkpoints == 28
    assert view.incident.matching_checkpoints == 28 and view.incident.last_label == "cp-60"
    assert view.status is Status.IN_SYNC and view.consecutive_mismatches == 0  # the latest matches
    assert "flapping: 28 drifts" in view.incident.headline(NOW)
    # status changes during flapping are reported once per batch, not once per flap
    assert sum(isinstance(e, StatusEvent) for e in out) < 12


def test_parity_held_for_flap_settle_resolves_at_its_first_matching_checkpoint(root):
    m = monitor(root)
    m.process(feed("sf" * 10))
    out = m.process(feed("sss" + "s" + "ss", start=21))
    resolved = [e for e in out if isinstance(e, IncidentEvent)]
    assert [(e.kind, e.incident.id) for e in resolved] == [("resolved", 3)]
    view = resolved[0].incident
    assert view.resolved_label == "cp-21" and view.resolved_at == NOW - 1000 + 21  # the first of the run
    assert not view.flapping and view.flapped and view.flap_drifts == 8
    assert view.consecutive_mismatches == 1  # the drift before that run of parity
    (alert,) = [e.alert for e in out if isinstance(e, AlertEvent)]
    assert (alert.code, alert.status) == ("registry_resolved", "resolved")
    assert "parity held for 4 checkpoints from cp-21 after flapping (8 drifts)" in alert.summary
    # the detector starts again: the next drift is an ordinary incident
    out = m.process(feed("fs", start=27))
    assert incidents(out) == [("opened", 4, False), ("resolved", 4, False)]


def test_drift_held_for_flap_settle_is_an_ordinary_incident_again(root):
    m = monitor(root)
    m.process(feed("sf" * 10))
    out = m.process(feed("ffff", start=21))
    view = m.snapshot().incident
    assert view is not None and view.id == 3 and not view.flapping and view.flapped
    assert [n.what for n in view.notes][-1] == "flapping_ended"
    assert alerts(out) == []  # its alert fires on; escalated once already (flapping)
    out = m.process(feed("s", start=25))
    assert incidents(out) == [("resolved", 3, False)] and alerts(out) == [("registry_resolved", "resolved")]
    assert out[-1].__class__ is StatusEvent or any(isinstance(e, StatusEvent) for e in out)


def test_another_live_digest_during_flapping_is_one_more_drift_of_the_incident(root):
    m = monitor(root)
    out = m.process(feed("sf" * 5 + "sg" + "sf" * 3 + "sgsf" * 20))
    # the drift alert of the flapping incident fires on; alternating live digests are counted, not alerted
    assert alerts(out)[4:] == [("registry_mismatch", "firing"), ("drift_persistent", "firing")]
    view = m.snapshot().incident
    assert view.flapping and view.live_digests == (F, G) and view.escalations == 1
    assert view.flap_drifts == 49 - 2 and [n.what for n in view.notes].count("live_digest") == 1
    # once it settles in drift on the other digest, that drift is announced (the old one superseded)
    out = m.process(feed("g" * 4, start=200))
    assert not m.snapshot().incident.flapping
    out += m.process(feed("g", start=204))
    assert alerts(out) == [("registry_mismatch", "resolved"), ("registry_mismatch", "firing"),
                           ("drift_persistent", "firing")]  # (5 consecutive on g)


def test_flap_threshold_0_turns_it_off(root):
    m = monitor(root, flap_threshold=0)
    out = m.process(feed("sf" * 30))
    assert m.snapshot().incidents == 30 and m.snapshot().incident.id == 30 and not m.snapshot().incident.flapping
    assert alerts(out).count(("registry_resolved", "resolved")) == 29


def _shape(events):
    out = []
    for e in events:
        if isinstance(e, (StatusEvent, ev.StoredEvent)):
            continue  # status changes are coalesced per batch while flapping
        if isinstance(e, AlertEvent):
            a = e.alert
            out.append(("alert", a.code, a.status, a.summary, a.consecutive_mismatches, a.since,
                        (a.checkpoint or {}).get("label")))
        elif isinstance(e, IncidentEvent):
            out.append(("incident", e.kind, tuple(e.incident)))
        elif isinstance(e, CheckpointEvent):
            out.append(("checkpoint", e.checkpoint.label, e.registry_match, e.status, e.consecutive_mismatches,
                        e.stale))
        else:
            out.append((type(e).__name__,))
    return out


def _final(m: Monitor):
    view = m.snapshot()
    return (view.status, view.consecutive_mismatches, view.checkpoints, view.warnings, view.incidents,
            view.stale, view.latest.label, view.latest_match, tuple(view.incident) if view.incident else None,
            tuple(view.last_incident) if view.last_incident else None)


@pytest.mark.parametrize("seed", range(40))
def test_the_flapping_fast_path_equals_one_by_one_evaluation(root, seed):
    rng = random.Random(seed)
    weights = rng.choice(([8, 6, 0, 0, 0, 0], [6, 6, 1, 1, 1, 1], [3, 8, 1, 0, 0, 0], [9, 2, 0, 1, 1, 1]))
    pattern = "".join(rng.choices("sfgowuxl", weights=[*weights, seed % 2, seed % 3 == 0],
                                  k=rng.randint(40, 400)))
    pattern = "sf" * rng.randint(0, 12) + pattern  # start flapping early, often
    records = feed(pattern)
    fast, slow = monitor(root), monitor(root)
    got = fast.process(records)
    want = [e for r in records for e in slow.process([r], check_stale=False)] + slow.tick()
    assert _shape(got) == _shape(want), pattern
    assert _final(fast) == _final(slow), pattern
    # the status reported last is the monitor's status
    last = [e for e in got if isinstance(e, StatusEvent)]
    assert not last or last[-1].status is fast.status

    # folded runs (what a reader buffers before the stored digest is known) reach the same
    items: list = []
    compact(records, items, keep=exact_keep(fast.config))
    folded = monitor(root)
    quiet = folded.process(items, emit_checkpoints=False)
    assert [s for s in _shape(quiet) if s[0] != "checkpoint"] == [s for s in _shape(want) if s[0] != "checkpoint"]
    assert _final(folded) == _final(slow), pattern


def test_batches_cut_anywhere_reach_the_same(root):
    records = feed("ssf" * 40 + "s" * 6 + "sf" * 20 + "f" * 6 + "s")
    whole = monitor(root)
    want = _shape(whole.process(records))
    rng = random.Random(7)
    for _ in range(20):
        cut = monitor(root)
        got, i = [], 0
        while i < len(records):
            n = rng.randint(1, 9)
            got += cut.process(records[i:i + n], check_stale=False)
            i += n
        got += cut.tick()
        assert _shape(got) == want
        assert _final(cut) == _final(whole)


def test_the_flap_keys_are_configurable_and_checked(tmp_path):
    (tmp_path / "monitoring.toml").write_text("[monitor]\nflap_threshold = 0\nflap_window = 50\nflap_settle = 7\n")
    config = load_config(tmp_path)
    assert (config.monitor.flap_threshold, config.monitor.flap_window, config.monitor.flap_settle) == (0, 50, 7)
    defaults = MonitorConfig()
    assert (defaults.flap_threshold, defaults.flap_window, defaults.flap_settle) == (20, 200, 10)
    for bad in ("flap_settle = 0", "flap_window = 1", "flap_threshold = -1", "flap_settle = 20000",
                'flap_window = "x"'):
        (tmp_path / "monitoring.toml").write_text(f"[monitor]\n{bad}\n")
        with pytest.raises(ConfigError, match=bad.split()[0]):
            load_config(tmp_path)


async def test_the_console_banner_says_flapping_while_the_latest_checkpoint_matches(small_ws):
    from polylog_console.ui.widgets.banner import AlertBanner
    from tests.test_ui_support import make_app, screen_text, start, wait_for

    write_flapping(small_ws.feed, small_ws.incident.stored_digest, 200)
    app = make_app(small_ws.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await start(pilot)
        banner = app.query_one(AlertBanner)
        await wait_for(pilot, lambda: banner.banners, what="the banner")
        view = app.session.monitor.snapshot()
        assert view.incident is not None and view.incident.flapping and view.status is Status.IN_SYNC
        text = screen_text(app)
        assert f"FLAPPING {view.incident.flap_drifts} drifts" in text
        assert "registry_mismatch" in text


def test_metrics_say_flapping(root):
    from prometheus_client import generate_latest

    from polylog_console.core.infra.metrics import Metrics
    from tests.test_fleet_model import exported

    m = monitor(root)
    m.process(feed("sf" * 30))
    metrics = Metrics()
    metrics.view = m.snapshot()
    values = exported(generate_latest(metrics.registry).decode())
    assert values["polylog_flapping"] == 1.0
    assert values["polylog_incident_flap_drifts"] == 28.0
    assert values["polylog_drift_started_timestamp_seconds"] == NOW - 1000 + 6  # the 3rd incident's start
    m.process(feed("s" * 4, start=61))
    metrics.view = m.snapshot()
    text = generate_latest(metrics.registry).decode()
    assert "polylog_flapping 0.0" in text and "polylog_drift_started_timestamp_seconds 0.0" in text
    assert "polylog_incident_flap_drifts 0.0" in text


async def test_the_timeline_screen_shows_the_flapping_incident(small_ws):
    from tests.test_ui_support import screen_text
    from tests.test_ui_timeline import TimelineApp, ready

    write_flapping(small_ws.feed, small_ws.incident.stored_digest, 400)
    app = TimelineApp(small_ws.root)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await ready(pilot)
        text = screen_text(app)
        assert "flapping  " in text and "too many incidents within the flap window" in text  # its timeline
        assert "at cp-0059: flapping: 20 incidents within" in text  # the escalation's own reason
        assert "OPEN" in text and "FLAPPING: 114 drifts" in text  # the incident's row
        assert "114 mismatching" in text and screen is app.screen


def test_the_bundle_says_flapping_and_why_to_escalate(small_ws, cli):
    import json

    write_flapping(small_ws.feed, small_ws.incident.stored_digest, 300)
    result = cli("bundle", "--json", "--workspace", str(small_ws.root))
    assert result.code == 0, result.err
    text = Path(json.loads(result.out)["path"]).read_text(encoding="utf-8")
    assert "| flapping | yes: 81 drifts, 81 mismatching and 160 matching checkpoints in this one incident" in text
    assert "the registry is flapping (81 drifts)" in text
    assert "drift observed since | `2027-01-15" in text and "(`cp-0059`, line 60)" in text


def test_watch_once_and_its_json_agree_on_a_flapping_feed(small_ws, cli):
    import json

    write_flapping(small_ws.feed, small_ws.incident.stored_digest, 3001)
    human = cli("watch", "--once", "--workspace", str(small_ws.root))
    machine = cli("watch", "--once", "--json", "--workspace", str(small_ws.root))
    # the latest checkpoint matches, but a flapping incident is held open: a problem (exit 1)
    assert human.code == machine.code == 1, human.err + machine.err
    summary = json.loads(machine.out.splitlines()[-1])
    assert summary["incidents"] == 20 and summary["incident"]["flapping"] and summary["status"] == "IN SYNC"
    assert summary["alerts"] == {"registry_mismatch firing": 20, "registry_resolved resolved": 19,
                                 "drift_persistent firing": 1}
    drifts = summary["incident"]["flap_drifts"]
    assert drifts == 1000 - 19 == summary["incident"]["mismatching_checkpoints"]
    assert f"flapping: {drifts} drifts, {summary['incident']['matching_checkpoints']} matching checkpoints; " \
           "held open until parity or drift holds for 10 checkpoints" in human.out
    assert "incidents       20 opened, 19 resolved" in human.out


# -- found in review: each compared with checkpoint-by-checkpoint evaluation ---------------------------------

def _both(root, batches, **options):
    """Feed ``batches`` (lists of records, or callables run between them) to a batched monitor and to
    one fed a record at a time; return both monitors and their events."""
    fast, slow = monitor(root, **options), monitor(root, **options)
    got, want = [], []
    for batch in batches:
        if callable(batch):
            batch()
            continue
        got += fast.process(batch, check_stale=False)
        want += [e for r in batch for e in slow.process([r], check_stale=False)]
    got += fast.tick()
    want += slow.tick()
    return fast, slow, got, want


def test_a_stored_registry_changed_mid_flapping_still_settles_in_one_batch(root):
    from tests.test_monitor import LIVE

    live = digest(LIVE)
    options = dict(flap_threshold=2, flap_window=20, flap_settle=3)
    swap = lambda: save_snapshot(root / "catalogs" / "registry.json", LIVE, label="rehydrated")  # noqa: E731
    first = [cp(i, S if i % 2 else live) for i in range(1, 5)]  # s l s l: the 2nd incident flaps
    fast, slow, got, want = _both(root, [first, swap, [cp(i, live) for i in range(5, 11)]], **options)
    assert _shape(got) == _shape(want) and _final(fast) == _final(slow)
    assert fast.incident is None and fast.last_incident.flapped and fast.last_incident.resolved_label == "cp-4"
    resolved = [e.alert for e in got if isinstance(e, AlertEvent) and e.alert.status == "resolved"]
    assert resolved[-1].code == "registry_resolved"


def test_a_scheme_mismatch_during_flapping_is_resolved_at_the_next_match(root):
    other = Monitor(StoredRegistry(root / "catalogs" / "registry.json"), MonitorConfig()).stored.get().other_digest
    options = dict(flap_threshold=2, flap_window=20, flap_settle=10)
    records = [*feed("sfsf"), cp(5, other), *feed("ss", start=6)]
    fast, slow, got, want = _both(root, [records], **options)
    assert _shape(got) == _shape(want) and _final(fast) == _final(slow)
    scheme = [(e.alert.status, e.alert.checkpoint["label"]) for e in got
              if isinstance(e, AlertEvent) and e.alert.code == "scheme_mismatch"]
    assert scheme == [("firing", "cp-5"), ("resolved", "cp-6")]


def test_the_resolution_names_the_first_checkpoint_of_the_parity_that_held(root):
    m = monitor(root)
    m.process(feed("sf" * 10))
    out = m.process(feed("ssss", start=21))
    (alert,) = [e.alert for e in out if isinstance(e, AlertEvent)]
    assert alert.checkpoint == {"label": "cp-21", "line": 21, "timestamp": NOW - 1000 + 21, "registry_digest": S}


def test_a_report_from_the_index_decides_flapping_as_the_whole_feed_does(tmp_path):
    """The index covers the feed up to a point; a report replays the rest, starting early enough for
    its flap detector to see the incidents before that point (as watch --once and --no-index do)."""
    import json
    import time

    from tests.conftest import run_cli
    from tests.test_index_bounded import flapping_workspace

    for head, tail in (("sf" * 10 + "f", "sf" * 20 + "s" * 12 + "f"), ("sf" * 10 + "s", "fs" * 15)):
        root = tmp_path / f"ws-{len(head)}-{len(tail)}"
        flapping_workspace(root, detect=True, lines=0)
        feed_path = root / "memory" / "coordination" / "context-brief.jsonl"
        stored = json.loads((root / "catalogs" / "registry.json").read_bytes())["digest"]
        t0 = time.time() - 1000

        def write(pattern, prefix, mode, feed_path=feed_path, stored=stored, t0=t0):
            with open(feed_path, mode) as handle:
                for i, c in enumerate(pattern):
                    handle.write(orjson.dumps({"label": f"{prefix}-{i:05d}", "registry_digest": stored if c == "s"
                                               else "f" * 64, "timestamp": t0 + i}) + b"\n")

        write(head, "h", "wb")
        assert run_cli("watch", "--once", "--json", "--workspace", str(root)).code in (0, 1)
        write(tail, "t", "ab")
        runs = [json.loads(run_cli("report", "--incident", "all", "--json", *extra, "--workspace", str(root)).out)
                for extra in ((), ("--no-index",))]
        watch = json.loads(run_cli("watch", "--once", "--json", "--workspace", str(root)).out.splitlines()[-1])
        keys = ("started_label", "resolved_label", "flapping", "flapped", "flap_drifts", "mismatching_checkpoints")
        a, b = ([[i[k] for k in keys] for i in r["incidents"]] for r in runs)
        assert a == b and len(a) == watch["incidents"], (head, tail)
        assert any(i[3] for i in a)  # one of them flapped


@pytest.mark.parametrize("seed", range(20))
def test_stored_registry_changes_between_random_batches_reach_the_same(root, seed):
    rng = random.Random(1000 + seed)
    registry = root / "catalogs" / "registry.json"

    def swap(state):
        return lambda: save_snapshot(registry, state, label="swap")

    batches: list = []
    n = 1
    for _ in range(rng.randint(3, 12)):
        pattern = "sl" * rng.randint(0, 8) + "".join(rng.choices("slfx", weights=[5, 5, 2, 1], k=rng.randint(1, 40)))
        batches.append(feed(pattern, start=n))
        n += len(pattern)
        if rng.random() < 0.5:
            batches.append(swap(rng.choice((STORED, LIVE))))
    fast, slow, got, want = _both(root, batches, flap_threshold=2, flap_window=20, flap_settle=3)
    assert _shape(got) == _shape(want)
    assert _final(fast) == _final(slow)


def test_the_other_scheme_digest_precomputed_is_used_only_for_the_same_bytes(root):
    registry = root / "catalogs" / "registry.json"
    stored = StoredRegistry(registry)
    assert stored.precompute_other()
    view = stored.get()
    assert view._other == {"canonical": OTHER}  # seeded: nothing computed at the first drift
    assert view.other_digest == OTHER == digest(STORED, scheme="canonical")
    save_snapshot(registry, LIVE, label="changed")  # other bytes: the value made for the old ones is not used
    view = stored.get()
    assert view._other == {} and view.other_digest == digest(LIVE, scheme="canonical")


async def test_watch_once_precomputes_the_other_digest_while_the_registry_is_digested(tmp_path, monkeypatch):
    """A big registry is digested by a child process while watch --once buffers the feed; when the
    buffer holds more than one digest, this process digests the registry under the other scheme
    meanwhile (the first drift's comparison needs it). Same answers either way."""
    from polylog_console.core.model.workspace import Workspace as Ws
    from polylog_console.core.monitor import session as session_module
    from polylog_console.core.monitor.session import Session
    from polylog_console.core.registry import stored as stored_module
    from tests.test_index_bounded import flapping_workspace

    root = tmp_path / "ws"
    flapping_workspace(root, detect=True, lines=3000)
    monkeypatch.setattr(stored_module, "PRIME_ABOVE", 1)  # a child for this small registry too
    monkeypatch.setattr(session_module, "PENDING_LIMIT", 10)  # the buffer fills at once
    calls = []
    real = stored_module.StoredRegistry.precompute_other
    monkeypatch.setattr(stored_module.StoredRegistry, "precompute_other",
                        lambda self: calls.append(1) or real(self))
    def slow_primer(stored):  # a child that takes its time, as a 1,000,000-symbol one does
        import multiprocessing
        import time

        def run():
            time.sleep(1.0)
            stored.get()

        process = multiprocessing.get_context("fork").Process(target=run, daemon=True)
        process.start()
        return process

    monkeypatch.setattr(stored_module, "start_digest_primer", slow_primer)
    ws = Ws.open(root)
    session = Session(ws, load_config(ws.root))
    await session.run_once(emit_checkpoints=False)
    assert calls == [1]
    view = session.monitor.snapshot()
    assert view.incidents == 20 and view.incident is not None and view.incident.flapping
