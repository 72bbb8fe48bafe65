"""What other processes audit, in the activity log: a CLI rehydrate in another terminal, ``watch``
delivering alerts. This console's own events are shown from its event stream, so its own audit
records are recognised (by time and event) and not shown a second time."""

from __future__ import annotations

from typing import Any

from polylog_console.core.monitor.activity import AuditTail, from_audit

# Audit events this console also shows from its own event stream (not again from the audit log).
SHOWN_DIRECTLY = frozenset({"alert_raised", "alert_resolved", "escalation", "action_started", "action_finished",
                            "action_failed", "action_cancelled", "acknowledged", "incident_opened",
                            "incident_escalated", "incident_restarted", "incident_resolved"})
OWN_KEPT = 10_000


class AuditEcho:
    def __init__(self, audit: Any) -> None:
        self.tail: AuditTail | None = None
        self._own: set[tuple[Any, Any]] = set()
        audit.listeners.append(self._note)  # every record this console's session and actions write

    def _note(self, ts: str, event: str) -> None:
        if event in SHOWN_DIRECTLY:
            if len(self._own) > OWN_KEPT:
                self._own.clear()
            self._own.add((ts, event))

    def start(self, path: Any) -> None:
        self.tail = AuditTail(path)  # what other processes audit from now on

    def foreign(self) -> list[Any]:
        """Activity lines for the records other processes appended since the last look."""
        tail = self.tail
        if tail is None:
            return []
        records = []
        for record in tail.read_new():
            key = (record.get("ts"), record.get("event"))
            if key in self._own:
                self._own.discard(key)
            else:
                records.append(record)
        return [from_audit(r) for r in records]
