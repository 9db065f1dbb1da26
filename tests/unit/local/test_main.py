"""`make run` before the cloud starts: one instance per state directory, one-line errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from local.__main__ import LOCK_FILE, StartupError, acquire_instance_lock, choose_ports, wipe_state

REPO_ROOT = Path(__file__).resolve().parents[3]


def run_local(state_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LATCHKEY_")}
    environ.update({"PYTHONPATH": str(REPO_ROOT), **env})
    return subprocess.run(
        [sys.executable, "-m", "local", "--state-dir", str(state_dir)],
        cwd=REPO_ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    state = tmp_path / "run"
    (state / "pki").mkdir(parents=True)
    (state / "pki" / "ca.key").write_text("the running instance's key")
    (state / "cloud.env.json").write_text("{}")
    return state


def test_a_second_instance_names_the_running_one_and_changes_nothing(state_dir: Path):
    fd = acquire_instance_lock(state_dir)  # this test process plays the running instance
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "url": "http://127.0.0.1:8080/"}).encode(), 0)
        before = {p: p.read_bytes() for p in state_dir.rglob("*") if p.is_file()}
        second = run_local(state_dir)
        after = {p: p.read_bytes() for p in state_dir.rglob("*") if p.is_file()}
    finally:
        os.close(fd)
    assert second.returncode == 1
    assert second.stdout == ""
    (line,) = second.stderr.splitlines()
    assert "already running" in line and f"pid {os.getpid()}" in line and "http://127.0.0.1:8080/" in line
    assert after == before


def test_the_lock_goes_with_the_process_that_held_it(state_dir: Path):
    holder = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from local.__main__ import acquire_instance_lock as a; a(__import__('pathlib').Path({str(state_dir)!r}))",
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        timeout=60,
    )
    assert holder.returncode == 0
    fd = acquire_instance_lock(state_dir)  # free again: the holder ended (no stale lock to remove)
    os.close(fd)


def test_an_explicit_busy_port_is_a_one_line_error_before_anything_is_wiped(state_dir: Path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_local(state_dir, LATCHKEY_MQTT_PORT=str(port))
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert f"Port {port} (LATCHKEY_MQTT_PORT) is in use" in line
    assert (state_dir / "pki" / "ca.key").read_text() == "the running instance's key"


@pytest.mark.parametrize("value", ["abc", "70000", "-1"])
def test_a_port_that_is_not_a_port_is_refused(value: str):
    with pytest.raises(StartupError, match="LATCHKEY_HTTP_PORT"):
        choose_ports({"LATCHKEY_HTTP_PORT": value})


def test_ports_default_to_free_ones_and_zero_means_any():
    ports = choose_ports({"LATCHKEY_MOTO_PORT": "0"})
    assert ports["LATCHKEY_MOTO_PORT"] == 0
    assert all(0 < ports[var] < 65536 for var in ("LATCHKEY_HTTP_PORT", "LATCHKEY_MQTT_PORT"))


def test_the_wipe_keeps_only_the_lock(state_dir: Path):
    os.close(acquire_instance_lock(state_dir))
    (state_dir / "link").symlink_to(state_dir / "pki")
    wipe_state(state_dir)
    assert [p.name for p in state_dir.iterdir()] == [LOCK_FILE]
