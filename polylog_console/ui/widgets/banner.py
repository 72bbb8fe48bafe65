"""The dashboard banner (runbook §2: "Banner & remediation link in the monitoring console"): the most
severe active alert with its code, since when, consecutive count, remediation link and the keys
that act on it. Hidden when no alert is active.

For a drift, "since" is the incident's start from the incident model (SPEC §6): the first
mismatching checkpoint's time and label, how long ago that is, how many consecutive checkpoints
mismatch, and when this console first observed it (issue 11: it showed the time the console
started). "+N more" is a link: a click opens the list of active alerts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from textual import events
from textual.content import Content
from textual.message import Message
from textual.style import Style
from textual.widget import Widget

from polylog_console.core.alerts.dashboard import Banner
from polylog_console.core.monitor.rules import format_age
from polylog_console.ui.badges import SEVERITY_SYMBOL
from polylog_console.ui.safe import literal
from polylog_console.ui.widgets.header import badge_content

SEVERITY_BADGE = {"critical": "drift", "warning": "stale", "info": "none"}


def since_age(seconds: float) -> str:
    """How long an alert has been active, to the minute (the banner does not tick every second)."""
    return "<1m" if seconds < 60 else format_age(seconds)


def _since(ts: float, now: float | None = None) -> str:
    """``HH:MM:SSZ``, with the date in front when it is not within the last day."""
    try:
        moment = datetime.fromtimestamp(ts, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return "?"
    if now is not None and abs(now - ts) >= 86_400:
        return moment.strftime("%Y-%m-%d %H:%M:%SZ")
    return moment.strftime("%H:%M:%SZ")


MORE_LINK = Style(underline=True) + Style.from_meta({"more": True})
DRIFT_CODES = frozenset({"registry_mismatch", "drift_persistent"})


class AlertBanner(Widget):
    DEFAULT_CSS = """
    AlertBanner { height: auto; max-height: 4; display: none; background: $error 15%;
                  border-left: thick $error; padding: 0 1; }
    AlertBanner.-warning { background: $warning 15%; border-left: thick $warning; }
    AlertBanner.-active { display: block; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.banners: Sequence[Banner] = ()
        self.hints: Sequence[tuple[str, str]] = ()  # (key display, action title) for the top banner
        self.now = 0.0
        self.ack_key: str | None = None
        self.incident: Any = None  # the open incident (an IncidentView), for drift banners

    def show(self, banners: Sequence[Banner], hints: Sequence[tuple[str, str]], now: float,
             ack_key: str | None, incident: Any = None) -> None:
        self.banners = list(banners)
        self.incident = incident
        self.hints = list(hints)
        self.now = now
        self.ack_key = ack_key
        top = self.banners[0] if self.banners else None
        self.set_class(top is not None, "-active")
        self.set_class(top is not None and str(top.severity) != "critical", "-warning")
        self.refresh(layout=True)  # its height follows its lines

    def started(self) -> tuple[float, str | None]:
        """When the top alert's condition began, and at which checkpoint (drift: the incident's)."""
        b = self.banners[0]
        incident = self.incident
        if b.code in DRIFT_CODES and incident is not None:
            return incident.started_at, incident.started_label
        return b.since, None

    def tick(self, now: float) -> None:
        """Time passed: repaint only if the age shown changed."""
        if self.banners:
            since = self.started()[0]
            if since_age(now - since) != since_age(self.now - since):
                self.now = now
                self.refresh()
        self.now = now

    class MoreClicked(Message):
        """The "+N more" link was clicked: show every active alert."""

    def on_click(self, event: events.Click) -> None:
        if event.style.meta.get("more"):
            event.stop()
            self.post_message(self.MoreClicked())

    def render(self) -> Content:
        if not self.banners:
            return Content("")
        b = self.banners[0]
        severity = str(b.severity)
        since, label = self.started()
        when = f"{_since(since, self.now)}" + (f" ({label})" if label else "")
        first: list[Content | str | tuple[str, str]] = [
            badge_content(f"{SEVERITY_SYMBOL.get(severity, '!')} ALERT", SEVERITY_BADGE.get(severity, "none")),
            " ", literal(b.code, "bold"),
            ("  since ", "$text-muted"), literal(when), (" for ", "$text-muted"), since_age(self.now - since),
        ]
        incident = self.incident if b.code in DRIFT_CODES else None
        consecutive = incident.consecutive_mismatches if incident is not None else b.consecutive_mismatches
        if incident is not None and incident.flapping:  # held open: the latest checkpoint may match
            first += [(" · ", "$text-muted"), (f"FLAPPING {incident.flap_drifts} drifts", "bold reverse")]
        elif consecutive:
            first += [(" · ", "$text-muted"), (f"{consecutive} consecutive", "bold")]
        if len(self.banners) > 1:
            first += [(" · ", "$text-muted"),
                      Content.styled(f"+{len(self.banners) - 1} more", MORE_LINK)]
        if b.acknowledged_by:
            first += [(" · ", "$text-muted"), ("✔ acknowledged by ", "$success"), literal(b.acknowledged_by)]
        width = max(20, (self.size.width or 80) - 3)
        summary: list[Content | str | tuple[str, str]] = []
        if incident is not None:
            summary += [("first observed ", "$text-muted"), _since(incident.observed_at, self.now),
                        (" · ", "$text-muted")]
        summary.append(literal(b.summary))
        lines = [Content.assemble(*first), Content.assemble(*summary).truncate(width, ellipsis=True)]
        hint_parts: list[Content | str | tuple[str, str]] = [("runbook ", "$text-muted"), literal(b.runbook_url,
                                                                                                 "underline")]
        keys = list(self.hints)
        if self.ack_key and not b.acknowledged_by:
            keys.append((self.ack_key, "acknowledge"))
        if keys:
            hint_parts.append(("   keys ", "$text-muted"))
            for n, (key, title) in enumerate(keys):
                if n:
                    hint_parts.append(("  ", ""))
                hint_parts += [(f" {key} ", "bold reverse"), f" {title}"]
        lines.append(Content.assemble(*hint_parts))
        return Content("\n").join(lines)
