"""A second owner can do nothing to the first owner's device, through any route, and learns nothing."""

from __future__ import annotations

import json

import pytest

from lambdas import definitions
from lambdas.handlers.owner_api import handler
from tests.unit.lambdas.conftest import owner_event
from tests.unit.lambdas.test_owner_api import DEVICE, active_device, cert_status, thing_exists

MISSING = "lk-nosuchdevice0000"
ATTEMPTS = [
    ("GET", "/v1/devices/{id}", None),
    ("PATCH", "/v1/devices/{id}", {"name": "Mine now"}),
    ("DELETE", "/v1/devices/{id}", None),
    ("POST", "/v1/devices/{id}/revoke", None),
    ("POST", "/v1/devices/{id}/release", None),
    ("GET", "/v1/devices/{id}/events", None),
    ("GET", "/v1/devices/{id}/state", None),
    ("PATCH", "/v1/devices/{id}/state", {"relays": {"r1": True}}),
    ("GET", "/v1/devices/{id}/shares", None),
    ("POST", "/v1/devices/{id}/shares", {"email": "thief@example.com", "role": "operator"}),
    ("DELETE", "/v1/devices/{id}/shares/{userId}", None),
    ("POST", "/v1/devices/{id}/transfer", {"email": "thief@example.com"}),
    ("POST", "/v1/devices/{id}/rotate", None),
]


def call(event):
    answer = handler(event, None)
    return answer["statusCode"], json.loads(answer["body"]) if answer["body"] else None


@pytest.fixture
def victim(aws, monkeypatch):
    from lambdas.adapters import mqtt

    sent: list = []
    monkeypatch.setattr(mqtt, "publish", lambda topic, payload, **_: sent.append(topic))
    cert = active_device(aws, owner="owner-1")
    from lambdas.dal import audit

    audit.record(audit.event_item(DEVICE, "device.claimed", "owner-1", "198.51.100.1"))
    return cert, sent


def test_every_device_route_is_covered():
    owner_device_routes = {
        (r.method, r.path) for r in definitions.ROUTES if r.auth and r.path.startswith("/v1/devices/{id}")
    }
    assert owner_device_routes == {(m, p) for m, p, _ in ATTEMPTS}


def test_another_owner_gets_404_everywhere_and_changes_nothing(aws, victim):
    cert, sent = victim
    before = aws.device(DEVICE)
    for method, path, body in ATTEMPTS:
        status, answer = call(owner_event(method, path.format(id=DEVICE, userId="owner-2"), "owner-2", body))
        assert status == 404, (method, path)
        # exactly what a device that does not exist answers: no existence oracle
        assert (status, answer) == call(
            owner_event(method, path.format(id=MISSING, userId="owner-2"), "owner-2", body)
        )
    assert aws.device(DEVICE) == before
    assert cert_status(aws, cert["certificateId"]) == "ACTIVE" and thing_exists(aws, DEVICE)
    assert aws.audit_actions(DEVICE) == ["device.claimed"]
    assert sent == []  # no release command reached the device


def test_another_owner_does_not_see_it_in_the_list(aws, victim):
    assert call(owner_event("GET", "/v1/devices", "owner-2")) == (200, {"devices": []})
    assert [d["id"] for d in call(owner_event("GET", "/v1/devices", "owner-1"))[1]["devices"]] == [DEVICE]


@pytest.mark.parametrize("device_id", ["..", "lk-" + "a" * 300, "lk-%00", "LK-OWNER000000AAAA"])
def test_odd_ids_are_404(aws, victim, device_id):
    assert call(owner_event("GET", f"/v1/devices/{device_id}", "owner-1"))[0] == 404


def test_the_owner_still_can(aws, victim):
    assert call(owner_event("GET", f"/v1/devices/{DEVICE}", "owner-1"))[0] == 200
