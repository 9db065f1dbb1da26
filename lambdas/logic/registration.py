"""Registration tokens (design.md B): "Add device" → pending device → device registers → claimed.

A pending device holds the SHA-256 of a one-time token (the token itself is shown once, inside the
downloadable configuration). `register` consumes it exactly once: one transaction marks the pending
item registered (conditional on it still being unused and unexpired) and creates the device, already
claimed by the owner who generated the token, with its audit events. Expiry is enforced on read;
DynamoDB's TTL only cleans up later.

Answers to `register`: 401 unknown or expired token; 410 already used (a repeat from the same MAC with
the same key is the device retrying after a lost answer: 201 with the same device id); 409 the MAC
differs from the one the token is bound to; 429 after too many failures from one source address.

Token versions: 2 (all tokens issued now) binds the token to the MAC of the first registration; 1
(legacy, unbound) accepts any MAC. "Upgrade to secure v2" = regenerate: the new token is always v2.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
from typing import Any

from lambdas import constants as c
from lambdas import device_contract
from lambdas.dal import audit, devices, pending
from lambdas.dal.ddb import ConditionFailed
from lambdas.domain import times
from lambdas.domain.device import Device, State, new_ownership
from lambdas.errors import BadRequest, Conflict, Gone, NotFound, Unauthorized
from lambdas.logic import device_config, ratelimit
from lambdas.logic.ratelimit import Limit

TOKEN_VERSION_LEGACY = 1
TOKEN_VERSION_BOUND = 2
STATE_PENDING = "pending"
STATE_REGISTERED = "registered"

CREATE_PER_ACCOUNT = Limit("pending-create", 20, 3600)
REGISTER_FAILURES_PER_IP = Limit("register-ip", 20, 600)

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,128}$")


def now() -> float:
    """The service clock; tests move it to show expiry."""
    return times.now()


class TokenRejected(Unauthorized):
    code = "invalid_registration_token"


class TokenUsed(Gone):
    code = "registration_token_used"


class MacMismatch(Conflict):
    code = "mac_mismatch"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_token() -> tuple[str, str]:
    token = secrets.token_urlsafe(32)
    return token, _hash(token)


def normalize_mac(raw: Any) -> str:
    if not isinstance(raw, str) or len(raw) > 32:
        raise BadRequest("mac must be a MAC address like 24:6f:28:aa:bb:cc.")
    mac = raw.strip().lower().replace("-", ":")
    if re.fullmatch(r"[0-9a-f]{12}", mac):
        mac = ":".join(mac[i : i + 2] for i in range(0, 12, 2))
    if not _MAC.match(mac):
        raise BadRequest("mac must be a MAC address like 24:6f:28:aa:bb:cc.")
    return mac


def _expired(item: dict[str, Any], at: float) -> bool:
    return float(item.get(c.TTL_ATTRIBUTE) or 0) <= at


def _view(item: dict[str, Any], at: float) -> dict[str, Any]:
    expires = int(item.get(c.TTL_ATTRIBUTE) or 0)
    version = int(item.get("tokenVersion") or TOKEN_VERSION_BOUND)
    return {
        "id": item[c.PENDING_PK],
        "name": item.get("name"),
        "board": item.get("board"),
        "state": item.get("state"),
        "deviceId": item.get("deviceId"),
        "createdAt": item.get("createdAt"),
        "expiresAt": times.iso(expires),
        "secondsLeft": max(0, int(expires - at)),
        "tokenVersion": version,
        "upgradeAvailable": version < TOKEN_VERSION_BOUND,
    }


def _owned(owner_id: str, pending_id: str) -> dict[str, Any]:
    item = pending.get(pending_id) if isinstance(pending_id, str) and len(pending_id) <= 64 else None
    if item is None or item.get(c.PENDING_OWNER_KEY) != owner_id:
        raise NotFound("No such pending device.")
    return item


def create_pending(
    owner_id: str,
    email: str | None,
    name: str,
    board: str,
    source_ip: str,
    api_url: str = "",
    token_version: int = TOKEN_VERSION_BOUND,
) -> dict[str, Any]:
    at = now()
    subjects = [(CREATE_PER_ACCOUNT, owner_id)]
    ratelimit.check(subjects, at, "Too many devices added in the last hour. Please wait a little.")
    token, token_hash = _new_token()
    item = {
        c.PENDING_PK: "pd-" + secrets.token_hex(8),
        c.PENDING_OWNER_KEY: owner_id,
        "ownerEmail": email or None,
        "name": name,
        "board": board,
        c.PENDING_TOKEN_KEY: token_hash,
        "tokenVersion": token_version,
        "state": STATE_PENDING,
        "createdAt": times.iso(at),
        c.TTL_ATTRIBUTE: int(at) + c.REGISTRATION_TOKEN_TTL_SECONDS,
    }
    pending.create(item)
    ratelimit.fail(subjects, at)  # counts creations, not only failures
    return {
        **_view(item, at),
        "registrationToken": token,
        "config": device_config.render(api_url, token, name, board),
    }


def list_pending(owner_id: str) -> dict[str, Any]:
    """Unregistered, unexpired pending devices, and registered ones whose device is not the owner's."""
    at = now()
    shown = []
    for item in pending.list_by_owner(owner_id):
        if item.get("state") == STATE_PENDING and not _expired(item, at):
            shown.append(_view(item, at))
        elif item.get("state") == STATE_REGISTERED:
            device = devices.get(str(item.get("deviceId")))
            if device is not None and device.owner_id != owner_id:
                shown.append(_view(item, at))
    shown.sort(key=lambda p: p.get("createdAt") or "", reverse=True)
    return {"pending": shown}


def delete_pending(owner_id: str, pending_id: str, source_ip: str) -> None:
    item = _owned(owner_id, pending_id)
    try:
        pending.delete(pending_id, expected={c.PENDING_OWNER_KEY: owner_id})
    except ConditionFailed:
        raise NotFound("No such pending device.") from None
    if item.get("deviceId"):
        event = audit.event_item(str(item["deviceId"]), "pending.deleted", owner_id, source_ip or None)
        audit.record(event)


def register(body: dict[str, Any], source_ip: str = "") -> dict[str, Any]:
    from lambdas.logic.manufacturing import public_key_from_pem

    at = now()
    subjects = [(REGISTER_FAILURES_PER_IP, ratelimit.ip_subject(source_ip) if source_ip else "")]
    ratelimit.check(subjects, at, "Too many failed registrations from this address. Please wait.")
    device_contract.check("RegisterRequest", body)
    token, csr, board = str(body["registrationToken"]), str(body["csr"]), body.get("board") or ""
    if not _TOKEN.fullmatch(token):
        ratelimit.fail(subjects, at)
        raise TokenRejected("The registration token is unknown or has expired.")
    mac = normalize_mac(body["mac"])
    public_key = public_key_from_pem(csr)

    pending_id = pending.find_by_token_hash(_hash(token))
    item = pending.get(pending_id) if pending_id else None
    if item is None or item.get(c.PENDING_TOKEN_KEY) != _hash(token) or _expired(item, at):
        ratelimit.fail(subjects, at)
        raise TokenRejected("The registration token is unknown or has expired.")
    if item.get("state") == STATE_REGISTERED:
        return _already_registered(item, mac, public_key, subjects, at)

    device_id = _new_device_id()
    owner_id = str(item[c.PENDING_OWNER_KEY])
    bound = int(item.get("tokenVersion") or TOKEN_VERSION_BOUND) >= TOKEN_VERSION_BOUND
    device = Device(
        device_id=device_id,
        state=State.CLAIMED,
        owner_id=owner_id,
        owner_email=item.get("ownerEmail"),
        ownership=new_ownership(),
        name=item.get("name"),
        board=board or item.get("board"),
        mac=mac,
        public_key_pem=public_key,
        created_at=times.iso(at),
        claimed_at=times.iso(at),
        registration={"pendingId": item[c.PENDING_PK], "tokenVersion": item.get("tokenVersion")},
    )
    consume = pending.update_request(
        str(item[c.PENDING_PK]),
        {
            "state": STATE_REGISTERED,
            "deviceId": device_id,
            "boundMac": mac if bound else None,
            "registeredMac": mac,
            "publicKeyPem": public_key,
            "usedAt": times.iso(at),
            # Registered items stay listed for a manual claim for 30 days, then TTL removes them.
            c.TTL_ATTRIBUTE: int(at) + 30 * 24 * 3600,
        },
        expected={"state": STATE_PENDING, c.PENDING_TOKEN_KEY: _hash(token)},
    )
    detail = {"via": "registration_token", "pendingId": item[c.PENDING_PK], "mac": mac}
    try:
        devices.transition(
            device,
            "register",
            actor="device",
            source_ip=source_ip or None,
            detail=detail,
            at=at,
            also=[consume],
            per_action={"device.claimed": (owner_id, detail)},  # the owner claims, through the token
        )
    except ConditionFailed:
        current = pending.get(str(item[c.PENDING_PK]))
        if current is None or current.get(c.PENDING_TOKEN_KEY) != _hash(token):
            raise TokenRejected("The registration token is unknown or has expired.") from None
        return _already_registered(current, mac, public_key, subjects, at)
    return {"deviceId": device_id}


def _already_registered(
    item: dict[str, Any], mac: str, public_key: str, subjects: ratelimit.Subjects, at: float
) -> dict[str, Any]:
    if item.get("registeredMac") == mac and item.get("publicKeyPem") == public_key:
        return {"deviceId": item["deviceId"]}  # the device retrying after losing our 201
    ratelimit.fail(subjects, at)
    if item.get("boundMac") and item["boundMac"] != mac:
        raise MacMismatch("This registration token is bound to another device (a different MAC address).")
    raise TokenUsed("This registration token was already used. Regenerate it in the claim page.")


def _new_device_id() -> str:
    from lambdas.logic.manufacturing import new_device_id

    return new_device_id()


def claim_pending(owner_id: str, email: str | None, pending_id: str, source_ip: str) -> dict[str, Any]:
    """Manual claim when the automatic claim did not happen (the device was released or is unowned)."""
    from lambdas.logic import claims

    item = _owned(owner_id, pending_id)
    if item.get("state") != STATE_REGISTERED or not item.get("deviceId"):
        raise Conflict("The device has not registered yet. Power it on with its configuration first.")
    device = devices.get(str(item["deviceId"]), consistent=True)
    if device is None:
        raise NotFound("The registered device no longer exists.")
    at = now()
    try:
        claimed = claims.claim(
            device,
            owner_id,
            email,
            item.get("name"),
            source_ip=source_ip or None,
            detail={"via": "pending"},
            now=at,
        )
    except claims.ClaimedElsewhere:
        raise claims.ClaimedElsewhere("This device is claimed by another account.") from None
    if claimed is None:
        raise NotFound("The registered device no longer exists.")
    return claimed[0].owner_view(at)


REGENERATE_ATTEMPTS = 5


def regenerate_token(owner_id: str, pending_id: str, source_ip: str, api_url: str = "") -> dict[str, Any]:
    """A new v2 token for 24 h; the old one stops working, and a device registered with it loses its
    certificate and must register again with the new configuration.

    The write is conditional on the pending item being exactly as read (token, state, device): a
    registration with the old token that commits in between makes it fail, and the next attempt retires
    the device that registration created."""
    at = now()
    token, token_hash = _new_token()
    for _ in range(REGENERATE_ATTEMPTS):
        item = _owned(owner_id, pending_id)
        old_device_id = item.get("deviceId")
        fields: dict[str, Any] = {
            c.PENDING_TOKEN_KEY: token_hash,
            "tokenVersion": TOKEN_VERSION_BOUND,
            "state": STATE_PENDING,
            "deviceId": None,
            "boundMac": None,
            "registeredMac": None,
            "publicKeyPem": None,
            "usedAt": None,
            c.TTL_ATTRIBUTE: int(at) + c.REGISTRATION_TOKEN_TTL_SECONDS,
        }
        expected = {
            c.PENDING_TOKEN_KEY: item[c.PENDING_TOKEN_KEY],
            "state": item.get("state"),
            "deviceId": old_device_id,
        }
        try:
            updated = pending.update(pending_id, fields, expected=expected)
        except ConditionFailed:
            continue  # registered (or regenerated) meanwhile: look again
        if old_device_id:
            _retire_device(owner_id, str(old_device_id), source_ip)
        assert updated is not None
        config = device_config.render(api_url, token, str(item.get("name")), str(item.get("board")))
        return {**_view(updated, at), "registrationToken": token, "config": config}
    raise Conflict("The token was changed at the same time. Please reload and try again.")


def _retire_device(owner_id: str, device_id: str, source_ip: str) -> None:
    """The device registered with the old token: revoke its certificate and remove it."""
    from lambdas.logic import revocation

    device = devices.get(device_id, consistent=True)
    if device is None or device.owner_id != owner_id:
        return
    with contextlib.suppress(NotFound):  # deleted meanwhile: nothing to retire
        revocation.delete(
            device_id,
            owner_id,
            source_ip or None,
            "The registered device no longer exists.",
            transition="regenerate",
            detail={"reason": "registration token regenerated"},
        )
