"""The device poll: validate the body, answer for the device's state, remember when it was last seen.

The unclaimed answer is the hottest path of the system: the handler reads the device once (one
GetItem), and this module writes `lastPollAt` at most every LAST_SEEN_WRITE_INTERVAL_SECONDS.
Provisioning (and with it `cryptography` and the IoT adapter) is imported only when needed.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from lambdas import constants as c
from lambdas.domain import times
from lambdas.domain.device import Device, State
from lambdas.errors import BadRequest, Forbidden, NotFound

log = logging.getLogger("latchkey.poll")

MAX_AGENT_FIELDS = 24
MAX_AGENT_VALUE_CHARS = 128
_AGENT_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,31}$")

# retryAfter 0 means "no opinion: keep your own backoff schedule" (docs/protocol.md).
UNCLAIMED = {"status": "unclaimed", "retryAfter": 0}


def validate(body: dict[str, Any]) -> dict[str, Any]:
    """{"attempt": int, "agent": {str: short scalar}, "csr": PEM | None}; unknown fields are ignored."""
    attempt = body.get("attempt", 0)
    if isinstance(attempt, bool) or not isinstance(attempt, int) or not 0 <= attempt < 2**31:
        raise BadRequest("attempt must be a non-negative integer.")
    agent = body.get("agent") or {}
    if not isinstance(agent, dict):
        raise BadRequest("agent must be a JSON object.")
    if len(agent) > MAX_AGENT_FIELDS:
        raise BadRequest(f"agent may have at most {MAX_AGENT_FIELDS} fields.")
    clean: dict[str, Any] = {}
    for key, value in agent.items():
        if not _AGENT_KEY.match(key):
            raise BadRequest(
                f"agent field name {key[:40]!r} is not allowed (letters, digits, _ . -; max 32)."
            )
        if value is None:
            continue
        if isinstance(value, bool | int | float):
            clean[key] = value
        elif isinstance(value, str):
            if len(value) > MAX_AGENT_VALUE_CHARS:
                raise BadRequest(f"agent.{key} is longer than {MAX_AGENT_VALUE_CHARS} characters.")
            clean[key] = value
        else:
            raise BadRequest(f"agent.{key} must be a string, number or boolean.")
    csr = body.get("csr")
    if csr is not None:
        if not isinstance(csr, str):
            raise BadRequest("csr must be a PEM string.")
        if len(csr.encode()) > c.MAX_CSR_BYTES:
            raise BadRequest(f"csr is larger than {c.MAX_CSR_BYTES} bytes.")
        if (
            "-----BEGIN CERTIFICATE REQUEST-----" not in csr
            and "-----BEGIN NEW CERTIFICATE REQUEST-----" not in csr
        ):
            raise BadRequest("csr must be a PEM certificate signing request.")
    return {"attempt": attempt, "agent": clean, "csr": csr or None}


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
