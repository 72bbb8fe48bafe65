"""The digest of a registry snapshot straight from its file's bytes, without building the state.

``rehydrate`` (and every snapshot this project saves) writes ``catalogs/registry.json`` in one
layout: orjson's compact form with sorted keys and raw UTF-8, the state last. For a file in that
layout both digests (SPEC §3) follow from the bytes themselves:

* ``canonical`` is the SHA-256 of the state's bytes exactly as they stand in the file;
* ``engine`` is the same bytes with ``", "`` / ``": "`` separators and non-ASCII escaped as
  ``json.dumps`` does (one call of its C escaper per chunk of symbols).

Parsing a 1,000,000-symbol registry into dicts and serialising it again takes ~2.5 s here; this
takes ~0.7 s (in chunks of ~32 KB, so that every pass works in the CPU's cache), which is what
lets the console show the status of a registry it has never seen within its first-paint budget.

The fast path proves the layout before it trusts it and answers ``None`` (take the ordinary
parse-and-digest path) for anything else: a backslash anywhere (escapes), whitespace, a state
that is not ``{str: {str: str}}``, keys out of order or repeated, non-ASCII keys, control
characters, invalid UTF-8. ``tests/test_snapshot_digest.py`` checks it against :func:`digest` on
generated states and on damaged files.
"""

from __future__ import annotations

import hashlib
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]

import orjson

from polylog_console.core.registry.digest import Scheme

_STATE_KEY = b',"state":{'
_ONLY_STATE = b'{"state":{'
# Characters JSON escapes (json.dumps also escapes DEL under ensure_ascii): never copied as they are.
_ESCAPED = bytes(range(0x20)) + b"\x7f"
CHUNK = 32 * 1024


def split_snapshot(raw: bytes) -> tuple[dict, bytes] | None:
    """``(head, state)`` of a compact snapshot whose state is its last member (where sorted keys put
    it): ``head`` is every other member, parsed (``label``, ``digest``, ``scheme``, ...), ``state``
    the bytes of the ``"state"`` member; None if ``raw`` is not laid out that way."""
    end = len(raw)
    while end and raw[end - 1] in b"\n\r":  # a trailing newline (files written by hand or by `jq`)
        end -= 1
    if b"\\" in raw or raw[end - 2:end] != b"}}":
        return None
    if raw.startswith(_ONLY_STATE):
        return {}, raw[len(_ONLY_STATE) - 1: end - 1]
    at = raw.find(_STATE_KEY)
    if at < 0:
        return None
    try:
        head = orjson.loads(raw[:at] + b"}")
    except orjson.JSONDecodeError:
        return None
    # A valid head proves the split is at the top level (no escapes: every quote is real).
    if not isinstance(head, dict) or "state" in head:
        return None
    return head, raw[at + len(_STATE_KEY) - 1: end - 1]


def state_bytes(raw: bytes) -> bytes | None:
    """The bytes of the ``"state"`` member of a compact snapshot (see :func:`split_snapshot`)."""
    found = split_snapshot(raw)
    return None if found is None else found[1]


def snapshot_head(raw: bytes) -> dict | None:
    """The members other than ``state`` of a snapshot in this project's layout, without parsing the
    state (None for another layout)."""
    found = split_snapshot(raw)
    return None if found is None else found[0]


def _table_end(state: bytes, start: int) -> int:
    """Where the table whose body starts (with a quote) at ``start`` closes: the first '"}' whose
    quote closes a string (an even number of quotes from ``start``), or -1."""
    quotes, counted = 0, start
    at = state.find(b'"}', start)
    while at >= 0:
        quotes += state.count(b'"', counted, at + 1)
        counted = at + 1
        if quotes % 2 == 0:
            return at + 1
        at = state.find(b'"}', at + 1)
    return -1


def tables(state: bytes) -> list[tuple[bytes, bytes]] | None:
    """``[(namespace, body)]`` of a state ``{"ns":{body},...}`` (no escapes, no whitespace), where a
    body is what stands between a table's braces; None if the state is not laid out that way.
    The bodies are checked later, by :func:`entries`."""
    if state == b"{}":
        return []
    found: list[tuple[bytes, bytes]] = []
    pos, last = 1, len(state) - 1
    while True:
        if state[pos:pos + 1] != b'"':
            return None
        name_end = state.find(b'"', pos + 1)
        if name_end < 0 or state[name_end + 1:name_end + 3] != b":{":
            return None
        start = name_end + 3
        if state[start:start + 1] == b"}":
            end = start
        else:
            end = _table_end(state, start)
            if end < 0:
                return None
        found.append((state[pos + 1:name_end], state[start:end]))
        after = state[end + 1:end + 2]  # state[end] is the table's "}"
        if end + 1 == last and after == b"}":
            return found
        if after != b",":
            return None
        pos = end + 2


def entries(body: bytes):
    """The pieces of ``body`` (``"k":"v","k":"v"...``) split at its quotes, chunk by chunk:
    ``[b"", key, b":", value, b",", key, ...,  value, b""]``; yields None (and stops) at the first
    chunk that is not laid out that way or whose keys are not ASCII and strictly increasing."""
    pos, size, previous = 0, len(body), None
    while pos < size:
        cut = body.find(b'","', pos + CHUNK)
        while cut >= 0 and body.count(b'"', pos, cut) % 2 == 0:  # that quote opens a value like ","
            cut = body.find(b'","', cut + 1)
        end = size if cut < 0 else cut + 1
        pieces = body[pos:end].split(b'"')
        n = (len(pieces) - 1) // 4
        keys = pieces[1::4]
        if (len(pieces) != 4 * n + 1 or pieces[0] or pieces[-1] or pieces[2::4].count(b":") != n
                or pieces[4:-1:4].count(b",") != n - 1 or not b"".join(keys).isascii()
                or not all(map(bytes.__lt__, keys, keys[1:])) or (previous is not None and previous >= keys[0])):
            yield None
            return
        previous = keys[-1]
        yield pieces
        pos = end + 1


def _engine_chunk(pieces: list[bytes]) -> bytes | None:
    """The engine serialisation of one chunk of entries (``"k": "v", ...``), or None when a value
    is not valid UTF-8."""
    values = pieces[3::4]
    try:
        text = b"\n".join(values).decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text.isascii():
        # No value holds a control character, so the escaped "\n" separates them exactly.
        pieces[3::4] = encode_basestring_ascii(text)[1:-1].encode("ascii").split(b"\\n")
    n = len(values)
    pieces[2::4] = [b": "] * n
    pieces[4:-1:4] = [b", "] * (n - 1)
    return b'"'.join(pieces)


def digest_of_snapshot_bytes(raw: bytes, scheme: Scheme = "engine") -> str | None:
    """The ``scheme`` digest of the state in the snapshot file ``raw``, or None when the file is not
    in the layout this project writes (the caller then parses it the ordinary way)."""
    if scheme not in ("engine", "canonical"):
        raise ValueError(f"unknown digest scheme {scheme!r} (expected engine or canonical)")
    state = state_bytes(raw)
    if state is None or len(state.translate(None, _ESCAPED)) != len(state):
        return None
    found = tables(state)
    if found is None:
        return None
    names = [name for name, _ in found]
    if not b"".join(names).isascii() or not all(map(bytes.__lt__, names, names[1:])):
        return None
    engine = hashlib.sha256(b"{")
    for i, (name, body) in enumerate(found):
        engine.update(b'%s"%s": {' % (b", " if i else b"", name))
        for j, pieces in enumerate(entries(body)):
            if pieces is None:
                return None
            if scheme == "canonical":
                # Only proves the values are UTF-8: the canonical bytes are the file's bytes.
                try:
                    b"".join(pieces[3::4]).decode("utf-8")
                except UnicodeDecodeError:
                    return None
                continue
            chunk = _engine_chunk(pieces)
            if chunk is None:
                return None
            engine.update(b", " + chunk if j else chunk)
        engine.update(b"}")
    engine.update(b"}")
    if scheme == "canonical":
        return hashlib.sha256(state).hexdigest()
    return engine.hexdigest()
