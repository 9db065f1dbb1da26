"""The device poll: validate the body, answer for the device's state, remember when it was last seen.

The unclaimed answer is the hottest path of the system: the handler reads the device once (one
GetItem), and this module writes `lastPollAt` at most every LAST_SEEN_WRITE_INTERVAL_SECONDS.
Provisioning (and with it `cryptography` and the IoT adapter) is imported only when needed.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime
from typing import Any

from lambdas import constants as c
from lambdas.errors import BadRequest, Forbidden, NotFound

log = logging.getLogger("latchkey.poll")

MAX_AGENT_FIELDS = 24
MAX_AGENT_VALUE_CHARS = 128
MAX_CSR_BYTES = 4096
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
        if len(csr.encode()) > MAX_CSR_BYTES:
            raise BadRequest(f"csr is larger than {MAX_CSR_BYTES} bytes.")
        if (
            "-----BEGIN CERTIFICATE REQUEST-----" not in csr
            and "-----BEGIN NEW CERTIFICATE REQUEST-----" not in csr
        ):
            raise BadRequest("csr must be a PEM certificate signing request.")
    return {"attempt": attempt, "agent": clean, "csr": csr or None}


def ensure_pollable(device: dict[str, Any] | None) -> dict[str, Any]:
    """404 for unknown and deleted devices (before the signature: there is no key to check)."""
    if device is None or device.get("state") == "deleted":
        raise NotFound("This device does not exist.")
    return device


def answer(
    device: dict[str, Any], body: dict[str, Any], source_ip: str, now: float | None = None
) -> dict[str, Any]:
    """The poll answer for a device whose signature has been verified."""
    now = time.time() if now is None else now
    state = device.get("state")
    if state == c.STATE_REVOKED:
        raise Forbidden("This device has been revoked.")
    if state == c.STATE_UNCLAIMED:
        touch(device, body["agent"], source_ip, now)
        return dict(UNCLAIMED)

    from lambdas.logic import provisioning  # deferred: cryptography and the IoT adapter

    if state == c.STATE_CLAIMED:
        return provisioning.provision(device, body["csr"], agent=body["agent"], source_ip=source_ip, now=now)
    if state in (c.STATE_PROVISIONED, c.STATE_ACTIVE):
        if body["csr"]:
            provisioning.check_csr(body["csr"], str(device.get("publicKeyPem") or ""))
        result = provisioning.deliver(device)
        touch(device, body["agent"], source_ip, now)
        return result
    log.error("device %s is in unknown state %r", device.get(c.DEVICE_PK), state)
    raise NotFound("This device does not exist.")


def iso(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _seconds_since(stamp: Any, now: float) -> float:
    if not isinstance(stamp, str) or not stamp:
        return float("inf")
    try:
        return now - datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return float("inf")


def touch(device: dict[str, Any], agent: dict[str, Any], source_ip: str, now: float) -> None:
    """Write lastPollAt/agent if the stored values are stale; never fails the poll."""
    if _seconds_since(device.get("lastPollAt"), now) < c.LAST_SEEN_WRITE_INTERVAL_SECONDS:
        return
    from lambdas.dal import devices

    fields: dict[str, Any] = {"lastPollAt": iso(now), "lastPollIp": source_ip or None}
    if agent:
        fields["agent"] = agent
    try:
        devices.update(str(device[c.DEVICE_PK]), fields, expected={"state": device.get("state")})
    except devices.ConditionFailed:
        pass  # the state changed meanwhile; the next poll sees it
    except Exception:
        log.warning("could not record last poll of %s", device.get(c.DEVICE_PK), exc_info=True)
