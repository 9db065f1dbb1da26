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
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from local.cloud import EmbeddedCloud
from local.seed import random_password
from local.testing import HttpClient, Owner

CLOUD_FIXTURES = {"cloud", "http", "owner", "make_owner"}


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
