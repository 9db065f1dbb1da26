"""Sharing a device with other accounts: roles, who may do what, and the shares themselves.

Roles: `owner` (everything), `operator` (status, sensors, relays and settings), `viewer` (status and
sensors). A share belongs to the ownership it was made under (dal/grants.py): it grants nothing once
the device is released, transferred or deleted, and those transitions delete it in their transaction.

Answers follow the no-oracle rule of logic/owner.py: a caller who is neither owner nor member gets the
404 a device that does not exist gets; a member asking for an owner-only action gets 403.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from lambdas.dal import audit, devices, grants
from lambdas.dal.devices import ConditionFailed
from lambdas.domain import times
from lambdas.domain.device import LIVE_STATES, OWNED_STATES, Device
from lambdas.errors import BadRequest, Conflict, Forbidden, NotFound
from lambdas.logic import ratelimit

# The one answer for a device the caller may not see, whether it exists or not (no existence oracle);
# logic/owner.py answers with it too.
NOT_FOUND_MESSAGE = "There is no device with this id in your account."
DEVICE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
Role = Literal["owner", "operator", "viewer"]
ROLES: tuple[str, ...] = ("viewer", "operator")  # the roles a share can give
RANK = {"viewer": 1, "operator": 2, "owner": 3}
MAX_SHARES = 20  # per device; also keeps a release's transaction far below DynamoDB's 100 items
OWNER_ONLY_MESSAGE = "Only the device's owner can do this."
_USER_ID = re.compile(r"^[A-Za-z0-9_.:@+-]{1,128}$")


# --- who may do what ---------------------------------------------------------------------------------


def is_current(share: dict[str, Any] | None, device: Device) -> bool:
    """A share grants access only within the ownership it was made under."""
    return (
        share is not None
        and share.get("kind") == "share"
        and device.state in LIVE_STATES
        and bool(device.ownership)
        and share.get("ownership") == device.ownership
        and share.get("role") in ROLES
    )


def access(user_id: str, device_id: str, need: Role = "viewer") -> tuple[Device, Role]:
    """(device, the caller's role) if the caller's role is at least `need`.

    NotFound for non-members exactly as for a missing device; Forbidden for a member below `need`."""
    if not DEVICE_ID.match(device_id or ""):
        raise NotFound(NOT_FOUND_MESSAGE)
    device = devices.get(device_id, consistent=True)
    if device is None or device.state not in LIVE_STATES:
        raise NotFound(NOT_FOUND_MESSAGE)
    if device.is_owned_by(user_id):
        return device, "owner"
    share = grants.get_share(device_id, user_id) if _USER_ID.match(user_id) else None
    if not is_current(share, device):
        raise NotFound(NOT_FOUND_MESSAGE)
    role: Role = share["role"]  # type: ignore[index]
    if RANK[role] < RANK[need]:
        raise Forbidden(OWNER_ONLY_MESSAGE if need == "owner" else "Your role on this device cannot do this.")
    return device, role


def refuse_member(user_id: str, device_id: str) -> None:
    """Raise Forbidden if the caller is a current member (they know the device exists); else return, and
    the caller answers its 404."""
    if not DEVICE_ID.match(device_id or "") or not _USER_ID.match(user_id or ""):
        return
    device = devices.get(device_id, consistent=True)
    if device is not None and is_current(grants.get_share(device_id, user_id), device):
        raise Forbidden(OWNER_ONLY_MESSAGE)


def shared_with(user_id: str) -> list[tuple[Device, str]]:
    """(device, role) of every device currently shared with the user."""
    out = []
    for item in grants.received_by(user_id):
        if item.get("kind") != "share":
            continue
        device = devices.get(str(item["deviceId"]))
        if device is not None and is_current(item, device) and device.owner_id != user_id:
            out.append((device, str(item["role"])))
    return out


# --- the shares --------------------------------------------------------------------------------------


def _view(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "userId": str(item["userId"]),
        "email": item.get("email"),
        "role": str(item["role"]),
        "createdAt": item.get("createdAt"),
    }


def list_shares(owner_id: str, device_id: str) -> list[dict[str, Any]]:
    device, _ = access(owner_id, device_id, "owner")
    items = [i for i in grants.for_device(device_id) if is_current(i, device)]
    items.sort(key=lambda i: (str(i.get("createdAt") or ""), str(i["userId"])))
    return [_view(i) for i in items]


def other_account(owner_id: str, email: str, now: float, yourself: str) -> str:
    """The account of `email` a share or transfer names, rate-limited per owner: every attempt counts,
    found or not, since a lookup by email tells whether an account exists. 404 for none, 400 for the
    owner's own (`yourself` says why)."""
    from lambdas.adapters import cognito

    subjects = [(ratelimit.GRANT_PER_ACCOUNT, owner_id)]
    ratelimit.check(subjects, now, "Too many shares and transfers from this account. Try again in a while.")
    ratelimit.fail(subjects, now)
    account = cognito.find_user_by_email(email)
    if account is None:
        raise NotFound("There is no account with this email address.")
    if account == owner_id:
        raise BadRequest(yourself)
    return account


def add_share(
    owner_id: str,
    device_id: str,
    email: str,
    role: str,
    source_ip: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Share the device with the account of `email` (or change that member's role). Audited."""

    now = times.now() if now is None else now
    device, _ = access(owner_id, device_id, "owner")
    if role not in ROLES:
        raise BadRequest("role must be 'viewer' or 'operator'.")
    if device.state not in OWNED_STATES:
        raise NotFound(NOT_FOUND_MESSAGE)
    member = other_account(owner_id, email, now, "You own this device; share it with another account.")
    current = [i for i in grants.for_device(device_id) if is_current(i, device)]
    existing = next((i for i in current if i.get("userId") == member), None)
    if existing is None and len(current) >= MAX_SHARES:
        raise Conflict(f"A device can be shared with at most {MAX_SHARES} accounts.")
    if existing is not None and existing.get("role") == role:
        return _view(existing)
    item = {
        "deviceId": device_id,
        "grantKey": grants.share_key(member),
        "kind": "share",
        "userId": member,
        "email": email,
        "role": role,
        "ownership": device.ownership,
        "sharedBy": owner_id,
        "createdAt": (existing or {}).get("createdAt") or times.iso(now),
    }
    action = "share.changed" if existing else "share.added"
    detail: dict[str, Any] = {"userId": member, "email": email, "role": role}
    if existing:
        detail["previousRole"] = existing.get("role")
    event = audit.event_item(
        device_id, action, owner_id, source_ip, detail, ownership=device.ownership, at=now
    )
    try:
        grants.transact([devices.condition_check(device), grants.put_request(item), audit.put_request(event)])
    except ConditionFailed:
        raise Conflict("The device changed meanwhile (released, transferred or deleted). Reload.") from None
    return _view(item)


def remove_share(
    caller: str, device_id: str, user_id: str, source_ip: str | None = None, now: float | None = None
) -> None:
    """The owner removes a member, or a member leaves. Audited; a share that is not there is a 404."""
    device, role = access(caller, device_id, "viewer")
    if role != "owner" and user_id != caller:
        raise Forbidden(OWNER_ONLY_MESSAGE)
    share = grants.get_share(device_id, user_id) if _USER_ID.match(user_id or "") else None
    if not is_current(share, device):
        raise NotFound("This device is not shared with that account.")
    assert share is not None
    event = audit.event_item(
        device_id,
        "share.removed",
        caller,
        source_ip,
        {"userId": user_id, "email": share.get("email"), "role": share.get("role"), "left": role != "owner"},
        ownership=device.ownership,
        at=now,
    )
    delete = grants.delete_request(device_id, grants.share_key(user_id), {"ownership": device.ownership})
    try:
        grants.transact([delete, audit.put_request(event)])
    except ConditionFailed:
        raise NotFound("This device is not shared with that account.") from None
