"""The embedded cloud's IoT is as strict as AWS where Latchkey depends on it (local.strict_iot): the CSR
is honoured, DetachThingPrincipal propagates late, and the Lambda adapter converges anyway."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lambdas import definitions as d
from lambdas.adapters import iot as adapter
from local.pki import LocalCA
from local.testing import provision_thing, wait_until

SPKI = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo


def thing() -> str:
    return "lk-" + uuid.uuid4().hex[:16]


def csr_for(key: Any, cn: str) -> str:
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, cn),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme"),
                ]
            )
        )
        .sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture
def detach_delay(cloud: Any) -> Iterator[Any]:
    """Set the detach propagation time for one test; restored afterwards."""
    before = cloud.detach_delay
    yield cloud.set_detach_delay
    cloud.set_detach_delay(before)


def test_create_certificate_from_csr_honours_the_csr(cloud):
    key = ec.generate_private_key(ec.SECP256R1())
    answer = cloud.aws("iot").create_certificate_from_csr(certificateSigningRequest=csr_for(key, "lk-x"))
    cert = x509.load_pem_x509_certificate(answer["certificatePem"].encode())
    assert cert.public_key().public_bytes(*SPKI) == key.public_key().public_bytes(*SPKI)
    assert cert.subject.rfc4514_string() == "O=Acme,CN=lk-x"
    cert.verify_directly_issued_by(cloud.aws_ca.cert)  # the stand-in for Amazon's CA, not the local CA
    assert not cloud.ca.issued_by_me(cert)
    assert (
        answer["certificateId"] == hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    )
    status = cloud.aws("iot").describe_certificate(certificateId=answer["certificateId"])
    assert status["certificateDescription"]["status"] == "INACTIVE"


def test_a_csr_that_does_not_verify_or_has_a_weak_key_is_refused(cloud):
    iot = cloud.aws("iot")
    weak = csr_for(ec.generate_private_key(ec.SECP224R1()), "lk-weak")
    with pytest.raises(iot.exceptions.InvalidRequestException):
        iot.create_certificate_from_csr(certificateSigningRequest=weak)
    good = x509.load_pem_x509_csr(csr_for(ec.generate_private_key(ec.SECP256R1()), "lk-t").encode())
    der = bytearray(good.public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # inside the signature
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM).decode()
    with pytest.raises(iot.exceptions.InvalidRequestException):
        iot.create_certificate_from_csr(certificateSigningRequest=tampered)
    with pytest.raises(adapter.InvalidCsr):  # the Lambda adapter answers 400
        adapter.create_certificate(weak, "lk-weak")


def test_register_certificate_needs_its_ca_registered(cloud, tmp_path):
    iot = cloud.aws("iot")
    other = LocalCA(tmp_path / "unregistered")
    cert = other.issue_client_cert(thing())
    with pytest.raises(iot.exceptions.ClientError) as refused:
        iot.register_certificate(
            certificatePem=cert.cert_pem, caCertificatePem=other.cert_pem, status="INACTIVE"
        )
    assert refused.value.response["Error"]["Code"] == "CertificateValidationException"
    with pytest.raises(iot.exceptions.ClientError) as mismatched:  # registered CA, not the signer
        iot.register_certificate(
            certificatePem=cert.cert_pem, caCertificatePem=cloud.ca_pem, status="INACTIVE"
        )
    assert mismatched.value.response["Error"]["Code"] == "CertificateValidationException"


def test_detach_propagates_late_and_deletes_conflict_meanwhile(cloud, detach_delay):
    iot = cloud.aws("iot")
    detach_delay(1.0)
    me = provision_thing(cloud, thing(), status="INACTIVE")
    iot.detach_policy(policyName=d.POLICY_NAME, target=me.certificate_arn)
    iot.detach_thing_principal(thingName=me.thing, principal=me.certificate_arn)

    assert iot.list_thing_principals(thingName=me.thing)["principals"] == [me.certificate_arn]
    with pytest.raises(iot.exceptions.InvalidRequestException, match="attached"):
        iot.delete_thing(thingName=me.thing)
    with pytest.raises(iot.exceptions.DeleteConflictException):
        iot.delete_certificate(certificateId=me.certificate_id)

    wait_until(lambda: not iot.list_thing_principals(thingName=me.thing)["principals"], timeout=5)
    iot.delete_certificate(certificateId=me.certificate_id)
    iot.delete_thing(thingName=me.thing)


def test_attaching_again_cancels_a_pending_detach(cloud, detach_delay):
    iot = cloud.aws("iot")
    detach_delay(0.2)
    me = provision_thing(cloud, thing(), status="INACTIVE")
    iot.detach_thing_principal(thingName=me.thing, principal=me.certificate_arn)
    iot.attach_thing_principal(thingName=me.thing, principal=me.certificate_arn)
    time.sleep(0.5)  # past the delay: the detach would have landed by now
    assert iot.list_thing_principals(thingName=me.thing)["principals"] == [me.certificate_arn]


def test_the_adapter_waits_for_the_detach_and_converges(cloud, detach_delay):
    """remove_certificate_and_thing under the default propagation time: done in one call."""
    detach_delay(0.3)
    me = provision_thing(cloud, thing())
    began = time.monotonic()
    adapter.remove_certificate_and_thing(me.thing, me.certificate_id)
    print(f"\nremove_certificate_and_thing with a 0.3 s detach: {time.monotonic() - began:.2f} s")
    iot = cloud.aws("iot")
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        iot.describe_certificate(certificateId=me.certificate_id)
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        iot.describe_thing(thingName=me.thing)


def test_a_detach_slower_than_the_budget_is_a_503_and_a_retry_finishes(cloud, detach_delay, monkeypatch):
    detach_delay(30)
    monkeypatch.setattr(adapter, "PROPAGATION_BUDGET_S", 0.5)
    me = provision_thing(cloud, thing())
    with pytest.raises(adapter.IotUnavailable) as busy:
        adapter.remove_certificate_and_thing(me.thing, me.certificate_id)
    assert busy.value.status == 503 and busy.value.headers()["Retry-After"] == str(adapter.RETRY_AFTER_S)
    assert busy.value.body()["error"] == "service_unavailable"
    iot = cloud.aws("iot")
    status = iot.describe_certificate(certificateId=me.certificate_id)["certificateDescription"]["status"]
    assert status == "REVOKED"  # out of service already: the half-done part is only bookkeeping
    detach_delay(0)
    adapter.remove_certificate_and_thing(me.thing, me.certificate_id)  # the owner's retry
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        iot.describe_thing(thingName=me.thing)
