"""Fixtures of the security tests.

They reuse the unit fixtures (`aws`: in-process moto seeded like the stack; `signed_event`; `device_key`)
and the embedded cloud ones from tests/conftest.py (`cloud`, `http`, `owner`, `make_owner`,
`start_agent`). `lab` (tests/security/flows.py) drives the service in-process like devices and owners
do; its MQTT publishes (the release command) are recorded in `lab.published` instead of sent.

The long variants (`@pytest.mark.fuzz`) run only under `make fuzz` (`pytest -m fuzz`): without such a
`-m` they are deselected by tests/conftest.py (deselected, not skipped), so `make test` stays bounded.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.security.flows import Lab
from tests.unit.lambdas.conftest import (  # noqa: F401 (fixtures)
    _serialize_moto_requests,
    _share_botocore_session,
    aws,
    device_key,
    reset_caches,
    signed_event_fixture,
    test_ca,
)


@pytest.fixture
def lab(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    from lambdas.adapters import mqtt

    request.getfixturevalue("aws")
    made = Lab()
    monkeypatch.setattr(mqtt, "publish", lambda topic, payload, **_: made.published.append((topic, payload)))
    yield made
