"""Claiming a device with the code on its label (design.md A), exactly once.

The decision is the conditional write itself (the `claim` transition: state `unclaimed` and no owner ->
`claimed` by the caller, with the `device.claimed` audit event in the same transaction), never a read
followed by a write: of any number of concurrent claims exactly one commits. A loser re-reads the device
to answer 200 (it is the caller's anyway) or 409 (someone else's).

Failed attempts (unknown codes) are counted per account and per source IP (logic/ratelimit.py); once
either is used up the caller gets 429 before the code is even looked up.
"""

from __future__ import annotations

from typing import Any

from lambdas.adapters import secrets
from lambdas.dal import devices
from lambdas.dal.devices import ConditionFailed
from lambdas.domain import times
from lambdas.domain.device import Device, State, new_ownership
from lambdas.domain.lifecycle import TransitionRefused
from lambdas.errors import BadRequest, Conflict, NotFound
from lambdas.logic import claim_code, ratelimit

UNKNOWN_CODE_MESSAGE = "No device has this claim code. Please check the label and try again."


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
    now = times.now() if now is None else now
    code = claim_code.normalize(raw_code)
    if code is None:
        raise InvalidCode(
            f"A claim code has {claim_code.LENGTH} letters and digits, like ABCDE-FGHJK. "
            "Please check the label and try again."
        )
    subjects = ratelimit.claim_subjects(owner_id, source_ip)
    ratelimit.check(subjects, now, "Too many wrong claim codes. Please wait before trying again.")

    device_id = devices.find_by_claim_code(claim_code.keyed_hash(code, secrets.claim_code_key()))
    device = devices.get(device_id, consistent=True) if device_id else None
    if device is None or device.state == State.DELETED:
        ratelimit.fail(subjects, now)
        raise UnknownCode(UNKNOWN_CODE_MESSAGE)
    claimed = claim(
        device,
        owner_id,
        owner_email,
        name or default_name(device.device_id),
        source_ip=source_ip or None,
        detail={"via": "claim_code"},
        now=now,
    )
    if claimed is None:
        raise UnknownCode(UNKNOWN_CODE_MESSAGE)
    device, fresh = claimed
    return device.owner_view(now), fresh


def claim(
    device: Device,
    owner_id: str,
    owner_email: str | None,
    name: str | None,
    *,
    source_ip: str | None,
    detail: dict[str, Any],
    now: float,
) -> tuple[Device, bool] | None:
    """The `claim` transition for `owner_id`; (device, True) if this call claimed it, (device, False) if
    it already was theirs, None if it is gone. ClaimedElsewhere if another account holds it."""
    changes = {
        "owner_id": owner_id,
        "owner_email": owner_email or None,
        "ownership": new_ownership(),
        "name": name,
        "claimed_at": times.iso(now),
    }
    try:
        if device.owner_id is not None:  # an unclaimed record with an owner is not claimable
            raise TransitionRefused("claim of an owned device")
        after = devices.transition(
            device, "claim", actor=owner_id, source_ip=source_ip, changes=changes, detail=detail, at=now
        )
        return after, True
    except (ConditionFailed, TransitionRefused):
        current = devices.get(device.device_id, consistent=True)
        if current is None or current.state == State.DELETED:
            return None
        if current.owner_id == owner_id:
            return current, False
        raise ClaimedElsewhere(
            "This device is already claimed by another account. Ask its owner to release it."
        ) from None
