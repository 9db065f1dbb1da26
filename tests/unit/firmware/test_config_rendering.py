"""Agent configs with any name a person may type: TOML that tomllib reads back identically, an agent
that starts with it, and an Arduino header whose strings a C and a C++ compiler read as the same bytes."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from firmware.agent import Agent, State
from firmware.clock import VirtualClock
from firmware.config import load_config
from lambdas.logic import device_config
from tests.unit.firmware.firmware_fakes import SYSTEM_INFO, FakeTransport, StubApi

ROOT = Path(__file__).resolve().parents[3]
NAMES = [
    "Küche 😀",  # outside the Basic Multilingual Plane: JSON would write a surrogate pair
    "客厅的灯",  # CJK
    "👩‍👩‍👧 family room",  # a ZWJ sequence of non-BMP characters
    'say "hi"',
    "back\\slash\\",
    "C:\\temp\\new",  # \t and \n that must stay two characters each
    "what?? ??= ??/",  # trigraphs, for C
    "'single' and \"double\" ''' \"\"\"",
    'x"; system("rm -rf /"); "',
    "#not a comment = [1]",
]


@pytest.mark.parametrize("name", NAMES)
def test_registration_config_reads_back_identically(name):
    toml = device_config.render("https://api.example.com/prod", "tok_" + "a" * 40, name, name)["agentToml"]
    assert tomllib.loads(toml) == {
        "api_url": "https://api.example.com/prod",
        "registration_token": "tok_" + "a" * 40,
        "name": name,
        "board": name,
    }


@pytest.mark.parametrize("name", NAMES)
def test_minted_agent_config_reads_back_identically(name, tmp_path):
    text = device_config.agent_toml(
        "lk-0123456789abcdef", "https://api.example.com", name, "identity.json", extra={"backoff_cap": 10}
    )
    assert tomllib.loads(text) == {
        "api_url": "https://api.example.com",
        "identity_file": "identity.json",
        "state_dir": "state",
        "board": name,
        "backoff_cap": 10,
    }
    path = tmp_path / "agent.toml"
    path.write_text(text, encoding="utf-8")
    config = load_config(path)
    assert config.board == name.strip() and config.identity_file == tmp_path / "identity.json"


def test_control_characters_are_still_refused():
    for bad in ("a\nb", "tab\there", "bell\x07", "del\x7f"):
        with pytest.raises(ValueError):
            device_config.render("https://a.example", "tok", bad, "esp32")
        with pytest.raises(ValueError):
            device_config.agent_toml("lk-1", "https://a.example", bad, "identity.json")


def _write_config(tmp_path: Path, api: StubApi, name: str) -> Path:
    config = tmp_path / "agent.toml"
    toml = device_config.render(api.url, "tok-" + "b" * 40, name, "linux-test")["agentToml"]
    config.write_text(toml + 'mac = "02:00:00:00:00:09"\nbackoff_cap = 1\nbackoff_initial = 0.2\n')
    return config


def test_the_agent_starts_and_registers_with_a_non_bmp_name(tmp_path):
    # Given the "Add device" download for a device called "Küche 😀"
    api = StubApi()
    try:
        config = load_config(_write_config(tmp_path, api, "Küche 😀"))
        assert config.name == "Küche 😀"
        agent = Agent(
            config, clock=VirtualClock(), transport=FakeTransport(), system_info=lambda: dict(SYSTEM_INFO)
        )

        # When it takes its first step
        agent.step()
    finally:
        api.close()

    # Then it registered with the token from the file and polls next
    assert api.requests[0].path == "/v1/device/register"
    assert api.requests[0].json["registrationToken"] == "tok-" + "b" * 40
    assert agent.state is State.POLL


def test_the_agent_process_runs_with_such_a_config(tmp_path):
    # Given the same config, and the agent as a process (python -m firmware)
    api = StubApi()
    proc = subprocess.Popen(
        [sys.executable, "-m", "firmware", "--config", str(_write_config(tmp_path, api, '客厅 😀 "x"'))],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        # When it has had the time to register and poll
        deadline = time.monotonic() + 30
        while "/v1/device/poll" not in api.paths() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        running = proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        api.close()

    # Then it registered, polled, and stopped cleanly on SIGTERM
    assert running, output.decode(errors="replace")
    assert api.paths()[:2] == ["/v1/device/register", "/v1/device/poll"]
    assert proc.returncode == 0, output.decode(errors="replace")


# --- the Arduino header --------------------------------------------------------------------------------

_PROGRAM = """
#include <stdio.h>
#include "latchkey_config.h"
static void dump(const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) printf("%02x", *p);
    printf("\\n");
}
int main(void) {
    dump(LATCHKEY_API_URL);
    dump(LATCHKEY_REGISTRATION_TOKEN);
    dump(LATCHKEY_DEVICE_NAME);
    dump(LATCHKEY_BOARD);
    return 0;
}
"""


@pytest.mark.parametrize(
    ("compiler", "flags", "source"),
    [
        ("gcc", ["-std=c11", "-trigraphs"], "main.c"),  # trigraphs on: "??/" must not become a backslash
        ("g++", ["-std=c++11", "-trigraphs"], "main.cpp"),  # Arduino sketches are C++
    ],
)
def test_the_arduino_header_gives_a_compiler_the_same_bytes(tmp_path, compiler, flags, source):
    assert shutil.which(compiler), f"{compiler} is needed to check the generated header"
    values = ("https://api.example.com/prod", "tok_" + "c" * 40, " | ".join(NAMES), "esp32 ??( 😀")
    (tmp_path / "latchkey_config.h").write_text(
        device_config.render(*values)["arduinoHeader"], encoding="utf-8"
    )
    (tmp_path / source).write_text(_PROGRAM)
    subprocess.run(
        [compiler, *flags, "-Wall", "-Werror", "-o", str(tmp_path / "dump"), str(tmp_path / source)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    printed = subprocess.run([str(tmp_path / "dump")], check=True, capture_output=True, text=True, timeout=30)
    assert printed.stdout.split() == [value.encode().hex() for value in values]
