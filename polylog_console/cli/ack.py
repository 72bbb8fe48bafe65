"""``polylog-console ack [NAME]``: acknowledge a workspace's drift as an Alertmanager silence (SPEC §12).

``NAME`` is a fleet workspace name (default: this workspace's, ``[fleet] name``); it needs
Alertmanager only, never Prometheus. By default the silence matches the current drift
(``workspace`` + ``dedup_key``), so a new, different drift still notifies; ``--all`` silences the whole
workspace, ``--alert CODE`` only that alert. ``ack --expire ID`` ends a silence. Without any
Alertmanager configured the acknowledgement stays local (the audit log), as the console's.

Exit: 0 done (also for ``--expire`` of a silence already expired: ``already_expired``), 1 nothing to
acknowledge (no current drift; or NAME unknown to Alertmanager: no alert or silence names it, JSON
``unknown_workspace``), 2 usage / configuration / Alertmanager error (``--alert`` not an alert code,
``--expire`` with NAME/--alert/--all/--for/--comment, an id that is not a silence's).
"""

from __future__ import annotations

import argparse

from polylog_console.cli.common import EXIT_OK, EXIT_PROBLEM, fail, print_json, say
from polylog_console.core.infra.text import safe_text
from polylog_console.core.model.config import parse_duration
from polylog_console.core.model.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", metavar="NAME", help="fleet workspace name (default: this workspace's)")
    parser.add_argument("--alert", metavar="CODE", help="only this alert (e.g. registry_mismatch)")
    parser.add_argument("--all", action="store_true", dest="all_alerts",
                        help="silence the whole workspace, not only its current drift")
    parser.add_argument("--for", dest="duration", metavar="DURATION", default=None,
                        help="how long the silence lasts (default 2h)")
    parser.add_argument("--comment", metavar="TEXT", help="why (shown to every console)")
    parser.add_argument("--alertmanager", metavar="URL", action="append",
                        help="Alertmanager URL (repeat for cluster members; default from monitoring.toml)")
    parser.add_argument("--expire", metavar="ID", help="end the silence ID now")


def run(args: argparse.Namespace) -> int:
    from polylog_console.cli.fleet import load
    from polylog_console.core.fleet.http import ApiError
    from polylog_console.core.fleet.silences import AckError, NothingToAcknowledge, acknowledge, expire
    from polylog_console.core.infra.audit import actor

    if args.expire is not None:
        extra = [flag for flag, given in (("NAME", args.name is not None), ("--alert", args.alert is not None),
                                          ("--all", args.all_alerts), ("--for", args.duration is not None),
                                          ("--comment", args.comment is not None)) if given]
        if extra:
            return fail(f"ack --expire ID ends one silence: it takes no {', '.join(extra)}")
    config = load(args)
    who = actor()
    try:
        if args.expire is not None:
            result = expire(config, who, args.expire, alertmanager=args.alertmanager)
        else:
            try:
                duration = parse_duration(args.duration or "2h")
            except ValueError as exc:
                raise ConfigError(f"--for: {exc}") from None
            result = acknowledge(config, who, name=args.name, alert=args.alert, all_alerts=args.all_alerts,
                                 duration=duration, comment=args.comment, alertmanager=args.alertmanager)
    except NothingToAcknowledge as exc:
        if args.json:
            print_json({"silence_id": None, "matchers": None, "ends_at": None, "error": str(exc),
                        "unknown_workspace": exc.unknown})
        else:
            say(safe_text(str(exc)))
        return EXIT_PROBLEM
    except (AckError, ApiError) as exc:
        return fail(str(exc))
    if args.json:
        print_json(result.to_json())
        return EXIT_OK
    if result.extra.get("already_expired"):
        from polylog_console.core.model.events import iso

        say(f"silence {safe_text(result.silence_id)} was already expired (ended {iso(result.ends_at)}) "
            f"on {safe_text(result.alertmanager)}")
    elif result.expired:
        say(f"silence {safe_text(result.silence_id)} expired on {safe_text(result.alertmanager)}")
    elif result.silence_id is None:
        say(f"acknowledged {safe_text(result.workspace)} locally (no Alertmanager configured): "
            f"{', '.join(f'{k}={safe_text(v, 80)}' for k, v in result.matchers.items())}")
    else:
        from polylog_console.core.model.events import iso

        say(f"silence {safe_text(result.silence_id)} on {safe_text(result.alertmanager)} until {iso(result.ends_at)}")
        say(f"  matchers  {', '.join(f'{k}={safe_text(v, 80)}' for k, v in result.matchers.items())}")
        say(f"  by        {safe_text(result.created_by)}: {safe_text(result.comment, 200)}")
    if result.audit_error:
        say(f"warning: not audited: {safe_text(result.audit_error, 200)}")
    return EXIT_OK
