"""Configuration (SPEC §10): monitoring.toml, environment overrides, one-line errors, secrets."""

from __future__ import annotations

import pytest

from polylog_console.core.model.config import Secret, load_config, parse_duration
from polylog_console.core.model.errors import ConfigError


def write(tmp_path, text: str):
    (tmp_path / "monitoring.toml").write_text(text, encoding="utf-8")


def test_defaults_without_a_file(tmp_path):
    config = load_config(tmp_path, env={})
    assert config.source == "defaults"
    assert config.feed.path == tmp_path / "memory/coordination/context-brief.jsonl"
    assert (config.feed.poll, config.feed.poll_interval, config.feed.history) == (False, 0.25, 500)
    assert (config.scheme, config.monitor.stale_after, config.monitor.escalate_after) == ("engine", 3600.0, 3)
    assert config.alerts.webhook is None and config.replicas == ()


def test_full_file(tmp_path):
    write(tmp_path, """
[feed]
path = "feeds/cb.jsonl"
poll = true
poll_interval = "500ms"
history = 50
[digest]
scheme = "canonical"
[monitor]
stale_after = "1h30m"
escalate_after = 5
[refresh]
enabled = true
[alerts]
repeat_interval = "10m"
[webhook]
url = "http://127.0.0.1:9/hook"
timeout = 2
[email]
host = "smtp.example"
tls = "ssl"
to = ["a@x", "b@x"]
[alertmanager]
url = "http://127.0.0.1:9093"
[[replicas]]
name = "r1"
path = "r1.json"
[[replicas]]
name = "r2"
url = "https://r2.example/registry"
timeout = "3s"
[ui]
theme = "light"
read_only = true
[ui.keys]
rehydrate = "ctrl+r"
""")
    c = load_config(tmp_path, env={})
    assert c.feed.path == tmp_path / "feeds/cb.jsonl" and c.feed.poll and c.feed.poll_interval == 0.5
    assert c.scheme == "canonical" and c.monitor.stale_after == 5400 and c.monitor.refresh_enabled
    assert c.alerts.repeat_interval == 600 and c.alerts.webhook.url == "http://127.0.0.1:9/hook"
    assert c.alerts.email.port == 465 and c.alerts.email.to == ("a@x", "b@x")
    assert [r.name for r in c.replicas] == ["r1", "r2"] and c.replicas[0].path == tmp_path / "r1.json"
    assert c.replicas[1].timeout == 3.0
    assert c.ui.theme == "light" and c.ui.read_only and c.ui.keys == {"rehydrate": "ctrl+r"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[feed]\npol = true\n", 'monitoring.toml: unknown key "feed.pol" (known: path, poll, poll_interval, history)'),
        ("[fed]\n", 'monitoring.toml: unknown section "fed"'),
        ("[feed]\nhistory = \"lots\"\n", "monitoring.toml: feed.history: expected an integer, got string"),
        ("[feed]\npoll = 1\n", "monitoring.toml: feed.poll: expected true or false, got integer 1"),
        ("[monitor]\nstale_after = \"soon\"\n", 'monitoring.toml: monitor.stale_after: expected a duration like'),
        ("[digest]\nscheme = \"md5\"\n", "monitoring.toml: digest.scheme: expected one of engine, canonical"),
        ("[webhook]\nurl = \"ftp://x\"\n", "monitoring.toml: webhook.url: expected an http:// or https:// URL"),
        ("[webhook]\nurl = \"http://x\"\nsecret = \"s3cret\"\n",
         "monitoring.toml: webhook.secret: secrets are not read from the file"),
        ("[email]\nhost = \"h\"\npassword = \"p\"\n", "monitoring.toml: email.password: secrets are not read"),
        ("[[replicas]]\nname = \"a\"\n", "monitoring.toml: replicas[0]: needs exactly one of url or path"),
        ("[[replicas]]\nname = \"a\"\npath = \"x\"\nhost = \"y\"\n", 'unknown key "replicas[0].host"'),
        ("[feed\n", "monitoring.toml: invalid TOML"),
    ],
)
def test_errors_are_one_line_naming_key_and_file(tmp_path, text, message):
    write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, env={})
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert "s3cret" not in str(info.value)


def test_environment_overrides_the_file(tmp_path):
    write(tmp_path, "[feed]\nhistory = 10\n")
    c = load_config(tmp_path, env={"POLYLOG_FEED_HISTORY": "20", "POLYLOG_FEED_POLL": "yes",
                                   "POLYLOG_MONITOR_STALE_AFTER": "2m", "POLYLOG_EMAIL_HOST": "mx",
                                   "POLYLOG_EMAIL_TO": "x@y, z@y", "POLYLOG_WORKSPACE": "/elsewhere"})
    assert c.feed.history == 20 and c.feed.poll and c.monitor.stale_after == 120
    assert c.alerts.email.host == "mx" and c.alerts.email.to == ("x@y", "z@y")


def test_unknown_environment_override_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="environment: unknown variable POLYLOG_FEED_HISTROY"):
        load_config(tmp_path, env={"POLYLOG_FEED_HISTROY": "3"})
    with pytest.raises(ConfigError, match="environment: POLYLOG_FEED_HISTORY: expected an integer"):
        load_config(tmp_path, env={"POLYLOG_FEED_HISTORY": "many"})


def test_secrets_from_environment_or_file_and_never_printed(tmp_path):
    (tmp_path / "hook.secret").write_text("file-secret\n")
    write(tmp_path, '[webhook]\nurl = "http://127.0.0.1:1/h"\nsecret_file = "hook.secret"\n'
                    '[email]\nhost = "mx"\npassword_file = "/nonexistent/pw"\n')
    with pytest.raises(ConfigError, match=r"email\.password_file: cannot read /nonexistent/pw"):
        load_config(tmp_path, env={})
    c = load_config(tmp_path, env={"POLYLOG_EMAIL_PASSWORD": "env-pw"})
    assert c.alerts.webhook.secret.reveal() == "file-secret"
    assert c.alerts.email.password.reveal() == "env-pw"
    text = repr(c) + str(c)
    assert "file-secret" not in text and "env-pw" not in text
    c2 = load_config(tmp_path, env={"POLYLOG_WEBHOOK_SECRET": "env-secret", "POLYLOG_EMAIL_PASSWORD": "x"})
    assert c2.alerts.webhook.secret == Secret("env-secret", "x")


def test_explicit_config_file_must_exist(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.toml: no such file"):
        load_config(tmp_path, tmp_path / "nope.toml", env={})


@pytest.mark.parametrize(("value", "seconds"), [(90, 90.0), ("90s", 90.0), ("5m", 300.0), ("1h", 3600.0),
                                                ("1h30m", 5400.0), ("250ms", 0.25), ("2.5", 2.5), ("1d", 86400.0)])
def test_durations(value, seconds):
    assert parse_duration(value) == seconds


def test_cli_reports_config_error_on_one_line_with_exit_2(tmp_path, cli):
    write(tmp_path, "[feed]\nhistory = -1\n")
    result = cli("watch", "--once", "--workspace", str(tmp_path))
    assert result.code == 2
    assert result.err == "polylog-console: error: monitoring.toml: feed.history: must be at least 1, got -1\n"
