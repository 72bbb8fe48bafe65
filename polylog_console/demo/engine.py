"""The demo (``polylog-console demo``): a scratch workspace, a simulated engine and HTTP replicas.

A newcomer sees the whole registry-drift incident in about a minute, on a workspace generated on
the fly (:func:`polylog_console.demo.sample.write_workspace`, small):

1. **In sync.** The catalogs were hydrated from the current ``stable_polyforms.jsonl`` (S0). The
   simulated engine appends checkpoints (3 a second at ``--speed 1``) whose digest is the stored
   one. Both replicas match.
2. **The source changes upstream.** After ``in_sync`` checkpoints the engine writes a new
   ``stable_polyforms.jsonl`` (S1: 40 new polyforms, 5 corrected symbols; the "INT-009 sync"),
   appends a ``source_update`` coordination entry and reloads: from now on it reports S1's digest.
   The stored registry is still S0, so every checkpoint drifts: the banner shows
   ``registry_mismatch`` with the symbol diff (every checkpoint names a content-addressed snapshot of
   the engine's live registry, ``registry_snapshot``), and ``drift_persistent`` escalates after
   ``escalate_after`` consecutive mismatches.
3. **Replicas.** ``replica-eu`` is synced from the stored catalogs (it serves whatever
   ``catalogs/registry.json`` holds, read at each request); ``replica-us`` is the engine's own
   registry provider (it serves the engine's live state). During the drift replica-us is the one
   that differs from the stored digest.
4. **Rehydrate.** The operator rehydrates (the console's key, or the CLI): the catalogs are rebuilt
   from S1, so stored = S1 = what the engine reports: the next checkpoint matches, the drift
   resolves (``registry_resolved``) and both replicas match again. The engine does not react to the
   rehydrate: its live state simply *is* the source's, which is why rebuilding the stored registry
   from the source restores parity.

   In the ``persistent`` scenario the engine's live registry is S1 with 3 symbols dropped and 4
   changed (as in the sample incident): a rehydrate fixes the 40 unexpected and 5 corrected symbols
   but the drift remains, so the console escalates (``drift_persistent``: "drift remains after
   rehydrate") and the operator writes the escalation bundle.

Everything runs in one background thread with its own asyncio loop (:class:`Demo`): the engine is
a task sleeping between appends, the replicas are ``asyncio`` servers on 127.0.0.1 (ports chosen
by the system, written into the scratch ``monitoring.toml``). The console's event loop is never
touched, and :meth:`Demo.stop` ends everything within a second. The scratch workspace carries a
marker file and is removed on exit unless ``keep``.

:func:`run_headless` plays the same story without the console: the console's own pipeline (a
:class:`~polylog_console.core.monitor.session.Session`) follows what the engine appends, and an automatic
operator runs the runbook's steps with the real command line (``validate``, ``replicas``,
``rehydrate``, ``digest``, ``bundle``) once the drift has escalated.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from polylog_console.core.infra import atomic
from polylog_console.core.infra.text import safe_text
from polylog_console.core.model.config import Config, load_config
from polylog_console.core.model.errors import PolylogError, RegistryError
from polylog_console.core.model.events import AlertEvent, CheckpointEvent, IngestErrorEvent, Status, StatusEvent, iso
from polylog_console.core.model.workspace import Workspace
from polylog_console.core.monitor.session import Session
from polylog_console.core.registry.digest import digest
from polylog_console.core.registry.stored import State, read_json, snapshot_bytes, state_from_polyforms
from polylog_console.demo.sample import Incident, checkpoint, polyform_lines, write_workspace

Scenario = Literal["fixable", "persistent"]
SCENARIOS: tuple[str, ...] = ("fixable", "persistent")
MARKER = ".polylog-demo"  # only a directory holding this file is ever removed by the demo
SNAPSHOTS = "memory/coordination/snapshots"
BASE_RATE = 3.0  # checkpoints per second at speed 1: the engine's realistic pace
MAX_SPEED = 100.0


class DemoError(PolylogError):
    """The demo cannot start (scratch directory unusable, port unavailable...)."""


@dataclass(frozen=True)
class DemoSettings:
    """What the demo plays. Counts are in checkpoints, so ``speed`` scales every phase alike."""

    scenario: Scenario = "fixable"
    speed: float = 1.0
    polyforms: int = 240
    history: int = 12  # in-sync checkpoints already in the feed when the console opens
    in_sync: int = 24  # checkpoints appended before the source update (8 s at speed 1)
    escalate_after: int = 12  # consecutive mismatches before drift_persistent (4 s at speed 1)
    seed: int = 6
    replica_latency: tuple[float, float] = (0.004, 0.045)  # replica-eu, replica-us answer delays (s)

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise DemoError(f"demo: unknown scenario {self.scenario!r} (known: {', '.join(SCENARIOS)})")
        if not 0 < self.speed <= MAX_SPEED:
            raise DemoError(f"demo: speed must be above 0 and at most {MAX_SPEED:g}, got {self.speed:g}")

    @property
    def rate(self) -> float:
        """Checkpoints per second."""
        return BASE_RATE * self.speed

    @property
    def interval(self) -> float:
        return 1.0 / self.rate


@dataclass(frozen=True)
class Story:
    """The data of the incident the demo plays (all derived from ``settings.seed``)."""

    source_before: bytes  # stable_polyforms.jsonl at start (S0): what the catalogs were built from
    source_after: bytes  # after the upstream update (S1)
    stored_state: State  # registry of S0 = the stored registry at start
    live_before: State  # what the engine reports before the update (= stored_state)
    live_after: State  # what the engine reports after the update
    stored_digest: str
    live_after_digest: str
    source_after_digest: str  # registry digest of S1: the stored digest after a rehydrate

    @classmethod
    def build(cls, settings: DemoSettings) -> tuple[Story, Incident]:
        incident = Incident(settings.polyforms, settings.seed)
        source_state = state_from_polyforms(incident.current)
        live_after = source_state if settings.scenario == "fixable" else incident.live_state
        story = cls(
            source_before=polyform_lines(incident.previous),
            source_after=polyform_lines(incident.current),
            stored_state=incident.stored_state,
            live_before=incident.stored_state,
            live_after=live_after,
            stored_digest=incident.stored_digest,
            live_after_digest=digest(live_after),
            source_after_digest=digest(source_state),
        )
        return story, incident


# --- the scratch workspace -------------------------------------------------------------------------

def create_scratch(directory: str | os.PathLike[str] | None) -> tuple[Path, bool]:
    """The scratch root and whether the demo created it. ``directory`` must not exist or be empty:
    the demo never writes over a real workspace."""
    if directory is None:
        root = Path(tempfile.mkdtemp(prefix="polylog-demo-"))
        created = True
    else:
        root = Path(directory).expanduser().absolute()
        created = not root.exists()
        if created:
            try:
                root.mkdir(parents=True)
            except OSError as exc:
                raise DemoError(f"demo: cannot create {root}: {exc.strerror or exc}") from None
        elif not root.is_dir():
            raise DemoError(f"demo: {root} is not a directory")
        elif any(root.iterdir()):
            raise DemoError(f"demo: {root} is not empty; the demo needs a new or empty directory")
    (root / MARKER).write_text("scratch workspace of `polylog-console demo`; removed when the demo ends\n",
                               encoding="utf-8")
    return root.resolve(), created


def remove_scratch(root: Path, created: bool) -> bool:
    """Remove a scratch workspace (the directory itself when the demo created it, else its
    content). Refuses anything without the demo's marker file. Returns True when removed."""
    root = Path(root)
    if not (root / MARKER).is_file():
        return False
    if created:
        shutil.rmtree(root, ignore_errors=True)
        return not root.exists()
    for child in root.iterdir():
        if child.name == MARKER:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                child.unlink()
    with contextlib.suppress(OSError):
        (root / MARKER).unlink()
    return not any(root.iterdir())


def snapshot_path(live_digest: str) -> str:
    """Workspace-relative path of the engine's snapshot of a live registry (content-addressed, so
    a checkpoint never points at a file that later holds another state)."""
    return f"{SNAPSHOTS}/live-{live_digest[:16]}.json"


def prepare_workspace(root: Path, settings: DemoSettings, story: Story, *, now: float | None = None) -> None:
    """Write the demo's starting point into ``root``: source S0 with consistent catalogs and a
    feed of ``settings.history`` in-sync checkpoints ending now (not stale)."""
    now = time.time() if now is None else now
    history = settings.history
    start = now - history * settings.interval
    # No drift in the initial feed (drift_from past the end), no sample config or path replicas.
    write_workspace(root, polyforms=settings.polyforms, checkpoints=history, seed=settings.seed, start=start,
                    interval=settings.interval, config=None, drift_from=history + 2)
    atomic.write_bytes(root / "stable_polyforms.jsonl", story.source_before)  # consistent with catalogs
    shutil.rmtree(root / "memory" / "replicas", ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        (root / SNAPSHOTS / "live-registry.json").unlink()
    atomic.write_bytes(root / snapshot_path(story.stored_digest),
                       snapshot_bytes(story.live_before, label="engine-live", generated_at=iso(start)))


def monitoring_toml(settings: DemoSettings, replicas: dict[str, str]) -> str:
    """The scratch ``monitoring.toml``: HTTP replicas on 127.0.0.1, escalation a few seconds into
    the drift, no automatic refresh (the newcomer presses the rehydrate key)."""
    lines = [
        "# Generated by `polylog-console demo` for its scratch workspace.",
        "",
        "[feed]",
        "history = 500",
        "",
        "[digest]",
        'scheme = "engine"',
        "",
        "[monitor]",
        'stale_after = "1h"',
        f"escalate_after = {settings.escalate_after}",
        "",
        "[refresh]",
        "enabled = false          # press the rehydrate key yourself",
        "",
        "[alerts]",
        'repeat_interval = "4h"',
        'runbook_url = "https://polylog.example/runbooks/registry-drift"',
    ]
    for name, url in replicas.items():
        lines += ["", "[[replicas]]", f'name = "{name}"', f'url = "{url}"', 'timeout = "2s"', "retries = 0"]
    return "\n".join(lines) + "\n"


# --- replicas ----------------------------------------------------------------------------------------

Provider = Callable[[], dict[str, Any]]


class ReplicaServer:
    """A tiny HTTP/1.1 server on 127.0.0.1: ``GET /registry`` (or ``/``) answers the replica's
    ``{"name", "digest", "state", "generated_at"}`` as JSON after ``latency`` seconds; other paths
    404, other methods 405. One request per connection (``Connection: close``)."""

    MAX_HEAD = 16 * 1024

    def __init__(self, name: str, provider: Provider, *, latency: float = 0.0) -> None:
        self.name = name
        self.provider = provider
        self.latency = latency
        self.requests = 0
        self._server: asyncio.Server | None = None
        self._port = 0

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}/registry"

    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", port)
        self._port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5.0)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
                return
            if len(head) > self.MAX_HEAD:
                await self._respond(writer, 431, {"error": "request header too large"})
                return
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = request_line.split(" ")
            if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                await self._respond(writer, 400, {"error": "bad request"})
                return
            method, target = parts[0], parts[1].split("?", 1)[0]
            self.requests += 1
            if target not in ("/", "/registry"):
                await self._respond(writer, 404, {"error": "not found"})
                return
            if method not in ("GET", "HEAD"):
                await self._respond(writer, 405, {"error": "method not allowed"}, allow="GET, HEAD")
                return
            if self.latency:
                await asyncio.sleep(self.latency)
            try:
                body = self.provider()
                status = 200
            except PolylogError as exc:
                body, status = {"name": self.name, "error": str(exc)}, 503
            await self._respond(writer, status, body, head_only=method == "HEAD")
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    @staticmethod
    async def _respond(writer: asyncio.StreamWriter, status: int, body: dict[str, Any], *, head_only: bool = False,
                       allow: str | None = None) -> None:
        reasons = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
                   431: "Request Header Fields Too Large", 503: "Service Unavailable"}
        payload = orjson.dumps(body)
        head = [f"HTTP/1.1 {status} {reasons.get(status, 'Error')}", "Content-Type: application/json",
                f"Content-Length: {len(payload)}", "Connection: close", "Cache-Control: no-store"]
        if allow:
            head.append(f"Allow: {allow}")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("ascii") + (b"" if head_only else payload))
        await writer.drain()


class StoredMirror:
    """Provider of ``replica-eu``: a replica synced from the stored catalogs. Reads
    ``catalogs/registry.json`` when it changed (one ``stat`` otherwise) and digests its state."""

    def __init__(self, registry: Path) -> None:
        self.path = registry
        self._cache: tuple[tuple[int, int, int], dict[str, Any]] | None = None

    def __call__(self) -> dict[str, Any]:
        try:
            st = self.path.stat()
        except OSError as exc:
            raise RegistryError(f"stored registry unavailable: {exc.strerror or exc}") from None
        identity = (st.st_ino, st.st_size, st.st_mtime_ns)
        if self._cache is not None and self._cache[0] == identity:
            return self._cache[1]
        document = read_json(self.path, what="stored registry")
        state = document.get("state") if isinstance(document, dict) else None
        if not isinstance(state, dict):
            raise RegistryError("stored registry has no state")
        body = {"name": "replica-eu", "digest": digest(state), "state": state,
                "generated_at": document.get("generated_at") or iso(st.st_mtime)}
        self._cache = (identity, body)
        return body


def _key(action_id: str) -> str:
    """The default key of a console action, for hints (the action registry, when present)."""
    try:
        from polylog_console.core.model.actions import BY_ID
    except ImportError:
        return action_id
    spec = BY_ID.get(action_id)
    if spec is None:
        return action_id
    return {"question_mark": "?", "slash": "/", "escape": "esc"}.get(spec.key, spec.key)


def demo_hint(scenario: str) -> str:
    """The coordination note the demo appends when the drift starts: what to try next."""
    steps = (f"{_key('validate')} validate, {_key('replicas')} verify replicas, "
             f"{_key('rehydrate')} rehydrate (confirm), {_key('recompute')} recompute digest")
    if scenario == "fixable":
        return f"demo: the source changed upstream and the engine reloaded it: drift. Try {steps}: parity returns."
    return (f"demo: the source changed upstream and the engine's registry lost symbols: drift. Try {steps}: "
            f"the drift remains, so write the escalation bundle ({_key('bundle')}).")


# --- the simulated engine -------------------------------------------------------------------------

@dataclass(frozen=True)
class EngineStep:
    """One thing the engine appended: a checkpoint (``label`` set) or a coordination entry."""

    number: int  # checkpoint number (the last one for an entry)
    kind: str  # "checkpoint" or the entry's kind ("source_update", "handoff")
    label: str | None
    digest: str | None
    updated: bool  # the engine runs on the updated source
    wall: float


class Engine:
    """The polylog6 checkpoint engine, simulated: appends checkpoints to the feed at ``rate`` per
    second; after ``in_sync`` of them it takes the upstream source update (see the module doc)."""

    def __init__(self, root: Path, settings: DemoSettings, story: Story, *, first: int) -> None:
        self.root = root
        self.settings = settings
        self.story = story
        self.feed = root / "memory" / "coordination" / "context-brief.jsonl"
        self.next_number = first
        self.appended = 0  # checkpoints appended by this engine
        self.updated = False
        self.live_state: State = story.live_before
        self.live_digest = story.stored_digest
        self.loaded_at = time.time()
        self.listeners: list[Callable[[EngineStep], None]] = []
        self._lock = threading.Lock()

    def live_document(self) -> dict[str, Any]:
        """Provider of ``replica-us``: the engine's own live registry."""
        with self._lock:
            return {"name": "replica-us", "digest": self.live_digest, "state": self.live_state,
                    "generated_at": iso(self.loaded_at)}

    def _emit(self, step: EngineStep) -> None:
        for listener in list(self.listeners):
            listener(step)

    def _append(self, handle: Any, record: dict[str, Any]) -> None:
        handle.write(orjson.dumps(record) + b"\n")  # one write per line: readers never see half a line
        handle.flush()

    def _take_source_update(self, handle: Any, now: float) -> None:
        story = self.story
        atomic.write_bytes(self.root / "stable_polyforms.jsonl", story.source_after, durable=False)
        atomic.write_bytes(self.root / snapshot_path(story.live_after_digest),
                           snapshot_bytes(story.live_after, label="engine-live", generated_at=iso(now)),
                           durable=False)
        with self._lock:
            self.updated = True
            self.live_state = story.live_after
            self.live_digest = story.live_after_digest
            self.loaded_at = now
        self._append(handle, {"kind": "source_update", "file": "stable_polyforms.jsonl", "timestamp": now,
                              "agent": "engine-0", "note": "stable_polyforms.jsonl updated upstream (INT-009 sync); "
                              "engine reloaded its registry"})
        self._emit(EngineStep(self.next_number - 1, "source_update", None, None, True, time.time()))
        self._append(handle, {"kind": "demo_hint", "timestamp": now, "note": demo_hint(self.settings.scenario)})
        self._emit(EngineStep(self.next_number - 1, "demo_hint", None, None, True, time.time()))

    def write_one(self, handle: Any) -> None:
        """Append the next checkpoint (and the source update or a handoff entry when due)."""
        n = self.next_number
        now = time.time()
        if not self.updated and self.appended == self.settings.in_sync:
            self._take_source_update(handle, now)
        live = self.live_digest
        record = checkpoint(n, live, round(now, 3), registry_snapshot=snapshot_path(live))
        if n % 10 == 5:  # some checkpoints come in the envelope form with detection telemetry
            line = {"checkpoint_record": record,
                    "detection_telemetry": {"detector": "LibraryRefreshWorker", "queued_ms": 3 + n % 7,
                                            "compare_ms": 11 + n % 5}}
        else:
            line = record
        self._append(handle, line)
        self.next_number += 1
        self.appended += 1
        self._emit(EngineStep(n, "checkpoint", record["label"], live, self.updated, time.time()))
        if n % 25 == 0:
            self._append(handle, {"kind": "handoff", "agent": f"engine-{n % 3}", "timestamp": round(now, 3),
                                  "note": f"chunk batch {n // 25} sealed"})
            self._emit(EngineStep(n, "handoff", None, None, self.updated, time.time()))

    async def run(self, stop: asyncio.Event) -> None:
        """Append until ``stop`` is set, on a fixed schedule (no drift, no busy loop)."""
        loop = asyncio.get_running_loop()
        interval = self.settings.interval
        start = loop.time()
        k = 0
        with open(self.feed, "ab") as handle:
            while not stop.is_set():
                k += 1
                delay = start + k * interval - loop.time()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=delay)
                    if stop.is_set():
                        break
                self.write_one(handle)


# --- the runtime ----------------------------------------------------------------------------------

class Demo:
    """Scratch workspace + engine + replicas, running in one background thread.

    ``start()`` prepares the workspace, starts the thread and writes ``monitoring.toml`` once the
    replicas' ports are known; ``stop()`` ends the engine and the servers and joins the thread;
    ``close()`` also removes the scratch workspace unless ``keep``. Usable as a context manager.
    """

    def __init__(self, settings: DemoSettings | None = None, *, directory: str | os.PathLike[str] | None = None,
                 keep: bool = False) -> None:
        self.settings = settings or DemoSettings()
        self.keep = keep
        self.directory = directory
        self.story, self.incident = Story.build(self.settings)
        self.root: Path | None = None
        self.created = False
        self.engine: Engine | None = None
        self.replicas: dict[str, ReplicaServer] = {}
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._go: asyncio.Event | None = None
        self._ready = threading.Event()

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> Demo:
        self.root, self.created = create_scratch(self.directory)
        try:
            prepare_workspace(self.root, self.settings, self.story)
            self.engine = Engine(self.root, self.settings, self.story, first=self.settings.history + 1)
            self.replicas = {
                "replica-eu": ReplicaServer("replica-eu", StoredMirror(self.root / "catalogs" / "registry.json"),
                                            latency=self.settings.replica_latency[0]),
                "replica-us": ReplicaServer("replica-us", self.engine.live_document,
                                            latency=self.settings.replica_latency[1]),
            }
            self._thread = threading.Thread(target=self._run_thread, name="polylog-demo", daemon=True)
            self._thread.start()
            if not self._ready.wait(timeout) or self.error is not None:
                raise DemoError(f"demo: the simulation did not start: {self.error or 'timeout'}")
            atomic.write_text(self.root / "monitoring.toml",
                              monitoring_toml(self.settings, {n: r.url for n, r in self.replicas.items()}))
            assert self._loop is not None and self._go is not None
            self._loop.call_soon_threadsafe(self._go.set)
        except BaseException:
            self.close()
            raise
        return self

    def _run_thread(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced through self.error and start()/stop()
            self.error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._go = asyncio.Event()
        try:
            for server in self.replicas.values():
                await server.start()
            self._ready.set()
            await self._wait_until_running()
            assert self.engine is not None
            await self.engine.run(self._stop)
        finally:
            for server in self.replicas.values():
                await server.close()

    async def _wait_until_running(self) -> None:
        """The engine starts once ``start()`` has written the config (so the console, opened
        next, sees every appended checkpoint arrive live)."""
        assert self._go is not None and self._stop is not None
        waiters = [asyncio.ensure_future(self._go.wait()), asyncio.ensure_future(self._stop.wait())]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the engine and the replicas; True when the thread ended within ``timeout``."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return True
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
        return not thread.is_alive()

    def close(self, timeout: float = 5.0) -> bool:
        """Stop (waiting up to ``timeout``), then remove the scratch workspace unless ``keep``. True
        when it was removed."""
        self.stop(timeout)
        if self.root is None or self.keep:
            return False
        return remove_scratch(self.root, self.created)

    def __enter__(self) -> Demo:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- views -------------------------------------------------------------------------------------

    @property
    def workspace(self) -> Workspace:
        assert self.root is not None, "start() first"
        return Workspace.open(self.root)

    def config(self) -> Config:
        assert self.root is not None, "start() first"
        return load_config(self.root, env={})

    def subscribe(self) -> queue.Queue[EngineStep]:
        """A queue receiving every :class:`EngineStep` from now on (thread-safe)."""
        assert self.engine is not None, "start() first"
        steps: queue.Queue[EngineStep] = queue.Queue()
        self.engine.listeners.append(steps.put)
        return steps


# --- headless -------------------------------------------------------------------------------------

@dataclass
class StepResult:
    command: str
    code: int
    document: Any = None
    error: str = ""


def run_command(root: Path, command: str, *extra: str, timeout: float = 120.0) -> StepResult:
    """Run one runbook step with the real command line, as an operator would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYLOG_")}
    env["NO_COLOR"] = "1"
    try:
        proc = subprocess.run([sys.executable, "-m", "polylog_console", command, "--workspace", str(root), "--json",
                               *extra], capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        return StepResult(command, 2, None, f"timed out after {timeout:g}s")
    document = None
    with contextlib.suppress(ValueError):
        document = json.loads(proc.stdout) if proc.stdout.strip() else None
    error = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
    return StepResult(command, proc.returncode, document, error.removeprefix("polylog-console: error: "))


@dataclass
class HeadlessResult:
    """What the headless story saw."""

    statuses: list[str] = field(default_factory=list)
    alerts: list[tuple[str, str]] = field(default_factory=list)  # (code, status)
    steps: list[StepResult] = field(default_factory=list)
    checkpoints: int = 0
    ingest_errors: int = 0
    finished: bool = False

    @property
    def resolved(self) -> bool:
        return ("registry_resolved", "resolved") in self.alerts


def _describe(step: StepResult) -> str:
    doc = step.document if isinstance(step.document, dict) else {}
    if step.code == 2 or not doc:
        return f"{step.command}: failed ({safe_text(step.error or f'exit {step.code}', 160)})"
    if step.command == "validate":
        return f"validate: {'valid' if doc.get('valid') else 'INVALID'}, {doc.get('lines')} lines, " \
               f"{doc.get('error_count')} errors"
    if step.command == "replicas":
        parts = []
        for r in doc.get("replicas") or []:
            if isinstance(r, dict):
                state = "match" if r.get("match") else ("error" if r.get("error") else "DRIFTED")
                parts.append(f"{safe_text(r.get('name'), 40)} {state}")
        return "replicas: " + (", ".join(parts) or "none")
    if step.command == "rehydrate":
        return f"rehydrate: {doc.get('polyforms')} polyforms, stored digest now " \
               f"{safe_text(str(doc.get('registry_digest'))[:12])}"
    if step.command == "digest":
        return f"digest: registry_match = {doc.get('registry_match')}"
    if step.command == "bundle":
        return f"bundle: {safe_text(doc.get('path'), 120)}"
    return f"{step.command}: exit {step.code}"


def run_headless(demo: Demo, say: Callable[[str], None], *, stop: threading.Event | None = None,
                 tail: int = 9, timeout: float = 300.0) -> HeadlessResult:
    """Play the story without the console, narrating each step through ``say`` (safe text).

    The monitoring is the console's own pipeline: a :class:`~polylog_console.core.monitor.session.
    Session` follows the feed (its own event loop, in this thread). Once the drift has escalated,
    an automatic operator runs the runbook: validate, replicas, rehydrate (then the session
    re-checks, as the console does), digest, replicas; in the persistent scenario also the
    escalation bundle. Ends ``tail`` checkpoints later, on ``stop``, or after ``timeout`` seconds.
    """
    assert demo.root is not None and demo.engine is not None, "start() first"
    stop = stop or threading.Event()
    session = Session(demo.workspace, demo.config())
    result = HeadlessResult()

    def show(events: list[Any]) -> None:
        for event in events:
            if isinstance(event, CheckpointEvent):
                result.checkpoints += 1
            elif isinstance(event, StatusEvent):
                result.statuses.append(str(event.status))
                say(f"status      {event.status}")
            elif isinstance(event, AlertEvent):
                alert = event.alert
                result.alerts.append((alert.code, alert.status))
                say(f"alert       {alert.code} {alert.status}: {safe_text(alert.summary, 160)}")
            elif isinstance(event, IngestErrorEvent):
                result.ingest_errors += 1
                say(f"ingest      line {event.error.line}: {safe_text(event.error.reason, 120)}")

    session.subscribe(show)
    say(f"workspace   {safe_text(str(demo.root))}")
    for name, server in demo.replicas.items():
        say(f"replica     {name} on {server.url}")
    say(f"engine      {demo.settings.rate:g} checkpoints/s, scenario {demo.settings.scenario}")
    asyncio.run(_operate(demo, session, result, say, stop, tail, timeout))
    say(f"done        {result.checkpoints} checkpoints seen, final status {session.monitor.status}")
    return result


async def _operate(demo: Demo, session: Session, result: HeadlessResult, say: Callable[[str], None],
                   stop: threading.Event, tail: int, timeout: float) -> None:
    """The automatic operator, on the session's loop: it wakes on each engine append."""
    assert demo.root is not None and demo.engine is not None
    root, engine = demo.root, demo.engine
    steps = demo.subscribe()
    batch = asyncio.Event()
    session.subscribe(lambda events: batch.set())
    follow = asyncio.create_task(session.run())

    async def run(command: str) -> None:
        outcome = await asyncio.to_thread(run_command, root, command)
        result.steps.append(outcome)
        say(f"operator    {_describe(outcome)}")

    async def caught_up() -> None:
        """Until the session has compared everything the feed holds now (2 s at most)."""
        size = session.config.feed.path.stat().st_size
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                while True:
                    latest = session.monitor.latest
                    if latest is not None and latest.offset + len(latest.raw) >= size:
                        return
                    batch.clear()
                    await batch.wait()

    deadline = time.monotonic() + timeout
    operator_done_at: int | None = None
    try:
        while not stop.is_set() and time.monotonic() < deadline and not follow.done():
            try:  # wakes on each append; the timeout only lets `stop` in
                step = await asyncio.to_thread(steps.get, True, 0.5)
            except queue.Empty:
                if not demo.running:  # the engine failed (e.g. the disk filled up): nothing more will come
                    say(f"engine      stopped: {safe_text(demo.error or 'unknown reason', 160)}")
                    break
                continue
            if step.kind == "source_update":
                say("engine      took the upstream source update (stable_polyforms.jsonl changed)")
            await caught_up()
            monitor = session.monitor
            if operator_done_at is None and monitor.escalated:
                say("operator    drift escalated: running the runbook")
                for command in ("validate", "replicas", "rehydrate"):
                    await run(command)
                # As the console does after its rehydrate action: compare again now, so that a drift
                # that survives the rehydrate escalates as such ("drift remains after rehydrate").
                session.recheck(after_rehydrate=True)
                for command in ("digest", "replicas"):
                    await run(command)
                await caught_up()
                if monitor.status is Status.DRIFT:
                    await run("bundle")
                operator_done_at = engine.appended
            if operator_done_at is not None and engine.appended >= operator_done_at + tail:
                await caught_up()
                result.finished = True
                break
    finally:
        session.stop()
        await follow


def iter_feed(path: Path) -> Iterator[dict[str, Any]]:
    """Every JSON object of a feed file, in order (to inspect what the demo wrote)."""
    with open(path, "rb") as handle:
        for raw in handle:
            if raw.strip():
                yield orjson.loads(raw)
