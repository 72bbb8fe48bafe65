"""Alertmanager's v2 API for the fleet: alerts, silences, and acknowledgements as silences.

An acknowledgement is a silence (SPEC §12): matchers ``workspace=<name>`` and, unless ``all``,
``dedup_key=<the current drift's>`` (plus ``alertname=<code>`` with ``alert``), ``createdBy`` =
the actor (``user@host``), the comment, ``endsAt`` = now + ``duration``. Silencing the current
drift only (its ``dedup_key``) means a new, different drift on the same workspace still notifies.

A cluster is a list of member URLs. Silences are gossiped between members, so a silence is created
(or expired) on the first member that answers, and read from the first member that answers; the
alerts are posted to every member by the watcher (:mod:`~polylog_console.core.alerts.alertmanager`).

The current drift's ``dedup_key`` comes, for this workspace, from the latest checkpoint and the
stored registry (:func:`local_drift_key`: the rule the monitor applies, the feed read backwards
from its end, never replayed), and for a remote workspace from Alertmanager's active alerts
labelled with its name (:func:`remote_drift_key`).

Silences created here are recorded in ``memory/fleet/acks.json`` (atomic writes) with their
``dedup_key``; when the drift resolves, the Alertmanager sink expires the silences that match that
drift (:func:`expire_for_drift`): those recorded, and those found on Alertmanager with the same
``workspace`` and ``dedup_key`` matchers (an acknowledgement made from another machine's fleet console).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from polylog_console.core.fleet.http import (
    ApiError,
    check_url,
    client_options,
    display_url,
    read_json,
    transport_error,
)
from polylog_console.core.infra.atomic import write_bytes
from polylog_console.core.infra.text import safe_text
from polylog_console.core.model import events as ev
from polylog_console.core.model.config import Config, HttpClientConfig
from polylog_console.core.model.errors import PolylogError

ACKS_FILE = "memory/fleet/acks.json"
MAX_RECORDED = 200  # silences kept in the state file (oldest dropped first)
DEFAULT_DURATION = 2 * 3600.0
DRIFT_CODES = (ev.REGISTRY_MISMATCH, ev.DRIFT_PERSISTENT)


class AckError(PolylogError):
    """An acknowledgement that cannot be made (exit 2, one line)."""


class NothingToAcknowledge(PolylogError):
    """No current drift to silence (exit 1): the workspace is in sync, or ``--all`` is needed."""

    unknown = False


class UnknownWorkspace(NothingToAcknowledge):
    """No alert and no silence on Alertmanager names this workspace (exit 1): likely a wrong name."""

    unknown = True


SILENCE_ID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def parse_time(text: Any) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


# --- the API ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Silence:
    id: str
    matchers: tuple[tuple[str, str, bool, bool], ...]  # (name, value, is_regex, is_equal)
    starts_at: float | None
    ends_at: float | None
    created_by: str
    comment: str
    state: str  # active | pending | expired

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Silence:
        matchers = tuple((str(m.get("name", "")), str(m.get("value", "")), bool(m.get("isRegex", False)),
                          bool(m.get("isEqual", True))) for m in data.get("matchers") or [])
        return cls(str(data.get("id", "")), matchers, parse_time(data.get("startsAt")), parse_time(data.get("endsAt")),
                   str(data.get("createdBy", "")), str(data.get("comment", "")),
                   str((data.get("status") or {}).get("state", "")))

    def equals(self) -> dict[str, str]:
        """The plain ``name=value`` matchers."""
        return {name: value for name, value, regex, equal in self.matchers if not regex and equal}

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "matchers": [{"name": n, "value": v, "isRegex": r, "isEqual": e}
                                            for n, v, r, e in self.matchers],
                "starts_at": ev.iso(self.starts_at) if self.starts_at else None,
                "ends_at": ev.iso(self.ends_at) if self.ends_at else None,
                "created_by": self.created_by, "comment": self.comment, "state": self.state}


@dataclass(frozen=True)
class AmAlert:
    labels: Mapping[str, str]
    state: str  # active | suppressed | unprocessed
    silenced_by: tuple[str, ...]
    starts_at: float | None
    ends_at: float | None
    summary: str = ""

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> AmAlert:
        status = data.get("status") or {}
        return cls({str(k): str(v) for k, v in (data.get("labels") or {}).items()}, str(status.get("state", "")),
                   tuple(str(s) for s in status.get("silencedBy") or []), parse_time(data.get("startsAt")),
                   parse_time(data.get("endsAt")), str((data.get("annotations") or {}).get("summary", "")))


class AlertmanagerClient:
    """Alertmanager's v2 API on one or several members (a cluster)."""

    def __init__(self, urls: str | Sequence[str], *, http: HttpClientConfig | None = None,
                 timeout: float = 5.0) -> None:
        self.urls = tuple(u.rstrip("/") for u in ([urls] if isinstance(urls, str) else urls))
        if not self.urls:
            raise AckError("no Alertmanager URL configured ([fleet] alertmanager_url, [alertmanager] url "
                           "or --alertmanager)")
        self.display = ", ".join(display_url(u) for u in self.urls)
        self.client = httpx.Client(**client_options(http, timeout))

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> AlertmanagerClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The first member that answers (silences and alerts are shared by the cluster)."""
        errors = []
        for url in self.urls:
            what = f"Alertmanager {display_url(url)}"
            try:
                response = self.client.request(method, url + path, **kwargs)
            except httpx.HTTPError as exc:
                errors.append(str(transport_error(exc, what)))
                continue
            if method == "DELETE" and response.status_code == 200 and not response.content:
                return None
            return read_json(response, f"{what} {method} {path.split('?')[0]}")
        raise ApiError("; ".join(errors))

    def alerts(self, filters: Iterable[str] = ()) -> list[AmAlert]:
        params = [("active", "true"), ("silenced", "true"), ("inhibited", "true"), ("unprocessed", "true")]
        params += [("filter", f) for f in filters]
        data = self._call("GET", "/api/v2/alerts", params=params)
        return [AmAlert.from_api(item) for item in data or [] if isinstance(item, dict)]

    def silences(self, filters: Iterable[str] = ()) -> list[Silence]:
        data = self._call("GET", "/api/v2/silences", params=[("filter", f) for f in filters])
        return [Silence.from_api(item) for item in data or [] if isinstance(item, dict)]

    def create_silence(self, matchers: Mapping[str, str], *, created_by: str, comment: str, ends_at: float,
                       starts_at: float | None = None) -> str:
        body = {"matchers": [{"name": k, "value": v, "isRegex": False, "isEqual": True} for k, v in matchers.items()],
                "startsAt": ev.iso(time.time() if starts_at is None else starts_at), "endsAt": ev.iso(ends_at),
                "createdBy": created_by, "comment": comment}
        data = self._call("POST", "/api/v2/silences", content=orjson.dumps(body),
                          headers={"Content-Type": "application/json"})
        silence_id = data.get("silenceID") if isinstance(data, dict) else None
        if not isinstance(silence_id, str) or not silence_id:
            raise ApiError(f"Alertmanager {self.display}: no silenceID in the answer")
        return silence_id

    def silence(self, silence_id: str) -> Silence | None:
        """The silence ``silence_id`` (None: Alertmanager has no such silence)."""
        check_silence_id(silence_id)
        errors = []
        for url in self.urls:
            what = f"Alertmanager {display_url(url)}"
            try:
                response = self.client.get(f"{url}/api/v2/silence/{silence_id}")
            except httpx.HTTPError as exc:
                errors.append(str(transport_error(exc, what)))
                continue
            if response.status_code == 404:
                return None
            data = read_json(response, f"{what} GET /api/v2/silence")
            return Silence.from_api(data) if isinstance(data, dict) else None
        raise ApiError("; ".join(errors))

    def expire_silence(self, silence_id: str) -> None:
        check_silence_id(silence_id)
        self._call("DELETE", f"/api/v2/silence/{silence_id}")


def check_silence_id(silence_id: str) -> str:
    """A silence id is a UUID (what Alertmanager hands out); :class:`AckError` naming it otherwise."""
    if not isinstance(silence_id, str) or not SILENCE_ID.fullmatch(silence_id):
        raise AckError(f"not a silence id: {safe_text(repr(silence_id), 80)} (Alertmanager's ids are UUIDs, "
                       "e.g. 0f3c9e2a-5b1d-4c8e-9a7f-2d6b8e1c4a90; `ack --json` prints it)")
    return silence_id


def matcher_filter(name: str, value: str) -> str:
    """An Alertmanager ``filter`` parameter: ``name="value"`` (quotes and backslashes escaped)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'{name}="{escaped}"'


# --- the current drift ----------------------------------------------------------------------------

def local_drift_key(config: Config) -> str | None:
    """This workspace's current drift (``dedup_key`` of stored digest + live digest), or None when
    the latest checkpoint matches (or only differs by digest scheme), or there is none."""
    from polylog_console.core.model.workspace import Workspace
    from polylog_console.core.registry.stored import StoredRegistry
    from polylog_console.core.runbook.recompute import find_checkpoint

    ws = Workspace(Path(config.workspace))
    view = StoredRegistry.for_workspace(ws, config.scheme).get()  # type: ignore[arg-type]
    cp = find_checkpoint(config.feed.path, "latest")
    if cp is None or cp.digest == view.digest or cp.digest == view.other_digest:
        return None
    return ev.dedup_key(view.digest, cp.digest)


def remote_drift_key(client: AlertmanagerClient, workspace: str, alert: str | None = None) -> str | None:
    """The ``dedup_key`` of ``workspace``'s most recent active drift alert on Alertmanager."""
    codes = (alert,) if alert else DRIFT_CODES
    found = [a for a in client.alerts([matcher_filter("workspace", workspace)])
             if a.labels.get("alertname") in codes and a.labels.get("dedup_key")]
    if not found:
        return None
    found.sort(key=lambda a: a.starts_at or 0.0)
    return found[-1].labels["dedup_key"]


def known_to_alertmanager(client: AlertmanagerClient, workspace: str) -> bool:
    """Whether any alert (of any state) or any silence on Alertmanager names ``workspace``."""
    if client.alerts([matcher_filter("workspace", workspace)]):
        return True
    return any(s.equals().get("workspace") == workspace for s in client.silences())


# --- the state file -------------------------------------------------------------------------------

def _acks_path(root: Path) -> Path:
    return Path(root) / ACKS_FILE


def read_acks(root: Path) -> list[dict[str, Any]]:
    try:
        data = orjson.loads(_acks_path(root).read_bytes()[: 4 << 20])
    except (OSError, orjson.JSONDecodeError):
        return []
    items = data.get("silences") if isinstance(data, dict) else None
    return [i for i in items or [] if isinstance(i, dict) and isinstance(i.get("id"), str)]


def write_acks(root: Path, items: list[dict[str, Any]]) -> None:
    path = _acks_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, orjson.dumps({"version": 1, "silences": items[-MAX_RECORDED:]}, option=orjson.OPT_INDENT_2))


def record_ack(root: Path, entry: dict[str, Any]) -> None:
    items = [i for i in read_acks(root) if i.get("id") != entry["id"]]
    write_acks(root, [*items, entry])


def forget_acks(root: Path, ids: Iterable[str]) -> None:
    gone = set(ids)
    items = read_acks(root)
    kept = [i for i in items if i.get("id") not in gone]
    if len(kept) != len(items):
        write_acks(root, kept)


# --- acknowledging ----------------------------------------------------------------------------------

@dataclass
class AckResult:
    workspace: str
    silence_id: str | None
    matchers: dict[str, str]
    ends_at: float
    created_by: str
    comment: str
    alertmanager: str | None  # None: acknowledged locally only (no Alertmanager configured)
    expired: bool = False
    audit_error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"workspace": self.workspace, "silence_id": self.silence_id, "matchers": self.matchers,
                "ends_at": ev.iso(self.ends_at), "created_by": self.created_by, "comment": self.comment,
                "alertmanager": self.alertmanager, "local_only": self.alertmanager is None,
                **({"expired": True} if self.expired else {}), **self.extra}


def alertmanager_urls(config: Config, override: str | Sequence[str] | None = None) -> tuple[str, ...]:
    """``--alertmanager``, else ``[fleet] alertmanager_url``, else ``[alertmanager] url``; each one
    checked (http/https with a host: :func:`~.http.check_url`, a ConfigError naming its source)."""
    if override:
        urls, what = tuple([override] if isinstance(override, str) else override), "--alertmanager"
    elif config.fleet.alertmanager_urls:
        urls, what = config.fleet.alertmanager_urls, "[fleet] alertmanager_url"
    elif config.alerts.alertmanager is not None:
        urls, what = config.alerts.alertmanager.urls, "[alertmanager] url"
    else:
        return ()
    return tuple(check_url(url, what) for url in urls)


def alertmanager_http(config: Config) -> HttpClientConfig:
    """The fleet's TLS/auth when ``[fleet]`` names Alertmanager, else ``[alertmanager]``'s."""
    if config.fleet.alertmanager_urls or config.alerts.alertmanager is None:
        return config.fleet.http
    return config.alerts.alertmanager.http


def acknowledge(config: Config, actor: str, *, name: str | None = None, alert: str | None = None,
                all_alerts: bool = False, duration: float = DEFAULT_DURATION, comment: str | None = None,
                alertmanager: str | Sequence[str] | None = None, client: AlertmanagerClient | None = None,
                now: float | None = None) -> AckResult:
    """Acknowledge workspace ``name`` (default: this one) as a silence; audited in this workspace.

    What the single-workspace console's ``ack`` key calls when Alertmanager is configured. Raises
    :class:`NothingToAcknowledge` when there is no current drift (and not ``all_alerts``),
    :class:`AckError` / :class:`~.http.ApiError` when Alertmanager cannot do it."""
    from polylog_console.core.fleet.identity import workspace_name
    from polylog_console.core.infra.audit import AuditLog

    now = time.time() if now is None else now
    if duration <= 0:
        raise AckError("--for must be a positive duration")
    if name is not None and not name.strip():  # never fall back to this workspace's name for an empty one
        raise AckError("NAME is empty: give a fleet workspace name, or none for this workspace's")
    if alert is not None and alert not in ev.ALERT_CODES:
        raise AckError(f"--alert {safe_text(repr(alert), 60)}: not an alert code (one of {', '.join(ev.ALERT_CODES)})")
    own = workspace_name(config)
    target = name or own
    urls = alertmanager_urls(config, alertmanager)
    text = comment or f"acknowledged with polylog-console by {actor}"
    owned = client is None and bool(urls)
    am = client if client is not None else (AlertmanagerClient(urls, http=alertmanager_http(config),
                                                               timeout=config.fleet.timeout) if urls else None)
    try:
        matchers = {"workspace": target}
        key = None
        if not all_alerts:
            key = None
            if target == own:
                try:
                    key = local_drift_key(config)
                except PolylogError:  # no feed / unreadable registry here: ask Alertmanager what it heard
                    key = None
            if key is None and am is not None:
                key = remote_drift_key(am, target, alert)
                if key is None and target != own and not known_to_alertmanager(am, target):
                    raise UnknownWorkspace(
                        f"{target}: unknown to Alertmanager {am.display}: no alert or silence names this "
                        "workspace (check the name: `polylog-console fleet` lists them; --all silences it anyway)")
            if key is None:
                raise NothingToAcknowledge(f"{target}: no current drift to acknowledge "
                                           "(use --all to silence the whole workspace)")
            matchers["dedup_key"] = key
        if alert:
            matchers["alertname"] = alert
        ends = now + duration
        audit = AuditLog(Path(config.workspace) / "memory/audit/events.jsonl", actor)
        if am is None:
            record = audit.append("acknowledged", workspace=target, matchers=matchers, until=ev.iso(ends),
                                  comment=text, where="local")
            return AckResult(target, None, matchers, ends, actor, text, None, audit_error=record.get("audit_error"))
        silence_id = am.create_silence(matchers, created_by=actor, comment=text, ends_at=ends, starts_at=now)
        record_ack(Path(config.workspace), {"id": silence_id, "workspace": target, "dedup_key": key,
                                            "matchers": matchers, "created_by": actor, "ends_at": ends,
                                            "created_at": now})
        record = audit.append("acknowledged", workspace=target, matchers=matchers, until=ev.iso(ends), comment=text,
                              silence_id=silence_id, alertmanager=am.display)
        return AckResult(target, silence_id, matchers, ends, actor, text, am.display,
                         audit_error=record.get("audit_error"))
    finally:
        if owned and am is not None:
            am.close()


def expire(config: Config, actor: str, silence_id: str, *, alertmanager: str | Sequence[str] | None = None,
           client: AlertmanagerClient | None = None) -> AckResult:
    """``ack --expire ID``: end a silence now; audited. An id that is not a UUID, or that Alertmanager
    does not know, is an :class:`AckError` (never its raw answer); a silence already expired is
    reported as such (``already_expired``), not expired again nor audited again."""
    from polylog_console.core.infra.audit import AuditLog

    check_silence_id(silence_id)
    urls = alertmanager_urls(config, alertmanager)
    am = client or AlertmanagerClient(urls, http=alertmanager_http(config), timeout=config.fleet.timeout)
    try:
        found = am.silence(silence_id)
        if found is None:
            raise AckError(f"no silence {silence_id} on Alertmanager {am.display}")
        if found.state == "expired":  # Alertmanager accepts a second DELETE silently: say what it was
            eq = found.equals()
            return AckResult(eq.get("workspace", ""), silence_id, eq, found.ends_at or time.time(), found.created_by,
                             found.comment, am.display, expired=True, extra={"already_expired": True})
        am.expire_silence(silence_id)
    finally:
        if client is None:
            am.close()
    forget_acks(Path(config.workspace), [silence_id])
    record = AuditLog(Path(config.workspace) / "memory/audit/events.jsonl", actor).append(
        "acknowledgement_expired", silence_id=silence_id, alertmanager=am.display)
    eq = found.equals()
    return AckResult(eq.get("workspace", ""), silence_id, eq, time.time(), actor, found.comment, am.display,
                     expired=True, audit_error=record.get("audit_error"), extra={"already_expired": False})


# --- expiring when the incident resolves --------------------------------------------------------------

async def expire_for_drift(http: httpx.AsyncClient, urls: Sequence[str], root: Path | None, workspace: str,
                           dedup_key: str) -> list[str]:
    """Expire the acknowledgements of the drift ``dedup_key`` (it resolved): those recorded in
    ``memory/fleet/acks.json`` and those on Alertmanager matching ``workspace`` + ``dedup_key``.
    Returns the ids expired. Never raises for an unreachable member (the silence then simply runs
    out at its ``endsAt``)."""
    ids: list[str] = []
    recorded = [i for i in read_acks(root) if i.get("dedup_key") == dedup_key] if root is not None else []
    ids += [i["id"] for i in recorded]
    params: list[tuple[str, str | int | float | bool | None]] = [
        ("filter", matcher_filter("dedup_key", dedup_key)), ("filter", matcher_filter("workspace", workspace))]
    for url in urls:
        try:
            response = await http.get(url.rstrip("/") + "/api/v2/silences", params=params)
            found = response.json() if response.status_code == 200 else []
        except (httpx.HTTPError, ValueError):
            continue
        for item in found if isinstance(found, list) else []:
            silence = Silence.from_api(item)
            eq = silence.equals()
            if (silence.state in ("active", "pending") and eq.get("dedup_key") == dedup_key
                    and eq.get("workspace") == workspace and silence.id not in ids):
                ids.append(silence.id)
        break  # silences are shared by the cluster: the first member that answered has them all
    expired = []
    for silence_id in ids:
        for url in urls:
            try:
                response = await http.delete(url.rstrip("/") + f"/api/v2/silence/{silence_id}")
            except httpx.HTTPError:
                continue
            if response.status_code in (200, 404):  # 404: gone already; either way it no longer silences
                expired.append(silence_id)
            break  # the cluster shares it: one member's answer is the answer
    if root is not None and expired:
        forget_acks(root, expired)
    return expired
