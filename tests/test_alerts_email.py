"""Email delivery to a real SMTP server (aiosmtpd on 127.0.0.1): plain + login, STARTTLS + login,
implicit TLS; refusals (550 not retried and audited, 451 retried); nothing lost."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json

import pytest

from polylog_console.core.alerts.delivery import Backoff
from polylog_console.core.alerts.dispatcher import AlertDispatcher
from polylog_console.core.alerts.email import EmailSink
from polylog_console.core.infra.audit import AuditLog
from polylog_console.core.model.config import DEFAULT_EMAIL_TO, Secret
from polylog_console.core.model.workspace import Workspace
from polylog_console.core.monitor.rules import Monitor
from polylog_console.core.registry.stored import StoredRegistry
from tests.servers import SmtpServer, checkpoint_line, free_port, records

FAST = Backoff(base=0.05, cap=0.2)
# the test server deliberately allows AUTH without TLS for the tls="none" cases
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
PASSWORD = "smtp-pass-never-logged"


def run_drift(small_ws, sink) -> tuple[Workspace, Monitor, AlertDispatcher, list]:
    ws = Workspace.open(small_ws.root)
    monitor = Monitor(StoredRegistry.for_workspace(ws), workspace=ws)
    events: list = []
    dispatcher = AlertDispatcher(ws.outbox, [sink], workspace=str(ws.root), runbook_url="https://rb.example/x",
                                 audit=AuditLog(ws.audit, "t@h"), emit=events.extend, resolve_hold=0.0, backoff=FAST)
    return ws, monitor, dispatcher, events


def drift(small_ws) -> list:
    inc = small_ws.incident
    label = "checkpoint-\x1b]52;c;ZXZpbA==\x07evil"  # an escape sequence from the feed must not reach a mail reader
    return records(checkpoint_line(1, inc.live_digest, registry_state=inc.live_state, label=label))


def parse(envelope) -> email.message.EmailMessage:
    return email.message_from_bytes(envelope.original_content, policy=email.policy.default)


async def test_plain_smtp_with_login_sends_the_summary_diff_and_runbook(small_ws, tmp_path):
    with SmtpServer(tmp_path, tls="none", users={"alerts": PASSWORD}) as server:
        sink = EmailSink("127.0.0.1", server.port, tls="none", username="alerts",
                         password=Secret(PASSWORD, "env"), sender="polylog@test.example", timeout=5)
        ws, monitor, dispatcher, events = run_drift(small_ws, sink)
        await dispatcher.start()
        dispatcher.submit(monitor.process(drift(small_ws)))
        (envelope,) = await server.until(1)
        assert await dispatcher.flush(5)
        await dispatcher.close()
    assert server.logins == ["alerts"]
    assert envelope.mail_from == "polylog@test.example"
    assert envelope.rcpt_tos == list(DEFAULT_EMAIL_TO) == ["ops@polylog.example"]
    msg = parse(envelope)
    assert msg["To"] == "ops@polylog.example"
    assert msg["Subject"].startswith("[polylog CRITICAL] registry_mismatch firing: checkpoint ")
    assert msg.get_content_type() == "text/plain"
    text = msg.get_content()
    assert "\x1b" not in text and "\x1b" not in msg["Subject"] and "\\x1b]52" in text
    assert small_ws.incident.stored_digest in text and small_ws.incident.live_digest in text
    assert "Diff (stored vs live): missing 3, unexpected 40, mismatched 9" in text
    assert "  missing    " in text and "  unexpected " in text and "  mismatched " in text
    assert "polylog-console rehydrate --workers auto" in text and "polylog-console validate" in text
    assert "Runbook: https://rb.example/x" in text
    assert [e.outcome for e in events] == ["delivered"]
    assert PASSWORD not in ws.audit.read_text()


async def test_starttls_with_login(small_ws, tmp_path):
    with SmtpServer(tmp_path, tls="starttls", users={"alerts": PASSWORD}) as server:
        sink = EmailSink("127.0.0.1", server.port, tls="starttls", username="alerts",
                         password=Secret(PASSWORD, "env"), to=("oncall@test.example",), timeout=5,
                         ssl_context=server.client_context())
        _, monitor, dispatcher, events = run_drift(small_ws, sink)
        await dispatcher.start()
        dispatcher.submit(monitor.process(drift(small_ws)))
        (envelope,) = await server.until(1)
        await dispatcher.close()
    assert server.logins == ["alerts"]
    assert envelope.rcpt_tos == ["oncall@test.example"]
    assert [e.outcome for e in events] == ["delivered"]


async def test_implicit_tls(small_ws, tmp_path):
    with SmtpServer(tmp_path, tls="ssl") as server:
        sink = EmailSink("127.0.0.1", server.port, tls="ssl", timeout=5, ssl_context=server.client_context())
        _, monitor, dispatcher, _events = run_drift(small_ws, sink)
        await dispatcher.start()
        dispatcher.submit(monitor.process(drift(small_ws)))
        (envelope,) = await server.until(1)
        await dispatcher.close()
    assert "registry_mismatch" in parse(envelope)["Subject"]


async def test_untrusted_certificate_is_a_permanent_failure_with_a_clear_reason(small_ws, tmp_path):
    with SmtpServer(tmp_path, tls="starttls") as server:
        sink = EmailSink("127.0.0.1", server.port, tls="starttls", timeout=5)  # system trust store only
        _ws, monitor, dispatcher, events = run_drift(small_ws, sink)
        await dispatcher.start()
        dispatcher.submit(monitor.process(drift(small_ws)))
        assert await dispatcher.flush(10)
        await dispatcher.close()
    assert server.messages == []
    assert [e.outcome for e in events] == ["failed"]
    assert "certificate not trusted" in events[0].error


async def test_wrong_password_is_not_retried_and_does_not_leak(small_ws, tmp_path):
    with SmtpServer(tmp_path, tls="none", users={"alerts": "right"}) as server:
        server.controller.SMTP_kwargs["auth_require_tls"] = False
        sink = EmailSink("127.0.0.1", server.port, tls="none", username="alerts",
                         password=Secret(PASSWORD, "env"), timeout=5)
        ws, monitor, dispatcher, events = run_drift(small_ws, sink)
        await dispatcher.start()
        dispatcher.submit(monitor.process(drift(small_ws)))
        assert await dispatcher.flush(10), events
        await dispatcher.close()
    assert [e.outcome for e in events] == ["failed"]
    assert "login refused: 535" in events[0].error
    for path in (ws.root / "memory").rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes()


async def test_550_refusal_is_not_retried_and_is_audited(small_ws, tmp_path):
    with SmtpServer(tmp_path, script=["550 5.7.1 message refused by policy"]) as server:
        sink = EmailSink("127.0.0.1", server.port, tls="none", timeout=5)
        ws, monitor, dispatcher, events = run_drift(small_ws, sink)
        await dispatcher.start()
        dispatcher.submit(monitor.process(drift(small_ws)))
        assert await dispatcher.flush(10)
        await dispatcher.close()
    assert server.attempts == ["550 5.7.1 message refused by policy"]
    assert [e.outcome for e in events] == ["failed"]
    failed = [json.loads(line) for line in ws.audit.read_text().splitlines()
              if json.loads(line)["event"] == "alert_failed"]
    assert failed[0]["sink"] == "email" and "550 5.7.1" in failed[0]["error"]
    assert len(list((ws.outbox / "failed").glob("email-*.json"))) == 1


async def test_451_temporary_refusal_is_retried_until_accepted(small_ws, tmp_path):
    script = ["451 4.3.0 mailbox busy, try later", "421 4.7.0 too many connections"]
    with SmtpServer(tmp_path, script=script) as server:
        sink = EmailSink("127.0.0.1", server.port, tls="none", timeout=5)
        ws, monitor, dispatcher, events = run_drift(small_ws, sink)
        await dispatcher.start()
        dispatcher.submit(monitor.process(drift(small_ws)))
        (_envelope,) = await server.until(1)
        assert await dispatcher.flush(10)
        await dispatcher.close()
    assert len(server.attempts) == 3 and server.attempts[-1].startswith("250")
    assert [e.outcome for e in events] == ["retry", "retry", "delivered"]
    assert "451 4.3.0" in events[0].error
    assert list((ws.outbox / "email").glob("*.json")) == []


async def test_smtp_server_down_then_up_delivers(small_ws, tmp_path):
    """Connection refused: retried; the server comes up on that port and gets the message."""
    port = free_port()
    sink = EmailSink("127.0.0.1", port, tls="none", timeout=2)
    _ws, monitor, dispatcher, events = run_drift(small_ws, sink)
    await dispatcher.start()
    dispatcher.submit(monitor.process(drift(small_ws)))
    for _ in range(200):
        if any(e.outcome == "retry" for e in events):
            break
        await asyncio.sleep(0.02)
    assert events and events[0].outcome == "retry"
    with SmtpServer(tmp_path, port=port) as server:
        await server.until(1)
        assert await dispatcher.flush(10)
        await dispatcher.close()
    assert events[-1].outcome == "delivered"
