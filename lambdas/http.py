"""API Gateway v2 (payload 2.0) event helpers shared by the handlers. Cheap to import."""

from __future__ import annotations

import base64
import json
from typing import Any

from lambdas import constants as c
from lambdas.errors import BadRequest, LatchkeyError, PayloadTooLarge


def raw_body(event: dict[str, Any], limit: int = c.MAX_BODY_BYTES) -> bytes:
    body = event.get("body") or ""
    data = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
    if len(data) > limit:
        raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
    return data


def json_body(data: bytes) -> dict[str, Any]:
    if not data:
        return {}
    try:
        parsed = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BadRequest("The request body is not valid JSON.") from None
    if not isinstance(parsed, dict):
        raise BadRequest("The request body must be a JSON object.")
    return parsed


def header(event: dict[str, Any], name: str) -> str | None:
    headers = event.get("headers") or {}
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


def source_ip(event: dict[str, Any]) -> str:
    return str(event.get("requestContext", {}).get("http", {}).get("sourceIp", ""))


def response(status: int, body: Any = None, headers: dict[str, str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"statusCode": status, "headers": {"content-type": "application/json"}}
    if headers:
        out["headers"].update(headers)
    out["body"] = "" if body is None else json.dumps(body, separators=(",", ":"))
    return out


def error_response(error: LatchkeyError) -> dict[str, Any]:
    return response(error.status, error.body(), error.headers())
