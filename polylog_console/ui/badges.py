"""Status as words and symbols first, colour second (issue 6: never by colour alone; NO_COLOR)."""

from __future__ import annotations

from polylog_console.core.model.events import Status

# status -> (badge text, style name used by the widgets' component classes and the stylesheet)
STATUS = {
    Status.IN_SYNC: ("✔ IN SYNC", "ok"),
    Status.DRIFT: ("✘ DRIFT", "drift"),
    Status.STALE: ("◷ STALE", "stale"),
    Status.NO_DATA: ("∅ NO DATA", "none"),
}


def status_badge(status: Status) -> tuple[str, str]:
    return STATUS.get(status, (f"? {status}", "none"))


def match_badge(match: bool | None, scheme_mismatch: bool = False) -> tuple[str, str]:
    """The match column: ``✔ yes``, ``✘ DRIFT``, ``≈ scheme``, ``? —``."""
    if scheme_mismatch:
        return "≈ scheme", "stale"
    if match is True:
        return "✔ yes", "ok"
    if match is False:
        return "✘ DRIFT", "drift"
    return "? —", "none"


SEVERITY_SYMBOL = {"critical": "✘", "warning": "⚠", "info": "ℹ"}
LEVEL_SYMBOL = {"ok": "✔", "info": "·", "warning": "⚠", "error": "✘"}
LEVEL_STYLE = {"ok": "ok", "info": "", "warning": "stale", "error": "drift"}

