"""Whose address a request has (lambdas.http.source_ip): forged headers never win.

The viewer address CloudFront adds is believed only with the secret origin-verify value CloudFront sends
(read from the service secret in moto's Secrets Manager); a direct caller gets API Gateway's source IP,
whatever it puts in CloudFront-Viewer-Address, the origin-verify header or X-Forwarded-For.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from lambdas import constants as c
from lambdas import http
from lambdas.adapters import secrets

ORIGIN_VERIFY = "k7Qm2vJx9pL4nR8sT1wY6zA3bC5dE0fG-hI_jK"
EDGE = "130.176.0.1"  # what API Gateway sees for a request through CloudFront: an edge server


def _event(headers: dict[str, str], source: str = EDGE) -> dict[str, Any]:
    return {"headers": headers, "requestContext": {"http": {"sourceIp": source}}}


@pytest.fixture
def verified(aws: Any) -> str:
    """The service secret as the setup custom resource leaves it: with originVerify."""
    value = json.loads(
        boto3.client("secretsmanager").get_secret_value(SecretId=aws.secret_arn)["SecretString"]
    )
    value[c.SECRET_ORIGIN_VERIFY_KEY] = ORIGIN_VERIFY
    boto3.client("secretsmanager").put_secret_value(SecretId=aws.secret_arn, SecretString=json.dumps(value))
    secrets.reset()
    return ORIGIN_VERIFY


def test_through_cloudfront_the_viewer_address_counts(verified: str) -> None:
    event = _event({"cloudfront-viewer-address": "203.0.113.7:46532", "x-latchkey-origin-verify": verified})
    assert http.source_ip(event) == "203.0.113.7"


def test_ipv6_viewer_address(verified: str) -> None:
    event = _event({"CloudFront-Viewer-Address": "2001:db8::7:443", "X-Latchkey-Origin-Verify": verified})
    assert http.source_ip(event) == "2001:db8::7"


@pytest.mark.parametrize(
    "headers",
    [
        {"cloudfront-viewer-address": "203.0.113.7:1"},  # forged, no proof
        {"cloudfront-viewer-address": "203.0.113.7:1", "x-latchkey-origin-verify": "guess"},
        {"cloudfront-viewer-address": "203.0.113.7:1", "x-latchkey-origin-verify": ORIGIN_VERIFY[:-1]},
        {"cloudfront-viewer-address": "203.0.113.7:1", "x-latchkey-origin-verify": ""},
        {"x-forwarded-for": "203.0.113.7", "x-latchkey-origin-verify": ORIGIN_VERIFY},
        {"x-forwarded-for": "203.0.113.7, 198.51.100.1"},
        {},
    ],
    ids=["no-proof", "wrong-proof", "truncated-proof", "empty-proof", "xff-with-proof", "xff", "nothing"],
)
def test_a_direct_caller_cannot_choose_its_address(verified: str, headers: dict[str, str]) -> None:
    assert http.source_ip(_event(headers, source="198.51.100.9")) == "198.51.100.9"


@pytest.mark.parametrize("value", ["203.0.113.7", "not-an-ip:80", "203.0.113.7:port", ":443", "1.2.3.4.5:1"])
def test_a_malformed_viewer_address_falls_back(verified: str, value: str) -> None:
    event = _event({"cloudfront-viewer-address": value, "x-latchkey-origin-verify": verified})
    assert http.source_ip(event) == EDGE


def test_without_an_origin_verify_key_nothing_is_believed(aws: Any) -> None:
    """A secret from before the setup custom resource: no key, so no header is proof of anything."""
    secrets.reset()
    event = _event({"cloudfront-viewer-address": "203.0.113.7:1", "x-latchkey-origin-verify": "None"})
    assert http.source_ip(event) == EDGE


def test_the_secret_is_read_once_per_container(verified: str, monkeypatch: pytest.MonkeyPatch) -> None:
    event = _event({"cloudfront-viewer-address": "203.0.113.7:1", "x-latchkey-origin-verify": verified})
    assert http.source_ip(event) == "203.0.113.7"
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")  # a second read would now fail
    for _ in range(3):
        assert http.source_ip(event) == "203.0.113.7"
    assert secrets.service_secret.cache_info().hits >= 3


def test_no_secret_configured_means_no_read_and_no_trust(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(c.ENV_SECRETS_ARN, raising=False)
    secrets.reset()
    event = _event({"cloudfront-viewer-address": "203.0.113.7:1", "x-latchkey-origin-verify": "x"})
    assert http.source_ip(event) == EDGE
    assert secrets.service_secret.cache_info().misses == 0


@pytest.mark.parametrize(
    ("proof", "recorded"),
    [(ORIGIN_VERIFY, "203.0.113.7"), ("forged", "198.51.100.9")],
    ids=["via-cloudfront", "forged"],
)
def test_the_owner_api_audits_the_viewers_address(aws: Any, verified: str, proof: str, recorded: str) -> None:
    """End to end through the owner handler: the audit trail's "from where" is the viewer, not the edge."""
    from lambdas.dal import audit
    from lambdas.handlers.owner_api import handler
    from tests.unit.lambdas.conftest import owner_event

    device = "lk-viewer00000000a"
    aws.put_device(device, state="claimed", ownerId="owner-1", ownerEmail="owner-1@example.com", name="Lamp")
    headers = {"cloudfront-viewer-address": "203.0.113.7:50123", "x-latchkey-origin-verify": proof}
    event = owner_event(
        "PATCH", f"/v1/devices/{device}", body={"name": "Porch"}, source_ip="198.51.100.9", headers=headers
    )
    assert handler(event, None)["statusCode"] == 200
    (renamed,) = [e for e in audit.list_events(device) if e["action"] == "device.renamed"]
    assert renamed["sourceIp"] == recorded
