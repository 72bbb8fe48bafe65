"""Filtering the symbol diff (the console's ``/`` key).

A query is whitespace-separated terms, all of which must hold:

* ``kind:missing`` / ``kind:unexpected`` / ``kind:mismatched`` (or a prefix: ``kind:mis`` is
  ambiguous and matches both ``missing`` and ``mismatched``; ``k:`` abbreviates ``kind:``),
* ``ns:NAME`` (or ``namespace:``): the namespace, exactly, or by prefix,
* any other word: a case-insensitive substring of the namespace, the signature or either symbol.

:func:`filter_rows` stops after ``limit`` matches so that a million-row diff stays cheap to show.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from polylog_console.core.registry.diff import RegistryDiff

KINDS = ("missing", "unexpected", "mismatched")
DiffRow = tuple[str, str, str, object, object]  # kind, namespace, signature, stored, live


@dataclass(frozen=True)
class DiffFilter:
    kinds: frozenset[str] = frozenset(KINDS)
    namespaces: tuple[str, ...] = ()
    words: tuple[str, ...] = ()
    query: str = ""

    @property
    def empty(self) -> bool:
        return not self.query.strip()

    def matches(self, row: DiffRow) -> bool:
        kind, ns, sig, stored, live = row
        if kind not in self.kinds:
            return False
        if self.namespaces and not any(ns == n or ns.startswith(n) for n in self.namespaces):
            return False
        if self.words:
            haystack = f"{ns}\x00{sig}\x00{'' if stored is None else stored}\x00{'' if live is None else live}".lower()
            return all(word in haystack for word in self.words)
        return True


class FilterError(ValueError):
    """The query cannot be understood (one-line reason)."""


def parse_query(query: str) -> DiffFilter:
    kinds: set[str] | None = None
    namespaces: list[str] = []
    words: list[str] = []
    for term in query.split():
        name, sep, value = term.partition(":")
        name = name.lower()
        if sep and name in ("kind", "k"):
            wanted = {k for k in KINDS if k.startswith(value.lower())} if value else set()
            if not wanted:
                raise FilterError(f'unknown kind "{value}" (missing, unexpected, mismatched)')
            kinds = wanted if kinds is None else kinds | wanted
        elif sep and name in ("ns", "namespace"):
            if not value:
                raise FilterError("ns: needs a namespace name")
            namespaces.append(value)
        else:
            words.append(term.lower())
    return DiffFilter(frozenset(kinds) if kinds is not None else frozenset(KINDS), tuple(namespaces),
                      tuple(words), query)


def filter_rows(rows: Iterable[DiffRow], flt: DiffFilter, limit: int = 100_000) -> tuple[list[DiffRow], bool]:
    """The first ``limit`` rows that match; the flag says whether more matched than were kept."""
    out: list[DiffRow] = []
    match = flt.matches
    for row in rows:
        if match(row):
            if len(out) >= limit:
                return out, True
            out.append(row)
    return out, False


def iter_diff(diff: RegistryDiff, flt: DiffFilter) -> Iterator[DiffRow]:
    """Rows of ``diff`` in its stable order, skipping whole namespaces and kinds the filter excludes."""
    for ns, d in sorted(diff.namespaces.items()):
        if flt.namespaces and not any(ns == n or ns.startswith(n) for n in flt.namespaces):
            continue
        if "missing" in flt.kinds:
            for sig in sorted(d.missing):
                yield ("missing", ns, sig, d.missing[sig], None)
        if "unexpected" in flt.kinds:
            for sig in sorted(d.unexpected):
                yield ("unexpected", ns, sig, None, d.unexpected[sig])
        if "mismatched" in flt.kinds:
            for sig in sorted(d.mismatched):
                stored, live = d.mismatched[sig]
                yield ("mismatched", ns, sig, stored, live)


# -- every panel: the same small query language ----------------------------------------------------------

@dataclass(frozen=True)
class RowQuery:
    """A query over a panel's rows, in the diff's language: ``field:value`` terms (the value a
    case-insensitive prefix; one field given twice accepts either value) and words (substrings of
    the row's text), all of which must hold. ``fields`` maps each field name to what it accepts."""

    fields: tuple[tuple[str, tuple[str, ...]], ...] = ()
    words: tuple[str, ...] = ()
    query: str = ""

    @property
    def empty(self) -> bool:
        return not self.query.strip()

    def matches(self, values: dict[str, str], text: str) -> bool:
        for name, wanted in self.fields:
            value = values.get(name, "").lower()
            if not any(value.startswith(w) for w in wanted):
                return False
        if self.words:
            haystack = text.lower()
            return all(word in haystack for word in self.words)
        return True


def parse_row_query(query: str, fields: dict[str, str]) -> RowQuery:
    """``query`` for a panel whose rows have ``fields`` (``{alias: field}``, e.g. ``{"k": "kind"}``;
    every field maps to itself too). An unknown ``name:`` is an error naming the known fields."""
    names = {**{f: f for f in fields.values()}, **fields}
    chosen: dict[str, list[str]] = {}
    words: list[str] = []
    for term in query.split():
        name, sep, value = term.partition(":")
        if sep and name:
            field_name = names.get(name.lower())
            if field_name is None:
                known = ", ".join(sorted(set(fields.values())))
                raise FilterError(f'unknown field "{name}:" here (known: {known})')
            if not value:
                raise FilterError(f"{name}: needs a value")
            chosen.setdefault(field_name, []).append(value.lower())
        else:
            words.append(term.lower())
    return RowQuery(tuple((k, tuple(v)) for k, v in chosen.items()), tuple(words), query)
