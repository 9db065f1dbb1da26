import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from firmware import sysinfo
from firmware.config import AgentConfig, ConfigError, load_config
from firmware.schedule import DEFAULT_CAP
from tests.unit.firmware.firmware_fakes import write_identity

REPO = Path(__file__).resolve().parents[3]


def write(path, text):
    path.write_text(text)
    return path


def test_defaults_and_relative_paths(tmp_path):
    config = load_config(
        write(tmp_path / "agent.toml", 'api_url = "http://127.0.0.1:9"\nidentity_file = "id.json"\n')
    )

    assert config.identity_file == tmp_path / "id.json"
    assert config.state_dir == tmp_path / "state"
    assert (config.backoff_initial, config.backoff_cap, config.jitter, config.status_interval) == (
        5,
        DEFAULT_CAP,
        0.2,
        6 * 3600,
    )
    assert config.mqtt_keepalive == 40  # a dropped connection is noticed after 60 s


def test_all_keys_are_read(tmp_path):
    config = load_config(
        write(
            tmp_path / "agent.toml",
            """
api_url = "https://api.example"
registration_token = "tok"
name = "Kitchen"
board = "esp32"
mac = "AA-BB-CC-DD-EE-FF"
state_dir = "/var/lib/latchkey"
backoff_initial = 2
backoff_cap = 600
jitter = 0.1
status_interval = 15
""",
        )
    )
    assert config.state_dir == Path("/var/lib/latchkey")
    assert (config.backoff_initial, config.backoff_cap, config.jitter, config.status_interval) == (
        2,
        600,
        0.1,
        15,
    )
    assert (config.name, config.board, config.mac) == ("Kitchen", "esp32", "AA-BB-CC-DD-EE-FF")
    assert "tok" not in repr(config)


@pytest.mark.parametrize(
    "text",
    [
        "backoff_cap = 1\n",
        'jitter = "a lot"\n',
        "jitter = 1.5\n",
        'api_url = "ftp://x"\n',
        'mac = "nope"\n',
        "status_interval = 0\n",
        "this is not toml",
    ],
)
def test_bad_configs_are_refused_with_a_message(tmp_path, text):
    with pytest.raises(ConfigError):
        load_config(write(tmp_path / "agent.toml", text))


def test_unknown_keys_only_warn(tmp_path, caplog):
    load_config(write(tmp_path / "agent.toml", 'future_key = 1\napi_url = "http://x"\n'))
    assert "future_key" in caplog.text


def test_system_facts_have_the_expected_shape():
    assert sysinfo.ip_address("http://127.0.0.1:1/") == "127.0.0.1"
    assert re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", sysinfo.mac_address())
    assert sysinfo.uptime() >= 0
    assert sysinfo.board()
    assert sysinfo.normalize_mac("AA-bb-CC:dd.EE ff") == "aa:bb:cc:dd:ee:ff"


def run_agent(*args):
    return subprocess.run(
        [sys.executable, "-m", "firmware", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_help_works():
    result = run_agent("--help")
    assert result.returncode == 0 and "--config" in result.stdout


def test_a_missing_config_is_a_clear_error_not_a_traceback(tmp_path):
    result = run_agent("--config", str(tmp_path / "missing.toml"))
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_sigterm_stops_the_agent_cleanly_with_exit_code_0(tmp_path):
    # Given an agent polling an API that is down
    identity_file, _key = write_identity(tmp_path)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = write(
        tmp_path / "agent.toml",
        f'api_url = "http://127.0.0.1:{port}"\nidentity_file = "{identity_file}"\nregistration_token = "tok-xyz"\n',
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "firmware", "--config", str(config)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 10
        seen = ""
        while "poll failed" not in seen and time.monotonic() < deadline:
            seen += process.stderr.readline()

        # When it gets SIGTERM while waiting for the next poll
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()

    # Then it exits 0 at once and never logged its secrets
    logs = seen + err
    assert process.returncode == 0, logs
    assert "poll failed" in logs and "stopped" in logs
    assert "PRIVATE KEY" not in logs and "tok-xyz" not in logs


def test_agent_config_dataclass_defaults():
    assert AgentConfig().backoff_cap == DEFAULT_CAP
