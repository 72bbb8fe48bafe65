"""The incident model (SPEC §6, §13): one drift episode, from its first mismatching checkpoint to
the first matching one after it.

An incident opens at the first mismatching checkpoint after parity (or at the first checkpoint
read, when the feed starts in drift: then :attr:`Incident.start_in_history` is False until a
backwards scan of the feed finds the true start) and closes at the first matching checkpoint
after it. A change of live digest during an incident stays the same incident.

The monitor owns the open incident and changes it only on its own thread; everyone else gets an
immutable :class:`IncidentView` (in :class:`~polylog_console.core.monitor.rules.MonitorView` and in
:class:`IncidentEvent`). The model is bounded: a flapping feed keeps counts and the last few
distinct live digests, never one entry per checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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


@dataclass(frozen=True, slots=True)
class IncidentView:
    """An immutable picture of one incident (open or resolved)."""

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
            "notes": [n.to_json() for n in self.notes],
        }


@dataclass(frozen=True, slots=True)
class IncidentEvent:
    """An incident ``opened``, ``escalated``, ``restarted`` (its start found earlier in the feed) or
    ``resolved``; ``incident`` is its picture at that moment."""

    kind: str
    incident: IncidentView

    event = "incident"

    def to_json(self) -> dict[str, Any]:
        return {"event": "incident", "kind": self.kind, **self.incident.to_json()}
