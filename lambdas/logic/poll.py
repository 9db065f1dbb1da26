"""The device poll: validate the body, answer for the device's state, remember when it was last seen.

The unclaimed answer is the hottest path of the system: the handler reads the device once (one
GetItem), and this module writes `lastPollAt` at most every LAST_SEEN_WRITE_INTERVAL_SECONDS.
Provisioning (and with it `cryptography` and the IoT adapter) is imported only when needed.
"""

from __future__ import annotations

import logging
from typing import Any

from lambdas import constants as c
from lambdas import device_contract
from lambdas.domain import times
from lambdas.domain.device import Device, State
from lambdas.errors import Forbidden, NotFound

log = logging.getLogger("latchkey.poll")

# retryAfter 0 means "no opinion: keep your own backoff schedule" (docs/protocol.md).
UNCLAIMED = {"status": "unclaimed", "retryAfter": 0}


def validate(body: dict[str, Any]) -> dict[str, Any]:
    """The poll body checked against `device_contract.POLL_REQUEST`, normalized: {"attempt": int,
    "agent": {str: scalar} without nulls, "csr": PEM | None}. Unknown fields are ignored."""
    device_contract.check("PollRequest", body)
    agent = body.get("agent") or {}
    return {
        "attempt": int(body.get("attempt", 0)),
        "agent": {key: value for key, value in agent.items() if value is not None},
        "csr": body.get("csr") or None,
    }


def ensure_pollable(device: Device | None) -> Device:
    """404 for unknown and deleted devices (before the signature: there is no key to check)."""
    if device is None or device.state == State.DELETED:
        raise NotFound("This device does not exist.")
    if not device.state_known:
        log.error("device %s is in unknown state %r", device.device_id, device.extra.get("state"))
        raise NotFound("This device does not exist.")
    return device


def answer(device: Device, body: dict[str, Any], source_ip: str, now: float | None = None) -> dict[str, Any]:
    """The poll answer for a device whose signature has been verified."""
    now = times.now() if now is None else now
    if device.state == State.REVOKED:
        raise Forbidden("This device has been revoked.")
    if device.state == State.UNCLAIMED:
        touch(device, body["agent"], source_ip, now)
        return dict(UNCLAIMED)

    from lambdas.logic import provisioning  # deferred: cryptography and the IoT adapter

    if device.state == State.CLAIMED:
        return provisioning.provision(device, body["csr"], agent=body["agent"], source_ip=source_ip, now=now)
    if body["csr"]:
        provisioning.check_csr(body["csr"], device.public_key_pem or "")
    result = provisioning.deliver(device)
    touch(device, body["agent"], source_ip, now)
    return result


def touch(device: Device, agent: dict[str, Any], source_ip: str, now: float) -> None:
    """Write lastPollAt/agent if the stored values are stale; never fails the poll."""
    if times.seconds_since(device.last_poll_at, now) < c.LAST_SEEN_WRITE_INTERVAL_SECONDS:
        return
    from lambdas.dal import devices

    fields: dict[str, Any] = {"lastPollAt": times.iso(now), "lastPollIp": source_ip or None}
    if agent:
        fields["agent"] = agent
    try:
        devices.observe(device.device_id, fields, expected={"state": str(device.state)})
    except devices.ConditionFailed:
        pass  # the state changed meanwhile; the next poll sees it
    except Exception:
        log.warning("could not record last poll of %s", device.device_id, exc_info=True)
