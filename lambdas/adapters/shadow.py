"""The device shadow through the iot-data API (IoT Core on AWS; moto's iot-data locally)."""

from __future__ import annotations

import json
from typing import Any

from lambdas.errors import ServiceUnavailable

SHADOW_ERRORS = ("ThrottlingException", "ServiceUnavailableException", "InternalFailureException")


def _client() -> Any:
    from lambdas.adapters import iot

    return iot.iot_data_client()


def _code(exc: Exception) -> str:
    return str((getattr(exc, "response", None) or {}).get("Error", {}).get("Code", ""))


def get(thing: str) -> dict[str, Any] | None:
    try:
        answer = _client().get_thing_shadow(thingName=thing)
    except Exception as exc:
        if _code(exc) == "ResourceNotFoundException":
            return None
        if _code(exc) in SHADOW_ERRORS:
            raise ServiceUnavailable("The device shadow is unavailable. Please retry.") from exc
        raise
    document: dict[str, Any] = json.loads(answer["payload"].read())
    return document


def update_desired(thing: str, desired: dict[str, Any]) -> dict[str, Any]:
    payload = json.dumps({"state": {"desired": desired}}).encode()
    try:
        answer = _client().update_thing_shadow(thingName=thing, payload=payload)
    except Exception as exc:
        if _code(exc) in SHADOW_ERRORS:
            raise ServiceUnavailable("The device shadow is unavailable. Please retry.") from exc
        raise
    document: dict[str, Any] = json.loads(answer["payload"].read())
    return document


def delete(thing: str) -> None:
    """Remove the thing's shadow (a transfer starts the new owner with none); absent is fine."""
    try:
        _client().delete_thing_shadow(thingName=thing)
    except Exception as exc:
        if _code(exc) == "ResourceNotFoundException":
            return
        if _code(exc) in SHADOW_ERRORS:
            raise ServiceUnavailable("The device shadow is unavailable. Please retry.") from exc
        raise
