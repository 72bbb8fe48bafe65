"""Configuration that used to be accepted and must be refused (review of issue 10, items 5 and 13).

Secrets from the environment that are not UTF-8 text (os.environ hands such bytes over as lone
surrogates: every send failed with UnicodeEncodeError and was retried, silently), URL ports out
of range, a CR/LF in email.from (header injection), an empty fleet.name. Each is one line naming
the key or variable (never a secret's value), exit 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from polylog_console.core.fleet.http import check_url
from polylog_console.core.model.config import load_config, url_problem
from polylog_console.core.model.errors import ConfigError

BAD = "s\udcff"  # what os.environ gives for the bytes b"s\xff" (surrogateescape)

SECRETS = [
    ('[webhook]\nurl = "http://127.0.0.1:8080/hook"\n', "POLYLOG_WEBHOOK_SECRET"),
    ('[email]\nhost = "127.0.0.1"\nusername = "u"\n', "POLYLOG_EMAIL_PASSWORD"),
    ('[alertmanager]\nurl = "http://127.0.0.1:9093"\nusername = "u"\n', "POLYLOG_ALERTMANAGER_PASSWORD"),
    ('[alertmanager]\nurl = "http://127.0.0.1:9093"\n', "POLYLOG_ALERTMANAGER_BEARER_TOKEN"),
    ('[fleet]\nprometheus_url = "http://127.0.0.1:9090"\nusername = "u"\n', "POLYLOG_FLEET_PASSWORD"),
    ('[fleet]\nprometheus_url = "http://127.0.0.1:9090"\n', "POLYLOG_FLEET_BEARER_TOKEN"),
]


def write(tmp_path, text: str):
    (tmp_path / "monitoring.toml").write_text(text)
    return tmp_path


@pytest.mark.parametrize(("toml", "variable"), SECRETS)
def test_a_secret_in_the_environment_that_is_not_utf8_is_refused_naming_the_variable(tmp_path, toml, variable):
    root = write(tmp_path, toml)
    with pytest.raises(ConfigError) as caught:
        load_config(root, env={variable: BAD})
    message = str(caught.value)
    assert message == f"environment: {variable} is not UTF-8 text"
    assert "\udcff" not in message and "s" + "\\udcff" not in message
    load_config(root, env={variable: "s\u00ff"})  # non-ASCII but valid text is a fine secret


def test_the_real_environment_with_a_non_utf8_secret_exits_2_with_one_line(tmp_path):
    root = write(tmp_path, SECRETS[0][0])
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("POLYLOG_WORKSPACE", None)
    envb = {k.encode(): v.encode() for k, v in env.items()}
    envb[b"POLYLOG_WEBHOOK_SECRET"] = b"s\xff"
    proc = subprocess.run([sys.executable, "-m", "polylog_console", "digest", "-w", str(root)],
                          env=envb, capture_output=True, timeout=60)
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert err.strip().splitlines() == ["polylog-console: error: environment: POLYLOG_WEBHOOK_SECRET is not UTF-8 text"]


@pytest.mark.parametrize(("toml", "key"), [
    ('[webhook]\nurl = "http://127.0.0.1:99999/hook"\n', "webhook.url"),
    ('[alertmanager]\nurl = "http://127.0.0.1:70000"\n', "alertmanager.url"),
    ('[alertmanager]\nurl = ["http://127.0.0.1:9093", "http://127.0.0.1:0"]\n', "alertmanager.url"),
    ('[[replicas]]\nname = "r"\nurl = "http://127.0.0.1:99999/registry.json"\n', "replicas[0].url"),
    ('[fleet]\nprometheus_url = "http://127.0.0.1:65536"\n', "fleet.prometheus_url"),
    ('[webhook]\nurl = "http://127.0.0.1:80x/hook"\n', "webhook.url"),
    ('[webhook]\nurl = "http:///hook"\n', "webhook.url"),
])
def test_url_ports_out_of_range_are_refused_naming_the_key(tmp_path, toml, key):
    with pytest.raises(ConfigError, match=rf"^monitoring.toml: {key.replace('[', '.').replace(']', '.')}: "):
        load_config(write(tmp_path, toml), env={})


def test_urls_in_range_are_accepted(tmp_path):
    config = load_config(write(tmp_path, '[webhook]\nurl = "https://127.0.0.1:65535/hook"\n'
                                         '[alertmanager]\nurl = "http://[::1]:1"\n'), env={})
    assert config.alerts.webhook.url.endswith(":65535/hook")


def test_one_url_rule_for_configuration_and_the_command_line():
    for url in ("http://127.0.0.1:99999", "ftp://x", "http://", "http://a b"):
        assert url_problem(url) is not None
        with pytest.raises(ConfigError, match=r"^--prometheus: "):
            check_url(url, "--prometheus")
    assert url_problem("http://127.0.0.1:9090") is None


def test_an_environment_url_override_with_a_bad_port_is_refused(tmp_path):
    root = write(tmp_path, '[webhook]\nurl = "http://127.0.0.1:8080/hook"\n')
    with pytest.raises(ConfigError, match=r"^environment: POLYLOG_WEBHOOK_URL: "):
        load_config(root, env={"POLYLOG_WEBHOOK_URL": "http://127.0.0.1:99999/hook"})


@pytest.mark.parametrize("sender", ["ops@example.org\r\nBcc: victim@example.org", "ops@example.org\n",
                                    "a\rb", "a\x7fb", ""])
def test_email_from_with_cr_lf_or_controls_is_refused(tmp_path, sender):
    escaped = sender.encode("unicode_escape").decode().replace("\\x7f", "\\u007f")
    toml = f'[email]\nhost = "127.0.0.1"\nfrom = "{escaped}"\n'
    with pytest.raises(ConfigError, match=r"^monitoring.toml: email.from: must not"):
        load_config(write(tmp_path, toml), env={})


def test_email_to_with_cr_lf_is_refused(tmp_path):
    toml = '[email]\nhost = "127.0.0.1"\nto = ["a@example.org", "b@example.org\\r\\nBcc: c@example.org"]\n'
    with pytest.raises(ConfigError, match=r"^monitoring.toml: email.to: must not contain CR, LF"):
        load_config(write(tmp_path, toml), env={})


def test_email_from_in_the_environment_with_a_newline_is_refused(tmp_path):
    root = write(tmp_path, '[email]\nhost = "127.0.0.1"\n')
    with pytest.raises(ConfigError, match=r"^environment: POLYLOG_EMAIL_FROM: must not contain CR, LF"):
        load_config(root, env={"POLYLOG_EMAIL_FROM": "a@b\r\nBcc: c@d"})


@pytest.mark.parametrize("name", ['""', '"   "', '"a\\nb"'])
def test_an_empty_fleet_name_is_refused(tmp_path, name):
    with pytest.raises(ConfigError, match=r"^monitoring.toml: fleet.name: must not"):
        load_config(write(tmp_path, f"[fleet]\nname = {name}\n"), env={})
    with pytest.raises(ConfigError, match=r"^environment: POLYLOG_FLEET_NAME: must not be empty"):
        load_config(write(tmp_path, ""), env={"POLYLOG_FLEET_NAME": ""})


@pytest.mark.parametrize("toml", ['[webhook]\nurl = "http://127.0.0.1:99999/x"\n', '[fleet]\nname = ""\n',
                                  '[email]\nhost = "h"\nfrom = "a@b\\r\\nBcc: x@y"\n'])
def test_the_command_line_says_it_on_one_line_with_exit_2(tmp_path, cli, toml):
    root = write(tmp_path, toml)
    result = cli("digest", "-w", str(root), timeout=60)
    assert result.code == 2
    assert len(result.err.strip().splitlines()) == 1 and "monitoring.toml:" in result.err
