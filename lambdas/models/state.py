"""Request body of `PATCH /v1/devices/{id}/state` (relays and sensors through the device shadow)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

PartId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,16}$")]


class StatePatch(BaseModel):
    relays: dict[PartId, bool] | None = Field(None, description='Desired relay states, e.g. {"r1": true}.')
    relayNames: dict[PartId, Annotated[str, StringConstraints(min_length=1, max_length=32)]] | None = Field(
        None, description="New relay names."
    )
    relayLogic: dict[PartId, Literal["positive", "negative"]] | None = Field(
        None, description="Relay logic: positive (on = high) or negative (on = low)."
    )
    sensorOffsets: dict[PartId, float] | None = Field(None, description="Sensor calibration offsets.")
