"""The one way untrusted text reaches the screen.

Labels, symbols, paths and error messages come from the feed, replicas and catalogs. Measured with
Textual 8.2: a plain ``str`` given to a DataTable cell or a Static is parsed as markup (``a [/] b``
crashes the app, ``[@click=app.quit]`` becomes a live link), ``rich.markup.escape`` is not enough,
and ESC, C1 and NUL characters pass verbatim to the terminal through every widget. So every
untrusted value goes through :func:`polylog_console.core.infra.text.safe_text` (control and invisible
format characters, C1 controls, bidi overrides and lone surrogates become visible escapes: a lone
surrogate reaching the terminal writer would end the app) and is then wrapped as literal text: a
:class:`textual.content.Content` built from the string (``Content(text)`` never parses markup) or,
for the Line API tables, a cell-width-exact string that is put in a ``Segment`` as is.
"""

from __future__ import annotations

from rich.cells import cell_len, set_cell_size
from textual.content import Content, Span
from textual.style import Style

from polylog_console.core.infra.text import safe_text

NONE = "—"


def clean(value: object, limit: int | None = None) -> str:
    """``value`` as display-safe plain text (None as an em dash)."""
    if value is None:
        return NONE
    return safe_text(value, limit)


def literal(value: object, style: str | Style = "", limit: int | None = None) -> Content:
    """Untrusted ``value`` as literal Content (never markup), optionally styled as a whole."""
    text = clean(value, limit)
    if not text:
        return Content("")
    return Content(text, [Span(0, len(text), style)] if style else None, strip_control_codes=False)


def fit(value: object, width: int, align: str = "left") -> str:
    """Untrusted ``value`` as plain text of exactly ``width`` cells (cut with an ellipsis, padded)."""
    if width <= 0:
        return ""
    text = clean(value)
    length = cell_len(text)
    if length > width:
        return set_cell_size(text, width - 1) + "…" if width > 1 else "…"
    if align == "right":
        return " " * (width - length) + text
    return text + " " * (width - length)
