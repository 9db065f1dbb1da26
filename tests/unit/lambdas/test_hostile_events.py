"""No input makes either API answer 5xx: raw API Gateway events, built by hypothesis from hostile parts
(any header value, any body, any JSON depth or number size), go straight into both handlers. Every answer
is below 500 and, when it refuses, a JSON {"error", "message"}."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lambdas.handlers import device_api, owner_api
from tests.unit.lambdas.conftest import owner_event, signed_event

DEVICE = "lk-hostile00000000"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
hostile_bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    st.builds(lambda n: b"[" * n + b"]" * n, st.integers(1000, 9000)),  # deeper than the parser's stack
    st.builds(lambda n: b'{"attempt": ' + b"9" * n + b"}", st.integers(4000, 6000)),  # Python's digit limit
    st.binary(max_size=64),
    st.sampled_from([b'{"csr": "\\ud800"}', b'{"claimCode": null}', b"\xff\xfe", b"{}" * 3]),
)
header_values = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["¹²³", "١٢٣٤", "1e9", "-1", " 12 ", "9" * 40, "lk-x\n", "AAAA====", ""]),
)
DEVICE_ROUTES = ["/v1/device/poll", "/v1/device/ack", "/v1/device/register"]
OWNER_ROUTES = [
    ("POST", "/v1/claims"),
    ("PATCH", "/v1/devices/lk-hostile00000000"),
    ("PATCH", "/v1/devices/lk-hostile00000000/state"),
    ("POST", "/v1/pending"),
    ("POST", "/v1/devices/lk-hostile00000000/revoke"),
]


def assert_answered(answer: dict[str, Any]) -> None:
    assert answer["statusCode"] < 500, answer
    if answer["statusCode"] >= 400:
        body = json.loads(answer["body"])
        assert set(body) >= {"error", "message"}, body


def _with(event: dict[str, Any], raw: bytes, headers: dict[str, str], encode: bool) -> dict[str, Any]:
    event = dict(event, headers={**event["headers"], **headers})
    if encode:
        event.update(body=base64.b64encode(raw).decode(), isBase64Encoded=True)
    else:
        event.update(body=raw.decode("utf-8", "surrogateescape"), isBase64Encoded=False)
    return event


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(DEVICE_ROUTES),
    raw=hostile_bodies,
    timestamp=header_values,
    device_id=st.one_of(st.just(DEVICE), header_values),
    signature=header_values,
    encode=st.booleans(),
)
def test_device_api_never_answers_5xx(aws, device_key, path, raw, timestamp, device_id, signature, encode):
    aws.put_device(DEVICE, device_key)
    event = signed_event("POST", path, b"", None, DEVICE)
    headers = {"x-timestamp": timestamp, "x-device-id": device_id, "x-signature": signature}
    assert_answered(device_api.handler(_with(event, raw, headers, encode), None))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(OWNER_ROUTES), raw=hostile_bodies, encode=st.booleans(), agent=header_values)
def test_owner_api_never_answers_5xx(aws, route, raw, encode, agent):
    method, path = route
    event = owner_event(method, path)
    assert_answered(owner_api.handler(_with(event, raw, {"user-agent": agent}, encode), None))


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"requestContext": "nope"},
        {"routeKey": "POST /v1/device/poll", "headers": ["x"], "body": 5},
        {"routeKey": "POST /v1/device/poll", "headers": {"x-timestamp": 5}, "body": "{}"},
    ],
)
def test_malformed_events_are_refused_not_crashed(aws, event):
    assert_answered(device_api.handler(event, None))


@pytest.mark.parametrize(
    "raw",
    [b"[" * 7000 + b"]" * 7000, b'{"attempt": ' + b"1" * 5000 + b"}"],
)
def test_the_reported_inputs(aws, device_key, raw):
    """The issue's findings, one by one: deep nesting, a 5,000-digit integer, Unicode digits as time."""
    aws.put_device(DEVICE, device_key)
    for path in DEVICE_ROUTES:
        event = signed_event("POST", path, raw, device_key, DEVICE)
        assert device_api.handler(event, None)["statusCode"] in (400, 401)
    unicode_time = signed_event("POST", DEVICE_ROUTES[0], b"{}", device_key, DEVICE)
    unicode_time["headers"]["x-timestamp"] = "¹²³"
    assert device_api.handler(unicode_time, None)["statusCode"] == 401
    assert owner_api.handler(owner_event("POST", "/v1/claims", body=raw), None)["statusCode"] == 400
