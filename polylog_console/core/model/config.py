"""Configuration (SPEC §10): ``monitoring.toml`` plus ``POLYLOG_<SECTION>_<KEY>`` overrides.

Every key is optional. An unknown key or a value of the wrong type is a :class:`ConfigError`
whose message is one line naming the key and where it came from. Secrets are never read from
the file: the webhook secret comes from ``POLYLOG_WEBHOOK_SECRET`` or ``webhook.secret_file``, the
SMTP password from ``POLYLOG_EMAIL_PASSWORD`` or ``email.password_file``; they are held in
:class:`Secret`, whose ``repr``/``str`` never show the value.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from polylog_console.core.infra import reader
from polylog_console.core.infra.text import type_name
from polylog_console.core.model import workspace as layout
from polylog_console.core.model.errors import ConfigError

DEFAULT_RUNBOOK_URL = "https://polylog.example/runbooks/registry-drift"
DEFAULT_EMAIL_TO = ("ops@polylog.example",)


class Secret:
    """A secret value that never prints."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str) -> None:
        self._value = value
        self.source = source

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(from {self.source})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

YEAR = 365 * 86400.0
DURATION_MAX = 10 * YEAR  # no duration anywhere is longer (finite, and far inside datetime's range)
INT_MAX = 2**53  # no integer anywhere is larger (exact as a JSON number everywhere)

# Ranges of every number and duration (inclusive), checked for the file, the environment and
# every [[replicas]] table alike. Maxima are generous: a stale_after of weeks or a year is a real
# setting. README "Reliability" lists them.
RANGES: dict[str, tuple[float, float]] = {
    "feed.poll_interval": (0.01, 3600.0),      # below 10 ms polling is a busy loop
    "feed.history": (1, 100_000),              # checkpoints kept in view (memory is bounded by it)
    "monitor.stale_after": (1.0, DURATION_MAX),
    "monitor.escalate_after": (1, 1_000_000),
    "monitor.flap_threshold": (0, 1_000_000),  # 0: flap detection off
    "monitor.flap_window": (2, 1_000_000_000),
    "monitor.flap_settle": (1, 10_000),  # (a folded run of checkpoints keeps this many whole)
    "alerts.repeat_interval": (1.0, DURATION_MAX),
    "webhook.timeout": (0.1, 600.0),
    "email.port": (1, 65535),
    "email.timeout": (0.1, 600.0),
    "alertmanager.timeout": (0.1, 600.0),
    "fleet.timeout": (0.1, 600.0),
    "fleet.refresh": (0.1, 86400.0),
    "replicas.timeout": (0.05, 3600.0),
    "replicas.retries": (0, 10),
    "audit.max_bytes": (64 * 1024, 1 << 40),   # the audit log rotates past this size (64 KiB .. 1 TiB)
    "audit.keep": (1, 100),                    # rotated audit files kept
    "retention.escalations_keep": (1, 100_000),
    "retention.escalations_max_age": (3600.0, DURATION_MAX),
    "retention.reports_keep": (1, 100_000),
    "retention.reports_max_age": (3600.0, DURATION_MAX),
    "retention.failed_keep": (1, 100_000),
    "retention.failed_max_age": (3600.0, DURATION_MAX),
}


def format_seconds(seconds: float) -> str:
    """``250 ms``, ``90 s``, ``10 min``, ``3 h``, ``3650 days`` (for range messages)."""
    if seconds < 1:
        return f"{seconds * 1000:g} ms"
    for unit, size in (("days", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def _show(value: Any, limit: int = 40) -> str:
    """``value`` for a message: its repr (str for numbers), cut to ``limit`` characters."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of {len(str(abs(value)))} digits"
    text = str(value) if isinstance(value, int | float) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_range(key: str, value: Any) -> Any:
    """``value`` if it lies in ``RANGES[key]`` (``section.key``, ``replicas.key``), else ValueError."""
    bounds = RANGES.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if bounds is None:  # a key without its own range: finite and no larger than any sane setting
        if isinstance(value, int) and value > INT_MAX:
            raise ValueError(f"must be at most {INT_MAX}, got {_show(value)}")
        return value
    low, high = bounds
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"must be finite, got {value}")
    if low <= value <= high:
        return value
    if isinstance(low, int) and isinstance(high, int):
        raise ValueError(f"must be between {low} and {high}, got {_show(value)}")
    raise ValueError(f"must be between {format_seconds(low)} and {format_seconds(high)}, got {value:g} s")


def convert(table: Mapping[str, Callable[[Any, bool], Any]], section: str, key: str, value: Any,
            from_env: bool) -> Any:
    """``table[key]``'s conversion of ``value``, then its range (ValueError with the reason)."""
    return check_range(f"{section}.{key}", table[key](value, from_env))


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string like ``"90s"``, ``"5m"``, ``"1h30m"``, ``"250ms"``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got {type_name(value)}")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"must be a finite duration, got {value}")
        if value < 0:
            raise ValueError("a duration cannot be negative")
        if value > DURATION_MAX:
            raise ValueError(f"must be at most {format_seconds(DURATION_MAX)}, got {value:g} s")
        return float(value)
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        try:
            seconds = float(text)
        except ValueError:
            pos = 0
            seconds = 0.0
            for match in _DURATION.finditer(text):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _UNITS[match.group(2)]
                pos = match.end()
            if pos != len(text) or not text:
                raise ValueError(f'expected a duration like "90s", "5m" or "1h", got "{value[:40]}"') from None
        if not math.isfinite(seconds):
            raise ValueError(f'must be a finite duration, got "{value[:40]}"')
        if seconds < 0:
            raise ValueError("a duration cannot be negative")
        if seconds > DURATION_MAX:
            raise ValueError(f'must be at most {format_seconds(DURATION_MAX)}, got "{value[:40]}"')
        return seconds
    raise ValueError(f"expected a duration, got {type_name(value)}")


# --- value converters: (value, from_env) -> converted, raising ValueError with a reason -----------

def _str(value: Any, from_env: bool) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type_name(value)}")
    return value


def _bool(value: Any, from_env: bool) -> bool:
    if isinstance(value, bool):
        return value
    if from_env and isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off", ""}:
            return False
    raise ValueError(f"expected true or false, got {type_name(value)} {_show(value)}")


def _int(minimum: int) -> Callable[[Any, bool], int]:
    def convert(value: Any, from_env: bool) -> int:
        if from_env and isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise ValueError(f"expected an integer, got {_show(value)}") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {type_name(value)}")
        if value < minimum:
            raise ValueError(f"must be at least {minimum}, got {_show(value)}")
        return value

    return convert


def _duration(value: Any, from_env: bool) -> float:
    return parse_duration(value)


def _choice(*choices: str) -> Callable[[Any, bool], str]:
    def convert(value: Any, from_env: bool) -> str:
        if not isinstance(value, str) or value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {_show(value)}")
        return value

    return convert


def _str_list(value: Any, from_env: bool) -> tuple[str, ...]:
    if from_env and isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a string or a list of strings, got {type_name(value)}")
    return tuple(value)


def url_problem(url: str) -> str | None:
    """What is wrong with ``url`` as an ``http://`` / ``https://`` URL (scheme, host, a port in
    1-65535, no white space), or None. The one URL rule: every URL key of the configuration and
    :func:`polylog_console.core.fleet.http.check_url` (``--prometheus``) use it."""
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError for a port that is not a number or beyond 65535
    except ValueError:
        return "not a valid URL (bad host or port; ports are 1-65535)"
    if parts.scheme.lower() not in ("http", "https"):
        return "expected an http:// or https:// URL"
    if not parts.hostname:
        return "the URL has no host"
    if port is not None and not 1 <= port <= 65535:
        return f"port {port} out of range (1-65535)"
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        return "the URL contains white space or control characters"
    return None


def _url(value: Any, from_env: bool) -> str:
    text = _str(value, from_env)
    problem = url_problem(text)
    if problem is not None:
        shown = re.sub(r"//[^/@]*@", "//", text)  # never a password in the message
        raise ValueError(f"{problem}, got {_show(shown, 80)}")
    return text


def _name(value: Any, from_env: bool) -> str:
    """A name shown to people and used as a label (fleet.name): not empty, no control characters."""
    text = _str(value, from_env)
    if not text.strip():
        raise ValueError("must not be empty")
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in text):
        raise ValueError("must not contain control characters")
    return text


def _header(value: Any, from_env: bool) -> str:
    """A mail header value (email.from): no CR, LF or other control character (header injection)."""
    text = _str(value, from_env)
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise ValueError("must not contain CR, LF or other control characters")
    if not text.strip():
        raise ValueError("must not be empty")
    return text


def _header_list(value: Any, from_env: bool) -> tuple[str, ...]:
    """email.to: one address or a list of them, each a valid header value."""
    return tuple(_header(item, from_env) for item in _str_list(value, from_env))


def _url_list(value: Any, from_env: bool) -> tuple[str, ...]:
    """One URL or a list of them (every member of an Alertmanager cluster); env: comma-separated."""
    urls = _str_list(value, from_env)
    if not urls:
        raise ValueError("expected at least one URL")
    return tuple(_url(url, from_env) for url in urls)


# TLS and HTTP authentication for Prometheus / Alertmanager (the secrets come from the environment
# or a *_file, never from the file itself).
HTTP_AUTH_KEYS: dict[str, Callable[[Any, bool], Any]] = {
    "ca_file": _str, "username": _str, "password_file": _str, "bearer_token_file": _str,
}


SCHEMA: dict[str, dict[str, Callable[[Any, bool], Any]]] = {
    "feed": {"path": _str, "poll": _bool, "poll_interval": _duration, "history": _int(1)},
    "digest": {"scheme": _choice("engine", "canonical")},
    "monitor": {"stale_after": _duration, "escalate_after": _int(1), "flap_threshold": _int(0),
                "flap_window": _int(2), "flap_settle": _int(1)},
    "refresh": {"enabled": _bool},
    "alerts": {"repeat_interval": _duration, "runbook_url": _str},
    "webhook": {"url": _url, "secret_file": _str, "timeout": _duration},
    "email": {"host": _str, "port": _int(1), "tls": _choice("starttls", "ssl", "none"), "username": _str,
              "password_file": _str, "from": _header, "to": _header_list, "timeout": _duration},
    "alertmanager": {"url": _url_list, "timeout": _duration, **HTTP_AUTH_KEYS},
    "fleet": {"name": _name, "prometheus_url": _url, "alertmanager_url": _url_list, "timeout": _duration,
              "refresh": _duration, **HTTP_AUTH_KEYS},
    "ui": {"theme": _str, "read_only": _bool, "keys": lambda v, e: v},
    "audit": {"max_bytes": _int(1), "keep": _int(1)},
    "retention": {"escalations_keep": _int(1), "escalations_max_age": _duration, "reports_keep": _int(1),
                  "reports_max_age": _duration, "failed_keep": _int(1), "failed_max_age": _duration},
}
REPLICA_KEYS: dict[str, Callable[[Any, bool], Any]] = {
    "name": _str, "url": _url, "path": _str, "timeout": _duration, "retries": _int(0),
}
SECRET_HINTS = {
    ("webhook", "secret"): "POLYLOG_WEBHOOK_SECRET or webhook.secret_file",
    ("email", "password"): "POLYLOG_EMAIL_PASSWORD or email.password_file",
    ("alertmanager", "password"): "POLYLOG_ALERTMANAGER_PASSWORD or alertmanager.password_file",
    ("alertmanager", "bearer_token"): "POLYLOG_ALERTMANAGER_BEARER_TOKEN or alertmanager.bearer_token_file",
    ("fleet", "password"): "POLYLOG_FLEET_PASSWORD or fleet.password_file",
    ("fleet", "bearer_token"): "POLYLOG_FLEET_BEARER_TOKEN or fleet.bearer_token_file",
}


@dataclass(frozen=True)
class FeedConfig:
    path: Path
    poll: bool = False
    poll_interval: float = 0.25
    history: int = 500


@dataclass(frozen=True)
class MonitorConfig:
    scheme: str = "engine"
    stale_after: float = 3600.0
    escalate_after: int = 3
    refresh_enabled: bool = False
    # Flapping (see core/monitor/rules.py): when flap_threshold incidents open within flap_window
    # checkpoints, the last of them is a flapping incident, held open until flap_settle consecutive
    # checkpoints agree (parity: it resolves; drift: an ordinary incident again). 0 turns it off.
    flap_threshold: int = 20
    flap_window: int = 200
    flap_settle: int = 10


@dataclass(frozen=True)
class WebhookConfig:
    url: str
    secret: Secret | None = None
    timeout: float = 5.0


@dataclass(frozen=True)
class EmailConfig:
    host: str
    port: int = 587
    tls: str = "starttls"
    username: str | None = None
    password: Secret | None = None
    sender: str = "polylog-console@localhost"
    to: tuple[str, ...] = DEFAULT_EMAIL_TO
    timeout: float = 10.0


@dataclass(frozen=True)
class HttpClientConfig:
    """TLS trust and authentication for an HTTP API (Prometheus, Alertmanager)."""

    ca_file: Path | None = None
    username: str | None = None
    password: Secret | None = None
    bearer_token: Secret | None = None


@dataclass(frozen=True)
class AlertmanagerConfig:
    urls: tuple[str, ...]
    timeout: float = 5.0
    http: HttpClientConfig = HttpClientConfig()

    @property
    def url(self) -> str:
        """The first member (messages; a single-node setup)."""
        return self.urls[0]


@dataclass(frozen=True)
class FleetConfig:
    """``[fleet]`` (SPEC §12): this workspace's name in fleet views, and where the fleet console
    finds Prometheus and Alertmanager. ``name`` None: ``<hostname>:<workspace path>``."""

    name: str | None = None
    prometheus_url: str | None = None
    alertmanager_urls: tuple[str, ...] = ()
    timeout: float = 5.0
    refresh: float | None = None  # None: the scrape interval Prometheus reports
    http: HttpClientConfig = HttpClientConfig()


@dataclass(frozen=True)
class AlertsConfig:
    repeat_interval: float = 4 * 3600.0
    runbook_url: str = DEFAULT_RUNBOOK_URL
    webhook: WebhookConfig | None = None
    email: EmailConfig | None = None
    alertmanager: AlertmanagerConfig | None = None


@dataclass(frozen=True)
class ReplicaConfig:
    name: str
    url: str | None = None
    path: Path | None = None
    timeout: float = 5.0
    retries: int = 2


@dataclass(frozen=True)
class UIConfig:
    theme: str = "dark"
    read_only: bool = False
    keys: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditConfig:
    """``[audit]``: ``memory/audit/events.jsonl`` rotates when a record would take it past
    ``max_bytes``; ``keep`` rotated files (``events.jsonl.1`` .. ``.keep``) are kept."""

    max_bytes: int = 16 * 1024 * 1024
    keep: int = 5


@dataclass(frozen=True)
class RetentionConfig:
    """``[retention]``: how many files (and for how long) ``memory/escalations``, ``memory/reports``
    and ``memory/outbox/failed`` keep; the newest file of each is never deleted."""

    escalations_keep: int = 200
    escalations_max_age: float = 180 * 86400.0
    reports_keep: int = 200
    reports_max_age: float = 365 * 86400.0
    failed_keep: int = 1000
    failed_max_age: float = 30 * 86400.0


@dataclass(frozen=True)
class Config:
    workspace: Path
    source: str  # where it came from, for messages ("monitoring.toml", "defaults")
    feed: FeedConfig
    monitor: MonitorConfig = MonitorConfig()
    alerts: AlertsConfig = AlertsConfig()
    replicas: tuple[ReplicaConfig, ...] = ()
    ui: UIConfig = UIConfig()
    fleet: FleetConfig = FleetConfig()
    audit: AuditConfig = AuditConfig()
    retention: RetentionConfig = RetentionConfig()

    @property
    def scheme(self) -> str:
        return self.monitor.scheme


def _fail(where: str, key: str, reason: str) -> ConfigError:
    return ConfigError(f"{where}: {key}: {reason}")


def _read_toml(path: Path, label: str) -> dict[str, Any]:
    try:  # the bounded reader: a regular file of at most 1 MB, never blocking (a FIFO is refused)
        raw = reader.read_bytes(path, reader.LIMITS["config"], label=label, what="configuration")
    except reader.UnreadableFile as exc:
        raise ConfigError(f"{label}: no such file" if exc.missing else str(exc)) from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{label}: not valid UTF-8 at byte {exc.start}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{label}: invalid TOML: {exc}") from None
    except ValueError as exc:  # tomllib's int() of a number of more than 4300 digits
        raise ConfigError(f"{label}: invalid TOML: {str(exc).split(';')[0]}") from None


def _read_secret_file(root: Path, name: str, where: str, key: str) -> Secret:
    path = Path(name).expanduser()
    if not path.is_absolute():
        path = root / path
    try:  # bounded (64 KB), regular files only, never blocking
        value = reader.read_bytes(path, reader.LIMITS["secret"], what="secret file").decode("utf-8").strip()
    except reader.UnreadableFile as exc:
        raise _fail(where, key, f"cannot read {path}: {'no such file' if exc.missing else exc.reason}") from None
    except UnicodeDecodeError:
        raise _fail(where, key, f"{path} is not UTF-8 text") from None
    if not value:
        raise _fail(where, key, f"{path} is empty")
    return Secret(value, str(path))


def _env_secret(env: Mapping[str, str], name: str) -> Secret | None:
    """The secret in environment variable ``name`` (None when unset or empty). os.environ hands
    bytes that are not UTF-8 over as lone surrogates (surrogateescape): such a secret could never be
    sent (every delivery would fail with UnicodeEncodeError and be retried forever), so it is
    refused here, naming the variable and never its value."""
    value = env.get(name)
    if not value:
        return None
    _check_env_text(name, value)
    return Secret(value, name)


def _check_env_text(name: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"environment: {name} is not UTF-8 text") from None


def load_config(
    root: Path,
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Load ``monitoring.toml`` (or ``config_file``) and apply environment overrides."""
    env = os.environ if env is None else env
    root = Path(root)
    if config_file is not None:
        path = Path(config_file)
        label = str(config_file)
        data = _read_toml(path if path.is_absolute() else Path.cwd() / path, label)
    else:
        path = root / layout.CONFIG
        label = layout.CONFIG
        data = _read_toml(path, label) if path.exists() else {}
        if not path.exists():
            label = "defaults"

    values: dict[str, dict[str, Any]] = {section: {} for section in SCHEMA}
    replicas_raw: list[Any] = []
    for section, body in data.items():
        if section == "replicas":
            if not isinstance(body, list):
                raise _fail(label, "replicas", "expected an array of tables ([[replicas]])")
            replicas_raw = body
            continue
        if section not in SCHEMA:
            known = ", ".join([*SCHEMA, "replicas"])
            raise ConfigError(f'{label}: unknown section "{section}" (known: {known})')
        if not isinstance(body, dict):
            raise _fail(label, section, f"expected a table, got {type_name(body)}")
        for key, value in body.items():
            if (section, key) in SECRET_HINTS:
                raise _fail(label, f"{section}.{key}",
                            f"secrets are not read from the file; use {SECRET_HINTS[(section, key)]}")
            if key not in SCHEMA[section]:
                known = ", ".join(SCHEMA[section])
                raise ConfigError(f'{label}: unknown key "{section}.{key}" (known: {known})')
            try:
                values[section][key] = convert(SCHEMA[section], section, key, value, False)
            except ValueError as exc:
                raise _fail(label, f"{section}.{key}", str(exc)) from None

    # Environment overrides: POLYLOG_<SECTION>_<KEY>
    for name, raw in env.items():
        if not name.startswith("POLYLOG_"):
            continue
        rest = name[len("POLYLOG_"):].lower()
        matched = next((s for s in SCHEMA if rest.startswith(s + "_")), None)
        if matched is None:
            continue
        section = matched
        key = rest[len(section) + 1:]
        _check_env_text(name, raw)  # never its value in the message: it may be a secret
        if (section, key) in SECRET_HINTS:
            continue  # the secret itself, read below
        if key not in SCHEMA[section] or key == "keys":
            known = ", ".join(f"POLYLOG_{section.upper()}_{k.upper()}" for k in SCHEMA[section] if k != "keys")
            raise ConfigError(f"environment: unknown variable {name} (known for [{section}]: {known})")
        try:
            values[section][key] = convert(SCHEMA[section], section, key, raw, True)
        except ValueError as exc:
            raise ConfigError(f"environment: {name}: {exc}") from None

    feed = values["feed"]
    feed_path = Path(feed.get("path", layout.FEED)).expanduser()
    if not feed_path.is_absolute():
        feed_path = root / feed_path
    mon = values["monitor"]
    monitor = MonitorConfig(
        scheme=values["digest"].get("scheme", "engine"),
        stale_after=mon.get("stale_after", 3600.0),
        escalate_after=mon.get("escalate_after", 3),
        flap_threshold=mon.get("flap_threshold", 20),
        flap_window=mon.get("flap_window", 200),
        flap_settle=mon.get("flap_settle", 10),
        refresh_enabled=values["refresh"].get("enabled", False),
    )

    webhook = None
    wh = values["webhook"]
    secret = None
    secret = _env_secret(env, "POLYLOG_WEBHOOK_SECRET")
    if secret is None and "secret_file" in wh:
        secret = _read_secret_file(root, wh["secret_file"], label, "webhook.secret_file")
    if "url" in wh:
        webhook = WebhookConfig(wh["url"], secret, wh.get("timeout", 5.0))
    elif "secret_file" in wh or "timeout" in wh:
        raise _fail(label, "webhook.url", "required when [webhook] is configured")

    email = None
    em = values["email"]
    if em:
        if "host" not in em:
            raise _fail(label, "email.host", "required when [email] is configured")
        password = _env_secret(env, "POLYLOG_EMAIL_PASSWORD")
        if password is None and "password_file" in em:
            password = _read_secret_file(root, em["password_file"], label, "email.password_file")
        tls = em.get("tls", "starttls")
        email = EmailConfig(
            host=em["host"],
            port=em.get("port", 465 if tls == "ssl" else 587 if tls == "starttls" else 25),
            tls=tls,
            username=em.get("username"),
            password=password,
            sender=em.get("from", f"polylog-console@{os.uname().nodename}"),
            to=em.get("to", DEFAULT_EMAIL_TO),
            timeout=em.get("timeout", 10.0),
        )

    am = values["alertmanager"]
    am_http = _http_client(root, am, env, label, "alertmanager")
    alertmanager = AlertmanagerConfig(am["url"], am.get("timeout", 5.0), am_http) if "url" in am else None
    fl = values["fleet"]
    fl_http = _http_client(root, fl, env, label, "fleet")
    fleet = FleetConfig(fl.get("name"), fl.get("prometheus_url"), fl.get("alertmanager_url", ()),
                        fl.get("timeout", 5.0), fl.get("refresh"), fl_http)
    al = values["alerts"]
    alerts = AlertsConfig(
        repeat_interval=al.get("repeat_interval", 4 * 3600.0),
        runbook_url=al.get("runbook_url", DEFAULT_RUNBOOK_URL),
        webhook=webhook,
        email=email,
        alertmanager=alertmanager,
    )

    replicas = []
    seen: set[str] = set()
    for index, item in enumerate(replicas_raw):
        where = f"replicas[{index}]"
        if not isinstance(item, dict):
            raise _fail(label, where, f"expected a table, got {type_name(item)}")
        converted: dict[str, Any] = {}
        for key, value in item.items():
            if key not in REPLICA_KEYS:
                raise ConfigError(f'{label}: unknown key "{where}.{key}" (known: {", ".join(REPLICA_KEYS)})')
            try:
                converted[key] = convert(REPLICA_KEYS, "replicas", key, value, False)
            except ValueError as exc:
                raise _fail(label, f"{where}.{key}", str(exc)) from None
        name = converted.get("name") or ""
        if not name:
            raise _fail(label, f"{where}.name", "required")
        if name in seen:
            raise _fail(label, f"{where}.name", f'duplicate replica name "{name}"')
        seen.add(name)
        if ("url" in converted) == ("path" in converted):
            raise _fail(label, where, "needs exactly one of url or path")
        replica_path = None
        if "path" in converted:
            replica_path = Path(converted["path"]).expanduser()
            if not replica_path.is_absolute():
                replica_path = root / replica_path
        replicas.append(ReplicaConfig(name, converted.get("url"), replica_path,
                                      converted.get("timeout", 5.0), converted.get("retries", 2)))

    ui = values["ui"]
    keys = ui.get("keys", {})
    if not isinstance(keys, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in keys.items()):
        raise _fail(label, "ui.keys", "expected a table of action = \"key\" strings")

    return Config(
        workspace=root,
        source=label,
        feed=FeedConfig(feed_path, feed.get("poll", False), feed.get("poll_interval", 0.25), feed.get("history", 500)),
        monitor=monitor,
        alerts=alerts,
        replicas=tuple(replicas),
        ui=UIConfig(ui.get("theme", "dark"), ui.get("read_only", False), dict(keys)),
        fleet=fleet,
        audit=AuditConfig(**values["audit"]),
        retention=RetentionConfig(**values["retention"]),
    )


def _http_client(root: Path, values: Mapping[str, Any], env: Mapping[str, str], label: str,
                 section: str) -> HttpClientConfig:
    """TLS/auth of ``[section]``: the password / bearer token from ``POLYLOG_<SECTION>_PASSWORD`` /
    ``POLYLOG_<SECTION>_BEARER_TOKEN`` or the ``*_file`` keys."""
    prefix = f"POLYLOG_{section.upper()}_"
    secrets: dict[str, Secret | None] = {}
    for key in ("password", "bearer_token"):
        name = prefix + key.upper()
        secrets[key] = _env_secret(env, name)
        if secrets[key] is not None:
            pass
        elif f"{key}_file" in values:
            secrets[key] = _read_secret_file(root, values[f"{key}_file"], label, f"{section}.{key}_file")
        else:
            secrets[key] = None
    if secrets["password"] is not None and not values.get("username"):
        raise _fail(label, f"{section}.username", "required with a password (basic auth)")
    if secrets["password"] is not None and secrets["bearer_token"] is not None:
        raise _fail(label, section, "basic auth (password) and a bearer token exclude each other")
    ca = values.get("ca_file")
    ca_path = None
    if ca:
        ca_path = Path(ca).expanduser()
        if not ca_path.is_absolute():
            ca_path = root / ca_path
        if not ca_path.is_file():
            raise _fail(label, f"{section}.ca_file", f"{ca_path}: no such file")
    return HttpClientConfig(ca_path, values.get("username"), secrets["password"], secrets["bearer_token"])
