"""Markdown for people (the escalation bundle, the post-incident report): untrusted text shown
literally and safely (fences longer than any backtick run inside, inline code spans, tables with
``|`` escaped), and secrets masked. Shared by :mod:`bundle` and :mod:`report`."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from polylog_console.core.infra.text import safe_text
from polylog_console.core.model.config import Config

SECRET_ENV = ("POLYLOG_WEBHOOK_SECRET", "POLYLOG_EMAIL_PASSWORD")
MIN_SECRET = 4  # shorter values are not masked (masking them would shred the text); see README

_BACKTICKS = re.compile(r"`+")


def _longest_backticks(text: str) -> int:
    return max((len(m) for m in _BACKTICKS.findall(text)), default=0)


def fence(lines: Iterable[str], info: str = "") -> str:
    """A fenced code block showing ``lines`` literally and safely (see the module docstring)."""
    body = "\n".join(safe_text(line) for line in lines)
    marker = "`" * max(3, _longest_backticks(body) + 1)
    return f"{marker}{info}\n{body}\n{marker}" if body else f"{marker}{info}\n{marker}"


def code(value: object, limit: int | None = 200, *, table: bool = False) -> str:
    """``value`` as an inline code span (literal, control characters escaped)."""
    if value is None or value == "":
        return "—"
    text = safe_text(value, limit)
    run = _longest_backticks(text)
    ticks = "`" * (run + 1)
    if run or text.startswith(" ") or text.endswith(" "):
        text = f" {text} "
    if table:
        text = text.replace("|", "\\|")
    return f"{ticks}{text}{ticks}"


def _table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    head = list(header)
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out.extend("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join(out)


def secret_values(config: Config, env: dict[str, str] | os._Environ[str] | None = None) -> list[str]:
    """Every secret value the console knows of, longest first (for masking)."""
    env = os.environ if env is None else env
    values: set[str] = set()
    for name in SECRET_ENV:
        if env.get(name):
            values.add(env[name])
    alerts = config.alerts
    if alerts.webhook is not None and alerts.webhook.secret is not None:
        values.add(alerts.webhook.secret.reveal())
    if alerts.email is not None and alerts.email.password is not None:
        values.add(alerts.email.password.reveal())
    return sorted((v for v in values if len(v) >= MIN_SECRET), key=len, reverse=True)


def mask_secrets(text: str, secrets: Iterable[str]) -> str:
    for value in secrets:
        if value in text:
            text = text.replace(value, "***")
    return text
