"""Taking a device's credentials away: revoke, release and delete (and the retirement a regenerated
registration token causes). Owners (logic/owner.py) and operators (logic/manufacturing.py) both use these.

Each acts on the record as it read it, and its transition is guarded by the record being unchanged
(owner, state, certificate; lambdas/domain/lifecycle.py). A provisioning poll or an ack can commit in
between (a certificate issued after the read would otherwise outlive a delete, or stay ACTIVE on a
revoked device); then the write fails and the change is redone from a fresh read. IoT is changed
before the record, so a record that says revoked or gone is true.
"""

from __future__ import annotations

import logging
from typing import Any

from lambdas import constants as c
from lambdas.dal import devices
from lambdas.dal.devices import ConditionFailed
from lambdas.domain import times
from lambdas.domain.device import Device, State
from lambdas.errors import NotFound, ServiceUnavailable

log = logging.getLogger("latchkey.revocation")

CHANGE_ATTEMPTS = 5


def read_for_change(device_id: str, owner_id: str | None, not_found: str) -> Device:
    """The device, strongly consistent, for a credential change by its owner (or an operator: None);
    the same 404 for unknown, deleted and other owners' devices."""
    device = devices.get(device_id, consistent=True)
    if device is None or device.state == State.DELETED:
        raise NotFound(not_found)
    if owner_id is not None and not device.is_owned_by(owner_id):
        raise NotFound(not_found)
    return device


def kept_changing(device_id: str) -> ServiceUnavailable:
    log.warning("device %s kept changing during a change of its credentials", device_id)
    return ServiceUnavailable(
        "The device changed while this was being done. Please try again.",
        retryAfter=1,
        headers={"Retry-After": "1"},
    )


def revoke(
    device_id: str,
    *,
    actor: str,
    source_ip: str | None,
    owner_id: str | None = None,
    not_found: str = "There is no such device.",
    now: float | None = None,
) -> tuple[Device, bool]:
    """State `revoked`, certificate REVOKED (polls get 403). (device, whether this call changed it).

    Revoking a revoked device changes nothing in the record, but still makes IoT agree with it: a
    certificate an interrupted provisioning left on the thing is removed, the recorded one REVOKED."""
    from lambdas.adapters import iot  # deferred: only changes touch IoT

    now = times.now() if now is None else now
    for _ in range(CHANGE_ATTEMPTS):
        device = read_for_change(device_id, owner_id, not_found)
        if device.state == State.REVOKED:
            _sweep(device, check_recorded=True)
            return device, False
        if device.certificate_id:
            # First: a record that says revoked must be true. Revokes, drops the connection, detaches.
            iot.revoke_certificate(device.certificate_id, device.thing)
        changes: dict[str, Any] = {"revoked_at": times.iso(now)}
        if device.certificate_id:
            changes["certificate_status"] = "REVOKED"
        try:
            after = devices.transition(
                device,
                "revoke",
                actor=actor,
                source_ip=source_ip,
                changes=changes,
                detail={"certificateId": device.certificate_id, "previousState": str(device.state)},
                at=now,
            )
        except ConditionFailed:
            continue  # e.g. a certificate was issued or acknowledged meanwhile: revoke that one
        _sweep(after, check_recorded=False)  # the recorded certificate was just revoked above
        return after, True
    raise kept_changing(device_id)


def _sweep(device: Device, check_recorded: bool) -> None:
    """IoT as the revoked record says: no other certificate on its thing, and (`check_recorded`) the
    recorded one REVOKED."""
    from lambdas.adapters import iot

    for arn in iot.thing_principals(device.thing):
        other = arn.rsplit("/", 1)[-1] if ":cert/" in arn else None
        if other and other != device.certificate_id:
            iot.remove_certificate_and_thing(device.thing, other, delete_thing=False)
    if check_recorded and device.certificate_id:
        description = iot.describe_certificate(device.certificate_id)
        if description is not None and description.get("status") != "REVOKED":
            iot.revoke_certificate(device.certificate_id, device.thing)


def release(
    device_id: str, owner_id: str, source_ip: str | None, not_found: str, now: float | None = None
) -> Device:
    """Tell the agent to wipe its credentials, remove the certificate, return the device to `unclaimed`."""
    now = times.now() if now is None else now
    for _ in range(CHANGE_ATTEMPTS):
        device = read_for_change(device_id, owner_id, not_found)
        if device.certificate_id and device.state == State.ACTIVE:
            _tell_release(device)
        _remove_iot(device)
        try:
            return devices.transition(
                device,
                "release",
                actor=owner_id,
                source_ip=source_ip,
                changes={"released_at": times.iso(now)},
                detail={"certificateId": device.certificate_id},
                at=now,
            )
        except ConditionFailed:
            continue  # e.g. a poll issued a certificate meanwhile: remove that one too
    raise kept_changing(device_id)


def delete(
    device_id: str,
    owner_id: str,
    source_ip: str | None,
    not_found: str,
    *,
    transition: str = "delete",
    detail: dict[str, Any] | None = None,
) -> None:
    """Remove the certificate and the thing, then the record (the next poll gets 404). Audited."""
    for _ in range(CHANGE_ATTEMPTS):
        device = read_for_change(device_id, owner_id, not_found)
        _remove_iot(device)
        try:
            devices.transition(
                device,
                transition,
                actor=owner_id,
                source_ip=source_ip,
                detail={
                    "certificateId": device.certificate_id,
                    "state": str(device.state),
                    **(detail or {}),
                },
            )
        except ConditionFailed:
            continue  # e.g. a poll issued a certificate meanwhile: remove that one too
        return
    raise kept_changing(device_id)


def _tell_release(device: Device) -> None:
    """Publish the release command while the device is still connected; failure is logged, not fatal."""
    from lambdas.adapters import mqtt

    try:
        mqtt.publish(c.TOPIC_COMMANDS.format(thing=device.thing), {"command": "release"})
    except Exception:
        log.warning("release command to %s could not be published", device.device_id, exc_info=True)


def _remove_iot(device: Device) -> None:
    """Certificate and thing go (the adapter revokes and disconnects first); always tried, since a
    claimed device may hold an interrupted provisioning's."""
    from lambdas.adapters import iot

    iot.remove_certificate_and_thing(device.thing, device.certificate_id, delete_thing=True)
