"""Request signatures: the module on its own, then through the device API handler."""

from __future__ import annotations

import base64
import json
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from lambdas import constants as c
from lambdas.errors import Unauthorized
from lambdas.handlers.device_api import handler
from lambdas.logic import signature
from tests.unit.lambdas.conftest import public_pem, sign

DEVICE = "lk-sig0000000000000"
POLL = "/v1/device/poll"


def call(event):
    answer = handler(event, None)
    return answer["statusCode"], json.loads(answer["body"]) if answer["body"] else None


def test_string_to_sign_is_the_documented_one():
    message = signature.string_to_sign("post", "/v1/device/poll", 1700000000, b"{}")
    assert message == (
        b"POST\n/v1/device/poll\n1700000000\n44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    )


@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_verify_good_signatures(kind, device_key, rsa_device_key):
    key = device_key if kind == "ec" else rsa_device_key
    message = signature.string_to_sign("POST", POLL, 1, b"body")
    raw = base64.b64decode(sign(key, message))
    assert signature.verify(public_pem(key), message, raw)
    assert not signature.verify(public_pem(key), message + b"x", raw)


def test_verify_refuses_other_curves_and_garbage(device_key):
    p384 = ec.generate_private_key(ec.SECP384R1())
    message = b"m"
    assert not signature.verify(public_pem(p384), message, base64.b64decode(sign(p384, message)))
    assert not signature.verify("not a pem", message, b"sig")
    assert not signature.verify(public_pem(device_key), message, b"\x00" * 70)


def test_parse_headers_window():
    now = 1_700_000_000
    good = base64.b64encode(b"x").decode()
    assert signature.parse_headers(DEVICE, str(now - 300), good, now=now).timestamp == now - 300
    for stamp in (now - 301, now + 301):
        with pytest.raises(Unauthorized) as info:
            signature.parse_headers(DEVICE, str(stamp), good, now=now)
        assert info.value.extra["serverTime"] == now


@pytest.mark.parametrize(
    ("device_id", "stamp", "sig", "fragment"),
    [
        (None, "1", "eA==", "X-Device-Id"),
        (DEVICE, None, "eA==", "X-Timestamp"),
        (DEVICE, "1", None, "X-Signature"),
        ("bad id!", "1", "eA==", "device id"),
        (DEVICE, "12.5", "eA==", "unix time"),
        (DEVICE, "-5", "eA==", "unix time"),
        (DEVICE, "NOW", "a" * 2000, "too long"),
        (DEVICE, "NOW", "***", "base64"),
    ],
)
def test_parse_headers_malformed(device_id, stamp, sig, fragment):
    now = int(time.time())
    stamp = str(now) if stamp == "NOW" else stamp
    with pytest.raises(Unauthorized) as info:
        signature.parse_headers(device_id, stamp, sig, now=now)
    assert fragment in info.value.message


# --- through the handler ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_signed_poll_accepted(aws, signed_event, device_key, rsa_device_key, kind):
    key = device_key if kind == "ec" else rsa_device_key
    aws.put_device(DEVICE, key)
    status, body = call(signed_event("POST", POLL, {"attempt": 0}, key, DEVICE))
    assert (status, body) == (200, {"status": "unclaimed", "retryAfter": 0})


def test_tampered_body(aws, signed_event, device_key):
    aws.put_device(DEVICE, device_key)
    event = signed_event("POST", POLL, {"attempt": 0}, device_key, DEVICE)
    event["body"] = base64.b64encode(json.dumps({"attempt": 1}).encode()).decode()
    status, body = call(event)
    assert status == 401 and body["error"] == "unauthorized"
    assert "does not verify" in body["message"]


def test_signed_for_another_path(aws, signed_event, device_key):
    aws.put_device(DEVICE, device_key)
    event = signed_event("POST", "/v1/device/ack", {"attempt": 0}, device_key, DEVICE)
    event["rawPath"] = POLL
    event["routeKey"] = f"POST {POLL}"
    assert call(event)[0] == 401


def test_wrong_key(aws, signed_event, device_key):
    aws.put_device(DEVICE, device_key)
    other = ec.generate_private_key(ec.SECP256R1())
    status, _ = call(signed_event("POST", POLL, {}, other, DEVICE))
    assert status == 401


@pytest.mark.parametrize("offset", [-301, 301, -3600 * 24 * 365 * 30])
def test_stale_or_future_timestamp(aws, signed_event, device_key, offset):
    aws.put_device(DEVICE, device_key)
    now = int(time.time())
    status, body = call(signed_event("POST", POLL, {}, device_key, DEVICE, timestamp=now + offset))
    assert status == 401
    assert abs(body["serverTime"] - now) <= 2
    assert "serverTime" in body["message"]


def test_timestamp_inside_window(aws, signed_event, device_key):
    aws.put_device(DEVICE, device_key)
    now = int(time.time())
    for offset in (-290, 290):
        assert call(signed_event("POST", POLL, {}, device_key, DEVICE, timestamp=now + offset))[0] == 200


@pytest.mark.parametrize("header", [c.HEADER_DEVICE_ID, c.HEADER_TIMESTAMP, c.HEADER_SIGNATURE])
def test_missing_header(aws, signed_event, device_key, header):
    aws.put_device(DEVICE, device_key)
    event = signed_event("POST", POLL, {}, device_key, DEVICE)
    del event["headers"][header]
    status, body = call(event)
    assert status == 401 and "Missing request header" in body["message"]


def test_headers_are_case_insensitive(aws, signed_event, device_key):
    aws.put_device(DEVICE, device_key)
    event = signed_event("POST", POLL, {}, device_key, DEVICE)
    event["headers"] = {k.title(): v for k, v in event["headers"].items()}
    assert call(event)[0] == 200


def test_device_without_public_key(aws, signed_event, device_key):
    aws.put_device(DEVICE, None)
    status, body = call(signed_event("POST", POLL, {}, device_key, DEVICE))
    assert status == 401 and "no registered public key" in body["message"]
