"""`POST /v1/device/rotate` in the OpenAPI document: its shapes as JSON Schema, in the style (and the
keyword subset) of lambdas/device_contract.py, so that they can be folded into its SCHEMAS; until then
`lambdas.logic.rotation.validate` checks the same rules by hand.
"""

from __future__ import annotations

import copy
from typing import Any

from lambdas import constants as c
from lambdas import device_contract
from lambdas.models.device import _SIGNED_HEADERS

ROTATE_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["step"],
    "properties": {
        "step": {
            "type": "string",
            "pattern": "^(request|ack|complete)$(?!\\n)",
            "x-expected": "request, ack or complete",
        },
        "csr": {
            "type": "string",
            "maxLength": c.MAX_CSR_BYTES,
            "pattern": "-----BEGIN (NEW )?CERTIFICATE REQUEST-----",
            "x-expected": "a PEM certificate signing request",
            "description": "step request: the CSR of the new key (EC P-256 or RSA >= 2048).",
        },
        "certificateId": {
            "type": "string",
            "pattern": "^[0-9a-fA-F]{64}$(?!\\n)",
            "x-expected": "the 64-character hex id of the delivered certificate",
            "description": "steps ack and complete: the new certificate.",
        },
    },
}

_PROVISIONED = device_contract.POLL_PROVISIONED["properties"]
ROTATE_DELIVERED: dict[str, Any] = {
    "type": "object",
    "required": ["status", "thingName", "certificateId", "certificatePem", "caPem", "endpoint", "topics"],
    "properties": {
        **{name: copy.deepcopy(schema) for name, schema in _PROVISIONED.items() if name != "status"},
        "status": {"const": "rotating"},
        "rotationId": {"type": ["string", "null"]},
        "certificateExpiresAt": {
            "type": ["string", "null"],
            "description": "ISO 8601: when the service considers the new certificate expired.",
        },
        "rotationExpiresAt": {
            "type": ["string", "null"],
            "description": "ISO 8601: ack and complete before this, or the rotation is abandoned.",
        },
    },
}

SCHEMAS: dict[str, dict[str, Any]] = {"RotateRequest": ROTATE_REQUEST, "RotateDelivered": ROTATE_DELIVERED}


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
