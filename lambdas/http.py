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
    """The caller's address: the viewer's if the request came through our CloudFront, else API Gateway's.

    CloudFront sets `CloudFront-Viewer-Address` and the secret origin-verify header; only a matching
    secret (constant-time compare) makes the viewer address believable, since a direct caller can send
    any header. X-Forwarded-For is never read: any client can prepend to it.
    """
    context_ip = str(event.get("requestContext", {}).get("http", {}).get("sourceIp", ""))
    viewer = header(event, c.HEADER_VIEWER_ADDRESS)
    proof = header(event, c.HEADER_ORIGIN_VERIFY)
    if not viewer or not proof:
        return context_ip
    import hmac

    from lambdas.adapters.secrets import origin_verify_key

    expected = origin_verify_key()
    if not expected or not hmac.compare_digest(proof.encode(), expected.encode()):
        return context_ip
    return _viewer_ip(viewer) or context_ip


def _viewer_ip(value: str) -> str | None:
    """`CloudFront-Viewer-Address` is "ip:port" (IPv6 without brackets); None if it is not that."""
    import ipaddress

    address, _, port = value.strip().rpartition(":")
    if not port.isdigit():
        return None
    try:
        return str(ipaddress.ip_address(address.strip("[]")))
    except ValueError:
        return None


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
