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
from typing import Any


@dataclass(frozen=True, slots=True)
class Mismatch:
    namespace: str
    signature: str
    stored: Any
    live: Any


@dataclass(frozen=True, slots=True)
class Missing:
    namespace: str
    signature: str
    symbol: Any


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


def diff_states(stored: Mapping[str, Any], live: Mapping[str, Any]) -> RegistryDiff:
    result: dict[str, NamespaceDiff] = {}
    for ns in set(stored) | set(live):
        a = _table(stored, ns)
        b = _table(live, ns)
        if a is b:
            continue
        a_keys = a.keys()
        b_keys = b.keys()
        missing = {k: a[k] for k in a_keys - b_keys}
        unexpected = {k: b[k] for k in b_keys - a_keys}
        mismatched: dict[str, tuple[Any, Any]] = {}
        try:
            # Pairs of a not in b: missing signatures plus changed symbols (hashable values).
            changed = a.items() - b.items()
        except TypeError:  # unhashable values (nested data): compare one by one
            changed = [(k, a[k]) for k in a_keys & b_keys if a[k] != b[k]]
        for k, v in changed:
            if k in b:
                mismatched[k] = (v, b[k])
        if missing or unexpected or mismatched:
            result[ns] = NamespaceDiff(missing, unexpected, mismatched)
    return RegistryDiff(result)
