"""Shared fixtures.

`cloud` is the embedded cloud (moto server, mosquitto, gateway, ...; docs/local.md), started lazily
once per test process: with `pytest -n 2 --dist loadgroup` each xdist worker that runs a test needing
it starts its own (about 1-2 s, free ports, its own temp dir), so cloud tests spread over both workers
and need no `xdist_group`. It sets `os.environ` to the functions' environment for the rest of that
worker's session (the handlers run in-process): a unit test that depends on an environment variable
must set or delete it with `monkeypatch` and call `lambdas.aws_clients.reset()`.

Fixtures:
- `cloud` (session): `local.cloud.EmbeddedCloud`.
- `http` (session): `local.testing.HttpClient` on the gateway: `http.request(method, path, json=...,
  data=..., headers=..., token=...) -> HttpResponse(status, headers, body)` (`.json()`, `.text`).
- `owner` (function): a fresh Cognito user, signed in: `.email`, `.password`, `.sub`, `.token` (ID token),
  `.access_token`, `.request(method, path, json=None, headers=None) -> (status, json)`.
- `make_owner` (function): a factory for more owners in one test (`make_owner()`).
- `start_agent` (function): `start_agent(minted, board=...) -> Popen` runs the real agent
  (`python -m firmware`) for a minted device with a short backoff; always stopped afterwards.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from local.cloud import EmbeddedCloud
from local.processes import stop_process
from local.seed import random_password
from local.testing import HttpClient, Owner

CLOUD_FIXTURES = {"cloud", "http", "owner", "make_owner", "start_agent"}
REPO_ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that use the embedded cloud are integration tests (`-m "not integration"` leaves them out).

    The long fuzz/soak variants (`@pytest.mark.fuzz`) belong to `make fuzz` (`-m fuzz`): without a
    `-m` that names them they are deselected (not skipped), so `make test` stays fast.
    """
    for item in items:
        if CLOUD_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
    if "fuzz" not in (config.getoption("-m") or ""):
        long_runs = [item for item in items if item.get_closest_marker("fuzz")]
        if long_runs:
            config.hook.pytest_deselected(items=long_runs)
            items[:] = [item for item in items if not item.get_closest_marker("fuzz")]


@pytest.fixture(scope="session")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCloud]:
    with EmbeddedCloud(tmp_path_factory.mktemp("cloud")) as embedded:
        yield embedded


@pytest.fixture(scope="session")
def http(cloud: EmbeddedCloud) -> HttpClient:
    return HttpClient(cloud.gateway_url)


@pytest.fixture
def make_owner(cloud: EmbeddedCloud, http: HttpClient) -> Callable[[], Owner]:
    def make() -> Owner:
        email = f"owner-{uuid.uuid4().hex[:12]}@latchkey.test"
        password = random_password()
        sub = cloud.create_user(email, password)
        tokens = cloud.login(email, password)
        return Owner(email, password, sub, tokens["IdToken"], tokens["AccessToken"], http)

    return make


@pytest.fixture
def owner(make_owner: Callable[[], Owner]) -> Owner:
    return make_owner()


@pytest.fixture(autouse=True)
def _embedded_cloud_environment(request: pytest.FixtureRequest) -> None:
    """Before each test that uses the cloud: its environment again, and no stale Lambda caches (a unit
    test that ran before on this worker may have changed the environment or cached another client)."""
    if CLOUD_FIXTURES & set(request.fixturenames):
        request.getfixturevalue("cloud").refresh_environ()


# -- the real device agent as a subprocess -------------------------------------------------------
# Short waits so that tests see a claim within seconds; everything else is the agent's default.
TEST_AGENT_SETTINGS = {
    "backoff_initial": 0.5,
    "backoff_cap": 2,
    "status_interval": 5,
    "http_timeout": 5,
    # Fast MQTT retries: the agent checks with the service only on its 8th failed connect in a row.
    "reconnect_initial": 0.2,
    "reconnect_cap": 1,
}


def random_mac() -> str:
    return "02:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(5))  # locally administered


class AgentLauncher:
    """Starts real agents (`python -m firmware`); `stop_all` ends them (SIGTERM, then SIGKILL)."""

    def __init__(self, cloud: EmbeddedCloud, tmp_path: Path) -> None:
        self.cloud = cloud
        self.tmp_path = tmp_path
        self.started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def __call__(self, minted: Any, board: str = "linux-browser-test") -> subprocess.Popen[bytes]:
        """The agent of a minted device, with the files `latchkey devices mint` writes."""
        import json

        from cli.files import write_exclusive
        from lambdas.logic.device_config import agent_toml

        home = self.tmp_path / minted.device_id
        home.mkdir(mode=0o700)
        identity = {"deviceId": minted.device_id, "privateKeyPem": minted.private_key_pem}
        write_exclusive(home / "identity.json", json.dumps(identity), 0o600)
        settings = {**TEST_AGENT_SETTINGS, "mac": random_mac()}
        text = agent_toml(minted.device_id, self.cloud.gateway_url, board, "identity.json", extra=settings)
        (home / "agent.toml").write_text(text)
        return self.run(home / "agent.toml")

    def run(self, config: Path) -> subprocess.Popen[bytes]:
        """An agent for a given config file (e.g. one downloaded from "Add device")."""
        env = {**os.environ, **self.cloud.env, "PYTHONUNBUFFERED": "1"}
        log = config.parent / "agent.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "firmware", "--config", str(config), "--log-level", "DEBUG"],
                cwd=REPO_ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.started.append((proc, log))
        self.cloud.adopt_process(proc)  # a second safety net if the fixture's teardown never runs
        return proc

    def stop_all(self) -> None:
        for proc, log in self.started:
            stop_process(proc, timeout=10)
            # Shown by pytest when the test failed: what the agent saw.
            tail = log.read_text(errors="replace").splitlines()[-40:] if log.exists() else []
            print(f"--- agent log ({log}), exit code {proc.returncode} ---", *tail, sep="\n")


@pytest.fixture
def start_agent(cloud: EmbeddedCloud, tmp_path: Path) -> Iterator[AgentLauncher]:
    launcher = AgentLauncher(cloud, tmp_path)
    try:
        yield launcher
    finally:
        launcher.stop_all()
