"""Owner API request and response bodies (validation and the OpenAPI document come from these)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

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


class DeviceList(BaseModel):
    devices: list[Device] = Field(description="The caller's devices, newest first.")


class AuditEvent(BaseModel):
    at: str = Field(description="ISO 8601 (UTC).")
    action: str = Field(description="e.g. device.claimed, certificate.issued, certificate.revoked.")
    actor: str | None = Field(default=None, description="`device`, or the account that acted.")
    detail: dict[str, Any] = Field(default_factory=dict)


class EventList(BaseModel):
    events: list[AuditEvent] = Field(
        description="The device's audit trail since it joined this account, newest first."
    )
