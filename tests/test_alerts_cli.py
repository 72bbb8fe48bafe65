"""``polylog-console watch --once`` runs the fan-out too: real processes, a real receiver.
Repeated runs (e.g. from cron) do not repeat what was announced; the run after parity returns
announces the resolution."""

from __future__ import annotations

import json
import time

from tests.servers import Receiver, checkpoint_line

SECRET = "cli-webhook-secret"


def configure(root, url: str) -> None:
    with open(root / "monitoring.toml", "a") as handle:
        handle.write(f'\n[webhook]\nurl = "{url}"\ntimeout = 2\n')


def test_watch_once_delivers_signed_alerts_once(small_ws, cli):
    env = {"POLYLOG_WEBHOOK_SECRET": SECRET}
    with Receiver(secret=SECRET) as receiver:
        configure(small_ws.root, receiver.url)
        first = cli("watch", "--once", "--json", "--workspace", str(small_ws.root), env=env)
        assert first.code == 1, first.err  # the sample feed ends in drift
        lines = [json.loads(line) for line in first.out.splitlines()]
        deliveries = [e for e in lines if e["event"] == "delivery"]
        assert sorted(e["code"] for e in deliveries) == ["drift_persistent", "registry_mismatch", "stale_digest"]
        assert {e["outcome"] for e in deliveries} == {"delivered"}
        assert len(receiver.requests) == 3 and all(r.signature_ok for r in receiver.requests)
        assert SECRET not in first.out and SECRET not in first.err

        again = cli("watch", "--once", "--workspace", str(small_ws.root), env=env)
        assert again.code == 1
        assert "delivery" not in again.out  # already announced, within repeat_interval
        assert len(receiver.requests) == 3

        with open(small_ws.feed, "ab") as feed:
            feed.write(checkpoint_line(999, small_ws.incident.stored_digest, timestamp=time.time()) + b"\n")
        healed = cli("watch", "--once", "--workspace", str(small_ws.root), env=env)
        assert healed.code == 0, healed.out + healed.err
        assert "delivery        webhook delivered: registry_resolved resolved" in healed.out
    got = [(r.json["code"], r.json["status"]) for r in receiver.requests[3:]]
    assert ("registry_resolved", "resolved") in got and ("stale_digest", "resolved") in got
    assert list((small_ws.root / "memory" / "outbox" / "webhook").glob("*.json")) == []


def test_watch_once_with_an_unreachable_sink_keeps_the_alert(small_ws, cli, tmp_path):
    from tests.servers import refused_url

    configure(small_ws.root, refused_url())
    result = cli("watch", "--once", "--workspace", str(small_ws.root), env={"POLYLOG_WEBHOOK_SECRET": SECRET},
                 timeout=120)
    assert result.code == 1
    assert "delivery        webhook retry: " in result.out and "ConnectError" in result.out
    assert len(list((small_ws.root / "memory" / "outbox" / "webhook").glob("*.json"))) == 3


def test_watch_stops_on_sigterm_with_undelivered_alerts_persisted(small_ws):
    """The headless monitor, a real process: its sink is down; SIGTERM stops it promptly (exit 0)
    and every alert it could not deliver is in the outbox for the next run."""
    import os
    import signal
    import subprocess
    import sys

    from tests.servers import refused_url

    configure(small_ws.root, refused_url())
    env = {**os.environ, "POLYLOG_WEBHOOK_SECRET": SECRET}
    env.pop("POLYLOG_WORKSPACE", None)
    proc = subprocess.Popen([sys.executable, "-m", "polylog_console", "watch", "--json", "--workspace",
                             str(small_ws.root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        retried: set[str] = set()
        for raw in proc.stdout:
            event = json.loads(raw)
            if event["event"] == "delivery" and event["outcome"] == "retry":
                retried.add(event["code"])
                break
        assert retried, proc.stderr.read().decode()
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert time.monotonic() - started < 15
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    pending = sorted(json.loads(p.read_bytes())["notification"]["code"]
                     for p in (small_ws.root / "memory" / "outbox" / "webhook").glob("*.json"))
    assert pending == ["drift_persistent", "registry_mismatch", "stale_digest"]
    log = small_ws.root / "memory" / "audit" / "events.jsonl"
    audit = [json.loads(line) for line in log.read_text().splitlines()]
    assert any(e["event"] == "alerts_persisted" and e["deliveries"] == 3 for e in audit)
    assert all(SECRET not in json.dumps(e) for e in audit)


def test_watch_serves_prometheus_metrics_and_prints_deliveries(small_ws):
    """``watch --metrics ADDR:PORT``: a real scrape of a real watcher that delivered its alerts."""
    import os
    import signal
    import subprocess
    import sys

    import httpx

    from tests.servers import free_port, wait_until

    port = free_port()
    with Receiver(secret=SECRET) as receiver:
        configure(small_ws.root, receiver.url)
        env = {**os.environ, "POLYLOG_WEBHOOK_SECRET": SECRET, "NO_COLOR": "1"}
        env.pop("POLYLOG_WORKSPACE", None)
        proc = subprocess.Popen([sys.executable, "-m", "polylog_console", "watch", "--metrics", f"127.0.0.1:{port}",
                                 "--workspace", str(small_ws.root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env, text=True)
        try:
            receiver.wait_for(3, 30)
            text = ""

            def scraped() -> bool:
                nonlocal text
                try:
                    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
                except httpx.HTTPError:
                    return False
                return 'polylog_alerts_sent_total{sink="webhook"} 3.0' in text

            assert wait_until(scraped, timeout=20), text
            assert "polylog_registry_match 0.0" in text
            assert 'polylog_status{status="DRIFT"} 1.0' in text
            assert "polylog_consecutive_mismatches 6.0" in text
            assert "polylog_checkpoints_total 20.0" in text
            assert "polylog_ingest_errors_total 0.0" in text
            assert 'polylog_replica_match{replica="replica-eu"} 1.0' in text
            assert 'polylog_replica_match{replica="replica-us"} 0.0' in text
            assert 'polylog_outbox_pending{sink="webhook"} 0.0' in text
            assert "polylog_detection_latency_seconds_bucket" in text
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"serving http://127.0.0.1:{port}/metrics" in out
    assert "delivery     webhook delivered: registry_mismatch firing" in out


def test_watch_metrics_address_errors_are_one_line(small_ws, cli):
    bad = cli("watch", "--metrics", "nonsense", "--workspace", str(small_ws.root))
    assert bad.code == 2 and bad.err.count("\n") == 1 and "ADDR:PORT" in bad.err
