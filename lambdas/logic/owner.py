"""What an owner can do with their devices: list, get, rename, delete, revoke, release, audit trail.

Every route is scoped to the caller: another owner's device and a missing one are the same 404 (no
existence oracle), and every change is conditional on `ownerId = caller`, so a concurrent change by
someone else (a release and a new claim, say) cannot be overwritten.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime
from typing import Any

from lambdas import constants as c
from lambdas.dal import audit, devices
from lambdas.dal.devices import ConditionFailed
from lambdas.errors import NotFound, ServiceUnavailable
from lambdas.logic import presence

log = logging.getLogger("latchkey.owner")

_DEVICE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
NOT_FOUND_MESSAGE = "There is no device with this id in your account."

# What a release clears, so the device is as it left the factory (the label's claim code still works).
RELEASE_CLEARS = (
    c.DEVICE_OWNER_KEY,
    "ownerEmail",
    "name",
    "claimedAt",
    "thingName",
    "certificateId",
    "certificatePem",
    "certificateStatus",
    "provisionedAt",
    "activatedAt",
    "revokedAt",
    "presence",
    "lastSeenAt",
    "registration",
)


def iso(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# --- the view ----------------------------------------------------------------------------------------


def view(item: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """The owner's view of a device item (fields of models.owner.Device); nothing internal leaks."""
    agent = _mapping(item.get("agent"))
    stored_presence = _mapping(item.get("presence"))
    status, last_seen = presence.compute(item, now)
    certificate = None
    if item.get("certificateId"):
        certificate = {"id": str(item["certificateId"]), "status": item.get("certificateStatus")}

    def text(value: Any) -> str | None:
        return str(value) if value not in (None, "") else None

    return {
        "id": str(item[c.DEVICE_PK]),
        "name": text(item.get("name")),
        "state": str(item.get("state") or c.STATE_UNCLAIMED),
        "board": text(item.get("board") or agent.get("board")),
        "agentVersion": text(agent.get("version")),
        "ip": text(stored_presence.get("ip") or agent.get("ip")),
        "mac": text(item.get("mac") or agent.get("mac")),
        "presence": status,
        "lastSeen": text(last_seen),
        "certificate": certificate,
        "claimedAt": text(item.get("claimedAt")),
        "createdAt": text(item.get("createdAt")),
    }


# --- reads -------------------------------------------------------------------------------------------


def owned(owner_id: str, device_id: str) -> dict[str, Any]:
    """The caller's device item, or NotFound (also for another owner's device and malformed ids)."""
    if not _DEVICE_ID.match(device_id or ""):
        raise NotFound(NOT_FOUND_MESSAGE)
    item = devices.get(device_id, consistent=True)
    if item is None or item.get(c.DEVICE_OWNER_KEY) != owner_id or item.get("state") == "deleted":
        raise NotFound(NOT_FOUND_MESSAGE)
    return item


def list_devices(owner_id: str, now: float | None = None) -> list[dict[str, Any]]:
    items = [i for i in devices.list_by_owner(owner_id) if i.get(c.DEVICE_OWNER_KEY) == owner_id]
    items = [i for i in items if i.get("state") != "deleted"]
    items.sort(
        key=lambda i: (str(i.get("claimedAt") or i.get("createdAt") or ""), str(i[c.DEVICE_PK])), reverse=True
    )
    return [view(i, now) for i in items]


def get_device(owner_id: str, device_id: str, now: float | None = None) -> dict[str, Any]:
    return view(owned(owner_id, device_id), now)


def events(owner_id: str, device_id: str, limit: int = 200) -> list[dict[str, Any]]:
    """The audit trail, newest first, since the device joined the caller's account.

    Events from before the caller's claim belong to earlier owners (a released device changes hands)
    and are not shown; `sourceIp` is never shown. The boundary is the caller's latest `device.claimed`
    event (with the `device.registered` event written in the same transaction); `claimedAt`, which has
    second precision, is the fallback when that event is beyond `limit`.
    """
    item = owned(owner_id, device_id)
    trail = audit.list_events(device_id, limit=limit)  # newest first
    joined = next((i for i, e in enumerate(trail) if _joins(e, owner_id)), None)
    if joined is not None:
        if joined + 1 < len(trail) and trail[joined + 1].get("action") == "device.registered":
            joined += 1
        trail = trail[: joined + 1]
    since = _parse_iso(item.get("claimedAt")) if joined is None else None
    out = []
    for event in trail:
        at = _parse_iso(event.get("at"))
        if since is not None and (at is None or at < since):
            continue
        if joined is None and since is None and event.get("actor") not in (owner_id, "device"):
            continue
        detail = event.get("detail") if isinstance(event.get("detail"), dict) else {}
        out.append(
            {
                "at": str(event.get("at")),
                "action": str(event.get("action")),
                "actor": event.get("actor"),
                "detail": detail,
            }
        )
    return out


def _joins(event: dict[str, Any], owner_id: str) -> bool:
    """The event that made `owner_id` the owner: their claim, or a pre-claim at manufacture for them."""
    detail: dict[str, Any] = event["detail"] if isinstance(event.get("detail"), dict) else {}
    return event.get("action") == "device.claimed" and owner_id in (event.get("actor"), detail.get("ownerId"))


# --- changes -----------------------------------------------------------------------------------------


def rename(owner_id: str, device_id: str, name: str, now: float | None = None) -> dict[str, Any]:
    owned(owner_id, device_id)
    try:
        updated = devices.update(device_id, {"name": name}, expected={c.DEVICE_OWNER_KEY: owner_id})
    except ConditionFailed:
        raise NotFound(NOT_FOUND_MESSAGE) from None
    assert updated is not None
    return view(updated, now)


# Delete, revoke and release act on the record as they read it, and their final write is conditional on
# the record being unchanged (owner, state, certificate). A provisioning poll or an ack can commit in
# between (a certificate issued after the read would otherwise outlive a delete, or stay ACTIVE on a
# revoked device); then the condition fails and the change is redone from a fresh read.
CHANGE_ATTEMPTS = 5


def _unchanged(owner_id: str, item: dict[str, Any]) -> dict[str, Any]:
    """The write condition: still the caller's, in the state and with the certificate that was read."""
    return {
        c.DEVICE_OWNER_KEY: owner_id,
        "state": item.get("state"),
        "certificateId": item.get("certificateId"),
    }


def _kept_changing(device_id: str) -> ServiceUnavailable:
    log.warning("device %s kept changing during an owner action", device_id)
    return ServiceUnavailable(
        "The device changed while this was being done. Please try again.",
        retryAfter=1,
        headers={"Retry-After": "1"},
    )


def delete(owner_id: str, device_id: str, source_ip: str | None) -> None:
    """Remove the certificate and the thing, then the record (the next poll gets 404). Audited."""
    for _ in range(CHANGE_ATTEMPTS):
        item = owned(owner_id, device_id)
        _remove_iot(item, revoke_first=False)
        event = audit.event_item(
            device_id,
            "device.deleted",
            owner_id,
            source_ip,
            {"certificateId": item.get("certificateId"), "state": item.get("state")},
        )
        try:
            devices.delete(device_id, expected=_unchanged(owner_id, item), also=[audit.put_request(event)])
        except ConditionFailed:
            continue  # e.g. a poll issued a certificate meanwhile: remove that one too
        return
    raise _kept_changing(device_id)


def revoke(owner_id: str, device_id: str, source_ip: str | None, now: float | None = None) -> dict[str, Any]:
    """State `revoked`, certificate REVOKED (IoT drops the connection; polls get 403). Idempotent."""
    now = time.time() if now is None else now
    for _ in range(CHANGE_ATTEMPTS):
        item = owned(owner_id, device_id)
        certificate_id = item.get("certificateId")
        if item.get("state") == c.STATE_REVOKED and (
            not certificate_id or item.get("certificateStatus") == "REVOKED"
        ):
            return view(item, now)
        if certificate_id:
            from lambdas.adapters import iot  # deferred: only changes touch IoT

            iot.revoke_certificate(str(certificate_id))  # first: a record that says revoked must be true
        fields: dict[str, Any] = {"state": c.STATE_REVOKED, "revokedAt": iso(now)}
        if certificate_id:
            fields["certificateStatus"] = "REVOKED"
        event = audit.event_item(
            device_id, "certificate.revoked", owner_id, source_ip, {"certificateId": certificate_id}
        )
        try:
            devices.update(
                device_id, fields, expected=_unchanged(owner_id, item), also=[audit.put_request(event)]
            )
        except ConditionFailed:
            continue  # e.g. a certificate was issued or acknowledged meanwhile: revoke that one
        return get_device(owner_id, device_id, now)
    raise _kept_changing(device_id)


def release(owner_id: str, device_id: str, source_ip: str | None, now: float | None = None) -> dict[str, Any]:
    """Tell the agent to wipe its credentials, remove the certificate, return the device to `unclaimed`."""
    now = time.time() if now is None else now
    for _ in range(CHANGE_ATTEMPTS):
        item = owned(owner_id, device_id)
        if item.get("certificateId") and item.get("state") == c.STATE_ACTIVE:
            _tell_release(device_id, str(item.get("thingName") or device_id))
        _remove_iot(item, revoke_first=True)
        event = audit.event_item(
            device_id, "device.released", owner_id, source_ip, {"certificateId": item.get("certificateId")}
        )
        try:
            devices.update(
                device_id,
                {"state": c.STATE_UNCLAIMED, "releasedAt": iso(now)},
                remove=RELEASE_CLEARS,
                expected=_unchanged(owner_id, item),
                also=[audit.put_request(event)],
            )
        except ConditionFailed:
            continue  # e.g. a poll issued a certificate meanwhile: remove that one too
        released = {k: v for k, v in item.items() if k not in RELEASE_CLEARS}
        return view({**released, "state": c.STATE_UNCLAIMED}, now)
    raise _kept_changing(device_id)


def _tell_release(device_id: str, thing: str) -> None:
    """Publish the release command while the device is still connected; failure is logged, not fatal."""
    from lambdas.adapters import mqtt

    try:
        mqtt.publish(c.TOPIC_COMMANDS.format(thing=thing), {"command": "release"})
    except Exception:
        log.warning("release command to %s could not be published", device_id, exc_info=True)


def _remove_iot(item: dict[str, Any], revoke_first: bool) -> None:
    """Certificate and thing go; always tried, since a claimed device may hold an interrupted provisioning's."""
    from lambdas.adapters import iot

    certificate_id = item.get("certificateId")
    thing = item.get("thingName")
    if revoke_first and certificate_id:
        iot.revoke_certificate(str(certificate_id))
    iot.remove_certificate_and_thing(
        str(thing or item[c.DEVICE_PK]), str(certificate_id) if certificate_id else None, delete_thing=True
    )


def device_state(owner_id: str, device_id: str) -> dict[str, Any]:
    """Reported, desired and delta of the caller's device shadow (design: issue "control")."""
    from lambdas.adapters import shadow as shadow_store
    from lambdas.logic import shadow

    item = owned(owner_id, device_id)
    thing = item.get("thingName")
    document = shadow_store.get(str(thing)) if thing else None
    return {"id": device_id, **shadow.view(document)}


def change_state(owner_id: str, device_id: str, patch: dict[str, Any]) -> dict[str, Any]:
    """Validate against the capabilities the device reported, then write the desired state."""
    from lambdas.adapters import shadow as shadow_store
    from lambdas.errors import Conflict
    from lambdas.logic import shadow

    item = owned(owner_id, device_id)
    thing = item.get("thingName")
    if item.get("state") != c.STATE_ACTIVE or not thing:
        raise Conflict("The device is not active: claim it and let it come online first.")
    current = shadow_store.get(str(thing)) or {}
    reported = (current.get("state") or {}).get("reported") or {}
    desired = shadow.desired_from_patch(patch, reported)
    document = shadow_store.update_desired(str(thing), desired)
    merged = shadow_store.get(str(thing)) or document
    return {"id": device_id, **shadow.view(merged)}
