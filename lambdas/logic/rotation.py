"""Certificate rotation: a new certificate for an active device without re-flashing it.

The device stays `active` throughout; a rotation in progress lives in the record's `rotation` map (the
pending certificate, the new public key, its step) and `rotationId` (the scalar every rotation write is
guarded on). Steps, each one transition of lambdas/domain/lifecycle.py and one audit event:

1. `rotate-request` (optional): the owner (`POST /v1/devices/{id}/rotate`) or an operator (`latchkey
   devices rotate`) asks; the agent hears it from a retained notice on its commands topic, at once when
   online, at its next connect when not. An agent also starts by itself at a share of the lifetime.
2. `rotate-deliver`: the agent's signed `{"step": "request", "csr"}` (a new key by default) gets a
   second certificate, INACTIVE, attached to the thing beside the current one. Asking again with the
   same key re-delivers the same certificate; with another key the pending one is replaced.
3. `rotate-ack`: `{"step": "ack", "certificateId"}`: the new certificate is ACTIVE as well. From here to
   step 4 both certificates work - the rotation overlap, bounded by the rotation window.
4. `rotate-complete`: `{"step": "complete", "certificateId"}` once the agent has connected with the new
   certificate: the old one is revoked and deleted (without dropping the connection, which is the new
   certificate's), and the new certificate and key become the device's.

A rotation older than the window (`LATCHKEY_ROTATION_WINDOW_HOURS`, default 7 days) is abandoned when
next touched (`rotate-abandon`): its certificate is removed and the old one, never revoked before step
4, keeps working - so a device offline through the whole rotation still connects and starts again.
Revoke, release and delete remove every certificate on the thing, the pending one included.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from lambdas import config
from lambdas import constants as c
from lambdas.dal import devices
from lambdas.dal.devices import ConditionFailed
from lambdas.domain import times
from lambdas.domain.device import Device, State
from lambdas.errors import BadRequest, Conflict, Forbidden, NotFound
from lambdas.logic.revocation import CHANGE_ATTEMPTS, kept_changing, read_for_change

log = logging.getLogger("latchkey.rotation")

ACTOR = "device"
STEPS = ("request", "ack", "complete")
EXPIRY_GRACE_S = 300.0


# --- dates -------------------------------------------------------------------------------------------


def window_seconds() -> float:
    return config.rotation_window_hours() * 3600.0


def validity_seconds() -> float:
    return config.cert_validity_days() * 86400.0


def certificate_dates(certificate_pem: str | None) -> tuple[float, float] | None:
    """(notBefore, notAfter) of a PEM certificate as unix seconds; None when it cannot be read."""
    if not certificate_pem:
        return None
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(certificate_pem.encode())
    except ValueError:
        return None
    return cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp()


def effective_expiry(certificate_pem: str | None) -> float | None:
    """When the service considers the certificate expired: its notAfter, or notBefore plus the configured
    validity if that is sooner (AWS-issued certificates run to 2049: CreateCertificateFromCsr decides)."""
    dates = certificate_dates(certificate_pem)
    if dates is None:
        return None
    not_before, not_after = dates
    return min(not_after, not_before + validity_seconds())


def expires_at(device: Device) -> float | None:
    """The current certificate's effective expiry: as recorded at the last rotation, else from its PEM."""
    recorded = times.parse_iso(device.certificate_expires_at)
    return recorded.timestamp() if recorded else effective_expiry(device.certificate_pem)


def expiring(
    all_devices: list[Device], within_seconds: float, now: float | None = None
) -> list[dict[str, Any]]:
    """Active devices whose certificate expires within `within_seconds` (or has), soonest first."""
    now = times.now() if now is None else now
    found = []
    for device in all_devices:
        if device.state != State.ACTIVE or not device.certificate_id:
            continue
        expiry = expires_at(device)
        if expiry is not None and expiry - now <= within_seconds:
            found.append(
                {
                    "deviceId": device.device_id,
                    "certificateId": device.certificate_id,
                    "expiresAt": times.iso(expiry),
                    "daysLeft": round((expiry - now) / 86400, 1),
                    "rotation": (device.rotation or {}).get("step"),
                }
            )
    return sorted(found, key=lambda f: (f["expiresAt"], f["deviceId"]))


def is_expired(rotation: dict[str, Any] | None, now: float) -> bool:
    expiry = times.parse_iso((rotation or {}).get("expiresAt"))
    return expiry is not None and expiry.timestamp() <= now


def view(device: Device, now: float | None = None) -> dict[str, Any]:
    """What owners and operators see of a device's certificate and its rotation."""
    now = times.now() if now is None else now
    rotation = device.rotation or {}
    expiry = expires_at(device)
    return {
        "deviceId": device.device_id,
        "certificateId": device.certificate_id,
        "certificateExpiresAt": times.iso(expiry) if expiry else None,
        "rotation": {
            "id": device.rotation_id,
            "step": rotation.get("step"),
            "requestedBy": rotation.get("requestedBy"),
            "requestedAt": rotation.get("requestedAt"),
            "expiresAt": rotation.get("expiresAt"),
            "newCertificateId": rotation.get("certificateId"),
        }
        if device.rotation_id and not is_expired(rotation, now)
        else None,
    }


# --- owner and operator: ask for a rotation ------------------------------------------------------------


def request(
    device_id: str,
    *,
    actor: str,
    source_ip: str | None,
    owner_id: str | None = None,
    not_found: str = "There is no such device.",
    now: float | None = None,
) -> dict[str, Any]:
    """Ask the device to rotate: `rotate-request`, then the retained notice. Idempotent while a rotation
    is in progress (the notice is sent again). 409 unless the device is active."""
    now = times.now() if now is None else now
    for _ in range(CHANGE_ATTEMPTS):
        device = read_for_change(device_id, owner_id, not_found)
        if device.state != State.ACTIVE:
            raise Conflict(f"Only an active device's certificate can be renewed; this one is {device.state}.")
        # A grace period past expiry: a device completing right at the end is not cut short by a request.
        device = _expire_if_due(device, now - EXPIRY_GRACE_S)
        if device.rotation_id:
            _notify(device)
            return view(device, now)
        rotation_id = secrets.token_hex(8)
        rotation = {
            "step": "requested",
            "requestedBy": actor,
            "requestedAt": times.iso(now),
            "expiresAt": times.iso(now + window_seconds()),
        }
        try:
            after = devices.transition(
                device,
                "rotate-request",
                actor=actor,
                source_ip=source_ip,
                changes={"rotation": rotation, "rotation_id": rotation_id},
                detail={"rotationId": rotation_id, "certificateId": device.certificate_id},
                at=now,
            )
        except ConditionFailed:
            continue
        _notify(after)
        return view(after, now)
    raise kept_changing(device_id)


def _notify(device: Device) -> None:
    """The retained notice on the device's commands topic: an online agent hears it at once, an offline
    one when it next subscribes. Failure is logged: asking again sends it again."""
    from lambdas.adapters import mqtt

    topic = c.TOPIC_COMMANDS.format(thing=device.thing)
    try:
        mqtt.publish(topic, {"command": "rotate", "rotationId": device.rotation_id}, retain=True)
    except Exception:
        log.warning("rotate notice to %s could not be published", device.device_id, exc_info=True)


def _clear_notice(device: Device) -> None:
    """Delete the retained notice (an empty retained message); a stale one only makes the agent ask."""
    from lambdas.adapters import mqtt

    try:
        mqtt.publish(c.TOPIC_COMMANDS.format(thing=device.thing), None, retain=True)
    except Exception:
        log.warning("rotate notice of %s could not be cleared", device.device_id, exc_info=True)


# --- the device's steps --------------------------------------------------------------------------------


def validate(body: dict[str, Any]) -> dict[str, Any]:
    """{"step": "request", "csr"} | {"step": "ack"|"complete", "certificateId"}: the shapes of
    `device_contract.ROTATE_REQUEST`, then which field the step needs; clear 400s otherwise."""
    from lambdas import device_contract

    device_contract.check("RotateRequest", body)
    step = str(body["step"])
    if step == "request":
        if not body.get("csr"):
            raise BadRequest(
                "A rotation request needs csr: a PEM certificate signing request for the new key."
            )
        return {"step": step, "csr": str(body["csr"])}
    if not body.get("certificateId"):
        raise BadRequest("certificateId must be the 64-character hex id of the delivered certificate.")
    return {"step": step, "certificateId": str(body["certificateId"])}


def signing_keys(device: Device) -> list[str]:
    """The keys a rotation call may be signed with: the registered one, and the pending new one (the
    agent signs `complete` with its new key, and a retry after a lost answer comes signed with it)."""
    keys = [device.public_key_pem] if device.public_key_pem else []
    pending = (device.rotation or {}).get("publicKeyPem")
    if isinstance(pending, str) and pending and pending not in keys:
        keys.append(pending)
    return keys


def check_signature(headers: Any, device: Device, method: str, path: str, body: bytes) -> None:
    """Unauthorized unless one of `signing_keys` signed the request."""
    from lambdas.errors import Unauthorized
    from lambdas.logic import signature

    refused: Unauthorized | None = None
    keys: list[str | None] = [*signing_keys(device)] or [None]  # none: check() says so
    for key in keys:
        try:
            signature.check(headers, key, method, path, body)
            return
        except Unauthorized as error:
            refused = error
    assert refused is not None
    raise refused


def handle(
    device: Device, body: dict[str, Any], *, source_ip: str | None = None, now: float | None = None
) -> Any:
    """One device step (body from `validate`); the answer body, or None for 204."""
    now = times.now() if now is None else now
    if device.state == State.REVOKED:
        raise Forbidden("This device has been revoked.")
    if device.state != State.ACTIVE:
        raise Conflict(f"The device is {device.state}; only an active device rotates its certificate.")
    if body["step"] == "request":
        return deliver(device, body["csr"], source_ip=source_ip, now=now)
    if body["step"] == "ack":
        acknowledge(device, body["certificateId"], source_ip=source_ip, now=now)
        return None
    complete(device, body["certificateId"], source_ip=source_ip, now=now)
    return None


def _csr_public_key(csr_pem: str) -> str:
    """The public key PEM of a well-formed, self-signed CSR for an EC P-256 or RSA >= 2048 key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from lambdas.logic.provisioning import check_csr

    try:
        key = x509.load_pem_x509_csr(csr_pem.encode()).public_key()
    except ValueError:
        raise BadRequest("csr is not a PEM certificate signing request.") from None
    usable = (isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)) or (
        isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048
    )
    if not usable:
        raise BadRequest("The new key must be EC P-256 or RSA with at least 2048 bits.")
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    check_csr(csr_pem, pem)  # the one CSR check: size, PEM, self-signature
    return pem


def _same_key(a: str | None, b: str | None) -> bool:
    from lambdas.logic.signature import load_public_key

    if not a or not b:
        return False
    try:
        return bool(load_public_key(a).public_numbers() == load_public_key(b).public_numbers())
    except (ValueError, TypeError):
        return False


def _credentials(
    device: Device, certificate_id: str, certificate_pem: str, rotation: dict[str, Any]
) -> dict[str, Any]:
    from lambdas.logic.provisioning import credentials_answer

    answer = credentials_answer(device.thing, certificate_id, certificate_pem)
    answer.update(
        status="rotating",
        rotationId=rotation.get("id"),
        certificateExpiresAt=rotation.get("certificateExpiresAt"),
        rotationExpiresAt=rotation.get("expiresAt"),
    )
    return answer


def deliver(
    device: Device, csr_pem: str, *, source_ip: str | None = None, now: float | None = None
) -> dict[str, Any]:
    """Step 2: the pending certificate for the CSR's key (issued once, re-delivered on repeat)."""
    from lambdas.adapters import iot

    now = times.now() if now is None else now
    public_key_pem = _csr_public_key(csr_pem)
    for _ in range(CHANGE_ATTEMPTS):
        device = _expire_if_due(device, now)
        rotation = dict(device.rotation or {})
        if rotation.get("certificateId"):
            if _same_key(rotation.get("publicKeyPem"), public_key_pem):
                return _credentials(
                    device,
                    rotation["certificateId"],
                    rotation["certificatePem"],
                    {**rotation, "id": device.rotation_id},
                )
            device = _abandon(device, "replaced by a request with another key", now)
            continue
        certificate_id, certificate_pem = iot.create_certificate(csr_pem, device.thing)
        try:
            iot.attach(device.thing, certificate_id)
        except Exception:
            _remove(device.thing, certificate_id)
            raise
        rotation_id = device.rotation_id or secrets.token_hex(8)
        expiry = effective_expiry(certificate_pem)
        rotation.update(
            step="issued",
            requestedBy=rotation.get("requestedBy", ACTOR),
            requestedAt=rotation.get("requestedAt", times.iso(now)),
            expiresAt=rotation.get("expiresAt", times.iso(now + window_seconds())),
            issuedAt=times.iso(now),
            certificateId=certificate_id,
            certificatePem=certificate_pem,
            publicKeyPem=public_key_pem,
            certificateExpiresAt=times.iso(expiry) if expiry else None,
        )
        try:
            after = devices.transition(
                device,
                "rotate-deliver",
                actor=ACTOR,
                source_ip=source_ip,
                changes={"rotation": rotation, "rotation_id": rotation_id},
                detail={
                    "certificateId": certificate_id,
                    "rotationId": rotation_id,
                    "previousCertificateId": device.certificate_id,
                    "newKey": not _same_key(device.public_key_pem, public_key_pem),
                },
                at=now,
            )
        except ConditionFailed:
            _remove(device.thing, certificate_id)  # not named by the record: nobody else can use it
            device = _reread_active(device.device_id)
            continue
        return _credentials(after, certificate_id, certificate_pem, {**rotation, "id": rotation_id})
    raise kept_changing(device.device_id)


def acknowledge(
    device: Device, certificate_id: str, *, source_ip: str | None = None, now: float | None = None
) -> None:
    """Step 3: the device saved the new certificate: ACTIVE in IoT, then `rotate-ack`."""
    from lambdas.adapters import iot

    now = times.now() if now is None else now
    for _ in range(CHANGE_ATTEMPTS):
        rotation = dict(device.rotation or {})
        if rotation.get("certificateId") != certificate_id:
            if device.certificate_id == certificate_id:
                return  # the rotation completed already: a repeated ack
            raise Conflict("certificateId is not the certificate this rotation delivered.")
        if is_expired(rotation, now):
            _abandon(device, "expired", now)
            raise Conflict("The rotation expired; request a new certificate again.")
        if rotation.get("step") == "activated":
            return
        iot.activate_certificate(certificate_id)
        rotation.update(step="activated", activatedAt=times.iso(now))
        try:
            devices.transition(
                device,
                "rotate-ack",
                actor=ACTOR,
                source_ip=source_ip,
                changes={"rotation": rotation},
                detail={"certificateId": certificate_id, "rotationId": device.rotation_id},
                at=now,
            )
            return
        except ConditionFailed:
            current = devices.get(device.device_id, consistent=True)
            if current is None or current.state != State.ACTIVE or current.rotation_id != device.rotation_id:
                # Revoked, released, deleted or replaced meanwhile: the activation must not outlive it.
                _remove(device.thing, certificate_id)
                _reread_active(device.device_id)
                raise Conflict("The rotation changed while the certificate was being activated.") from None
            device = current
    raise kept_changing(device.device_id)


def complete(
    device: Device, certificate_id: str, *, source_ip: str | None = None, now: float | None = None
) -> None:
    """Step 4: the device connected with the new certificate. The old one is revoked first (IoT before
    the record), then the new certificate and key become the device's."""
    from lambdas.adapters import iot

    now = times.now() if now is None else now
    for _ in range(CHANGE_ATTEMPTS):
        rotation = dict(device.rotation or {})
        if rotation.get("certificateId") != certificate_id:
            if device.certificate_id == certificate_id:
                return  # completed already: the answer to an earlier complete was lost
            raise Conflict("certificateId is not the certificate this rotation delivered.")
        if rotation.get("step") != "activated":
            raise Conflict("Acknowledge the new certificate (step ack) before completing the rotation.")
        if is_expired(rotation, now):
            # Too late: the old certificate (still valid) stays; the device falls back to it and asks again.
            _abandon(device, "expired", now)
            raise Conflict("The rotation expired; request a new certificate again.")
        old = device.certificate_id
        if old and old != certificate_id:
            iot.retire_certificate(device.thing, old)
        try:
            devices.transition(
                device,
                "rotate-complete",
                actor=ACTOR,
                source_ip=source_ip,
                changes={
                    "certificate_id": certificate_id,
                    "certificate_pem": rotation["certificatePem"],
                    "certificate_status": "ACTIVE",
                    "public_key_pem": rotation["publicKeyPem"],
                    "activated_at": rotation.get("activatedAt") or times.iso(now),
                    "certificate_expires_at": rotation.get("certificateExpiresAt"),
                },
                detail={
                    "certificateId": certificate_id,
                    "previousCertificateId": old,
                    "rotationId": device.rotation_id,
                },
                at=now,
            )
        except ConditionFailed:
            current = _reread_active(device.device_id)
            if current.certificate_id == certificate_id:
                return
            device = current
            continue
        _clear_notice(device)
        return
    raise kept_changing(device.device_id)


# --- expiry and clean-up -------------------------------------------------------------------------------


def _remove(thing: str, certificate_id: str) -> None:
    from lambdas.adapters import iot

    iot.retire_certificate(thing, certificate_id)


def _reread_active(device_id: str) -> Device:
    """The record after a lost race, or the answer its new state calls for."""
    current = devices.get(device_id, consistent=True)
    if current is None or current.state == State.DELETED:
        raise NotFound("This device does not exist.")
    if current.state == State.REVOKED:
        raise Forbidden("This device has been revoked.")
    if current.state != State.ACTIVE:
        raise Conflict(f"The device is {current.state}; only an active device rotates its certificate.")
    return current


def _expire_if_due(device: Device, now: float) -> Device:
    if device.rotation_id and is_expired(device.rotation, now):
        return _abandon(device, "expired", now)
    return device


def _abandon(device: Device, reason: str, now: float) -> Device:
    """`rotate-abandon`: the pending certificate removed (IoT first), the current one kept."""
    pending = (device.rotation or {}).get("certificateId")
    if pending and pending != device.certificate_id:
        _remove(device.thing, pending)
    try:
        after = devices.transition(
            device,
            "rotate-abandon",
            actor="service",
            changes={},
            detail={"certificateId": pending, "rotationId": device.rotation_id, "reason": reason},
            at=now,
        )
    except ConditionFailed:
        return _reread_active(device.device_id)
    log.info("rotation %s of %s abandoned: %s", device.rotation_id, device.device_id, reason)
    return after


def abandon_expired(device_id: str, now: float | None = None) -> bool:
    """For operators (`latchkey doctor`): end an expired rotation now. True when one was ended."""
    now = times.now() if now is None else now
    device = devices.get(device_id, consistent=True)
    if device is None or device.state != State.ACTIVE or not device.rotation_id:
        return False
    if not is_expired(device.rotation, now):
        return False
    _abandon(device, "expired", now)
    return True
