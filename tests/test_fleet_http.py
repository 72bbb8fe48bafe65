"""TLS and authentication towards Prometheus and Alertmanager: a real Prometheus behind TLS with a
self-signed certificate made here (``--web.config.file``), basic and bearer auth against a local
HTTP server that checks the ``Authorization`` header, secrets from the environment or a ``*_file``
and never from ``monitoring.toml``, never in output."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from polylog_console.core.alerts.alertmanager import AlertmanagerSink
from polylog_console.core.alerts.payload import Notification
from polylog_console.core.fleet.http import ApiError
from polylog_console.core.fleet.prometheus import PrometheusClient
from polylog_console.core.model.config import HttpClientConfig, Secret, load_config
from polylog_console.core.model.errors import ConfigError
from tests.conftest import run_cli
from tests.promstack import Prometheus
from tests.servers import Receiver, self_signed

SECRET = "s3cr3t-Value-42"


class AuthServer:
    """Answers Prometheus' query API with an empty vector when the Authorization header is ``expected``."""

    def __init__(self, expected: str) -> None:
        self.seen: list[str | None] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                got = self.headers.get("Authorization")
                owner.seen.append(got)
                ok = got == expected
                body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}}
                                  if ok else {"status": "error", "error": "unauthorized"}).encode()
                self.send_response(200 if ok else 401)
                self.send_header("Content-Type", "text/plain" if not ok else "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def write_config(root, text: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "monitoring.toml").write_text(text)


def test_prometheus_behind_tls_with_a_ca_file(tmp_path):
    cert, key = self_signed(tmp_path)
    web = f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
    with Prometheus(tmp_path, [], web_config=web, ca=cert) as prom:
        assert prom.url.startswith("https://")
        with PrometheusClient(prom.url, http=HttpClientConfig(ca_file=cert)) as client:
            assert client.query("vector(1)")[0].value == 1.0
        with PrometheusClient(prom.url) as client, pytest.raises(ApiError, match="not trusted"):
            client.query("vector(1)")
        # through monitoring.toml: [fleet] ca_file, relative to the workspace
        root = tmp_path / "ws"
        write_config(root, f'[fleet]\nprometheus_url = "{prom.url}"\nca_file = "{cert}"\n')
        result = run_cli("fleet", "--json", "--workspace", str(root), timeout=60)
        doc = json.loads(result.out)
        assert doc["prometheus"]["ok"] is True and doc["instances"] == []
        assert result.code == 1  # no workspace is in sync: nothing exports polylog metrics


def test_basic_auth_password_from_the_environment(tmp_path):
    expected = "Basic " + base64.b64encode(f"ops:{SECRET}".encode()).decode()
    server = AuthServer(expected)
    try:
        root = tmp_path / "ws"
        write_config(root, f'[fleet]\nprometheus_url = "{server.url}"\nusername = "ops"\n')
        ok = run_cli("fleet", "--json", "--workspace", str(root), env={"POLYLOG_FLEET_PASSWORD": SECRET}, timeout=60)
        assert json.loads(ok.out)["prometheus"]["ok"] is True
        assert server.seen[-1] == expected
        bad = run_cli("fleet", "--json", "--workspace", str(root), env={"POLYLOG_FLEET_PASSWORD": "wrong-" + SECRET},
                      timeout=60)
        assert bad.code == 2
        error = json.loads(bad.out)["prometheus"]["error"]
        assert "401" in error and "password" in error
        assert SECRET not in bad.out + bad.err
    finally:
        server.close()


def test_bearer_token_from_a_file(tmp_path):
    server = AuthServer(f"Bearer {SECRET}")
    try:
        root = tmp_path / "ws"
        (tmp_path / "token").write_text(SECRET + "\n")
        write_config(root, f'[fleet]\nprometheus_url = "{server.url}"\nbearer_token_file = "{tmp_path / "token"}"\n')
        config = load_config(root, env={})
        assert SECRET not in repr(config)
        with PrometheusClient(server.url, http=config.fleet.http) as client:
            assert client.query("up") == []
        assert server.seen == [f"Bearer {SECRET}"]
    finally:
        server.close()


def test_secrets_are_never_read_from_the_file(tmp_path):
    for section, key in (("fleet", "password"), ("fleet", "bearer_token"), ("alertmanager", "password")):
        write_config(tmp_path, f'[{section}]\n{key} = "{SECRET}"\n')
        with pytest.raises(ConfigError, match=f"POLYLOG_{section.upper()}_{key.upper()}") as info:
            load_config(tmp_path, env={})
        assert SECRET not in str(info.value)
    write_config(tmp_path, '[fleet]\nusername = "ops"\n')
    with pytest.raises(ConfigError, match="basic auth"):
        load_config(tmp_path, env={"POLYLOG_FLEET_PASSWORD": "a", "POLYLOG_FLEET_BEARER_TOKEN": "b"})


def test_alertmanager_list_and_auth_in_config(tmp_path):
    (tmp_path / "pw").write_text(SECRET)
    write_config(tmp_path, '[alertmanager]\nurl = ["http://am1:9093", "http://am2:9093"]\nusername = "w"\n'
                           'password_file = "pw"\n')
    am = load_config(tmp_path, env={}).alerts.alertmanager
    assert am.urls == ("http://am1:9093", "http://am2:9093") and am.url == "http://am1:9093"
    assert am.http.password == Secret(SECRET, "x") and SECRET not in repr(am)
    env = load_config(tmp_path, env={"POLYLOG_ALERTMANAGER_URL": "http://a:1, http://b:2"}).alerts.alertmanager
    assert env.urls == ("http://a:1", "http://b:2")


async def test_the_alertmanager_sink_sends_its_bearer_token(tmp_path):
    with Receiver() as receiver:
        sink = AlertmanagerSink(f"http://127.0.0.1:{receiver.port}", http=HttpClientConfig(
            bearer_token=Secret(SECRET, "env")), workspace_name="fleet-name")
        note = Notification(id="n1", created_at=1.0, code="registry_mismatch", status="firing", severity="critical",
                            dedup_key="k", summary="s", workspace="/path", host="h", runbook_url="u")
        try:
            await sink.send(note)
        finally:
            await sink.aclose()
        (request,) = receiver.requests
        assert request.headers["authorization"] == f"Bearer {SECRET}"
        assert request.path == "/api/v2/alerts"
        assert request.json[0]["labels"]["workspace"] == "fleet-name"


async def test_a_cluster_member_down_does_not_hold_deliveries_back(tmp_path):
    from polylog_console.core.alerts.delivery import DeliveryError
    from tests.servers import refused_url

    note = Notification(id="n2", created_at=1.0, code="registry_mismatch", status="firing", severity="critical",
                        dedup_key="k", summary="s", workspace="/path", host="h", runbook_url="u")
    dead = refused_url().rsplit("/", 1)[0]
    with Receiver() as up, Receiver() as other:
        sink = AlertmanagerSink([f"http://127.0.0.1:{up.port}", dead, f"http://127.0.0.1:{other.port}"])
        try:
            await sink.send(note)  # accepted by the live members: delivered
        finally:
            await sink.aclose()
        assert len(up.requests) == 1 and len(other.requests) == 1
        assert up.requests[0].body == other.requests[0].body  # every member gets the same alert
    sink = AlertmanagerSink([dead, refused_url().rsplit("/", 1)[0]])
    try:
        with pytest.raises(DeliveryError) as info:
            await sink.send(note)
        assert info.value.retryable and info.value.reason.count("POST") == 2
    finally:
        await sink.aclose()


async def test_alertmanager_behind_tls_for_the_sink_and_the_acks(tmp_path):
    from polylog_console.core.fleet.silences import AlertmanagerClient
    from tests.promstack import AlertmanagerNode

    cert, key = self_signed(tmp_path)
    web = f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
    with AlertmanagerNode(tmp_path, web_config=web, ca=cert) as am:
        assert am.url.startswith("https://")
        trust = HttpClientConfig(ca_file=cert)
        sink = AlertmanagerSink(am.url, http=trust, workspace_name="tls-ws")
        note = Notification(id="n3", created_at=1.0, code="registry_mismatch", status="firing", severity="critical",
                            dedup_key="k3", summary="s", workspace="/p", host="h", runbook_url="u")
        try:
            await sink.send(note)
        finally:
            await sink.aclose()
        assert [a["labels"]["workspace"] for a in am.alerts()] == ["tls-ws"]
        with AlertmanagerClient(am.url, http=trust) as client:
            sid = client.create_silence({"workspace": "tls-ws"}, created_by="a@b", comment="c", ends_at=4102444800)
            assert sid in {s.id for s in client.silences()}
        with AlertmanagerClient(am.url) as untrusted, pytest.raises(ApiError, match="not trusted"):
            untrusted.silences()
