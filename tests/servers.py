"""Real servers for the alert tests and benchmarks, all on 127.0.0.1 and free ports.

* :class:`Receiver`: an HTTP server (thread) that records every request (headers, exact body
  bytes, parsed JSON, arrival time), verifies the ``X-Polylog-Signature`` HMAC when given the
  secret, and answers from a script: status codes, ``"hang"`` (holds the connection open until
  released or closed), then 200.
* :class:`SmtpServer`: aiosmtpd's ``Controller`` with a recording handler, optional STARTTLS or
  implicit TLS (self-signed certificate made with ``openssl``), optional AUTH, and scripted
  replies to DATA (e.g. ``"451 4.3.0 try later"``, ``"550 5.7.1 refused"``).
* :class:`Alertmanager`: the real ``prometheus-alertmanager`` binary on a free port with a minimal
  configuration and its own storage directory. :func:`alertmanager_binary` fails the test (not
  skips) when ``CI=true`` and the binary is missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from polylog_console.core.alerts.payload import SIGNATURE_HEADER, verify_signature


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until true (test helper for real servers; bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


# --- HTTP receiver ------------------------------------------------------------------------------

@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received: float  # time.perf_counter() at arrival
    answered: int | str = 200
    signature_ok: bool | None = None

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Records POSTs and answers from ``script`` (consumed in order), then ``default``."""

    secret: str | None = None
    script: list[int | str] = field(default_factory=list)
    default: int = 200
    hang_for: float = 30.0
    port: int = 0  # 0: any free port
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Condition()
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                arrived = time.perf_counter()
                with receiver._lock:
                    answer: int | str = receiver.script.pop(0) if receiver.script else receiver.default
                req = Request("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body, arrived,
                              answer)
                if receiver.secret is not None:
                    header = req.headers.get(SIGNATURE_HEADER.lower())
                    req.signature_ok = verify_signature(body, receiver.secret, header)
                with receiver._lock:
                    receiver.requests.append(req)
                    receiver._lock.notify_all()
                if answer == "hang":
                    receiver._release.wait(receiver.hang_for)
                    self.close_connection = True
                    return
                status = int(answer)
                payload = b'{"ok": true}' if status < 300 else b'{"error": "scripted"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def accepted(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if isinstance(r.answered, int) and 200 <= r.answered < 300]

    def wait_for(self, count: int, timeout: float = 10.0, *, accepted: bool = True) -> list[Request]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                got = [r for r in self.requests if not accepted or (isinstance(r.answered, int)
                                                                     and 200 <= r.answered < 300)]
                if len(got) >= count:
                    return got
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"receiver got {len(got)} of {count} expected requests "
                                         f"(all: {[r.answered for r in self.requests]})")
                self._lock.wait(remaining)

    async def until(self, count: int, timeout: float = 10.0, *, accepted: bool = True) -> list[Request]:
        """:meth:`wait_for` from async code (waits in a thread; the event loop keeps running)."""
        import asyncio

        return await asyncio.to_thread(self.wait_for, count, timeout, accepted=accepted)

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def refused_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    return f"http://127.0.0.1:{free_port()}/hook"


# --- TLS material -------------------------------------------------------------------------------

def self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for ``localhost`` / ``127.0.0.1`` (cert, key), via ``openssl``."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is needed to make a test certificate")
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


# --- SMTP ---------------------------------------------------------------------------------------

class _Handler:
    def __init__(self, owner: SmtpServer) -> None:
        self.owner = owner

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        owner = self.owner
        with owner.lock:
            answer = owner.script.pop(0) if owner.script else "250 Message accepted for delivery"
            owner.attempts.append(answer)
            if answer.startswith("250"):
                owner.messages.append(envelope)
            owner.lock.notify_all()
        return answer


class SmtpServer:
    """aiosmtpd on 127.0.0.1. ``tls``: ``none``, ``starttls`` (required) or ``ssl``."""

    def __init__(self, tmp: Path, *, tls: str = "none", users: dict[str, str] | None = None,
                 script: list[str] | None = None, port: int | None = None) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        self.script = list(script or [])
        self.attempts: list[str] = []
        self.messages: list[Any] = []
        self.logins: list[str] = []
        self.lock = threading.Condition()
        self.port = port or free_port()
        self.cert: Path | None = None
        kwargs: dict[str, Any] = {}
        if tls != "none":
            self.cert, key = self_signed(tmp)
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.cert, key)
            if tls == "starttls":
                kwargs.update(tls_context=context, require_starttls=True)
            else:
                kwargs.update(ssl_context=context)
        if users is not None:
            def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
                ok = (isinstance(data, LoginPassword)
                      and users.get(data.login.decode()) == data.password.decode())
                if ok:
                    self.logins.append(data.login.decode())
                return AuthResult(success=ok, handled=False) if not ok else AuthResult(success=True)

            kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=tls != "none")
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port, **kwargs)
        self.controller.start()

    def client_context(self) -> ssl.SSLContext:
        """What a client that trusts this server's certificate uses."""
        assert self.cert is not None
        return ssl.create_default_context(cafile=str(self.cert))

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        with self.lock:
            while len(self.messages) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"SMTP server got {len(self.messages)} of {count} messages "
                                         f"(replies: {self.attempts})")
                self.lock.wait(remaining)
            return list(self.messages)

    async def until(self, count: int, timeout: float = 10.0) -> list[Any]:
        import asyncio

        return await asyncio.to_thread(self.wait_for, count, timeout)

    def close(self) -> None:
        self.controller.stop()

    def __enter__(self) -> SmtpServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# --- Alertmanager -------------------------------------------------------------------------------

def alertmanager_binary() -> str:
    """The Alertmanager binary; under CI (``CI=true``) its absence fails the test."""
    for candidate in ("/usr/bin/prometheus-alertmanager", shutil.which("prometheus-alertmanager"),
                      shutil.which("alertmanager")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    message = "prometheus-alertmanager is not installed (apt-get install prometheus-alertmanager)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


AM_CONFIG = """\
route:
  receiver: "null"
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: "null"
"""


class Alertmanager:
    """A real Alertmanager on 127.0.0.1:<free port>, clustering off, storage in ``tmp``."""

    def __init__(self, tmp: Path, port: int | None = None) -> None:
        binary = alertmanager_binary()
        self.dir = tmp / "alertmanager"
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        config = self.dir / "alertmanager.yml"
        config.write_text(AM_CONFIG)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(self.dir / "log.txt", "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=",
             "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if not wait_until(self._ready, timeout=30, interval=0.1):
            self.close()
            raise AssertionError(f"Alertmanager did not become ready: {(self.dir / 'log.txt').read_text()[-2000:]}")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"Alertmanager exited: {(self.dir / 'log.txt').read_text()[-2000:]}")
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def alerts(self, **params: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v2/alerts", params=params, timeout=5)
        response.raise_for_status()
        return response.json()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        with contextlib.suppress(OSError):
            self.log.close()

    def __enter__(self) -> Alertmanager:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# --- a real `watch --json` process -------------------------------------------------------------

def read_json_until(proc: subprocess.Popen, predicate: Any, timeout: float, parse: Any) -> list[dict]:
    """JSON lines from ``proc``'s stdout (each through ``parse``, which checks it) until one satisfies
    ``predicate``: a bounded wait that says why when the process exited or nothing matched."""
    import select

    seen: list[dict] = []
    buffer = b""
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()  # type: ignore[union-attr]
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            event = parse(line)
            seen.append(event)
            if predicate(event):
                return seen
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=2)
    if proc.poll() is not None:
        raise AssertionError(f"exited {proc.returncode}: {proc.stderr.read().decode(errors='replace')[-3000:]}")  # type: ignore[union-attr]
    raise AssertionError(f"not seen within {timeout}s; last events: {seen[-5:]}")


def stop_following(proc: subprocess.Popen) -> tuple[int, bytes]:
    """SIGTERM a following process (killed if it has not left within 30 s): its exit code and stderr."""
    import signal

    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    return code, proc.stderr.read()  # type: ignore[union-attr]


# --- driving a real monitor ---------------------------------------------------------------------

def checkpoint_line(n: int, digest: str, **extra: Any) -> bytes:
    """One feed line as the engine writes it."""
    return json.dumps({"label": f"checkpoint-{n:04d}", "path": f"storage/chunks/checkpoint-{n:04d}",
                       "polygons": 128, "chunk_count": 8, "module_refs": 3, "registry_digest": digest,
                       "timestamp": time.time(), **extra}).encode()


def records(*lines: bytes, first_line: int = 1) -> list[Any]:
    """Parse feed lines into records, as the follower hands them to the monitor."""
    from polylog_console.core.feed.records import parse_line

    out = []
    for i, raw in enumerate(lines):
        record = parse_line(raw, first_line + i, 0, time.monotonic_ns())
        if record is not None:
            out.append(record)
    return out
