"""Symbol diff of a stored (baseline) registry state against a live (candidate) one (SPEC §3).

* missing: signature in stored, absent in live;
* unexpected: signature in live, absent in stored;
* mismatched: signature in both, different symbol.

Set operations on dict views run in C, so two 1,000,000-symbol registries diff in well under a
second (``tests/bench/bench_foundation.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import compress, filterfalse, repeat
from operator import ne
from typing import Any


@dataclass(frozen=True)
class NamespaceDiff:
    missing: dict[str, Any]  # signature -> stored symbol
    unexpected: dict[str, Any]  # signature -> live symbol
    mismatched: dict[str, tuple[Any, Any]]  # signature -> (stored, live)

    @property
    def counts(self) -> dict[str, int]:
        return {"missing": len(self.missing), "unexpected": len(self.unexpected), "mismatched": len(self.mismatched)}


@dataclass(frozen=True)
class RegistryDiff:
    namespaces: dict[str, NamespaceDiff] = field(default_factory=dict)

    @property
    def missing(self) -> int:
        return sum(len(d.missing) for d in self.namespaces.values())

    @property
    def unexpected(self) -> int:
        return sum(len(d.unexpected) for d in self.namespaces.values())

    @property
    def mismatched(self) -> int:
        return sum(len(d.mismatched) for d in self.namespaces.values())

    @property
    def total(self) -> int:
        return self.missing + self.unexpected + self.mismatched

    @property
    def empty(self) -> bool:
        return self.total == 0

    def counts(self) -> dict[str, int]:
        return {"missing": self.missing, "unexpected": self.unexpected, "mismatched": self.mismatched}

    def per_namespace(self) -> dict[str, dict[str, int]]:
        return {ns: d.counts for ns, d in sorted(self.namespaces.items())}

    def sample(self, limit: int = 10) -> dict[str, list[dict[str, Any]]]:
        """Up to ``limit`` entries of each kind, in a stable order (namespace, signature)."""
        out: dict[str, list[dict[str, Any]]] = {"missing": [], "unexpected": [], "mismatched": []}
        for ns, d in sorted(self.namespaces.items()):
            for sig in sorted(d.missing)[: max(0, limit - len(out["missing"]))]:
                out["missing"].append({"namespace": ns, "signature": sig, "symbol": d.missing[sig]})
            for sig in sorted(d.unexpected)[: max(0, limit - len(out["unexpected"]))]:
                out["unexpected"].append({"namespace": ns, "signature": sig, "symbol": d.unexpected[sig]})
            for sig in sorted(d.mismatched)[: max(0, limit - len(out["mismatched"]))]:
                stored, live = d.mismatched[sig]
                out["mismatched"].append({"namespace": ns, "signature": sig, "stored": stored, "live": live})
        return out

    def summary(self, sample: int = 10) -> dict[str, Any]:
        """The JSON shape used by the CLI, the webhook body and the bundle."""
        return {**self.counts(), "per_namespace": self.per_namespace(), "sample": self.sample(sample)}

    def rows(self):
        """Every difference as ``(kind, namespace, signature, stored, live)``, sorted."""
        for ns, d in sorted(self.namespaces.items()):
            for sig in sorted(d.missing):
                yield ("missing", ns, sig, d.missing[sig], None)
            for sig in sorted(d.unexpected):
                yield ("unexpected", ns, sig, None, d.unexpected[sig])
            for sig in sorted(d.mismatched):
                stored, live = d.mismatched[sig]
                yield ("mismatched", ns, sig, stored, live)


def _table(state: Mapping[str, Any], ns: str) -> Mapping[str, Any]:
    table = state.get(ns)
    return table if isinstance(table, Mapping) else {}


_ABSENT = object()


def diff_states(stored: Mapping[str, Any], live: Mapping[str, Any]) -> RegistryDiff:
    result: dict[str, NamespaceDiff] = {}
    for ns in set(stored) | set(live):
        a = _table(stored, ns)
        b = _table(live, ns)
        if a is b:
            continue
        # C-level passes only (map/compress/filterfalse over dict methods): each signature of the
        # stored table is looked up once in the live table; the live table is walked only when it
        # holds signatures the stored one lacks.
        got = list(map(b.get, a, repeat(_ABSENT)))
        changed = list(compress(zip(a, got), map(ne, a.values(), got)))
        missing = {k: a[k] for k, v in changed if v is _ABSENT}
        mismatched = {k: (a[k], v) for k, v in changed if v is not _ABSENT}
        common = len(a) - len(missing)
        unexpected = {k: b[k] for k in filterfalse(a.__contains__, b)} if len(b) > common else {}
        if missing or unexpected or mismatched:
            result[ns] = NamespaceDiff(missing, unexpected, mismatched)
    return RegistryDiff(result)
