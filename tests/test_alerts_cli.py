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
