"""Deterministic generator of polylog6 workspaces: the sample incident and workspaces of any size.

``write_workspace(root)`` writes the sample workspace that the repository root holds (SPEC §1);
``python -m polylog_console.demo.sample DIR`` does the same from the command line. The incident:

1. The catalogs were hydrated from an older ``stable_polyforms.jsonl`` (S0).
2. The source was then updated (S1 = S0 + 40 new polyforms, 5 symbols corrected), after the last
   hydration, so ``catalogs/metadata.json`` no longer matches the source.
3. The engine's live registry is S1 minus 3 symbols it dropped and with 4 symbols it changed.
4. Checkpoints 1-170 match the stored registry; from 171 on they drift. The drifting ones carry
   ``registry_snapshot`` or ``registry_state``, so the diff shows 3 missing, 40 unexpected and 9
   mismatched symbols. A rehydrate (from S1) fixes the 40 unexpected and the 5 corrected symbols;
   the 3 dropped and the 4 changed remain: drift persists after rehydrate, which escalates.

The feed also holds other coordination entries, envelope records with detection telemetry, a
checkpoint with an ill-typed field and one malformed line. Everything is derived from ``seed``.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from polylog_console.core.model.events import iso
from polylog_console.core.registry.digest import digest
from polylog_console.core.registry.stored import NAMESPACES, State, state_from_polyforms
from polylog_console.core.runbook import catalogs

# Real Unicode blocks, one per namespace (megas is above the BMP: surrogate pairs in the engine
# scheme). Past a block's capacity (n + n*n symbols) symbols come from CJK Unified Ideographs.
BLOCKS = {
    "clusters": [chr(c) for c in range(0x25A0, 0x2600)],  # Geometric Shapes
    "assemblies": [chr(c) for c in range(0x2500, 0x2580)],  # Box Drawing
    "megas": [chr(c) for c in range(0x1F780, 0x1F7D9)],  # Geometric Shapes Extended
}
CJK = [chr(c) for c in range(0x4E00, 0x4E00 + 20992)]
SHARES = {"clusters": 0.6, "assemblies": 0.28, "megas": 0.12}
START = 1762700000.0  # 2025-11-09T14:53:20Z, the runbook's date
INTERVAL = 60.0


def symbol(namespace: str, index: int) -> str:
    """The ``index``-th symbol of a namespace: single characters, then pairs, then CJK pairs."""
    block = BLOCKS[namespace]
    n = len(block)
    if index < n:
        return block[index]
    index -= n
    if index < n * n:
        return block[index // n] + block[index % n]
    index -= n * n
    return CJK[(index // len(CJK)) % len(CJK)] + CJK[index % len(CJK)]


def _namespace_counts(count: int) -> dict[str, int]:
    counts = {ns: int(count * SHARES[ns]) for ns in NAMESPACES}
    counts["clusters"] += count - sum(counts.values())
    return counts


def make_polyforms(count: int, seed: int = 6) -> list[dict[str, Any]]:
    """``count`` valid polyforms over the three namespaces, symbols unique per namespace."""
    rng = random.Random(seed)
    counts = _namespace_counts(count)
    order = [ns for ns in NAMESPACES for _ in range(counts[ns])]
    rng.shuffle(order)
    next_index = dict.fromkeys(NAMESPACES, 0)
    polyforms = []
    for ns in order:
        size = rng.randint(2, 8)
        composition = "".join(rng.choice("ABCDEF") for _ in range(size))
        o = rng.randint(1, 6)
        polyforms.append({
            "uuid": f"{rng.getrandbits(128):032x}",
            "composition": composition,
            "namespace": ns,
            "unicode_char": symbol(ns, next_index[ns]),
            "O": o,
            "I": o * rng.randint(1, 4),
            "vertices": [[round(rng.uniform(-1, 1), 3), round(rng.uniform(-1, 1), 3)] for _ in range(size + 2)],
            "fold_angles": [round(rng.uniform(0, 180), 2) for _ in range(size - 1)],
            "stability": round(rng.random(), 3),
        })
        next_index[ns] += 1
    return polyforms


def make_state(symbols: int, seed: int = 6) -> State:
    """A registry state of ``symbols`` symbols, fast (for benchmarks): no polyforms involved."""
    rng = random.Random(seed)
    counts = _namespace_counts(symbols)
    state: State = {}
    for ns in NAMESPACES:
        keys = (f"{rng.getrandbits(128):032x}" for _ in range(counts[ns]))
        state[ns] = {k: symbol(ns, i) for i, k in enumerate(keys)}
    return state


def polyform_lines(polyforms: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(p) + b"\n" for p in polyforms)


class Incident:
    """The sample incident's data: sources S0 and S1, the live state and what differs."""

    def __init__(self, count: int = 2000, seed: int = 6, added: int = 40, corrected: int = 5,
                 dropped: int = 3, changed: int = 4) -> None:
        rng = random.Random(seed + 1)
        self.current = make_polyforms(count, seed)  # S1
        base = len(self.current) - added
        old = [dict(p) for p in self.current[:base]]
        spare = {ns: sum(1 for p in self.current if p["namespace"] == ns) for ns in NAMESPACES}
        picks = rng.sample(range(base), corrected + dropped + changed)
        for i in picks[:corrected]:  # S0 had other symbols for these; S1 corrected them
            ns = old[i]["namespace"]
            old[i]["unicode_char"] = symbol(ns, spare[ns])
            spare[ns] += 1
        self.previous = old  # S0
        self.stored_state = state_from_polyforms(self.previous)
        live = state_from_polyforms(self.current)
        self.dropped = []
        for i in picks[corrected:corrected + dropped]:
            p = self.current[i]
            del live[p["namespace"]][p["uuid"]]
            self.dropped.append(p["uuid"])
        self.changed = []
        for i in picks[corrected + dropped:]:
            p = self.current[i]
            live[p["namespace"]][p["uuid"]] = symbol(p["namespace"], spare[p["namespace"]])
            spare[p["namespace"]] += 1
            self.changed.append(p["uuid"])
        self.live_state = live
        self.stored_digest = digest(self.stored_state)
        self.live_digest = digest(live)


def checkpoint(n: int, registry_digest: str, timestamp: float, **extra: Any) -> dict[str, Any]:
    label = f"checkpoint-{n:04d}"
    record = {
        "label": label,
        "path": f"storage/chunks/{label}",
        "polygons": 96 + (n * 37) % 160,
        "chunk_count": 4 + n % 12,
        "module_refs": 1 + n % 5,
        "registry_digest": registry_digest,
        "timestamp": timestamp,
    }
    record.update(extra)
    return record


def feed_lines(incident: Incident, checkpoints: int = 200, drift_from: int = 171,
               start: float = START, interval: float = INTERVAL) -> Iterator[bytes]:
    snapshot = "memory/coordination/snapshots/live-registry.json"
    for n in range(1, checkpoints + 1):
        ts = start + (n - 1) * interval
        drifting = n >= drift_from
        dg = incident.live_digest if drifting else incident.stored_digest
        extra: dict[str, Any] = {}
        if drifting and n in (drift_from, drift_from + 10, checkpoints - 1):
            extra["registry_snapshot"] = snapshot
        if drifting and n == checkpoints:
            extra["registry_state"] = incident.live_state
        if n == 42:
            extra["polygons"] = "128"  # an ill-typed field: a warning on this checkpoint
        record = checkpoint(n, dg, ts, **extra)
        if n % 10 == 5:
            yield orjson.dumps({
                "checkpoint_record": record,
                "detection_telemetry": {"detector": "LibraryRefreshWorker", "queued_ms": 3 + n % 7,
                                        "compare_ms": 11 + n % 5},
            })
        else:
            yield orjson.dumps(record)
        if n % 25 == 0:
            yield orjson.dumps({"kind": "handoff", "agent": f"engine-{n % 3}", "timestamp": ts + 1,
                                "note": f"chunk batch {n // 25} sealed"})
        if n == 90:
            # The engine crashed mid-write once: a truncated line the console must survive.
            yield b'{"label": "checkpoint-0090b", "registry_digest": "' + incident.stored_digest[:20].encode()
        if n == drift_from - 1:
            yield orjson.dumps({"kind": "source_update", "file": "stable_polyforms.jsonl", "timestamp": ts + 30,
                                "note": "stable_polyforms.jsonl updated upstream (INT-009 sync)"})


MONITORING_TOML = """\
# Sample configuration for the sample workspace. Every key is optional (README: Configuration).
# Secrets never go here: use POLYLOG_WEBHOOK_SECRET / POLYLOG_EMAIL_PASSWORD or *_file keys.

[feed]
history = 500            # checkpoints kept in view

[digest]
scheme = "engine"        # what the polylog6 checkpoint engine writes

[monitor]
stale_after = "1h"
escalate_after = 3

[refresh]
enabled = false          # runbook §5: set true to rehydrate + recompute automatically

[alerts]
repeat_interval = "4h"
runbook_url = "https://polylog.example/runbooks/registry-drift"

[[replicas]]
name = "replica-eu"
path = "memory/replicas/replica-eu.json"

[[replicas]]
name = "replica-us"
path = "memory/replicas/replica-us.json"
"""


def write_workspace(root: Path, *, polyforms: int = 2000, checkpoints: int = 200, seed: int = 6,
                    start: float = START, interval: float = INTERVAL, config: str | None = MONITORING_TOML,
                    drift_from: int | None = None) -> Incident:
    """Write the sample incident into ``root`` (created if needed). Returns its data."""
    root = Path(root)
    incident = Incident(polyforms, seed)
    drift_from = drift_from if drift_from is not None else max(1, checkpoints - 29)
    (root / "catalogs").mkdir(parents=True, exist_ok=True)
    coordination = root / "memory" / "coordination"
    (coordination / "snapshots").mkdir(parents=True, exist_ok=True)
    (root / "memory" / "replicas").mkdir(parents=True, exist_ok=True)

    (root / "stable_polyforms.jsonl").write_bytes(polyform_lines(incident.current))
    hydrated_at = iso(start - 3600)
    files = catalogs.build_all(incident.previous, polyform_lines(incident.previous),
                               label="hydration-2025-11-09", generated_at=hydrated_at)
    for rel, data in files.items():
        (root / rel).write_bytes(data)

    live_doc = {"label": "engine-live", "digest": incident.live_digest, "scheme": "engine",
                "generated_at": iso(start + (checkpoints - 1) * interval), "state": incident.live_state}
    (coordination / "snapshots" / "live-registry.json").write_bytes(catalogs.dump(live_doc))
    stored_doc = {"label": "replica-eu", "digest": incident.stored_digest, "scheme": "engine",
                  "generated_at": hydrated_at, "state": incident.stored_state}
    (root / "memory" / "replicas" / "replica-eu.json").write_bytes(catalogs.dump(stored_doc))
    (root / "memory" / "replicas" / "replica-us.json").write_bytes(
        catalogs.dump({**live_doc, "label": "replica-us"}))

    lines = feed_lines(incident, checkpoints, drift_from, start, interval)
    (coordination / "context-brief.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))
    if config is not None:
        (root / "monitoring.toml").write_text(config, encoding="utf-8")
    return incident


def write_big_feed(path: Path, *, lines: int | None = None, size: int | None = None,
                   digests: tuple[str, ...] = ("0" * 64,), start: float = START) -> int:
    """A large feed for benchmarks: ``lines`` checkpoints or about ``size`` bytes. Returns lines."""
    template = checkpoint(0, "D" * 64, 0.0)
    proto = orjson.dumps(template).replace(b"0.0}", b"%TS}").replace(b"checkpoint-0000", b"checkpoint-%N")
    written = 0
    total = 0
    with open(path, "wb") as handle:
        chunk: list[bytes] = []
        while (lines is None or written < lines) and (size is None or total < size):
            d = digests[written % len(digests)].encode()
            line = (proto.replace(b"D" * 64, d).replace(b"%N", b"%08d" % written)
                    .replace(b"%TS", repr(start + written * 0.01).encode()) + b"\n")
            chunk.append(line)
            total += len(line)
            written += 1
            if len(chunk) >= 65536:
                handle.write(b"".join(chunk))
                chunk.clear()
        handle.write(b"".join(chunk))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m polylog_console.demo.sample",
                                     description="Write the sample incident workspace into DIR.")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--polyforms", type=int, default=2000)
    parser.add_argument("--checkpoints", type=int, default=200)
    parser.add_argument("--seed", type=int, default=6)
    args = parser.parse_args(argv)
    incident = write_workspace(args.directory, polyforms=args.polyforms, checkpoints=args.checkpoints, seed=args.seed)
    print(f"wrote {args.directory}: stored {incident.stored_digest[:12]}, live {incident.live_digest[:12]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
