"""Provisioning a claimed device: certificate from the CSR, thing, policy, ack, and crash/race safety."""

from __future__ import annotations

import json
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lambdas import definitions
from lambdas.adapters import iot
from lambdas.dal import devices
from lambdas.handlers.device_api import handler
from lambdas.logic import provisioning
from tests.unit.lambdas.conftest import make_csr, public_pem

DEVICE = "lk-prv0000000000000"
POLL = "/v1/device/poll"
ACK = "/v1/device/ack"


def call(event):
    answer = handler(event, None)
    return answer["statusCode"], json.loads(answer["body"]) if answer["body"] else None


def poll(signed_event, key, device_id=DEVICE, csr=True, **extra):
    body = {"attempt": 0, "agent": {"version": "1.0.0"}, **extra}
    if csr is True:
        body["csr"] = make_csr(key, "whatever-the-device-asks")
    elif csr:
        body["csr"] = csr
    return call(signed_event("POST", POLL, body, key, device_id))


def ack(signed_event, key, certificate_id, device_id=DEVICE):
    return call(signed_event("POST", ACK, {"certificateId": certificate_id}, key, device_id))


def certificates(aws) -> dict[str, str]:
    return {c["certificateId"]: c["status"] for c in aws.iot.list_certificates()["certificates"]}


def principals(aws, thing=DEVICE) -> list[str]:
    return aws.iot.list_thing_principals(thingName=thing)["principals"]


def assert_no_orphans(aws):
    """Every certificate in IoT is the one a device record names."""
    recorded = {d.certificate_id for d in devices.list_all()}
    assert set(certificates(aws)) <= recorded


@pytest.fixture
def claimed(aws, device_key):
    aws.put_device(DEVICE, device_key, state="claimed", ownerId="owner-1")
    return device_key


def test_claimed_poll_provisions_from_the_csr(aws, signed_event, claimed):
    status, body = poll(signed_event, claimed)
    assert status == 200, body
    assert body["status"] == "provisioned" and body["retryAfter"] == 0
    assert body["thingName"] == DEVICE
    assert body["caPem"] == aws.ca_cert_pem
    assert body["endpoint"] == {"host": "iot.test.invalid", "port": 8883}
    assert body["topics"] == definitions.device_topics(DEVICE)

    cert = x509.load_pem_x509_certificate(body["certificatePem"].encode())
    assert public_pem(claimed) == public_pem_of(cert)
    ca = x509.load_pem_x509_certificate(aws.ca_cert_pem.encode())
    cert.verify_directly_issued_by(ca)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == DEVICE
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
    # The validity the stack configures (default one year), not the CA's ten.
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 365

    certificate_id = body["certificateId"]
    arn = iot.certificate_arn(certificate_id)
    assert principals(aws) == [arn]
    thing = aws.iot.describe_thing(thingName=DEVICE)
    assert thing["thingTypeName"] == definitions.THING_TYPE_NAME
    policies = aws.iot.list_attached_policies(target=arn)["policies"]
    assert [p["policyName"] for p in policies] == [definitions.POLICY_NAME]
    assert certificates(aws) == {certificate_id: "INACTIVE"}

    record = aws.device(DEVICE)
    assert record["state"] == "provisioned" and record["certificateStatus"] == "INACTIVE"
    assert record["certificateId"] == certificate_id and record["certificatePem"] == body["certificatePem"]
    assert record["thingName"] == DEVICE and record["agent"] == {"version": "1.0.0"}
    assert aws.audit_actions(DEVICE) == ["certificate.issued"]


def public_pem_of(cert: x509.Certificate) -> str:
    from cryptography.hazmat.primitives import serialization

    return (
        cert.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def test_repoll_before_ack_redelivers_the_same_certificate(aws, signed_event, claimed):
    first = poll(signed_event, claimed)[1]
    second_status, second = poll(signed_event, claimed)
    third_status, third = poll(signed_event, claimed, csr=None)  # no CSR needed for re-delivery
    assert second_status == third_status == 200
    assert first["certificateId"] == second["certificateId"] == third["certificateId"]
    assert first["certificatePem"] == third["certificatePem"]
    assert len(certificates(aws)) == 1


def test_ack_activates(aws, signed_event, claimed):
    body = poll(signed_event, claimed)[1]
    certificate_id = body["certificateId"]
    assert ack(signed_event, claimed, certificate_id) == (204, None)
    assert certificates(aws) == {certificate_id: "ACTIVE"}
    record = aws.device(DEVICE)
    assert record["state"] == "active" and record["certificateStatus"] == "ACTIVE"
    assert aws.audit_actions(DEVICE) == ["certificate.issued", "certificate.activated"]

    assert ack(signed_event, claimed, certificate_id) == (204, None)  # idempotent
    assert aws.audit_actions(DEVICE) == ["certificate.issued", "certificate.activated"]
    status, again = poll(signed_event, claimed)  # active device that lost its files: same certificate
    assert status == 200 and again["certificateId"] == certificate_id
    assert len(certificates(aws)) == 1


def test_ack_errors(aws, signed_event, claimed):
    wrong = "0" * 64
    assert ack(signed_event, claimed, wrong)[0] == 409  # claimed, nothing delivered yet
    certificate_id = poll(signed_event, claimed)[1]["certificateId"]
    status, body = ack(signed_event, claimed, wrong)
    assert status == 409 and body["error"] == "conflict"
    assert ack(signed_event, claimed, "not-an-id")[0] == 400
    assert certificates(aws) == {certificate_id: "INACTIVE"}
    assert ack(signed_event, claimed, certificate_id)[0] == 204
    assert ack(signed_event, claimed, wrong)[0] == 409  # active with another id


def test_ack_unknown_and_revoked(aws, signed_event, device_key):
    assert ack(signed_event, device_key, "a" * 64)[0] == 404
    aws.put_device(DEVICE, device_key, state="revoked", certificateId="a" * 64)
    assert ack(signed_event, device_key, "a" * 64)[0] == 403


def test_csr_of_another_key_is_refused(aws, signed_event, claimed):
    other = ec.generate_private_key(ec.SECP256R1())
    status, body = poll(signed_event, claimed, csr=make_csr(other))
    assert status == 400 and "not the key registered" in body["message"]
    assert certificates(aws) == {} and aws.device(DEVICE)["state"] == "claimed"


@pytest.mark.parametrize(
    ("csr", "fragment"),
    [
        (None, "required"),
        ("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", "not a PEM"),
    ],
)
def test_missing_or_malformed_csr(aws, signed_event, claimed, csr, fragment):
    status, body = poll(signed_event, claimed, csr=csr)
    assert status == 400 and fragment in body["message"]


def test_csr_with_broken_signature(aws, signed_event, claimed):
    from cryptography.hazmat.primitives import serialization

    csr = x509.load_pem_x509_csr(make_csr(claimed).encode())
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # flip a bit of the signature
    import base64

    pem = "-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(bytes(der)).decode()
    pem += "-----END CERTIFICATE REQUEST-----\n"
    status, _ = poll(signed_event, claimed, csr=pem)
    assert status == 400


def test_rsa_device(aws, signed_event, rsa_device_key):
    aws.put_device(DEVICE, rsa_device_key, state="claimed")
    status, body = poll(signed_event, rsa_device_key)
    assert status == 200
    cert = x509.load_pem_x509_certificate(body["certificatePem"].encode())
    assert public_pem_of(cert) == public_pem(rsa_device_key)
    assert ack(signed_event, rsa_device_key, body["certificateId"])[0] == 204


def test_aws_issued_mode(aws, signed_event, claimed, monkeypatch):
    monkeypatch.setenv("LATCHKEY_CERT_MODE", "aws")
    status, body = poll(signed_event, claimed)
    assert status == 200
    assert certificates(aws) == {body["certificateId"]: "INACTIVE"}
    assert ack(signed_event, claimed, body["certificateId"])[0] == 204


def test_endpoint_from_describe_endpoint(aws, signed_event, claimed, monkeypatch):
    monkeypatch.delenv("LATCHKEY_IOT_ENDPOINT")
    body = poll(signed_event, claimed)[1]
    assert body["endpoint"]["port"] == 8883
    assert body["endpoint"]["host"].endswith(".amazonaws.com")


def test_deleted_and_revoked_devices(aws, signed_event, device_key):
    aws.put_device(DEVICE, device_key, state="deleted")
    assert poll(signed_event, device_key)[0] == 404
    aws.put_device(DEVICE, device_key, state="revoked")
    assert poll(signed_event, device_key)[0] == 403


# --- crash and race safety -------------------------------------------------------------------------


def fail_once(monkeypatch, module, name):
    original = getattr(module, name)
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError(f"injected failure in {name}")
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, flaky)
    return calls


def test_attach_failure_leaves_nothing_and_the_next_poll_converges(aws, signed_event, claimed, monkeypatch):
    fail_once(monkeypatch, iot, "attach")
    assert poll(signed_event, claimed)[0] == 500
    assert certificates(aws) == {}  # the unattached certificate was deleted at once
    status, body = poll(signed_event, claimed)
    assert status == 200
    assert certificates(aws) == {body["certificateId"]: "INACTIVE"}
    assert principals(aws) == [iot.certificate_arn(body["certificateId"])]
    assert_no_orphans(aws)


def test_record_write_failure_is_completed_by_the_next_poll(aws, signed_event, claimed, monkeypatch):
    fail_once(monkeypatch, devices, "transition")
    assert poll(signed_event, claimed)[0] == 500
    (left_behind,) = certificates(aws)  # attached and INACTIVE: the retry adopts it
    status, body = poll(signed_event, claimed)
    assert status == 200 and body["certificateId"] == left_behind
    assert certificates(aws) == {left_behind: "INACTIVE"}
    assert_no_orphans(aws)
    assert aws.audit_actions(DEVICE) == ["certificate.issued"]


def test_crash_after_attach_is_adopted(aws, signed_event, claimed):
    """What a Lambda timeout between attach and the record write leaves behind."""
    iot.ensure_thing(DEVICE)
    certificate_id, _ = iot.create_certificate(make_csr(claimed), DEVICE)
    iot.attach(DEVICE, certificate_id)
    status, body = poll(signed_event, claimed)
    assert status == 200 and body["certificateId"] == certificate_id
    assert len(certificates(aws)) == 1


def test_certificate_of_another_key_on_the_thing_is_not_adopted(aws, signed_event, claimed):
    other = ec.generate_private_key(ec.SECP256R1())
    iot.ensure_thing(DEVICE)
    foreign, _ = iot.create_certificate(make_csr(other), DEVICE)
    iot.attach(DEVICE, foreign)
    body = poll(signed_event, claimed)[1]
    assert body["certificateId"] != foreign


def test_device_deleted_during_provisioning(aws, signed_event, claimed, monkeypatch):
    original = iot.attach

    def attach_then_owner_deletes(thing, certificate_id):
        original(thing, certificate_id)
        aws.force_delete(DEVICE)

    monkeypatch.setattr(iot, "attach", attach_then_owner_deletes)
    assert poll(signed_event, claimed)[0] == 404
    assert certificates(aws) == {}
    assert aws.iot.list_things()["things"] == []


def test_device_revoked_during_provisioning(aws, signed_event, claimed, monkeypatch):
    original = iot.attach

    def attach_then_owner_revokes(thing, certificate_id):
        original(thing, certificate_id)
        aws.force(DEVICE, {"state": "revoked"})

    monkeypatch.setattr(iot, "attach", attach_then_owner_revokes)
    assert poll(signed_event, claimed)[0] == 403
    assert certificates(aws) == {}
    assert principals(aws) == []


def test_revoked_during_ack_undoes_the_activation(aws, signed_event, claimed, monkeypatch):
    certificate_id = poll(signed_event, claimed)[1]["certificateId"]
    original = iot.activate_certificate

    def activate_then_owner_revokes(cid):
        original(cid)
        aws.force(DEVICE, {"state": "revoked"})

    monkeypatch.setattr(iot, "activate_certificate", activate_then_owner_revokes)
    assert ack(signed_event, claimed, certificate_id)[0] == 403
    assert certificates(aws) == {certificate_id: "REVOKED"}


def test_concurrent_polls_leave_one_certificate(aws, signed_event, claimed):
    events = [signed_event("POST", POLL, {"csr": make_csr(claimed)}, claimed, DEVICE) for _ in range(6)]
    results: list[tuple[int, dict]] = []
    barrier = threading.Barrier(len(events))

    def run(event):
        barrier.wait()
        results.append(call(event))

    threads = [threading.Thread(target=run, args=(e,)) for e in events]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == len(events)
    assert {status for status, _ in results} == {200}, results
    recorded = aws.device(DEVICE)["certificateId"]
    assert {body["certificateId"] for _, body in results} == {recorded}
    assert certificates(aws) == {recorded: "INACTIVE"}
    assert principals(aws) == [iot.certificate_arn(recorded)]


# --- the adapter on its own ------------------------------------------------------------------------


def test_remove_certificate_and_thing(aws, signed_event, claimed):
    body = poll(signed_event, claimed)[1]
    ack(signed_event, claimed, body["certificateId"])
    iot.remove_certificate_and_thing(DEVICE, body["certificateId"])
    iot.remove_certificate_and_thing(DEVICE, body["certificateId"])  # again: nothing left to do
    assert certificates(aws) == {}
    assert aws.iot.list_things()["things"] == []


def test_revoke_certificate_is_idempotent(aws, signed_event, claimed):
    certificate_id = poll(signed_event, claimed)[1]["certificateId"]
    iot.revoke_certificate(certificate_id)
    iot.revoke_certificate(certificate_id)
    iot.revoke_certificate("f" * 64)  # unknown: fine
    assert certificates(aws) == {certificate_id: "REVOKED"}


def test_activate_missing_certificate(aws):
    with pytest.raises(iot.CertificateMissing):
        iot.activate_certificate("e" * 64)


def test_ensure_thing_is_idempotent(aws):
    iot.ensure_thing("t1", {"a": "1"})
    iot.ensure_thing("t1", {"a": "2"})
    assert [t["thingName"] for t in aws.iot.list_things()["things"]] == ["t1"]


def test_provision_requires_ca_pem(aws, claimed, monkeypatch):
    monkeypatch.delenv("LATCHKEY_CA_PEM")
    device = devices.get(DEVICE)
    with pytest.raises(RuntimeError):
        provisioning.provision(device, make_csr(claimed), now=time.time())
    assert certificates(aws) == {}


def test_mqtt_publish_via_iot_data(aws, monkeypatch):
    from lambdas.adapters import iot, mqtt

    published = []
    monkeypatch.setattr(
        iot, "iot_data_client", lambda: type("C", (), {"publish": lambda self, **kw: published.append(kw)})()
    )
    mqtt.publish("latchkey/things/x/commands", {"command": "release"})
    assert published == [
        {"topic": "latchkey/things/x/commands", "qos": 1, "payload": b'{"command":"release"}'}
    ]


def test_mqtt_bridge_unreachable(aws, monkeypatch, tmp_path):
    import socket

    from lambdas.adapters import mqtt

    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(aws.ca_cert_pem)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(
        "LATCHKEY_MQTT_BRIDGE", json.dumps({"host": "127.0.0.1", "port": port, "cafile": str(ca_file)})
    )
    with pytest.raises(mqtt.PublishFailed):
        mqtt.publish("t", {"a": 1})
