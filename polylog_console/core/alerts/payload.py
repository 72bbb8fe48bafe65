"""What an alert says on each channel (SPEC §7): the notification and its renderings.

A :class:`Notification` is one message about one alert condition, built once from the monitor's
:class:`~polylog_console.core.model.events.Alert` when the dispatcher decides to announce it. It is what
the durable outbox stores (``memory/outbox/``), so it holds plain JSON data and **no secret**: the
webhook signature is computed from the exact body bytes at send time, and SMTP credentials live in
the sink. Each sink renders it for its channel:

* :func:`webhook_body` / :func:`encode_body`: the JSON body of SPEC §7, field for field;
  :func:`signature` the ``X-Polylog-Signature`` header value (HMAC-SHA256 of the body bytes).
* :func:`email_message`: a plain-text email with the summary, the diff sample and the runbook steps.
* :func:`alertmanager_alerts`: the Alertmanager v2 ``postableAlerts`` list (labels ``alertname``,
  ``code``, ``workspace``, ``severity``; annotations ``summary``, ``description``, ``runbook_url``;
  ``startsAt``; ``endsAt``).

Text that came from the feed (labels, digests, summaries built from them) may hold anything. A
notification holds it as :func:`~polylog_console.core.infra.text.json_safe` data (no lone
surrogates, so the outbox and every sink can encode it); each rendering then goes through the one
sanitiser of its output kind (``core/infra/text.py``): JSON bodies through
:func:`~polylog_console.core.infra.text.dumps_json` (controls and bidi characters as ``\\uXXXX``),
email text and subject, and Alertmanager annotations through
:func:`~polylog_console.core.infra.text.safe_text` (visible escapes), so escape sequences in a
checkpoint label cannot reach an operator's terminal or mail client.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import uuid
from dataclasses import asdict, dataclass, field, replace
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from polylog_console.core.infra.text import dumps_json, header_text, json_safe, safe_text
from polylog_console.core.model.events import SEVERITY, Alert, Severity, iso

BODY_VERSION = 1
SIGNATURE_HEADER = "X-Polylog-Signature"
DELIVERY_HEADER = "X-Polylog-Delivery"  # the notification id: lets a receiver drop at-least-once duplicates

# The runbook's manual response procedure (§4), as the console and CLI name its steps.
RUNBOOK_STEPS = (
    "1. Inspect the alert detail: missing / unexpected / mismatched symbols (polylog-console, or the diff below).",
    "2. Validate the catalog state: polylog-console validate",
    "3. Rehydrate the catalogs: polylog-console rehydrate --workers auto "
    "(then confirm catalogs/metadata.json matches stable_polyforms.jsonl)",
    "4. Recompute the digest: polylog-console digest --checkpoint latest (registry_match must be true)",
    "5. Verify replicas: polylog-console replicas",
    "Escalate (runbook §6) if drift persists after rehydration, several consecutive checkpoints mismatch, "
    "or the automatic refresh fails: polylog-console bundle",
)


def hostname() -> str:
    return socket.gethostname()


@dataclass(frozen=True)
class Notification:
    """One announcement of one alert condition, as stored in the outbox (JSON, no secrets)."""

    id: str
    created_at: float
    code: str
    status: str  # firing | resolved
    severity: str
    dedup_key: str
    summary: str
    workspace: str
    host: str
    runbook_url: str
    checkpoint: dict[str, Any] | None = None
    stored_digest: str | None = None
    live_digest: str | None = None
    consecutive_mismatches: int = 0
    since: float | None = None
    diff: dict[str, Any] | None = None
    reason: str | None = None
    resolves: tuple[str, ...] = ()
    repeat: int = 0  # 0 for the first announcement, n for the n-th reminder of a firing alert
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def group(self) -> tuple[str, str]:
        return (self.code, self.dedup_key)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["resolves"] = list(self.resolves)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Notification:
        """Rebuild from :meth:`to_json`; raises ``ValueError`` naming what is wrong."""
        if not isinstance(data, dict):
            raise ValueError("notification must be a JSON object")
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in data.items() if k in known}
        for name in ("id", "code", "status", "severity", "dedup_key", "summary", "workspace", "host", "runbook_url"):
            if not isinstance(values.get(name), str):
                raise ValueError(f"notification field {name!r} missing or not a string")
        if not isinstance(values.get("created_at"), int | float):
            raise ValueError("notification field 'created_at' missing or not a number")
        values["resolves"] = tuple(values.get("resolves") or ())
        values["extra"] = dict(values.get("extra") or {})
        return cls(**values)

    def again(self, now: float, consecutive: int | None = None) -> Notification:
        """A reminder of this (firing) notification: new id, next repeat number."""
        return replace(self, id=uuid.uuid4().hex, created_at=now, repeat=self.repeat + 1,
                       consecutive_mismatches=self.consecutive_mismatches if consecutive is None else consecutive)


def from_alert(alert: Alert, *, workspace: str, runbook_url: str, now: float, host: str | None = None) -> Notification:
    """The notification announcing ``alert`` (its feed-borne data as JSON-safe values)."""
    return Notification(
        id=uuid.uuid4().hex,
        created_at=now,
        code=alert.code,
        status=alert.status,
        severity=str(alert.severity),
        dedup_key=alert.dedup_key,
        summary=json_safe(alert.summary),
        workspace=json_safe(workspace),
        host=json_safe(host or hostname()),
        runbook_url=runbook_url,
        checkpoint=json_safe(dict(alert.checkpoint)) if alert.checkpoint else None,
        stored_digest=json_safe(alert.stored_digest),
        live_digest=json_safe(alert.live_digest),
        consecutive_mismatches=alert.consecutive_mismatches,
        since=alert.since,
        diff=json_safe(alert.diff),
        reason=json_safe(alert.reason),
        resolves=tuple(alert.resolves),
    )


# --- webhook -------------------------------------------------------------------------------------

def _diff_body(diff: dict[str, Any] | None) -> dict[str, Any] | None:
    """SPEC §7 ``diff``: counts and samples; None when the checkpoint carried no live state
    (the difference is then unknown, which zeros would misreport as "no difference")."""
    if diff is None:
        return None
    sample = diff.get("sample") or {}
    return {
        "missing": int(diff.get("missing") or 0),
        "unexpected": int(diff.get("unexpected") or 0),
        "mismatched": int(diff.get("mismatched") or 0),
        "sample": {kind: list(sample.get(kind) or []) for kind in ("missing", "unexpected", "mismatched")},
    }


def webhook_body(note: Notification, sent_at: float) -> dict[str, Any]:
    """The webhook JSON body, exactly the fields of SPEC §7 in its order."""
    cp = note.checkpoint
    return {
        "version": BODY_VERSION,
        "code": note.code,
        "status": note.status,
        "severity": note.severity,
        "dedup_key": note.dedup_key,
        "workspace": note.workspace,
        "host": note.host,
        "sent_at": iso(sent_at),
        "checkpoint": ({"label": cp.get("label"), "timestamp": cp.get("timestamp"),
                        "registry_digest": cp.get("registry_digest")} if cp else None),
        "stored_digest": note.stored_digest,
        "consecutive_mismatches": note.consecutive_mismatches,
        "diff": _diff_body(note.diff),
        "runbook_url": note.runbook_url,
    }


def encode_body(body: Any) -> bytes:
    """A JSON request body (webhook, Alertmanager): :func:`~polylog_console.core.infra.text.dumps_json`."""
    return dumps_json(body)


def signature(body: bytes, secret: str) -> str:
    """``sha256=<hex HMAC-SHA256 of the exact body bytes>``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, secret: str, header: str | None) -> bool:
    """What a receiver does: constant-time comparison of the header with the expected value."""
    return header is not None and hmac.compare_digest(signature(body, secret), header)


# --- email ---------------------------------------------------------------------------------------

def title(note: Notification) -> str:
    state = "RESOLVED" if note.status == "resolved" else str(note.severity).upper()
    reminder = f" (reminder {note.repeat})" if note.repeat else ""
    return f"[polylog {state}] {note.code} {note.status}{reminder}"


def _sample_lines(diff: dict[str, Any]) -> list[str]:
    lines = []
    sample = diff.get("sample") or {}
    for kind in ("missing", "unexpected", "mismatched"):
        for item in sample.get(kind) or []:
            if kind == "mismatched":
                what = f"stored {item.get('stored')!s} live {item.get('live')!s}"
            else:
                what = f"symbol {item.get('symbol')!s}"
            lines.append(f"  {kind:<10} {item.get('namespace')!s}/{item.get('signature')!s}  {what}")
    return [safe_text(line, 200) for line in lines]


def email_text(note: Notification) -> str:
    """The plain-text body: summary, facts, diff sample, runbook steps."""
    cp = note.checkpoint or {}
    lines = [
        safe_text(note.summary, 400),
        "",
        f"code                    {note.code}",
        f"status                  {note.status}",
        f"severity                {note.severity}",
        f"workspace               {safe_text(note.workspace, 300)}",
        f"host                    {safe_text(note.host, 120)}",
    ]
    if cp:
        lines.append(f"checkpoint              {safe_text(cp.get('label'), 120)} (line {cp.get('line')})")
        lines.append(f"live digest             {safe_text(cp.get('registry_digest'), 80)}")
    if note.stored_digest:
        lines.append(f"stored digest           {safe_text(note.stored_digest, 80)}")
    if note.code in ("registry_mismatch", "drift_persistent"):
        lines.append(f"consecutive mismatches  {note.consecutive_mismatches}")
    if note.since is not None:
        lines.append(f"since                   {iso(note.since)}")
    if note.reason:
        lines.append(f"reason                  {safe_text(note.reason, 200)}")
    lines.append(f"alert id                {note.dedup_key}")
    diff = note.diff
    if diff is not None:
        lines += ["", f"Diff (stored vs live): missing {diff.get('missing', 0)}, unexpected "
                      f"{diff.get('unexpected', 0)}, mismatched {diff.get('mismatched', 0)}"]
        sample = _sample_lines(diff)
        lines += ["Sample:", *sample] if sample else []
    elif note.status == "firing" and note.code in ("registry_mismatch", "drift_persistent"):
        lines += ["", "Diff: unknown (the checkpoint carries no live registry state)"]
    if note.status == "firing":
        lines += ["", "Runbook (manual response):", *RUNBOOK_STEPS]
    lines += ["", f"Runbook: {note.runbook_url}", ""]
    # Every line once more through the text sanitiser (idempotent): whatever a line holds, the
    # body carries no control, bidi override or lone surrogate.
    return "\n".join(safe_text(line) for line in lines)


def email_message(note: Notification, sender: str, to: tuple[str, ...]) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = header_text(f"{title(note)}: {note.summary}", 200)
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(idstring=note.id, domain="polylog-console")
    msg["X-Polylog-Dedup-Key"] = header_text(note.dedup_key, 80)  # read back from the outbox: one line whatever
    msg[DELIVERY_HEADER] = header_text(note.id, 80)
    msg.set_content(email_text(note))
    return msg


# --- Alertmanager --------------------------------------------------------------------------------

def am_labels(code: str, note: Notification) -> dict[str, str]:
    """The identity of one alert in Alertmanager: the same labels when firing and when resolved.

    ``severity`` is the firing code's severity (a resolution must carry the labels it resolves).
    ``dedup_key`` separates distinct drifts, ``host`` the watchers of a fleet."""
    return {
        "alertname": code,
        "code": code,
        "workspace": note.workspace,
        "severity": str(SEVERITY.get(code, Severity.WARNING)),
        "dedup_key": note.dedup_key,
        "host": note.host,
    }


def alertmanager_alerts(note: Notification, now: float, valid_for: float) -> list[dict[str, Any]]:
    """``POST /api/v2/alerts`` body.

    Firing: ``endsAt`` is ``now + valid_for``; the dispatcher re-sends the alert well within that
    time while it lasts (as Prometheus does), so a watcher that dies does not leave a stale alert
    active forever. Resolved: one alert per code the resolution ends, with ``endsAt`` = now.
    """
    starts = note.since if note.since is not None else note.created_at
    annotations = {
        "summary": safe_text(note.summary, 400),
        "description": safe_text(_description(note), 2000),
        "runbook_url": note.runbook_url,
    }
    if note.status == "firing":
        return [{"labels": am_labels(note.code, note), "annotations": annotations,
                 "startsAt": iso(min(starts, now)), "endsAt": iso(now + valid_for)}]
    codes = [note.code] if note.code not in ("registry_resolved",) else []
    codes += [c for c in note.resolves if c not in codes]
    return [{"labels": am_labels(code, note), "annotations": annotations,
             "startsAt": iso(min(starts, now)), "endsAt": iso(now)} for code in codes]


def _description(note: Notification) -> str:
    parts = [note.summary]
    if note.stored_digest:
        parts.append(f"stored digest {note.stored_digest}")
    if note.live_digest:
        parts.append(f"live digest {note.live_digest}")
    if note.code in ("registry_mismatch", "drift_persistent"):
        parts.append(f"{note.consecutive_mismatches} consecutive mismatching checkpoints")
    if note.diff is not None:
        parts.append(f"diff: missing {note.diff.get('missing', 0)}, unexpected {note.diff.get('unexpected', 0)}, "
                     f"mismatched {note.diff.get('mismatched', 0)}")
    if note.reason:
        parts.append(f"reason: {note.reason}")
    return "; ".join(parts)
