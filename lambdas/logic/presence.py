"""Presence: online / away / offline, from IoT lifecycle events and (rare) device status messages.

Stored on the device item: `presence` {status: "online"|"offline", lastSeen: ISO, ip, and for lifecycle
events `version` (IoT's versionNumber) and `event` (connected|disconnected)} plus the number `lastSeenAt`
(epoch milliseconds). "Last seen" is the time of the newest connect, disconnect or status event written.

Where presence comes from (docs/protocol.md "Presence"):

- IoT Core's lifecycle events say when a device connects and when it leaves: a clean DISCONNECT at once,
  a dropped connection after the MQTT keep-alive timeout (1.5 x keep-alive). They may arrive out of order
  or twice (https://docs.aws.amazon.com/iot/latest/developerguide/life-cycle-events.html), so they are
  ordered by `versionNumber`, which grows with every connection of a client id and is shared by the
  connect and the disconnect of one connection: (version, connected < disconnected). Their `timestamp`
  is only accurate to +/- 2 minutes, so it orders nothing when a version is known.
- Status messages (on change, and a heartbeat every few hours) carry the agent's facts (version, board,
  ip, mac) and confirm an online device; the topic rule adds `receivedAt` (broker time, ms). One never
  turns a disconnect back into online unless it was received well after it (LIFECYCLE_SKEW_MS): a late
  message from before the disconnect must not resurrect the device.

Only a change is written (status, ip, agent facts, a newer lifecycle event), plus a confirmation of an
online device at most every CONFIRM_INTERVAL_MS, which keeps a heartbeat-confirmed device from turning
"away" (lambdas.domain.device.ONLINE_SECONDS). Writes are optimistic (conditional on the `lastSeenAt`
read), so two concurrent events cannot overwrite each other backwards. Device clocks are never trusted.
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

CONFIRM_INTERVAL_MS = 3_600_000  # an unchanged online device is re-confirmed at most hourly
LIFECYCLE_SKEW_MS = 120_000  # lifecycle timestamps are accurate to +/- 2 minutes (AWS docs)
MAX_EVENT_FIELDS = 32
MAX_FUTURE_MS = 300_000  # a timestamp further ahead than this is clamped to now
# A disconnect whose reason is the same device's newer session: that session is what counts.
SUPERSEDED = "DUPLICATE_CLIENTID"

_THING = re.compile(r"^[A-Za-z0-9_:-]{1,128}$")
_MAC = re.compile(r"^[0-9A-Fa-f]{2}([:-]?[0-9A-Fa-f]{2}){5}$")
_TEXT = re.compile(r"^[\x20-\x7e]{1,64}$")
_REASON = re.compile(r"^[A-Z_]{1,40}$")
_EVENT_RANK = {"connected": 0, "disconnected": 1}  # of one connection, the disconnect comes last


# --- parsing -----------------------------------------------------------------------------------------


class Update:
    """One presence observation, validated."""

    def __init__(
        self,
        thing: str,
        status: str,
        at_ms: int,
        ip: str | None,
        agent: dict[str, Any],
        source: str,
        version: int | None = None,
        reason: str | None = None,
    ) -> None:
        self.thing = thing
        self.status = status
        self.at_ms = at_ms
        self.ip = ip
        self.agent = agent
        self.source = source
        self.version = version  # lifecycle events: IoT's versionNumber
        self.reason = reason  # disconnects: IoT's disconnectReason

    @property
    def event(self) -> str | None:
        if self.source != "lifecycle":
            return None
        return "connected" if self.status == "online" else "disconnected"

    def __repr__(self) -> str:
        return f"Update({self.thing}, {self.status}, {self.at_ms}, {self.source}, v={self.version})"


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


def _version(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


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
        reason = event.get("disconnectReason")
        if kind == "disconnected" and reason == SUPERSEDED:
            return None  # the same device reconnected; its new session is what counts
        if kind not in _EVENT_RANK or not isinstance(thing, str) or not _THING.match(thing):
            return None
        status = "online" if kind == "connected" else "offline"
        at_ms = _millis(event.get("timestamp"), now_ms)
        return Update(
            thing,
            status,
            at_ms,
            _ip(event.get("ipAddress")),
            {},
            "lifecycle",
            version=_version(event.get("versionNumber")),
            reason=reason
            if kind == "disconnected" and isinstance(reason, str) and _REASON.match(reason)
            else None,
        )
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


# --- deciding ------------------------------------------------------------------------------------------


def _is_stale(update: Update, current: dict[str, Any], stored_ms: int | None) -> bool:
    """True when `update` is older than what is stored (so it must not be written)."""
    stored_version = _version(current.get("version"))
    if update.source == "lifecycle" and update.version is not None and stored_version is not None:
        mine = (update.version, _EVENT_RANK[update.event or "connected"])
        theirs = (stored_version, _EVENT_RANK.get(str(current.get("event")), 0))
        return mine < theirs
    if stored_ms is None:
        return False
    if update.source == "lifecycle" and update.version is not None:
        # The first versioned event over a status-only record: its time is approximate, trust it within that.
        return update.at_ms < stored_ms - LIFECYCLE_SKEW_MS
    if update.source == "status" and update.status == "online" and current.get("status") == "offline":
        # Proof of life after a recorded disconnect only when clearly later than it: lifecycle times
        # are approximate, and a status message sent before the drop may be delivered after it.
        return update.at_ms <= stored_ms + LIFECYCLE_SKEW_MS
    return update.at_ms < stored_ms


def decide(update: Update, current: dict[str, Any], stored_ms: int | None) -> dict[str, Any] | None:
    """The `presence` to store for `update` over the stored one, or None when nothing is to be written."""
    if _is_stale(update, current, stored_ms):
        return None
    ip = update.ip or current.get("ip")
    at_ms = max(update.at_ms, stored_ms or 0)  # last seen never goes backwards
    presence: dict[str, Any] = {"status": update.status, "lastSeen": times.iso_ms(at_ms), "ip": ip}
    if update.source == "lifecycle" and update.version is not None:
        presence["version"] = update.version
        presence["event"] = update.event
    else:
        for key in ("version", "event"):  # a status message keeps the lifecycle order it came after
            if key in current:
                presence[key] = current[key]
    if update.reason:
        presence["reason"] = update.reason
    same = all(current.get(k) == presence.get(k) for k in ("status", "ip", "version", "event"))
    if not same:
        return presence
    confirming = update.status == "online" and update.source == "status"
    if confirming and stored_ms is not None and update.at_ms - stored_ms >= CONFIRM_INTERVAL_MS:
        return presence
    return None


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
        current = device.presence
        if _is_stale(update, current, stored_ms):
            return "stale"
        presence = decide(update, current, stored_ms)
        agent = {**device.agent, **update.agent}
        if presence is None and agent == device.agent:
            return "unchanged"
        fields: dict[str, Any] = {}
        if presence is not None:
            fields["presence"] = presence
            fields["lastSeenAt"] = max(update.at_ms, stored_ms or 0)
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
