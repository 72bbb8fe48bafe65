"""Catalog artifacts built from polyforms (SPEC §4), as pure functions over parsed polyforms.

``rehydrate`` replaces polylog6's ``scripts/populate_catalogs.py``: the two derived artifacts are in
polylog6's layout and parse to exactly the values that script writes for the same source.

* ``attachment_graph.json``: ``{"X↔Y": {"pairs": [{"polyform_uuid", "fold_angles", "stability_score"}],
  "scores": {}}}``. For each polyform, in source order, the *distinct characters* of its
  ``composition`` (every character, not only letters: ``△``, ``□``, astral symbols count too) sorted
  by code point; one key per pair ``X ≤ Y`` of them, **including** ``X↔X`` for every character (once
  per polyform, however often the character repeats). An absent ``fold_angles`` is ``[]``, an absent
  ``stability`` is ``0.8``; a present value is kept as it is (``0.0``, ``null``).
* ``scaler_tables.json``: flat ``{key: {"O", "I", "composition"}}``, the key being the polyform's
  ``unicode_char`` or, when it has no such key, the first character of its ``uuid``; an absent ``O``
  is 1, an absent ``I`` is ``3 × O``. A later polyform with the same key replaces the earlier one.
* ``registry.json``: the stored registry snapshot ``{"label", "digest", "scheme", "state"}`` (ours).
* ``metadata.json``: polylog6's fields (``source_file``, ``source_checksum``, ``generated_at``,
  ``artifacts``) plus ours (``registry_digest``, the ``registry`` artifact). :func:`verify_catalogs`
  reads one written by either, on either operating system.

Encoding: both polylog6 artifacts and ``metadata.json`` are written byte for byte as polylog6 writes
them, i.e. as Python's ``json.dumps(value, indent=2, sort_keys=True)`` (pure ASCII: non-ASCII and DEL
as ``\\uXXXX`` escapes, surrogate pairs above the BMP; no final newline), so a reader decoding with
any locale encoding reads the same values, and the checksums equal those polylog6's own script records
for the same source. :func:`python_json` is that encoding (the reference, used for small documents);
the fast path serialises each polyform's entry once with orjson and falls back to :func:`python_json`
for an entry holding a float the two libraries spell differently (``1e-05`` / ``0.00001``).

Writing them atomically, in parallel and under the workspace lock is the rehydrate action's job
(:mod:`polylog_console.core.runbook.rehydrate`); this module only computes their content. For parallel
builds the attachment graph is made of *fragments*: each worker serialises its own polyforms'
entries (:func:`attachment_fragments`) and :func:`graph_pieces` joins the fragments of all chunks,
in file order, into exactly the bytes :func:`build_all` writes, without re-parsing or re-pickling
the (large) graph.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any

import orjson

from polylog_console.core.infra import reader
from polylog_console.core.model.events import iso
from polylog_console.core.model.workspace import check_contained
from polylog_console.core.registry.digest import Scheme, digest
from polylog_console.core.registry.snapshot_digest import snapshot_head
from polylog_console.core.registry.stored import State, state_from_polyforms, tolerant_loads, type_name

ARTIFACTS = {
    "registry": "catalogs/registry.json",
    "attachment_graph": "catalogs/attachment_graph.json",
    "scaler_tables": "catalogs/scaler_tables.json",
}
#: The artifacts polylog6's populate_catalogs.py lists in its metadata.json (ours adds ``registry``).
POLYLOG6_ARTIFACTS = ("attachment_graph", "scaler_tables")
METADATA_PATH = "catalogs/metadata.json"
REGISTRY_PATH = "catalogs/registry.json"
SOURCE_FILE = "stable_polyforms.jsonl"
PAIR = "\u2194"  # ↔
DEFAULT_STABILITY = 0.8
METADATA_MAX = 1 << 20  # a metadata.json is a few hundred bytes; a larger one is not read
MAX_CHECKED_ARTIFACTS = 64  # listed artifacts whose checksums are checked; more are reported, not read

_DUMP = orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE
_DUMP_PRETTY = _DUMP | orjson.OPT_INDENT_2
_NON_ASCII = re.compile("[^\x00-\x7e]")  # Python's json escapes DEL too
#: In orjson's output, the floats it spells differently from Python's ``repr`` (a one-digit exponent,
#: ``0.0000...`` below 1e-4); a match in a string only costs the slow, exact path.
_RISKY_FLOAT = re.compile(rb"\de[+-]\d(?!\d)|(?<![\d.])0\.0000")
_encode_string = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
_GRAPH_INDENT = b"\n      "  # an entry inside "key" -> "pairs" -> [ ... ]
_SCALER_INDENT = b"\n  "


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def ascii_json(data: bytes) -> bytes:
    """Serialised JSON with every non-ASCII character (and DEL) as a ``\\uXXXX`` escape, as Python's
    ``json.dumps`` writes by default. Only valid on JSON text: its structure is ASCII, so every such
    character is inside a string, where the escape means the same character."""
    if data.isascii() and b"\x7f" not in data:
        return data
    return _NON_ASCII.sub(_escape, data.decode("utf-8")).encode("ascii")


def _json_string(text: str) -> bytes:
    """A string as Python's ``json`` writes it (ASCII escapes), by its C encoder."""
    return _encode_string(text).encode("ascii")


def python_json(document: Any) -> bytes:
    """``document`` encoded exactly as polylog6 writes its catalogs: ``json.dumps(document, indent=2,
    sort_keys=True)`` (ASCII, no final newline)."""
    return json.dumps(document, indent=2, sort_keys=True).encode("ascii")


def _entry_bytes(value: Mapping[str, Any], indent: bytes) -> bytes:
    """One nested object as :func:`python_json` writes it at the depth ``indent`` gives."""
    try:
        data = orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)
    except orjson.JSONEncodeError:  # an integer beyond 64 bits: Python's json writes it exactly
        return python_json(value).replace(b"\n", indent)
    if (b"e-" in data or b"e+" in data or b"0.0000" in data) and _RISKY_FLOAT.search(data):
        data = python_json(value)  # (substring tests first: the regex alone costs 10 times more)
    else:
        data = ascii_json(data)
    return data.replace(b"\n", indent)


def attachment_pairs(composition: str) -> list[str]:
    """Keys ``"X↔Y"``, ``X ≤ Y`` by code point, over the distinct characters of ``composition``,
    self pairs included: ``"AAB"`` -> ``["A↔A", "A↔B", "B↔B"]``."""
    types = sorted(set(composition))
    return [f"{a}{PAIR}{b}" for i, a in enumerate(types) for b in types[i:]]


def attachment_entry(p: Mapping[str, Any]) -> dict[str, Any]:
    """One polyform's entry in every pair list of the graph (defaults only for *absent* fields)."""
    return {"polyform_uuid": p.get("uuid"), "fold_angles": p.get("fold_angles", []),
            "stability_score": p.get("stability", DEFAULT_STABILITY)}


def _composition(p: Mapping[str, Any]) -> str:
    composition = p.get("composition", "")
    return composition if isinstance(composition, str) else ""


def attachment_entries(polyforms: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    graph: dict[str, list[dict[str, Any]]] = {}
    for p in polyforms:
        entry = attachment_entry(p)
        for key in attachment_pairs(_composition(p)):
            graph.setdefault(key, []).append(entry)
    return graph


@dataclass
class GraphPart:
    """One chunk's share of the attachment graph: each polyform's entry serialised once (as
    :func:`python_json` writes it inside the graph) and, per pair key, the indexes of its entries in
    source order. A worker sends this back instead of the joined text, which repeats every entry
    once per pair (about 10 times here): a tenth of the bytes to pickle and pipe to the parent."""

    entries: list[bytes]
    keys: dict[str, array]

    def fragment(self, key: str) -> bytes:
        """The entries of ``key``, joined as in the file (b"" when it has none)."""
        index = self.keys.get(key)
        if not index:
            return b""
        if len(index) == 1:
            return self.entries[index[0]]
        return _GRAPH_SEP.join(itemgetter(*index)(self.entries))


def attachment_fragments(polyforms: Iterable[Mapping[str, Any]]) -> GraphPart:
    """The :class:`GraphPart` of ``polyforms``; :func:`graph_pieces` turns the parts of consecutive
    chunks into the graph file's bytes.

    Polyforms are grouped by the *set* of their composition's characters (few distinct sets, however
    many compositions): one append per polyform; each set's pair keys are computed once, and a key's
    index list is its sets' lists merged back into source order (a C sort of sorted runs)."""
    entries: list[bytes] = []
    groups: dict[frozenset[str], list[int]] = {}
    for p in polyforms:
        composition = _composition(p)
        if not composition:
            continue  # no characters, no pairs
        types = frozenset(composition)
        group = groups.get(types)
        if group is None:
            groups[types] = [len(entries)]
        else:
            group.append(len(entries))
        entries.append(_entry_bytes(attachment_entry(p), _GRAPH_INDENT))
    runs: dict[str, list[list[int]]] = {}
    for types, group in groups.items():
        for key in attachment_pairs("".join(types)):
            bucket = runs.get(key)
            if bucket is None:
                runs[key] = [group]
            else:
                bucket.append(group)
    keys: dict[str, array] = {}
    for key, lists in runs.items():
        if len(lists) == 1:
            keys[key] = array("I", lists[0])
        else:
            merged = list(chain.from_iterable(lists))
            merged.sort()
            keys[key] = array("I", merged)
    return GraphPart(entries, keys)


_GRAPH_SEP = b"," + _GRAPH_INDENT


def graph_pieces(parts: list[GraphPart]) -> Iterable[bytes]:
    """The bytes of ``attachment_graph.json`` (what :func:`python_json` writes for
    :func:`build_attachment_graph`), in pieces (one per key and part), from the parts of consecutive
    chunks. Keys sorted by code point, as ``sort_keys``."""
    keys = sorted({key for part in parts for key in part.keys})
    if not keys:
        yield b"{}"
        return
    yield b"{"
    for i, key in enumerate(keys):
        yield (b",\n  " if i else b"\n  ") + _json_string(key) + b': {\n    "pairs": [' + _GRAPH_INDENT
        first = True
        for part in parts:
            fragment = part.fragment(key)
            if fragment:
                if not first:
                    yield _GRAPH_SEP
                yield fragment
                first = False
        yield b'\n    ],\n    "scores": {}\n  }'
    yield b"\n}"


def build_attachment_graph(polyforms: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    return {key: {"pairs": pairs, "scores": {}} for key, pairs in attachment_entries(polyforms).items()}


def _json_key(value: Any) -> str:
    """A JSON object key as Python's ``json`` makes one from a non-string (``None`` -> ``"null"``)."""
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode("ascii")
    except (TypeError, UnicodeDecodeError):
        return str(value)


def scaler_key(p: Mapping[str, Any]) -> str:
    """The polyform's ``unicode_char``; the first character of its ``uuid`` when it has no such key
    (a *present* ``unicode_char`` is the key whatever it is: SPEC §2 makes it a 1-2 character string)."""
    if "unicode_char" in p:
        return _json_key(p["unicode_char"])
    uuid = p.get("uuid")
    return uuid[:1] if isinstance(uuid, str) else ""


def scaler_value(p: Mapping[str, Any]) -> dict[str, Any]:
    """``{"O", "I", "composition"}``: absent ``O`` -> 1, absent ``I`` -> ``3 × O`` (``O`` as defaulted)."""
    o = p.get("O", 1)
    i = p["I"] if "I" in p else (o * 3 if isinstance(o, (int, float)) else None)
    return {"O": o, "I": i, "composition": p.get("composition")}


def build_scaler_tables(polyforms: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    tables: dict[str, dict[str, Any]] = {}
    for p in polyforms:
        tables[scaler_key(p)] = scaler_value(p)
    return tables


def scaler_item(p: Mapping[str, Any]) -> tuple[str, bytes]:
    """One polyform's ``scaler_tables.json`` member: its key and ``"key": value`` serialised as
    :func:`python_json` writes it there (built in the workers; the parent only sorts and joins)."""
    key = scaler_key(p)
    value = scaler_value(p)
    o, i, composition = value["O"], value["I"], value["composition"]
    if type(o) is int and type(i) is int and type(composition) is str:  # the usual case, spelled directly
        item = b'%s: {\n    "I": %d,\n    "O": %d,\n    "composition": %s\n  }' % (
            _json_string(key), i, o, _json_string(composition))
        return key, item
    return key, _json_string(key) + b": " + _entry_bytes(value, _SCALER_INDENT)


def scaler_pieces(items: Mapping[str, bytes]) -> Iterable[bytes]:
    """The bytes of ``scaler_tables.json`` (what :func:`python_json` writes for
    :func:`build_scaler_tables`) from the members ``{key: b'"key": value'}`` (see :func:`scaler_item`)."""
    if not items:
        yield b"{}"
        return
    yield b"{\n  "
    yield b",\n  ".join([items[key] for key in sorted(items)])
    yield b"\n}"


def registry_document(state: State, *, label: str, scheme: Scheme = "engine",
                      generated_at: str | None = None) -> dict[str, Any]:
    return {"label": label, "digest": digest(state, scheme), "scheme": scheme,
            "generated_at": generated_at or iso(), "state": state}


def dump(document: Any, *, pretty: bool = False) -> bytes:
    """Our own documents (``registry.json``, snapshots): keys sorted, UTF-8, a final newline."""
    return orjson.dumps(document, option=_DUMP_PRETTY if pretty else _DUMP)


def build_all(polyforms: list[Mapping[str, Any]], source_bytes: bytes, *, label: str,
              scheme: Scheme = "engine", source_file: str = SOURCE_FILE,
              generated_at: str | None = None) -> dict[str, bytes]:
    """Every artifact's bytes, keyed by workspace-relative path, metadata included (the single-pass
    reference for what ``rehydrate`` writes)."""
    generated_at = generated_at or iso()
    state = state_from_polyforms(polyforms)
    registry = registry_document(state, label=label, scheme=scheme, generated_at=generated_at)
    files = {
        ARTIFACTS["registry"]: dump(registry),
        ARTIFACTS["attachment_graph"]: python_json(build_attachment_graph(polyforms)),
        ARTIFACTS["scaler_tables"]: python_json(build_scaler_tables(polyforms)),
    }
    files[METADATA_PATH] = python_json(metadata_document(source_bytes, files, registry["digest"],
                                                         source_file=source_file, generated_at=generated_at))
    return files


def metadata_document(source_bytes: bytes, artifacts: Mapping[str, bytes], registry_digest: str, *,
                      source_file: str = SOURCE_FILE, generated_at: str | None = None) -> dict[str, Any]:
    return metadata_from_checksums(sha256_bytes(source_bytes),
                                   {path: sha256_bytes(data) for path, data in artifacts.items()},
                                   registry_digest, source_file=source_file, generated_at=generated_at)


def metadata_from_checksums(source_checksum: str, checksums: Mapping[str, str], registry_digest: str, *,
                            source_file: str = SOURCE_FILE,
                            generated_at: str | None = None) -> dict[str, Any]:
    """``metadata.json`` (SPEC §4) from checksums already computed (``{workspace-relative path: sha256}``),
    for writers that hash artifacts while streaming them to disk. Every field polylog6 writes, with its
    meaning (``source_file`` a bare file name, ``generated_at`` ISO-8601 UTC with ``Z``, ``artifacts``
    ``{name: {path, checksum}}`` with ``/``-separated workspace-relative paths), plus ours."""
    names = {path: name for name, path in ARTIFACTS.items()}
    return {
        "source_file": source_file,
        "source_checksum": source_checksum,
        "generated_at": generated_at or iso(),
        "registry_digest": registry_digest,
        "artifacts": {names.get(path, path): {"path": path, "checksum": checksum}
                      for path, checksum in sorted(checksums.items())},
    }


# -- reading and checking metadata.json ------------------------------------------------------


@dataclass(frozen=True)
class ArtifactCheck:
    """One listed artifact: ``status`` is ``ok``, ``mismatch``, ``missing``, ``unreadable`` or
    ``refused`` (a path that is absolute, climbs with ``..``, leaves the workspace, or is not a file)."""

    name: str
    path: str  # as listed, separators normalised to "/"
    status: str
    checksum: str | None = None  # of the file, when it was read

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "status": self.status, "checksum": self.checksum}


@dataclass(frozen=True)
class CatalogCheck:
    """Result of checking ``catalogs/metadata.json`` against the files (SPEC §4).

    ``consistent`` is SPEC §4's definition: the metadata's ``source_checksum`` is the SHA-256 of the
    current ``stable_polyforms.jsonl`` and every listed artifact's checksum matches its file.
    ``problems`` names every reason it is not, plus notes that do not by themselves make the catalogs
    inconsistent (a ``source_file`` other than ``stable_polyforms.jsonl``). ``raw`` is the metadata
    file's bytes as read (bounded), for reports."""

    consistent: bool
    problems: list[str]
    metadata: dict[str, Any] | None
    source_checksum: str | None  # of the current source file
    artifacts: list[ArtifactCheck] = field(default_factory=list)
    raw: bytes | None = None

    @property
    def source_file(self) -> str | None:
        value = (self.metadata or {}).get("source_file")
        return value if isinstance(value, str) else None

    def to_json(self) -> dict[str, Any]:
        meta = self.metadata or {}
        return {"consistent": self.consistent, "problems": self.problems,
                "generated_at": meta.get("generated_at"),
                "source_file": meta.get("source_file"),
                "checked_source": SOURCE_FILE,
                "source_checksum": self.source_checksum,
                "metadata_source_checksum": meta.get("source_checksum"),
                "registry_digest": meta.get("registry_digest"),
                "artifacts": {a.name: a.to_json() for a in self.artifacts}}


def _shown(value: Any, limit: int = 120) -> str:
    """A value from the metadata in a problem line: quoted, cut (the output's sanitiser escapes it)."""
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode("utf-8", "replace")
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return f'"{text}"' if isinstance(value, str) else text


def _short(checksum: Any) -> str:
    return checksum[:12] if isinstance(checksum, str) and checksum else "none"


def _open_regular(path: Path) -> int:
    """An fd on ``path`` if it is a regular file (never blocking on a FIFO); OSError otherwise
    (also for a workspace file linked outside the workspace, or a symlink loop)."""
    check_contained(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(0, "a directory" if stat.S_ISDIR(mode) else "not a regular file: not read")
    except BaseException:
        os.close(fd)
        raise
    return fd


def sha256_file(path: Path) -> str:
    """SHA-256 of a regular file, read in 1 MiB blocks (memory bounded whatever its size)."""
    h = hashlib.sha256()
    with open(_open_regular(path), "rb", closefd=True) as handle:
        while chunk := handle.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _read_metadata(path: Path) -> bytes:
    """The metadata file's bytes; ValueError when larger than :data:`METADATA_MAX`."""
    with open(_open_regular(path), "rb", closefd=True) as handle:
        data = handle.read(METADATA_MAX + 1)
    if len(data) > METADATA_MAX:
        raise ValueError(f"larger than {METADATA_MAX >> 20} MiB: not a metadata file, not read")
    return data


_DRIVE = re.compile(r"^[A-Za-z]:")


def confine_listed(root: Path, listed: Any) -> tuple[Path | None, str, str | None]:
    """A path listed in ``metadata.json`` -> (file, normalised path, problem). polylog6 writes
    ``str(path)`` relative to its working directory (the workspace), so on Windows with ``\\``:
    both separators are accepted. An absolute path, a ``..`` component or a path that resolves
    (through a symbolic link) outside the workspace is refused and never read."""
    if not isinstance(listed, str) or not listed.strip() or "\x00" in listed:
        return None, "" if not isinstance(listed, str) else listed, f"path {_shown(listed)} is not a usable path"
    normalised = listed.replace("\\", "/")
    if normalised.startswith("/") or _DRIVE.match(normalised):
        return None, normalised, f"path {_shown(listed)} is absolute: paths must be relative to the workspace; not read"
    parts = [part for part in normalised.split("/") if part not in ("", ".")]
    if ".." in parts:
        return None, normalised, f"path {_shown(listed)} climbs out with '..'; not read"
    if not parts:
        return None, normalised, f"path {_shown(listed)} names no file"
    rel = "/".join(parts)
    target = root.joinpath(*parts)
    resolved = Path(os.path.realpath(target))
    real_root = Path(os.path.realpath(root))
    if real_root not in resolved.parents:
        return None, rel, f"path {_shown(listed)} resolves outside the workspace (symbolic link); not read"
    return target, rel, None


def _same_hex(listed: Any, actual: str) -> bool:
    """A checksum listed in the metadata equals the computed (lower-case) one; hex compares
    case-insensitively (``"ABC..."`` is the same SHA-256)."""
    return isinstance(listed, str) and listed.lower() == actual


def _registry_digest_problem(root: Path, listed: Any) -> str | None:
    """A problem line when the metadata's ``registry_digest`` is not the digest written in
    ``catalogs/registry.json`` (its own ``digest`` field), else None. A registry that cannot be
    read is reported elsewhere (the stored registry's provider error); it is not said twice."""
    if not isinstance(listed, str):
        return f"{METADATA_PATH}: registry_digest is {type_name(listed)}, not a digest string"
    try:
        raw = reader.read_bytes(root / REGISTRY_PATH, reader.LIMITS["stored registry"], label=REGISTRY_PATH)
    except reader.UnreadableFile:
        return None
    head = snapshot_head(raw)
    if head is None:
        data, _reason = tolerant_loads(raw)
        head = data if isinstance(data, dict) else {}
    written = head.get("digest")
    if not isinstance(written, str) or written.lower() == listed.lower():
        return None
    return (f"{METADATA_PATH}: registry_digest {_short(listed)} differs from {REGISTRY_PATH}'s {written[:12]} "
            "(the registry changed since the metadata was written)")


def _check_artifact(root: Path, name: str, info: Any, problems: list[str]) -> tuple[ArtifactCheck, bool]:
    """Check one listed artifact; returns it and whether it is consistent."""
    if not isinstance(info, dict) or "path" not in info:
        problems.append(f"{METADATA_PATH}: artifact {_shown(name)} has no path")
        return ArtifactCheck(name, "", "refused"), False
    target, rel, refused = confine_listed(root, info.get("path"))
    if target is None:
        problems.append(f"{METADATA_PATH}: artifact {_shown(name)} {refused}")
        return ArtifactCheck(name, rel, "refused"), False
    expected = info.get("checksum")
    try:
        actual = sha256_file(target)
    except FileNotFoundError:
        hint = ""
        beside = f"catalogs/{target.name}"
        if rel != beside and (root / beside).is_file():
            hint = (f" ({beside} exists: paths are relative to the workspace; was the metadata written from "
                    "another working directory?)")
        problems.append(f"{rel}: listed in {METADATA_PATH} as {_shown(name)} but missing{hint}")
        return ArtifactCheck(name, rel, "missing"), False
    except OSError as exc:
        problems.append(f"{rel}: cannot read ({exc.strerror or exc})")
        return ArtifactCheck(name, rel, "unreadable"), False
    if not _same_hex(expected, actual):
        problems.append(f"{rel}: checksum {actual[:12]} differs from metadata {_short(expected)} "
                        f"(artifact {_shown(name)} changed since {METADATA_PATH} was written)")
        return ArtifactCheck(name, rel, "mismatch", actual), False
    return ArtifactCheck(name, rel, "ok", actual), True


def verify_catalogs(root: Path) -> CatalogCheck:
    """Check ``catalogs/metadata.json`` (written by rehydrate or by polylog6, on any OS) against the
    files: the source checksum against the current ``stable_polyforms.jsonl`` (whatever
    ``source_file`` says: a different name is reported as a note), and every listed artifact's
    checksum against its file."""
    root = Path(root)
    problems: list[str] = []
    try:
        raw = _read_metadata(root / METADATA_PATH)
    except FileNotFoundError:
        return CatalogCheck(False, [f"{METADATA_PATH}: missing"], None, None)
    except (OSError, ValueError) as exc:
        reason = (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc)
        return CatalogCheck(False, [f"{METADATA_PATH}: cannot read ({reason})"], None, None)
    # Tolerant for fields it does not use (1e400, NaN, a 5000-digit integer, a BOM from a Windows
    # editor): the feed parser's second look, as for registry.json (stored.tolerant_loads).
    metadata, refused = tolerant_loads(raw)
    if refused is not None:
        return CatalogCheck(False, [f"{METADATA_PATH}: not valid JSON ({refused})"], None, None, raw=raw)
    if not isinstance(metadata, dict):
        return CatalogCheck(False, [f"{METADATA_PATH}: not a JSON object"], None, None, raw=raw)
    consistent = True

    source_file = metadata.get("source_file")
    if source_file is not None and (not isinstance(source_file, str)
                                    or source_file.replace("\\", "/").removeprefix("./") != SOURCE_FILE):
        note = (f"{METADATA_PATH}: the catalogs were generated from {_shown(source_file)} (source_file), "
                f"not {SOURCE_FILE}; its source_checksum is checked against {SOURCE_FILE}")
    else:
        note = None
    source_checksum = None
    try:
        source_checksum = sha256_file(root / SOURCE_FILE)
    except OSError as exc:
        consistent = False
        reason = "missing" if isinstance(exc, FileNotFoundError) else (exc.strerror or str(exc))
        problems.append(f"{SOURCE_FILE}: cannot read ({reason})")
    expected = metadata.get("source_checksum")
    if source_checksum is not None and not _same_hex(expected, source_checksum):
        consistent = False
        problems.append(f"{SOURCE_FILE}: checksum {source_checksum[:12]} differs from metadata {_short(expected)} "
                        "(source changed since the catalogs were generated)")

    listed = metadata.get("artifacts")
    checks: list[ArtifactCheck] = []
    if not isinstance(listed, dict) or not listed:
        consistent = False
        problems.append(f"{METADATA_PATH}: no artifacts listed")
        listed = {}
    for name in POLYLOG6_ARTIFACTS:
        if listed and name not in listed:
            consistent = False
            problems.append(f"{METADATA_PATH}: no {name} artifact listed ({ARTIFACTS[name]} is not covered)")
    names = sorted(listed, key=str)
    for name in names[:MAX_CHECKED_ARTIFACTS]:
        check, ok = _check_artifact(root, str(name), listed[name], problems)
        checks.append(check)
        consistent = consistent and ok
    if len(names) > MAX_CHECKED_ARTIFACTS:
        consistent = False
        problems.append(f"{METADATA_PATH}: {len(names) - MAX_CHECKED_ARTIFACTS:,} more artifacts listed, not checked")
    if "registry_digest" in metadata:  # ours (polylog6 writes none): it must be registry.json's
        problem = _registry_digest_problem(root, metadata["registry_digest"])
        if problem is not None:
            consistent = False
            problems.append(problem)
    if note is not None:  # last: the reasons for an inconsistency come first
        problems.append(note)
    return CatalogCheck(consistent, problems, metadata, source_checksum, checks, raw)
