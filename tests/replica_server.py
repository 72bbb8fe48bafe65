"""A real HTTP replica server on 127.0.0.1 for tests and benchmarks (no mocks).

One :class:`ReplicaServer` listens on one or more ports (real sockets, one ``ThreadingHTTPServer``
per port, each in a background thread) and behaves according to the request path, so a test can
configure many replicas with different behaviours against one server:

``/ok``           200 with the document named by ``?doc=`` (default ``ok``)
``/slow``         the same after ``?delay=`` seconds (default 0.5)
``/hang``         accepts the request and never answers (until the server stops)
``/status``       answers with ``?code=`` (default 500) and a short text body
``/flaky/KEY``    answers 500 to the first ``?fail=`` requests for KEY (default 1), then 200 + doc
``/garbage``      200 with bytes that are not JSON
``/close``        reads the request and closes the connection without any response
``/drip``         200 with a Content-Length, then one byte every ``?interval=`` seconds (default 0.3)
``/raw``          200 with the raw bytes registered under ``?doc=``
``/loop``         302 with ``Location:`` itself (a redirect loop)
``/big``          200 with a streamed JSON body of ``?size=`` bytes (``{"digest": ?digest=, "pad": "xx..."}``),
                  made chunk by chunk (never held in memory); ``?length=1`` sends its Content-Length,
                  else the body ends when the connection closes

Documents are registered by name (``ReplicaServer(documents={"ok": {...}, "drifted": {...}})``);
every request path is recorded in :attr:`ReplicaServer.hits` so tests can count retries.

``python -m tests.replica_server --ports N --doc ok=FILE [--doc NAME=FILE ...]`` runs the server
in its own process (the benchmark does this, so that the server's threads do not compete with the
checker for the GIL) and prints one JSON line ``{"ports": [...]}`` once listening; it serves until
its standard input closes or it receives SIGTERM.
"""

from __future__ import annotations

import argparse
import collections
import json
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

GARBAGE = b"<html>\x00\xff\x1b[31m not json {{{"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256  # a burst of concurrent checks must not overflow the accept backlog
    owner: ReplicaServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, code: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def _send_big(self, size: int, digest: str, with_length: bool) -> None:
        head = b'{"digest":"%s","pad":"' % digest.encode()
        tail = b'"}'
        pad = max(0, size - len(head) - len(tail))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if with_length:
            self.send_header("Content-Length", str(len(head) + pad + len(tail)))
        self.send_header("Connection", "close")
        self.end_headers()
        block = b"x" * (1 << 20)
        try:
            self.wfile.write(head)
            while pad > 0 and not self.server.owner.stopping.is_set():
                piece = block if pad >= len(block) else block[:pad]
                self.wfile.write(piece)
                pad -= len(piece)
            self.wfile.write(tail)
        except OSError:  # the client refused the body and went away
            pass
        self.close_connection = True

    def do_GET(self) -> None:
        owner = self.server.owner
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        segments = [s for s in parts.path.split("/") if s]
        mode = segments[0] if segments else "ok"
        owner.record(parts.path)
        doc = owner.documents.get(query.get("doc", "ok"), b"{}")
        if mode == "ok":
            self._send(200, doc)
        elif mode == "slow":
            if not owner.stopping.wait(float(query.get("delay", "0.5"))):
                self._send(200, doc)
        elif mode == "hang":
            owner.stopping.wait(600)
            self.close_connection = True
        elif mode == "status":
            code = int(query.get("code", "500"))
            self._send(code, f"status {code}\n".encode(), "text/plain")
        elif mode == "flaky":
            key = "/".join(segments[1:]) or "default"
            if owner.count(f"flaky:{key}") <= int(query.get("fail", "1")):
                self._send(500, b"temporarily broken\n", "text/plain")
            else:
                self._send(200, doc)
        elif mode == "garbage":
            self._send(200, GARBAGE, "text/html")
        elif mode == "close":
            self.close_connection = True  # no status line, no headers: the client sees a disconnect
        elif mode == "drip":
            interval = float(query.get("interval", "0.3"))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(doc)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.flush()
            for index in range(len(doc)):
                if owner.stopping.wait(interval):
                    break
                try:
                    self.wfile.write(doc[index:index + 1])
                    self.wfile.flush()
                except OSError:
                    break
            self.close_connection = True
        elif mode == "raw":
            self._send(200, doc)
        elif mode == "loop":
            self.send_response(302)
            self.send_header("Location", self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif mode == "big":
            self._send_big(int(query.get("size", str(1 << 20))), query.get("digest", "0" * 64),
                           query.get("length") == "1")
        else:
            self._send(404, b"unknown mode\n", "text/plain")


class ReplicaServer:
    """HTTP replica server on 127.0.0.1 (``ports`` listening sockets), run in background threads."""

    def __init__(self, documents: dict[str, Any] | None = None, *, ports: int = 1) -> None:
        self.documents: dict[str, bytes] = {}
        for name, value in (documents or {}).items():
            self.add_document(name, value)
        self.stopping = threading.Event()
        self.hits: collections.Counter[str] = collections.Counter()
        self._counts: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []
        self._wanted = ports

    def add_document(self, name: str, value: Any) -> None:
        """Register a document: bytes as given, anything else as JSON (non-ASCII kept raw)."""
        self.documents[name] = value if isinstance(value, bytes) else json.dumps(value, ensure_ascii=False).encode()

    def record(self, path: str) -> None:
        with self._lock:
            self.hits[path] += 1

    def count(self, key: str) -> int:
        """Increment and return the counter ``key`` (thread-safe)."""
        with self._lock:
            self._counts[key] += 1
            return self._counts[key]

    @property
    def ports(self) -> list[int]:
        return [s.server_address[1] for s in self._servers]

    def url(self, mode: str = "ok", *, port_index: int = 0, key: str | None = None, **params: Any) -> str:
        path = f"/{mode}" + (f"/{key}" if key else "")
        query = f"?{urlencode(params)}" if params else ""
        return f"http://127.0.0.1:{self.ports[port_index]}{path}{query}"

    def start(self) -> ReplicaServer:
        for _ in range(self._wanted):
            server = _Server(("127.0.0.1", 0), _Handler)
            server.owner = self
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5},
                                      name=f"replica-server-{server.server_address[1]}", daemon=True)
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self.stopping.set()  # releases hanging and slow handlers
        # shutdown() waits up to one poll interval per server: do them all at once.
        closers = [threading.Thread(target=server.shutdown, daemon=True) for server in self._servers]
        for closer in closers:
            closer.start()
        for port in self.ports:  # wake each accept loop now rather than at its next poll
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                pass
        for closer in closers:
            closer.join(timeout=5)
        for server in self._servers:
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> ReplicaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.replica_server", description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=1, help="how many listening sockets")
    parser.add_argument("--doc", action="append", default=[], metavar="NAME=FILE",
                        help="serve FILE's bytes as document NAME")
    args = parser.parse_args(argv)
    server = ReplicaServer(ports=args.ports)
    for spec in args.doc:
        name, _, file = spec.partition("=")
        server.add_document(name, Path(file).read_bytes())
    server.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    sys.stdout.write(json.dumps({"ports": server.ports}) + "\n")
    sys.stdout.flush()
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    started = time.monotonic()
    server.stop()
    sys.stderr.write(f"replica server stopped in {time.monotonic() - started:.2f} s\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
