"""Certificate rotation on the service (moto): the device's four steps through the device API handler,
the owner's and operator's request, expiry, and rotation racing revoke, release and delete."""

from __future__ import annotations

import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from lambdas import constants as c
from lambdas.adapters import iot, mqtt
from lambdas.domain import times
from lambdas.handlers.device_api import handler
from lambdas.logic import invariants, revocation, rotation
from tests.unit.lambdas.conftest import make_csr, public_pem

DEVICE = "lk-rot0000000000000"
POLL, ACK, ROTATE = "/v1/device/poll", "/v1/device/ack", "/v1/device/rotate"
# The invariant rules about certificates (devices put straight into the table lack their claim events).
CERTIFICATE_RULES = {
    "certificate-orphan",
    "certificate-status",
    "certificate-missing",
    "certificate-shared",
    "certificate-detached",
    "certificate-multi-thing",
    "policy-missing",
    "rotation-state",
    "rotation-certificate",
    "rotation-expired",
}


def call(event):
    answer = handler(event, None)
    return answer["statusCode"], json.loads(answer["body"]) if answer["body"] else None


def certificates(aws) -> dict[str, str]:
    return {c_["certificateId"]: c_["status"] for c_ in aws.iot.list_certificates()["certificates"]}


def problems() -> list[str]:
    return [str(p) for p in invariants.check() if p.kind in CERTIFICATE_RULES]


@pytest.fixture
def notices(monkeypatch):
    sent: list = []
    monkeypatch.setattr(
        mqtt, "publish", lambda topic, payload, retain=False: sent.append((topic, payload, retain))
    )
    return sent


@pytest.fixture
def active(aws, signed_event, device_key, notices):
    """An active device provisioned and acknowledged through the device API; (key, certificate id)."""
    aws.put_device(DEVICE, device_key, state="claimed", ownerId="owner-1")
    status, body = call(signed_event("POST", POLL, {"csr": make_csr(device_key)}, device_key, DEVICE))
    assert status == 200, body
    assert (
        call(signed_event("POST", ACK, {"certificateId": body["certificateId"]}, device_key, DEVICE))[0]
        == 204
    )
    return device_key, body["certificateId"]


def step(signed_event, key, **body):
    return call(signed_event("POST", ROTATE, body, key, DEVICE))


def deliver(signed_event, key, new_key):
    return step(signed_event, key, step="request", csr=make_csr(new_key))


def test_a_rotation_overlaps_two_certificates_then_keeps_only_the_new_one(aws, signed_event, active):
    old_key, old_id = active
    new_key = ec.generate_private_key(ec.SECP256R1())

    # request: a second certificate for the new key, INACTIVE, beside the current one
    status, body = deliver(signed_event, old_key, new_key)
    assert status == 200, body
    new_id = body["certificateId"]
    assert body["status"] == "rotating" and new_id != old_id
    cert = x509.load_pem_x509_certificate(body["certificatePem"].encode())
    assert public_pem(cert) == public_pem(new_key)
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 365  # the configured validity
    assert certificates(aws) == {old_id: "ACTIVE", new_id: "INACTIVE"}
    # asked again with the same key (the answer was lost): the same certificate, nothing new
    again = deliver(signed_event, old_key, new_key)[1]
    assert again["certificateId"] == new_id and len(certificates(aws)) == 2
    assert problems() == []

    # ack: both ACTIVE - the overlap, tracked on the record, which the invariants accept
    assert step(signed_event, old_key, step="ack", certificateId=new_id) == (204, None)
    assert certificates(aws) == {old_id: "ACTIVE", new_id: "ACTIVE"}
    assert problems() == []

    # complete (signed with the new key): the old certificate is gone, the new one and its key are the device's
    assert step(signed_event, new_key, step="complete", certificateId=new_id) == (204, None)
    assert certificates(aws) == {new_id: "ACTIVE"}
    record = aws.device(DEVICE)
    assert record["certificateId"] == new_id and record["publicKeyPem"] == public_pem(new_key)
    assert "rotation" not in record and "rotationId" not in record
    assert DEVICE not in aws.dropped_connections  # the live connection is the new certificate's
    assert problems() == []
    assert aws.audit_actions(DEVICE)[-3:] == [
        "certificate.issued",
        "certificate.activated",
        "certificate.rotated",
    ]

    # the lost answer to complete: repeating it is fine; the old key no longer signs anything
    assert step(signed_event, new_key, step="complete", certificateId=new_id) == (204, None)
    assert call(signed_event("POST", POLL, {}, old_key, DEVICE))[0] == 401
    status, polled = call(signed_event("POST", POLL, {}, new_key, DEVICE))
    assert status == 200 and polled["certificateId"] == new_id


def test_steps_out_of_order_and_bad_bodies_get_clear_answers(aws, signed_event, active):
    old_key, old_id = active
    new_key = ec.generate_private_key(ec.SECP256R1())
    assert step(signed_event, old_key, step="dance")[0] == 400
    assert step(signed_event, old_key, step="request")[0] == 400
    assert step(signed_event, old_key, step="request", csr="not a csr")[0] == 400
    assert step(signed_event, old_key, step="ack", certificateId="xyz")[0] == 400
    assert step(signed_event, old_key, step="ack", certificateId="f" * 64)[0] == 409
    # a stranger's key signs nothing, not even with a CSR of its own
    assert deliver(signed_event, new_key, new_key)[0] == 401
    new_id = deliver(signed_event, old_key, new_key)[1]["certificateId"]
    status, body = step(signed_event, old_key, step="complete", certificateId=new_id)
    assert status == 409 and "ack" in body["message"]
    assert certificates(aws)[old_id] == "ACTIVE"


def test_another_key_replaces_the_pending_certificate(aws, signed_event, active):
    old_key, old_id = active
    first = deliver(signed_event, old_key, ec.generate_private_key(ec.SECP256R1()))[1]["certificateId"]
    second = deliver(signed_event, old_key, ec.generate_private_key(ec.SECP256R1()))[1]["certificateId"]
    assert first != second
    assert certificates(aws) == {old_id: "ACTIVE", second: "INACTIVE"}
    assert "certificate.rotation-abandoned" in aws.audit_actions(DEVICE)
    assert problems() == []


def test_an_expired_rotation_is_abandoned_and_the_old_certificate_kept(aws, signed_event, active):
    old_key, old_id = active
    new_key = ec.generate_private_key(ec.SECP256R1())
    new_id = deliver(signed_event, old_key, new_key)[1]["certificateId"]
    assert step(signed_event, old_key, step="ack", certificateId=new_id)[0] == 204
    # The device went offline for longer than the window.
    record = aws.device(DEVICE)
    aws.force(DEVICE, {"rotation": {**record["rotation"], "expiresAt": times.iso(times.now() - 60)}})
    assert [p.kind for p in invariants.check() if p.kind == "rotation-expired"] == ["rotation-expired"]

    status, body = step(signed_event, new_key, step="complete", certificateId=new_id)
    assert status == 409 and "expired" in body["message"]
    assert certificates(aws) == {old_id: "ACTIVE"}  # the device still connects with its old certificate
    assert aws.device(DEVICE)["publicKeyPem"] == public_pem(old_key)
    assert problems() == []
    # ... and starts again.
    assert deliver(signed_event, old_key, new_key)[0] == 200


def test_owner_and_operator_requests_send_a_retained_notice_and_are_idempotent(aws, active, notices):
    view = rotation.request(DEVICE, actor="owner-1", source_ip=None, owner_id="owner-1")
    assert view["rotation"]["step"] == "requested"
    assert view["certificateExpiresAt"] is not None
    topic, payload, retain = notices[-1]
    assert topic == c.TOPIC_COMMANDS.format(thing=DEVICE) and retain
    assert payload == {"command": "rotate", "rotationId": view["rotation"]["id"]}
    again = rotation.request(DEVICE, actor="operator", source_ip=None)
    assert again["rotation"]["id"] == view["rotation"]["id"] and len(notices) == 2
    assert aws.audit_actions(DEVICE).count("certificate.rotation-requested") == 1
    with pytest.raises(rotation.NotFound):
        rotation.request(DEVICE, actor="owner-2", source_ip=None, owner_id="owner-2")


def test_the_owner_request_is_carried_through_to_the_completed_rotation(aws, signed_event, active, notices):
    old_key, _ = active
    requested = rotation.request(DEVICE, actor="owner-1", source_ip=None, owner_id="owner-1")["rotation"][
        "id"
    ]
    new_key = ec.generate_private_key(ec.SECP256R1())
    body = deliver(signed_event, old_key, new_key)[1]
    assert body["rotationId"] == requested
    step(signed_event, old_key, step="ack", certificateId=body["certificateId"])
    step(signed_event, new_key, step="complete", certificateId=body["certificateId"])
    # the notice is cleared (an empty retained message)
    assert notices[-1] == (c.TOPIC_COMMANDS.format(thing=DEVICE), None, True)


def test_only_an_active_device_rotates(aws, signed_event, device_key, notices):
    aws.put_device(DEVICE, device_key, state="claimed", ownerId="owner-1")
    with pytest.raises(rotation.Conflict):
        rotation.request(DEVICE, actor="operator", source_ip=None)
    new_key = ec.generate_private_key(ec.SECP256R1())
    assert deliver(signed_event, device_key, new_key)[0] == 409


def test_doctor_lists_certificates_close_to_expiry(aws, active, monkeypatch):
    monkeypatch.setenv(c.ENV_CERT_VALIDITY_DAYS, "20")  # a certificate issued today expires in 20 days
    from lambdas.dal import devices

    assert [e["deviceId"] for e in rotation.expiring(devices.list_all(), 30 * 86400)] == [DEVICE]
    assert rotation.expiring(devices.list_all(), 10 * 86400) == []


# --- races -------------------------------------------------------------------------------------------


def test_revoke_during_a_rotation_removes_the_pending_certificate_too(aws, signed_event, active):
    old_key, _ = active
    new_key = ec.generate_private_key(ec.SECP256R1())
    new_id = deliver(signed_event, old_key, new_key)[1]["certificateId"]
    step(signed_event, old_key, step="ack", certificateId=new_id)
    revocation.revoke(DEVICE, actor="owner-1", source_ip=None, owner_id="owner-1")
    assert "ACTIVE" not in certificates(aws).values()
    assert "rotation" not in aws.device(DEVICE)
    assert (
        step(signed_event, new_key, step="complete", certificateId=new_id)[0] == 401
    )  # the new key is unknown
    assert step(signed_event, old_key, step="complete", certificateId=new_id)[0] == 403
    assert problems() == []


def test_revoke_between_issuing_and_recording_leaves_no_certificate_behind(
    aws, signed_event, active, monkeypatch
):
    old_key, _ = active
    issue = iot.create_certificate

    def issue_then_revoke(csr, thing):
        answer = issue(csr, thing)
        revocation.revoke(DEVICE, actor="owner-1", source_ip=None, owner_id="owner-1")
        return answer

    monkeypatch.setattr(iot, "create_certificate", issue_then_revoke)
    status, _ = deliver(signed_event, old_key, ec.generate_private_key(ec.SECP256R1()))
    assert status == 403
    assert "ACTIVE" not in certificates(aws).values() and "INACTIVE" not in certificates(aws).values()
    assert problems() == []


@pytest.mark.parametrize("change", ["release", "delete"])
def test_release_or_delete_while_completing_leaves_one_consistent_outcome(
    aws, signed_event, active, monkeypatch, change
):
    old_key, _ = active
    new_key = ec.generate_private_key(ec.SECP256R1())
    new_id = deliver(signed_event, old_key, new_key)[1]["certificateId"]
    step(signed_event, old_key, step="ack", certificateId=new_id)
    retire = iot.retire_certificate

    def retire_then_change(thing, certificate_id):
        retire(thing, certificate_id)
        if change == "release":
            revocation.release(DEVICE, "owner-1", None, "gone")
        else:
            revocation.delete(DEVICE, "owner-1", None, "gone")

    monkeypatch.setattr(iot, "retire_certificate", retire_then_change)
    status, _ = step(signed_event, new_key, step="complete", certificateId=new_id)
    record = aws.device(DEVICE)
    if change == "release":
        assert status == 409  # released meanwhile: no longer active, nothing to complete
        assert record["state"] == "unclaimed" and "certificateId" not in record and "rotation" not in record
    else:
        assert status == 404 and record is None
    assert certificates(aws) == {}
    assert problems() == []


def test_delete_while_acknowledging_revokes_the_activation(aws, signed_event, active, monkeypatch):
    old_key, _ = active
    new_key = ec.generate_private_key(ec.SECP256R1())
    new_id = deliver(signed_event, old_key, new_key)[1]["certificateId"]
    activate = iot.activate_certificate

    def activate_then_delete(certificate_id):
        activate(certificate_id)
        revocation.delete(DEVICE, "owner-1", None, "gone")

    monkeypatch.setattr(iot, "activate_certificate", activate_then_delete)
    status, _ = step(signed_event, old_key, step="ack", certificateId=new_id)
    assert status in (404, 409)
    assert certificates(aws) == {}
    assert problems() == []
