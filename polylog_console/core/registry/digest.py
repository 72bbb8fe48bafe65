"""Registry digests (SPEC §3): the ``engine`` and ``canonical`` schemes.

* ``engine``: SHA-256 of Python's ``json.dumps(state, sort_keys=True)`` (separators ``", "`` and
  ``": "``, non-ASCII escaped as ``\\uXXXX`` with surrogate pairs above the BMP).
* ``canonical``: SHA-256 of the keys-sorted compact form with raw UTF-8.

Both produce the reference bytes exactly. For the usual shape of a registry (namespaces of
``{signature: symbol}`` strings that need no escaping beyond non-ASCII) a fast path lets orjson
sort and serialise in native code; the non-ASCII escapes of all values are made by one call of
the standard library's C escaper, and the separators are fixed on the whole byte string. Any other
state takes the reference path. ``tests/test_digest.py`` checks both paths against each other and
against the reference vectors.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any, Literal

import orjson

Scheme = Literal["engine", "canonical"]
SCHEMES: tuple[Scheme, ...] = ("engine", "canonical")

# A value the fast paths can take: nothing JSON escapes other than non-ASCII, and no DEL (the
# stand-in for backslashes below). "\n" is excluded too; it separates the joined values.
_UNSAFE_VALUE = re.compile(r'[\x00-\x09\x0b-\x1f"\\\x7f]')
_DEL = "\x7f"
_HEX64 = re.compile(r"[0-9a-f]{64}")


def engine_bytes_reference(state: Any) -> bytes:
    """The exact bytes the polylog6 engine hashes: ``json.dumps(state, sort_keys=True)``."""
    return json.dumps(state, sort_keys=True).encode("utf-8")


def canonical_bytes_reference(state: Any) -> bytes:
    # "surrogatepass": a lone surrogate (impossible in parsed JSON, possible in a Python str) still
    # digests, deterministically, instead of failing.
    text = json.dumps(state, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8", "surrogatepass")


def _joined_values(state: Any) -> dict[str, str] | None:
    """``{namespace: values joined by "\\n"}`` when ``state`` is ``{str: {str: str}}`` and no value
    holds a character the fast paths cannot take; else None. ``str.join`` doubles as the type
    check of every value and the newline count proves no value holds one. Keys are checked later,
    on the serialised bytes."""
    if type(state) is not dict:
        return None
    joined = {}
    for ns, table in state.items():
        if type(ns) is not str or type(table) is not dict:
            return None
        try:
            values = "\n".join(table.values())
        except TypeError:
            return None
        if values.count("\n") != max(len(table) - 1, 0) or _UNSAFE_VALUE.search(values):
            return None
        joined[ns] = values
    return joined


def _engine_table(table: dict[str, str], values: str) -> bytes | None:
    """The engine serialisation of one namespace table, or None if a key needs escaping."""
    if not table:
        return b"{}"
    placeholders = 0
    if not values.isascii():
        # One C call escapes every value as json.dumps would; DEL stands in for the backslashes
        # so that orjson copies them through unchanged, and the escaped "\n" splits the values.
        escaped = encode_basestring_ascii(values)[1:-1].replace("\\", _DEL)
        pieces = escaped.split(_DEL + "n")
        placeholders = escaped.count(_DEL) - (len(pieces) - 1)
        table = dict(zip(table, pieces, strict=True))
    raw = orjson.dumps(table, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)
    del table
    # Any key needing an escape (non-ASCII, quote, backslash, control, DEL) shows up here.
    if not raw.isascii() or b"\\" in raw or raw.count(b"\x7f") != placeholders:
        return None
    # OPT_INDENT_2 gives {\n  "k": "v",\n  "k2": "v2"\n}: ": " is already right.
    raw = raw[4:-2].replace(b',\n  ', b", ")
    if placeholders:
        raw = raw.replace(b"\x7f", b"\\")
    return b"{" + raw + b"}"


def engine_bytes(state: Any) -> bytes:
    joined = _joined_values(state)
    if joined is not None:
        try:
            tables = [(ns, _engine_table(state[ns], joined[ns])) for ns in sorted(joined)]
        except (ValueError, orjson.JSONEncodeError):  # a value with "\n", lone surrogates
            tables = [("", None)]
        if all(raw is not None for _, raw in tables):
            return b"{" + b", ".join(b"%s: %s" % (json.dumps(ns).encode(), raw) for ns, raw in tables) + b"}"
    return engine_bytes_reference(state)


def canonical_bytes(state: Any) -> bytes:
    if _joined_values(state) is not None:
        try:
            raw = orjson.dumps(state, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:  # e.g. lone surrogates
            raw = b"\\"
        # Nothing was escaped, so the bytes are json.dumps' bytes; otherwise take no chances.
        if b"\\" not in raw:
            return raw
    return canonical_bytes_reference(state)


def digest(state: Mapping[str, Any], scheme: Scheme = "engine") -> str:
    """SHA-256 hex digest of ``state`` under ``scheme``."""
    if scheme == "engine":
        return hashlib.sha256(engine_bytes(state)).hexdigest()
    if scheme == "canonical":
        return hashlib.sha256(canonical_bytes(state)).hexdigest()
    raise ValueError(f"unknown digest scheme {scheme!r} (expected engine or canonical)")


def other_scheme(scheme: Scheme) -> Scheme:
    return "canonical" if scheme == "engine" else "engine"


def looks_like_digest(value: str) -> bool:
    """True for 64 lowercase hex characters, the shape of a SHA-256 hex digest."""
    return bool(_HEX64.fullmatch(value))
