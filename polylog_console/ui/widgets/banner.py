"""The dashboard banner (runbook §2: "Banner & remediation link in the monitoring console"): the most
severe active alert with its code, since when, consecutive count, remediation link and the keys
that act on it. Hidden when no alert is active."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from textual.content import Content
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


def _since(ts: float) -> str:
    try:
        return datetime.fromtimestamp(ts, tz=UTC).strftime("%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return "?"


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

    def show(self, banners: Sequence[Banner], hints: Sequence[tuple[str, str]], now: float,
             ack_key: str | None) -> None:
        self.banners = list(banners)
        self.hints = list(hints)
        self.now = now
        self.ack_key = ack_key
        top = self.banners[0] if self.banners else None
        self.set_class(top is not None, "-active")
        self.set_class(top is not None and str(top.severity) != "critical", "-warning")
        self.refresh(layout=True)  # its height follows its lines

    def tick(self, now: float) -> None:
        """Time passed: repaint only if the age shown changed."""
        if self.banners and since_age(now - self.banners[0].since) != since_age(self.now - self.banners[0].since):
            self.now = now
            self.refresh()
        self.now = now

    def render(self) -> Content:
        if not self.banners:
            return Content("")
        b = self.banners[0]
        severity = str(b.severity)
        first: list[Content | str | tuple[str, str]] = [
            badge_content(f"{SEVERITY_SYMBOL.get(severity, '!')} ALERT", SEVERITY_BADGE.get(severity, "none")),
            " ", literal(b.code, "bold"),
            ("  since ", "$text-muted"), f"{_since(b.since)} ({since_age(self.now - b.since)})",
        ]
        if b.consecutive_mismatches:
            first += [("  ·  ", "$text-muted"), (f"{b.consecutive_mismatches} consecutive", "bold")]
        if len(self.banners) > 1:
            first += [("  ·  ", "$text-muted"), (f"+{len(self.banners) - 1} more", "$text-muted")]
        if b.acknowledged_by:
            first += [("  ·  ", "$text-muted"), ("✔ acknowledged by ", "$success"), literal(b.acknowledged_by)]
        width = max(20, (self.size.width or 80) - 3)
        lines = [Content.assemble(*first), literal(b.summary, limit=width)]
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
