"""The device API in the OpenAPI document: paths built around `lambdas.device_contract`'s schemas.

The shapes themselves are defined once, in `lambdas/device_contract.py` (the device handler validates
with the same dicts); this module only adds what a document needs: operations, headers and responses.
`device_openapi()` returns OpenAPI paths and component schemas to merge into the owner API's document.
"""

from __future__ import annotations

import copy
from typing import Any

from lambdas import device_contract

_SIGNED_HEADERS = (
    ("X-Device-Id", "The device id (thing name)."),
    ("X-Timestamp", "Unix seconds; refused with 401 and `serverTime` outside +-300 s."),
    (
        "X-Signature",
        "base64 signature with the device key over `METHOD\\nPATH\\nTIMESTAMP\\nhex(sha256(body))` "
        "(ECDSA P-256/SHA-256 DER, or RSA-2048 PKCS#1 v1.5/SHA-256).",
    ),
)


def _ref(name: str) -> dict[str, str]:
    device_contract.SCHEMAS[name]  # a name that is not in the contract fails here, not in a client
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("DeviceError"), description)


def device_openapi() -> tuple[dict[str, Any], dict[str, Any]]:
    """(paths, component schemas) of the device API, to merge into the owner API's document."""
    schemas: dict[str, Any] = copy.deepcopy(device_contract.SCHEMAS)  # the document never aliases them
    signed = [
        {"name": name, "in": "header", "required": True, "schema": {"type": "string"}, "description": text}
        for name, text in _SIGNED_HEADERS
    ]
    retry_after = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds."}}
    too_many = {**_error("Too many requests."), "headers": retry_after}
    busy = {
        **_error("IoT throttled, or a provisioning race: poll again after Retry-After."),
        "headers": retry_after,
    }
    too_large = _error("Request body larger than 16 KiB.")
    tags = ["device"]
    paths: dict[str, Any] = {
        "/v1/device/poll": {
            "post": {
                "tags": tags,
                "summary": "Poll for credentials",
                "description": "Unclaimed devices learn when to poll again; claimed ones get their "
                "certificate (issued from the CSR), the CA, the endpoint and their topics.",
                "operationId": "device_poll",
                "parameters": signed,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("PollRequest")}},
                },
                "responses": {
                    "200": _json(
                        {
                            "oneOf": [_ref("PollUnclaimed"), _ref("PollProvisioned")],
                            "discriminator": {
                                "propertyName": "status",
                                "mapping": {
                                    "unclaimed": _ref("PollUnclaimed")["$ref"],
                                    "provisioned": _ref("PollProvisioned")["$ref"],
                                },
                            },
                        },
                        "Unclaimed, or provisioned with credentials.",
                    ),
                    "400": _error("Malformed body or CSR."),
                    "401": _error("Bad signature, or clock outside the window (see serverTime)."),
                    "403": _error("The device has been revoked."),
                    "404": _error("Unknown or deleted device."),
                    "413": too_large,
                    "429": too_many,
                    "503": busy,
                },
            }
        },
        "/v1/device/ack": {
            "post": {
                "tags": tags,
                "summary": "Acknowledge saved credentials",
                "description": "The certificate becomes ACTIVE only after this call.",
                "operationId": "device_ack",
                "parameters": signed,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("AckRequest")}},
                },
                "responses": {
                    "204": {"description": "Certificate activated."},
                    "400": _error("Malformed body or certificateId."),
                    "401": _error("Bad signature or clock."),
                    "403": _error("The device has been revoked."),
                    "404": _error("Unknown or deleted device."),
                    "409": _error("Not the certificate issued to this device."),
                    "413": too_large,
                    "429": too_many,
                    "503": busy,
                },
            }
        },
        "/v1/device/register": {
            "post": {
                "tags": tags,
                "summary": "Register with a one-time registration token",
                "description": "Authenticated by the token (not signed). Consumes the token, binds it to the "
                "MAC and claims the device for the owner who generated it.",
                "operationId": "device_register",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("RegisterRequest")}},
                },
                "responses": {
                    "201": _json(_ref("RegisterResponse"), "Registered."),
                    "400": _error("Malformed body, MAC or CSR."),
                    "401": _error("Unknown or expired token."),
                    "409": _error("The MAC differs from the one the token is bound to."),
                    "410": _error("The token was already used."),
                    "413": too_large,
                    "429": too_many,
                },
            }
        },
    }
    return paths, schemas
