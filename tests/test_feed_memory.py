"""Memory is bounded by the batch and ring sizes, never by the feed (issue 10, item 6).

A burst of tiny lines (``{}``: ~3 bytes each, ~200 bytes of Python objects each once parsed) used
to come through as batches of a whole 1-4 MiB read: 350,000-1,400,000 records at once, several
queued, 2 GB of RSS for 3,000,000 lines. Here a smaller burst, written by another process while
the follower follows with a slow consumer, and the file read by ``read_records``: every batch holds
at most ``BATCH_RECORDS`` records, at most ``PENDING_RECORDS`` (+ one batch) wait in the channel, the
start-up history keeps at most ``HISTORY_OTHERS`` entries besides its checkpoints, and nothing is
lost. The RSS figures for 3,000,000 lines are in ``tests/bench/bench_memory.py``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from polylog_console.core.feed import follower as follower_module
from polylog_console.core.feed.follower import FeedFollower
from polylog_console.core.feed.records import BATCH_RECORDS, Checkpoint, Entry, read_records
from polylog_console.core.model.events import FeedEvent

TINY = 200_000
D = "c" * 64

WRITER = """
import sys, time
path, count = sys.argv[1], int(sys.argv[2])
chunk = b"{}\\n" * 20_000
with open(path, "ab") as f:
    for _ in range(count // 20_000):
        f.write(chunk); f.flush()
        time.sleep(0.005)
    f.write(b'{"label": "after-burst", "registry_digest": "%s"}\\n' % (b"c" * 64))
"""


def test_read_records_batches_are_bounded(tmp_path: Path) -> None:
    feed = tmp_path / "feed.jsonl"
    feed.write_bytes(b"{}\n" * TINY + b'{"registry_digest": "' + D.encode() + b'"}\n' + b"\n" * 50_000 + b"{}")
    sizes = []
    entries = checkpoints = 0
    last_line = 0
    for batch in read_records(feed):
        sizes.append(len(batch))
        entries += sum(1 for r in batch if type(r) is Entry)
        checkpoints += sum(1 for r in batch if type(r) is Checkpoint)
        assert all(r.line > last_line for r in batch[:1])
        last_line = batch[-1].line
    assert max(sizes) <= BATCH_RECORDS
    assert entries == TINY + 1 and checkpoints == 1
    assert last_line == TINY + 1 + 50_000 + 1  # line numbers and offsets stay exact across the slices


async def test_a_burst_of_tiny_lines_is_delivered_in_bounded_batches(tmp_path: Path) -> None:
    feed = tmp_path / "feed.jsonl"
    feed.write_bytes(b'{"label": "first", "registry_digest": "' + D.encode() + b'"}\n')
    follower = FeedFollower(feed)
    sizes: list[int] = []
    entries = 0
    done = asyncio.Event()
    started = asyncio.Event()

    async def consume() -> None:
        nonlocal entries
        async for batch in follower:
            sizes.append(len(batch))
            entries += sum(1 for r in batch if type(r) is Entry)
            if any(isinstance(r, FeedEvent) and r.kind == "started" for r in batch):
                started.set()
            if any(type(r) is Checkpoint and r.label == "after-burst" for r in batch):
                done.set()
                return
            await asyncio.sleep(0.002)  # a consumer slower than the reader: back-pressure

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 10)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(feed), str(TINY)])
    try:
        await asyncio.wait_for(done.wait(), 60)
    finally:
        writer.wait(timeout=30)
        follower.stop()
        await asyncio.wait_for(task, 10)
    stats = follower.stats()
    assert entries == TINY  # nothing lost
    assert max(sizes) <= BATCH_RECORDS, max(sizes)
    assert stats["peak_batch"] <= BATCH_RECORDS
    assert stats["peak_pending"] <= follower_module.PENDING_RECORDS + BATCH_RECORDS, stats
    assert len(sizes) >= TINY // BATCH_RECORDS


async def test_startup_history_of_a_feed_full_of_tiny_lines_is_bounded(tmp_path: Path) -> None:
    feed = tmp_path / "feed.jsonl"
    lines = [b'{"label": "cp-%d", "registry_digest": "%s"}' % (i, D.encode()) for i in range(5)]
    feed.write_bytes(b"\n".join(lines) + b"\n" + b"{}\n" * TINY + b'{"label": "cp-last", "registry_digest": "'
                     + D.encode() + b'"}\n' + b"{}\n" * 10)
    follower = FeedFollower(feed, history=100)
    first: list = []
    async for batch in follower:
        first = batch
        break
    follower.stop()
    started = [r for r in first if isinstance(r, FeedEvent) and r.kind == "started"]
    assert started, first[-3:]
    records = [r for r in first if not isinstance(r, FeedEvent)]
    labels = [r.label for r in records if type(r) is Checkpoint]
    assert labels == ["cp-0", "cp-1", "cp-2", "cp-3", "cp-4", "cp-last"]  # every checkpoint, in order
    others = [r for r in records if type(r) is not Checkpoint]
    assert len(others) == follower_module.HISTORY_OTHERS  # the latest ones
    assert records[-1].line == 5 + TINY + 1 + 10 and records[0].line == 1
    dropped = TINY + 10 - follower_module.HISTORY_OTHERS
    assert started[0].data["history_dropped"] == dropped and f"{dropped:,} older entries" in started[0].detail
    assert follower.stats()["history_dropped"] == dropped
