"""The feed follower against a feed written by ANOTHER PROCESS (tests/feedwriter.py).

Every test compares the exact sequence of records received (their raw bytes, in order) with what
the writer wrote: bursts split at random byte positions, rotation, truncation (also truncate then
regrow past the old offset), deletion and re-creation, atomic replace, a feed that does not exist
yet; in inotify mode and in polling mode.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from polylog_console.core.feed.follower import FeedFollower
from polylog_console.core.feed.records import Checkpoint, Entry, IngestError
from polylog_console.core.model.events import FeedEvent
from tests.feedwriter import WriterProcess, expected_lines

MODES = [pytest.param(False, id="inotify"), pytest.param(True, id="poll")]


class Collector:
    """Iterates a follower in a task, keeping every record and feed event in order."""

    def __init__(self, follower: FeedFollower) -> None:
        self.follower = follower
        self.records: list = []
        self.events: list[FeedEvent] = []
        self.batches: list[list] = []
        self.progress = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for batch in self.follower:
            self.batches.append(batch)
            for item in batch:
                if isinstance(item, FeedEvent):
                    self.events.append(item)
                else:
                    self.records.append(item)
            self.progress.set()

    def received(self) -> int:
        return len(self.records)

    async def wait_for(self, predicate, timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self.progress.clear()
                await self.progress.wait()

    async def stop(self) -> None:
        self.follower.stop()
        await asyncio.wait_for(self.task, 5)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def raw(self) -> list[bytes]:
        return [r.raw for r in self.records]


async def follow_writer(feed: Path, poll: bool, *writer_args: str, history: int = 500) -> tuple[Collector, int]:
    follower = FeedFollower(feed, poll=poll, poll_interval=0.05 if poll else 0.25, history=history)
    collector = Collector(follower)
    await collector.wait_for(lambda: "started" in collector.kinds())
    writer = WriterProcess(feed, *writer_args)
    written = await writer.run(collector.received, collector.progress)
    await collector.wait_for(lambda: collector.received() >= written)
    await asyncio.sleep(0.05)  # anything extra (a duplicate) would arrive now
    await collector.stop()
    return collector, written


def assert_sequence(collector: Collector, written: int, seed: int = 0) -> None:
    got = collector.raw()
    want = expected_lines(written, seed)
    assert len(got) == len(want)
    first_bad = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), None)
    assert first_bad is None, f"record {first_bad}: got {got[first_bad]!r}, want {want[first_bad]!r}"


@pytest.mark.parametrize("poll", MODES)
async def test_ten_thousand_records_split_bursts_rotation_truncation_deletion(tmp_path: Path, poll: bool) -> None:
    """The feed does not exist at start; 10,000 records arrive in bursts cut at random byte
    positions, with rotation, truncation, deletion + re-creation and atomic replace mid-stream."""
    feed = tmp_path / "coordination" / "context-brief.jsonl"
    feed.parent.mkdir()
    ops = ("1500:sync,2000:rotate,"  # 1500..1999 written but maybe unread when the file is renamed away
           "3500:sync,3500:truncate,"  # truncation: whatever was read before stays delivered
           "5000:sync,5500:delete,"  # 5000..5499 are read from the deleted file's descriptor
           "6500:sync,7000:replace,"
           "8000:sync,8500:rotate")
    collector, written = await follow_writer(feed, poll, "--records", "10000", "--split", "--burst", "50:400",
                                             "--pause", "0.004", "--ops", ops)
    assert written == 10_000
    assert_sequence(collector, written)
    kinds = collector.kinds()
    assert kinds[:3] == ["missing", "started", "created"]
    assert kinds.count("rotated") == 2
    assert kinds.count("truncated") == 1
    assert kinds.count("deleted") == 2  # the deletion and the atomic replace (the old file lost its last link)
    assert kinds.count("created") == 1 + 2 + 2  # at start, after each rotation, after each deletion
    assert "error" not in kinds
    f = collector.follower
    assert f.rotations == 2 and f.truncations == 1 and f.deletions == 2
    want = expected_lines(written)
    assert f.ingest_errors == sum(1 for r in collector.records if isinstance(r, IngestError)) == sum(
        1 for i in range(written) if i % 97 == 96)
    assert f.entries == sum(1 for r in collector.records if isinstance(r, Entry)) > 0
    assert f.checkpoints == sum(1 for r in collector.records if isinstance(r, Checkpoint))
    assert f.bytes_read >= sum(len(x) + 1 for x in want)
    checkpoints = [r for r in collector.records if isinstance(r, Checkpoint)]
    assert list(f.recent) == checkpoints[-500:]  # the ring: the latest `history` checkpoints, in order


@pytest.mark.parametrize("poll", MODES)
async def test_line_numbers_restart_with_each_file(tmp_path: Path, poll: bool) -> None:
    feed = tmp_path / "feed.jsonl"
    collector, written = await follow_writer(feed, poll, "--records", "600", "--split",
                                             "--ops", "200:sync,300:rotate,400:sync,400:truncate")
    assert_sequence(collector, written)
    lines = [r.line for r in collector.records]
    assert lines == list(range(1, 301)) + list(range(1, 101)) + list(range(1, 201))
    assert [r.offset for r in collector.records[:2]] == [0, len(expected_lines(1)[0]) + 1]


@pytest.mark.parametrize("poll", MODES)
async def test_truncate_then_regrow_past_the_offset(tmp_path: Path, poll: bool) -> None:
    """The feed is truncated and at once regrown beyond the old offset: inotify says only
    "modified" and the size alone looks like growth; the fingerprint catches it."""
    feed = tmp_path / "feed.jsonl"
    collector, written = await follow_writer(feed, poll, "--records", "3000", "--burst", "1000:1000",
                                             "--ops", "1000:sync,1000:truncate")
    assert_sequence(collector, written)
    assert collector.kinds().count("truncated") == 1
    assert [r.line for r in collector.records[1000:1003]] == [1, 2, 3]


@pytest.mark.parametrize("poll", MODES)
async def test_deleted_then_recreated_later(tmp_path: Path, poll: bool) -> None:
    feed = tmp_path / "feed.jsonl"
    feed.write_bytes(b"")
    collector, written = await follow_writer(feed, poll, "--records", "900", "--split", "--burst", "20:60",
                                             "--ops", "300:delete,300:pause,300:pause,500:sync,600:delete")
    assert_sequence(collector, written)
    kinds = collector.kinds()
    assert kinds[0] == "started" and kinds.count("deleted") == 2 and kinds.count("created") == 2


async def test_missing_directory_at_start(tmp_path: Path) -> None:
    """Neither the feed nor its directory exist yet: the follower waits for both."""
    feed = tmp_path / "later" / "feed.jsonl"
    follower = FeedFollower(feed)
    follower.RETRY_SECONDS = 0.05
    collector = Collector(follower)
    await collector.wait_for(lambda: "started" in collector.kinds())
    assert collector.kinds() == ["missing", "started"]
    feed.parent.mkdir()
    writer = WriterProcess(feed, "--records", "500", "--split")
    written = await writer.run(collector.received, collector.progress)
    await collector.wait_for(lambda: collector.received() >= written)
    await collector.stop()
    assert_sequence(collector, written)
    assert collector.kinds() == ["missing", "started", "created"]
