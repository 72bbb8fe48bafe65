"""The incident model (SPEC §6, §13): one drift episode, from its first mismatching checkpoint to
the first matching one after it.

An incident opens at the first mismatching checkpoint after parity (or at the first checkpoint
read, when the feed starts in drift: then :attr:`Incident.start_in_history` is False until a
backwards scan of the feed finds the true start) and closes at the first matching checkpoint
after it. A change of live digest during an incident stays the same incident.

A *flapping* incident (:attr:`Incident.flapping`; the monitor decides when, see
:mod:`polylog_console.core.monitor.rules`) does not close at its first matching checkpoint: it counts
its drifts (``flap_drifts``) and matching checkpoints, and closes when parity has held for
``flap_settle`` checkpoints, its resolution being the first checkpoint of that run of parity.

The monitor owns the open incident and changes it only on its own thread; everyone else gets an
immutable :class:`IncidentView` (in :class:`~polylog_console.core.monitor.rules.MonitorView` and in
:class:`IncidentEvent`). The model is bounded: a flapping feed keeps counts and the last few
distinct live digests, never one entry per checkpoint.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from polylog_console.core.model.events import iso

MAX_LIVE_DIGESTS = 16  # distinct live digests kept per incident (the rest are counted)
MAX_NOTES = 64  # escalations / actions / acknowledgements kept per incident (the rest are counted)


@dataclass(frozen=True, slots=True)
class IncidentNote:
    """Something that happened during an incident: an escalation, an acknowledgement, an action."""

    at: float
    what: str  # "escalated", "acknowledged", "action", "alert", "delivered", ...
    detail: str = ""
    actor: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"at": iso(self.at), "what": self.what, "detail": self.detail}
        if self.actor:
            out["actor"] = self.actor
        if self.data:
            out.update(self.data)
        return out


class IncidentView(NamedTuple):
    """An immutable picture of one incident (open or resolved). A named tuple: one is made for
    every incident event, and a flapping feed opens and resolves an incident every few checkpoints."""

    id: int
    started_at: float  # the first mismatching checkpoint's timestamp (else the time it was read)
    started_label: str
    started_line: int
    observed_at: float  # when this workspace's monitor first compared it
    stored_digest: str
    live_digests: tuple[str, ...]
    consecutive_mismatches: int
    mismatching_checkpoints: int
    escalated: bool = False
    start_in_history: bool = True  # False: the feed's loaded history began in this drift
    resolved_at: float | None = None
    resolved_label: str | None = None
    notes: tuple[IncidentNote, ...] = ()
    diff_at_start: dict[str, int] | None = None
    last_label: str | None = None  # the latest checkpoint compared during the incident
    last_at: float | None = None  # ... and its timestamp (else the time it was read)
    escalations: int = 0
    live_digests_total: int = 0  # distinct live digests seen (live_digests keeps the last few)
    notes_dropped: int = 0  # notes beyond MAX_NOTES (the oldest are dropped)
    scan: str | None = None  # the backwards scan for the start: None, "running", "found", "limit", "failed"
    flapping: bool = False  # flapping now: held open until parity (or drift) holds for flap_settle checkpoints
    flap_drifts: int = 0  # drifts (returns from parity to drift) counted since it began flapping, the first included
    matching_checkpoints: int = 0  # matching checkpoints while it was held open (flapping)
    flapped: bool = False  # it flapped at some time (flapping now or before)

    def duration(self, now: float) -> float:
        """Seconds from the start to the resolution (or to ``now`` while open)."""
        end = self.resolved_at if self.resolved_at is not None else now
        return max(0.0, end - self.started_at)

    def headline(self, now: float) -> str:
        """What an operator needs first, one line: ``drift since 2025-11-09T17:43:20Z
        (checkpoint-0171), 2h05m, 30 consecutive mismatches, first observed 09:53:47Z``
        (labels are raw: pass the line through the output's sanitiser)."""
        from polylog_console.core.infra.text import format_age

        start = iso(self.started_at)[:19] + "Z"
        earlier = "" if self.start_in_history else " or earlier"
        if self.open:
            state = f"drift since {start}{earlier} ({self.started_label}), {format_age(self.duration(now))}"
        else:
            state = (f"drift from {start}{earlier} ({self.started_label}) to {iso(self.resolved_at)[:19]}Z "
                     f"({self.resolved_label}), {format_age(self.duration(now))}")
        observed = iso(self.observed_at)[11:19] + "Z"
        flap = ""
        if self.flapping:
            flap = f", flapping: {self.flap_drifts} drifts"
        elif self.flapped:
            flap = f", flapped: {self.flap_drifts} drifts"
        return (f"{state}, {self.consecutive_mismatches} consecutive mismatches{flap}"
                f"{', escalated' if self.escalated else ''}, first observed {observed}")

    @property
    def open(self) -> bool:
        return self.resolved_at is None

    @property
    def state(self) -> str:
        return "open" if self.open else "resolved"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "started_at": iso(self.started_at),
            "started_label": self.started_label,
            "started_line": self.started_line,
            "start_in_history": self.start_in_history,
            "observed_at": iso(self.observed_at),
            "resolved_at": iso(self.resolved_at) if self.resolved_at is not None else None,
            "resolved_label": self.resolved_label,
            "consecutive_mismatches": self.consecutive_mismatches,
            "mismatching_checkpoints": self.mismatching_checkpoints,
            "escalated": self.escalated,
            "stored_digest": self.stored_digest,
            "live_digests": list(self.live_digests),
            "diff_at_start": self.diff_at_start,
            "last_label": self.last_label,
            "last_at": iso(self.last_at) if self.last_at is not None else None,
            "escalations": self.escalations,
            "live_digests_total": self.live_digests_total,
            "notes": [n.to_json() for n in self.notes],
            "notes_dropped": self.notes_dropped,
            "scan": self.scan,
            "flapping": self.flapping,
            "flapped": self.flapped,
            "flap_drifts": self.flap_drifts,
            "matching_checkpoints": self.matching_checkpoints,
        }


@dataclass(slots=True)  # not frozen (treat as immutable): one per incident event, a flapping feed makes many
class IncidentEvent:
    """An incident ``opened``, ``escalated``, ``restarted`` (its start found earlier in the feed) or
    ``resolved``; ``incident`` is its picture at that moment."""

    kind: str
    incident: IncidentView

    event = "incident"

    def to_json(self) -> dict[str, Any]:
        return {"event": "incident", "kind": self.kind, **self.incident.to_json()}


_new_view = tuple.__new__


class Incident:
    """The open incident as the monitor keeps it (mutable, monitor thread only); :meth:`view`
    gives the immutable picture. Bounded: counts, the last :data:`MAX_LIVE_DIGESTS` distinct live
    digests and the last :data:`MAX_NOTES` notes."""

    __slots__ = ("_live", "diff_at_start", "drift_run", "escalated", "escalations", "flap_drifts", "flapped",
                 "flapping", "id", "last_at", "last_label", "live_digests", "live_total", "matching", "mismatching",
                 "notes", "notes_dropped", "observed_at", "parity_cp", "parity_read", "parity_run", "scan",
                 "start_in_history", "started_at", "started_label", "started_line", "started_offset",
                 "stored_digest")

    def __init__(self, ident: int, started_at: float, label: str, line: int | None, offset: int,
                 observed_at: float, stored_digest: str, live_digest: str, start_in_history: bool) -> None:
        self.id = ident
        self.started_at = started_at
        self.started_label = label
        self.started_line = line if line is not None else 0
        self.started_offset = offset  # where the start checkpoint's line begins in the feed
        self.observed_at = observed_at
        self.stored_digest = stored_digest
        self.live_digests: deque[str] = deque((live_digest,), MAX_LIVE_DIGESTS)
        self._live: tuple[str, ...] = (live_digest,)
        self.live_total = 1
        self.mismatching = 1
        self.escalated = False
        self.escalations = 0
        self.start_in_history = start_in_history
        self.notes: deque[IncidentNote] = deque(maxlen=MAX_NOTES)
        self.notes_dropped = 0
        self.diff_at_start: dict[str, int] | None = None
        self.last_label: str | None = label
        self.last_at: float | None = started_at
        self.scan: str | None = None
        self.flapping = False
        self.flapped = False
        self.flap_drifts = 0
        self.matching = 0
        self.parity_run = 0  # flapping: consecutive matching checkpoints now ...
        self.parity_cp: Any = None  # ... the first of them (the resolution, if parity holds) ...
        self.parity_read = 0.0  # ... and when it was read
        self.drift_run = 0  # flapping: the consecutive mismatches before that run of parity

    def add_live(self, digest: str) -> bool:
        """A live digest compared during the incident; True when it is new to it."""
        if digest in self.live_digests:
            return False
        self.live_digests.append(digest)
        self.live_total += 1
        self._live = tuple(self.live_digests)
        return True

    def note(self, note: IncidentNote) -> None:
        if len(self.notes) == MAX_NOTES:
            self.notes_dropped += 1
        self.notes.append(note)

    def view(self, consecutive: int, resolved_at: float | None = None,
             resolved_label: str | None = None) -> IncidentView:
        return _new_view(IncidentView, (  # positional, without the named tuple's keyword handling
            self.id, self.started_at, self.started_label, self.started_line, self.observed_at, self.stored_digest,
            self._live, consecutive, self.mismatching, self.escalated, self.start_in_history,
            resolved_at, resolved_label, tuple(self.notes) if self.notes else (), self.diff_at_start,
            self.last_label, self.last_at, self.escalations, self.live_total, self.notes_dropped, self.scan,
            self.flapping, self.flap_drifts, self.matching, self.flapped))
