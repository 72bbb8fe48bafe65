"""Registry state, snapshots and the cached stored registry (SPEC §3).

The registry state is ``{namespace: {signature: symbol}}``; a snapshot file (``catalogs/registry.json``
or a ``registry_snapshot`` named by a checkpoint, or a file replica) holds
``{"label", "digest", "scheme", "state"}``. :class:`StoredRegistry` keeps the parsed stored
registry and its digests in memory and reloads only when the file's identity (device, inode,
size, mtime) changes, so a monitor can ask for the stored digest once per batch of checkpoints.
"""

from __future__ import annotations

import gc
import hashlib
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from polylog_console.core.infra import atomic, reader
from polylog_console.core.infra.text import type_name
from polylog_console.core.model.errors import RegistryError
from polylog_console.core.registry.digest import Scheme, digest, other_scheme
from polylog_console.core.registry.snapshot_digest import digest_of_snapshot_bytes, snapshot_head, state_bytes

NAMESPACES = ("clusters", "assemblies", "megas")
DEFAULT_NAMESPACE = "clusters"

State = dict[str, dict[str, str]]
_STR = {str}


def state_from_polyforms(polyforms: Iterable[Mapping[str, Any]]) -> State:
    """``state[namespace][uuid] = unicode_char`` for every polyform that has a symbol.

    The three known namespaces are always present (possibly empty), so that a registry with no
    megas still digests the same way everywhere.
    """
    state: State = {ns: {} for ns in NAMESPACES}
    for polyform in polyforms:
        symbol = polyform.get("unicode_char")
        if not isinstance(symbol, str):
            continue
        ns = polyform.get("namespace") or DEFAULT_NAMESPACE
        state.setdefault(ns, {})[polyform["uuid"]] = symbol
    return state


def symbol_count(state: Mapping[str, Mapping[str, Any]]) -> int:
    return sum(len(t) for t in state.values() if isinstance(t, Mapping))


def validate_state(obj: Any, *, where: str, strict: bool = False) -> State:
    """Check that ``obj`` is ``{namespace: {...}}``; raise RegistryError naming ``where`` if not.

    With ``strict`` (the stored registry) it must be exactly ``{str: {str: str}}``: a registry whose
    symbols are numbers, arrays, objects or null is refused as unreadable, never digested as if it
    were a registry. The types of every key and symbol are collected in C (60-85 ms for 1,000,000
    symbols, on a busy machine); only a failure walks the table to name the culprit. Without it (a
    state given to ``digest --of``, a checkpoint's state, a replica's) any JSON values digest, as
    SPEC §3's vectors do.
    """
    if not isinstance(obj, dict):
        raise RegistryError(f"{where}: registry state must be an object, got {type_name(obj)}")
    for ns, table in obj.items():
        if not isinstance(ns, str):
            raise RegistryError(f"{where}: namespace names must be strings, got {type_name(ns)}")
        if not isinstance(table, dict):
            raise RegistryError(f"{where}: namespace {ns!r} must be an object, got {type_name(table)}")
        if not strict:
            continue
        if not (set(map(type, table)) <= _STR and set(map(type, table.values())) <= _STR):
            for signature, symbol in table.items():
                if not isinstance(signature, str):
                    raise RegistryError(f"{where}: namespace {ns!r}: signatures must be strings, "
                                        f"got {type_name(signature)}")
                if not isinstance(symbol, str):
                    raise RegistryError(f"{where}: namespace {ns!r}: symbol of {signature[:80]!r} must be a "
                                        f"string, got {type_name(symbol)}")
    return obj




@dataclass(frozen=True, slots=True)
class Snapshot:
    """A parsed registry snapshot. ``digest`` is the one written in the file (may be absent)."""

    state: State
    label: str | None = None
    digest: str | None = None
    scheme: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def parse_snapshot(data: Any, *, where: str, strict: bool = False) -> Snapshot:
    """A snapshot object, or a bare state (an object whose values are all objects). ``strict``: see
    :func:`validate_state`."""
    if not isinstance(data, dict):
        raise RegistryError(f"{where}: expected a JSON object, got {type_name(data)}")
    if "state" in data:
        state = validate_state(data["state"], where=where, strict=strict)
        label = data.get("label")
        file_digest = data.get("digest")
        scheme = data.get("scheme")
        extra = {k: v for k, v in data.items() if k not in {"state", "label", "digest", "scheme"}}
        return Snapshot(
            state,
            label if isinstance(label, str) else None,
            file_digest if isinstance(file_digest, str) else None,
            scheme if isinstance(scheme, str) else None,
            extra,
        )
    return Snapshot(validate_state(data, where=where, strict=strict))


def read_json(path: Path, *, what: str = "file", label: str | None = None,
              limit: int = reader.LIMITS["registry snapshot"]) -> Any:
    """Parse a JSON file (read with :mod:`~polylog_console.core.infra.reader`: a regular file of at
    most ``limit`` bytes, never blocking), or raise a one-line :class:`RegistryError` naming it."""
    return _loads(_read_bytes(path, what, label, limit), label or path)


def load_snapshot(path: Path, *, label: str | None = None) -> Snapshot:
    """A registry snapshot file (a ``registry_snapshot``, ``digest --of FILE``); ``label`` names it in
    messages (default: the path)."""
    label = str(path) if label is None else label
    return parse_snapshot(read_json(path, what="registry snapshot", label=label), where=label)


def digest_file(path: Path, scheme: Scheme, *, label: str | None = None) -> tuple[str, int]:
    """``(digest, symbols)`` of a snapshot or bare-state file (``digest --of``). A file in the
    layout this project writes is digested from its bytes (peak memory about the file's size plus
    a chunk, not the ~8x of a parsed state); anything else is parsed as :func:`load_snapshot` does."""
    label = str(path) if label is None else label
    raw = _read_bytes(path, "registry snapshot", label)
    value = digest_of_snapshot_bytes(raw, scheme)
    if value is not None:
        state = state_bytes(raw)
        # The fast path accepted it: no escapes in the state, so '":"' separates each signature
        # from its symbol exactly once (a namespace is followed by '":{').
        return value, state.count(b'":"') if state is not None else 0
    snapshot = parse_snapshot(_loads(raw, label), where=label)
    del raw
    return digest(snapshot.state, scheme), symbol_count(snapshot.state)


def snapshot_bytes(state: State, *, label: str, scheme: Scheme = "engine", **extra: Any) -> bytes:
    """Serialise a snapshot (keys sorted, so that loading it back gives sorted tables)."""
    body = {"label": label, "digest": digest(state, scheme), "scheme": scheme, **extra, "state": state}
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def save_snapshot(path: Path, state: State, *, label: str, scheme: Scheme = "engine", **extra: Any) -> None:
    atomic.write_bytes(path, snapshot_bytes(state, label=label, scheme=scheme, **extra))


def file_identity(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class StoredView:
    """The stored registry as last loaded: its digest under the configured scheme, and (parsed on
    first use) its state, its digest under the other scheme and its own ``digest`` field.

    ``content_hash`` is the SHA-256 of the file's bytes; the digest cache is keyed by it.
    """

    def __init__(self, path: Path, scheme: Scheme, digest_value: str, identity: tuple[int, int, int, int],
                 content_hash: str, snapshot: Snapshot | None = None, label: str | None = None) -> None:
        self.path = path
        self.file_label = str(path) if label is None else label  # the file's name in messages
        self.scheme: Scheme = scheme
        self.digest = digest_value
        self.identity = identity
        self.content_hash = content_hash
        self._snapshot = snapshot
        self._other: dict[str, str] = {}
        self._lock = threading.Lock()

    def _current_bytes(self) -> bytes:
        """The file's bytes, as they were when this view was made (else RegistryError)."""
        raw = _read_bytes(self.path, label=self.file_label)
        if hashlib.sha256(raw).hexdigest() != self.content_hash:
            raise RegistryError(f"{self.file_label}: changed while being read; it will be reloaded")
        return raw

    def _parse(self, raw: bytes) -> Snapshot:
        with self._lock:
            if self._snapshot is None:
                self._snapshot = parse_snapshot(_loads(raw, self.file_label), where=self.file_label, strict=True)
        return self._snapshot

    @property
    def snapshot(self) -> Snapshot:
        """The parsed file. Raises RegistryError if the file changed since this view was made."""
        if self._snapshot is None:
            return self._parse(self._current_bytes())
        return self._snapshot

    @property
    def state(self) -> State:
        return self.snapshot.state

    @property
    def symbols(self) -> int:
        return symbol_count(self.snapshot.state)

    @property
    def loaded_symbols(self) -> int | None:
        """Symbol count if the state is already parsed (never parses it)."""
        return symbol_count(self._snapshot.state) if self._snapshot is not None else None

    @property
    def label(self) -> str | None:
        return self.snapshot.label

    @property
    def file_digest_ok(self) -> bool:
        """False when registry.json's own ``digest`` field disagrees with its state."""
        snap = self.snapshot
        if snap.digest is None:
            return True
        if snap.scheme in (None, self.scheme):
            return snap.digest == self.digest
        if snap.scheme not in ("engine", "canonical"):
            return False
        return snap.digest == self.digest_under(snap.scheme)  # type: ignore[arg-type]

    def digest_under(self, scheme: Scheme) -> str:
        if scheme == self.scheme:
            return self.digest
        if scheme not in self._other:
            if self._snapshot is not None:
                self._other[scheme] = digest(self._snapshot.state, scheme)
            else:  # one read of the file: digested from its bytes, or parsed from them
                raw = self._current_bytes()
                fast = digest_of_snapshot_bytes(raw, scheme)
                self._other[scheme] = fast if fast is not None else digest(self._parse(raw).state, scheme)
        return self._other[scheme]

    @property
    def other_digest(self) -> str:
        return self.digest_under(other_scheme(self.scheme))


def _read_bytes(path: Path, what: str = "stored registry", label: str | None = None,
                limit: int | None = None) -> bytes:
    """The file's bytes through the bounded reader; RegistryError (one line naming it) otherwise."""
    if limit is None:
        limit = reader.LIMITS["stored registry" if what == "stored registry" else "registry snapshot"]
    try:
        return reader.read_bytes(path, limit, label=str(path) if label is None else label, what=what)
    except reader.UnreadableFile as exc:
        raise RegistryError(str(exc)) from None


def tolerant_loads(raw: bytes) -> tuple[Any, str | None]:
    """``(value, None)`` for a JSON document, or ``(None, orjson's reason)``. orjson first; what it
    refuses gets the feed parser's second look (:func:`polylog_console.core.feed.records._slow_loads`,
    the one tolerant JSON reader): ``1e400`` (a float, infinite), ``NaN`` / ``Infinity`` (Python's
    ``json.dumps`` writes them), an integer of more than 4,300 digits (an ``Unreadable`` marker) and
    lone-surrogate escapes (``"\\ud800"``: valid JSON, a ``str`` holding the surrogate) are read, so
    that such a value in an unrelated field does not make the whole file "not valid JSON". What a
    caller needs strictly (a registry state is ``{str: {str: str}}``) it still checks itself."""
    try:
        return orjson.loads(raw), None
    except orjson.JSONDecodeError as exc:
        reason = str(exc)
    from polylog_console.core.feed.records import tolerant_loads as _slow_loads

    value, _slow_reason = _slow_loads(raw[3:] if raw.startswith(b"\xef\xbb\xbf") else raw)
    if _slow_reason is None:
        return value, None
    return None, reason


def _loads(raw: bytes, path: Path | str) -> Any:
    value, reason = tolerant_loads(raw)
    if reason is not None:
        raise RegistryError(f"{path}: not valid JSON ({reason})")
    return value


class DigestCache:
    """Digests of registry files keyed by the SHA-256 of the file's bytes and the scheme, in a small
    JSON file, so that a 1,000,000-symbol registry is parsed and digested once, not at every start.
    Hashing the bytes (not trusting mtime) makes a stale entry impossible. Best effort: a cache
    that cannot be read or written is simply not used.

    The cache may speed an answer up, never change it: :class:`StoredRegistry` trusts an entry
    only when it equals the file's own ``digest`` field under the same scheme (see
    :func:`trusted_cached_digest`), so a cache file written by anyone else with wrong values is
    ignored and the digest recomputed."""

    LIMIT = 16

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def _read(self) -> dict[str, str]:
        if self.path is None:
            return {}
        try:
            data = orjson.loads(reader.read_bytes(self.path, reader.LIMITS["digest cache"], what="digest cache"))
        except (reader.UnreadableFile, orjson.JSONDecodeError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, content_hash: str, scheme: str) -> str | None:
        value = self._read().get(f"{scheme}:{content_hash}")
        return value if isinstance(value, str) and len(value) == 64 else None

    def put(self, content_hash: str, scheme: str, value: str) -> None:
        if self.path is None:
            return
        data = self._read()
        data.pop(f"{scheme}:{content_hash}", None)
        data[f"{scheme}:{content_hash}"] = value
        while len(data) > self.LIMIT:
            data.pop(next(iter(data)))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_bytes(self.path, orjson.dumps(data), durable=False)
        except OSError:
            pass


def trusted_cached_digest(raw: bytes, scheme: str, cached: str | None) -> str | None:
    """``cached`` when it may stand for the digest of the snapshot ``raw`` under ``scheme``: the file
    is in this project's layout and its own ``digest`` field, written for that same scheme, says
    the same. Anything else (another layout, no digest field, a field for the other scheme, a
    field that disagrees) is None: the caller recomputes. A wrong cache entry therefore cannot
    make a drifted registry look like parity."""
    if cached is None:
        return None
    head = snapshot_head(raw)
    if head is None or head.get("digest") != cached or (head.get("scheme") or "engine") != scheme:
        return None
    return cached


class StoredRegistry:
    """``catalogs/registry.json`` with its digest cached until the file changes.

    :meth:`get` costs one ``stat`` when nothing changed. When the file changed, its bytes are
    hashed and the digest comes from the :class:`DigestCache` when known and confirmed by the
    file's own ``digest`` field (:func:`trusted_cached_digest`); otherwise the file is digested
    (and the cache updated). The file is read with the bounded reader (a regular file of at most
    512 MB, never blocking) and must hold a ``{str: {str: str}}`` state. Raises
    :class:`RegistryError` when it cannot be read, parsed or is of another shape (the monitor's
    ``registry_provider_error``). Thread-safe.
    """

    def __init__(self, path: Path, scheme: Scheme = "engine", cache: Path | None = None,
                 label: str | None = None) -> None:
        self.path = Path(path)
        self.scheme: Scheme = scheme
        self.cache = DigestCache(cache)
        self.label = str(self.path) if label is None else label  # the file's name in messages
        self._view: StoredView | None = None
        self._lock = threading.Lock()
        self.loads = 0  # how many times the file was digested, not found in the cache (tests, benchmarks)
        self.cache_refused = 0  # cache entries found but not trusted (they disagreed with the file)
        self._other_ready: tuple[str, str, str] | None = None  # (content hash, scheme, digest): precompute_other

    def precompute_other(self) -> bool:
        """Digest the file under the other scheme now (this process, from its bytes: never a cache),
        for the view :meth:`get` makes of the same bytes: what telling a drift from a scheme mismatch
        needs at the first drift, done while this process would wait anyway (``watch --once``,
        while a child digests the registry). True when it was done; only for this project's layout."""
        try:
            raw = _read_bytes(self.path, label=self.label)
        except RegistryError:
            return False
        scheme = other_scheme(self.scheme)
        value = digest_of_snapshot_bytes(raw, scheme)
        if value is None:
            return False
        self._other_ready = (hashlib.sha256(raw).hexdigest(), scheme, value)
        return True

    @classmethod
    def for_workspace(cls, ws: Any, scheme: Scheme = "engine") -> StoredRegistry:
        return cls(ws.registry, scheme, ws.digest_cache, label=ws.relative(ws.registry))

    def peek(self) -> StoredView | None:
        """The last loaded view without touching the disk."""
        return self._view

    def get(self) -> StoredView:
        identity = file_identity(self.path)
        view = self._view
        if view is not None and identity == view.identity:
            return view
        with self._lock:
            view = self._view
            identity = file_identity(self.path)
            if view is not None and identity == view.identity:
                return view
            self._view = None
            if identity is None:
                if os.path.lexists(self.path):  # there but not stat-able: the reader says why (symlink loop...)
                    _read_bytes(self.path, label=self.label)
                raise RegistryError(f"{self.label}: stored registry not found")
            raw = _read_bytes(self.path, label=self.label)
            content_hash = hashlib.sha256(raw).hexdigest()
            if view is not None and view.content_hash == content_hash:
                view.identity = identity  # touched, not changed
                self._view = view
                return view
            cached = self.cache.get(content_hash, self.scheme)
            value = trusted_cached_digest(raw, self.scheme, cached)
            if cached is not None and value is None:
                self.cache_refused += 1
            snapshot = None
            if value is None:
                self.loads += 1
                # The layout this project writes digests straight from the bytes (~2.5x faster);
                # the state is then parsed only when something needs it (a diff).
                value = digest_of_snapshot_bytes(raw, self.scheme)
                if value is None:
                    snapshot = parse_snapshot(_loads(raw, self.label), where=self.label, strict=True)
                    value = digest(snapshot.state, self.scheme)
                    if symbol_count(snapshot.state) > 100_000:
                        # A big registry is long-lived and acyclic: keep the cyclic GC from
                        # re-walking it (reference counting still frees it when replaced).
                        gc.freeze()
                self.cache.put(content_hash, self.scheme, value)
            view = self._view = StoredView(self.path, self.scheme, value, identity, content_hash, snapshot,
                                           label=self.label)
            ready = self._other_ready
            if ready is not None and ready[0] == content_hash:  # the same bytes, digested by this process
                view._other[ready[1]] = ready[2]
            return view

    def invalidate(self) -> None:
        with self._lock:
            self._view = None


PRIME_ABOVE = 8 * 1024 * 1024  # bytes of registry.json worth digesting in a child process


def start_digest_primer(stored: StoredRegistry) -> Any:
    """Start a child process (a ``multiprocessing`` process) that digests a big registry into the
    digest cache while this process does something else (opens the screen, reads the feed); None
    when the registry is small or missing or there is no cache. When the child is done,
    :meth:`StoredRegistry.get` finds the digest in the cache (the child returns at once when it is
    already there). Fork it before starting threads."""
    try:
        size = stored.path.stat().st_size
    except OSError:
        return None
    if size < PRIME_ABOVE or stored.cache.path is None:
        return None
    import multiprocessing  # here: 20 ms at every start otherwise, for big registries only

    process = multiprocessing.get_context("fork").Process(target=_prime, args=(stored,), daemon=True)
    try:
        process.start()
    except OSError:  # no process to spare (EAGAIN, ENOMEM): the caller digests it itself
        return None
    return process


def _prime(stored: StoredRegistry) -> None:
    try:
        stored.get()  # digests the file and writes the digest cache
    except Exception:  # the parent reports the problem when it reads the registry itself
        pass
