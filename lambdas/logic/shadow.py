"""Relays and sensors through the device shadow (one document per thing, as IoT Core keeps it).

The device reports its capabilities and state:
  reported = {"capabilities": {"relays": {id: {"name", "logic"}}, "sensors": {id: {"type", "unit",
              "offset"}}}, "relays": {id: bool}, "sensors": {id: {"value", "unit", "at"}}}
The owner sets desired relay states and settings in the same shape:
  desired  = {"relays": {id: bool}, "capabilities": {"relays": {id: {"name"?, "logic"?}},
              "sensors": {id: {"offset"}}}}
`delta` is THE delta computation, used by the owner API (both on AWS and locally) and by the local
shadow service that stands in for IoT Core's.
"""

from __future__ import annotations

import math
import time
from typing import Any

from lambdas.errors import BadRequest, Conflict

LOGIC = ("positive", "negative")
MAX_NAME = 32
MAX_OFFSET = 1000.0


def delta(desired: Any, reported: Any) -> Any:
    """What `desired` asks for that `reported` does not have yet (None: nothing)."""
    if not isinstance(desired, dict):
        return None if desired == reported else desired
    if not isinstance(reported, dict):
        reported = {}
    out = {}
    for key, value in desired.items():
        if value is None:
            continue
        diff = delta(value, reported.get(key))
        if diff is not None and diff != {}:
            out[key] = diff
    return out or None


def _capabilities(reported: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    caps = reported.get("capabilities") if isinstance(reported, dict) else None
    if not isinstance(caps, dict):
        raise Conflict("The device has not described its relays and sensors yet. Is it online?")
    relays, sensors = caps.get("relays"), caps.get("sensors")
    return (relays if isinstance(relays, dict) else {}), (sensors if isinstance(sensors, dict) else {})


def _known(kind: str, ids: dict[str, Any], wanted: dict[str, Any]) -> None:
    unknown = sorted(set(wanted) - set(ids))
    if unknown:
        have = ", ".join(sorted(ids)) or "none"
        raise BadRequest(f"This device has no {kind} {', '.join(unknown)} (it has: {have}).")


def desired_from_patch(patch: dict[str, Any], reported: dict[str, Any]) -> dict[str, Any]:
    """Validate an owner's change against the device's capabilities; the desired document to write."""
    relays, sensors = _capabilities(reported)
    desired: dict[str, Any] = {}
    states = patch.get("relays") or {}
    names = patch.get("relayNames") or {}
    logic = patch.get("relayLogic") or {}
    offsets = patch.get("sensorOffsets") or {}
    for label, part in (("relay", states), ("relay", names), ("relay", logic)):
        _known(label, relays, part)
    _known("sensor", sensors, offsets)
    if not (states or names or logic or offsets):
        raise BadRequest("Nothing to change: give relays, relayNames, relayLogic or sensorOffsets.")
    for rid, on in states.items():
        if not isinstance(on, bool):
            raise BadRequest(f"Relay {rid} must be switched to true (on) or false (off).")
    for rid, name in names.items():
        if not isinstance(name, str) or not name.strip() or len(name.strip()) > MAX_NAME:
            raise BadRequest(f"The name of relay {rid} must be 1 to {MAX_NAME} characters.")
    for rid, value in logic.items():
        if value not in LOGIC:
            raise BadRequest(f"The logic of relay {rid} must be 'positive' or 'negative'.")
    for sid, offset in offsets.items():
        if isinstance(offset, bool) or not isinstance(offset, int | float) or not math.isfinite(offset):
            raise BadRequest(f"The calibration offset of sensor {sid} must be a number.")
        if abs(offset) > MAX_OFFSET:
            raise BadRequest(f"The calibration offset of sensor {sid} must be within ±{MAX_OFFSET:g}.")
    if states:
        desired["relays"] = dict(states)
    relay_settings: dict[str, dict[str, Any]] = {}
    for rid, name in names.items():
        relay_settings.setdefault(rid, {})["name"] = name.strip()
    for rid, value in logic.items():
        relay_settings.setdefault(rid, {})["logic"] = value
    caps: dict[str, Any] = {}
    if relay_settings:
        caps["relays"] = relay_settings
    if offsets:
        caps["sensors"] = {sid: {"offset": float(v)} for sid, v in offsets.items()}
    if caps:
        desired["capabilities"] = caps
    return desired


def view(document: dict[str, Any] | None, now: float | None = None) -> dict[str, Any]:
    """The owner's view of a shadow document: reported, desired, delta and how old the report is."""
    now = time.time() if now is None else now
    document = document or {}
    state = document.get("state") or {}
    reported = state.get("reported") or {}
    desired = state.get("desired") or {}
    stamps = []
    metadata = (document.get("metadata") or {}).get("reported") or {}

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("timestamp"), int | float):
                stamps.append(node["timestamp"])
            for value in node.values():
                collect(value)

    collect(metadata)
    reported_at = max(stamps) if stamps else None
    return {
        "reported": reported,
        "desired": desired,
        "delta": delta(desired, reported) or {},
        "version": document.get("version"),
        "reportedAt": reported_at,
        "staleSeconds": None if reported_at is None else max(0, int(now - reported_at)),
    }
