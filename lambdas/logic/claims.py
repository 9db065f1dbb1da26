"""Claiming a device with the code on its label (design.md A), exactly once.

The decision is the conditional write itself (state `unclaimed` and no owner -> `claimed` by the
caller, with the `device.claimed` audit event in the same transaction), never a read followed by a
write: of any number of concurrent claims exactly one commits. A loser re-reads the device to answer
200 (it is the caller's anyway) or 409 (someone else's).

Failed attempts (unknown codes) are counted per account and per source IP (logic/ratelimit.py); once
either is used up the caller gets 429 before the code is even looked up.
"""

from __future__ import annotations

import time
from typing import Any

from lambdas import constants as c
from lambdas.adapters import secrets
from lambdas.dal import audit, devices
from lambdas.dal.devices import ConditionFailed
from lambdas.errors import BadRequest, Conflict, NotFound
from lambdas.logic import claim_code, owner, ratelimit


class InvalidCode(BadRequest):
    code = "invalid_code"


class UnknownCode(NotFound):
    code = "unknown_code"


class ClaimedElsewhere(Conflict):
    code = "claimed_by_another_account"


def default_name(device_id: str) -> str:
    return f"Device {device_id[-4:].upper()}"


def claim_device(
    owner_id: str,
    owner_email: str | None,
    raw_code: str,
    name: str | None,
    source_ip: str,
    now: float | None = None,
) -> tuple[dict[str, Any], bool]:
    """(the device as the owner sees it, True if this call claimed it / False if it already was theirs)."""
    now = time.time() if now is None else now
    code = claim_code.normalize(raw_code)
    if code is None:
        raise InvalidCode(
            f"A claim code has {claim_code.LENGTH} letters and digits, like ABCDE-FGHJK. "
            "Please check the label and try again."
        )
    subjects = ratelimit.claim_subjects(owner_id, source_ip)
    ratelimit.check(subjects, now, "Too many wrong claim codes. Please wait before trying again.")

    device_id = devices.find_by_claim_code(claim_code.keyed_hash(code, secrets.claim_code_key()))
    if device_id is None:
        ratelimit.fail(subjects, now)
        raise UnknownCode("No device has this claim code. Please check the label and try again.")

    fields = {
        "state": c.STATE_CLAIMED,
        c.DEVICE_OWNER_KEY: owner_id,
        "ownerEmail": owner_email or None,
        "name": name or default_name(device_id),
        "claimedAt": owner.iso(now),
    }
    event = audit.event_item(device_id, "device.claimed", owner_id, source_ip or None, {"via": "claim_code"})
    try:
        devices.update(
            device_id,
            fields,
            expected={"state": c.STATE_UNCLAIMED, c.DEVICE_OWNER_KEY: None},
            also=[audit.put_request(event)],
        )
    except ConditionFailed:
        current = devices.get(device_id, consistent=True)
        if current is None or current.get("state") == "deleted":
            raise UnknownCode(
                "No device has this claim code. Please check the label and try again."
            ) from None
        if current.get(c.DEVICE_OWNER_KEY) == owner_id:
            return owner.view(current, now), False
        raise ClaimedElsewhere(
            "This device is already claimed by another account. Ask its owner to release it."
        ) from None
    claimed = devices.get(device_id, consistent=True)
    if claimed is None or claimed.get(c.DEVICE_OWNER_KEY) != owner_id:  # deleted or released at once
        raise UnknownCode("No device has this claim code. Please check the label and try again.")
    return owner.view(claimed, now), True
