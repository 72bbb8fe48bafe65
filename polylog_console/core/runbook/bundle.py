"""The escalation bundle (SPEC §9, runbook §6): one Markdown file an operator attaches to the
incident channel, in ``memory/escalations/escalation-<UTC timestamp>.md``.

It holds what the runbook's escalation plan asks for: the monitor's status, the stored and live
digests, the diff summary, replica parity, ``catalogs/metadata.json`` (and whether the catalogs are
consistent), the schema validation output, the last 20 feed entries and the recent audit events.
Each section is built on its own: a section whose data cannot be read (an unreadable stored
registry is exactly when one escalates) says why, and the others are still written.

Everything shown comes from untrusted files, so:

* raw text (feed lines, metadata, validation output, audit events) goes into fenced code blocks
  whose fence is longer than any run of backticks inside, so no line can close the fence, and every
  line passes through :func:`~polylog_console.core.infra.text.safe_text`, so control characters (ANSI/OSC
  escapes, CR, bidirectional overrides) appear as visible ``\\x1b``-style escapes instead of acting
  on the terminal or viewer that displays the bundle;
* short values (labels, digests, replica errors) are Markdown code spans built the same way, with
  ``|`` escaped inside tables;
* lines and sections are capped (a feed line may carry a whole inline registry state);
* the configured secrets (webhook secret, SMTP password, from the environment or their files) are
  never read into the bundle, and any occurrence of their values in the untrusted text is masked.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from polylog_console.core.infra import atomic, reader
from polylog_console.core.infra.audit import actor, read_tail
from polylog_console.core.infra.retention import prune_kind
from polylog_console.core.infra.text import dumps_json, safe_text, valid_unicode
from polylog_console.core.model.config import Config
from polylog_console.core.model.errors import PolylogError
from polylog_console.core.model.events import iso
from polylog_console.core.model.progress import Cancelled, Progress
from polylog_console.core.model.workspace import Workspace
from polylog_console.core.runbook.markdown import (  # noqa: F401 - also this module's names
    MIN_SECRET,
    SECRET_ENV,
    _table,
    code,
    fence,
    mask_secrets,
    secret_values,
)

FEED_ENTRIES = 20  # runbook §6: "context-brief.jsonl excerpt (last 20 entries)"
LINE_LIMIT = 4096  # bytes of one feed line shown; the rest is summarised
AUDIT_EVENTS = 30
SECTION_LINES = 200  # lines of metadata or validation output shown
DIFF_SAMPLE = 10



@dataclass
class Bundle:
    """A written bundle: where it is and what it says."""

    path: Path
    markdown: str

    @property
    def size(self) -> int:
        return len(self.markdown.encode("utf-8"))

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "size": self.size}


def _capped(lines: list[str], limit: int, what: str) -> list[str]:
    if len(lines) <= limit:
        return lines
    return [*lines[:limit], f"… {len(lines) - limit:,} more lines of {what} not shown"]


# --- data gathering --------------------------------------------------------------------------------

TAIL_MAX_LINE = 1024 * 1024  # a feed line longer than this is shown by its length only (never held)


@dataclass
class FeedTail:
    lines: list[bytes | int]  # complete lines, oldest first, without their newline; an over-long one: its length
    start: int  # byte offset of the first line shown
    size: int  # file size when read
    partial: int  # bytes of an incomplete last line (being written), not shown


def tail_lines(path: Path, count: int, block: int = 64 * 1024, max_line: int = TAIL_MAX_LINE) -> FeedTail:
    """The last ``count`` non-blank complete lines of ``path``, read backwards from the end with the
    follower's :class:`~polylog_console.core.feed.follower.BackScanner` (a feed may be gigabytes
    long, or end in 700 MB of NUL bytes): memory is one block plus ``count`` lines of at most
    ``max_line`` bytes (a longer one comes as its length), time is proportional to what is
    skipped. Raises OSError when the file cannot be read,
    :class:`~polylog_console.core.infra.reader.UnreadableFile` when it is not a regular file."""
    from polylog_console.core.feed.follower import BackScanner

    fd, _ = reader.open_regular(path, what="feed")  # a FIFO is refused, never waited on
    chosen: list[tuple[int, bytes | int]] = []
    try:
        size = os.fstat(fd).st_size
        scanner = BackScanner(fd, size, max_line, first_block=block, max_block=1024 * 1024)
        for offset, lines in scanner:
            starts = []
            at = offset
            for item in lines:
                starts.append(at)
                at += (item if item.__class__ is int else len(item)) + 1  # type: ignore[arg-type]
            for item, at in zip(reversed(lines), reversed(starts), strict=True):
                if item.__class__ is int or item.strip():  # type: ignore[union-attr]
                    chosen.append((at, item))
                    if len(chosen) >= count:
                        break
            if len(chosen) >= count:
                break
        boundary = scanner.boundary if scanner.boundary is not None else 0
    finally:
        os.close(fd)
    chosen.reverse()
    return FeedTail([p for _, p in chosen], chosen[0][0] if chosen else size, size, size - boundary)


def _show_line(raw: bytes) -> str:
    """A line's text (invalid UTF-8 as ``\\xNN``), cut at ``LINE_LIMIT`` bytes on a character boundary."""
    if len(raw) <= LINE_LIMIT:
        return raw.decode("utf-8", "backslashreplace")
    cut = LINE_LIMIT
    while cut > LINE_LIMIT - 4 and raw[cut] & 0xC0 == 0x80:  # do not split a UTF-8 sequence
        cut -= 1
    return raw[:cut].decode("utf-8", "backslashreplace") + f" …[line cut: {len(raw) - cut:,} more bytes]"


def _utc(ts: float | None) -> str:
    return iso(ts) if ts is not None else "—"


# --- sections --------------------------------------------------------------------------------------

class _Builder:
    def __init__(self, ws: Workspace, config: Config, now: float) -> None:
        self.ws = ws
        self.config = config
        self.now = now
        self.parts: list[str] = []

    def add(self, *blocks: str) -> None:
        self.parts.extend(blocks)

    def section(self, title: str, build: Callable[[], None]) -> None:
        self.add(f"## {title}")
        try:
            build()
        except Cancelled:
            raise
        except Exception as exc:  # one broken section must not cost the operator the whole bundle
            if isinstance(exc, PolylogError):
                message = str(exc)
            elif isinstance(exc, OSError):
                message = f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}"
            else:
                message = f"{type(exc).__name__}: {exc}"
            self.add(f"_Unavailable:_ {code(message, 400)}")

    def header(self, user: str) -> None:
        cfg = self.config
        self.add(
            "# Escalation bundle: registry drift",
            _table(["", ""], [
                ["generated", code(iso(self.now))],
                ["by", code(user)],
                ["host", code(socket.gethostname())],
                ["workspace", code(self.ws.root, 300, table=True)],
                ["digest scheme", code(cfg.scheme)],
                ["configuration", code(cfg.source, table=True)],
                ["runbook", code(cfg.alerts.runbook_url, 300, table=True)],
            ]),
        )

    def status(self, view: Any, *, live: bool) -> None:
        """The monitor's state. ``live``: the view comes from a running console, whose "since"
        times are when it observed the changes; a view computed from the feed just now has none."""
        from polylog_console.core.monitor.rules import format_age

        latest = view.latest
        rows = [["status", f"**{view.status}**" + (" (stale)" if view.stale and str(view.status) != "STALE" else "")]]
        if live:
            rows.append(["status since", code(_utc(view.status_since))])
        rows += [
            ["latest checkpoint", "—" if latest is None else
             f"{code(latest.display_label, 80, table=True)} (line {latest.line})"],
            ["latest checkpoint age", format_age(view.age) if view.age is not None else "—"],
            ["registry_match", code(view.latest_match)],
            ["consecutive mismatches", str(view.consecutive_mismatches)],
        ]
        incident = getattr(view, "incident", None)  # the open incident (core/monitor/incident.py)
        if incident is not None:
            # its start is the first mismatching checkpoint's time: the same live or from the feed
            start = f"{code(_utc(incident.started_at))} ({code(incident.started_label, 80, table=True)}, " \
                    f"line {incident.started_line})"
            if not incident.start_in_history:
                start += " or earlier (the drift began before the history read)"
            rows.append(["drift observed since", start])
            rows.append(["first observed at", code(_utc(incident.observed_at))])
            if incident.flapped:
                rows.append(["flapping", f"{'yes' if incident.flapping else 'no longer'}: "
                                         f"{incident.flap_drifts:,} drifts, {incident.mismatching_checkpoints:,} "
                                         f"mismatching and {incident.matching_checkpoints:,} matching checkpoints "
                                         "in this one incident (held open until flap_settle checkpoints agree)"])
        elif live:
            rows.append(["drift observed since", code(_utc(view.drift_since))])
        rows += [
            ["checkpoints read", f"{view.checkpoints:,}"],
            ["ingest errors", f"{view.ingest_errors:,}"],
            ["field warnings", f"{view.warnings:,}"],
        ]
        if view.stored_error:
            rows.append(["stored registry error", code(view.stored_error, 300, table=True)])
        self.add(_table(["", ""], rows))
        reasons = []
        if view.stored_error:
            reasons.append("the stored registry cannot be read (`registry_provider_error`)")
        if view.consecutive_mismatches >= self.config.monitor.escalate_after:
            reasons.append(f"{view.consecutive_mismatches} consecutive checkpoints mismatch "
                           f"(escalate_after = {self.config.monitor.escalate_after})")
        if incident is not None and incident.flapping:
            reasons.append(f"the registry is flapping ({incident.flap_drifts:,} drifts): multiple checkpoints "
                           "trigger registry_mismatch")
        if reasons:
            self.add("Escalation criteria met (runbook §6): " + "; ".join(reasons) + ".")

    def digests(self, result: Any) -> None:
        cp = result.checkpoint
        rows = [
            ["stored (`catalogs/registry.json`)", code(result.stored_digest), f"{result.symbols:,} symbols"],
            ["live (latest checkpoint)", code(cp.digest if cp is not None else None, 80, table=True),
             "—" if cp is None else f"{code(cp.display_label, 80, table=True)}, line {cp.line}, "
                                    f"at {code(_utc(cp.timestamp))}"],
        ]
        self.add(_table(["", "digest", "detail"], rows))
        verdict = {True: "MATCH", False: "DRIFT", None: "no checkpoint to compare"}[result.registry_match]
        if result.scheme_mismatch:
            verdict = "SCHEME MISMATCH (equal under the other digest scheme: check digest.scheme)"
        lines = [f"- registry_match: {code(result.registry_match)}: **{verdict}**"]
        if not result.file_digest_ok:
            lines.append("- `catalogs/registry.json`: its own `digest` field does not match its state")
        self.add("\n".join(lines))

    def diff(self, result: Any) -> None:
        d = result.diff
        if d is None:
            if result.registry_match is True:
                self.add("No drift: the latest checkpoint matches the stored registry.")
            else:
                self.add(f"No symbol diff: {code(result.diff_error or 'no checkpoint', 300)}")
            return
        self.add(f"**missing {d.missing:,}, unexpected {d.unexpected:,}, mismatched {d.mismatched:,}** "
                 "(stored registry against the latest checkpoint's live state)")
        self.add(_table(["namespace", "missing", "unexpected", "mismatched"],
                        [[code(ns, 40, table=True), f"{c['missing']:,}", f"{c['unexpected']:,}",
                          f"{c['mismatched']:,}"] for ns, c in d.per_namespace().items()]))
        rows = []
        for kind, ns, sig, stored, live in d.rows():
            rows.append([kind, code(ns, 40, table=True), code(sig, 80, table=True),
                         code(stored, 40, table=True), code(live, 40, table=True)])
        if rows:
            shown = rows[:DIFF_SAMPLE * 3]
            self.add(_table(["kind", "namespace", "signature", "stored", "live"], shown))
            if len(rows) > len(shown):
                self.add(f"… {len(rows) - len(shown):,} more differences (`polylog-console digest --json`).")

    def replicas(self, report: Any) -> None:
        if not report.replicas:
            self.add("No replicas configured (`[[replicas]]` in monitoring.toml).")
            return
        rows = []
        for r in report.replicas:
            latency = f"{r.latency_ms:.1f} ms" if r.latency_ms is not None else "—"
            rows.append([code(r.name, 60, table=True), r.kind, f"**{r.status}**", code(r.digest, 80, table=True),
                         latency, code(r.location, 120, table=True), code(r.error, 300, table=True)])
        self.add(_table(["replica", "kind", "status", "digest", "latency", "location", "error"], rows))
        for r in report.replicas:
            if r.diff is None:
                continue
            d = r.diff
            counts = "; ".join(f"{safe_text(ns, 40)}: missing {c['missing']}, unexpected {c['unexpected']}, "
                               f"mismatched {c['mismatched']}" for ns, c in d.per_namespace().items())
            self.add(f"- {code(r.name, 60)} differs from the stored registry: missing {d.missing:,}, "
                     f"unexpected {d.unexpected:,}, mismatched {d.mismatched:,} ({code(counts, 600)})")
        matching = sum(1 for r in report.replicas if r.match is True)
        self.add(f"Parity {'ok' if report.ok else '**FAILED**'}: {matching} of {len(report.replicas)} replicas "
                 "match the stored digest.")

    def metadata(self) -> None:
        from polylog_console.core.runbook.catalogs import verify_catalogs

        check = verify_catalogs(self.ws.root)
        self.add(f"Catalogs {'consistent' if check.consistent else '**INCONSISTENT**'} "
                 "(source and artifact checksums against `catalogs/metadata.json`, SPEC §4).")
        if check.problems:
            self.add("\n".join(f"- {code(p, 300)}" for p in check.problems))
        if check.artifacts:
            self.add("Artifacts listed: " + ", ".join(f"{code(a.path, 120)} ({code(a.name, 40)}) {a.status}"
                                                     for a in check.artifacts) + ".")
        raw = check.raw  # read once, bounded, by verify_catalogs
        if raw is None:
            return  # missing or unreadable: the problem line above says why
        text = raw.decode("utf-8", "backslashreplace")
        try:
            text = orjson.dumps(orjson.loads(raw.removeprefix(b"\xef\xbb\xbf")), option=orjson.OPT_INDENT_2).decode()
        except orjson.JSONDecodeError:
            self.add("`catalogs/metadata.json` is not valid JSON; its text follows.")
        self.add(fence(_capped(text.splitlines(), SECTION_LINES, "metadata.json"), "json"))

    def validation(self) -> None:
        from polylog_console.core.runbook.validate import validate_file

        report = validate_file(self.ws.source)
        text = report.render_text()
        self.add(f"Output of `polylog-console validate` on `{self.ws.relative(self.ws.source)}` "
                 "(runbook step 2):")
        self.add(fence(_capped(text.splitlines(), SECTION_LINES, "validation output"), "text"))

    def feed(self) -> None:
        path = self.config.feed.path
        tail = tail_lines(path, FEED_ENTRIES)
        where = code(self.ws.relative(path), 200)
        self.add(f"The last {len(tail.lines)} entries of {where} (bytes {tail.start:,}–{tail.size:,} of "
                 f"{tail.size:,}), raw; control characters appear as `\\xNN` escapes, lines over "
                 f"{LINE_LIMIT:,} bytes are cut.")
        self.add(fence([_show_line(line) if isinstance(line, bytes) else f"…[a line of {line:,} bytes: not shown]"
                        for line in tail.lines], "jsonl"))
        if tail.partial:
            self.add(f"An incomplete last line ({tail.partial:,} bytes, still being written) is not shown.")

    def audit(self) -> None:
        events = list(read_tail(self.ws.audit, AUDIT_EVENTS))
        if not events:
            self.add(f"No audit events in {code(self.ws.relative(self.ws.audit))}.")
            return
        what = "event" if len(events) == 1 else f"{len(events)} events"
        self.add(f"The last {what} of {code(self.ws.relative(self.ws.audit))}:")
        lines = [dumps_json(e).decode() for e in events]  # valid UTF-8 whatever a record holds
        self.add(fence([_show_line(line.encode()) for line in lines], "jsonl"))


def monitor_view_from_feed(ws: Workspace, config: Config, now: float | None = None) -> Any:
    """The monitor's state after reading the whole feed (what the console would show)."""
    from polylog_console.core.feed.records import read_records
    from polylog_console.core.monitor.rules import Monitor
    from polylog_console.core.registry.stored import StoredRegistry

    monitor = Monitor(StoredRegistry.for_workspace(ws, config.scheme), config.monitor, ws)  # type: ignore[arg-type]
    now = time.time() if now is None else now
    try:
        for batch in read_records(config.feed.path):
            monitor.process(batch, emit_checkpoints=False, now=now, check_stale=False)
        monitor.tick(now)  # staleness judged on the latest checkpoint, as watch --once does
    except FileNotFoundError:
        raise PolylogError(f"{ws.relative(config.feed.path)}: feed not found") from None
    monitor.tick(now)
    return monitor.snapshot(now)


def build_bundle(ws: Workspace, config: Config, *, parity: Any = None, monitor_view: Any = None,
                 progress: Progress | None = None, now: float | None = None, user: str | None = None) -> str:
    """The bundle's Markdown. ``parity`` (a ParityReport) and ``monitor_view`` (a MonitorView) are
    used when given (the console has them); otherwise replicas are checked and the feed is read.
    Raises Cancelled when ``progress`` is cancelled between sections."""
    from polylog_console.core.runbook.recompute import recompute

    now = time.time() if now is None else now
    b = _Builder(ws, config, now)
    steps = 8
    step = 0

    def advance(message: str) -> None:
        nonlocal step
        if progress is not None:
            progress.check()
            progress.update(step, steps, message)
        step += 1

    advance("status")
    b.header(user or actor())
    live = monitor_view is not None
    if monitor_view is None:
        try:
            monitor_view = monitor_view_from_feed(ws, config, now)
        except (PolylogError, OSError) as exc:
            monitor_view = exc
    view = monitor_view

    def status() -> None:
        if isinstance(view, BaseException):
            raise view
        b.status(view, live=live)

    b.section("Status", status)
    advance("recompute")
    recomputed: list[Any] = []

    def digests() -> None:
        recomputed.append(recompute(ws, config))
        b.digests(recomputed[0])

    b.section("Digests", digests)

    def diff() -> None:
        if not recomputed:
            raise PolylogError("no digests (see above)")
        b.diff(recomputed[0])

    b.section("Diff summary", diff)

    def timeline() -> None:  # the incident so far (issue 14): the report's timeline, derived times, actions
        from polylog_console.core.runbook.report import timeline_markdown

        b.add(timeline_markdown(ws, config, now=now))

    b.section("Incident timeline so far", timeline)
    advance("replicas")

    def replicas() -> None:
        report = parity
        if report is None:
            from polylog_console.core.runbook.replicas import check_replicas_sync

            report = check_replicas_sync(ws, config)
        b.replicas(report)

    b.section("Replica parity", replicas)
    advance("metadata")
    b.section("Catalog metadata (`catalogs/metadata.json`)", b.metadata)
    advance("validation")

    def validation() -> None:
        try:
            b.validation()
        except ImportError as exc:  # core/validate.py not available in this build
            raise PolylogError(f"schema validation unavailable: {exc}") from None

    b.section("Schema validation", validation)
    advance("feed")
    b.section(f"Feed: last {FEED_ENTRIES} entries", b.feed)
    advance("audit")
    b.section("Recent audit events", b.audit)
    advance("done")
    markdown = "\n\n".join(b.parts) + "\n"
    return mask_secrets(markdown, secret_values(config))


def bundle_name(now: float) -> Callable[[int], str]:
    """``escalation-YYYYMMDDTHHMMSSZ.md``, then ``-2``, ``-3``... (taken exclusively: write_bundle)."""
    stamp = datetime.fromtimestamp(now, tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    return lambda n: f"escalation-{stamp}.md" if n == 1 else f"escalation-{stamp}-{n}.md"


def write_bundle(ws: Workspace, config: Config, **kw: Any) -> Bundle:
    """Build the bundle and write it atomically into ``memory/escalations/``.

    Raises OSError (e.g. a read-only workspace) with nothing half-written left behind."""
    now = kw.pop("now", None)
    now = time.time() if now is None else now
    # Every untrusted value went through code() or fence() (safe_text); a lone surrogate that
    # reached the text some other way is written as U+FFFD rather than cost the whole bundle.
    markdown = valid_unicode(build_bundle(ws, config, now=now, **kw))
    ws.escalations.mkdir(parents=True, exist_ok=True)
    # published with an exclusive link: two bundles of the same second never overwrite each other
    path = atomic.write_new(ws.escalations, bundle_name(now), markdown.encode("utf-8"))
    prune_kind(ws, "escalations", config.retention)  # [retention]: never the newest (core/infra/retention.py)
    return Bundle(path, markdown)
