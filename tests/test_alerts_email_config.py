"""Issue 10, item 14: an SMTP failure says what to do, in operator terms, in the audit record: a
refusal only a configuration change cures is a "configuration problem" naming the key and is not
retried (kept in ``failed/``); what may pass is retried and says which keys to check. Real
aiosmtpd servers on 127.0.0.1."""

from __future__ import annotations

import json

import pytest

from polylog_console.core.alerts.delivery import Backoff
from polylog_console.core.alerts.dispatcher import AlertDispatcher
from polylog_console.core.alerts.email import EmailSink
from polylog_console.core.infra.audit import AuditLog
from polylog_console.core.model.config import Secret
from polylog_console.core.model.workspace import Workspace
from polylog_console.core.monitor.rules import Monitor
from polylog_console.core.registry.stored import StoredRegistry
from tests.servers import SmtpServer, checkpoint_line, free_port, records

FAST = Backoff(base=0.05, cap=0.2)
PASSWORD = "smtp-pass-never-logged"
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")


async def deliver(small_ws, sink, *, until: str = "failed", timeout: float = 10.0):
    """Raise one drift alert through a real dispatcher; return (events, audit records, failed files)."""
    import asyncio

    ws = Workspace.open(small_ws.root)
    monitor = Monitor(StoredRegistry.for_workspace(ws), workspace=ws)
    events: list = []
    dispatcher = AlertDispatcher(ws.outbox, [sink], workspace=str(ws.root), runbook_url="https://rb.example/x",
                                 audit=AuditLog(ws.audit, "t@h"), emit=events.extend, resolve_hold=0.0, backoff=FAST)
    await dispatcher.start()
    inc = small_ws.incident
    dispatcher.submit(monitor.process(records(checkpoint_line(1, inc.live_digest))))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not any(getattr(e, "outcome", None) == until for e in events) and loop.time() < deadline:
        await asyncio.sleep(0.02)
    await dispatcher.close(grace=0.0)
    audit = [json.loads(line) for line in ws.audit.read_text().splitlines()]
    failed = sorted((ws.outbox / "failed").glob("*.json"))
    return [e for e in events if getattr(e, "event", None) == "delivery"], audit, failed


def failure(audit: list[dict], name: str = "alert_failed") -> dict:
    found = [r for r in audit if r["event"] == name]
    assert found, [r["event"] for r in audit]
    return found[0]


async def test_auth_not_offered_is_a_configuration_problem_naming_the_keys(small_ws, tmp_path):
    with SmtpServer(tmp_path, tls="none") as server:  # no authenticator: the server offers no AUTH
        sink = EmailSink("127.0.0.1", server.port, tls="none", username="alerts",
                         password=Secret(PASSWORD, "env"), timeout=5)
        events, audit, failed = await deliver(small_ws, sink)
    assert [e.outcome for e in events] == ["failed"]  # not retried: only a configuration change helps
    record = failure(audit)
    assert record["problem"] == "configuration"
    error = record["error"]
    assert "configuration problem" in error and "email.username" in error and "email.tls" in error
    assert "offers no AUTH" in error and "\n" not in error
    assert len(failed) == 1 and json.loads(failed[0].read_bytes())["last_error"] == error
    assert PASSWORD not in json.dumps(audit)


async def test_starttls_not_offered_names_email_tls(small_ws, tmp_path):
    with SmtpServer(tmp_path, tls="none") as server:
        sink = EmailSink("127.0.0.1", server.port, tls="starttls", timeout=5)
        events, audit, _ = await deliver(small_ws, sink)
    error = failure(audit)["error"]
    assert [e.outcome for e in events] == ["failed"]
    assert "configuration problem" in error and 'email.tls is "starttls"' in error and "STARTTLS" in error


async def test_refused_login_names_the_username_and_where_the_password_comes_from(small_ws, tmp_path):
    with SmtpServer(tmp_path, tls="none", users={"alerts": PASSWORD}) as server:
        server.controller.SMTP_kwargs["auth_require_tls"] = False
        sink = EmailSink("127.0.0.1", server.port, tls="none", username="alerts",
                         password=Secret("wrong-password", "env"), timeout=5)
        events, audit, _ = await deliver(small_ws, sink)
    record = failure(audit)
    assert [e.outcome for e in events] == ["failed"] and record["problem"] == "configuration"
    assert "email.username" in record["error"] and "POLYLOG_EMAIL_PASSWORD or email.password_file" in record["error"]
    assert "wrong-password" not in json.dumps(audit)


async def test_a_login_the_server_requires_but_is_not_configured(small_ws, tmp_path):
    with SmtpServer(tmp_path, tls="none", users={"alerts": PASSWORD}) as server:
        server.controller.SMTP_kwargs["auth_require_tls"] = False
        sink = EmailSink("127.0.0.1", server.port, tls="none", timeout=5)  # no username
        _, audit, _ = await deliver(small_ws, sink)
    record = failure(audit)
    assert record["problem"] == "configuration" and "requires a login" in record["error"]
    assert "email.username" in record["error"]


async def test_nothing_listening_is_retried_and_says_which_keys_to_check(small_ws):
    sink = EmailSink("127.0.0.1", free_port(), tls="none", timeout=2)
    events, audit, failed = await deliver(small_ws, sink, until="retry")
    assert events[0].outcome == "retry" and failed == []
    error = failure(audit, "alert_retry")["error"]
    assert "connection refused" in error and "email.host and email.port" in error and "retried" in error


async def test_implicit_tls_against_a_plain_server_names_tls_and_port(small_ws, tmp_path):
    with SmtpServer(tmp_path, tls="none") as server:
        sink = EmailSink("127.0.0.1", server.port, tls="ssl", timeout=3)
        _, audit, _ = await deliver(small_ws, sink, until="retry")
    error = failure(audit, "alert_retry")["error"]
    assert "TLS handshake failed" in error and "email.tls" in error and "465" in error
