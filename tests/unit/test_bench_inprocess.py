"""The bench's in-process cloud counts what a request costs (so `make bench` cannot silently break)."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization

from bench.inprocess import AwsCalls, mocked_cloud
from tests.unit.lambdas.conftest import signed_event


def test_a_repeated_unclaimed_poll_costs_one_get_item():
    calls = AwsCalls()
    with mocked_cloud(calls):
        from lambdas.handlers import device_api
        from lambdas.logic.manufacturing import mint_device

        device = mint_device(None, "bench-board", "bench")
        key = serialization.load_pem_private_key(str(device.private_key_pem).encode(), None)
        event = signed_event("POST", "/v1/device/poll", {"attempt": 0}, key, device.device_id)
        calls.take()
        first = device_api.handler(event, None)
        first_calls = calls.take()
        again = device_api.handler(event, None)
        again_calls = calls.take()
    assert first["statusCode"] == again["statusCode"] == 200
    # The first poll records when the device was last seen; the next ones within 5 minutes only read.
    assert dict(first_calls.calls) == {"dynamodb:GetItem": 1, "dynamodb:UpdateItem": 1}
    assert dict(again_calls.calls) == {"dynamodb:GetItem": 1}
