"""URL pieces for messages, shared by the fleet clients and the alert sinks (no other import, so
``fleet --json`` still starts without loading the alert machinery)."""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit


def url_location(url: str) -> tuple[SplitResult, str, str] | None:
    """``(parts, host, port)`` of ``url`` (``port`` is ``":N"`` or empty, the host without user info),
    or None when it does not parse (e.g. a port out of range)."""
    try:
        parts = urlsplit(url)
        return parts, parts.hostname or "", f":{parts.port}" if parts.port else ""
    except ValueError:
        return None
