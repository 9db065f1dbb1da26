"""The device API handler: routing, body validation, error mapping, and the cost of the unclaimed poll."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lambdas import constants as c
from lambdas.dal import devices
from lambdas.domain.times import iso
from lambdas.handlers.device_api import handler

DEVICE = "lk-api0000000000000"
POLL = "/v1/device/poll"
ROOT = Path(__file__).resolve().parents[3]


def call(event):
    answer = handler(event, None)
    return answer["statusCode"], json.loads(answer["body"]) if answer["body"] else None, answer["headers"]


def count_dynamodb_calls(aws):
    calls: list[str] = []
    aws.ddb.meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
    return calls


def test_handler_module_is_light():
    """Importing the handler pulls in no pydantic, powertools, boto3 or cryptography."""
    code = (
        "import sys, lambdas.handlers.device_api\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('pydantic', 'aws_lambda_powertools', 'boto3', 'botocore', 'cryptography', 'paho')]\n"
        "assert not heavy, heavy\n"
        "assert 'lambdas.adapters.iot' not in sys.modules and 'lambdas.logic.provisioning' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_unclaimed_poll_costs_one_read(aws, signed_event, device_key):
    aws.put_device(DEVICE, device_key, lastPollAt=iso(time.time() - 10))
    calls = count_dynamodb_calls(aws)
    status, body, _ = call(
        signed_event("POST", POLL, {"attempt": 3, "agent": {"version": "1.0"}}, device_key, DEVICE)
    )
    assert (status, body) == (200, {"status": "unclaimed", "retryAfter": 0})
    assert calls == ["GetItem"]
    assert "lastPollIp" not in aws.device(DEVICE)  # no write


def test_unclaimed_poll_writes_last_seen_when_stale(aws, signed_event, device_key):
    aws.put_device(DEVICE, device_key)  # never polled
    calls = count_dynamodb_calls(aws)
    agent = {"version": "1.2.3", "board": "rpi4", "mac": "aa:bb:cc:dd:ee:ff", "ip": "10.0.0.5", "uptime": 12}
    assert call(signed_event("POST", POLL, {"attempt": 0, "agent": agent}, device_key, DEVICE))[0] == 200
    assert calls == ["GetItem", "UpdateItem"]
    stored = aws.device(DEVICE)
    assert stored["agent"] == agent and stored["lastPollIp"] == "203.0.113.7"
    assert stored["state"] == "unclaimed"
    calls.clear()
    assert call(signed_event("POST", POLL, {"attempt": 1, "agent": agent}, device_key, DEVICE))[0] == 200
    assert calls == ["GetItem"]  # written a moment ago: read only


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"attempt": "1"}, "attempt"),
        ({"attempt": -1}, "attempt"),
        ({"attempt": True}, "attempt"),
        ({"agent": ["x"]}, "agent must be"),
        ({"agent": {"version": "x" * 200}}, "agent.version"),
        ({"agent": {"bad key": "x"}}, "not allowed"),
        ({"agent": {"nested": {"a": 1}}}, "agent.nested"),
        ({"agent": {f"k{i}": "v" for i in range(40)}}, "at most"),
        ({"csr": 5}, "csr"),
        ({"csr": "hello"}, "PEM"),
        ({"csr": "-----BEGIN CERTIFICATE REQUEST-----" + "A" * 5000}, "4096"),
    ],
)
def test_poll_body_validation(aws, signed_event, device_key, body, fragment):
    aws.put_device(DEVICE, device_key)
    status, answer, _ = call(signed_event("POST", POLL, body, device_key, DEVICE))
    assert status == 400 and answer["error"] == "bad_request"
    assert fragment in answer["message"]


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]"])
def test_poll_body_not_a_json_object(aws, signed_event, device_key, raw):
    aws.put_device(DEVICE, device_key)
    status, answer, _ = call(signed_event("POST", POLL, raw, device_key, DEVICE))
    assert status == 400 and "JSON" in answer["message"]


def test_empty_body_is_a_valid_poll(aws, signed_event, device_key):
    aws.put_device(DEVICE, device_key)
    assert call(signed_event("POST", POLL, b"", device_key, DEVICE))[0] == 200


def test_oversized_body(aws, signed_event, device_key):
    aws.put_device(DEVICE, device_key)
    body = {"agent": {"x": "y"}, "pad": "z" * (c.MAX_BODY_BYTES + 1)}
    status, answer, _ = call(signed_event("POST", POLL, body, device_key, DEVICE))
    assert status == 413 and answer["error"] == "payload_too_large"


def test_unknown_device(aws, signed_event, device_key):
    status, answer, _ = call(signed_event("POST", POLL, {}, device_key, DEVICE))
    assert status == 404 and answer["error"] == "not_found"


def test_deleted_device(aws, signed_event, device_key):
    aws.put_device(DEVICE, device_key, state="deleted")
    assert call(signed_event("POST", POLL, {}, device_key, DEVICE))[0] == 404


def test_revoked_device(aws, signed_event, device_key):
    aws.put_device(DEVICE, device_key, state="revoked")
    status, answer, _ = call(signed_event("POST", POLL, {}, device_key, DEVICE))
    assert status == 403 and answer["error"] == "forbidden"


def test_revoked_device_with_bad_signature_gets_401(aws, signed_event, device_key):
    aws.put_device(DEVICE, device_key, state="revoked")
    event = signed_event("POST", POLL, {}, device_key, DEVICE)
    event["headers"]["x-signature"] = base64.b64encode(b"nope").decode()
    assert call(event)[0] == 401


def test_unknown_route(aws, signed_event, device_key):
    status, answer, _ = call(signed_event("GET", "/v1/device/nothing", b"", device_key, DEVICE))
    assert status == 404 and answer["error"] == "not_found"


def test_default_route_key_falls_back_to_method_and_path(aws, signed_event, device_key):
    aws.put_device(DEVICE, device_key)
    event = signed_event("POST", POLL, {}, device_key, DEVICE)
    event["routeKey"] = "$default"
    assert call(event)[0] == 200


def test_unexpected_error_is_a_generic_500(aws, signed_event, device_key, monkeypatch, caplog):
    def boom(*_a, **_k):
        raise RuntimeError("secret detail that must not leak")

    monkeypatch.setattr(devices, "get", boom)
    status, answer, _ = call(signed_event("POST", POLL, {}, device_key, DEVICE))
    assert status == 500
    assert answer == {
        "error": "internal_error",
        "message": "Something went wrong on our side. Please try again later.",
    }
    assert "RuntimeError" in caplog.text


def test_error_headers_are_passed_through(aws, signed_event, device_key, monkeypatch):
    from lambdas.errors import TooManyRequests

    def throttled(*_a, **_k):
        raise TooManyRequests("Slow down.", retry_after=30)

    monkeypatch.setattr(devices, "get", throttled)
    status, answer, headers = call(signed_event("POST", POLL, {}, device_key, DEVICE))
    assert status == 429 and headers["Retry-After"] == "30" and answer["retryAfter"] == 30
