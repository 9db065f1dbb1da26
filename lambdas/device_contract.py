"""The device API's request and response shapes, defined once, as JSON Schema (2020-12, OpenAPI 3.1's).

Two readers, one definition:

- `check(name, body)` validates a request body against `SCHEMAS[name]` (logic/poll.py, the ack handler,
  logic/registration.py). It interprets the small subset of JSON Schema written below, in the stdlib:
  the poll is the hottest path and imports neither pydantic nor a schema library at cold start.
- `models/device.py` puts the same dicts into the OpenAPI document (`GET /v1/openapi.json`).

tests/unit/lambdas/test_device_contract.py proves, over generated bodies, that `check()` accepts exactly
what the reference validator (`jsonschema`, Draft 2020-12) accepts, so the subset cannot drift from the
standard. A keyword this module does not implement fails that test instead of being ignored here.

Why `$(?!\\n)` in the patterns: JSON Schema patterns are searched, and Python's `$` also matches before a
final newline ("abc\\n" would pass `^abc$`); the look-ahead, which ECMA-262 has too, closes that.
"""

from __future__ import annotations

import copy
import re
from functools import cache
from typing import Any

from lambdas import constants as c
from lambdas.errors import BadRequest

MAX_AGENT_FIELDS = 24
MAX_AGENT_VALUE_CHARS = 128

_CSR_PEM = "-----BEGIN (NEW )?CERTIFICATE REQUEST-----"

POLL_REQUEST: dict[str, Any] = {
    "type": "object",
    "description": "Unknown fields are ignored (older servers, newer agents).",
    "properties": {
        "attempt": {
            "type": "integer",
            "minimum": 0,
            "maximum": 2**31 - 1,
            "default": 0,
            "description": "Polls since boot (0 for the first).",
        },
        "agent": {
            "type": ["object", "null"],
            "maxProperties": MAX_AGENT_FIELDS,
            "propertyNames": {
                "pattern": "^[A-Za-z][A-Za-z0-9_.-]{0,31}$(?!\\n)",
                "x-expected": "a letter, then letters, digits, _ . -; at most 32",
            },
            "additionalProperties": {
                "type": ["string", "number", "boolean", "null"],
                "maxLength": MAX_AGENT_VALUE_CHARS,
            },
            "description": f"What the agent says about itself: at most {MAX_AGENT_FIELDS} short scalar "
            "fields (version, board, mac, ip, ...); null values are dropped.",
        },
        "csr": {
            "type": ["string", "null"],
            "maxLength": c.MAX_CSR_BYTES,
            "pattern": _CSR_PEM,
            "x-expected": "a PEM certificate signing request",
            "description": "PEM CSR for the device's own key; needed once claimed.",
        },
    },
}

ACK_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["certificateId"],
    "properties": {
        "certificateId": {
            "type": "string",
            "pattern": "^[0-9a-fA-F]{64}$(?!\\n)",
            "x-expected": "the 64-character hex id of the delivered certificate",
            "description": "The delivered certificate's id.",
        },
    },
}

REGISTER_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["registrationToken", "mac", "csr"],
    "properties": {
        # The token's form is checked by the registration logic: a malformed token is an unknown one (401).
        "registrationToken": {"type": "string", "maxLength": 256},
        "mac": {"type": "string", "maxLength": 32, "description": "24:6f:28:aa:bb:cc, 24-6F-..., or 12 hex."},
        "csr": {
            "type": "string",
            "maxLength": c.MAX_CSR_BYTES,
            "pattern": _CSR_PEM,
            "x-expected": "a PEM certificate signing request",
        },
        "board": {"type": ["string", "null"], "maxLength": 64},
    },
}

POLL_UNCLAIMED: dict[str, Any] = {
    "type": "object",
    "required": ["status", "retryAfter"],
    "properties": {
        "status": {"const": "unclaimed"},
        "retryAfter": {
            "type": "integer",
            "minimum": 0,
            "description": "Seconds until the next poll; 0 keeps the agent's own schedule.",
        },
    },
}

POLL_PROVISIONED: dict[str, Any] = {
    "type": "object",
    "required": ["status", "thingName", "certificateId", "certificatePem", "caPem", "endpoint", "topics"],
    "properties": {
        "status": {"const": "provisioned"},
        "thingName": {"type": "string"},
        "certificateId": {"type": "string"},
        "certificatePem": {"type": "string"},
        "caPem": {"type": "string", "description": "CA chain to verify the MQTT broker."},
        "endpoint": {
            "type": "object",
            "required": ["host", "port"],
            "properties": {"host": {"type": "string"}, "port": {"type": "integer"}},
        },
        "topics": {
            "type": "object",
            "required": ["status", "commands", "shadow"],
            "properties": {
                "status": {"type": "string"},
                "commands": {"type": "string"},
                "shadow": {"type": "string"},
            },
        },
        "retryAfter": {"type": "integer", "minimum": 0},
    },
}

REGISTER_RESPONSE: dict[str, Any] = {
    "type": "object",
    "required": ["deviceId"],
    "properties": {"deviceId": {"type": "string"}},
}

DEVICE_ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "Machine-readable code."},
        "message": {"type": "string", "description": "For people."},
        "serverTime": {
            "type": ["integer", "null"],
            "description": "Unix seconds; in 401 answers for clock skew.",
        },
    },
}

# Certificate rotation (lambdas/logic/rotation.py): which fields a step needs is the logic's to say.
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
            "pattern": _CSR_PEM,
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

_PROVISIONED = POLL_PROVISIONED["properties"]
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

# Component name in the OpenAPI document -> schema.
SCHEMAS: dict[str, dict[str, Any]] = {
    "PollRequest": POLL_REQUEST,
    "AckRequest": ACK_REQUEST,
    "RegisterRequest": REGISTER_REQUEST,
    "PollUnclaimed": POLL_UNCLAIMED,
    "PollProvisioned": POLL_PROVISIONED,
    "RegisterResponse": REGISTER_RESPONSE,
    "DeviceError": DEVICE_ERROR,
    "RotateRequest": ROTATE_REQUEST,
    "RotateDelivered": ROTATE_DELIVERED,
}

# Everything `check()` understands; the others must not appear in SCHEMAS (a test walks them).
KEYWORDS = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "maxProperties",
        "propertyNames",
        "minimum",
        "maximum",
        "maxLength",
        "pattern",
        "const",
        "default",
        "description",
        "x-expected",  # an OpenAPI extension: the words of the error message when `pattern` fails
    }
)


class ContractError(BadRequest):
    """A body that breaks the contract (400); the message names the field, for people."""


def check(name: str, body: Any) -> None:
    """Raise ContractError (a 400) unless `body` satisfies SCHEMAS[name]."""
    _check(SCHEMAS[name], body, "")


_TYPE_WORDS = {
    "object": "a JSON object",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def _is(kind: str, value: Any) -> bool:
    if kind == "object":
        return isinstance(value, dict)
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "null":
        return value is None
    if isinstance(value, bool):
        return False
    if kind == "integer":  # JSON Schema: a number with no fractional part, 1.0 included
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if kind == "number":
        return isinstance(value, int | float)
    raise KeyError(kind)


@cache
def _pattern(text: str) -> re.Pattern[str]:
    return re.compile(text)


def _check(schema: dict[str, Any], value: Any, where: str) -> None:
    field = where or "The request body"
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_is(k, value) for k in kinds):
            raise ContractError(f"{field} must be {' or '.join(_TYPE_WORDS[k] for k in kinds)}.")
    if "const" in schema and (value != schema["const"] or type(value) is not type(schema["const"])):
        raise ContractError(f"{field} must be {schema['const']!r}.")
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise ContractError(f"{field} is longer than {schema['maxLength']} characters.")
        if "pattern" in schema and not _pattern(schema["pattern"]).search(value):
            raise ContractError(f"{field} must be {schema.get('x-expected', 'in the documented form')}.")
    elif _is("number", value):
        if "minimum" in schema and value < schema["minimum"]:
            raise ContractError(f"{field} must be at least {schema['minimum']}.")
        if "maximum" in schema and value > schema["maximum"]:
            raise ContractError(f"{field} must be at most {schema['maximum']}.")
    elif isinstance(value, dict):
        _check_object(schema, value, where)


def _check_object(schema: dict[str, Any], value: dict[str, Any], where: str) -> None:
    prefix = f"{where}." if where else ""
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        raise ContractError(
            f"{where or 'The request body'} may have at most {schema['maxProperties']} fields."
        )
    for name in schema.get("required", ()):
        if name not in value:
            raise ContractError(f"{prefix}{name} is required.")
    properties = schema.get("properties", {})
    names = schema.get("propertyNames")
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        if names is not None:
            try:
                _check(names, key, "")
            except ContractError:
                raise ContractError(
                    f"{where or 'The request body'} field name {key[:40]!r} is not allowed "
                    f"({names.get('x-expected', 'see the API document')})."
                ) from None
        if key in properties:
            _check(properties[key], item, f"{prefix}{key}")
        elif extra is False:
            raise ContractError(f"{prefix}{key[:40]} is not a known field.")
        elif isinstance(extra, dict):
            _check(extra, item, f"{prefix}{key}")
