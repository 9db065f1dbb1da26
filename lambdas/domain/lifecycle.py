"""The device life cycle: every change of a device's state is one row of TRANSITIONS.

A row says from which states the transition may start, the state it ends in (None: unchanged), the
fields it may set and the fields it clears, which fields must still hold the values that were read
(optimistic concurrency: the write is conditional on them, so a concurrent change makes it fail instead
of being overwritten), and the audit action(s) written in the same transaction. The DAL's
`devices.transition` builds the conditional write from the row (lambdas/dal/devices.py); `creates` rows
put a new item, `removes` rows delete it. docs/architecture.md renders the table (`render_markdown`).
"""

from __future__ import annotations

from dataclasses import dataclass

from lambdas.domain.device import LIVE_STATES, OWNED_STATES, State

# A released device is as it left the factory: the label's claim code works again.
RELEASE_CLEARS = (
    "owner_id",
    "owner_email",
    "ownership",
    "name",
    "claimed_at",
    "thing_name",
    "certificate_id",
    "certificate_pem",
    "certificate_status",
    "provisioned_at",
    "activated_at",
    "revoked_at",
    "presence",
    "last_seen_at",
    "registration",
    "rotation",
    "rotation_id",
    "certificate_expires_at",
)
# A rotation in progress is tracked by these fields; revoke ends it (the pending certificate is swept).
ROTATION_FIELDS = ("rotation", "rotation_id")
_ROTATION_GUARD = ("state", "certificate_id", "rotation_id")

# A transfer keeps the device's identity and label but nothing of the previous ownership's credentials.
TRANSFER_CLEARS = (
    "thing_name",
    "certificate_id",
    "certificate_pem",
    "certificate_status",
    "provisioned_at",
    "activated_at",
    "revoked_at",
    "presence",
    "last_seen_at",
    "registration",
    *ROTATION_FIELDS,
)
# Optimistic-concurrency guard of the owner's actions: still theirs, same state, same certificate.
_OWNER_GUARD = ("owner_id", "state", "certificate_id")
_CLAIM_SETS = ("owner_id", "owner_email", "ownership", "name", "claimed_at")
_IDENTITY = ("public_key_pem", "claim_code_hash", "board", "name", "created_at")


def _fields(*groups: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(name for group in groups for name in group))


@dataclass(frozen=True)
class Transition:
    name: str
    sources: frozenset[State]  # empty for transitions that create the device
    target: State | None  # None: the state does not change
    sets: tuple[str, ...]  # Device fields the caller may set
    clears: tuple[str, ...]  # Device fields removed
    guard: tuple[str, ...]  # fields that must still hold the values read
    audit: tuple[str, ...]  # audit actions, in order, committed with the change
    creates: bool = False
    removes: bool = False
    doc: str = ""
    ends_access: bool = False  # the ownership ends: its shares and transfer offer go in the same transaction

    def allows(self, state: State | None) -> bool:
        return state is None if self.creates else state in self.sources


TRANSITIONS: dict[str, Transition] = {
    t.name: t
    for t in (
        Transition(
            "mint",
            frozenset(),
            State.UNCLAIMED,
            sets=_IDENTITY,
            clears=(),
            guard=(),
            audit=("device.minted",),
            creates=True,
            doc="The CLI mints an identity at the factory.",
        ),
        Transition(
            "pre-claim",
            frozenset(),
            State.CLAIMED,
            sets=_fields(_IDENTITY, _CLAIM_SETS),
            clears=(),
            guard=(),
            audit=("device.minted", "device.claimed"),
            creates=True,
            doc="Minted already claimed by an owner; its first poll gets credentials.",
        ),
        Transition(
            "register",
            frozenset(),
            State.CLAIMED,
            sets=_fields(_IDENTITY, _CLAIM_SETS, ("mac", "registration")),
            clears=(),
            guard=(),
            audit=("device.registered", "device.claimed"),
            creates=True,
            doc="A registration token is consumed (same transaction) and the device created, claimed.",
        ),
        Transition(
            "claim",
            frozenset({State.UNCLAIMED}),
            State.CLAIMED,
            sets=_CLAIM_SETS,
            clears=(),
            guard=("owner_id",),
            audit=("device.claimed",),
            doc="An owner types the label's code (or claims a registered pending device); exactly once.",
        ),
        Transition(
            "provision",
            frozenset({State.CLAIMED}),
            State.PROVISIONED,
            sets=(
                "thing_name",
                "certificate_id",
                "certificate_pem",
                "certificate_status",
                "provisioned_at",
                "last_poll_at",
                "agent",
            ),
            clears=(),
            guard=("owner_id",),
            audit=("certificate.issued",),
            doc="The device's poll gets its thing, certificate (INACTIVE) and policy.",
        ),
        Transition(
            "activate",
            frozenset({State.PROVISIONED}),
            State.ACTIVE,
            sets=("certificate_status", "activated_at"),
            clears=(),
            guard=("certificate_id",),
            audit=("certificate.activated",),
            doc="The device acknowledges its saved credentials: certificate ACTIVE.",
        ),
        Transition(
            "rename",
            OWNED_STATES,
            None,
            sets=("name",),
            clears=(),
            guard=("owner_id",),
            audit=("device.renamed",),
            doc="The owner renames the device.",
        ),
        Transition(
            "revoke",
            LIVE_STATES,
            State.REVOKED,
            sets=("certificate_status", "revoked_at"),
            clears=ROTATION_FIELDS,
            guard=_OWNER_GUARD,
            audit=("certificate.revoked",),
            doc="Owner or operator: certificate REVOKED, connection dropped; polls get 403.",
        ),
        Transition(
            "release",
            OWNED_STATES,
            State.UNCLAIMED,
            sets=("released_at",),
            clears=RELEASE_CLEARS,
            guard=_OWNER_GUARD,
            audit=("device.released",),
            ends_access=True,
            doc="The owner gives the device up: credentials wiped, certificate removed, label works again.",
        ),
        Transition(
            "delete",
            LIVE_STATES,
            State.DELETED,
            sets=(),
            clears=(),
            guard=_OWNER_GUARD,
            audit=("device.deleted",),
            removes=True,
            ends_access=True,
            doc="Certificate and thing removed, then the record; polls get 404. The audit trail stays.",
        ),
        Transition(
            "regenerate",
            LIVE_STATES,
            State.DELETED,
            sets=(),
            clears=(),
            guard=_OWNER_GUARD,
            audit=("device.deleted",),
            removes=True,
            ends_access=True,
            doc="A new registration token retires the device that registered with the old one.",
        ),
        Transition(
            "transfer",
            frozenset({State.CLAIMED, State.PROVISIONED, State.ACTIVE}),
            State.CLAIMED,
            sets=_CLAIM_SETS,
            clears=TRANSFER_CLEARS,
            guard=("owner_id", "ownership", "state", "certificate_id"),
            audit=("device.transferred", "device.claimed"),
            ends_access=True,
            doc="The recipient accepts a transfer offer: new owner and ownership, old certificate revoked "
            "first; the device provisions again with a fresh CSR.",
        ),
        # Certificate rotation (lambdas/logic/rotation.py): the device stays active throughout; the
        # pending certificate and its key live in `rotation` until the device has connected with it.
        Transition(
            "rotate-request",
            frozenset({State.ACTIVE}),
            None,
            sets=ROTATION_FIELDS,
            clears=(),
            guard=(*_OWNER_GUARD, "rotation_id"),
            audit=("certificate.rotation-requested",),
            doc="Owner or operator asks for a new certificate; the agent hears it (retained MQTT notice).",
        ),
        Transition(
            "rotate-deliver",
            frozenset({State.ACTIVE}),
            None,
            sets=ROTATION_FIELDS,
            clears=(),
            guard=_ROTATION_GUARD,
            audit=("certificate.issued",),
            doc="The device's new CSR gets a second certificate (INACTIVE), kept beside the current one.",
        ),
        Transition(
            "rotate-ack",
            frozenset({State.ACTIVE}),
            None,
            sets=("rotation",),
            clears=(),
            guard=_ROTATION_GUARD,
            audit=("certificate.activated",),
            doc="The device saved the new certificate: it is ACTIVE too (the rotation overlap begins).",
        ),
        Transition(
            "rotate-complete",
            frozenset({State.ACTIVE}),
            None,
            sets=(
                "certificate_id",
                "certificate_pem",
                "certificate_status",
                "public_key_pem",
                "activated_at",
                "certificate_expires_at",
            ),
            clears=ROTATION_FIELDS,
            guard=_ROTATION_GUARD,
            audit=("certificate.rotated",),
            doc="The device connected with the new certificate: it becomes the current one, the old is revoked.",
        ),
        Transition(
            "rotate-abandon",
            frozenset({State.ACTIVE}),
            None,
            sets=(),
            clears=ROTATION_FIELDS,
            guard=_ROTATION_GUARD,
            audit=("certificate.rotation-abandoned",),
            doc="A rotation expired or was replaced: its certificate is removed, the current one stays.",
        ),
    )
}


class TransitionRefused(Exception):
    """A transition was asked for a state the table does not allow (a programming error upstream)."""


def transition(name: str) -> Transition:
    return TRANSITIONS[name]


def check(name: str, state: State | None) -> Transition:
    row = TRANSITIONS[name]
    if not row.allows(state):
        raise TransitionRefused(f"{name} is not allowed from {state}")
    return row


def render_markdown() -> str:
    """The table as Markdown, for docs/architecture.md (a test keeps the two equal)."""
    order = list(State)
    lines = [
        "| transition | from | to | sets | clears | guarded | audit |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in TRANSITIONS.values():
        sources = "(new)" if t.creates else ", ".join(s for s in order if s in t.sources)
        target = "(unchanged)" if t.target is None else str(t.target)
        clears = "all ownership fields" if t.clears == RELEASE_CLEARS else ", ".join(t.clears)
        lines.append(
            f"| {t.name} | {sources} | {target} | {', '.join(t.sets)} | {clears} | "
            f"{', '.join(t.guard)} | {', '.join(t.audit)} |"
        )
    return "\n".join(lines)


def render_mermaid() -> str:
    """The state diagram the table implies, as Mermaid (docs/architecture.md)."""
    lines = ["stateDiagram-v2"]
    for t in TRANSITIONS.values():
        target = t.target
        sources = ["[*]"] if t.creates else [s for s in State if s in t.sources]
        for source in sources:
            end = "[*]" if target == State.DELETED else (source if target is None else target)
            if target is None and source == end:
                continue  # unchanged state: not drawn
            lines.append(f"    {source} --> {end}: {t.name}")
    return "\n".join(lines)
