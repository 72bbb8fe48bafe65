"""Monitor state (SPEC §6): compares each checkpoint with the stored registry and emits events.

The monitor is pure logic over its inputs: records in feed order, the stored registry (one stat
per batch; reloaded and re-digested only when ``catalogs/registry.json`` changes) and a clock.
It knows nothing of files being followed, screens or sinks; what it decides leaves as typed
events (:mod:`polylog_console.core.model.events`).

Rules:

* ``registry_match`` is ``checkpoint digest == stored digest`` under the configured scheme. A
  digest that differs under that scheme but equals the stored one under the other scheme is a
  *scheme mismatch* (alert ``scheme_mismatch``), not a drift.
* Status: ``NO DATA`` (no checkpoint yet, or the stored registry cannot be read: nothing can be
  compared), ``DRIFT`` (latest checkpoint drifts, stale or not), ``STALE`` (latest checkpoint in
  sync but older than ``stale_after``), ``IN SYNC``.
* One ``registry_mismatch`` alert per distinct drift (stored digest, live digest); when the live
  digest changes during a drift the old drift is resolved as ``superseded``; ``registry_resolved``
  when parity returns; ``drift_persistent`` once per drift when ``escalate_after`` consecutive
  checkpoints mismatch, or when drift remains after a rehydrate; ``stale_digest`` while the latest
  checkpoint is older than ``stale_after``; ``registry_provider_error`` while the stored registry
  cannot be read.
* A checkpoint without ``timestamp`` counts as written when it was read.
* Staleness is judged on the latest checkpoint once a batch has been read and on every
  :meth:`Monitor.tick` (``watch --once``: at the end of the feed); a fresh checkpoint ends a
  staleness at once.
* Incidents (:mod:`polylog_console.core.monitor.incident`): one opens at the first mismatching
  checkpoint after parity (or at the first checkpoint compared, when the history read starts in
  drift: then its start is marked not in history until a backwards scan finds it), stays the same
  incident when the live or stored digest changes, and closes at the first checkpoint that is not
  drifting (a match, or a scheme mismatch). Alerts' ``since`` and the status events'
  ``checkpoint_ts`` are checkpoint times; ``at`` / ``raised_at`` are the monitor's clock.
* Flapping: when ``flap_threshold`` incidents have opened within ``flap_window`` checkpoints, the
  last of them is a *flapping* incident (escalated once, ``flapping: N drifts within M
  checkpoints``). It is held open, its drift alert firing, until ``flap_settle`` consecutive
  checkpoints agree: parity (it resolves, at the first of them, with ``registry_resolved``) or
  drift (an ordinary incident again). Meanwhile returns to parity and new drifts are counted
  (``flap_drifts``, ``matching_checkpoints``), not alerted, and status changes are reported once
  per batch: receivers, the audit log and the report get one incident, not one per flap, and a
  flapping feed is read as fast as a steady one.

:meth:`Monitor._evaluate` is the one place these rules are written; :meth:`Monitor._consume`'s fast
path only shortcuts a checkpoint repeating the digest just evaluated while nothing but counters
can change (``watch``, ``watch --once`` and the console reach the same state and alerts).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polylog_console.core.feed.records import TIME_MAX, TIME_MIN, Checkpoint, Entry, IngestError
from polylog_console.core.infra.text import format_age
from polylog_console.core.model import events as ev
from polylog_console.core.model.config import MonitorConfig
from polylog_console.core.model.errors import PolylogError, RegistryError
from polylog_console.core.model.events import Alert, AlertEvent, CheckpointEvent, Status, StatusEvent, StoredEvent
from polylog_console.core.model.workspace import Workspace
from polylog_console.core.monitor.incident import Incident, IncidentEvent, IncidentNote, IncidentView
from polylog_console.core.registry.diff import RegistryDiff, diff_states
from polylog_console.core.registry.stored import State, StoredRegistry, StoredView, load_snapshot, validate_state


@dataclass(frozen=True)
class MonitorView:
    """A read-only summary of the monitor's state, for headers, banners and summaries."""

    status: Status
    status_since: float | None
    latest: Checkpoint | None
    latest_match: bool | None
    latest_scheme_mismatch: bool
    stale: bool
    age: float | None
    consecutive_mismatches: int
    drift_since: float | None  # the open incident's started_at (checkpoint time), None when none
    stored_digest: str | None
    stored_error: str | None
    checkpoints: int
    ingest_errors: int
    entries: int
    warnings: int
    incident: IncidentView | None = None  # the open incident
    last_incident: IncidentView | None = None  # the last resolved one
    incidents: int = 0  # incidents opened since this monitor started


class Run:
    """``count`` consecutive checkpoints with the same digest and the same shape (keys and value
    types) as the first, which has no field warnings. ``head`` keeps the first few of them
    (enough for the escalation to name the checkpoint that reached ``escalate_after``) and
    ``last`` the last one: what :meth:`Monitor.process` needs to account for the run exactly
    without per-checkpoint events (see :func:`compact`)."""

    __slots__ = ("count", "first", "head", "last", "limit")

    def __init__(self, first: Checkpoint, limit: int) -> None:
        self.first = first
        self.head: list[Checkpoint] = [first]
        self.last = first
        self.count = 1
        self.limit = limit

    def add(self, record: Checkpoint) -> None:
        if len(self.head) < self.limit:
            self.head.append(record)
        self.last = record
        self.count += 1


def compact(records: Iterable[Any], into: list[Any], *, keep: int = 8) -> int:
    """Append ``records`` to ``into``, folding consecutive same-digest, same-shape checkpoints
    into :class:`Run` items (keeping the first ``keep`` of each). Feeding the result to
    ``Monitor.process(..., emit_checkpoints=False)`` reaches the same state and alerts as feeding
    the records when ``keep >= escalate_after``; this lets a reader buffer a feed compactly before
    the stored digest is known. Returns the bytes of the lines kept whole (for a memory bound)."""
    append = into.append
    kept = 0
    for record in records:
        if record.__class__ is Checkpoint and into:
            tail = into[-1]
            first = tail.first if tail.__class__ is Run else tail
            if (first.__class__ is Checkpoint and first.digest == record.digest and record.telemetry_raw is None
                    and not record.extra
                    and first.telemetry_raw is None and record.data.keys() == first.data.keys()
                    and tuple(map(type, record.data.values())) == tuple(map(type, first.data.values()))
                    and (tail.__class__ is Run or not first.warnings)
                    and ((ts := record.data.get("timestamp")) is None or TIME_MIN <= ts < TIME_MAX)):
                # (a timestamp out of range is a warning of its own: such a checkpoint is kept whole)
                if tail.__class__ is not Run:
                    tail = into[-1] = Run(first, max(1, keep))
                tail.add(record)
                continue
        append(record)
        kept += len(getattr(record, "raw", b"") or b"")
    return kept


def exact_keep(config: MonitorConfig) -> int:
    """How many checkpoints of each :class:`Run` :func:`compact` must keep whole for the monitor to
    reach exactly the state and alerts of the records themselves (an escalation or the settling
    of a flapping incident happens inside the kept head)."""
    return max(8, config.escalate_after + 1, config.flap_settle + 1)


def checkpoint_ref(cp: Checkpoint, label: str | None = None) -> dict[str, Any]:
    return {"label": cp.display_label if label is None else label, "line": cp.line, "timestamp": cp.timestamp,
            "registry_digest": cp.digest}


def _starts_at_zero(records: list[Any]) -> bool | None:
    """Whether the first feed line among ``records`` is the feed's first (offset 0); None when
    ``records`` holds no feed line."""
    for record in records:
        cls = record.__class__
        if cls is Run:
            return bool(record.first.offset == 0)
        if cls is Checkpoint or cls is Entry or cls is IngestError:
            return bool(record.offset == 0)
    return None


DiffResult = tuple[RegistryDiff | None, str | None]  # (diff, why there is none)
_RESOLVES = (ev.REGISTRY_MISMATCH, ev.DRIFT_PERSISTENT)


class Monitor:
    """The monitor's rules (module docstring). One evaluation (:meth:`_evaluate`) decides every
    checkpoint; :meth:`_consume`'s fast path only shortcuts a checkpoint that repeats the digest
    of the one just evaluated when nothing can change but counters (no escalation due, no
    staleness to clear), so every mode (``watch``, ``watch --once``, the console) reaches the
    same state and the same alerts."""

    DEDUP_CACHE = 256  # dedup keys kept (one per distinct drift)

    def __init__(
        self,
        stored: StoredRegistry,
        config: MonitorConfig | None = None,
        workspace: Workspace | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stored = stored
        self.config = config or MonitorConfig()
        self.workspace = workspace
        self.clock = clock
        self.view: StoredView | None = None
        self.stored_error: str | None = None
        self.status = Status.NO_DATA
        self.status_since: float | None = None
        self.latest: Checkpoint | None = None
        self.latest_time: float | None = None
        self.latest_match: bool | None = None
        self.latest_scheme_mismatch = False
        self.consecutive = 0
        self.drift_key: tuple[str, str] | None = None
        self.escalated = False
        self.scheme_key: tuple[str, str] | None = None
        self.stale = False
        self.rehydrate_pending = False  # a rehydrate ran: escalate if the next comparison drifts
        self.checkpoints = 0
        self.ingest_errors = 0
        self.entries = 0
        self.warnings = 0
        self.incident: Incident | None = None
        self.last_incident: IncidentView | None = None
        self.incidents = 0
        self._from_start: bool | None = None  # the first record read began at offset 0 of the feed
        # what a backwards scan run before the history was compared found (see found_before)
        self._before: tuple[Checkpoint | None, int, bool, str] | None = None
        self._compared = False  # a checkpoint has been compared with a readable stored registry
        self._scheme_cache: tuple[str, str, bool] | None = None  # (stored, live, is scheme mismatch)
        self._clean_shape: tuple[Any, tuple[type, ...]] | None = None  # keys and value types found clean
        self._last_clean = False  # the checkpoint evaluated last has no field warning
        self._dedup: dict[tuple[str, str], str] = {}
        # the first incident opened is a flapping one (a replay resuming one: what decided it came before)
        self.resume_flapping = False
        self._flap_span = 0  # checkpoints the last flapping incident's threshold of incidents spanned
        self._opens: deque[int] = deque(maxlen=max(1, self.config.flap_threshold))  # checkpoint no. of recent opens
        self._diff_cache: dict[tuple[str, str], RegistryDiff | None] = {}
        self._diff_errors: dict[tuple[str, str], str] = {}

    # -- stored registry ---------------------------------------------------------------------

    def _refresh_stored(self, now: float, out: list[Any]) -> bool:
        """Reload the stored registry if its file changed; True when that compared the latest
        checkpoint again."""
        try:
            view = self.stored.get()
        except RegistryError as exc:
            message = str(exc)
            if self.stored_error != message:
                first = self.stored_error is None
                self.stored_error = message
                self.view = None
                out.append(StoredEvent(None, None, str(self.stored.path), message))
                if first:
                    out.append(AlertEvent(Alert(
                        ev.REGISTRY_PROVIDER_ERROR, "firing", ev.dedup_key("provider", str(self.stored.path)),
                        f"stored registry cannot be read: {message}", now)))
                self._set_status(now, out, "stored registry unreadable", None)
            return False
        if view is self.view:
            return False
        if self.stored_error is not None:
            out.append(AlertEvent(Alert(
                ev.REGISTRY_PROVIDER_ERROR, "resolved", ev.dedup_key("provider", str(self.stored.path)),
                "stored registry readable again", now, stored_digest=view.digest, reason="recovered")))
            self.stored_error = None
        changed = self.view is not None and self.view.digest != view.digest
        self.view = view
        self._scheme_cache = None
        out.append(StoredEvent(view.digest, view.loaded_symbols, str(self.stored.path)))
        if self.latest is not None and (changed or self.latest_match is None):
            # The stored registry changed under the latest checkpoint: compare it again.
            self._evaluate(self.latest, now, out, True, recheck=True)
            return True
        return False

    @property
    def stored_digest(self) -> str | None:
        return self.view.digest if self.view is not None else None

    @property
    def drift_since(self) -> float | None:
        """When the open incident began (its first mismatching checkpoint's time)."""
        return self.incident.started_at if self.incident is not None else None

    # -- processing ------------------------------------------------------------------------

    def process(self, records: Iterable[Any], *, emit_checkpoints: bool = True, now: float | None = None,
                check_stale: bool = True) -> list[Any]:
        """Feed records (in feed order; :class:`Run` items allowed) through the monitor; return the
        events they cause. Staleness is judged on the latest checkpoint once the batch has been
        read (``check_stale``; a fresh checkpoint ends a staleness at once): ``watch --once``
        judges it at the end of the feed, every mode the same way."""
        now = self.clock() if now is None else now
        out: list[Any] = []
        self._refresh_stored(now, out)
        self._consume(records, now, out, emit_checkpoints)
        if check_stale:
            self._check_stale(now, out)
        return out

    def _consume(self, records: Iterable[Any], now: float, out: list[Any], emit: bool) -> None:
        evaluate = self._evaluate
        append = out.append
        monotonic_ns = time.monotonic_ns
        stale_after = self.config.stale_after
        # A checkpoint repeating the digest of the one just evaluated changes nothing but counters
        # and the latest checkpoint unless an escalation is due or a staleness would end: it is
        # handled inline with local state, written back before anything else is evaluated.
        steady: str | None = None
        run = 0  # checkpoints handled inline and not yet written back
        warned = 0
        last: Checkpoint | None = None
        match: bool | None = None
        scheme_mm = False
        status = self.status
        stale = self.stale
        stored_digest: str | None = None
        drifting = False
        consecutive = 0
        limit = 0  # drifting: consecutive count at which escalation is due (full evaluation)
        keys: tuple[str, ...] = ()  # the steady checkpoint's keys, in order
        types: list[type] = []  # ... and its value types (cheapest to build and compare: measured)
        if self._from_start is None and isinstance(records, list):
            self._from_start = _starts_at_zero(records)
        easy = False  # steady, in sync and fresh: only counters change
        # A flapping incident (see the module docstring): a checkpoint matching, or repeating its
        # drift, is only counted until flap_settle of them agree or an escalation is due.
        flap: Incident | None = None
        drifting_digests: set[str] = set()  # its live digests (compared under this stored digest: drifts)
        settle = 0
        lastmis: Checkpoint | None = None  # the last mismatching checkpoint handled inline
        # the flapping incident's counters, kept in locals while inline (written back with the rest)
        prun = drifts = matching = mism = drun = 0
        pcp: Checkpoint | None = None
        pread = 0.0
        DRIFT, IN_SYNC, STALE = Status.DRIFT, Status.IN_SYNC, Status.STALE
        for record in records:
            cls = record.__class__
            if cls is Checkpoint:
                if flap is not None:
                    digest = record.digest
                    if digest == stored_digest:
                        inline = prun + 1 < settle
                        drift = False
                    else:
                        drift = digest in drifting_digests
                        inline = drift and consecutive + 1 < limit
                    if inline and (not stale or not self._fresh(record, now, stale_after)):
                        if drift:
                            if prun:
                                prun = 0
                                drifts += 1
                            consecutive += 1
                            mism += 1
                            lastmis = record
                            match = False
                        else:
                            if not prun:
                                pcp, pread, drun = record, now, consecutive
                            prun += 1
                            matching += 1
                            consecutive = 0
                            match = True
                        run += 1
                        last = record
                        data = record.data
                        if (tuple(data) != keys or record.telemetry_raw is not None or record.extra
                                or list(map(type, data.values())) != types):
                            warned += len(record.warnings)
                        else:
                            ts = data.get("timestamp")
                            if ts is not None and not TIME_MIN <= ts < TIME_MAX:
                                warned += len(record.warnings)
                        if emit:
                            observed = record.observed_ns
                            append(CheckpointEvent(record, match, False, DRIFT if match is False else (
                                STALE if stale else IN_SYNC), consecutive, stored_digest,
                                (monotonic_ns() - observed) / 1e6 if observed else None, stale))
                        continue
                elif record.digest == steady:
                    data = record.data
                    if easy or ((not drifting or consecutive + 1 < limit) and (
                            not stale or not self._fresh(record, now, stale_after))):
                        run += 1
                        last = record
                        if drifting:
                            consecutive += 1
                        if (tuple(data) != keys or record.telemetry_raw is not None or record.extra
                                or list(map(type, data.values())) != types):
                            warned += len(record.warnings)  # a different shape: check it
                        else:  # same keys, value types and digest as a checkpoint found clean: only the
                            ts = data.get("timestamp")  # time's range can make a warning
                            if ts is not None and not TIME_MIN <= ts < TIME_MAX:  # records.usable_time
                                warned += len(record.warnings)
                        if emit:
                            observed = record.observed_ns
                            append(CheckpointEvent(record, match, scheme_mm, status, consecutive, stored_digest,
                                                   (monotonic_ns() - observed) / 1e6 if observed else None, stale))
                        continue
                if run:
                    self._write_run(run, warned, last, now, consecutive, match, lastmis, out,  # type: ignore[arg-type]
                                    (prun, pcp, pread, drun, drifts, matching, mism) if flap is not None else None)
                    run = warned = 0
                    lastmis = None
                evaluate(record, now, out, emit)
                view = self.view
                steady = record.digest if view is not None and self._last_clean else None
                flap = None
                if steady is not None:
                    match = self.latest_match
                    scheme_mm = self.latest_scheme_mismatch
                    status = self.status
                    stale = self.stale
                    stored_digest = view.digest  # type: ignore[union-attr]
                    consecutive = self.consecutive
                    drifting = match is False and not scheme_mm
                    limit = 1 << 62 if self.escalated else self.config.escalate_after
                    keys = tuple(record.data)
                    types = list(map(type, record.data.values()))
                    easy = not drifting and not stale
                    incident = self.incident
                    if incident is not None and incident.flapping:
                        held = self.drift_key
                        if held is None or held[0] != stored_digest or self.scheme_key is not None:
                            # (a stored registry changed under the drift, or a scheme mismatch to resolve:
                            # every checkpoint is evaluated until that is settled)
                            steady = None
                            continue
                        flap = incident
                        prun, pcp, pread, drun = incident.parity_run, incident.parity_cp, incident.parity_read, \
                            incident.drift_run
                        drifts, matching, mism = incident.flap_drifts, incident.matching, incident.mismatching
                        # its live digests are drifts under this stored registry unless one is its digest
                        # under the other scheme (they may have been seen under an earlier stored digest)
                        drifting_digests = set(incident.live_digests) - {stored_digest, view.other_digest}  # type: ignore[union-attr]
                        settle = self.config.flap_settle
                        limit = min(limit, settle)
                continue
            if cls is Run:
                if run:
                    self._write_run(run, warned, last, now, consecutive, match, lastmis, out,  # type: ignore[arg-type]
                                    (prun, pcp, pread, drun, drifts, matching, mism) if flap is not None else None)
                    run = warned = 0
                    lastmis = None
                flap = None
                self._consume(record.head, now, out, emit)
                self._absorb(record, now, out)
                steady = None
                continue
            if cls is IngestError:
                self.ingest_errors += 1
                append(ev.IngestErrorEvent(record))
            elif cls is Entry:
                self.entries += 1
                append(ev.EntryEvent(record))
            else:
                append(record)  # feed events pass through in order
        if run:
            self._write_run(run, warned, last, now, consecutive, match, lastmis, out,  # type: ignore[arg-type]
                            (prun, pcp, pread, drun, drifts, matching, mism) if flap is not None else None)

    def _write_run(self, count: int, warned: int, last: Checkpoint, now: float, consecutive: int, match: bool,
                   lastmis: Checkpoint | None, out: list[Any],
                   flap_counts: tuple[int, Checkpoint | None, float, int, int, int, int] | None) -> None:
        """Write back the checkpoints :meth:`_consume` handled inline (steady, or flapping)."""
        if flap_counts is None:
            self._write_back(count, warned, last, now, consecutive)
        else:
            self._flap_write_back(count, warned, last, now, consecutive, match, lastmis, flap_counts, out)

    def _flap_write_back(self, count: int, warned: int, last: Checkpoint, now: float, consecutive: int,
                         match: bool, lastmis: Checkpoint | None,
                         counts: tuple[int, Checkpoint | None, float, int, int, int, int], out: list[Any]) -> None:
        """Write back what :meth:`_consume` counted inline during a flapping incident; a change of
        status is reported once, here."""
        self.checkpoints += count
        self.warnings += warned
        self.latest = last
        ts = last.timestamp
        self.latest_time = ts if ts is not None else now
        self.consecutive = consecutive
        self.latest_match = match
        self.latest_scheme_mismatch = False
        incident = self.incident
        assert incident is not None
        (incident.parity_run, incident.parity_cp, incident.parity_read, incident.drift_run, incident.flap_drifts,
         incident.matching, incident.mismatching) = counts
        if lastmis is not None:
            incident.last_label = lastmis.display_label
            ts = lastmis.timestamp
            incident.last_at = ts if ts is not None else now
        if self._status_for(match, False, self.stale) is not self.status:
            since = incident.started_at if match is False else self.latest_time
            self._set_status(now, out, f"checkpoint {last.display_label}", since)

    def _fresh(self, cp: Checkpoint, now: float, stale_after: float) -> bool:
        ts = cp.timestamp
        return now - (ts if ts is not None else now) <= stale_after

    def _write_back(self, count: int, warned: int, last: Checkpoint, now: float, consecutive: int) -> None:
        self.checkpoints += count
        self.warnings += warned
        self.latest = last
        ts = last.timestamp
        self.latest_time = ts if ts is not None else now
        incident = self.incident
        if incident is not None and consecutive > self.consecutive:
            incident.mismatching += consecutive - self.consecutive
            incident.last_label = last.display_label
            incident.last_at = self.latest_time
        self.consecutive = consecutive

    def _absorb(self, run: Run, now: float, out: list[Any]) -> None:
        """The checkpoints of ``run`` after its head: the head's digest and shape, no warnings."""
        count = run.count - len(run.head)
        if count <= 0:
            return
        cp = run.last
        consecutive = self.consecutive
        drifting = self.latest_match is False and not self.latest_scheme_mismatch and self.view is not None
        if drifting:
            consecutive += count
        incident = self.incident
        if incident is not None and incident.flapping and not drifting and self.latest_match is not None:
            incident.parity_run += count  # (the head was evaluated: the run of parity has begun)
            incident.matching += count
        self._write_back(count, 0, cp, now, consecutive)
        if self.stale and not self._is_stale(now):
            self._set_stale(False, cp, now, out)
            self._set_status(now, out, f"checkpoint {cp.display_label}", self.latest_time)
        if incident is not None and incident.flapping:  # (a head of exact_keep() settled it already)
            if not drifting and incident.parity_run >= self.config.flap_settle:
                self._settle_parity(incident, cp, now, out)
            elif drifting and self.consecutive >= self.config.flap_settle:
                self._settle_drift(incident, now)
        if self.drift_key is not None and not self.escalated and self.consecutive >= self.config.escalate_after:
            self._escalate(cp, cp.display_label, now, out, f"{self.consecutive} consecutive checkpoints mismatch")

    def _evaluate(self, cp: Checkpoint, now: float, out: list[Any], emit: bool, recheck: bool = False) -> None:
        """The monitor's rules for one checkpoint (``recheck``: the latest one compared again)."""
        if not recheck:
            self.checkpoints += 1
            data = cp.data
            shape = (data.keys(), tuple(map(type, data.values())))
            clean = True
            ts = data.get("timestamp")
            if (shape == self._clean_shape and cp.telemetry_raw is None and not cp.extra
                    and (ts is None or TIME_MIN <= ts < TIME_MAX)):
                pass  # the shape of a checkpoint found clean (so a numeric time): no warning (see _consume)
            elif cp.warnings:
                self.warnings += len(cp.warnings)
                clean = False
            elif cp.telemetry_raw is None:
                self._clean_shape = shape
            self._last_clean = clean
        self.latest = cp
        ts = cp.timestamp
        kept = self.latest_time if recheck else None  # a recheck keeps the read time of the first look
        self.latest_time = ts if ts is not None else (kept if kept is not None else now)
        cp_time = self.latest_time
        label = cp.display_label
        view = self.view
        live = cp.digest
        scheme_mm = False
        if view is None:
            match: bool | None = None
        elif live == view.digest:
            match = True
        else:
            match = False
            scheme_mm = self._is_scheme_mismatch(view, live)
        first_compare = match is not None and not self._compared
        if match is not None:
            self._compared = True

        if match is True or scheme_mm:
            self.rehydrate_pending = False
            incident = self.incident
            if incident is not None and incident.flapping:
                self._flap_parity(incident, cp, label, cp_time, now, out, recheck)
            else:
                if self.drift_key is not None:
                    self._resolve_drift(cp, label, now, out, "parity" if match else "scheme mismatch only")
                if incident is not None:
                    self._close_incident(cp, label, cp_time, now, out, "parity" if match else "scheme mismatch only")
                self.consecutive = 0
            if scheme_mm:
                key = (view.digest, live)  # type: ignore[union-attr]
                if self.scheme_key != key:
                    self.scheme_key = key
                    out.append(AlertEvent(Alert(
                        ev.SCHEME_MISMATCH, "firing", self._key("scheme", key), f"checkpoint {label} "
                        f"digest matches the stored registry under the "
                        f"{'canonical' if self.config.scheme == 'engine' else 'engine'} scheme, not "
                        f"{self.config.scheme}: check digest.scheme", now,
                        checkpoint_ref(cp, label), key[0], live)))
            elif self.scheme_key is not None:
                out.append(AlertEvent(Alert(
                    ev.SCHEME_MISMATCH, "resolved", self._key("scheme", self.scheme_key),
                    "digests match under the configured scheme", now, checkpoint_ref(cp, label),
                    self.scheme_key[0], live, reason="parity")))
                self.scheme_key = None
        elif match is False:
            if not recheck:  # comparing the same checkpoint again is not another mismatch
                self.consecutive += 1
            key = (view.digest, live)  # type: ignore[union-attr]
            incident = self.incident
            if incident is None:
                incident = self._open_incident(cp, label, cp_time, now, key, out,
                                               in_history=not (first_compare and self._from_start is False))
            elif not recheck:
                incident.mismatching += 1
                incident.last_label = label
                incident.last_at = cp_time
            if incident.flapping:
                if incident.parity_run:  # back from parity: another drift of the flapping incident
                    incident.parity_run = 0
                    incident.flap_drifts += 1
                if self.consecutive >= self.config.flap_settle:
                    self._settle_drift(incident, now)
            held = self.drift_key
            if incident.flapping and held is not None and held[0] == key[0] and held != key:
                # flapping: another live digest is one more drift of the same incident, its alert firing on
                if incident.add_live(live):
                    incident.note(IncidentNote(now, "live_digest", f"live digest {live[:12]} too (checkpoint {label})"))
            elif self.drift_key != key:
                if self.drift_key is not None:
                    self._resolve_drift(cp, label, now, out, "superseded")
                    if incident.add_live(live):
                        incident.note(IncidentNote(now, "live_digest", f"live digest now {live[:12]} "
                                                   f"(checkpoint {label})"))
                    incident.stored_digest = key[0]
                self.drift_key = key
                self.escalated = False
                diff = self.diff_for(cp)
                summary = f"checkpoint {label} digest {live[:12]} differs from stored {key[0][:12]}"
                if diff is not None:
                    summary += f" (missing {diff.missing}, unexpected {diff.unexpected}, mismatched {diff.mismatched})"
                    if incident.diff_at_start is None:
                        incident.diff_at_start = {"missing": diff.missing, "unexpected": diff.unexpected,
                                                  "mismatched": diff.mismatched}
                if incident.flapping:
                    summary += (f"; flapping: {self.config.flap_threshold} incidents within {self._flap_span} "
                                "checkpoints" if incident.flap_drifts == 1
                                else f"; flapping: {incident.flap_drifts} drifts")
                out.append(AlertEvent(Alert(
                    ev.REGISTRY_MISMATCH, "firing", self._key("", key), summary, now, checkpoint_ref(cp, label),
                    key[0], live, self.consecutive, incident.started_at,
                    diff.summary() if diff is not None else None)))
            if self.rehydrate_pending:
                # The runbook's own escalation trigger, announced even when the count already
                # escalated this drift (receivers group both under the same key).
                self.rehydrate_pending = False
                self._escalate(cp, label, now, out, "drift remains after rehydrate")
            if not self.escalated and self.consecutive >= self.config.escalate_after:
                self._escalate(cp, label, now, out, f"{self.consecutive} consecutive checkpoints mismatch")
            elif not self.escalated and incident.flapping:
                self._escalate(cp, label, now, out, f"flapping: {self.config.flap_threshold} incidents within "
                               f"{self._flap_span} checkpoints")

        self.latest_match = match
        self.latest_scheme_mismatch = scheme_mm
        if self.stale and not self._is_stale(now):
            self._set_stale(False, cp, now, out)  # a fresh checkpoint ends a staleness at once
        status = self._status_for(match, scheme_mm, self.stale)
        if emit:
            latency = (time.monotonic_ns() - cp.observed_ns) / 1e6 if cp.observed_ns else None
            out.append(CheckpointEvent(cp, match, scheme_mm, status, self.consecutive,
                                       view.digest if view is not None else None, latency, self.stale))
        if status is not self.status:
            # DRIFT: since the incident's start (a scan may have found it before the history read)
            since = self.incident.started_at if status is Status.DRIFT and self.incident is not None else cp_time
            self._set_status(now, out, f"checkpoint {label}", since)

    def _key(self, kind: str, key: tuple[str, str]) -> str:
        cache_key = (kind + key[0], key[1])
        value = self._dedup.get(cache_key)
        if value is None:
            if len(self._dedup) >= self.DEDUP_CACHE:
                self._dedup.clear()
            value = self._dedup[cache_key] = ev.dedup_key(kind, *key) if kind else ev.dedup_key(*key)
        return value

    def _is_scheme_mismatch(self, view: StoredView, live: str) -> bool:
        cache = self._scheme_cache
        if cache is not None and cache[0] == view.digest and cache[1] == live:
            return cache[2]
        result = live == view.other_digest
        self._scheme_cache = (view.digest, live, result)
        return result

    # -- incidents ----------------------------------------------------------------------------

    def _open_incident(self, cp: Checkpoint, label: str, cp_time: float, now: float, key: tuple[str, str],
                       out: list[Any], *, in_history: bool) -> Incident:
        self.incidents += 1
        before, self._before = self._before, None
        start = before[0] if before is not None and not in_history else None
        if start is not None:  # the history begins in a drift whose start a scan found before it
            ts = start.timestamp
            incident = Incident(self.incidents, ts if ts is not None else cp_time, start.display_label, start.line,
                                start.offset, now, key[0], key[1], before[2])  # type: ignore[index]
            earlier = before[1]  # type: ignore[index]
            incident.mismatching += earlier
            self.consecutive += earlier
            incident.last_label, incident.last_at = label, cp_time
            # proven (parity or the feed's start reached): done; else the background scan goes on from there
            incident.scan = "found" if before[2] else None  # type: ignore[index]
            incident.note(IncidentNote(now, "start", before[3]))  # type: ignore[index]
        else:
            incident = Incident(self.incidents, cp_time, label, cp.line, cp.offset, now, key[0], key[1],
                                in_history)
        threshold = self.config.flap_threshold
        if threshold:
            opens = self._opens
            opens.append(self.checkpoints)
            resumed, self.resume_flapping = self.resume_flapping, False
            if resumed or (len(opens) == threshold and self.checkpoints - opens[0] < self.config.flap_window):
                self._flap_span = self.checkpoints - opens[0] + 1 if not resumed else self.config.flap_window
                opens.clear()
                incident.flapping = incident.flapped = True
                incident.flap_drifts = 1
                incident.note(IncidentNote(now, "flapping", f"{threshold} incidents within {self._flap_span} "
                                           f"checkpoints: held open until {self.config.flap_settle} consecutive "
                                           "checkpoints agree"))
        self.incident = incident
        out.append(IncidentEvent("opened", incident.view(self.consecutive)))
        return incident

    def _flap_parity(self, incident: Incident, cp: Checkpoint, label: str, cp_time: float, now: float,
                     out: list[Any], recheck: bool) -> None:
        """A matching checkpoint (or scheme mismatch) during a flapping incident: counted; the
        incident resolves once parity has held for ``flap_settle`` checkpoints."""
        if incident.parity_run == 0:
            incident.parity_run = 1
            incident.parity_cp, incident.parity_read = cp, now
            incident.drift_run = self.consecutive
        elif not recheck:
            incident.parity_run += 1
        if not recheck:
            incident.matching += 1
        self.consecutive = 0
        if incident.parity_run >= self.config.flap_settle:
            self._settle_parity(incident, cp, now, out)

    def _settle_drift(self, incident: Incident, now: float) -> None:
        """Drift held for ``flap_settle`` checkpoints: an ordinary incident again (its alert fires on)."""
        incident.flapping = False
        incident.note(IncidentNote(now, "flapping_ended", f"drift held for {self.consecutive} checkpoints after "
                                   f"flapping ({incident.flap_drifts} drifts)"))

    def _settle_parity(self, incident: Incident, cp: Checkpoint, now: float, out: list[Any]) -> None:
        first = incident.parity_cp
        assert first is not None
        label = first.display_label
        ts = first.timestamp
        at = ts if ts is not None else incident.parity_read  # (an untimed checkpoint: when it was read)
        detail = (f"parity held for {incident.parity_run} checkpoints from {label} after "
                  f"flapping ({incident.flap_drifts} drifts)")
        incident.flapping = False
        incident.parity_cp = None
        incident.note(IncidentNote(now, "flapping_ended", detail))
        self.consecutive = incident.drift_run
        if self.drift_key is not None:  # (its checkpoint: the first of that run of parity)
            self._resolve_drift(first, label, now, out, "parity", detail)
        self._close_incident(first, label, at, now, out, "parity")
        self.consecutive = 0

    def found_before(self, start: Checkpoint | None, earlier: int, complete: bool, detail: str = "") -> None:
        """What a backwards scan found before the first checkpoint of the history, run before
        that history is compared: the earliest drifting checkpoint (None: none), how many drift
        before the history and whether that is proven (a matching checkpoint or the feed's start
        reached). When the history's first comparison drifts, the incident opens with that start
        and counts, so its first alert, status and escalation are already right. Used once."""
        self._before = (start, earlier, complete, detail) if start is not None else None

    def _close_incident(self, cp: Checkpoint, label: str, cp_time: float, now: float, out: list[Any],
                        reason: str) -> None:
        incident = self.incident
        assert incident is not None
        if reason != "parity":
            incident.note(IncidentNote(now, "resolved", reason))
        view = incident.view(self.consecutive, cp_time, label)
        self.incident = None
        self.last_incident = view
        out.append(IncidentEvent("resolved", view))

    def note(self, what: str, detail: str = "", *, actor: str | None = None, data: dict[str, Any] | None = None,
             now: float | None = None) -> IncidentView | None:
        """Add a note (an acknowledgement, an action and its outcome, ...) to the open incident;
        returns its new picture, None when no incident is open. Monitor thread only."""
        incident = self.incident
        if incident is None:
            return None
        incident.note(IncidentNote(self.clock() if now is None else now, what, detail, actor, dict(data or {})))
        return incident.view(self.consecutive)

    def scan_request(self) -> tuple[int, int, str, str] | None:
        """What a backwards scan for the open incident's true start needs, when its start is not
        in the history read: (incident id, offset of its first checkpoint, stored digest, stored
        digest under the other scheme: computed already, the drift was checked for a scheme
        mismatch). None when there is nothing to find; marks the scan as running."""
        incident = self.incident
        if incident is None or incident.start_in_history or incident.scan is not None or self.view is None:
            return None
        incident.scan = "running"
        return incident.id, incident.started_offset, self.view.digest, self.view.other_digest

    def restart_incident(self, ident: int, cp: Checkpoint | None, *, complete: bool, detail: str = "",
                         failed: bool = False, earlier: int = 0, now: float | None = None) -> list[Any]:
        """A backwards scan found the open incident's start (``cp``, the earliest mismatching
        checkpoint before the history read; None when it found none earlier) and ``earlier``
        drifting checkpoints before the history (added to the counts). ``complete``: the scan
        reached a matching checkpoint or the start of the feed, so the start is proven.
        Emits ``IncidentEvent("restarted")``; nothing when that incident is no longer open."""
        now = self.clock() if now is None else now
        incident = self.incident
        if incident is None or incident.id != ident:
            return []
        if cp is not None:
            ts = cp.timestamp
            incident.started_at = ts if ts is not None else incident.started_at
            incident.started_label = cp.display_label
            incident.started_line = cp.line if cp.line is not None else 0
            incident.started_offset = cp.offset
        if earlier > 0:  # the drifting checkpoints before the history: part of the incident's counts
            incident.mismatching += earlier
            if self.latest_match is False and not self.latest_scheme_mismatch:
                self.consecutive += earlier
        incident.start_in_history = complete
        incident.scan = "found" if complete else ("failed" if failed else "limit")
        incident.note(IncidentNote(now, "restarted", detail or (
            f"start found at {incident.started_label}" if complete else
            f"started before {incident.started_label} (scan limit reached)")))
        return [IncidentEvent("restarted", incident.view(self.consecutive))]

    # -- alerts -----------------------------------------------------------------------------

    def _resolve_drift(self, cp: Checkpoint, label: str, now: float, out: list[Any], reason: str,
                       detail: str = "") -> None:
        key = self.drift_key
        assert key is not None
        superseded = reason == "superseded"
        code = ev.REGISTRY_MISMATCH if superseded else ev.REGISTRY_RESOLVED
        if superseded and self.view is not None and key[1] == cp.digest:
            summary = f"drift {key[1][:12]} now compared with the new stored digest {self.view.digest[:12]}"
        elif superseded:
            summary = f"drift {key[1][:12]} superseded by {cp.digest[:12]}"
        else:
            summary = f"checkpoint {label} matches the stored registry again" + (f"; {detail}" if detail else "")
        since = self.incident.started_at if self.incident is not None else None
        out.append(AlertEvent(Alert(code, "resolved", self._key("", key), summary, now, checkpoint_ref(cp, label),
                                    key[0], key[1], self.consecutive, since, None, _RESOLVES, reason)))
        self.drift_key = None
        self.escalated = False

    def _escalate(self, cp: Checkpoint, label: str, now: float, out: list[Any], reason: str) -> None:
        key = self.drift_key
        assert key is not None
        self.escalated = True
        incident = self.incident
        since = incident.started_at if incident is not None else None
        out.append(AlertEvent(Alert(
            ev.DRIFT_PERSISTENT, "firing", self._key("", key), f"escalate: {reason}", now, checkpoint_ref(cp, label),
            key[0], key[1], self.consecutive, since, reason=reason)))
        if incident is not None:
            incident.escalated = True
            incident.escalations += 1
            incident.note(IncidentNote(now, "escalated", reason, data={"label": label}))
            out.append(IncidentEvent("escalated", incident.view(self.consecutive)))

    # -- staleness ----------------------------------------------------------------------------

    def _is_stale(self, now: float) -> bool:
        return self.latest_time is not None and now - self.latest_time > self.config.stale_after

    def _check_stale(self, now: float, out: list[Any]) -> None:
        stale = self._is_stale(now)
        if stale != self.stale:
            self._set_stale(stale, self.latest, now, out)
            self._set_status(now, out, "stale" if stale else "fresh", self.latest_time)

    def _set_stale(self, stale: bool, cp: Checkpoint | None, now: float, out: list[Any]) -> None:
        if stale == self.stale:
            return
        self.stale = stale
        ref = checkpoint_ref(cp) if cp is not None else None
        key = ev.dedup_key("stale", str(self.stored.path))
        if stale:
            age = now - (self.latest_time if self.latest_time is not None else now)
            out.append(AlertEvent(Alert(
                ev.STALE_DIGEST, "firing", key,
                f"latest checkpoint is {format_age(age)} old (stale after {format_age(self.config.stale_after)})",
                now, ref, self.stored_digest, cp.digest if cp else None, self.consecutive,
                # drifting: the incident's start (what receivers group it under); else the checkpoint's time
                self.incident.started_at if self.incident is not None else self.latest_time)))
        else:
            out.append(AlertEvent(Alert(ev.STALE_DIGEST, "resolved", key, "a fresh checkpoint arrived", now, ref,
                                        self.stored_digest, cp.digest if cp else None, reason="fresh")))

    def _status_for(self, match: bool | None, scheme_mm: bool, stale: bool) -> Status:
        if self.latest is None or match is None:
            return Status.NO_DATA
        if match is False and not scheme_mm:
            return Status.DRIFT
        return Status.STALE if stale else Status.IN_SYNC

    def _set_status(self, now: float, out: list[Any], reason: str, checkpoint_ts: float | None) -> None:
        status = self._status_for(self.latest_match, self.latest_scheme_mismatch, self.stale)
        if self.stored_error is not None:
            status = Status.NO_DATA
        if status is not self.status:
            out.append(StatusEvent(self.status, status, now, reason, checkpoint_ts))
            self.status = status
            self.status_since = now

    def tick(self, now: float | None = None) -> list[Any]:
        """Time passes: staleness may begin. Call every few seconds; costs nothing when idle."""
        now = self.clock() if now is None else now
        out: list[Any] = []
        self._refresh_stored(now, out)
        self._check_stale(now, out)
        return out

    def recheck(self, *, after_rehydrate: bool = False, now: float | None = None) -> list[Any]:
        """Compare the latest checkpoint with the stored registry again (runbook step 4).

        After a rehydrate (``after_rehydrate``) a drift that is still there is escalated
        (``drift_persistent``: the runbook's "drift persists after manual rehydration").
        """
        now = self.clock() if now is None else now
        out: list[Any] = []
        if after_rehydrate:
            self.stored.invalidate()
            self.rehydrate_pending = True
        # Exactly one comparison, whether or not the reload found a new digest: the file may have
        # been reloaded already (by a tick) between the rehydrate and this call.
        if not self._refresh_stored(now, out) and self.latest is not None:
            self._evaluate(self.latest, now, out, True, recheck=True)
        return out

    # -- diffs ------------------------------------------------------------------------------

    def live_state(self, cp: Checkpoint) -> State | None:
        """The live registry state a checkpoint carries inline or by snapshot path, if any.

        Raises :class:`PolylogError` with a clear message when a snapshot cannot be used.
        """
        return live_state(cp, self.workspace)

    def diff_for(self, cp: Checkpoint) -> RegistryDiff | None:
        """Diff of the stored registry against the checkpoint's live state (cached per distinct
        drift: a flapping feed diffs once). Monitor thread only; a worker uses :meth:`diff_job`.

        None when the checkpoint carries no usable state or the stored registry is unreadable;
        :meth:`diff_error` then says why.
        """
        data = cp.data
        if "registry_state" not in data and "registry_snapshot" not in data:
            return None  # nothing to diff (checked first: a flapping feed asks this per drift event)
        cached = self.cached_diff(cp)
        if cached is not None:
            return cached[0]
        job = self.diff_job(cp)
        if job is None:
            return None
        key, compute = job
        result, error = compute()
        self.store_diff(key, result, error)
        return result

    def cached_diff(self, cp: Checkpoint) -> DiffResult | None:
        """(diff, error) when this drift's diff is known (None: not computed yet)."""
        view = self.view
        if view is None:
            return None
        key = (view.digest, cp.digest)
        if key in self._diff_cache:
            return self._diff_cache[key], None
        if key in self._diff_errors:
            return None, self._diff_errors[key]
        return None

    def diff_job(self, cp: Checkpoint) -> tuple[tuple[str, str], Callable[[], DiffResult]] | None:
        """The cache key and a function computing the diff without touching the monitor (safe on
        a worker thread); None when the stored registry is unreadable."""
        view = self.view
        if view is None:
            return None
        workspace = self.workspace

        def compute() -> DiffResult:
            try:
                live = live_state(cp, workspace)
            except PolylogError as exc:
                return None, str(exc)
            if live is None:
                return None, None
            try:
                return diff_states(view.state, live), None
            except RegistryError as exc:
                return None, str(exc)

        return (view.digest, cp.digest), compute

    def store_diff(self, key: tuple[str, str], result: RegistryDiff | None, error: str | None) -> None:
        if error is not None:
            if len(self._diff_errors) >= 64:
                self._diff_errors.clear()
            self._diff_errors[key] = error
            return
        if result is None:  # no state to diff: nothing to keep (another checkpoint may carry one)
            return
        if len(self._diff_cache) >= 64:
            self._diff_cache.clear()
        self._diff_cache[key] = result
        self._diff_errors.pop(key, None)

    def diff_error(self, cp: Checkpoint) -> str | None:
        if self.view is None:
            return self.stored_error
        return self._diff_errors.get((self.view.digest, cp.digest))

    # -- summary -----------------------------------------------------------------------------

    def snapshot(self, now: float | None = None) -> MonitorView:
        now = self.clock() if now is None else now
        return MonitorView(
            status=self.status,
            status_since=self.status_since,
            latest=self.latest,
            latest_match=self.latest_match,
            latest_scheme_mismatch=self.latest_scheme_mismatch,
            stale=self.stale,
            age=(now - self.latest_time) if self.latest_time is not None else None,
            consecutive_mismatches=self.consecutive,
            drift_since=self.drift_since,
            stored_digest=self.stored_digest,
            stored_error=self.stored_error,
            checkpoints=self.checkpoints,
            ingest_errors=self.ingest_errors,
            entries=self.entries,
            warnings=self.warnings,
            incident=self.incident.view(self.consecutive) if self.incident is not None else None,
            last_incident=self.last_incident,
            incidents=self.incidents,
        )


def live_state(cp: Checkpoint, workspace: Workspace | None) -> State | None:
    """The live registry state a checkpoint carries inline or by snapshot path (inside
    ``workspace``), if any. Raises :class:`PolylogError` when a snapshot cannot be used."""
    if cp.registry_state is not None:
        return validate_state(cp.registry_state, where=f"{cp.display_label}: registry_state")
    if cp.registry_snapshot is not None:
        if workspace is None:
            raise PolylogError(f"{cp.display_label}: registry_snapshot needs a workspace")
        path: Path = workspace.confine(cp.registry_snapshot, what="registry_snapshot")
        return load_snapshot(path).state
    return None
