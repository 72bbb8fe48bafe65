"""A feed writer that runs as a separate process, standing in for the polylog6 engine.

The follower's tests and benchmarks start it with ``subprocess`` so that the feed is really
written by another process while the follower runs::

    python -m tests.feedwriter FEED [--records N] [--seed S] [--burst MIN:MAX] [--split] [--pause SEC]
                                    [--ops OPS] [--rate R] [--size BYTES]

* Record ``i`` is :func:`record_line` ``(i, seed)``: mostly checkpoints, some coordination entries
  and some invalid lines (ingest errors), so the exact sequence a follower must deliver is
  :func:`expected_lines` ``(n, seed)``.
* Records are written in bursts (random size in ``--burst``). With ``--split`` each burst's bytes
  are cut at random byte positions into separate ``write()`` calls (the file is unbuffered, so
  every piece reaches the file at once), sometimes with a short sleep between pieces so that a
  reader really sees incomplete lines.
* ``--ops`` lists actions done before writing record ``i``: ``i:sync`` prints ``SYNC i`` and
  waits for a line on stdin (the test answers once it has received ``i`` records: data cut away
  by a truncation before anyone could read it is legitimately lost, so a test syncs first);
  ``i:rotate`` renames the feed to ``FEED.<i>`` and starts a new file; ``i:truncate`` truncates
  the feed to zero bytes (the next burst then regrows it); ``i:delete`` deletes the feed and
  waits a little before re-creating it; ``i:replace`` atomically replaces the feed with a new
  empty file (``os.replace``); ``i:pause`` sleeps 50 ms.
* ``--rate R`` writes one record at a time, R per second on a fixed schedule, each checkpoint
  carrying ``"t_ns"``: ``time.monotonic_ns()`` just before its ``write()`` (CLOCK_MONOTONIC is
  system-wide on Linux, so the reading process can compute the latency).
* ``--size BYTES`` pads every checkpoint with a ``note`` field to about that many bytes.
* ``--digest HEX`` gives every checkpoint that digest (e.g. the stored one: an in-sync stream).
* ``--stamp`` (burst mode) puts ``"t_ns"`` in every checkpoint of a burst: the time just before
  the burst was built and written (so a reader's figures err on the slow side).
* ``--prebuild`` (burst mode, for throughput benchmarks) builds every burst before writing any, so
  that building lines does not limit the write rate; with ``--stamp``, ``t_ns`` is then written
  into space-padded room in each line just before the burst's ``write()`` (JSON allows the blanks).

It prints ``DONE n`` when all ``n`` records are written.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import time
from pathlib import Path

import orjson


def digest_for(i: int, seed: int = 0) -> str:
    return hashlib.sha256(f"{seed}:{i // 100}".encode()).hexdigest()


def record_line(i: int, seed: int = 0, size: int = 0, t_ns: int | None = None, digest: str | None = None) -> bytes:
    """Record ``i`` of the stream, without its newline: 1 in 50 is an entry, 1 in 97 is invalid."""
    if i % 97 == 96:
        return b'{"label": "broken-%d", "registry_digest": ' % i  # cut short: an ingest error
    if i % 50 == 49:
        return orjson.dumps({"kind": "handoff", "seq": i, "agent": f"engine-{i % 3}"})
    record: dict[str, object] = {"label": f"checkpoint-{i:07d}", "path": f"storage/chunks/checkpoint-{i:07d}",
                                 "polygons": 128 + i % 7, "chunk_count": 8, "module_refs": 3,
                                 "registry_digest": digest or digest_for(i, seed), "timestamp": 1762700000.0 + i,
                                 "seq": i}
    if t_ns is not None:
        record["t_ns"] = t_ns
    line = orjson.dumps(record)
    if size > len(line):
        record["note"] = "x" * (size - len(line) - 11)
        line = orjson.dumps(record)
    return line


def expected_lines(n: int, seed: int = 0, size: int = 0) -> list[bytes]:
    """What a follower must deliver, in order, for ``n`` records (as records' ``raw`` bytes)."""
    return [record_line(i, seed, size) for i in range(n)]


class Writer:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle = None

    def _file(self):
        if self.handle is None:
            self.handle = open(self.path, "ab", buffering=0)  # noqa: SIM115 - kept open across writes
        return self.handle

    def write(self, data: bytes) -> None:
        handle = self._file()
        view = memoryview(data)
        while view:
            written = handle.write(view)
            view = view[written:]
        handle.flush()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def parse_ops(text: str) -> dict[int, list[str]]:
    ops: dict[int, list[str]] = {}
    for item in filter(None, text.split(",")):
        index, _, action = item.partition(":")
        ops.setdefault(int(index), []).append(action)
    return ops


def do_op(writer: Writer, action: str, index: int) -> None:
    path = writer.path
    if action == "sync":
        sys.stdout.write(f"SYNC {index}\n")
        sys.stdout.flush()
        if not sys.stdin.readline():
            raise SystemExit("feedwriter: stdin closed while waiting for sync")
    elif action == "rotate":
        writer.close()
        os.rename(path, f"{path}.{index}")
    elif action == "truncate":
        writer._file().truncate(0)
    elif action == "delete":
        writer.close()
        os.unlink(path)
        time.sleep(0.05)
    elif action == "replace":
        writer.close()
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(b"")
        os.replace(tmp, path)
    elif action == "pause":
        time.sleep(0.05)
    else:
        raise SystemExit(f"feedwriter: unknown action {action!r}")


STAMP_ROOM = b"~" * 20  # where --prebuild --stamp puts t_ns (digits, then blanks)


def stamp(data: bytes) -> bytes:
    return data.replace(STAMP_ROOM, str(time.monotonic_ns()).encode().ljust(len(STAMP_ROOM)))


def run_prebuilt(args: argparse.Namespace) -> int:
    low, _, high = args.burst.partition(":")
    size = int(high or low)
    bursts = []
    for i in range(0, args.records, size):
        lines = (record_line(k, args.seed, args.size, 0 if args.stamp else None, args.digest)
                 for k in range(i, min(i + size, args.records)))
        data = b"".join(x + b"\n" for x in lines)
        bursts.append(data.replace(b'"t_ns":0}', b'"t_ns":' + STAMP_ROOM + b"}") if args.stamp else data)
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    writer = Writer(args.feed)
    for data in bursts:
        writer.write(stamp(data) if args.stamp else data)
    writer.close()
    sys.stdout.write(f"DONE {args.records}\n")
    sys.stdout.flush()
    return 0


def run_bursts(args: argparse.Namespace) -> int:
    if args.prebuild:
        return run_prebuilt(args)
    rng = random.Random(args.seed)
    writer = Writer(args.feed)
    ops = parse_ops(args.ops)
    low, _, high = args.burst.partition(":")
    burst_min, burst_max = int(low), int(high or low)
    i = 0
    while i < args.records:
        size = rng.randint(burst_min, burst_max)
        # a burst never runs across an op, so that ops happen at line boundaries
        nxt = min([k for k in ops if k > i] + [args.records])
        end = min(i + size, nxt)
        for action in ops.get(i, []):  # i only ever increases: each op runs once
            do_op(writer, action, i)
        stamp = time.monotonic_ns() if args.stamp else None
        data = b"".join(record_line(k, args.seed, args.size, stamp, args.digest) + b"\n" for k in range(i, end))
        if args.split:
            pos = 0
            while pos < len(data):
                cut = min(len(data), pos + rng.randint(1, 3000))
                writer.write(data[pos:cut])
                pos = cut
                if rng.random() < 0.05:
                    time.sleep(rng.uniform(0.0005, 0.003))
        else:
            writer.write(data)
        i = end
        if args.pause:
            time.sleep(rng.uniform(0, args.pause))
    for action in ops.get(args.records, []):
        do_op(writer, action, args.records)
    writer.close()
    sys.stdout.write(f"DONE {args.records}\n")
    sys.stdout.flush()
    return 0


def run_rate(args: argparse.Namespace) -> int:
    writer = Writer(args.feed)
    interval = 1.0 / args.rate
    start = time.monotonic() + interval
    for i in range(args.records):
        delay = start + i * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        writer.write(record_line(i, args.seed, args.size, time.monotonic_ns(), args.digest) + b"\n")
    writer.close()
    sys.stdout.write(f"DONE {args.records}\n")
    sys.stdout.flush()
    return 0


SCRIPT = Path(__file__).resolve()


class WriterProcess:
    """The parent side: starts this script as a subprocess and answers its ``SYNC i`` requests
    once ``received()`` (the number of records the follower has delivered) reaches ``i``."""

    def __init__(self, feed: Path, *args: str) -> None:
        self.feed = feed
        self.args = args
        self.proc = None
        self.syncs = 0

    async def run(self, received, progress, timeout: float = 60.0) -> int:
        """Run the writer to its end; returns the number of records it wrote.

        ``progress`` is an ``asyncio.Event`` the collector sets after each batch."""
        import asyncio

        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, str(SCRIPT), str(self.feed), *self.args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    line = (await self.proc.stdout.readline()).decode()
                    if not line:
                        raise RuntimeError(f"feedwriter ended early with code {await self.proc.wait()}")
                    word, _, number = line.partition(" ")
                    n = int(number)
                    if word == "DONE":
                        await self.proc.wait()
                        return n
                    while received() < n:
                        progress.clear()
                        await progress.wait()
                    self.syncs += 1
                    self.proc.stdin.write(b"go\n")
                    await self.proc.stdin.drain()
        finally:
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.feedwriter", description=__doc__.split("\n\n")[0])
    parser.add_argument("feed", type=Path)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--burst", default="50:400", help="records per burst, MIN:MAX")
    parser.add_argument("--split", action="store_true", help="cut bursts at random byte positions")
    parser.add_argument("--pause", type=float, default=0.0, help="at most this many seconds between bursts")
    parser.add_argument("--ops", default="", help="e.g. 2000:sync,2500:rotate")
    parser.add_argument("--rate", type=float, default=0.0, help="records per second, one per write")
    parser.add_argument("--size", type=int, default=0, help="pad checkpoints to about this many bytes")
    parser.add_argument("--digest", help="the registry_digest of every checkpoint")
    parser.add_argument("--stamp", action="store_true", help="t_ns in every checkpoint of a burst")
    parser.add_argument("--prebuild", action="store_true", help="build all bursts before writing (benchmarks)")
    args = parser.parse_args(argv)
    return run_rate(args) if args.rate else run_bursts(args)


if __name__ == "__main__":
    raise SystemExit(main())
