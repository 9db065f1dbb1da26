"""Issuing a claimed device its certificate, re-delivering it, and activating it on ack.

`provision` is a short sequence of idempotent steps, so that a poll that dies half-way (Lambda timeout,
throttling, a lost race) is completed by the next poll and leaves nothing behind:

1. check the CSR: it must verify and carry the device's registered public key;
2. `ensure_thing`: create the thing (name = device id) unless it exists;
3. reuse the INACTIVE certificate for this key already attached to the thing (left by an interrupted
   attempt), or issue a new INACTIVE one (`create_certificate`);
4. `attach`: policy to certificate, certificate to thing. If this fails for a certificate this attempt
   issued, the certificate is deleted at once (nothing else can find it yet);
5. one DynamoDB transaction: device `claimed` -> `provisioned` with the certificate, plus the audit event
   `certificate.issued`. If the write fails for an unexpected reason the certificate stays attached and
   step 3 of the next poll adopts it. If the condition fails (another poll won, or the owner deleted,
   revoked or released the device meanwhile), the device is re-read and whatever this attempt holds that
   the record does not name is removed - and the thing too when the device is gone.

The certificate stays INACTIVE until the device acknowledges it (`acknowledge`), so an answer lost on
the way to the device strands nothing: the next poll re-delivers the same certificate.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from lambdas import constants as c
from lambdas import definitions
from lambdas.adapters import iot
from lambdas.dal import devices
from lambdas.dal.devices import ConditionFailed
from lambdas.domain import times
from lambdas.domain.device import Device, State
from lambdas.errors import BadRequest, Conflict, Forbidden, NotFound, ServiceUnavailable

log = logging.getLogger("latchkey.provisioning")

ACTOR = "device"


# --- the CSR ---------------------------------------------------------------------------------------


def check_csr(csr_pem: Any, public_key_pem: str) -> str:
    """The CSR PEM if it is well-formed, self-signed and carries exactly the device's registered key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    if not csr_pem:
        raise BadRequest("A certificate signing request (csr) is required to provision this device.")
    if not isinstance(csr_pem, str) or len(csr_pem.encode()) > c.MAX_CSR_BYTES:
        raise BadRequest(f"csr must be a PEM string of at most {c.MAX_CSR_BYTES} bytes.")
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
    except ValueError:
        raise BadRequest("csr is not a PEM certificate signing request.") from None
    if not csr.is_signature_valid:
        raise BadRequest("The signature of the certificate signing request does not verify.")
    der, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    try:
        device_key = serialization.load_pem_public_key(public_key_pem.encode())
        matches = csr.public_key().public_bytes(der, spki) == device_key.public_bytes(der, spki)
    except (ValueError, TypeError):
        matches = False
    if not matches:
        raise BadRequest("The CSR's public key is not the key registered for this device.")
    return csr_pem


# --- the answer ------------------------------------------------------------------------------------


def ca_pem() -> str:
    value = os.environ.get(c.ENV_CA_PEM, "")
    if not value:
        raise RuntimeError(f"{c.ENV_CA_PEM} is not set")
    return value


def credentials_answer(thing_name: str, certificate_id: str, certificate_pem: str) -> dict[str, Any]:
    """The 200 `provisioned` poll answer: everything the device needs to connect."""
    return {
        "status": "provisioned",
        "thingName": thing_name,
        "certificateId": certificate_id,
        "certificatePem": certificate_pem,
        "caPem": ca_pem(),
        "endpoint": iot.describe_endpoint(),
        "topics": definitions.device_topics(thing_name),
        "retryAfter": 0,
    }


def deliver(device: Device) -> dict[str, Any]:
    """Re-deliver the recorded certificate (provisioned: not acked yet; active: the device lost it)."""
    if not device.certificate_id or not device.certificate_pem:
        raise ServiceUnavailable(
            "The device record has no certificate yet; retry shortly.",
            retryAfter=5,
            headers={"Retry-After": "5"},
        )
    return credentials_answer(device.thing, device.certificate_id, device.certificate_pem)


# --- provisioning ----------------------------------------------------------------------------------


def provision(
    device: Device,
    csr_pem: Any,
    *,
    agent: dict[str, Any] | None = None,
    source_ip: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Device `claimed` -> `provisioned`: thing, certificate, policy, record. Safe to repeat."""
    now = times.now() if now is None else now
    public_key_pem = device.public_key_pem or ""
    csr_pem = check_csr(csr_pem, public_key_pem)
    ca_pem()  # fail before touching IoT if the deployment is incomplete
    thing = device.device_id

    iot.ensure_thing(thing, {"latchkey": "device"})
    reused = iot.find_reusable_certificate(thing, public_key_pem)
    if reused:
        certificate_id, certificate_pem = reused
        log.info("reusing certificate %s left attached to %s by an earlier attempt", certificate_id, thing)
    else:
        certificate_id, certificate_pem = iot.create_certificate(csr_pem, thing)
    try:
        iot.attach(thing, certificate_id)
    except Exception:
        if not reused:  # not attached to the thing, so no other attempt can have adopted it
            _cleanup(thing, certificate_id, delete_thing=False)
        raise

    changes: dict[str, Any] = {
        "thing_name": thing,
        "certificate_id": certificate_id,
        "certificate_pem": certificate_pem,
        "certificate_status": "INACTIVE",
        "provisioned_at": times.iso(now),
        "last_poll_at": times.iso(now),
    }
    if agent:
        changes["agent"] = agent
    try:
        devices.transition(
            device,
            "provision",
            actor=ACTOR,
            source_ip=source_ip,
            changes=changes,
            detail={"certificateId": certificate_id, "reused": bool(reused)},
            at=now,
        )
    except ConditionFailed:
        return _lost_race(device.device_id, thing, certificate_id)
    return credentials_answer(thing, certificate_id, certificate_pem)


def _cleanup(thing: str, certificate_id: str, delete_thing: bool) -> None:
    try:
        iot.remove_certificate_and_thing(thing, certificate_id, delete_thing=delete_thing)
    except Exception:  # the next poll (or the owner's delete) tidies up; do not hide the first error
        log.exception("cleanup of certificate %s for %s failed", certificate_id, thing)


def _lost_race(device_id: str, thing: str, certificate_id: str) -> dict[str, Any]:
    """The record changed under us: keep only what it names, and answer for its current state."""
    current = devices.get(device_id, consistent=True)
    if current is None or current.state == State.DELETED:
        _cleanup(thing, certificate_id, delete_thing=True)
        raise NotFound("This device does not exist.")
    if current.certificate_id != certificate_id:
        _cleanup(thing, certificate_id, delete_thing=False)
    if current.state == State.REVOKED:
        raise Forbidden("This device has been revoked.")
    if current.state in (State.PROVISIONED, State.ACTIVE):
        return deliver(current)
    if current.state == State.UNCLAIMED:
        return {"status": "unclaimed", "retryAfter": 0}
    raise ServiceUnavailable(
        "The device changed while it was being provisioned; poll again.",
        retryAfter=1,
        headers={"Retry-After": "1"},
    )


# --- acknowledgement -------------------------------------------------------------------------------


def acknowledge(
    device: Device, certificate_id: str, *, source_ip: str | None = None, now: float | None = None
) -> None:
    """The device saved its credentials: activate the certificate, device `provisioned` -> `active`.

    The certificate is activated before the record changes. If the record then turns out to have
    changed (revoked or deleted meanwhile), the activation is undone by revoking the certificate.
    """
    now = times.now() if now is None else now
    if device.certificate_id != certificate_id:
        raise Conflict("certificateId is not the certificate issued to this device.")
    if device.state == State.ACTIVE:
        return
    if device.state != State.PROVISIONED:
        raise Conflict(f"The device is {device.state}; there is no certificate to acknowledge.")

    iot.activate_certificate(certificate_id)
    try:
        devices.transition(
            device,
            "activate",
            actor=ACTOR,
            source_ip=source_ip,
            changes={"certificate_status": "ACTIVE", "activated_at": times.iso(now)},
            detail={"certificateId": certificate_id},
            at=now,
        )
    except ConditionFailed:
        current = devices.get(device.device_id, consistent=True)
        if current and current.state == State.ACTIVE and current.certificate_id == certificate_id:
            return  # a concurrent ack won
        iot.revoke_certificate(certificate_id, device.thing)
        if current is None or current.state == State.DELETED:
            raise NotFound("This device does not exist.") from None
        if current.state == State.REVOKED:
            raise Forbidden("This device has been revoked.") from None
        raise Conflict("The device changed while the certificate was being activated.") from None
