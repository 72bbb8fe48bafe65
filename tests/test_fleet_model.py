"""Fast checks of the fleet's pieces: the metrics a watcher exports for the fleet (workspace name,
drift start, status label), the join of Prometheus' answers into rows (DOWN, NO DATA, worst first),
alert states from silences, and the strings that leave the program (filters, the ssh command)."""

from __future__ import annotations

import socket

from polylog_console.core.fleet.model import DOWN, DRIFT, IN_SYNC, NO_DATA, FleetRow, alert_states, build_rows
from polylog_console.core.fleet.silences import AmAlert, Silence, matcher_filter
from polylog_console.core.model.config import load_config
from polylog_console.core.model.workspace import Workspace
from polylog_console.core.monitor.session import Session
from tests.fleetdata import NOW, series, workspace_spec
from tests.servers import checkpoint_line, records


def exported(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_a_watcher_names_its_workspace_and_its_drift_start(small_ws):
    ws = Workspace.open(small_ws.root)
    session = Session(ws, load_config(ws.root, env={}))
    metrics = session.enable_metrics()
    values = exported(metrics.render().decode())
    info = [k for k in values if k.startswith("polylog_workspace_info{")]
    assert len(info) == 1
    assert f'workspace="{socket.gethostname()}:{ws.root}"' in info[0] and f'host="{socket.gethostname()}"' in info[0]
    assert 'scheme="engine"' in info[0] and values[info[0]] == 1.0
    assert values["polylog_drift_started_timestamp_seconds"] == 0.0
    inc = small_ws.incident
    batch = records(checkpoint_line(1, inc.stored_digest), checkpoint_line(2, inc.live_digest, timestamp=NOW - 50),
                    checkpoint_line(3, inc.live_digest, timestamp=NOW - 40))
    session.publish(session.monitor.process(batch))
    values = exported(metrics.render().decode())
    assert values['polylog_status{status="DRIFT"}'] == 1.0 and values['polylog_status{status="IN SYNC"}'] == 0.0
    view = session.monitor.snapshot()
    if getattr(view, "incident", None) is not None:  # the incident's started_at: the first mismatching checkpoint
        assert values["polylog_drift_started_timestamp_seconds"] == NOW - 50
    else:
        assert values["polylog_drift_started_timestamp_seconds"] > 0
    session.publish(session.monitor.process(records(checkpoint_line(4, inc.stored_digest), first_line=4)))
    assert exported(metrics.render().decode())["polylog_drift_started_timestamp_seconds"] == 0.0


def test_the_fleet_name_comes_from_the_config(small_ws):
    (small_ws.root / "monitoring.toml").write_text('[fleet]\nname = "registry-eu"\n')
    session = Session(Workspace.open(small_ws.root), load_config(small_ws.root, env={}))
    text = session.enable_metrics().render().decode()
    assert 'workspace="registry-eu"' in text and f'polylog_workspace_path_info{{path="{small_ws.root}"}} 1.0' in text


def test_rows_join_per_target_worst_first():
    specs = [workspace_spec(i) for i in (1, 7, 13, 14, 17, 22)]  # in sync, drift, down, drift, no data, stale
    rows = build_rows(series(specs))
    assert [r.status for r in rows] == [DRIFT, DRIFT, "STALE", DOWN, NO_DATA, IN_SYNC]
    assert rows[0].host == "storage-0014" and rows[1].host == "storage-0007"  # older drift first
    drift = rows[0]
    assert drift.registry_match is False and drift.consecutive_mismatches == 12
    assert (drift.replicas_matching, drift.replicas_total, drift.outbox_pending) == (1, 2, 1)
    assert drift.latest_checkpoint_age == 20 and drift.last_scrape == NOW - 4
    down = rows[3]
    assert down.up is False and down.registry_match is None and down.drift_started_at is None
    assert rows[-1].drift_started_at is None and rows[-1].to_json()["latest_checkpoint_age_s"] == 20


def test_alert_states_say_who_acknowledged_until_when():
    silence = Silence("s1", (("workspace", "w", False, True),), NOW, NOW + 3600, "bob@box", "c", "active")
    alerts = [AmAlert({"alertname": "registry_mismatch", "workspace": "w"}, "suppressed", ("s1",), NOW, None),
              AmAlert({"alertname": "drift_persistent", "workspace": "w"}, "active", (), NOW, None),
              AmAlert({"alertname": "NodeDown"}, "active", (), NOW, None)]
    states = alert_states(alerts, [silence])
    assert [(s.alertname, s.acknowledged_by, s.until) for s in states] == [
        ("registry_mismatch", "bob@box", NOW + 3600), ("drift_persistent", None, None)]
    assert states[0].to_json()["until"].endswith("Z") and states[1].display == "firing"


def test_strings_that_leave_the_program_are_quoted():
    assert matcher_filter("workspace", 'a"b\\c') == 'workspace="a\\"b\\\\c"'
    row = FleetRow("h1:/srv/my ws", "h1", "h1:9464", "polylog", True, IN_SYNC)
    assert row.console_command() == "ssh h1 polylog-console --workspace '/srv/my ws'"
    named = FleetRow("registry-eu", "h1", "h1:9464", "polylog", True, IN_SYNC)
    assert named.console_command() == "ssh h1 polylog-console"
    named.workspace_path = "/srv/eu"  # from polylog_workspace_path_info
    assert named.console_command() == "ssh h1 polylog-console --workspace /srv/eu"


def test_the_fleet_core_and_fleet_json_import_no_textual():
    import subprocess
    import sys

    code = ("import sys; import polylog_console.core.fleet.model, polylog_console.core.fleet.silences, "
            "polylog_console.cli.fleet, polylog_console.cli.ack; print('textual' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_a_target_that_was_never_up_is_a_down_row_with_its_workspace_unknown():
    from polylog_console.core.fleet.prometheus import Sample

    data = series([workspace_spec(1), workspace_spec(7)])
    dead = {"instance": "127.0.0.1:1", "job": "polylog"}
    data.results["up"].append(Sample(dead, 0.0, NOW))
    data.results["scraped"].append(Sample(dead, NOW - 2, NOW))
    data.results["up"].append(Sample({"instance": "node:9100", "job": "node"}, 0.0, NOW))  # not a polylog job
    rows = build_rows(data)
    assert [r.status for r in rows] == [DRIFT, DOWN, IN_SYNC]
    down = rows[1]
    assert (down.instance, down.job, down.up, down.last_scrape) == ("127.0.0.1:1", "polylog", False, NOW - 2)
    doc = down.to_json()
    assert doc["workspace"] is None and doc["host"] is None and doc["console"] is None and doc["status"] == DOWN
    # no job has any polylog workspace yet (the whole fleet never came up): every down target is listed
    only = series([])
    only.results["up"].append(Sample(dead, 0.0, NOW))
    assert [(r.instance, r.status, r.workspace) for r in build_rows(only)] == [("127.0.0.1:1", DOWN, "")]
    # an alert without a workspace label never lands on such a row
    from polylog_console.core.fleet.model import AlertState, attach_alerts

    attach_alerts(rows, [AlertState("registry_mismatch", "active", [], workspace="")])
    assert rows[1].alerts == []


def test_a_flapping_workspace_ranks_with_the_drifting_ones_and_says_so():
    from polylog_console.core.fleet.prometheus import Sample
    from polylog_console.ui.fleet.app import row_cells

    specs = [workspace_spec(i) for i in (1, 2, 7, 11)]  # in sync, in sync, drift, stale
    specs[1]["drift_started"] = NOW - 900  # the flapping incident's start (after storage-0007's drift)
    data = series(specs)
    flapping = specs[1]  # its latest checkpoint matches: IN SYNC, but flapping
    data.results["flapping"] = [Sample({"instance": flapping["instance"], "job": "polylog"}, 1.0, NOW)]
    rows = build_rows(data)
    assert [(r.host, r.status, r.flapping) for r in rows] == [
        ("storage-0007", DRIFT, False), ("storage-0002", IN_SYNC, True), ("storage-0011", "STALE", False),
        ("storage-0001", IN_SYNC, False)]
    assert rows[1].to_json()["flapping"] is True and rows[0].to_json()["flapping"] is False
    assert row_cells(rows[1], NOW)[4] == "flap" and row_cells(rows[0], NOW)[4] == "12"
    from polylog_console.core.fleet.model import Endpoint, FleetSnapshot
    from polylog_console.ui.fleet.app import DetailScreen

    snapshot = FleetSnapshot(Endpoint("http://p"), Endpoint("http://a"), rows)
    text = DetailScreen(rows[1], snapshot, NOW).render_text().plain
    assert "flapping: an incident held open until flap_settle checkpoints agree" in text
