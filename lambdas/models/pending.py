"""Request bodies of the pending-device routes (registration tokens, design.md B)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from lambdas.models.common import Name

Board = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.+-]+$")
]


class PendingCreateRequest(BaseModel):
    name: Name = Field(description="Display name the device gets when it registers.")
    board: Board = Field(
        description="Board type, e.g. `esp32`, `raspberry-pi`; selects the configuration format."
    )
