"""``polylog-console digest``: recompute the stored digest and compare it with a checkpoint, or
``digest --of FILE`` for the digest of any registry-state file."""

from __future__ import annotations

import argparse
from pathlib import Path

from polylog_console.cli.common import EXIT_OK, EXIT_PROBLEM, diff_lines, open_context, print_json, say
from polylog_console.core.infra.text import safe_text
from polylog_console.core.registry.digest import SCHEMES
from polylog_console.core.registry.stored import digest_file
from polylog_console.core.runbook.recompute import recompute


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", metavar="latest|LABEL", default="latest",
                        help="checkpoint to compare with (default: the latest)")
    parser.add_argument("--of", metavar="FILE", type=Path,
                        help="print the digest of FILE (a bare state or a registry snapshot) and exit")
    parser.add_argument("--scheme", choices=SCHEMES, help="digest scheme (default: digest.scheme from the config)")


def run(args: argparse.Namespace) -> int:
    if args.of is not None:
        scheme = args.scheme or "engine"
        if args.scheme is None and (args.workspace or args.config):
            scheme = open_context(args).config.scheme
        value, symbols = digest_file(args.of, scheme)  # type: ignore[arg-type]  # from the bytes when it can
        if args.json:
            print_json({"digest": value, "scheme": scheme, "file": str(args.of), "symbols": symbols})
        else:
            say(f"{value}  {safe_text(args.of)} ({scheme})")
        return EXIT_OK

    ctx = open_context(args)
    config = ctx.config
    if args.scheme is not None and args.scheme != config.scheme:
        from dataclasses import replace

        config = replace(config, monitor=replace(config.monitor, scheme=args.scheme))
    result = recompute(ctx.workspace, config, args.checkpoint)
    if ctx.json:
        print_json(result.to_json())
        return EXIT_OK if result.ok else EXIT_PROBLEM

    say(f"stored digest   {result.stored_digest}  ({result.scheme}, {result.symbols} symbols)")
    cp = result.checkpoint
    if cp is None:
        say("checkpoint      none in the feed: nothing to compare")
    else:
        say(f"checkpoint      {safe_text(cp.display_label, 60)} (line {cp.line})")
        say(f"live digest     {safe_text(cp.digest, 80)}")
        verdict = {True: "MATCH", False: "DRIFT", None: "UNKNOWN"}[result.registry_match]
        if result.scheme_mismatch:
            verdict = "SCHEME MISMATCH (matches under the other scheme: check digest.scheme)"
        say(f"registry_match  {str(result.registry_match).lower()}  {verdict}")
        if result.diff is not None:
            for line in diff_lines(result.diff, label="diff            "):
                say(line)
        elif result.diff_error:
            say(f"diff            unavailable: {safe_text(result.diff_error, 200)}")
    cat = result.catalogs
    say(f"catalogs        {'consistent' if cat.consistent else 'INCONSISTENT'}")
    for problem in cat.problems:
        say(f"  - {safe_text(problem, 200)}")
    if cat.artifacts:
        say("  artifacts     " + ", ".join(f"{safe_text(a.path, 80)} {a.status}" for a in cat.artifacts))
    if not result.file_digest_ok:
        say("registry.json   its digest field does not match its state")
    return EXIT_OK if result.ok else EXIT_PROBLEM
