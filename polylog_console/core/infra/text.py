"""Untrusted text made safe for each output: the one place every output path uses.

Labels, symbols, paths, digests and error messages come from the feed, replicas and catalogs and
may hold anything: ANSI/OSC escape sequences, C1 controls, NUL, bidirectional overrides, and lone
surrogates (``"\\ud800"`` is valid JSON syntax; Python reads it as a string that cannot be
encoded as UTF-8). The feed parser keeps such strings as they are (a checkpoint's digest is
compared exactly as written, SPEC §5); each output makes them safe here, one function per kind:

* **human text** (terminal lines, email body and subject, Markdown code, Alertmanager
  annotations): :func:`safe_text` replaces every control, invisible format character and lone
  surrogate with a visible escape (``\\x1b``, ``\\x9b``, ``\\u202e``, ``\\ud800``), so nothing
  reaches a terminal or mail client that could move the cursor, set the clipboard, reorder or hide
  text. It is idempotent: sanitising twice changes nothing more. :func:`header_text` is the same
  for a one-line header value.
* **JSON** (``--json`` output, the audit log, webhook and Alertmanager bodies, the outbox):
  :func:`dumps_json` always returns valid UTF-8 JSON: lone surrogates become U+FFFD, integers
  beyond 64 bits become floats (orjson cannot write them), and the characters :func:`safe_text`
  escapes are written as ``\\uXXXX`` JSON escapes (``"\\u009b"``), so a consumer reads the exact
  string back while the raw character never reaches a terminal that shows the stream.
  Non-finite floats (``NaN``, ``Infinity``, ``-Infinity``: the feed parser reads them, since
  Python's ``json.dumps`` writes them) are written as ``null``, never as the invalid literals.
  :func:`json_safe` gives the data itself in that form (for data that is stored, then written
  by others).

Markup is a separate concern: the console builds Textual ``Content`` from :func:`safe_text`'s
result (``ui/safe.py``), never markup strings; the bundle puts it in fences and code spans.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import orjson

# C0 controls (tab included), DEL, C1 controls, format characters that reorder or hide text,
# and lone surrogates (a str can hold them; no UTF-8 encoder writes them).
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ud800-\udfff\ufeff\ufff9-\ufffb"
    "\U000e0000-\U000e007f]"
)
_SURROGATE = re.compile("[\ud800-\udfff]")
# The same but tab and newline: for whole lines of output whose layout is the caller's.
_UNSAFE_IN_LINES = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ud800-\udfff\ufeff"
    "\ufff9-\ufffb\U000e0000-\U000e007f]"
)

# The same characters (but C0, which every JSON encoder escapes, and surrogates, which cannot
# appear in UTF-8) as UTF-8 byte sequences. JSON's structure is ASCII, so in encoded JSON they
# can only occur inside strings, where a \uXXXX escape means the same character.
_UNSAFE_UTF8 = re.compile(
    b"\x7f|\xc2[\x80-\x9f]|\xd8\x9c|\xe2\x80[\x8b-\x8f\xa8-\xae]|\xe2\x81[\xa0-\xa9]|\xef\xbb\xbf"
    b"|\xef\xbf[\xb9-\xbb]|\xf3\xa0[\x80\x81][\x80-\xbf]"
)

_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def safe_text(value: object, limit: int | None = None) -> str:
    """``str(value)`` with every control, invisible-format character and lone surrogate shown as
    an escape, cut to ``limit`` characters (with an ellipsis) when given."""
    text = value if isinstance(value, str) else str(value)
    if not text.isascii() or _UNSAFE.search(text):
        text = _UNSAFE.sub(_escape, text)
    if limit is not None and len(text) > limit:
        text = text[: max(0, limit - 1)] + "…"
    return text


def safe_lines(text: str) -> str:
    """Output text made of lines (a command's report): like :func:`safe_text`, but tabs and
    newlines are kept. Text already made safe passes unchanged (the last guard of an output)."""
    if not text.isascii() or _UNSAFE_IN_LINES.search(text):
        text = _UNSAFE_IN_LINES.sub(_escape, text)
    return text


def header_text(value: object, limit: int = 200) -> str:
    """A one-line header value (email ``Subject``): :func:`safe_text`, so no CR, LF or other
    control can start a new header or end the headers."""
    return safe_text(value, limit)


def short_digest(value: str | None, width: int = 12) -> str:
    if not value:
        return "—"
    return safe_text(value[:width])


def has_surrogates(text: str) -> bool:
    """True when ``text`` holds a lone surrogate (it cannot be encoded as UTF-8)."""
    return not text.isascii() and _SURROGATE.search(text) is not None


def valid_unicode(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD (valid for every UTF-8 encoder)."""
    if text.isascii():
        return text
    return _SURROGATE.sub("\ufffd", text)


def json_safe(value: Any, default: Callable[[Any], Any] | None = None) -> Any:
    """A copy of ``value`` that orjson encodes whatever it holds: strings and keys without lone
    surrogates, integers within 64 bits (larger ones as floats, or None beyond a float's range),
    non-string keys as strings. Objects orjson does not know are passed to ``default`` (str by
    default) when they are not dataclasses. Values that need nothing are returned as they are."""
    t = type(value)
    if t is str:
        return valid_unicode(value)
    if t is bool or value is None or t is float:
        return value
    if t is int:
        if _INT_MIN <= value <= _INT_MAX:
            return value
        try:
            return float(value)
        except OverflowError:
            return None
    if isinstance(value, Mapping):
        return {_json_key(k): json_safe(v, default) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v, default) for v in value]
    if isinstance(value, str):  # a str subclass (an enum): keep its text
        return valid_unicode(str.__str__(value))
    if isinstance(value, int):
        return json_safe(int(value), default)
    if isinstance(value, float):
        return float(value)
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        return json_safe(asdict(value), default)
    if hasattr(value, "isoformat"):  # datetime, date, time: as orjson writes them
        return valid_unicode(value.isoformat())
    return json_safe((default or str)(value), default)


def _json_key(key: Any) -> str:
    if type(key) is str:
        return valid_unicode(key)
    if isinstance(key, str):
        return valid_unicode(str.__str__(key))
    if key is None or isinstance(key, bool):
        return "null" if key is None else ("true" if key else "false")
    if isinstance(key, float) and not math.isfinite(key):
        return "null"
    return valid_unicode(str(key))


def _escape_utf8(match: re.Match[bytes]) -> bytes:
    code = ord(match.group().decode("utf-8"))
    if code < 0x10000:
        return b"\\u%04x" % code
    code -= 0x10000
    return b"\\u%04x\\u%04x" % (0xD800 + (code >> 10), 0xDC00 + (code & 0x3FF))


_BASE = orjson.OPT_NON_STR_KEYS


def dumps_json(value: Any, *, newline: bool = False, indent: bool = False, sort_keys: bool = False,
               default: Callable[[Any], Any] | None = None) -> bytes:
    """``value`` as JSON bytes that are always valid UTF-8 and carry no raw control, bidi or
    invisible-format character (see the module docstring). Never raises for data read from the
    feed, a replica or a catalog (anything JSON can hold, and NaN / Infinity, written as ``null``);
    other objects go to ``default`` (str by default)."""
    option = _BASE
    if newline:
        option |= orjson.OPT_APPEND_NEWLINE
    if indent:
        option |= orjson.OPT_INDENT_2
    if sort_keys:
        option |= orjson.OPT_SORT_KEYS
    try:
        data = orjson.dumps(value, default=default or str, option=option)
    except (TypeError, orjson.JSONEncodeError):  # lone surrogates, integers beyond 64 bits
        data = orjson.dumps(json_safe(value, default), option=option)
    if not data.isascii() or b"\x7f" in data:
        data = _UNSAFE_UTF8.sub(_escape_utf8, data)
    return data


def json_line(value: Any) -> bytes:
    """One line of JSON Lines output (``watch --json``, the audit log): :func:`dumps_json` + ``\\n``."""
    return dumps_json(value, newline=True)


def format_age(seconds: float) -> str:
    """``45s``, ``12m``, ``3h05m``, ``2d04h``."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 86400}d{(seconds % 86400) // 3600:02d}h"


_JSON_TYPES = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"), (list, "array"),
               (dict, "object"))  # bool before int: a bool is an int


def type_name(value: Any) -> str:
    """JSON name of a Python value's type, for error messages."""
    if value is None:
        return "null"
    return next((name for cls, name in _JSON_TYPES if isinstance(value, cls)), type(value).__name__)
