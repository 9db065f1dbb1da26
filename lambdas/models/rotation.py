"""Certificate rotation: the owner route's answer (`POST /v1/devices/{id}/rotate`, validated by the
resolver). The device route's shapes are in lambdas/models/device_rotation.py (kept out of the owner
API's import, which must not load the device models).
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class RotationProgress(BaseModel):
    id: str | None = None
    step: str | None = Field(default=None, description="requested, issued (delivered) or activated.")
    requestedBy: str | None = Field(default=None, description="`device`, an account id, or `operator`.")
    requestedAt: str | None = None
    expiresAt: str | None = Field(
        default=None, description="After this the pending certificate is abandoned; the current one stays."
    )
    newCertificateId: str | None = None


class RotationStatus(BaseModel):
    deviceId: str
    certificateId: str | None = None
    certificateExpiresAt: str | None = Field(
        default=None,
        description="ISO 8601: the current certificate's notAfter, or its issue plus the "
        "configured validity if sooner.",
    )
    rotation: RotationProgress | None = Field(default=None, description="The rotation in progress, if any.")
