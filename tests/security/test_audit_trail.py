"""Every ownership and certificate change lands in the audit trail with who, what, when and where."""

from __future__ import annotations

from lambdas.dal import audit
from lambdas.handlers import owner_api
from lambdas.logic import claims
from lambdas.logic.manufacturing import mint_device
from tests.unit.lambdas.conftest import owner_event
from tests.unit.lambdas.test_provisioning import ack, poll


def _trail(device_id):
    return sorted(audit.list_events(device_id), key=lambda e: e["eventKey"])


def _check(event, action, actor, source_ip):
    assert event["action"] == action
    assert event["actor"] == actor
    assert event["at"].endswith("Z")  # when (UTC)
    assert event.get("sourceIp") == source_ip


def test_the_whole_life_of_a_device_is_on_record(aws, signed_event, device_key, monkeypatch):
    from lambdas.adapters import mqtt

    monkeypatch.setattr(mqtt, "publish", lambda topic, payload: None)  # no broker in unit tests
    minted = mint_device(None, "audit", "manufacturer")
    device_id = minted.device_id
    aws.put_device(
        device_id, device_key, state="unclaimed", claimCodeHash=aws.device(device_id)["claimCodeHash"]
    )
    claims.claim_device("owner-a", None, minted.display_code, None, "198.51.100.20")
    status, body = poll(signed_event, device_key, device_id)
    assert status == 200
    assert ack(signed_event, device_key, body["certificateId"], device_id)[0] == 204
    assert (
        owner_api.handler(
            owner_event("POST", f"/v1/devices/{device_id}/revoke", "owner-a", source_ip="198.51.100.21"), None
        )["statusCode"]
        == 200
    )
    assert owner_api.handler(
        owner_event("DELETE", f"/v1/devices/{device_id}", "owner-a", source_ip="198.51.100.22"), None
    )["statusCode"] in (200, 204)

    trail = _trail(device_id)
    actions = [e["action"] for e in trail]
    for expected in (
        "device.minted",
        "device.claimed",
        "certificate.issued",
        "certificate.activated",
        "certificate.revoked",
        "device.deleted",
    ):
        assert expected in actions, (expected, actions)
    by_action = {e["action"]: e for e in trail}
    _check(by_action["device.claimed"], "device.claimed", "owner-a", "198.51.100.20")
    _check(by_action["certificate.revoked"], "certificate.revoked", "owner-a", "198.51.100.21")
    _check(by_action["device.deleted"], "device.deleted", "owner-a", "198.51.100.22")
    assert by_action["certificate.issued"]["detail"].get("certificateId") == body["certificateId"]


def test_release_is_on_record(aws, signed_event, device_key, monkeypatch):
    from lambdas.adapters import mqtt

    monkeypatch.setattr(mqtt, "publish", lambda topic, payload: None)
    aws.put_device("lk-audit000000000r", device_key, state="claimed", ownerId="owner-b")
    status, body = poll(signed_event, device_key, "lk-audit000000000r")
    assert status == 200
    assert ack(signed_event, device_key, body["certificateId"], "lk-audit000000000r")[0] == 204
    answer = owner_api.handler(
        owner_event("POST", "/v1/devices/lk-audit000000000r/release", "owner-b", source_ip="198.51.100.30"),
        None,
    )
    assert answer["statusCode"] == 200
    released = [e for e in _trail("lk-audit000000000r") if e["action"] == "device.released"]
    assert len(released) == 1
    _check(released[0], "device.released", "owner-b", "198.51.100.30")
