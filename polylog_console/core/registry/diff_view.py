"""What the console's symbol-diff panel shows, decided outside the widget.

The diff shown is the one of the current drift: the stored registry against the live state of the
newest checkpoint that carries one (``registry_state`` or ``registry_snapshot``) with the latest
drifting digest. :func:`situation` names the case from the monitor's view (so the panel is rebuilt
only when the case changes), :func:`note` says what to show when there is nothing to diff,
:func:`present` turns the monitor's diff (computed by a worker from immutable inputs the monitor
hands out on its own thread, see ``Monitor.diff_job``) into what the panel shows, and
:func:`filtered` applies the operator's filter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from polylog_console.core.feed.records import Checkpoint
from polylog_console.core.registry.diff import RegistryDiff
from polylog_console.core.registry.filter import DiffRow, FilterError, filter_rows, iter_diff, parse_query


@dataclass(frozen=True)
class DiffView:
    diff: RegistryDiff | None = None
    checkpoint: str | None = None  # label of the checkpoint whose live state was diffed
    note: str = "no drift: nothing to diff"  # shown when there is no diff
    rows: Sequence[DiffRow] = ()
    truncated: bool = False
    query: str = ""
    error: str | None = None  # a filter that could not be understood


def situation(view: Any) -> tuple[Any, ...]:
    """A key for the case the monitor's view (a MonitorView) is in: error, none, match or drift."""
    latest = view.latest
    if view.stored_error:
        return ("error", view.stored_error)
    if latest is None or view.latest_match is None:
        return ("none",)
    if view.latest_match or view.latest_scheme_mismatch:
        return ("match", view.latest_scheme_mismatch)
    return ("drift", view.stored_digest, latest.digest)


def note(key: tuple[Any, ...]) -> str | None:
    """What to show instead of a diff, or None for a drift (which has one to compute)."""
    kind = key[0]
    if kind == "error":
        return f"stored registry unreadable: {key[1]}"
    if kind == "none":
        return "no checkpoint compared yet"
    if kind == "match":
        return "scheme mismatch only: the symbols agree" if key[1] else \
            "in sync: the latest checkpoint matches the stored registry"
    return None


def source(latest: Checkpoint, find_back: Callable[[Callable[[Any], bool]], Any]) -> Checkpoint:
    """The newest held checkpoint with the latest digest that carries a live state (else the latest).

    ``find_back(predicate)`` searches the held rows newest first (``Timeline.find_back``)."""
    digest = latest.digest
    row = find_back(lambda r: r.checkpoint.digest == digest and r.checkpoint.has_state)
    return row.checkpoint if row is not None else latest


def present(label: str, diff: RegistryDiff | None, error: str | None, query: str = "") -> DiffView:
    """What the panel shows for the diff of checkpoint ``label`` (``diff``, or why there is none:
    ``error``), filtered by ``query``. The diff itself is the monitor's
    (:meth:`~polylog_console.core.monitor.rules.Monitor.diff_job`: computed on a worker from
    immutable inputs, kept in the monitor's cache on its own thread)."""
    if diff is None:
        text = (f"no symbol diff: {error}" if error else
                "no symbol diff: the drifting checkpoints carry no registry_state or registry_snapshot")
        return DiffView(checkpoint=label, note=text, query=query)
    return filtered(DiffView(diff=diff, checkpoint=label), query)


def filtered(view: DiffView, query: str) -> DiffView:
    """``view`` with its rows chosen by ``query`` (see :mod:`polylog_console.core.registry.filter`)."""
    query = query.strip()
    if view.diff is None:
        return replace(view, query=query)
    try:
        flt = parse_query(query)
    except FilterError as exc:
        return replace(view, rows=(), truncated=False, query=query, error=str(exc))
    rows, truncated = filter_rows(iter_diff(view.diff, flt), flt)
    return replace(view, rows=rows, truncated=truncated, query=query, error=None)
