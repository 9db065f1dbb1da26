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

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from local.cloud import EmbeddedCloud
from local.seed import random_password
from local.testing import HttpClient, Owner

CLOUD_FIXTURES = {"cloud", "http", "owner", "make_owner", "start_agent"}
REPO_ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use the embedded cloud are integration tests (`-m "not integration"` skips them)."""
    for item in items:
        if CLOUD_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


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
@pytest.fixture
def start_agent(cloud: EmbeddedCloud, tmp_path: Path) -> Iterator[Callable[[Any], subprocess.Popen[bytes]]]:
    """Start the real device agent for a minted device; always stopped (SIGTERM, then SIGKILL) afterwards."""
    started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(minted: Any, board: str = "linux-browser-test") -> subprocess.Popen[bytes]:
        import json

        home = tmp_path / minted.device_id
        home.mkdir(mode=0o700)
        identity = home / "identity.json"
        fd = os.open(identity, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(
                {
                    "deviceId": minted.device_id,
                    "privateKeyPem": minted.private_key_pem,
                    "apiUrl": cloud.gateway_url,
                },
                fh,
            )
        mac = "02:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(5))  # locally administered
        config = home / "agent.toml"
        config.write_text(
            "\n".join(
                [
                    f'api_url = "{cloud.gateway_url}"',
                    'identity_file = "identity.json"',
                    'state_dir = "state"',
                    f'board = "{board}"',
                    f'mac = "{mac}"',
                    "backoff_initial = 0.5",
                    "backoff_cap = 2",
                    "status_interval = 5",
                    "http_timeout = 5",
                    'log_level = "DEBUG"',
                    "",
                ]
            )
        )
        env = {**os.environ, **cloud.env, "PYTHONUNBUFFERED": "1"}
        log = home / "agent.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "firmware", "--config", str(config)],
                cwd=REPO_ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        started.append((proc, log))
        cloud.adopt_process(proc)  # a second safety net if this fixture's teardown never runs
        return proc

    try:
        yield start
    finally:
        for proc, log in started:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
            # Shown by pytest when the test failed: what the agent saw.
            tail = log.read_text(errors="replace").splitlines()[-40:] if log.exists() else []
            print(f"--- agent log ({log}), exit code {proc.returncode} ---", *tail, sep="\n")
