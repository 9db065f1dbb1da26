"""What an owner can do with their devices: list, get, rename, delete, revoke, release, audit trail,
and relays and sensors through the shadow.

Every route is scoped to the caller: another owner's device and a missing one are the same 404 (no
existence oracle), and every change is a transition guarded by `ownerId = caller`
(lambdas/domain/lifecycle.py), so a concurrent change by someone else (a release and a new claim, say)
cannot be overwritten.
"""

from __future__ import annotations

from typing import Any

from lambdas.dal import audit, devices
from lambdas.dal.devices import ConditionFailed
from lambdas.domain import times
from lambdas.domain.device import Device, State
from lambdas.domain.lifecycle import TransitionRefused
from lambdas.errors import Conflict, NotFound
from lambdas.logic import revocation
from lambdas.logic.sharing import DEVICE_ID as _DEVICE_ID
from lambdas.logic.sharing import NOT_FOUND_MESSAGE

# --- reads -------------------------------------------------------------------------------------------


def owned(owner_id: str, device_id: str) -> Device:
    """The caller's device, or NotFound (also for another owner's device and malformed ids)."""
    if not _DEVICE_ID.match(device_id or ""):
        raise NotFound(NOT_FOUND_MESSAGE)
    device = devices.get(device_id, consistent=True)
    if device is None or not device.is_owned_by(owner_id):
        _refuse_member(owner_id, device_id)
        raise NotFound(NOT_FOUND_MESSAGE)
    return device


def _refuse_member(user_id: str, device_id: str) -> None:
    """A member of a shared device asking for an owner-only action gets 403, not the non-member's 404."""
    from lambdas.logic import sharing

    sharing.refuse_member(user_id, device_id)


def _owner_only(user_id: str, device_id: str, error: NotFound) -> NotFound:
    _refuse_member(user_id, device_id)
    return error


def list_devices(owner_id: str, now: float | None = None) -> list[dict[str, Any]]:
    """The caller's own devices (role `owner`), then those shared with them, each newest first."""
    from lambdas.logic import sharing

    def newest(pair: tuple[Device, str]) -> tuple[str, str]:
        return (pair[0].claimed_at or pair[0].created_at or "", pair[0].device_id)

    mine = [(d, "owner") for d in devices.list_by_owner(owner_id) if d.is_owned_by(owner_id)]
    mine.sort(key=newest, reverse=True)
    shared = sorted(sharing.shared_with(owner_id), key=newest, reverse=True)
    return [_with_role(d, role, now) for d, role in (*mine, *shared)]


def _with_role(device: Device, role: str, now: float | None) -> dict[str, Any]:
    # Every field of the documented Device, null when it does not apply (the owner's own devices).
    return {
        **device.owner_view(now),
        "role": role,
        "sharedBy": None if role == "owner" else device.owner_email,
    }


def get_device(owner_id: str, device_id: str, now: float | None = None) -> dict[str, Any]:
    from lambdas.logic import sharing

    device, role = sharing.access(owner_id, device_id, "viewer")
    return _with_role(device, role, now)


def events(owner_id: str, device_id: str, limit: int = 200) -> list[dict[str, Any]]:
    """The audit trail of the caller's ownership, newest first; `sourceIp` is never shown.

    Every event carries the ownership it was written under (a claim starts a new one), so a released
    device that changed hands shows its new owner nothing of the old, at any timing.
    """
    device = owned(owner_id, device_id)
    trail = audit.list_events(device_id, limit=limit)  # newest first
    if device.ownership:
        mine = [e for e in trail if e.get("ownership") == device.ownership]
    else:
        mine = _legacy_trail(trail, device, owner_id)
    return [
        {
            "at": str(e.get("at")),
            "action": str(e.get("action")),
            "actor": e.get("actor"),
            "detail": e.get("detail") if isinstance(e.get("detail"), dict) else {},
        }
        for e in mine
    ]


def _legacy_trail(trail: list[dict[str, Any]], device: Device, owner_id: str) -> list[dict[str, Any]]:
    """Devices claimed before events carried an ownership: cut at the caller's latest claim event (with
    the registration written in the same transaction), else at `claimedAt` (second precision)."""
    joined = next((i for i, e in enumerate(trail) if _joins(e, owner_id)), None)
    if joined is not None:
        if joined + 1 < len(trail) and trail[joined + 1].get("action") == "device.registered":
            joined += 1
        return trail[: joined + 1]
    since = times.parse_iso(device.claimed_at)
    out = []
    for event in trail:
        at = times.parse_iso(event.get("at"))
        if since is not None and (at is None or at < since):
            continue
        if since is None and event.get("actor") not in (owner_id, "device"):
            continue
        out.append(event)
    return out


def _joins(event: dict[str, Any], owner_id: str) -> bool:
    """The event that made `owner_id` the owner: their claim, or a pre-claim at manufacture for them."""
    detail: dict[str, Any] = event["detail"] if isinstance(event.get("detail"), dict) else {}
    return event.get("action") == "device.claimed" and owner_id in (event.get("actor"), detail.get("ownerId"))


# --- changes -----------------------------------------------------------------------------------------


def rename(
    owner_id: str, device_id: str, name: str, source_ip: str | None = None, now: float | None = None
) -> dict[str, Any]:
    device = owned(owner_id, device_id)
    if device.name == name:
        return _with_role(device, "owner", now)
    try:
        after = devices.transition(
            device,
            "rename",
            actor=owner_id,
            source_ip=source_ip,
            changes={"name": name},
            detail={"from": device.name, "to": name},
            at=now,
        )
    except (ConditionFailed, TransitionRefused):
        return get_device(owner_id, device_id, now)  # changed meanwhile: answer what it is now
    return _with_role(after, "owner", now)


def delete(owner_id: str, device_id: str, source_ip: str | None) -> None:
    try:
        revocation.delete(device_id, owner_id, source_ip, NOT_FOUND_MESSAGE)
    except NotFound as error:
        raise _owner_only(owner_id, device_id, error) from None


def revoke(owner_id: str, device_id: str, source_ip: str | None, now: float | None = None) -> dict[str, Any]:
    """State `revoked`, certificate REVOKED (the connection is dropped; polls get 403). Idempotent."""
    try:
        device, _ = revocation.revoke(
            device_id,
            actor=owner_id,
            source_ip=source_ip,
            owner_id=owner_id,
            not_found=NOT_FOUND_MESSAGE,
            now=now,
        )
    except NotFound as error:
        raise _owner_only(owner_id, device_id, error) from None
    return _with_role(device, "owner", now)


def release(owner_id: str, device_id: str, source_ip: str | None, now: float | None = None) -> dict[str, Any]:
    try:
        device = revocation.release(device_id, owner_id, source_ip, NOT_FOUND_MESSAGE, now)
    except NotFound as error:
        raise _owner_only(owner_id, device_id, error) from None
    return device.owner_view(now)


# --- relays and sensors (the device shadow) ----------------------------------------------------------


def device_state(owner_id: str, device_id: str) -> dict[str, Any]:
    """Reported, desired and delta of the device shadow (owner and members)."""
    from lambdas.adapters import shadow as shadow_store
    from lambdas.logic import shadow, sharing

    device, _ = sharing.access(owner_id, device_id, "viewer")
    document = shadow_store.get(device.thing_name) if device.thing_name else None
    return {"id": device_id, **shadow.view(document)}


def change_state(
    owner_id: str, device_id: str, patch: dict[str, Any], source_ip: str | None = None
) -> dict[str, Any]:
    """Validate against the capabilities the device reported, then write the desired state. Audited
    (relay switches are not: they are use, not configuration). Owner and operators; viewers get 403."""
    from lambdas.adapters import shadow as shadow_store
    from lambdas.logic import shadow, sharing

    device, _ = sharing.access(owner_id, device_id, "operator")
    thing = device.thing_name
    if device.state != State.ACTIVE or not thing:
        raise Conflict("The device is not active: claim it and let it come online first.")
    current = shadow_store.get(thing) or {}
    reported = (current.get("state") or {}).get("reported") or {}
    desired = shadow.desired_from_patch(patch, reported)
    document = shadow_store.update_desired(thing, desired)
    settings = {k: v for k, v in patch.items() if k != "relays"}
    if settings:
        audit.record(
            audit.event_item(
                device_id,
                "device.settings_changed",
                owner_id,
                source_ip,
                settings,
                ownership=device.ownership,
            )
        )
    merged = shadow_store.get(thing) or document
    return {"id": device_id, **shadow.view(merged)}
