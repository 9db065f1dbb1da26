"""`POST /v1/device/rotate` shapes, for the OpenAPI document only (the device handler validates by hand:
`lambdas.logic.rotation.validate`). Beside lambdas/models/device.py, whose helpers they reuse, so that
they can be folded into it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from lambdas.models.device import _SIGNED_HEADERS, DeviceError, Endpoint, Topics


class RotateRequest(BaseModel):
    step: Literal["request", "ack", "complete"]
    csr: str | None = Field(
        default=None, max_length=4096, description="step request: PEM CSR of the new key."
    )
    certificateId: str | None = Field(
        default=None, pattern=r"^[0-9a-fA-F]{64}$", description="steps ack and complete: the new certificate."
    )


class RotateDelivered(BaseModel):
    status: Literal["rotating"]
    rotationId: str | None = None
    thingName: str
    certificateId: str
    certificatePem: str
    caPem: str
    endpoint: Endpoint
    topics: Topics
    certificateExpiresAt: str | None = Field(default=None, description="When the new certificate expires.")
    rotationExpiresAt: str | None = Field(default=None, description="Ack and complete before this.")
    retryAfter: int = 0


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def rotation_openapi() -> tuple[dict[str, Any], dict[str, Any]]:
    """(paths, component schemas) of the device rotation route, to merge into the document."""
    from pydantic.json_schema import models_json_schema

    _, top = models_json_schema(
        [(m, "validation") for m in (RotateRequest, RotateDelivered, DeviceError)],
        ref_template="#/components/schemas/{model}",
    )
    signed = [
        {"name": name, "in": "header", "required": True, "schema": {"type": "string"}, "description": text}
        for name, text in _SIGNED_HEADERS
    ]

    def error(text: str) -> dict[str, Any]:
        return {"description": text, "content": {"application/json": {"schema": _ref(DeviceError)}}}

    paths = {
        "/v1/device/rotate": {
            "post": {
                "tags": ["device"],
                "summary": "Rotate the device certificate",
                "description": "step request (CSR of the new key) delivers a second certificate; step ack "
                "activates it; step complete, after an MQTT connect with it, revokes the old one and makes "
                "the new certificate and key the device's. Signed with the current or the new key.",
                "operationId": "device_rotate",
                "parameters": signed,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(RotateRequest)}},
                },
                "responses": {
                    "200": {
                        "description": "step request: the new certificate (the same one when asked again).",
                        "content": {"application/json": {"schema": _ref(RotateDelivered)}},
                    },
                    "204": {"description": "steps ack and complete: done (also when repeated)."},
                    "400": error("Malformed body, step or CSR."),
                    "401": error("Bad signature or clock."),
                    "403": error("The device has been revoked."),
                    "404": error("Unknown or deleted device."),
                    "409": error("Not active, not this rotation's certificate, or the rotation expired."),
                    "413": error("Request body larger than 16 KiB."),
                    "503": error("IoT busy or a concurrent change: retry after Retry-After."),
                },
            }
        }
    }
    return paths, dict(top.get("$defs", {}))
