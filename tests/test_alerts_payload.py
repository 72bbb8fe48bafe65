"""Renderings and building blocks: the SPEC §7 body and its signature, Alertmanager alerts, the
email text, backoff, Retry-After, and the outbox's handling of damaged files."""

from __future__ import annotations

import hashlib
import hmac
import random
import time

import orjson

from polylog_console.core.alerts.delivery import Backoff, http_retryable, parse_retry_after
from polylog_console.core.alerts.outbox import Outbox
from polylog_console.core.alerts.payload import (
    Notification,
    alertmanager_alerts,
    email_text,
    encode_body,
    from_alert,
    signature,
    verify_signature,
    webhook_body,
)
from polylog_console.core.model import events as ev

DIFF = {"missing": 1, "unexpected": 0, "mismatched": 1, "per_namespace": {"clusters": {}},
        "sample": {"missing": [{"namespace": "clusters", "signature": "a" * 32, "symbol": "Ω"}], "unexpected": [],
                   "mismatched": [{"namespace": "megas", "signature": "b" * 32, "stored": "x", "live": "y"}]}}


def alert(code: str = ev.REGISTRY_MISMATCH, status: str = "firing", **kw) -> ev.Alert:
    base = dict(code=code, status=status, dedup_key="k" * 24, summary="checkpoint c-1 digest differs",
                raised_at=1_700_000_000.0, checkpoint={"label": "c-1", "line": 7, "timestamp": 1.5,
                                                       "registry_digest": "b" * 64},
                stored_digest="a" * 64, live_digest="b" * 64, consecutive_mismatches=2, since=1_699_999_000.0,
                diff=DIFF)
    base.update(kw)
    return ev.Alert(**base)


def note(**kw) -> Notification:
    return from_alert(alert(**kw), workspace="/srv/ws", runbook_url="https://rb/x", now=1_700_000_000.0, host="h1")


def test_webhook_body_is_the_spec_shape_and_the_signature_is_hmac_of_the_bytes():
    body = webhook_body(note(), sent_at=1_700_000_001.0)
    assert body == {
        "version": 1, "code": "registry_mismatch", "status": "firing", "severity": "critical",
        "dedup_key": "k" * 24, "workspace": "/srv/ws", "host": "h1", "sent_at": "2023-11-14T22:13:21.000Z",
        "checkpoint": {"label": "c-1", "timestamp": 1.5, "registry_digest": "b" * 64},
        "stored_digest": "a" * 64, "consecutive_mismatches": 2,
        "diff": {"missing": 1, "unexpected": 0, "mismatched": 1, "sample": DIFF["sample"]},
        "runbook_url": "https://rb/x"}
    raw = encode_body(body)
    expected = "sha256=" + hmac.new(b"key", raw, hashlib.sha256).hexdigest()
    assert signature(raw, "key") == expected
    assert verify_signature(raw, "key", expected)
    assert not verify_signature(raw + b" ", "key", expected)
    assert not verify_signature(raw, "other", expected)
    assert not verify_signature(raw, "key", None)


def test_unknown_diff_is_null_not_zero():
    assert webhook_body(note(diff=None), 0)["diff"] is None


def test_notification_round_trips_through_json():
    n = note(resolves=(ev.REGISTRY_MISMATCH,), reason="parity", status="resolved")
    assert Notification.from_json(orjson.loads(orjson.dumps(n.to_json()))) == n
    reminder = n.again(5.0, consecutive=9)
    assert reminder.id != n.id and reminder.repeat == 1 and reminder.consecutive_mismatches == 9


def test_alertmanager_firing_and_resolution_carry_the_same_labels():
    firing = alertmanager_alerts(note(), now=1_700_000_000.0, valid_for=240)
    (a,) = firing
    assert a["labels"] == {"alertname": "registry_mismatch", "code": "registry_mismatch", "workspace": "/srv/ws",
                           "severity": "critical", "dedup_key": "k" * 24, "host": "h1"}
    assert set(a["annotations"]) == {"summary", "description", "runbook_url"}
    assert a["startsAt"] == "2023-11-14T21:56:40.000Z" and a["endsAt"] == "2023-11-14T22:17:20.000Z"
    resolved = alertmanager_alerts(
        note(code=ev.REGISTRY_RESOLVED, status="resolved", resolves=(ev.REGISTRY_MISMATCH, ev.DRIFT_PERSISTENT)),
        now=1_700_000_100.0, valid_for=240)
    assert [r["labels"]["alertname"] for r in resolved] == ["registry_mismatch", "drift_persistent"]
    assert resolved[0]["labels"] == a["labels"]  # same identity: Alertmanager resolves that alert
    assert all(r["endsAt"] == "2023-11-14T22:15:00.000Z" for r in resolved)


def test_email_text_escapes_feed_text_and_lists_the_runbook():
    text = email_text(note(summary="label \x1b[31mred\x1b[0m \u202e"))
    assert "\x1b" not in text and "\u202e" not in text and "\\x1b[31m" in text
    assert "missing    clusters/" in text and "mismatched megas/" in text
    assert "polylog-console replicas" in text
    assert "Runbook (manual response)" not in email_text(note(status="resolved"))


def test_backoff_grows_with_jitter_and_is_capped():
    rng = random.Random(1)
    b = Backoff(base=1.0, factor=2.0, cap=10.0)
    for attempt, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (6, 10.0), (30, 10.0)):
        delays = {b.delay(attempt, rng=rng) for _ in range(20)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays) and len(delays) > 1
    assert b.delay(1, retry_after=7.0, rng=rng) == 7.0
    assert b.delay(1, retry_after=999.0, rng=rng) == 10.0


def test_retry_after_and_which_statuses_retry():
    now = time.time()
    assert parse_retry_after("120", now) == 120.0
    from email.utils import formatdate

    assert 25 <= parse_retry_after(formatdate(now + 30, usegmt=True), now) <= 31
    assert parse_retry_after("soon", now) is None and parse_retry_after(None, now) is None
    assert [s for s in (200, 301, 400, 401, 404, 408, 409, 422, 429, 500, 502, 503) if http_retryable(s)] == [
        408, 429, 500, 502, 503]


def test_outbox_sets_damaged_files_aside_and_keeps_order(tmp_path):
    box = Outbox(tmp_path / "outbox", durable=False)
    first = box.put("webhook", note())
    second = box.put("webhook", note(code=ev.DRIFT_PERSISTENT))
    damaged = tmp_path / "outbox" / "webhook" / "00000000000000000001-000000-bad.json"
    damaged.write_text("{ not json")
    loaded, bad = box.load("webhook")
    assert [p.note.id for p in loaded] == [first.note.id, second.note.id]
    assert len(bad) == 1 and damaged.with_suffix(".bad").exists() and not damaged.exists()
    assert box.count("webhook") == 2
    box.remove(first)
    assert box.count("webhook") == 1
    assert box.acquire() and box.acquire()  # re-entrant in one process
    other = Outbox(tmp_path / "outbox")
    assert not other.acquire()  # flock: one deliverer per outbox
    box.release()
    assert other.acquire()
    other.release()


def test_dashboard_banner_follows_the_drift_and_its_count(small_ws):
    from polylog_console.core.alerts.dashboard import Dashboard
    from polylog_console.core.model.workspace import Workspace
    from polylog_console.core.monitor.rules import Monitor
    from polylog_console.core.registry.stored import StoredRegistry
    from tests.servers import checkpoint_line, records

    ws = Workspace.open(small_ws.root)
    monitor = Monitor(StoredRegistry.for_workspace(ws), workspace=ws)
    board = Dashboard("https://rb/x")
    inc = small_ws.incident
    assert board.apply(monitor.process(records(checkpoint_line(1, inc.live_digest))))
    assert board.top.code == "registry_mismatch" and board.top.consecutive_mismatches == 1
    assert board.top.runbook_url == "https://rb/x" and "rehydrate" in board.top.hints
    assert board.apply(monitor.process(records(checkpoint_line(2, inc.live_digest), first_line=2)))
    assert board.top.consecutive_mismatches == 2
    (acked,) = board.acknowledge("op@host")
    assert acked.acknowledged_by == "op@host" and board.top.acknowledged_by == "op@host"
    board.apply(monitor.process(records(checkpoint_line(3, inc.stored_digest), first_line=3)))
    assert board.active == []
