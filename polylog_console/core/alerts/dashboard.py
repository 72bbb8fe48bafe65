"""The ``dashboard`` sink: the state the console's banner shows (runbook §2: "Banner &
remediation link in the monitoring console").

It consumes the monitor's alert events and keeps one banner per active condition: code, since
when, consecutive count, summary and the remediation link. Acknowledging a banner keeps it
visible (the condition is still there) but marks who acknowledged it and when.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from polylog_console.core.model.events import AlertEvent, CheckpointEvent, Severity, dedup_key, iso

# What the banner proposes, per alert code (keys name console actions).
HINTS = {
    "registry_mismatch": ("rehydrate", "recompute", "replicas", "bundle"),
    "drift_persistent": ("bundle", "replicas"),
    "registry_provider_error": ("validate", "rehydrate"),
    "scheme_mismatch": ("recompute",),
    "stale_digest": ("recompute",),
}
_ORDER = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}


@dataclass(frozen=True)
class Banner:
    code: str
    severity: Severity
    dedup_key: str
    summary: str
    since: float
    consecutive_mismatches: int
    runbook_url: str
    hints: tuple[str, ...] = ()
    acknowledged_by: str | None = None
    acknowledged_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code, "severity": str(self.severity), "dedup_key": self.dedup_key,
            "summary": self.summary, "since": iso(self.since),
            "consecutive_mismatches": self.consecutive_mismatches, "runbook_url": self.runbook_url,
            "acknowledged_by": self.acknowledged_by,
            "acknowledged_at": iso(self.acknowledged_at) if self.acknowledged_at else None,
        }


class Dashboard:
    def __init__(self, runbook_url: str) -> None:
        self.runbook_url = runbook_url
        self._banners: dict[tuple[str, str], Banner] = {}

    def apply(self, events: list[Any]) -> bool:
        """Update from a batch of events; True when the banners changed."""
        changed = False
        for event in events:
            if isinstance(event, CheckpointEvent):
                changed |= self._count(event)
                continue
            if not isinstance(event, AlertEvent):
                continue
            a = event.alert
            if a.status == "firing":
                key = (a.code, a.dedup_key)
                old = self._banners.get(key)
                since = old.since if old else (a.since or a.raised_at)
                self._banners[key] = Banner(
                    a.code, a.severity, a.dedup_key, a.summary, since, a.consecutive_mismatches,
                    self.runbook_url, HINTS.get(a.code, ()),
                    old.acknowledged_by if old else None, old.acknowledged_at if old else None)
                changed = True
            else:
                for code in (a.code, *a.resolves):
                    if self._banners.pop((code, a.dedup_key), None) is not None:
                        changed = True
        return changed

    def _count(self, event: CheckpointEvent) -> bool:
        """A mismatching checkpoint of an active drift: its banners show the new consecutive count."""
        if event.registry_match is not False or event.scheme_mismatch or not event.stored_digest or not self._banners:
            return False
        key = dedup_key(event.stored_digest, event.checkpoint.digest)
        changed = False
        for code in ("registry_mismatch", "drift_persistent"):
            banner = self._banners.get((code, key))
            if banner is not None and banner.consecutive_mismatches != event.consecutive_mismatches:
                self._banners[(code, key)] = replace(banner, consecutive_mismatches=event.consecutive_mismatches)
                changed = True
        return changed

    def update_consecutive(self, count: int) -> None:
        for key, banner in list(self._banners.items()):
            if banner.code in ("registry_mismatch", "drift_persistent") and banner.consecutive_mismatches != count:
                self._banners[key] = replace(banner, consecutive_mismatches=count)

    @property
    def active(self) -> list[Banner]:
        """Active banners, most severe first, then oldest first."""
        return sorted(self._banners.values(), key=lambda b: (_ORDER.get(b.severity, 3), b.since))

    @property
    def top(self) -> Banner | None:
        active = self.active
        return active[0] if active else None

    def acknowledge(self, actor: str, dedup_key: str | None = None, now: float | None = None) -> list[Banner]:
        """Acknowledge one banner (by key) or all unacknowledged ones; returns those acknowledged."""
        now = time.time() if now is None else now
        done = []
        for key, banner in list(self._banners.items()):
            if banner.acknowledged_by is None and (dedup_key is None or banner.dedup_key == dedup_key):
                self._banners[key] = replace(banner, acknowledged_by=actor, acknowledged_at=now)
                done.append(self._banners[key])
        return done
