"""Handing a device to another account: an offer that expires in 7 days, accepted or declined by the
recipient, or cancelled by the sender.

One offer per device at a time (dal/grants.py, key `transfer`), made under the device's ownership. The
offer id is `<device id>.<random>`, so accepting it reads exactly one item, strongly consistent.

Accepting is the hard cut of the issue: the offer is first marked `accepting` (from then on neither the
sender nor the recipient can cancel it), the device's certificate is revoked in IoT, and one transaction
(the `transfer` row of lambdas/domain/lifecycle.py) gives the device its new owner and ownership, resets
its name, removes its certificate from the record and deletes the offer and every share. The device's
next poll provisions it again with a fresh CSR for the new owner; after the commit the old certificate
is deleted and the shadow removed. A concurrent revoke, release, delete or second accept changes the
guarded record first and the transaction fails: the accept then re-reads and answers for what won.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
from typing import Any

from lambdas import config
from lambdas.dal import audit, ddb, devices, grants
from lambdas.dal.devices import ConditionFailed
from lambdas.domain import times
from lambdas.domain.device import Device, State, new_ownership
from lambdas.errors import Conflict, Forbidden, NotFound, ServiceUnavailable
from lambdas.logic.sharing import access, other_account

log = logging.getLogger("latchkey.transfer")

OFFER_SECONDS = 7 * 24 * 3600
TRANSFERABLE = frozenset({State.CLAIMED, State.PROVISIONED, State.ACTIVE})
CHANGE_ATTEMPTS = 5
OFFER_NOT_FOUND = "There is no such transfer offer for your account."
OFFER_ENDED = "This transfer offer has expired or is no longer valid."
_TRANSFER_ID = re.compile(r"^([A-Za-z0-9_:-]{1,128})\.([0-9a-f]{16})$")


def is_live(offer: dict[str, Any] | None, device: Device | None, now: float) -> bool:
    """The offer can still be answered: not expired (TTL deletes late, moto never), and the device is
    still the sender's, in the ownership the offer was made under, and transferable."""
    if offer is None or offer.get("kind") != "transfer" or device is None:
        return False
    expires = offer.get("expiresAt")
    return (
        isinstance(expires, int | float)
        and expires > now
        and device.state in TRANSFERABLE
        and bool(device.ownership)
        and offer.get("ownership") == device.ownership
        and offer.get("senderId") == device.owner_id
    )


def _view(offer: dict[str, Any], user_id: str) -> dict[str, Any]:
    return {
        "id": str(offer["transferId"]),
        "deviceId": str(offer["deviceId"]),
        "deviceName": offer.get("deviceName"),
        "sender": offer.get("senderEmail"),
        "recipient": offer.get("email"),
        "direction": "incoming" if offer.get("userId") == user_id else "outgoing",
        "status": str(offer.get("status") or "pending"),
        "createdAt": offer.get("createdAt"),
        "expiresAt": times.iso(float(offer["expiresAt"])),
    }


# --- offering ----------------------------------------------------------------------------------------


def offer(
    owner_id: str,
    owner_email: str | None,
    device_id: str,
    email: str,
    source_ip: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The owner offers the device to the account of `email`. Audited (`transfer.offered`)."""
    from lambdas.adapters import cognito

    now = times.now() if now is None else now
    device, _ = access(owner_id, device_id, "owner")
    if device.state == State.REVOKED:
        raise Conflict("A revoked device cannot be transferred; release it, and the new owner claims it.")
    if device.state not in TRANSFERABLE:
        raise Conflict(f"The device is {device.state}; only a claimed device can be transferred.")
    recipient = other_account(
        owner_id, email, now, "You already own this device; offer it to another account."
    )
    existing = grants.get_offer(device_id)
    if is_live(existing, device, now):
        raise Conflict("This device already has a pending transfer offer; cancel it first.")
    item = {
        "deviceId": device_id,
        "grantKey": grants.OFFER_KEY,
        "kind": "transfer",
        "transferId": f"{device_id}.{secrets.token_hex(8)}",
        "userId": recipient,
        "email": email,
        "senderId": owner_id,
        "senderEmail": cognito.email_of(owner_id) or owner_email,
        "deviceName": device.name,
        "ownership": device.ownership,
        "status": "pending",
        "createdAt": times.iso(now),
        "expiresAt": int(now) + OFFER_SECONDS,
    }
    if existing is None:
        put = grants.put_request(
            item, "attribute_not_exists(#k)", ExpressionAttributeNames={"#k": "grantKey"}
        )
    else:  # an expired or stale offer is replaced, unless it changed meanwhile
        put = grants.put_request(
            item,
            "#t = :t",
            ExpressionAttributeNames={"#t": "transferId"},
            ExpressionAttributeValues={":t": {"S": str(existing.get("transferId"))}},
        )
    event = audit.event_item(
        device_id,
        "transfer.offered",
        owner_id,
        source_ip,
        {"transferId": item["transferId"], "userId": recipient, "email": email},
        ownership=device.ownership,
        at=now,
    )
    try:
        grants.transact([devices.condition_check(device), put, audit.put_request(event)])
    except ConditionFailed:
        raise Conflict("The device or its offers changed meanwhile. Reload and try again.") from None
    return _view(item, owner_id)


def list_transfers(user_id: str, now: float | None = None) -> list[dict[str, Any]]:
    """Offers to the caller and offers the caller made that can still be answered, newest first."""
    now = times.now() if now is None else now
    offers = [i for i in grants.received_by(user_id) if i.get("kind") == "transfer"]
    offers += [i for i in grants.offers_sent_by(user_id) if i.get("userId") != user_id]
    out = []
    for item in offers:
        if is_live(item, devices.get(str(item["deviceId"])), now):
            out.append(_view(item, user_id))
    out.sort(key=lambda o: (str(o["createdAt"] or ""), o["id"]), reverse=True)
    return out


# --- answering ---------------------------------------------------------------------------------------


def _find(user_id: str, transfer_id: str, now: float) -> tuple[dict[str, Any], Device | None, str]:
    """(offer, device, "recipient"|"sender"); NotFound for anyone else, as for an id that never existed."""
    match = _TRANSFER_ID.match(transfer_id or "")
    if not match:
        raise NotFound(OFFER_NOT_FOUND)
    offer = grants.get_offer(match.group(1))
    if offer is None or offer.get("transferId") != transfer_id:
        raise NotFound(OFFER_NOT_FOUND)
    if offer.get("userId") == user_id:
        side = "recipient"
    elif offer.get("senderId") == user_id:
        side = "sender"
    else:
        raise NotFound(OFFER_NOT_FOUND)
    return offer, devices.get(match.group(1), consistent=True), side


def decline(user_id: str, transfer_id: str, source_ip: str | None = None, now: float | None = None) -> None:
    """The recipient declines, or the sender cancels. Audited (`transfer.declined` / `transfer.cancelled`).

    An expired or stale offer is removed as well (it could not be answered anyway)."""
    now = times.now() if now is None else now
    offer_, _, side = _find(user_id, transfer_id, now)
    if offer_.get("status") == "accepting":
        raise Conflict("The offer is being accepted.")
    key = (str(offer_["deviceId"]), grants.OFFER_KEY)
    delete = grants.delete_request(*key, {"transferId": transfer_id, "status": "pending"})
    action = "transfer.declined" if side == "recipient" else "transfer.cancelled"
    event = audit.event_item(
        key[0],
        action,
        user_id,
        source_ip,
        {"transferId": transfer_id, "email": offer_.get("email")},
        ownership=offer_.get("ownership"),
        at=now,
    )
    try:
        grants.transact([delete, audit.put_request(event)])
    except ConditionFailed:
        current = grants.get_offer(key[0])
        if current is not None and current.get("transferId") == transfer_id:
            raise Conflict("The offer is being accepted.") from None
        raise NotFound(OFFER_NOT_FOUND) from None


def accept(
    user_id: str,
    user_email: str | None,
    transfer_id: str,
    source_ip: str | None = None,
    now: float | None = None,
) -> Device:
    """The recipient accepts: the device is theirs, with a new ownership and no old credential."""
    from lambdas.logic.claims import default_name

    now = times.now() if now is None else now
    offer_, device, side = _find(user_id, transfer_id, now)
    if side != "recipient":
        raise Forbidden("Only the recipient can accept a transfer offer.")
    device_id = str(offer_["deviceId"])
    if device is not None and device.owner_id == user_id and device.ownership != offer_.get("ownership"):
        return device  # an earlier accept of this offer (a double click, a retry) won
    if not is_live(offer_, device, now):
        raise NotFound(OFFER_ENDED)
    try:  # the lock: from here on the offer cannot be cancelled or declined
        ddb.write(
            config.grants_table(),
            {"deviceId": device_id, "grantKey": grants.OFFER_KEY},
            {"status": "accepting"},
            expected={"transferId": transfer_id, "userId": user_id, "status": ["pending", "accepting"]},
        )
    except ConditionFailed:
        raise NotFound(OFFER_ENDED) from None
    for _ in range(CHANGE_ATTEMPTS):
        current = devices.get(device_id, consistent=True)
        if current is not None and current.owner_id == user_id and current.ownership != offer_["ownership"]:
            return current  # a concurrent accept won
        if not is_live(offer_, current, now):  # revoked, released or deleted meanwhile: the offer ends
            _end_offer(device_id, transfer_id)
            raise Conflict("The device changed hands or was revoked before the transfer completed.")
        assert current is not None
        _revoke_old_certificate(current)
        old_ownership = current.ownership
        new = new_ownership()
        also = [
            grants.delete_request(device_id, grants.OFFER_KEY, {"transferId": transfer_id}),
            audit.put_request(
                audit.event_item(
                    device_id,
                    "transfer.accepted",
                    user_id,
                    source_ip,
                    {"transferId": transfer_id, "email": user_email, "certificateId": current.certificate_id},
                    ownership=old_ownership,
                    at=now,
                )
            ),
        ]
        if current.certificate_id:
            revoked = {"certificateId": current.certificate_id, "reason": "transfer"}
            also.append(
                audit.put_request(
                    audit.event_item(
                        device_id,
                        "certificate.revoked",
                        user_id,
                        source_ip,
                        revoked,
                        ownership=old_ownership,
                        at=now + 2e-6,  # after transfer.accepted, before the new ownership's events
                    )
                )
            )
        try:
            after = devices.transition(
                current,
                "transfer",
                actor=user_id,
                source_ip=source_ip,
                changes={
                    "owner_id": user_id,
                    "owner_email": offer_.get("email") or user_email,  # the address the sender typed
                    "ownership": new,
                    "name": default_name(device_id),
                    "claimed_at": times.iso(now),
                },
                per_action={
                    "device.transferred": (user_id, {"transferId": transfer_id}),
                    "device.claimed": (user_id, {"ownerId": user_id, "via": "transfer"}),
                },
                also=also,
                at=now + 1e-5,
            )
        except ConditionFailed:
            continue  # e.g. the device acknowledged or provisioned meanwhile: redo from a fresh read
        _tidy_after(current)
        return after
    log.warning("device %s kept changing during a transfer", device_id)
    raise ServiceUnavailable(
        "The device changed while this was being done. Please try again.",
        retryAfter=1,
        headers={"Retry-After": "1"},
    )


def _revoke_old_certificate(device: Device) -> None:
    """Before the commit: no credential of the old ownership connects once the record says transferred.
    A lost race leaves it revoked only where the winner (revoke, release, delete) takes it away anyway,
    or where the retry transfers the device."""
    from lambdas.adapters import iot

    for certificate_id in _certificates(device):
        iot.revoke_certificate(certificate_id, device.thing)


def _certificates(device: Device) -> list[str]:
    """The current certificate and a rotation's pending one (lambdas/logic/rotation.py): both the old
    ownership's."""
    pending = (device.rotation or {}).get("certificateId")
    return [c for c in (device.certificate_id, str(pending) if pending else None) if c]


def _tidy_after(old: Device) -> None:
    """After the commit: delete the revoked certificate and the shadow (desired relay settings, history).
    Failures are logged: the certificate is revoked already, and `latchkey doctor` reports leftovers."""
    from lambdas.adapters import iot
    from lambdas.adapters import shadow as shadow_store

    try:
        for certificate_id in _certificates(old):
            iot.remove_certificate_and_thing(old.thing, certificate_id, delete_thing=False)
        shadow_store.delete(old.thing)
    except Exception:
        log.warning("clean-up after the transfer of %s failed", old.device_id, exc_info=True)


def _end_offer(device_id: str, transfer_id: str) -> None:
    with contextlib.suppress(ConditionFailed):  # already gone: the release or delete that won took it
        grants.delete(device_id, grants.OFFER_KEY, expected={"transferId": transfer_id})
