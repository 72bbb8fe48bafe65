"""The fleet end to end, with the real servers (SPEC §12): Debian's ``prometheus`` scraping three real
``watch --metrics`` processes (two drifting, one in sync) that post their alerts to a real
Alertmanager. ``fleet --json`` lists the three worst first with the right status and drift start;
``ack`` creates a silence that ``GET /api/v2/silences`` shows and the fleet row reports; a two-node
Alertmanager cluster receiving from one watcher notifies a test receiver once.

Everything listens on 127.0.0.1 free ports; under ``CI=true`` a missing binary fails the test."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import run_cli
from tests.promstack import AlertmanagerNode, Prometheus, Watcher, make_workspace
from tests.servers import Receiver, free_port, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fleet")
    opened = []
    try:
        am = AlertmanagerNode(tmp)
        opened.append(am)
        spaces = [make_workspace(tmp / "alpha", drifting=True, name="alpha", alertmanager=[am.url]),
                  make_workspace(tmp / "beta", drifting=True, name="beta", alertmanager=[am.url], drift_from=8),
                  make_workspace(tmp / "gamma", drifting=False, name="gamma", alertmanager=[am.url])]
        watchers = []
        for space in spaces:
            watcher = Watcher(space["root"])
            opened.append(watcher)
            watchers.append(watcher)
            space["instance"] = watcher.address
        dead = f"127.0.0.1:{free_port()}"  # a target that never came up (nothing listens there)
        prom = Prometheus(tmp, [w.address for w in watchers] + [dead], interval="1s")
        opened.append(prom)
        prom.wait_for("polylog_status == 1", 3)
        prom.wait_for("up == 0", 1)
        prom.wait_for("polylog_replica_match", 6)  # two replicas each: parity checked at start
        yield {"am": am, "prom": prom, "spaces": {s["name"]: s for s in spaces}, "tmp": tmp, "dead": dead}
    finally:
        for item in reversed(opened):
            item.close()


def fleet_json(stack, *extra: str) -> tuple[int, dict]:
    result = run_cli("fleet", "--json", "--workspace", str(stack["tmp"]), "--prometheus", stack["prom"].url,
                     "--alertmanager", stack["am"].url, *extra, timeout=60)
    assert result.out, result.err
    return result.code, json.loads(result.out)


def test_fleet_json_lists_every_workspace_worst_first(stack):
    code, doc = fleet_json(stack)
    assert code == 1  # two are drifting
    assert doc["prometheus"] == {"url": stack["prom"].url, "ok": True, "error": None}
    assert doc["alertmanager"]["ok"] is True
    rows = {r["workspace"]: r for r in doc["instances"]}
    assert set(rows) == {"alpha", "beta", "gamma", None}
    assert [r["status"] for r in doc["instances"]] == ["DRIFT", "DRIFT", "DOWN", "IN SYNC"]
    # the target that never came up: listed from ``up`` alone, DOWN, its workspace unknown
    dead = rows[None]
    assert (dead["instance"], dead["job"], dead["up"], dead["host"]) == (stack["dead"], "polylog", False, None)
    assert dead["console"] is None and dead["alerts"] == []
    # the older drift first
    assert [r["workspace"] for r in doc["instances"]][:2] == ["alpha", "beta"]
    for name in ("alpha", "beta"):
        row, space = rows[name], stack["spaces"][name]
        assert row["up"] is True and row["registry_match"] is False
        assert row["instance"] == space["instance"]
        assert row["console"] == f"ssh {row['host']} polylog-console --workspace {space['root']}"
        assert row["drift_started_at"] is not None
        from polylog_console.core.monitor.rules import MonitorView

        if "incident" in getattr(MonitorView, "__dataclass_fields__", {}):  # the incident's started_at
            assert row["drift_started_at"] == pytest.approx(space["drift_started_at"], abs=0.01)
        assert row["consecutive_mismatches"] >= 4
        assert row["replicas_total"] == 2 and row["replicas_matching"] == 1
        assert 0 <= row["latest_checkpoint_age_s"] < 120
    gamma = rows["gamma"]
    assert gamma["registry_match"] is True and gamma["drift_started_at"] is None
    assert gamma["consecutive_mismatches"] == 0
    # the watchers posted their drift to Alertmanager; the fleet shows it firing
    assert wait_until(lambda: any(a["alertname"] == "registry_mismatch"
                                  for a in fleet_json(stack)[1]["instances"][0]["alerts"]), timeout=20, interval=0.5)


def test_fleet_json_exit_2_when_prometheus_is_unreachable(stack, tmp_path):
    from tests.servers import free_port

    result = run_cli("fleet", "--json", "--workspace", str(tmp_path), "--prometheus",
                     f"http://127.0.0.1:{free_port()}", timeout=60)
    assert result.code == 2
    doc = json.loads(result.out)
    assert doc["prometheus"]["ok"] is False and "refused" in doc["prometheus"]["error"].lower()


def test_fleet_json_with_alertmanager_unreachable_warns_in_one_line(stack):
    refused = f"http://127.0.0.1:{free_port()}"
    result = run_cli("fleet", "--json", "--workspace", str(stack["tmp"]), "--prometheus", stack["prom"].url,
                     "--alertmanager", refused, timeout=60)
    assert result.code == 1  # Prometheus answered: the exit code is the fleet's state
    doc = json.loads(result.out)
    assert doc["prometheus"]["ok"] is True and doc["alertmanager"]["ok"] is False
    (line,) = result.err.splitlines()
    assert line.startswith("polylog-console: warning: Alertmanager") and "refused" in line.lower()


def test_ack_creates_a_silence_that_every_console_sees(stack):
    am = stack["am"]
    alpha = stack["spaces"]["alpha"]
    assert wait_until(lambda: any(a["labels"].get("workspace") == "alpha" for a in am.alerts()), timeout=20)
    # this workspace's ack: the current drift is read from its own feed and stored registry
    result = run_cli("ack", "--workspace", str(alpha["root"]), "--for", "30m", "--comment", "on it", "--json",
                     timeout=60)
    assert result.code == 0, result.err
    ack = json.loads(result.out)
    fired = [a for a in am.alerts() if a["labels"].get("workspace") == "alpha"]
    assert ack["matchers"] == {"workspace": "alpha", "dedup_key": fired[0]["labels"]["dedup_key"]}
    (silence,) = [s for s in am.silences() if s["id"] == ack["silence_id"]]
    assert silence["status"]["state"] == "active"
    assert silence["comment"] == "on it" and "@" in silence["createdBy"]
    assert {(m["name"], m["value"]) for m in silence["matchers"]} == set(ack["matchers"].items())
    # audited in the workspace
    audit = (alpha["root"] / "memory" / "audit" / "events.jsonl").read_text()
    assert ack["silence_id"] in audit and '"acknowledged"' in audit

    def acknowledged() -> bool:
        row = next(r for r in fleet_json(stack)[1]["instances"] if r["workspace"] == "alpha")
        return any(a["acknowledged_by"] == silence["createdBy"] and a["state"] == "suppressed"
                   and ack["silence_id"] in a["silenced_by"] and a["until"] for a in row["alerts"])

    assert wait_until(acknowledged, timeout=20, interval=0.5)

    # a remote NAME (no local workspace): its drift's dedup_key comes from Alertmanager's alerts
    assert wait_until(lambda: any(a["labels"].get("workspace") == "beta" for a in am.alerts()), timeout=20)
    remote = run_cli("ack", "beta", "--workspace", str(stack["tmp"]), "--alertmanager", am.url, "--alert",
                     "registry_mismatch", "--json", timeout=60)
    assert remote.code == 0, remote.err
    doc = json.loads(remote.out)
    beta_key = next(a["labels"]["dedup_key"] for a in am.alerts() if a["labels"].get("workspace") == "beta")
    assert doc["matchers"] == {"workspace": "beta", "dedup_key": beta_key, "alertname": "registry_mismatch"}

    # ack --expire ends it
    gone = run_cli("ack", "--expire", doc["silence_id"], "--workspace", str(stack["tmp"]), "--alertmanager", am.url,
                   "--json", timeout=60)
    assert gone.code == 0, gone.err
    (expired,) = [s for s in am.silences() if s["id"] == doc["silence_id"]]
    assert expired["status"]["state"] == "expired"

    # nothing to acknowledge on an in-sync workspace (exit 1), unless --all
    gamma = stack["spaces"]["gamma"]
    none = run_cli("ack", "--workspace", str(gamma["root"]), "--json", timeout=60)
    assert none.code == 1 and json.loads(none.out)["silence_id"] is None


def test_two_node_cluster_notifies_once(tmp_path):
    with Receiver() as hook:
        one = AlertmanagerNode(tmp_path, hook=hook.url, cluster=True, label="am1")
        try:
            two = AlertmanagerNode(tmp_path, hook=hook.url, cluster=True, peers=[one.peer], label="am2")
            try:
                assert wait_until(lambda: one.cluster_peers() == 2 and two.cluster_peers() == 2, timeout=20)
                space = make_workspace(tmp_path / "delta", drifting=True, name="delta",
                                       alertmanager=[one.url, two.url])
                with Watcher(space["root"]):
                    # posted to each member (as Prometheus does for an HA pair) ...
                    for node in (one, two):
                        assert wait_until(lambda n=node: any(a["labels"].get("workspace") == "delta"
                                                             for a in n.alerts()), timeout=20)
                    got = hook.wait_for(1, timeout=30)
                    time.sleep(5)  # > peer timeout + group_interval: a duplicate would have arrived
                    bodies = [r.json for r in hook.requests]
                    # one notification per alert group (the route groups by workspace, alertname,
                    # dedup_key: the drift and its escalation), not one per cluster member
                    keys = [b["groupKey"] for b in bodies]
                    assert len(keys) == len(set(keys)), bodies
                    names = sorted(a["labels"]["alertname"] for b in bodies for a in b["alerts"])
                    firing = sorted({a["labels"]["alertname"] for a in one.alerts()
                                     if a["labels"].get("workspace") == "delta"})
                    assert names == firing and "registry_mismatch" in names
                    assert {a["labels"]["workspace"] for b in bodies for a in b["alerts"]} == {"delta"}
                    assert got[0].json["status"] == "firing"
            finally:
                two.close()
        finally:
            one.close()


async def test_the_fleet_screen_on_the_real_servers(stack):
    from textual.widgets import DataTable

    from polylog_console.core.fleet.model import FleetSource
    from polylog_console.core.fleet.prometheus import PrometheusClient
    from polylog_console.core.fleet.silences import AlertmanagerClient
    from polylog_console.ui.fleet.app import FleetApp

    source = FleetSource(PrometheusClient(stack["prom"].url), AlertmanagerClient(stack["am"].url))
    app = FleetApp(source)  # the refresh interval is Prometheus' scrape interval
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            for _ in range(500):
                if app.refreshes >= 2:
                    break
                await pilot.pause(0.02)
            assert app.interval == 1.0
            assert app.refreshes >= 2  # the timer refreshed it again within ~1 s
            table = app.query_one(DataTable)
            hosts = [str(table.get_row_at(i)[1]) for i in range(table.row_count)]
            assert hosts == ["alpha", "beta", f"? {stack['dead']}", "gamma"]
    finally:
        source.close()
