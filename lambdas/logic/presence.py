"""Presence: online / away / offline, from device status messages and IoT lifecycle events.

Stored on the device item: `presence` {status: "online"|"offline", lastSeen: ISO, ip} plus the number
`lastSeenAt` (epoch milliseconds), which orders messages: a message older than the stored one is not
written. Writes are optimistic (conditional on the `lastSeenAt` read), so two concurrent messages cannot
overwrite each other backwards. A heartbeat that changes nothing is written at most every
WRITE_INTERVAL_MS, which keeps `online` (< ONLINE_SECONDS) true with 30 s status messages.

Time: the topic rule adds `receivedAt` (broker time, ms) to status messages; lifecycle events carry
IoT Core's `timestamp` (ms). Device clocks are never trusted. Without either, the time of handling.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
from typing import Any

from lambdas.domain import times
from lambdas.domain.device import CONNECTABLE_STATES

log = logging.getLogger("latchkey.presence")

WRITE_INTERVAL_MS = 45_000  # unchanged heartbeats are written at most this often
MAX_EVENT_FIELDS = 32
MAX_FUTURE_MS = 300_000  # a timestamp further ahead than this is clamped to now

_THING = re.compile(r"^[A-Za-z0-9_:-]{1,128}$")
_MAC = re.compile(r"^[0-9A-Fa-f]{2}([:-]?[0-9A-Fa-f]{2}){5}$")
_TEXT = re.compile(r"^[\x20-\x7e]{1,64}$")


# --- parsing -----------------------------------------------------------------------------------------


class Update:
    """One presence observation, validated."""

    def __init__(
        self, thing: str, status: str, at_ms: int, ip: str | None, agent: dict[str, Any], source: str
    ) -> None:
        self.thing = thing
        self.status = status
        self.at_ms = at_ms
        self.ip = ip
        self.agent = agent
        self.source = source

    def __repr__(self) -> str:
        return f"Update({self.thing}, {self.status}, {self.at_ms}, {self.source})"


def _ip(value: Any) -> str | None:
    if not isinstance(value, str) or len(value) > 45:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and _TEXT.match(value) else None


def _millis(value: Any, now_ms: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return now_ms
    return min(int(value), now_ms + MAX_FUTURE_MS)


def _thing_from_topic(topic: Any, index: int) -> str | None:
    if not isinstance(topic, str):
        return None
    levels = topic.split("/")
    return levels[index] if len(levels) > index else None


def parse(event: Any, now: float | None = None) -> Update | None:
    """A status message or lifecycle event (as the topic rules deliver them) -> Update, or None to ignore."""
    now_ms = int((time.time() if now is None else now) * 1000)
    if not isinstance(event, dict) or len(event) > MAX_EVENT_FIELDS:
        return None
    topic = event.get("topic")
    if "eventType" in event and "clientId" in event:  # $aws/events/presence/<type>/<clientId>
        kind = event.get("eventType")
        thing = event.get("clientId")
        if kind == "disconnected" and event.get("disconnectReason") == "DUPLICATE_CLIENTID":
            return None  # the same device reconnected; its new session is what counts
        if kind not in ("connected", "disconnected") or not isinstance(thing, str) or not _THING.match(thing):
            return None
        status = "online" if kind == "connected" else "offline"
        at_ms = _millis(event.get("timestamp"), now_ms)
        return Update(thing, status, at_ms, _ip(event.get("ipAddress")), {}, "lifecycle")
    # latchkey/things/<thing>/status: the topic names the thing (the device policy pins it), not the payload
    thing = _thing_from_topic(topic, 2) if topic else event.get("thingName")
    if not isinstance(thing, str) or not _THING.match(thing):
        return None
    status = event.get("status", "online")
    if status not in ("online", "offline"):
        return None
    agent: dict[str, Any] = {}
    for key in ("version", "board"):
        text = _text(event.get(key))
        if text:
            agent[key] = text
    mac = event.get("mac")
    if isinstance(mac, str) and _MAC.match(mac):
        agent["mac"] = mac
    ip = _ip(event.get("ip"))
    if ip:
        agent["ip"] = ip
    at_ms = _millis(event.get("receivedAt"), now_ms)
    return Update(thing, status, at_ms, ip, agent, "status")


# --- writing -----------------------------------------------------------------------------------------


def apply(update: Update, attempts: int = 3) -> str:
    """Write the observation; returns what happened: updated, stale, unchanged, unknown, ignored, lost."""
    from lambdas.dal import devices

    for _ in range(attempts):
        device = devices.get(update.thing, consistent=True)
        if device is None:
            log.info("presence for unknown thing %s ignored", update.thing)
            return "unknown"
        if device.state not in CONNECTABLE_STATES:
            log.info("presence for %s in state %s ignored", update.thing, device.state)
            return "ignored"
        stored_ms = device.last_seen_at
        if stored_ms is not None and update.at_ms < stored_ms:
            return "stale"
        current = device.presence
        agent = {**device.agent, **update.agent}
        ip = update.ip or current.get("ip")
        presence = {"status": update.status, "lastSeen": times.iso_ms(update.at_ms), "ip": ip}
        unchanged = (
            current.get("status") == update.status
            and current.get("ip") == ip
            and agent == device.agent
            and stored_ms is not None
            and update.at_ms - stored_ms < WRITE_INTERVAL_MS
        )
        if unchanged:
            return "unchanged"
        fields: dict[str, Any] = {"presence": presence, "lastSeenAt": update.at_ms}
        if agent != device.agent:
            fields["agent"] = agent
        try:
            devices.observe(
                update.thing,
                fields,
                expected={"lastSeenAt": stored_ms, "state": [str(s) for s in CONNECTABLE_STATES]},
            )
            return "updated"
        except devices.ConditionFailed:
            continue  # a concurrent message or a state change: look again
    log.warning("presence for %s not written after %d attempts", update.thing, attempts)
    return "lost"
