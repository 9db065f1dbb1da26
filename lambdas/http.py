"""API Gateway v2 (payload 2.0) event helpers shared by the handlers. Cheap to import."""

from __future__ import annotations

import base64
import json
from typing import Any

from lambdas import constants as c
from lambdas.errors import BadRequest, LatchkeyError, PayloadTooLarge

INTERNAL_ERROR = {
    "error": "internal_error",
    "message": "Something went wrong on our side. Please try again later.",
}


def raw_body(event: dict[str, Any], limit: int = c.MAX_BODY_BYTES) -> bytes:
    body = event.get("body") or ""
    if not isinstance(body, str):
        raise BadRequest("The request body is not valid JSON.")
    if len(body) > 2 * limit:  # checked before decoding: base64 is 4/3 of the bytes, UTF-8 at most 4x
        raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
    try:
        data = base64.b64decode(body, validate=True) if event.get("isBase64Encoded") else body.encode()
    except (ValueError, UnicodeEncodeError):  # bad base64 (binascii.Error), lone surrogates
        raise BadRequest("The request body is not valid JSON.") from None
    if len(data) > limit:
        raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
    return data


def json_value(data: bytes) -> Any:
    """Any JSON value; 400 for everything the parser refuses."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        # ValueError covers bad JSON, bad UTF-8 and integers beyond Python's digit limit;
        # RecursionError, nesting deeper than the parser's stack.
        raise BadRequest("The request body is not valid JSON.") from None


def json_body(data: bytes) -> dict[str, Any]:
    if not data:
        return {}
    parsed = json_value(data)
    if not isinstance(parsed, dict):
        raise BadRequest("The request body must be a JSON object.")
    return parsed


def header(event: dict[str, Any], name: str) -> str | None:
    headers = event.get("headers")
    if not isinstance(headers, dict):
        return None
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if isinstance(k, str) and k.lower() == name), None)
    return value if isinstance(value, str) else None


def source_ip(event: dict[str, Any]) -> str:
    return str(event.get("requestContext", {}).get("http", {}).get("sourceIp", ""))


def response(status: int, body: Any = None, headers: dict[str, str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"statusCode": status, "headers": {"content-type": "application/json"}}
    if headers:
        out["headers"].update(headers)
    out["body"] = "" if body is None else json.dumps(body, separators=(",", ":"))
    return out


def error_response(error: BaseException) -> dict[str, Any]:
    """THE map from exceptions to answers, for both APIs: a domain error with its status, code and
    sentence; anything else a 500 that says nothing about the internals (the caller logs it)."""
    if isinstance(error, LatchkeyError):
        return response(error.status, error.body(), error.headers())
    return response(500, INTERNAL_ERROR)
