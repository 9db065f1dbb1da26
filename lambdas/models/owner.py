"""Owner API request and response bodies (validation and the OpenAPI document come from these)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from lambdas.models.common import Name, OptionalName


class ClaimRequest(BaseModel):
    claimCode: str = Field(
        min_length=1,
        max_length=64,
        description="The code on the label, e.g. `ABCDE-FGHJK`. Case, spaces and hyphens do not matter; "
        "I and L read as 1, O as 0.",
        examples=["ABCDE-FGHJK"],
        repr=False,  # a secret: never in a repr, hence never in Powertools' debug log of the route's arguments
    )
    name: OptionalName = Field(default=None, description="Display name; default `Device <last 4 of id>`.")


class RenameRequest(BaseModel):
    name: Name = Field(description="New display name, 1-64 characters (trimmed).")


class Certificate(BaseModel):
    id: str
    status: str | None = Field(
        default=None, description="INACTIVE until the device acknowledges, then ACTIVE; REVOKED."
    )


class Device(BaseModel):
    id: str
    name: str | None = None
    state: str = Field(description="unclaimed, claimed, provisioned, active or revoked.")
    board: str | None = None
    agentVersion: str | None = None
    ip: str | None = None
    mac: str | None = None
    presence: Literal["online", "away", "offline"]
    lastSeen: str | None = Field(default=None, description="ISO 8601 (UTC) time of the last status message.")
    certificate: Certificate | None = None
    claimedAt: str | None = None
    createdAt: str | None = None
    role: Literal["owner", "operator", "viewer"] = Field(
        default="owner",
        description="The caller's role: `owner`; `operator` (status, sensors, relays and settings) or "
        "`viewer` (status and sensors) on a device shared with them.",
    )
    sharedBy: str | None = Field(default=None, description="On a shared device: the owner's email.")


class DeviceList(BaseModel):
    devices: list[Device] = Field(
        description="The caller's devices, newest first, then the devices shared with them (with `role`)."
    )


class AuditEvent(BaseModel):
    at: str = Field(description="ISO 8601 (UTC).")
    action: str = Field(description="e.g. device.claimed, certificate.issued, certificate.revoked.")
    actor: str | None = Field(default=None, description="`device`, or the account that acted.")
    detail: dict[str, Any] = Field(default_factory=dict)


class EventList(BaseModel):
    events: list[AuditEvent] = Field(
        description="The device's audit trail since it joined this account, newest first."
    )


# --- sharing and transfer (lambdas/logic/sharing.py, lambdas/logic/transfer.py) ---------------------

# An account's email as typed: trimmed, one @, nothing that could break out of a Cognito filter string.
Email = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=3, max_length=254, pattern=r'^[^@\s"\\]+@[^@\s"\\]+$'
    ),
]


class ShareRequest(BaseModel):
    email: Email = Field(description="The email of the account to share with.", examples=["sam@example.com"])
    role: Literal["viewer", "operator"] = Field(
        description="`viewer`: status and sensors; `operator`: also relays and settings."
    )


class Share(BaseModel):
    userId: str = Field(description="The member's account id (use it to remove the share).")
    email: str | None = None
    role: Literal["viewer", "operator"]
    createdAt: str | None = None


class ShareList(BaseModel):
    shares: list[Share] = Field(description="Who the device is shared with, oldest first.")


class TransferRequest(BaseModel):
    email: Email = Field(description="The email of the account to hand the device to.")


class Transfer(BaseModel):
    id: str = Field(description="The offer's id (accept or decline it with this).")
    deviceId: str
    deviceName: str | None = Field(default=None, description="The sender's name for the device.")
    sender: str | None = Field(default=None, description="The sender's email.")
    recipient: str | None = Field(default=None, description="The recipient's email.")
    direction: Literal["incoming", "outgoing"]
    status: Literal["pending", "accepting"]
    createdAt: str | None = None
    expiresAt: str = Field(description="ISO 8601 (UTC); 7 days after the offer was made.")


class TransferList(BaseModel):
    transfers: list[Transfer] = Field(description="Offers to you and offers you made, newest first.")
