"""``fleet`` and ``ack`` at the command line, on their edges (issue 13 review): every URL checked
before any client or screen (one line, exit 2), an unreachable Prometheus is the document *and* a
line on stderr, the fleet screen refuses to start without a terminal (and never spins), ``ack``
rejects unknown alert codes, says when a workspace is unknown to Alertmanager, reports a silence
already expired, refuses ``--expire`` mixed with the options of a new acknowledgement, and names
a malformed silence id in one clean line (never Alertmanager's raw answer).

The ``ack`` tests run a real Alertmanager on a free loopback port (:mod:`tests.promstack`)."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from polylog_console.core.model import events as ev
from tests.conftest import run_cli
from tests.promstack import AlertmanagerNode
from tests.servers import free_port, wait_until


def one_error_line(result) -> str:
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("polylog-console: error: "), result.err
    return lines[0]


# --- fleet: URLs, unreachable Prometheus, no terminal ------------------------------------------------

BAD_URLS = ["notaurl", "ftp://x", "http://:80", "http://[::1", "http://h:99999", "https://"]


@pytest.mark.parametrize("url", BAD_URLS)
def test_fleet_rejects_a_prometheus_option_that_is_not_an_http_url(tmp_path, url):
    for json_flag in (["--json"], []):
        result = run_cli("fleet", *json_flag, "--workspace", str(tmp_path), "--prometheus", url, input="", timeout=30)
        assert result.code == 2 and result.out == ""
        line = one_error_line(result)
        assert "--prometheus" in line and "://notaurl" not in line


def test_fleet_rejects_bad_alertmanager_urls_and_config_keys(tmp_path):
    ok = f"http://127.0.0.1:{free_port()}"
    result = run_cli("fleet", "--json", "--workspace", str(tmp_path), "--prometheus", ok, "--alertmanager", "ftp://x",
                     timeout=30)
    assert result.code == 2 and result.out == "" and "--alertmanager" in one_error_line(result)
    (tmp_path / "monitoring.toml").write_text('[fleet]\nprometheus_url = "http://:9090"\n')
    result = run_cli("fleet", "--json", "--workspace", str(tmp_path), timeout=30)
    assert result.code == 2 and result.out == "" and "fleet.prometheus_url" in one_error_line(result)
    (tmp_path / "monitoring.toml").write_text(f'[fleet]\nprometheus_url = "{ok}"\n'
                                              'alertmanager_url = ["http://am:9093", "http://am2:99999"]\n')
    result = run_cli("fleet", "--json", "--workspace", str(tmp_path), timeout=30)
    assert result.code == 2 and result.out == "" and "fleet.alertmanager_url" in one_error_line(result)
    # a password in a bad URL is never echoed
    result = run_cli("fleet", "--json", "--workspace", str(tmp_path), "--prometheus", "https://bob:s3cret@[::1",
                     timeout=30)
    assert result.code == 2 and "s3cret" not in result.err


def test_unreachable_prometheus_prints_the_document_and_one_line(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    result = run_cli("fleet", "--json", "--workspace", str(tmp_path), "--prometheus", url, timeout=30)
    assert result.code == 2
    doc = json.loads(result.out)
    assert doc["prometheus"]["ok"] is False and doc["prometheus"]["url"] == url and doc["prometheus"]["error"]
    line = one_error_line(result)
    assert "refused" in line.lower() and "127.0.0.1" in line


def test_the_fleet_screen_needs_a_terminal(tmp_path):
    started = time.monotonic()
    result = run_cli("fleet", "--workspace", str(tmp_path), "--prometheus", f"http://127.0.0.1:{free_port()}",
                     input="", timeout=30)
    assert result.code == 2 and result.out == ""
    assert "needs a terminal" in one_error_line(result)
    assert time.monotonic() - started < 15


async def test_the_fleet_screen_never_retries_in_a_loop_when_prometheus_fails_at_once():
    """A refused connection fails in microseconds: the screen still asks only at its interval."""
    from polylog_console.core.fleet.model import FleetSource
    from polylog_console.core.fleet.prometheus import PrometheusClient
    from polylog_console.ui.fleet.app import FleetApp

    calls = []

    class Counting(FleetSource):
        def fetch(self):
            calls.append(time.monotonic())
            return super().fetch()

    for interval, most in ((None, 1), (0.25, 6)):
        calls.clear()
        source = Counting(PrometheusClient(f"http://127.0.0.1:{free_port()}", timeout=1))
        app = FleetApp(source, interval=interval)
        try:
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.pause(1.0)
                assert app.snapshot is not None and app.snapshot.prometheus.ok is False
        finally:
            source.close()
        assert 1 <= len(calls) <= most, (interval, len(calls))


# --- ack ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def am(tmp_path_factory):
    with AlertmanagerNode(tmp_path_factory.mktemp("ack-am")) as node:
        yield node


def ack(tmp_path, am, *args: str):
    return run_cli("ack", "--workspace", str(tmp_path), "--alertmanager", am.url, *args, timeout=30)


def test_ack_rejects_an_unknown_alert_code(tmp_path, am):
    before = len(am.silences())
    result = ack(tmp_path, am, "somewhere", "--all", "--alert", "bogus_code")
    assert result.code == 2 and result.out == ""
    line = one_error_line(result)
    assert "bogus_code" in line and all(code in line for code in ev.ALERT_CODES)
    assert len(am.silences()) == before  # nothing created


def test_ack_of_an_empty_name_is_a_usage_error_not_this_workspace(tmp_path, am):
    result = ack(tmp_path, am, "", "--all")
    assert result.code == 2 and result.out == "" and "NAME is empty" in one_error_line(result)


def test_ack_of_a_workspace_unknown_to_alertmanager_says_so(tmp_path, am):
    result = ack(tmp_path, am, "nosuch")
    assert result.code == 1 and "unknown to Alertmanager" in result.out and "nosuch" in result.out
    doc = json.loads(ack(tmp_path, am, "nosuch", "--json").out)
    assert doc["silence_id"] is None and doc["unknown_workspace"] is True
    # a workspace Alertmanager knows (it has an alert), yet with no drift: nothing to acknowledge
    alert = [{"labels": {"alertname": ev.STALE_DIGEST, "workspace": "known", "dedup_key": "k1"},
              "startsAt": "2026-01-01T00:00:00Z"}]
    httpx.post(f"{am.url}/api/v2/alerts", json=alert, timeout=5).raise_for_status()
    assert wait_until(lambda: any(a["labels"].get("workspace") == "known" for a in am.alerts()), 10)
    known = ack(tmp_path, am, "known", "--json")
    assert known.code == 1
    doc = json.loads(known.out)
    assert doc["unknown_workspace"] is False and "no current drift" in doc["error"]


def test_ack_expire_twice_says_it_was_already_expired(tmp_path, am):
    created = json.loads(ack(tmp_path, am, "gone-soon", "--all", "--json").out)
    sid = created["silence_id"]
    first = ack(tmp_path, am, "--expire", sid, "--json")
    assert first.code == 0, first.err
    assert json.loads(first.out)["already_expired"] is False
    again = ack(tmp_path, am, "--expire", sid, "--json")
    assert again.code == 0, again.err
    doc = json.loads(again.out)
    assert doc["expired"] is True and doc["already_expired"] is True
    text = ack(tmp_path, am, "--expire", sid)
    assert text.code == 0 and "already expired" in text.out
    audit = (tmp_path / "memory" / "audit" / "events.jsonl").read_text()
    assert audit.count('"acknowledgement_expired"') == 1  # the second and third did nothing


@pytest.mark.parametrize("extra", [["--all"], ["--alert", "registry_mismatch"], ["--for", "1h"],
                                   ["--comment", "x"], ["somename"]])
def test_ack_expire_with_the_options_of_a_new_ack_is_a_usage_error(tmp_path, am, extra):
    result = ack(tmp_path, am, "--expire", "0f3c9e2a-5b1d-4c8e-9a7f-2d6b8e1c4a90", *extra)
    assert result.code == 2 and result.out == ""
    assert "--expire" in one_error_line(result)


def test_ack_expire_of_a_malformed_or_unknown_id_is_one_clean_line(tmp_path, am):
    result = ack(tmp_path, am, "--expire", "nonsense-id")
    assert result.code == 2 and result.out == ""
    line = one_error_line(result)
    assert "nonsense-id" in line and "601" not in line and "{" not in line
    hostile = ack(tmp_path, am, "--expire", "x\x1b[31mred")
    assert hostile.code == 2 and "\x1b" not in hostile.err
    one_error_line(hostile)
    unknown = ack(tmp_path, am, "--expire", "00000000-0000-0000-0000-000000000000")
    assert unknown.code == 2 and "no silence 00000000-0000-0000-0000-000000000000" in one_error_line(unknown)


def test_display_url_never_invents_a_scheme_and_keeps_ipv6_brackets():
    from polylog_console.core.fleet.http import display_url

    assert display_url("notaurl") == "notaurl"
    assert display_url("http://[::1]:9090/prom?token=x") == "http://[::1]:9090/prom"
    assert display_url("https://bob:s3cret@prom.example/") == "https://prom.example/"
    assert "\x1b" not in display_url("http://h/\x1b[31m")
