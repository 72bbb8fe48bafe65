"""The console's runbook actions as plain functions: what each key does, without any screen.

Each operation runs in a worker thread, takes an :class:`OperationContext` (what it needs,
gathered on the UI thread beforehand: the monitor is not shared across threads) and a
:class:`~polylog_console.core.model.progress.Progress` (progress bar and cancel), and returns an
:class:`Outcome`: ``ok`` or ``problem``, a one-line message for the notification and the activity
log, the JSON result for the audit trail, the raw result object for the screen, and a follow-up
the UI thread performs (compare the latest checkpoint again after rehydrate or recompute).

The operations call the runbook modules (validate, rehydrate, recompute, replicas, bundle,
clipboard). A module this build does not have yet makes its action *unavailable*
(:func:`unavailable_reason`): the console shows the action disabled with that reason.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from polylog_console.core.model.config import Config
from polylog_console.core.model.progress import Progress
from polylog_console.core.model.workspace import Workspace

# Operations whose core function appends its own action_* audit events (the console must not
# audit them a second time).
SELF_AUDITED = frozenset({"rehydrate"})

RECHECK = "recheck"
RECHECK_AFTER_REHYDRATE = "recheck_after_rehydrate"

# The core modules each action needs (beyond the foundation).
REQUIRES: dict[str, tuple[str, ...]] = {
    "validate": ("polylog_console.core.runbook.validate",),
    "rehydrate": ("polylog_console.core.runbook.rehydrate",),
    "recompute": ("polylog_console.core.runbook.recompute",),
    "replicas": ("polylog_console.core.runbook.replicas",),
    "bundle": ("polylog_console.core.runbook.bundle", "polylog_console.core.infra.clipboard"),
    "copy": ("polylog_console.core.infra.clipboard",),
}


def unavailable_reason(action_id: str) -> str | None:
    """Why ``action_id`` cannot run in this build (a module it needs is missing), or None."""
    for module in REQUIRES.get(action_id, ()):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return f"{action_id} is not available in this build ({module} is missing)"
    return None


@dataclass
class OperationContext:
    ws: Workspace
    config: Config
    actor: str
    monitor_view: Any = None  # MonitorView at start (bundle)
    parity: Any = None  # the last ParityReport, if any (bundle)
    lock_wait: float = 30.0  # seconds a mutating action waits for the workspace lock


@dataclass
class Outcome:
    outcome: str  # "ok" or "problem"
    message: str
    result: dict[str, Any] = field(default_factory=dict)
    data: Any = None
    followup: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


def _validate(ctx: OperationContext, progress: Progress) -> Outcome:
    from polylog_console.core.runbook.validate import validate_file

    report = validate_file(ctx.ws.source, progress=progress)
    return Outcome("ok" if report.valid else "problem", report.summary(), report.to_json(), report)


def _rehydrate(ctx: OperationContext, progress: Progress) -> Outcome:
    from polylog_console.core.runbook.rehydrate import rehydrate

    result = rehydrate(ctx.ws, ctx.config, workers="auto", progress=progress, lock_wait=ctx.lock_wait,
                       actor=ctx.actor)
    doc = result.to_json()
    digest = str(doc.get("registry_digest") or "")[:12]
    polyforms = doc.get("polyforms")
    count = f"{polyforms:,} polyforms, " if isinstance(polyforms, int) else ""
    return Outcome("ok", f"catalogs rebuilt ({count}registry digest {digest})", doc, result,
                   RECHECK_AFTER_REHYDRATE)


def _recompute(ctx: OperationContext, progress: Progress) -> Outcome:
    from polylog_console.core.runbook.recompute import recompute

    result = recompute(ctx.ws, ctx.config, progress=progress)
    doc = result.to_json()
    stored = result.stored_digest[:12]
    cp = result.checkpoint
    if cp is None:
        message = f"stored digest {stored}; no checkpoint in the feed to compare"
    elif result.registry_match:
        message = f"{cp.display_label} matches the stored digest {stored}"
    elif result.scheme_mismatch:
        message = f"{cp.display_label}: scheme mismatch (digest {cp.digest[:12]} is the stored registry " \
                  f"under the other scheme)"
    else:
        message = f"{cp.display_label} digest {cp.digest[:12]} differs from stored {stored}"
        if result.diff is not None:
            message += (f" (missing {result.diff.missing}, unexpected {result.diff.unexpected}, "
                        f"mismatched {result.diff.mismatched})")
    if not result.catalogs.consistent:
        problems = result.catalogs.problems
        message += "; catalogs inconsistent with catalogs/metadata.json" + (
            f" ({problems[0]}{f'; {len(problems) - 1} more' if len(problems) > 1 else ''})" if problems else "")
    if not result.file_digest_ok:
        message += "; registry.json's own digest field is wrong"
    return Outcome("ok" if result.ok else "problem", message, doc, result, RECHECK)


def _replicas(ctx: OperationContext, progress: Progress) -> Outcome:
    from polylog_console.core.runbook.replicas import check_replicas_sync, summary_line

    report = check_replicas_sync(ctx.ws, ctx.config, progress=progress)
    return Outcome("ok" if report.ok else "problem", summary_line(report), report.to_json(), report)


def _bundle(ctx: OperationContext, progress: Progress) -> Outcome:
    from polylog_console.core.infra.clipboard import copy_local
    from polylog_console.core.runbook.bundle import write_bundle

    progress.update(0, None, "writing the escalation bundle")
    bundle = write_bundle(ctx.ws, ctx.config, parity=ctx.parity, monitor_view=ctx.monitor_view, progress=progress,
                          user=ctx.actor)
    progress.check()
    copied, how = copy_local(bundle.markdown)
    path = ctx.ws.relative(bundle.path)
    # Only what this function did: the console says itself whether its OSC 52 copy left the terminal.
    message = f"wrote {path}" + (f"; {how}" if copied and how else "")
    result = {"path": path, "bytes": len(bundle.markdown.encode("utf-8")), "local_clipboard": copied}
    if not copied and how:
        result["local_clipboard_error"] = how
    return Outcome("ok", message, result, bundle)


OPERATIONS: dict[str, Callable[[OperationContext, Progress], Outcome]] = {
    "validate": _validate,
    "rehydrate": _rehydrate,
    "recompute": _recompute,
    "replicas": _replicas,
    "bundle": _bundle,
}
