"""Runbook step 5, "verify replicas": digest parity of every configured replica (SPEC §10).

A replica is a registry snapshot reachable by a path (a JSON file shaped like
``catalogs/registry.json``) or by HTTP GET returning JSON with at least ``digest`` and optionally
``state``, ``scheme``, ``label`` and ``generated_at``. For each replica this module reports its
digest, whether it matches the stored registry, the latency, a one-line error, and, when the
replica serves its ``state``, the per-namespace diff against the stored registry that localises
the drift (and whether that state really digests to the digest the replica claims).

Rules:

* ``match`` is True only when the replica's digest equals the stored digest under the configured
  scheme (and its state, when served, is consistent with it). ``match`` is None when nothing could
  be compared (unreachable, timeout, HTTP error, garbage, missing digest): such a replica is never
  reported as matching. A digest equal to the stored one under the *other* scheme is a
  ``scheme_mismatch`` (as for checkpoints, SPEC §3), not drift; it still fails parity.
* All replicas are checked concurrently. ``timeout`` is the whole budget of one replica, retries
  included, enforced as a hard deadline (httpx's own timeouts are per socket operation, so a
  server that trickles bytes could otherwise outlast them): a hanging replica never delays the
  report beyond the largest timeout plus a little overhead.
* Connection errors, timeouts and 5xx answers are retried up to ``retries`` times with exponential
  backoff while the budget lasts; 4xx answers are not retried.
* Replica content is untrusted: bodies are size-capped, every field is type-checked, errors are one
  line, URLs are shown with credentials and secret-looking query values masked, file replica
  paths are confined to the workspace and read with the bounded reader (regular files only).
  Callers still pass text through ``safe_text`` to print it.
* Memory is bounded by design: one replica's body is at most :data:`MAX_BODY` bytes, and the bodies
  held at once by *all* the replicas of one check share one budget of :data:`TOTAL_BODY` bytes
  (:class:`BodyBudget`). A replica streams into the budget; when it is full the replica waits for
  another one to finish with its body, and when every holder is waiting (no one could ever
  release) the replica that found it so is refused with a one-line error rather than deadlock.
  Big bodies are parsed one at a time. A ``Content-Length`` over the limit is refused unread.
* No exception from one replica can lose the others' results: anything a check raises becomes that
  replica's one-line error (a redirect loop is "too many redirects"), never a match.

Parsing, digesting and diffing run in worker threads so that a replica serving a large state does
not stall the event loop (and the latency measured for the other replicas).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import orjson

from polylog_console import __version__
from polylog_console.core.infra import reader
from polylog_console.core.model.config import Config, ReplicaConfig
from polylog_console.core.model.errors import PolylogError
from polylog_console.core.model.events import iso
from polylog_console.core.model.progress import Progress
from polylog_console.core.model.workspace import Workspace
from polylog_console.core.registry.diff import DiffSummary, diff_states
from polylog_console.core.registry.digest import SCHEMES, digest, looks_like_digest, other_scheme
from polylog_console.core.registry.stored import StoredRegistry, StoredView, type_name, validate_state

Kind = Literal["file", "http"]

MAX_BODY = 512 * 1024 * 1024  # bytes; a replica serving more is refused (a 1M-symbol state is ~60 MB)
TOTAL_BODY = 512 * 1024 * 1024  # bytes of replica bodies held at once, all replicas of a check together
BIG_BODY = 16 * 1024 * 1024  # bodies larger than this are parsed one at a time (parsing multiplies memory)
MAX_REDIRECTS = 10
BACKOFF = 0.1  # seconds before the first retry, doubled for each further retry
MIN_ATTEMPT = 0.05  # no retry is started with less budget than this left
DIFF_SAMPLE = 5  # entries of each kind kept in the JSON form of a replica's diff
_SECRET_WORDS = ("secret", "password", "passwd", "token", "key", "auth", "signature", "sig")


@dataclass
class ReplicaResult:
    """The parity of one replica. ``match`` None means unknown (see :attr:`status` and :attr:`error`)."""

    name: str
    kind: Kind
    digest: str | None
    match: bool | None
    latency_ms: float | None
    error: str | None
    checked_at: float
    generated_at: str | None = None
    diff: DiffSummary | None = None  # counts and sample only: a big diff is not kept
    location: str = ""  # URL (credentials masked) or workspace-relative path
    attempts: int = 0
    reachable: bool = False  # a response (or the file's bytes) was obtained
    scheme: str | None = None  # the scheme the replica declares, if any
    scheme_mismatch: bool = False
    state_served: bool = False
    state_consistent: bool | None = None  # the served state digests to the claimed digest
    label: str | None = None

    @property
    def status(self) -> str:
        """``match``, ``drift``, ``scheme mismatch``, ``inconsistent``, ``unreachable`` or ``error``."""
        if self.match is True:
            return "match"
        if self.match is False:
            if self.state_consistent is False:
                return "inconsistent"
            return "scheme mismatch" if self.scheme_mismatch else "drift"
        return "error" if self.reachable else "unreachable"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "location": self.location,
            "status": self.status,
            "digest": self.digest,
            "match": self.match,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 3),
            "error": self.error,
            "checked_at": iso(self.checked_at),
            "attempts": self.attempts,
            "generated_at": self.generated_at,
            "scheme_mismatch": self.scheme_mismatch,
            "state_served": self.state_served,
            "state_consistent": self.state_consistent,
            "diff": None,
        }
        if self.diff is not None:
            d = self.diff
            out["diff"] = {**d.counts(), "per_namespace": d.per_namespace(), "sample": d.sample(DIFF_SAMPLE)}
        return out


@dataclass
class ParityReport:
    """Parity of every configured replica against the stored registry."""

    stored_digest: str
    scheme: str
    replicas: list[ReplicaResult] = field(default_factory=list)
    elapsed_ms: float = 0.0
    body_peak: int = 0  # most bytes of replica bodies held at once during the check

    @property
    def ok(self) -> bool:
        """True when every replica matches (vacuously true with no replica configured)."""
        return all(r.match is True for r in self.replicas)

    def to_json(self) -> dict[str, Any]:
        return {
            "stored_digest": self.stored_digest,
            "scheme": self.scheme,
            "ok": self.ok,
            "elapsed_ms": round(self.elapsed_ms, 3),
            "replicas": [r.to_json() for r in self.replicas],
        }


# --- helpers -------------------------------------------------------------------------------------

def display_url(url: str) -> str:
    """``url`` with the password of its user info and secret-looking query values masked."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            masked = [(k, "***" if any(w in k.lower() for w in _SECRET_WORDS) else v) for k, v in pairs]
            query = urlencode(masked, safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:
        return "<invalid URL>"


def one_line(text: str, limit: int = 300) -> str:
    """Collapse whitespace runs (newlines included) to one space and cut to ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_transport_error(exc: BaseException) -> str:
    """A short reason for a failed request, from the deepest OS error in the chain when there is one."""
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect timed out"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out waiting for the response"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "connection closed without a complete response"
    seen: set[int] = set()
    node: BaseException | None = exc
    deepest: OSError | None = None
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        if isinstance(node, OSError) and node.errno is not None:
            deepest = node
        node = node.__cause__ or node.__context__
    if deepest is not None:
        if isinstance(deepest, socket.gaierror):
            reason = f"cannot resolve the host name ({deepest.strerror or deepest})"
        else:  # asyncio's strerror is "Connect call failed (...)": the errno's own text is clearer
            reason = os.strerror(deepest.errno) if deepest.errno and deepest.errno > 0 else str(deepest)
        return one_line(reason[:1].lower() + reason[1:], 160)
    if isinstance(exc, httpx.ConnectError):
        return "cannot connect"
    if isinstance(exc, httpx.ReadError):
        return "connection broken while reading the response"
    return one_line(f"{type(exc).__name__}: {exc}", 160)


class _TooLarge(Exception):
    pass


class _OverBudget(Exception):
    def __init__(self, held: int, alone: bool) -> None:
        super().__init__(held)
        self.held = held
        self.alone = alone  # no other replica holds any of the budget: this body alone is too big


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.0f} MB" if size >= 1024 * 1024 else f"{size} bytes"


class BodyBudget:
    """Bytes of replica bodies held in memory at once, shared by every replica of one check.

    :meth:`take` grants bytes or waits until another replica :meth:`release`-s its own; when no
    holder could release (every other holder is waiting too, or there is none) it raises
    :class:`_OverBudget` instead: the check never deadlocks and never holds more than
    ``capacity``. A replica refused while others hold parts of the budget drops its partial body,
    waits for one of them to finish (:meth:`wait_for_release`) and fetches again. One event loop
    only (no locking beyond asyncio's)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self.peak = 0
        self._held: dict[int, int] = {}
        self._waiting: set[int] = set()
        self._changed = asyncio.Condition()
        self.releases = 0

    def held(self, owner: int) -> int:
        return self._held.get(owner, 0)

    async def take(self, owner: int, size: int) -> None:
        async with self._changed:
            while self.used + size > self.capacity:
                others = [o for o, n in self._held.items() if n and o != owner]
                if not others or all(o in self._waiting for o in others):
                    raise _OverBudget(self.held(owner) + size, alone=not others)
                self._waiting.add(owner)
                try:
                    await self._changed.wait()
                finally:
                    self._waiting.discard(owner)
            self.used += size
            self._held[owner] = self._held.get(owner, 0) + size
            self.peak = max(self.peak, self.used)

    async def release(self, owner: int, *, wake: bool = True) -> None:
        """Return ``owner``'s bytes. ``wake=False`` (a refused replica dropping its partial body)
        does not count as a release for :meth:`wait_for_release`: refused replicas restarting
        each other would go round for ever without any of them finishing."""
        async with self._changed:
            freed = self._held.pop(owner, 0)
            if freed:
                self.used -= freed
                self.releases += wake
                self._changed.notify_all()

    async def wait_for_release(self, seen: int) -> None:
        """Until some replica releases budget after the ``seen``-th release (``wake=True``)."""
        async with self._changed:
            while self.releases == seen:
                await self._changed.wait()


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The verifying TLS context, built once per process: loading the CA bundle costs tens of
    milliseconds, which repeated checks from the console need not pay again."""
    return httpx.create_ssl_context()


@dataclass
class _Analysis:
    digest: str | None = None
    match: bool | None = None
    error: str | None = None
    generated_at: str | None = None
    label: str | None = None
    scheme: str | None = None
    scheme_mismatch: bool = False
    state_served: bool = False
    state_consistent: bool | None = None
    diff: DiffSummary | None = None  # counts and sample only: a big diff is not kept


def analyse(raw: bytes | bytearray, stored: StoredView, scheme: str, *, kind: Kind) -> _Analysis:
    """Compare a replica's document (its raw bytes) with the stored registry.

    ``kind`` decides what is required: an HTTP replica must send ``digest``; a file replica may be
    a snapshot without ``digest`` or a bare state, whose digest is then computed.
    """
    out = _Analysis()
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        preview = bytes(raw[:40]).decode("utf-8", "backslashreplace")
        out.error = one_line(f"not JSON ({exc}); starts with {preview!r}", 200)
        return out
    if not isinstance(data, dict):
        out.error = f"expected a JSON object, got {type_name(data)}"
        return out
    if isinstance(data.get("generated_at"), str):
        out.generated_at = one_line(data["generated_at"], 80)
    if isinstance(data.get("label"), str):
        out.label = one_line(data["label"], 80)
    declared = data.get("scheme")
    if declared is not None:
        if declared not in SCHEMES:
            out.error = f"unknown digest scheme {one_line(str(declared), 40)!r} (expected engine or canonical)"
            return out
        out.scheme = declared

    state: Any = None
    if "state" in data:
        state = data["state"]
    elif kind == "file" and "digest" not in data and data and all(isinstance(v, dict) for v in data.values()):
        state = data  # a bare state {namespace: {signature: symbol}}
    if state is not None:
        try:
            state = validate_state(state, where="state")
        except PolylogError as exc:
            out.error = one_line(str(exc), 200)
            return out
        out.state_served = True

    claimed = data.get("digest")
    if claimed is None and state is None:
        out.error = "no digest in the response" if kind == "http" else "neither digest nor state in the file"
        return out
    if claimed is not None and not isinstance(claimed, str):
        out.error = f"digest is {type_name(claimed)}, expected a string"
        return out
    if isinstance(claimed, str) and not looks_like_digest(claimed):
        out.error = f"digest {one_line(claimed, 80)!r} is not a SHA-256 hex digest (64 lowercase hex characters)"
        return out

    own_scheme = out.scheme or scheme
    if state is not None:
        computed = digest(state, own_scheme)  # type: ignore[arg-type]
        if claimed is None:
            claimed = computed
        elif computed == claimed or digest(state, other_scheme(own_scheme)) == claimed:  # type: ignore[arg-type]
            out.state_consistent = True
        else:
            out.state_consistent = False
            out.error = (f"served state digests to {computed[:12]} ({own_scheme}), "
                         f"not to the claimed digest {claimed[:12]}")
    out.digest = claimed

    if claimed == stored.digest and out.state_consistent is not False:
        out.match = True
        return out
    out.match = False
    if claimed != stored.digest and claimed == stored.other_digest:
        out.scheme_mismatch = True
    if state is not None:
        out.diff = diff_states(stored.state, state).summarised(DIFF_SAMPLE)  # the entries are freed here
    return out


# --- checking ------------------------------------------------------------------------------------

class _Checker:
    """Checks replicas concurrently against one stored view; one per :func:`check_replicas` call."""

    def __init__(self, ws: Workspace, scheme: str, stored: StoredView,
                 executor: concurrent.futures.Executor, budget: BodyBudget) -> None:
        self.ws = ws
        self.scheme = scheme
        self.stored = stored
        self.executor = executor
        self.budget = budget
        self.client: httpx.AsyncClient | None = None
        self._big_parse = asyncio.Semaphore(1)

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def _finish(self, result: ReplicaResult, raw: bytes | bytearray) -> ReplicaResult:
        kind = result.kind
        try:
            if len(raw) > BIG_BODY:
                async with self._big_parse:
                    found: _Analysis = await self._in_thread(
                        lambda: analyse(raw, self.stored, self.scheme, kind=kind))
            else:
                found = await self._in_thread(lambda: analyse(raw, self.stored, self.scheme, kind=kind))
        except RecursionError:  # valid JSON nested deeper than the digest's serialiser goes
            found = _Analysis(error="state nested too deeply to digest or compare")
        result.digest = found.digest
        result.match = found.match
        result.error = found.error
        result.generated_at = found.generated_at
        result.label = found.label
        result.scheme = found.scheme
        result.scheme_mismatch = found.scheme_mismatch
        result.state_served = found.state_served
        result.state_consistent = found.state_consistent
        result.diff = found.diff
        return result

    async def check(self, rc: ReplicaConfig) -> ReplicaResult:
        """One replica's result, whatever happens: an unexpected exception becomes its error."""
        owner = id(rc)
        try:
            if rc.url is not None:
                return await self.check_http(rc, owner)
            return await self.check_file(rc, owner)
        except Exception as exc:  # one replica's surprise must not lose the others' results
            kind: Kind = "http" if rc.url is not None else "file"
            location = display_url(rc.url) if rc.url is not None else (
                self.ws.relative(rc.path) if rc.path is not None else "")
            return ReplicaResult(rc.name, kind, None, None, None,
                                 one_line(f"check failed: {type(exc).__name__}: {exc}", 200), time.time(),
                                 location=location)
        finally:
            await self.budget.release(owner)

    async def check_file(self, rc: ReplicaConfig, owner: int) -> ReplicaResult:
        location = self.ws.relative(rc.path) if rc.path is not None else ""
        result = ReplicaResult(rc.name, "file", None, None, None, None, time.time(), location=location)
        started = time.monotonic()
        try:
            path = self.ws.confine(str(rc.path), what="replica path")
        except PolylogError as exc:
            result.error = one_line(str(exc))
            return result
        result.attempts = 1
        fd = None
        try:
            async with asyncio.timeout(rc.timeout):
                # Regular files only, opened without blocking (a FIFO or a device is refused).
                fd, st = reader.open_regular(path, label=location, what="file")
                if st.st_size > MAX_BODY:
                    raise _TooLarge
                await self.budget.take(owner, st.st_size)
                handed, fd = fd, None  # the reading thread closes it (also if the timeout fires first)
                raw = await self._in_thread(_read_and_close, handed, st.st_size, location)
        except TimeoutError:
            result.error = f"file not read within {rc.timeout:g} s"
            return result
        except reader.UnreadableFile as exc:
            result.error = one_line(f"file not found: {location}" if exc.missing else str(exc))
            return result
        except _TooLarge:
            result.error = f"file larger than {MAX_BODY // (1024 * 1024)} MB, refused"
            return result
        except _OverBudget as exc:
            result.error = _over_budget_message(exc.held)
            return result
        finally:
            if fd is not None:
                os.close(fd)
        result.latency_ms = (time.monotonic() - started) * 1000
        result.reachable = True
        return await self._finish(result, raw)

    async def check_http(self, rc: ReplicaConfig, owner: int) -> ReplicaResult:
        assert rc.url is not None and self.client is not None
        result = ReplicaResult(rc.name, "http", None, None, None, None, time.time(), location=display_url(rc.url))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + rc.timeout
        errors: list[str] = []
        raw: bytearray | None = None
        try:
            async with asyncio.timeout_at(deadline):
                while True:
                    result.attempts += 1
                    t0 = time.monotonic()
                    retry = True
                    restart = False
                    await self.budget.release(owner)  # a failed attempt's partial body
                    try:
                        status, reason, body = await self._fetch(rc.url, max(deadline - loop.time(), 0.001), owner)
                    except httpx.TransportError as exc:
                        errors.append(describe_transport_error(exc))
                    except httpx.TooManyRedirects:
                        result.reachable = True
                        errors.append(f"too many redirects (more than {MAX_REDIRECTS})")
                        retry = False
                    except httpx.HTTPError as exc:  # a body that cannot be decoded, an unusable redirect, ...
                        result.reachable = True
                        errors.append(one_line(f"{type(exc).__name__}: {exc}", 160))
                        retry = False
                    except _TooLarge:
                        result.reachable = True
                        errors.append(f"response larger than {MAX_BODY // (1024 * 1024)} MB, refused")
                        retry = False
                    except _OverBudget as exc:
                        result.reachable = True
                        restart = not exc.alone  # others hold the rest: drop this body, wait, again
                        if not restart:
                            errors.append(_over_budget_message(exc.held))
                        retry = False
                    else:
                        result.reachable = True
                        result.latency_ms = (time.monotonic() - t0) * 1000
                        if 200 <= status < 300:
                            raw = body
                            break
                        errors.append(f"HTTP {status} {one_line(reason, 60)}".rstrip())
                        retry = status >= 500
                    if restart:
                        # Outside the except clause: its traceback held the partial body's frame.
                        await self.budget.release(owner, wake=False)
                        await self.budget.wait_for_release(self.budget.releases)
                        result.attempts -= 1
                        continue
                    remaining = deadline - loop.time()
                    delay = BACKOFF * 2 ** (result.attempts - 1)
                    if not retry or result.attempts > rc.retries or remaining < delay + MIN_ATTEMPT:
                        break
                    await asyncio.sleep(delay)
        except TimeoutError:
            errors.append(f"no complete response within {rc.timeout:g} s")
        if raw is None:
            result.error = _summarise(errors, result.attempts)
            return result
        return await self._finish(result, raw)

    async def _fetch(self, url: str, timeout: float, owner: int) -> tuple[int, str, bytearray]:
        """GET ``url``: status, reason and body, streamed into the shared :class:`BodyBudget`
        (never more than :data:`MAX_BODY` for this replica)."""
        assert self.client is not None
        async with self.client.stream("GET", url, timeout=timeout) as response:
            if not 200 <= response.status_code < 300:
                return response.status_code, response.reason_phrase, bytearray()
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and len(declared) < 20 and int(declared) > MAX_BODY:
                raise _TooLarge  # said so up front: not a byte read
            body = bytearray()
            async for chunk in response.aiter_bytes():  # decoded: the bound holds for what is kept
                if len(body) + len(chunk) > MAX_BODY:
                    raise _TooLarge
                await self.budget.take(owner, len(chunk))
                body += chunk
            return response.status_code, response.reason_phrase, body


def _read_and_close(fd: int, size: int, label: str) -> bytes:
    """The ``size`` bytes of a file replica (the budget was taken for them); a file that grew
    since its ``fstat`` is refused rather than read past what was budgeted."""
    try:
        return reader.read_fd(fd, size, size, label)
    except reader.UnreadableFile as exc:
        if "larger than" in exc.reason:
            raise reader.UnreadableFile(label, "file grew while being read, refused") from None
        raise
    finally:
        os.close(fd)


def _over_budget_message(held: int) -> str:
    return (f"response refused at {_mb(held)}: the replicas' bodies together would exceed the "
            f"{_mb(TOTAL_BODY)} held at once")


def _summarise(errors: list[str], attempts: int) -> str:
    """The last error, the number of attempts and, when they differ, the first error."""
    if not errors:
        return "no response"
    text = errors[-1]
    if attempts > 1:
        text += f" (after {attempts} attempts"
        if errors[0] != errors[-1]:
            text += f"; first: {errors[0]}"
        text += ")"
    return one_line(text)


async def check_replicas(ws: Workspace, config: Config, *, stored: StoredView | None = None,
                         progress: Progress | None = None) -> ParityReport:
    """Check every replica in ``config.replicas`` concurrently (see the module docstring).

    ``stored`` defaults to the workspace's stored registry (RegistryError when unreadable).
    Raises :class:`~polylog_console.core.model.progress.Cancelled` when ``progress`` is cancelled.
    """
    started = time.monotonic()
    if stored is None:
        stored = StoredRegistry.for_workspace(ws, config.scheme).get()  # type: ignore[arg-type]
    replicas = list(config.replicas)
    report = ParityReport(stored.digest, config.scheme)
    if progress is not None:
        progress.update(0, len(replicas), f"checking {len(replicas)} replicas")
    if not replicas:
        return report
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(replicas)),
                                                     thread_name_prefix="replicas")
    budget = BodyBudget(TOTAL_BODY)
    checker = _Checker(ws, config.scheme, stored, executor, budget)
    http_count = sum(1 for r in replicas if r.url is not None)
    try:
        if http_count:
            checker.client = httpx.AsyncClient(
                verify=tls_context(),
                follow_redirects=True,
                max_redirects=MAX_REDIRECTS,
                headers={"Accept": "application/json", "User-Agent": f"polylog-console/{__version__}"},
                limits=httpx.Limits(max_connections=http_count, max_keepalive_connections=0),
            )
        tasks = {asyncio.create_task(checker.check(rc)): index for index, rc in enumerate(replicas)}
        results: list[ReplicaResult | None] = [None] * len(replicas)
        pending = set(tasks)
        try:
            while pending:
                # Wake at least a few times a second (only while checking) to honour a cancel.
                done, pending = await asyncio.wait(pending, timeout=0.2, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    result = task.result()
                    results[tasks[task]] = result
                    if progress is not None:
                        progress.update(sum(r is not None for r in results), None, f"{result.name}: {result.status}")
                if progress is not None:
                    progress.check()
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
    finally:
        if checker.client is not None:
            await checker.client.aclose()
        executor.shutdown(wait=False, cancel_futures=True)
    report.replicas = [r for r in results if r is not None]
    report.elapsed_ms = (time.monotonic() - started) * 1000
    report.body_peak = budget.peak
    return report


def check_replicas_sync(ws: Workspace, config: Config, **kw: Any) -> ParityReport:
    """:func:`check_replicas` for the CLI and worker threads (which have no running event loop)."""
    return asyncio.run(check_replicas(ws, config, **kw))


def summary_line(report: ParityReport) -> str:
    """``2 replicas: 1 match, 1 drift`` (for notifications and the audit log)."""
    if not report.replicas:
        return "no replicas configured"
    tally: dict[str, int] = {}
    for r in report.replicas:
        tally[r.status] = tally.get(r.status, 0) + 1
    parts = ", ".join(f"{n} {status}" for status, n in sorted(tally.items()))
    return f"{len(report.replicas)} replica{'s' if len(report.replicas) != 1 else ''}: {parts}"
