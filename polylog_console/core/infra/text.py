"""Untrusted text made safe to show: the one helper every output path uses.

Labels, symbols, paths and error messages come from the feed, replicas and catalogs and may hold
anything: ANSI/OSC escape sequences, C1 controls, NUL, bidirectional overrides. :func:`safe_text`
replaces each such character with a visible escape (``\\x1b``, ``\\u202e``), so nothing reaches the
terminal that could move the cursor, set the clipboard or hide text. Markup is a separate
concern: the console builds Textual ``Content`` from the result, never markup strings.
"""

from __future__ import annotations

import re

# C0 controls (tab included), DEL, C1 controls, and format characters that reorder or hide text.
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb\U000e0000-\U000e007f]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def safe_text(value: object, limit: int | None = None) -> str:
    """``str(value)`` with every control or invisible-format character shown as an escape,
    cut to ``limit`` characters (with an ellipsis) when given."""
    text = value if isinstance(value, str) else str(value)
    if _UNSAFE.search(text):
        text = _UNSAFE.sub(_escape, text)
    if limit is not None and len(text) > limit:
        text = text[: max(0, limit - 1)] + "…"
    return text


def short_digest(value: str | None, width: int = 12) -> str:
    if not value:
        return "—"
    return safe_text(value[:width])
