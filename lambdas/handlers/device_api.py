"""Device API Lambda: `POST /v1/device/poll`, `POST /v1/device/ack`, `POST /v1/device/register`,
`POST /v1/device/rotate`.

Deliberately light: stdlib, the shared helpers, and the DAL. `cryptography` is imported on the first
signature check, the IoT adapter only when a device is provisioned or acknowledges, and the
registration logic only for `register`. The unclaimed poll costs one DynamoDB GetItem.
"""

from __future__ import annotations

import logging
from typing import Any

from lambdas import constants as c
from lambdas import device_contract, http, logs
from lambdas.dal import devices
from lambdas.domain.device import State
from lambdas.errors import Forbidden, LatchkeyError, NotFound
from lambdas.logic import poll, signature

log = logs.logger("device_api")

POLL = "POST /v1/device/poll"
ACK = "POST /v1/device/ack"
REGISTER = "POST /v1/device/register"
ROTATE = "POST /v1/device/rotate"


def _request(event: dict[str, Any]) -> tuple[str, str, str]:
    """(route key, method, path as received - the path the device signed)."""
    context = event.get("requestContext")
    ctx_http = context.get("http") if isinstance(context, dict) else None
    ctx_http = ctx_http if isinstance(ctx_http, dict) else {}
    method = str(ctx_http.get("method") or event.get("httpMethod") or "").upper()
    path = str(event.get("rawPath") or ctx_http.get("path") or event.get("path") or "")
    route = str(event.get("routeKey") or "")
    if not route or route == "$default":
        route = f"{method} {path}"
    return route, method or route.split(" ", 1)[0], path or route.split(" ", 1)[-1]


def _signed(event: dict[str, Any]) -> signature.SignedHeaders:
    return signature.parse_headers(
        http.header(event, c.HEADER_DEVICE_ID),
        http.header(event, c.HEADER_TIMESTAMP),
        http.header(event, c.HEADER_SIGNATURE),
    )


def _poll(event: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    signed = _signed(event)
    raw = http.raw_body(event)
    body = poll.validate(http.json_body(raw))
    device = poll.ensure_pollable(devices.get(signed.device_id))  # the one read of the hot path
    signature.check(signed, device.public_key_pem, method, path, raw)
    result = poll.answer(device, body, http.source_ip(event))
    logs.event(
        log,
        logging.DEBUG if result["status"] == "unclaimed" else logging.INFO,
        "poll",
        deviceId=signed.device_id,
        state=str(device.state),
        answer=result["status"],
        attempt=body["attempt"],
    )
    return http.response(200, result)


def _ack(event: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    signed = _signed(event)
    raw = http.raw_body(event)
    body = http.json_body(raw)
    device = poll.ensure_pollable(devices.get(signed.device_id, consistent=True))
    signature.check(signed, device.public_key_pem, method, path, raw)
    if device.state == State.REVOKED:
        raise Forbidden("This device has been revoked.")
    device_contract.check("AckRequest", body)
    certificate_id = str(body["certificateId"])

    from lambdas.logic import provisioning  # deferred: the IoT adapter

    provisioning.acknowledge(device, certificate_id, source_ip=http.source_ip(event))
    logs.event(log, logging.INFO, "ack", deviceId=signed.device_id, certificateId=certificate_id)
    return http.response(204)


def _register(event: dict[str, Any]) -> dict[str, Any]:
    """Registration-token onboarding (design.md B); `lambdas.logic.registration` implements it."""
    from lambdas.logic import registration  # deferred: only register needs it

    body = http.json_body(http.raw_body(event))
    result = registration.register(body, source_ip=http.source_ip(event))
    return http.response(201, result)


def _rotate(event: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    """Certificate rotation's device steps (`lambdas.logic.rotation`); signed by the current or new key."""
    from lambdas.logic import rotation  # deferred: only rotating devices need it

    signed = _signed(event)
    raw = http.raw_body(event)
    body = rotation.validate(http.json_body(raw))
    device = poll.ensure_pollable(devices.get(signed.device_id, consistent=True))
    rotation.check_signature(signed, device, method, path, raw)
    result = rotation.handle(device, body, source_ip=http.source_ip(event))
    logs.event(log, logging.INFO, "rotate", deviceId=signed.device_id, step=body["step"])
    return http.response(204) if result is None else http.response(200, result)


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    route = "?"
    try:
        route, method, path = _request(event)
        if route == POLL:
            return _poll(event, method, path)
        if route == ACK:
            return _ack(event, method, path)
        if route == REGISTER:
            return _register(event)
        if route == ROTATE:
            return _rotate(event, method, path)
        raise NotFound(f"No route for {route}.")
    except LatchkeyError as error:
        level = logging.WARNING if error.status in (401, 403, 409, 413) else logging.INFO
        logs.event(
            log,
            level,
            "refused",
            route=route,
            status=error.status,
            error=error.code,
            detail=error.message,
            deviceId=http.header(event, c.HEADER_DEVICE_ID),
        )
        return http.error_response(error)
    except Exception as exc:
        log.exception(
            "unhandled error",
            extra={
                "fields": {
                    "route": route,
                    "error": type(exc).__name__,
                    "requestId": getattr(context, "aws_request_id", None),
                }
            },
        )
        return http.error_response(exc)
