"""Configuration ranges (issue 10, item 9): every number and duration is finite and in a documented
range, from the file and from POLYLOG_<SECTION>_<KEY> alike; each violation is one line naming the
key, exit 2 from any command. Config files are read with the bounded reader (a FIFO never hangs)."""

from __future__ import annotations

import os

import pytest

from polylog_console.core.model.config import RANGES, load_config
from polylog_console.core.model.errors import ConfigError
from tests.conftest import run_cli

HOOK = '[webhook]\nurl = "http://127.0.0.1:9/hook"\n'
MAIL = '[email]\nhost = "mx.example"\n'

# (file text, the key the message must name)
BAD = [
    (HOOK + "timeout = 0\n", "webhook.timeout"),
    (HOOK + "timeout = -1\n", "webhook.timeout"),
    (HOOK + 'timeout = "1000h"\n', "webhook.timeout"),
    (MAIL + "port = 99999\n", "email.port"),
    (MAIL + "port = 0\n", "email.port"),
    (MAIL + "timeout = nan\n", "email.timeout"),
    ("[alerts]\nrepeat_interval = nan\n", "alerts.repeat_interval"),
    ("[alerts]\nrepeat_interval = inf\n", "alerts.repeat_interval"),
    ('[alerts]\nrepeat_interval = "inf"\n', "alerts.repeat_interval"),
    ("[alerts]\nrepeat_interval = 0\n", "alerts.repeat_interval"),
    ("[monitor]\nstale_after = 1e309\n", "monitor.stale_after"),
    ('[monitor]\nstale_after = "1e309"\n', "monitor.stale_after"),
    ('[monitor]\nstale_after = "99999d"\n', "monitor.stale_after"),
    ("[monitor]\nescalate_after = 100000000000\n", "monitor.escalate_after"),
    ("[feed]\nhistory = 10000000000000\n", "feed.history"),
    ("[feed]\nhistory = 0\n", "feed.history"),
    ('[feed]\npoll_interval = "99999999999999d"\n', "feed.poll_interval"),
    ('[feed]\npoll_interval = "' + "9" * 400 + 'd"\n', "feed.poll_interval"),
    ("[feed]\npoll_interval = 0\n", "feed.poll_interval"),
    ("[alertmanager]\nurl = \"http://127.0.0.1:9\"\ntimeout = 0\n", "alertmanager.timeout"),
    ('[[replicas]]\nname = "r"\nurl = "http://127.0.0.1:9/"\ntimeout = 0\n', "replicas[0].timeout"),
    ('[[replicas]]\nname = "r"\nurl = "http://127.0.0.1:9/"\nretries = 1000000\n', "replicas[0].retries"),
]


@pytest.mark.parametrize(("text", "key"), BAD, ids=[f"{key}-{i}" for i, (_, key) in enumerate(BAD)])
def test_out_of_range_values_are_one_line_naming_the_key(tmp_path, text, key):
    (tmp_path / "monitoring.toml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, env={})
    message = str(caught.value)
    assert message.startswith(f"monitoring.toml: {key}: "), message
    assert "\n" not in message and len(message) < 200


@pytest.mark.parametrize("command", [["digest"], ["replicas"], ["watch", "--once"], ["validate"], ["bundle"]])
def test_every_command_exits_2_with_the_key(small_ws, command):
    (small_ws.root / "monitoring.toml").write_text(HOOK + "timeout = 0\n")
    result = run_cli(*command, "-w", str(small_ws.root), timeout=60)
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        "polylog-console: error: monitoring.toml: webhook.timeout: must be between 100 ms and 10 min, got 0 s"]


@pytest.mark.parametrize(("name", "value"), [
    ("POLYLOG_WEBHOOK_TIMEOUT", "0"),
    ("POLYLOG_EMAIL_PORT", "99999"),
    ("POLYLOG_ALERTS_REPEAT_INTERVAL", "nan"),
    ("POLYLOG_ALERTS_REPEAT_INTERVAL", "inf"),
    ("POLYLOG_MONITOR_STALE_AFTER", "1e309"),
    ("POLYLOG_FEED_HISTORY", "10000000000000"),
    ("POLYLOG_FEED_POLL_INTERVAL", "99999999999999d"),
    ("POLYLOG_FEED_HISTORY", "9" * 5000),
])
def test_environment_overrides_are_checked_the_same_way(tmp_path, name, value):
    (tmp_path / "monitoring.toml").write_text(HOOK + MAIL)
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, env={name: value})
    message = str(caught.value)
    assert message.startswith(f"environment: {name}: "), message
    assert "\n" not in message and len(message) < 200


def test_environment_error_from_the_command_line(small_ws):
    result = run_cli("digest", "-w", str(small_ws.root), env={"POLYLOG_FEED_HISTORY": "10000000000000"}, timeout=60)
    assert result.code == 2
    assert result.err.strip() == ("polylog-console: error: environment: POLYLOG_FEED_HISTORY: "
                                  "must be between 1 and 100000, got 10000000000000")


def test_generous_maxima_are_accepted(tmp_path):
    (tmp_path / "monitoring.toml").write_text(
        '[monitor]\nstale_after = "365d"\nescalate_after = 1000000\n'
        '[alerts]\nrepeat_interval = "3650d"\n'
        '[feed]\nhistory = 100000\npoll_interval = "1h"\n'
        + MAIL + "port = 65535\ntimeout = 600\n" + HOOK + 'timeout = "100ms"\n')
    config = load_config(tmp_path, env={"POLYLOG_MONITOR_STALE_AFTER": "21d"})
    assert config.monitor.stale_after == 21 * 86400
    assert config.alerts.repeat_interval == 3650 * 86400
    assert config.feed.history == 100_000 and config.feed.poll_interval == 3600
    assert config.alerts.email.port == 65535 and config.alerts.webhook.timeout == 0.1


def test_every_range_is_finite_and_ordered():
    for key, (low, high) in RANGES.items():
        assert 0 <= low < high < float("inf"), key


def test_a_fifo_as_the_config_file_does_not_hang(small_ws):
    config = small_ws.root / "monitoring.toml"
    config.unlink()
    os.mkfifo(config)
    result = run_cli("digest", "-w", str(small_ws.root), timeout=30)
    assert result.code == 2
    assert result.err.strip() == "polylog-console: error: monitoring.toml: not a regular file (FIFO)"


@pytest.mark.parametrize("target", ["fifo", "/dev/zero"])
def test_a_secret_file_that_is_not_a_regular_file_is_refused(tmp_path, target):
    secret = tmp_path / "hook.secret"
    if target == "fifo":
        os.mkfifo(secret)
    else:
        secret.symlink_to(target)
    (tmp_path / "monitoring.toml").write_text(HOOK + 'secret_file = "hook.secret"\n')
    with pytest.raises(ConfigError, match=r"webhook\.secret_file: cannot read .*hook\.secret: not a regular file"):
        load_config(tmp_path, env={})


def test_a_huge_secret_file_is_refused(tmp_path):
    (tmp_path / "hook.secret").write_bytes(b"s" * (65 * 1024))
    (tmp_path / "monitoring.toml").write_text(HOOK + 'secret_file = "hook.secret"\n')
    with pytest.raises(ConfigError, match=r"webhook\.secret_file: .*larger than 64 KB, refused"):
        load_config(tmp_path, env={})


def test_integers_of_thousands_of_digits_are_one_line(tmp_path):
    (tmp_path / "monitoring.toml").write_text("[feed]\nhistory = " + "9" * 4000 + "\n")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, env={})
    assert str(caught.value) == ("monitoring.toml: feed.history: must be between 1 and 100000, "
                                 "got an integer of 4000 digits")
    (tmp_path / "monitoring.toml").write_text("[feed]\nhistory = " + "9" * 5000 + "\n")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, env={})
    assert str(caught.value).startswith("monitoring.toml: invalid TOML: Exceeds the limit (4300 digits)")
    assert len(str(caught.value)) < 200
