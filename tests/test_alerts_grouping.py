"""Grouping: one notification per distinct drift, reminders every repeat_interval, escalation,
supersession, and flapping (alternating match/mismatch) damped to one notification per drift per
repeat_interval. A real monitor produces the events; a real HTTP receiver counts what arrives."""

from __future__ import annotations

from polylog_console.core.alerts.delivery import Backoff
from polylog_console.core.alerts.dispatcher import AlertDispatcher
from polylog_console.core.alerts.webhook import WebhookSink
from polylog_console.core.model.config import MonitorConfig
from polylog_console.core.model.workspace import Workspace
from polylog_console.core.monitor.rules import Monitor
from polylog_console.core.registry.stored import StoredRegistry
from tests.servers import Receiver, checkpoint_line, records

FAST = Backoff(base=0.05, cap=0.2)


class Feed:
    """A real monitor fed one checkpoint at a time, its events going to the dispatcher."""

    def __init__(self, root, url: str, *, escalate_after: int = 100, **options) -> None:
        self.ws = Workspace.open(root)
        self.monitor = Monitor(StoredRegistry.for_workspace(self.ws), MonitorConfig(escalate_after=escalate_after),
                               self.ws)
        options = {"repeat_interval": 3600.0, "resolve_hold": 0.0, "backoff": FAST, **options}
        self.dispatcher = AlertDispatcher(self.ws.outbox, [WebhookSink(url)], workspace=str(self.ws.root),
                                          runbook_url="u", **options)
        self.n = 0

    def checkpoint(self, digest: str) -> None:
        self.n += 1
        self.dispatcher.submit(self.monitor.process(records(checkpoint_line(self.n, digest), first_line=self.n)))


def summary(requests) -> list[tuple[str, str]]:
    return [(r.json["code"], r.json["status"]) for r in requests]


async def test_flapping_gives_one_alert_and_one_resolution(small_ws):
    inc = small_ws.incident
    with Receiver() as receiver:
        feed = Feed(small_ws.root, receiver.url, resolve_hold=0.3)
        await feed.dispatcher.start()
        for _ in range(15):  # mismatch, match, mismatch, match, ...
            feed.checkpoint(inc.live_digest)
            feed.checkpoint(inc.stored_digest)
        got = await receiver.until(2, 10.0)  # the resolution comes once parity has held for resolve_hold
        assert await feed.dispatcher.flush(5)

        # the same drift returns after its resolution was announced, within repeat_interval: not announced
        feed.checkpoint(inc.live_digest)
        feed.checkpoint(inc.stored_digest)
        feed.checkpoint(inc.live_digest)
        assert await feed.dispatcher.flush(5)
        assert list((feed.ws.outbox / "webhook").glob("*.json")) == []
        await feed.dispatcher.close(grace=0.5)
    assert summary(got) == [("registry_mismatch", "firing"), ("registry_resolved", "resolved")]
    assert len(receiver.requests) == 2
    assert got[0].json["dedup_key"] == got[1].json["dedup_key"]
    assert feed.dispatcher.stats.suppressed >= 14


async def test_a_lasting_drift_is_reminded_every_repeat_interval_with_the_current_count(small_ws):
    inc = small_ws.incident
    with Receiver() as receiver:
        feed = Feed(small_ws.root, receiver.url, repeat_interval=0.4)
        await feed.dispatcher.start()
        feed.checkpoint(inc.live_digest)
        await receiver.until(1)
        for _ in range(4):
            feed.checkpoint(inc.live_digest)  # the same drift: no new notification
        assert len(receiver.requests) == 1
        got = await receiver.until(3, 10.0)
        await feed.dispatcher.close(grace=0.5)
    assert summary(got[:3]) == [("registry_mismatch", "firing")] * 3
    assert got[0].json["consecutive_mismatches"] == 1
    assert got[1].json["consecutive_mismatches"] == 5  # reminders carry the current count
    assert len({r.headers["x-polylog-delivery"] for r in got}) == len(got)  # each reminder is a new notification


async def test_escalation_then_one_resolution_for_both(small_ws):
    inc = small_ws.incident
    with Receiver() as receiver:
        feed = Feed(small_ws.root, receiver.url, escalate_after=3)
        await feed.dispatcher.start()
        for _ in range(5):
            feed.checkpoint(inc.live_digest)
        feed.checkpoint(inc.stored_digest)
        got = await receiver.until(3)
        assert await feed.dispatcher.flush(5)
        await feed.dispatcher.close()
    assert summary(receiver.requests) == [("registry_mismatch", "firing"), ("drift_persistent", "firing"),
                                          ("registry_resolved", "resolved")]
    assert got[1].json["consecutive_mismatches"] == 3 and got[1].json["severity"] == "critical"


async def test_a_new_drift_supersedes_the_old_one(small_ws):
    inc = small_ws.incident
    other = "e" * 64
    with Receiver() as receiver:
        feed = Feed(small_ws.root, receiver.url)
        await feed.dispatcher.start()
        feed.checkpoint(inc.live_digest)
        feed.checkpoint(other)
        got = await receiver.until(3)
        await feed.dispatcher.close()
    assert summary(got) == [("registry_mismatch", "firing"), ("registry_mismatch", "resolved"),
                            ("registry_mismatch", "firing")]
    assert got[0].json["dedup_key"] == got[1].json["dedup_key"] != got[2].json["dedup_key"]
    assert got[2].json["checkpoint"]["registry_digest"] == other


async def test_held_resolution_is_announced_when_stopping(small_ws):
    inc = small_ws.incident
    with Receiver() as receiver:
        feed = Feed(small_ws.root, receiver.url, resolve_hold=3600.0)
        await feed.dispatcher.start()
        feed.checkpoint(inc.live_digest)
        await receiver.until(1)
        feed.checkpoint(inc.stored_digest)
        assert await feed.dispatcher.flush(5) and len(receiver.requests) == 1  # held
        assert await feed.dispatcher.close(grace=5.0)
    assert summary(receiver.requests) == [("registry_mismatch", "firing"), ("registry_resolved", "resolved")]


async def test_bounded_queue_overflows_to_disk_and_keeps_order(small_ws):
    """More pending deliveries than the in-memory bound: the rest wait on disk, nothing is lost
    and the order is kept."""
    digests = [f"{i:064x}" for i in range(1, 8)]
    with Receiver(script=[503]) as receiver:  # the first attempt fails: the queue fills up behind it
        feed = Feed(small_ws.root, receiver.url, resolve_hold=3600.0, max_pending=2)
        await feed.dispatcher.start()
        for digest in digests:
            feed.checkpoint(digest)
        worker = feed.dispatcher.workers["webhook"]
        assert len(worker.queue) <= 2 and worker.pending == 7
        got = await receiver.until(7, 10.0)
        assert await feed.dispatcher.flush(5)
        await feed.dispatcher.close(grace=0.0)
    assert [r.json["checkpoint"]["registry_digest"] for r in got] == digests
