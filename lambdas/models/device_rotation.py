"""`POST /v1/device/rotate` in the OpenAPI document; its shapes are in lambdas/device_contract.py (with
the other device routes'), which `lambdas.logic.rotation.validate` checks bodies against."""

from __future__ import annotations

import copy
from typing import Any

from lambdas import device_contract
from lambdas.models.device import _SIGNED_HEADERS

ROTATE_REQUEST = device_contract.ROTATE_REQUEST
ROTATE_DELIVERED = device_contract.ROTATE_DELIVERED
SCHEMAS: dict[str, dict[str, Any]] = {
    name: device_contract.SCHEMAS[name] for name in ("RotateRequest", "RotateDelivered")
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def rotation_openapi() -> tuple[dict[str, Any], dict[str, Any]]:
    """(paths, component schemas) of the device rotation route, to merge into the document."""
    signed = [
        {"name": name, "in": "header", "required": True, "schema": {"type": "string"}, "description": text}
        for name, text in _SIGNED_HEADERS
    ]

    def error(text: str) -> dict[str, Any]:
        return {"description": text, "content": {"application/json": {"schema": _ref("DeviceError")}}}

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
                    "content": {"application/json": {"schema": _ref("RotateRequest")}},
                },
                "responses": {
                    "200": {
                        "description": "step request: the new certificate (the same one when asked again).",
                        "content": {"application/json": {"schema": _ref("RotateDelivered")}},
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
    return paths, copy.deepcopy(SCHEMAS)
