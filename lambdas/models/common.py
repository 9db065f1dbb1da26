"""Shapes shared by every API answer."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, Field, StringConstraints

NAME_MAX = 64

# A display name: trimmed, 1-64 characters, no control characters.
Name = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=NAME_MAX, pattern=r"^[^\x00-\x1f\x7f]+$"
    ),
]


def _blank_to_none(value: object) -> object:
    if isinstance(value, str):
        return value.strip() or None
    return value


# The same, but optional: a blank string counts as "not given".
OptionalName = Annotated[Name | None, BeforeValidator(_blank_to_none)]


class ErrorBody(BaseModel):
    """Every error answer: a machine code and a sentence for people."""

    error: str = Field(description="Machine-readable code, e.g. `not_found`, `validation_error`.")
    message: str = Field(description="What went wrong, as a sentence that can be shown to the user.")
    retryAfter: int | None = Field(default=None, description="Seconds to wait (429 and 503 only).")


class GatewayError(BaseModel):
    """What API Gateway itself answers before the function runs, e.g. its JWT authorizer's 401."""

    message: str = Field(description="API Gateway's text, e.g. `Unauthorized`.")
