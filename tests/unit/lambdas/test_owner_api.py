"""The owner API handler: device routes, error shapes, the OpenAPI document, and import cost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lambdas import constants as c
from lambdas import definitions
from lambdas.domain.times import iso
from lambdas.handlers.owner_api import handler
from tests.unit.lambdas.conftest import owner_event

ROOT = Path(__file__).resolve().parents[3]
DEVICE = "lk-owner000000aaaa"
OTHER = "lk-owner000000bbbb"


def call(event):
    answer = handler(event, None)
    return answer["statusCode"], json.loads(answer["body"]) if answer["body"] else None, answer["headers"]


def active_device(aws, device_id=DEVICE, owner="owner-1", **fields):
    """An active device with a real (moto) certificate and thing, as provisioning leaves it."""
    iot = aws.iot
    cert = iot.create_keys_and_certificate(setAsActive=True)
    iot.create_thing(thingName=device_id)
    iot.attach_policy(policyName=definitions.POLICY_NAME, target=cert["certificateArn"])
    iot.attach_thing_principal(thingName=device_id, principal=cert["certificateArn"])
    now_ms = int(time.time() * 1000)
    item = {
        "ownerId": owner,
        "ownerEmail": f"{owner}@example.com",
        "name": "Kitchen",
        "claimCodeHash": "ab" * 32,
        "publicKeyPem": "-----BEGIN PUBLIC KEY-----\n...",
        "thingName": device_id,
        "certificateId": cert["certificateId"],
        "certificatePem": cert["certificatePem"],
        "certificateStatus": "ACTIVE",
        "claimedAt": iso(time.time() - 3600),
        "agent": {"version": "1.2.3", "board": "esp32", "mac": "aa:bb:cc:dd:ee:ff", "ip": "10.0.0.5"},
        "presence": {"status": "online", "lastSeen": iso(now_ms / 1000), "ip": "203.0.113.50"},
        "lastSeenAt": now_ms,
        **fields,
    }
    aws.put_device(device_id, state="active", **item)
    return cert


def cert_status(aws, certificate_id):
    try:
        return aws.iot.describe_certificate(certificateId=certificate_id)["certificateDescription"]["status"]
    except aws.iot.exceptions.ResourceNotFoundException:
        return None


def thing_exists(aws, name):
    try:
        aws.iot.describe_thing(thingName=name)
        return True
    except aws.iot.exceptions.ResourceNotFoundException:
        return False


@pytest.fixture
def published(monkeypatch):
    """Captures MQTT publishes (topic, payload) instead of sending them."""
    from lambdas.adapters import mqtt

    sent: list[tuple[str, dict]] = []
    monkeypatch.setattr(mqtt, "publish", lambda topic, payload: sent.append((topic, payload)))
    return sent


# --- devices ---------------------------------------------------------------------------------------------


def test_get_device_is_the_public_view(aws):
    cert = active_device(aws)
    status, body, headers = call(owner_event("GET", f"/v1/devices/{DEVICE}"))
    assert status == 200 and headers["Cache-Control"] == "no-store"
    assert body == {
        "id": DEVICE,
        "name": "Kitchen",
        "state": "active",
        "board": "esp32",
        "agentVersion": "1.2.3",
        "ip": "203.0.113.50",
        "mac": "aa:bb:cc:dd:ee:ff",
        "presence": "online",
        "lastSeen": body["lastSeen"],
        "certificate": {"id": cert["certificateId"], "status": "ACTIVE"},
        "claimedAt": body["claimedAt"],
        "createdAt": "2024-01-01T00:00:00Z",
        "role": "owner",
        "sharedBy": None,
    }
    text = json.dumps(body)
    for secret in ("claimCodeHash", "publicKey", "certificatePem", "ownerId", "owner-1", "BEGIN"):
        assert secret not in text


def test_list_devices_is_the_callers_newest_first(aws):
    aws.put_device("lk-list00000000old", state="claimed", ownerId="owner-1", claimedAt="2024-02-01T00:00:00Z")
    aws.put_device("lk-list00000000new", state="claimed", ownerId="owner-1", claimedAt="2024-03-01T00:00:00Z")
    aws.put_device("lk-list0000000else", state="claimed", ownerId="owner-2", claimedAt="2024-04-01T00:00:00Z")
    aws.put_device("lk-list0000000free")
    status, body, _ = call(owner_event("GET", "/v1/devices"))
    assert status == 200
    assert [d["id"] for d in body["devices"]] == ["lk-list00000000new", "lk-list00000000old"]
    assert call(owner_event("GET", "/v1/devices", "nobody"))[1] == {"devices": []}


def test_rename_trims(aws):
    active_device(aws)
    status, body, _ = call(owner_event("PATCH", f"/v1/devices/{DEVICE}", body={"name": "  Porch light \t"}))
    assert status == 200 and body["name"] == "Porch light"
    assert aws.device(DEVICE)["name"] == "Porch light"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"name": ""}, "'name' must not be empty"),
        ({"name": "   "}, "'name' must not be empty"),
        ({"name": "x" * 65}, "'name' must be at most 64 characters"),
        ({"name": 5}, "'name' must be a string"),
        ({"name": "a\nb"}, "'name' contains characters"),
        ({}, "'name' is required"),
        (None, "request body is required"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
    ],
)
def test_validation_errors_are_400_with_a_sentence(aws, body, fragment):
    active_device(aws)
    status, answer, _ = call(owner_event("PATCH", f"/v1/devices/{DEVICE}", body=body))
    assert status == 400
    assert set(answer) == {"error", "message"} and answer["error"] == "validation_error"
    assert fragment in answer["message"] and answer["message"].endswith(".")
    assert aws.device(DEVICE)["name"] == "Kitchen"


def test_claim_validation_names_the_field(aws):
    status, body, _ = call(owner_event("POST", "/v1/claims", body={"claimCode": "x" * 65}))
    assert (status, body["error"]) == (400, "validation_error") and "'claimCode'" in body["message"]


def test_delete_removes_certificate_thing_and_record_but_keeps_the_audit_trail(aws, signed_event, device_key):
    cert = active_device(aws)
    status, body, _ = call(owner_event("DELETE", f"/v1/devices/{DEVICE}"))
    assert (status, body) == (204, None)
    assert aws.device(DEVICE) is None
    assert cert_status(aws, cert["certificateId"]) is None and not thing_exists(aws, DEVICE)
    assert aws.audit_actions(DEVICE) == ["device.deleted"]
    assert call(owner_event("GET", f"/v1/devices/{DEVICE}"))[0] == 404
    from lambdas.handlers import device_api

    poll = device_api.handler(signed_event("POST", "/v1/device/poll", {"attempt": 1}, device_key, DEVICE))
    assert poll["statusCode"] == 404


def test_delete_of_a_claimed_device_without_certificate(aws):
    aws.put_device(OTHER, state="claimed", ownerId="owner-1")
    assert call(owner_event("DELETE", f"/v1/devices/{OTHER}"))[0] == 204
    assert aws.device(OTHER) is None


def test_revoke(aws):
    cert = active_device(aws)
    status, body, _ = call(owner_event("POST", f"/v1/devices/{DEVICE}/revoke"))
    assert status == 200 and body["state"] == "revoked"
    assert body["certificate"] == {"id": cert["certificateId"], "status": "REVOKED"}
    assert cert_status(aws, cert["certificateId"]) == "REVOKED"
    assert aws.device(DEVICE)["state"] == c.STATE_REVOKED
    assert call(owner_event("POST", f"/v1/devices/{DEVICE}/revoke"))[0] == 200  # idempotent
    assert aws.audit_actions(DEVICE) == ["certificate.revoked"]


def test_release_tells_the_device_first_then_returns_it_to_unclaimed(aws, monkeypatch):
    from lambdas.adapters import mqtt

    cert = active_device(aws, claimCodeHash="cd" * 32)
    seen = []

    def publish(topic, payload):
        seen.append((topic, payload, cert_status(aws, cert["certificateId"])))

    monkeypatch.setattr(mqtt, "publish", publish)
    status, body, _ = call(owner_event("POST", f"/v1/devices/{DEVICE}/release"))
    assert status == 200 and body["state"] == "unclaimed"
    assert body["name"] is None and body["certificate"] is None and body["claimedAt"] is None
    assert seen == [(f"latchkey/things/{DEVICE}/commands", {"command": "release"}, "ACTIVE")]
    assert cert_status(aws, cert["certificateId"]) is None and not thing_exists(aws, DEVICE)
    item = aws.device(DEVICE)
    assert item["state"] == "unclaimed" and item["claimCodeHash"] == "cd" * 32
    for gone in ("ownerId", "ownerEmail", "name", "certificateId", "certificatePem", "thingName", "presence"):
        assert gone not in item
    assert aws.audit_actions(DEVICE) == ["device.released"]
    assert call(owner_event("GET", f"/v1/devices/{DEVICE}"))[0] == 404


def test_release_goes_on_when_the_command_cannot_be_published(aws, monkeypatch):
    from lambdas.adapters import mqtt

    cert = active_device(aws)

    def broken(topic, payload):
        raise mqtt.PublishFailed("broker down")

    monkeypatch.setattr(mqtt, "publish", broken)
    assert call(owner_event("POST", f"/v1/devices/{DEVICE}/release"))[0] == 200
    assert cert_status(aws, cert["certificateId"]) is None


def test_events_newest_first_and_only_since_the_callers_claim(aws, published):
    from lambdas.logic import claim_code

    code = "ABCDEFGHJK"
    aws.put_device(DEVICE, claimCodeHash=claim_code.keyed_hash(code, b"k" * 32))
    claim = {"claimCode": code}
    assert call(owner_event("POST", "/v1/claims", "owner-1", claim))[0] == 200
    assert call(owner_event("POST", f"/v1/devices/{DEVICE}/revoke", "owner-1"))[0] == 200
    status, body, _ = call(owner_event("GET", f"/v1/devices/{DEVICE}/events", "owner-1"))
    assert status == 200
    assert [e["action"] for e in body["events"]] == ["certificate.revoked", "device.claimed"]
    assert all("sourceIp" not in e for e in body["events"])
    assert call(owner_event("POST", f"/v1/devices/{DEVICE}/release", "owner-1"))[0] == 200
    time.sleep(1.1)  # claimedAt has second precision
    assert call(owner_event("POST", "/v1/claims", "owner-2", claim))[0] == 200
    body = call(owner_event("GET", f"/v1/devices/{DEVICE}/events", "owner-2"))[1]
    assert [(e["action"], e["actor"]) for e in body["events"]] == [("device.claimed", "owner-2")]


# --- the request and the answer -----------------------------------------------------------------------


def test_missing_claims_is_401(aws):
    status, body, _ = call(owner_event("GET", "/v1/devices", sub=None))
    assert (status, body["error"]) == (401, "unauthorized")


def test_body_over_16_kb_is_413(aws):
    status, body, _ = call(owner_event("POST", "/v1/claims", body={"claimCode": "x" * (17 * 1024)}))
    assert (status, body["error"]) == (413, "payload_too_large")


def test_not_json_content_type_is_415(aws):
    event = owner_event("POST", "/v1/claims", body="claimCode=x", headers={"content-type": "text/plain"})
    status, body, _ = call(event)
    assert (status, body["error"]) == (415, "unsupported_media_type")


def test_unknown_route_is_404_json(aws):
    status, body, _ = call(owner_event("GET", "/v1/nothing-here"))
    assert (status, body) == (404, {"error": "not_found", "message": "No such route."})


def test_unexpected_error_is_a_generic_500(aws, monkeypatch, caplog):
    from lambdas.logic import owner

    def boom(owner_id):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(owner, "list_devices", boom)
    status, body, _ = call(owner_event("GET", "/v1/devices"))
    assert status == 500 and body["error"] == "internal_error" and "secret" not in json.dumps(body)
    assert "secret internals" in caplog.text  # logged


# --- pending routes (lambdas.logic.registration) ------------------------------------------------------


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_openapi_documents_every_route(aws):
    status, doc, headers = call(owner_event("GET", "/v1/openapi.json", sub=None))
    assert status == 200 and doc["info"]["title"] == "Latchkey"
    assert headers["Cache-Control"] == "public, max-age=300"
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "Cognito token.",
    }
    for route in definitions.ROUTES:
        operation = doc["paths"].get(route.path, {}).get(route.method.lower())
        assert operation is not None, route.route_key
        if route.function == "OwnerApi":
            assert (operation.get("security") == [{"bearerAuth": []}]) is route.auth, route.route_key
        assert "422" not in operation["responses"], route.route_key
    schemas = doc["components"]["schemas"]
    for ref in set(_refs(doc)):
        assert ref.split("/")[-1] in schemas, ref
    for name in ("ClaimRequest", "Device", "ErrorBody", "PollRequest", "PollProvisioned", "RegisterRequest"):
        assert name in schemas
    assert "HTTPValidationError" not in schemas
    claim = doc["paths"]["/v1/claims"]["post"]
    assert claim["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/ClaimRequest")
    assert claim["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/Device")
    assert claim["responses"]["429"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    poll = doc["paths"]["/v1/device/poll"]["post"]
    assert {p["name"] for p in poll["parameters"]} == {"X-Device-Id", "X-Timestamp", "X-Signature"}


def test_handler_import_is_modest():
    """No boto3, cryptography or IoT adapter at import: they load on the first request that needs them."""
    code = (
        "import sys, lambdas.handlers.owner_api\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('boto3', 'cryptography', 'paho', 'moto')]\n"
        "assert not heavy, heavy\n"
        "assert 'lambdas.adapters.iot' not in sys.modules and 'lambdas.models.device' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_reading_routes_load_no_pydantic():
    """The page's first request (GET /v1/devices) is the owner API's cold start: it must not pay for
    pydantic (docs/performance.md); the first validated request loads the models. A fresh process, with
    its own in-process moto."""
    code = """
import os, sys
import boto3
from moto import mock_aws
from local.seed import seed_in_process
from tests.unit.lambdas.conftest import CLAIM_CODE_KEY, owner_event, test_ca

os.environ.update(AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID="t", AWS_SECRET_ACCESS_KEY="t")
with mock_aws():
    cert, key = test_ca()
    os.environ.update(seed_in_process(boto3.Session(), prefix="cold", ca_cert=cert, ca_key=key,
                                      claim_code_key=CLAIM_CODE_KEY, product="Cold"))
    from lambdas.handlers import owner_api

    for path in ("/v1/devices", "/v1/devices/lk-none", "/v1/pending"):
        answer = owner_api.handler(owner_event("GET", path, sub="u1"), None)
        assert answer["statusCode"] in (200, 404), answer
    assert "pydantic" not in sys.modules, "a reading route imported pydantic"
    answer = owner_api.handler(owner_event("PATCH", "/v1/devices/lk-none", sub="u1", body={}), None)
    assert answer["statusCode"] == 400, answer
    assert "pydantic" in sys.modules
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LATCHKEY_", "AWS_"))}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)})


def test_owner_routes_are_declared_once_and_all_served():
    """definitions.ROUTES is the one declaration: every route function is declared there (checked at
    import by the decorator) and every declared owner route has a route function."""
    from lambdas.handlers import owner_api

    assert set(owner_api.OWNER_ROUTES) == owner_api.REGISTERED
    with pytest.raises(LookupError):
        owner_api.route("GET", "/v1/not-declared")
