"""``polylog-console replicas``: digest parity of every configured replica (runbook step 5).

Exit 0 when every replica matches the stored registry (or none is configured), 1 when any
replica drifts, mismatches its scheme, is inconsistent or cannot be checked, 2 when the
configuration or the stored registry cannot be read. The run is recorded in the audit log.
"""

from __future__ import annotations

import argparse

from polylog_console.cli.common import EXIT_OK, EXIT_PROBLEM, diff_lines, open_context, print_json, say
from polylog_console.core.infra.audit import AuditLog
from polylog_console.core.infra.text import safe_text, short_digest
from polylog_console.core.model.errors import PolylogError
from polylog_console.core.runbook.replicas import ParityReport, ReplicaResult, check_replicas_sync, summary_line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options beyond the common ones (--workspace, --config, --json)."""


def run(args: argparse.Namespace) -> int:
    ctx = open_context(args)
    audit = AuditLog(ctx.workspace.audit)
    audit.append("action_started", action="replicas")
    try:
        report = check_replicas_sync(ctx.workspace, ctx.config)
    except PolylogError as exc:
        audit.append("action_failed", action="replicas", message=str(exc))
        raise
    audit.append("action_finished", action="replicas", outcome="ok" if report.ok else "problem",
                 message=summary_line(report), stored_digest=report.stored_digest,
                 replicas={r.name: r.status for r in report.replicas})
    if ctx.json:
        print_json(report.to_json())
    else:
        render(report)
    return EXIT_OK if report.ok else EXIT_PROBLEM


def _verdict(result: ReplicaResult) -> str:
    return "match" if result.match is True else result.status.upper()


def render(report: ParityReport) -> None:
    """Human-readable parity table; everything from a replica goes through safe_text."""
    say(f"stored digest  {report.stored_digest}  ({report.scheme})")
    if not report.replicas:
        say("no replicas configured ([[replicas]] in monitoring.toml)")
        return
    width = max(len(safe_text(r.name, 40)) for r in report.replicas)
    for r in report.replicas:
        latency = f"{r.latency_ms:.1f} ms" if r.latency_ms is not None else "—"
        say(f"{safe_text(r.name, 40):<{width}}  {r.kind:<4}  {_verdict(r):<15}  {short_digest(r.digest):<12}  "
            f"{latency:>10}  {safe_text(r.location, 100)}")
        if r.error:
            say(f"{'':<{width}}  error: {safe_text(r.error, 300)}")
        if r.generated_at:
            say(f"{'':<{width}}  generated at {safe_text(r.generated_at, 40)}")
        if r.diff is not None:
            for line in diff_lines(r.diff, f"{'':<{width}}  ", "diff: "):
                say(line)
    matching = sum(1 for r in report.replicas if r.match is True)
    verdict = "ok" if report.ok else "FAILED"
    say(f"parity {verdict}: {matching} of {len(report.replicas)} replicas match ({summary_line(report)}), "
        f"checked in {report.elapsed_ms / 1000:.2f} s")
