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


def error_response(error: LatchkeyError) -> dict[str, Any]:
    return response(error.status, error.body(), error.headers())
