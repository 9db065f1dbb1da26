"""The device record, typed: what the devices table holds for one device, and what an owner sees of it.

`Device.from_item` / `to_item` convert to and from the plain item the DAL stores (attribute names in
ATTRIBUTES); attributes this class does not know are kept in `extra`, so a read-modify-write never drops
them. Kept light (stdlib only): the unclaimed poll builds one per request.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields, replace
from typing import Any

from lambdas import constants as c
from lambdas.domain import times


class State(enum.StrEnum):
    UNCLAIMED = c.STATE_UNCLAIMED
    CLAIMED = c.STATE_CLAIMED
    PROVISIONED = c.STATE_PROVISIONED
    ACTIVE = c.STATE_ACTIVE
    REVOKED = c.STATE_REVOKED
    DELETED = c.STATE_DELETED


LIVE_STATES = frozenset(State) - {State.DELETED}
OWNED_STATES = frozenset({State.CLAIMED, State.PROVISIONED, State.ACTIVE, State.REVOKED})
# States in which a device may hold a certificate that connects, hence may be online.
CONNECTABLE_STATES = frozenset({State.PROVISIONED, State.ACTIVE})

# Presence comes from IoT lifecycle events (a disconnect turns a device offline at once) and a status
# heartbeat every HEARTBEAT_SECONDS that confirms a connected device (lambdas.logic.presence).
HEARTBEAT_SECONDS = 6 * 3600  # the agent's default (firmware.config.HEARTBEAT_INTERVAL)
ONLINE_SECONDS = 2 * HEARTBEAT_SECONDS + 600  # connected, confirmed younger than this: online
AWAY_SECONDS = 4 * HEARTBEAT_SECONDS  # younger than this: away (a disconnect may be lost); older: offline


@dataclass(slots=True)
class Device:
    device_id: str
    state: State = State.UNCLAIMED
    owner_id: str | None = None
    owner_email: str | None = None
    ownership: str | None = None  # one id per ownership; audit events carry it (docs/data-model.md)
    name: str | None = None
    public_key_pem: str | None = None
    claim_code_hash: str | None = field(default=None, repr=False)  # an offline guessing target
    board: str | None = None
    mac: str | None = None
    agent: dict[str, Any] = field(default_factory=dict)
    thing_name: str | None = None
    certificate_id: str | None = None
    certificate_pem: str | None = None
    certificate_status: str | None = None
    presence: dict[str, Any] = field(default_factory=dict)
    last_seen_at: int | None = None  # epoch ms of the newest presence message: orders them
    created_at: str | None = None
    claimed_at: str | None = None
    provisioned_at: str | None = None
    activated_at: str | None = None
    revoked_at: str | None = None
    released_at: str | None = None
    last_poll_at: str | None = None
    last_poll_ip: str | None = None
    registration: dict[str, Any] = field(default_factory=dict)
    # Certificate rotation (lambdas/logic/rotation.py): the pending new certificate and its new key, the
    # scalar id that guards rotation writes, and the current certificate's effective expiry.
    rotation: dict[str, Any] | None = None
    rotation_id: str | None = None
    certificate_expires_at: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    # --- storage ------------------------------------------------------------------------------------

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Device:
        known: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in item.items():
            name = _BY_ATTRIBUTE.get(key)
            if name is None:
                extra[key] = value
            elif value is not None:
                known[name] = value
        raw_state = known.get("state", c.STATE_UNCLAIMED)
        try:
            known["state"] = State(raw_state)
        except ValueError:
            extra["state"] = raw_state  # not ours: the invariant checker reports it
            known["state"] = State.UNCLAIMED
        for name in ("agent", "presence", "registration"):
            if not isinstance(known.get(name, {}), dict):
                extra[ATTRIBUTES[name]] = known.pop(name)
        if not isinstance(known.get("last_seen_at", 0), int | float):
            known.pop("last_seen_at")
        elif "last_seen_at" in known:
            known["last_seen_at"] = int(known["last_seen_at"])
        return cls(**known, extra=extra)

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = dict(self.extra)
        for name, attribute in ATTRIBUTES.items():
            value = getattr(self, name)
            if value is None or value == {}:
                continue
            item[attribute] = str(value) if isinstance(value, State) else value
        return item

    def with_changes(self, **changes: Any) -> Device:
        return replace(self, **changes)

    # --- what it is -----------------------------------------------------------------------------------

    @property
    def state_known(self) -> bool:
        """False when the stored state is none of State's (kept in `extra`; treated as not usable)."""
        return "state" not in self.extra

    @property
    def thing(self) -> str:
        """The IoT thing (and MQTT client id): the device id."""
        return self.thing_name or self.device_id

    def is_owned_by(self, owner_id: str) -> bool:
        return self.owner_id == owner_id and self.state in LIVE_STATES

    def presence_status(self, at: float | None = None) -> tuple[str, str | None]:
        """(online|away|offline, lastSeen ISO) at `at`. A device that cannot connect is never online."""
        at = times.now() if at is None else at
        last_seen = self.presence.get("lastSeen")
        if (
            self.state not in CONNECTABLE_STATES
            or self.last_seen_at is None
            or self.presence.get("status") != "online"
        ):
            return "offline", last_seen
        age = at - self.last_seen_at / 1000
        if age < ONLINE_SECONDS:
            return "online", last_seen
        if age < AWAY_SECONDS:
            return "away", last_seen
        return "offline", last_seen

    def owner_view(self, at: float | None = None) -> dict[str, Any]:
        """What the owner API answers for this device (models.owner.Device); nothing internal leaks."""
        status, last_seen = self.presence_status(at)
        certificate = None
        if self.certificate_id:
            certificate = {"id": self.certificate_id, "status": self.certificate_status}

        def text(value: Any) -> str | None:
            return str(value) if value not in (None, "") else None

        return {
            "id": self.device_id,
            "name": text(self.name),
            "state": str(self.state),
            "board": text(self.board or self.agent.get("board")),
            "agentVersion": text(self.agent.get("version")),
            "ip": text(self.presence.get("ip") or self.agent.get("ip")),
            "mac": text(self.mac or self.agent.get("mac")),
            "presence": status,
            "lastSeen": text(last_seen),
            "certificate": certificate,
            "claimedAt": text(self.claimed_at),
            "createdAt": text(self.created_at),
        }


def new_ownership() -> str:
    """A fresh ownership id: set by every claim, carried by the audit events written under it."""
    import secrets

    return secrets.token_hex(8)


def _attribute(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


# Python field -> stored attribute name (camelCase; the table's key names come from constants).
ATTRIBUTES: dict[str, str] = {f.name: _attribute(f.name) for f in fields(Device) if f.name != "extra"}
_BY_ATTRIBUTE = {attribute: name for name, attribute in ATTRIBUTES.items()}
assert ATTRIBUTES["device_id"] == c.DEVICE_PK and ATTRIBUTES["owner_id"] == c.DEVICE_OWNER_KEY
assert ATTRIBUTES["claim_code_hash"] == c.DEVICE_CLAIM_CODE_KEY
