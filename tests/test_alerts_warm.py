"""Issue 10, item 12: the sinks are warm before the first alert (the figure is in
tests/bench/bench_first_alert.py). A real receiver on 127.0.0.1; nothing is sent by the warm-up."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

from polylog_console.core.alerts.dispatcher import AlertDispatcher
from polylog_console.core.alerts.email import EmailSink
from polylog_console.core.alerts.webhook import WebhookSink
from polylog_console.core.model.workspace import Workspace
from polylog_console.core.monitor.rules import Monitor
from polylog_console.core.registry.stored import StoredRegistry
from tests.servers import Receiver, checkpoint_line, records

REPO = Path(__file__).resolve().parents[1]


async def test_the_webhook_client_is_built_before_the_first_alert_and_reused(small_ws):
    with Receiver() as receiver:
        ws = Workspace.open(small_ws.root)
        sink = WebhookSink(receiver.url, timeout=5)
        dispatcher = AlertDispatcher(ws.outbox, [sink], workspace=str(ws.root), runbook_url="u", resolve_hold=0.0)
        assert sink._warming is not None  # started with the dispatcher, before its start()
        await dispatcher.start()
        client = sink._client
        assert client is not None and receiver.requests == []  # warm, and nothing sent to warm it
        monitor = Monitor(StoredRegistry.for_workspace(ws), workspace=ws)
        dispatcher.submit(monitor.process(records(checkpoint_line(1, small_ws.incident.live_digest))))
        await receiver.until(1)
        assert sink._client is client  # the first send used the warm client, no second one
        await dispatcher.close()


WARM = textwrap.dedent("""
    import asyncio, sys
    from polylog_console.core.alerts.webhook import WebhookSink
    async def main():
        sink = WebhookSink("http://127.0.0.1:9/hook")
        await sink.warm()
        print("anyio._backends._asyncio" in sys.modules, sink._client is not None)
        await sink.aclose()
    asyncio.run(main())
""")


def test_warm_up_loads_what_the_first_request_would_load():
    """In a fresh process: after warm(), httpx's lazily imported transport backend is loaded."""
    done = subprocess.run([sys.executable, "-c", WARM], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True"]


async def test_the_email_trust_store_is_loaded_once_ahead_of_the_first_send():
    sink = EmailSink("127.0.0.1", 9, tls="starttls")
    sink.prewarm()
    context = await asyncio.get_running_loop().run_in_executor(sink._pool, sink._context)
    assert sink._default_context is context and sink._context() is context
    await sink.aclose()
