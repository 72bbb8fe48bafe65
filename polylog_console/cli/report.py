"""``polylog-console report``: the post-incident report (SPEC §13).

Markdown by default, written atomically to ``memory/reports/report-<UTC>.md`` and printed;
``--format json`` / ``--json`` print SPEC §13's document (and write ``report-<UTC>.json``).
Exit 0 when every incident reported is resolved (or there is none), 1 when one is still open
(the drift is not over: a problem, as ``watch --once`` exits 1 on DRIFT), 2 on a usage,
configuration or I/O error. A workspace where the report cannot be written still prints it,
with a one-line warning on stderr.
"""

from __future__ import annotations

import argparse
import sys

from polylog_console.cli.common import EXIT_OK, EXIT_PROBLEM, fail, open_context, print_json
from polylog_console.core.infra.text import safe_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--incident", metavar="latest|N|all", default=None,
                        help="which incident: the latest (default; with --since: all since then), number N "
                             "(oldest is 1), or all")
    parser.add_argument("--since", metavar="TIME",
                        help="only incidents active at or after TIME (ISO-8601, epoch seconds, or 2h / 7d ago)")
    parser.add_argument("--format", choices=("md", "json"), default=None, help="md (default) or json")
    parser.add_argument("--no-index", action="store_true",
                        help="reconstruct from the feed and the audit log, ignoring memory/incidents/index.jsonl")


def run(args: argparse.Namespace) -> int:
    from polylog_console.core.runbook.report import build_report, parse_since, render_markdown, write_report

    ctx = open_context(args)
    fmt = "json" if ctx.json or args.format == "json" else "md"
    since = parse_since(args.since) if args.since else None
    rs = build_report(ctx.workspace, ctx.config, incident=args.incident, since=since, use_index=not args.no_index)
    if rs.feed_error:
        return fail(rs.feed_error)
    if fmt == "json":
        from polylog_console.core.infra.text import dumps_json
        from polylog_console.core.runbook.markdown import mask_secrets, secret_values

        text = mask_secrets(dumps_json(rs.to_json(), indent=True).decode("utf-8"), secret_values(ctx.config))
    else:
        text = render_markdown(rs, ctx.workspace, ctx.config)
    try:
        path = write_report(ctx.workspace, text if fmt == "md" else text + "\n", rs.generated_at, fmt,
                            retention=ctx.config.retention)
    except OSError as exc:
        path = None
        sys.stderr.write(f"polylog-console: warning: report not written: {safe_text(exc.strerror or exc)}\n")
    if fmt == "json":
        import orjson

        document = orjson.loads(text)
        document["path"] = str(path) if path is not None else None
        print_json(document)
    else:
        sys.stdout.write(text)
        if path is not None:
            sys.stdout.write(f"\n_Written to {safe_text(ctx.workspace.relative(path))}._\n")
        sys.stdout.flush()
    return EXIT_PROBLEM if rs.any_open else EXIT_OK
