"""Catalog artifacts built from polyforms (SPEC §4), as pure functions over parsed polyforms.

* ``registry.json``: the stored registry snapshot ``{"label", "digest", "scheme", "state"}``.
* ``attachment_graph.json``: ``{"A↔B": {"pairs": [{"polyform_uuid", "fold_angles", "stability"}]}}``,
  one key per unordered pair of polygon types in a composition. A composition is a string of
  polygon-type letters (``"AAB"``: two polygons of type A, one of type B), as in polylog6; the
  self-pair ``A↔A`` exists only when the type occurs at least twice.
* ``scaler_tables.json``: ``{namespace: {symbol: {"O", "I", "composition"}}}``.
* ``metadata.json``: checksums of the source and of every artifact, and the registry digest.

Writing them atomically, in parallel and under the workspace lock is the rehydrate action's job
(:mod:`polylog_console.core.runbook.rehydrate`); this module only computes their content. For parallel
builds the attachment graph is made of *fragments*: each worker serialises its own polyforms'
entries (:func:`attachment_fragments`) and :func:`graph_pieces` joins the fragments of all chunks,
in file order, into exactly the bytes :func:`build_all` writes, without re-parsing or re-pickling
the (large) graph.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from polylog_console.core.model.events import iso
from polylog_console.core.registry.digest import Scheme, digest
from polylog_console.core.registry.stored import DEFAULT_NAMESPACE, State, state_from_polyforms

ARTIFACTS = {
    "registry": "catalogs/registry.json",
    "attachment_graph": "catalogs/attachment_graph.json",
    "scaler_tables": "catalogs/scaler_tables.json",
}
METADATA_PATH = "catalogs/metadata.json"
PAIR = "\u2194"  # ↔

_DUMP = orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE
_DUMP_PRETTY = _DUMP | orjson.OPT_INDENT_2


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def polygon_types(composition: str) -> dict[str, int]:
    """Polygon type -> count, from a composition string (letters; anything else ignored)."""
    counts: dict[str, int] = {}
    for ch in composition:
        if ch.isalpha():
            counts[ch] = counts.get(ch, 0) + 1
    return counts


def attachment_pairs(composition: str) -> list[str]:
    """Keys ``"A↔B"`` (sorted pair) for every pair of polygon types that can attach."""
    counts = polygon_types(composition)
    types = sorted(counts)
    keys = []
    for i, a in enumerate(types):
        if counts[a] >= 2:
            keys.append(f"{a}{PAIR}{a}")
        for b in types[i + 1 :]:
            keys.append(f"{a}{PAIR}{b}")
    return keys


def attachment_entries(polyforms: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    graph: dict[str, list[dict[str, Any]]] = {}
    for p in polyforms:
        entry = _attachment_entry(p)
        for key in attachment_pairs(p.get("composition", "")):
            graph.setdefault(key, []).append(entry)
    return graph


def _attachment_entry(p: Mapping[str, Any]) -> dict[str, Any]:
    return {"polyform_uuid": p["uuid"], "fold_angles": p.get("fold_angles", []), "stability": p.get("stability")}


def attachment_fragments(polyforms: Iterable[Mapping[str, Any]]) -> dict[str, bytes]:
    """``{"A↔B": b"entry,entry,..."}``: each entry serialised once (keys sorted), joined per key in order.

    :func:`graph_pieces` turns the fragments of consecutive chunks into the graph file's bytes."""
    parts: dict[str, list[bytes]] = {}
    pairs_of: dict[str, list[str]] = {}  # compositions repeat a lot: their pairs are computed once
    for p in polyforms:
        composition = p.get("composition", "")
        keys = pairs_of.get(composition)
        if keys is None:
            keys = pairs_of[composition] = attachment_pairs(composition)
        if not keys:
            continue
        entry = orjson.dumps(_attachment_entry(p), option=orjson.OPT_SORT_KEYS)
        for key in keys:
            bucket = parts.get(key)
            if bucket is None:
                parts[key] = [entry]
            else:
                bucket.append(entry)
    return {key: b",".join(entries) for key, entries in parts.items()}


def graph_pieces(chunks: list[Mapping[str, bytes]]) -> Iterable[bytes]:
    """The bytes of ``attachment_graph.json`` (as :func:`dump` would write them), in pieces, from the
    fragments of consecutive chunks. Keys are sorted by code point, as orjson's ``OPT_SORT_KEYS``."""
    keys = sorted({key for chunk in chunks for key in chunk})
    yield b"{"
    for i, key in enumerate(keys):
        yield (b"," if i else b"") + orjson.dumps(key) + b':{"pairs":['
        first = True
        for chunk in chunks:
            fragment = chunk.get(key)
            if fragment:
                if not first:
                    yield b","
                yield fragment
                first = False
        yield b"]}"
    yield b"}\n"


def build_attachment_graph(polyforms: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    return {key: {"pairs": pairs} for key, pairs in attachment_entries(polyforms).items()}


def build_scaler_tables(polyforms: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    tables: dict[str, dict[str, Any]] = {}
    for p in polyforms:
        symbol = p.get("unicode_char")
        if not isinstance(symbol, str):
            continue
        ns = p.get("namespace") or DEFAULT_NAMESPACE
        tables.setdefault(ns, {})[symbol] = {"O": p.get("O"), "I": p.get("I"), "composition": p.get("composition")}
    return tables


def scaler_entry(p: Mapping[str, Any]) -> bytes:
    """One polyform's ``scaler_tables.json`` entry, serialised (keys sorted)."""
    return orjson.dumps({"O": p.get("O"), "I": p.get("I"), "composition": p.get("composition")},
                        option=orjson.OPT_SORT_KEYS)


def scaler_pieces(tables: Mapping[str, Mapping[str, bytes]]) -> Iterable[bytes]:
    """The bytes of ``scaler_tables.json`` (as :func:`dump` would write them) from pre-serialised
    entries ``{namespace: {symbol: entry}}`` (namespaces without entries are left out)."""
    yield b"{"
    first_ns = True
    for ns in sorted(tables):
        table = tables[ns]
        if not table:
            continue
        yield (b"" if first_ns else b",") + orjson.dumps(ns) + b":{"
        first_ns = False
        yield b",".join(orjson.dumps(symbol) + b":" + table[symbol] for symbol in sorted(table))
        yield b"}"
    yield b"}\n"


def registry_document(state: State, *, label: str, scheme: Scheme = "engine",
                      generated_at: str | None = None) -> dict[str, Any]:
    return {"label": label, "digest": digest(state, scheme), "scheme": scheme,
            "generated_at": generated_at or iso(), "state": state}


def dump(document: Any, *, pretty: bool = False) -> bytes:
    return orjson.dumps(document, option=_DUMP_PRETTY if pretty else _DUMP)


def build_all(polyforms: list[Mapping[str, Any]], source_bytes: bytes, *, label: str,
              scheme: Scheme = "engine", source_file: str = "stable_polyforms.jsonl",
              generated_at: str | None = None) -> dict[str, bytes]:
    """Every artifact's bytes, keyed by workspace-relative path, metadata included."""
    generated_at = generated_at or iso()
    state = state_from_polyforms(polyforms)
    registry = registry_document(state, label=label, scheme=scheme, generated_at=generated_at)
    files = {
        ARTIFACTS["registry"]: dump(registry),
        ARTIFACTS["attachment_graph"]: dump(build_attachment_graph(polyforms)),
        ARTIFACTS["scaler_tables"]: dump(build_scaler_tables(polyforms)),
    }
    files[METADATA_PATH] = dump(metadata_document(source_bytes, files, registry["digest"],
                                                  source_file=source_file, generated_at=generated_at),
                                pretty=True)
    return files


def metadata_document(source_bytes: bytes, artifacts: Mapping[str, bytes], registry_digest: str, *,
                      source_file: str = "stable_polyforms.jsonl", generated_at: str | None = None) -> dict[str, Any]:
    return metadata_from_checksums(sha256_bytes(source_bytes),
                                   {path: sha256_bytes(data) for path, data in artifacts.items()},
                                   registry_digest, source_file=source_file, generated_at=generated_at)


def metadata_from_checksums(source_checksum: str, checksums: Mapping[str, str], registry_digest: str, *,
                            source_file: str = "stable_polyforms.jsonl",
                            generated_at: str | None = None) -> dict[str, Any]:
    """``metadata.json`` (SPEC §4) from checksums already computed (``{workspace-relative path: sha256}``),
    for writers that hash artifacts while streaming them to disk."""
    names = {path: name for name, path in ARTIFACTS.items()}
    return {
        "source_file": source_file,
        "source_checksum": source_checksum,
        "generated_at": generated_at or iso(),
        "registry_digest": registry_digest,
        "artifacts": {names.get(path, path): {"path": path, "checksum": checksum}
                      for path, checksum in sorted(checksums.items())},
    }


@dataclass(frozen=True)
class CatalogCheck:
    """Result of checking ``catalogs/metadata.json`` against the files (SPEC §4)."""

    consistent: bool
    problems: list[str]
    metadata: dict[str, Any] | None
    source_checksum: str | None  # of the current source file

    def to_json(self) -> dict[str, Any]:
        return {"consistent": self.consistent, "problems": self.problems,
                "generated_at": (self.metadata or {}).get("generated_at"),
                "source_checksum": self.source_checksum,
                "metadata_source_checksum": (self.metadata or {}).get("source_checksum")}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def verify_catalogs(root: Path) -> CatalogCheck:
    """Consistent when the source checksum and every artifact checksum match their files."""
    root = Path(root)
    problems: list[str] = []
    meta_path = root / METADATA_PATH
    try:
        metadata = orjson.loads(meta_path.read_bytes())
    except FileNotFoundError:
        return CatalogCheck(False, [f"{METADATA_PATH}: missing"], None, None)
    except (OSError, orjson.JSONDecodeError) as exc:
        return CatalogCheck(False, [f"{METADATA_PATH}: unreadable ({exc})"], None, None)
    if not isinstance(metadata, dict):
        return CatalogCheck(False, [f"{METADATA_PATH}: not a JSON object"], None, None)
    source_name = metadata.get("source_file") or "stable_polyforms.jsonl"
    source_checksum = None
    try:
        source_checksum = sha256_file(root / Path(str(source_name)).name)
    except OSError as exc:
        problems.append(f"{source_name}: cannot read ({exc.strerror or exc})")
    if source_checksum is not None and metadata.get("source_checksum") != source_checksum:
        problems.append(f"{source_name}: checksum {source_checksum[:12]} differs from metadata "
                        f"{str(metadata.get('source_checksum'))[:12]} (source changed since the last rehydrate)")
    artifacts = metadata.get("artifacts")
    if not isinstance(artifacts, dict) or not artifacts:
        problems.append(f"{METADATA_PATH}: no artifacts listed")
        artifacts = {}
    for name, info in sorted(artifacts.items()):
        if not isinstance(info, dict) or not isinstance(info.get("path"), str):
            problems.append(f"{METADATA_PATH}: artifact {name} has no path")
            continue
        rel = info["path"]
        target = (root / rel).resolve()
        if root.resolve() not in target.parents:
            problems.append(f"{METADATA_PATH}: artifact {name} path {rel!r} is outside the workspace")
            continue
        try:
            actual = sha256_file(target)
        except OSError as exc:
            problems.append(f"{rel}: cannot read ({exc.strerror or exc})")
            continue
        if actual != info.get("checksum"):
            problems.append(f"{rel}: checksum {actual[:12]} differs from metadata {str(info.get('checksum'))[:12]}")
    return CatalogCheck(not problems, problems, metadata, source_checksum)
