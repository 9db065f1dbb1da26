"""Abuse: brute force is throttled (with the figure), device policy and signatures hold, hostile bodies
get clear 4xx answers, and no secret reaches the logs or the audit trail."""

from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from lambdas import definitions
from lambdas.errors import LatchkeyError, TooManyRequests
from lambdas.handlers import device_api, owner_api
from lambdas.logic import claim_code, claims, ratelimit, registration
from lambdas.logic.manufacturing import mint_device
from tests.unit.lambdas.conftest import make_csr, owner_event, private_pem, signed_event


def wrong_code(i: int) -> str:
    return claim_code.display(f"{i:010d}".translate(str.maketrans("0123456789", "ABCDEFGHJK")))


def test_guesses_per_hour_with_100_accounts_is_bounded(aws):
    # Given: an attacker with 100 accounts, each behind its own address, guessing for one hour window
    start = (int(time.time()) // 3600) * 3600 + 1
    allowed = 0
    for account in range(100):
        for guess in range(ratelimit.CLAIM_PER_ACCOUNT.limit + 3):
            try:
                claims.claim_device(
                    f"attacker-{account}",
                    None,
                    wrong_code(account * 100 + guess),
                    None,
                    f"203.0.113.{account}",
                    now=start + guess,
                )
            except TooManyRequests:
                continue
            except LatchkeyError:
                allowed += 1
    # Then: each account gets exactly its limit, whatever it tries next
    assert allowed == 100 * ratelimit.CLAIM_PER_ACCOUNT.limit
    chance = allowed * 1_000_000 / 2**50
    print(
        f"\nguesses per hour with 100 accounts: {allowed}; chance of hitting one of 1e6 unclaimed "
        f"devices in that hour: {chance:.1e}"
    )


def test_many_accounts_from_one_address_share_its_limit(aws):
    start = (int(time.time()) // 3600) * 3600 + 1
    allowed = 0
    for account in range(60):
        try:
            claims.claim_device(
                f"sock-{account}", None, wrong_code(account), None, "198.51.100.66", now=start
            )
        except TooManyRequests:
            continue
        except LatchkeyError:
            allowed += 1
    assert allowed == ratelimit.CLAIM_PER_IP.limit


def _allowed(policy: dict, action: str, resource: str, thing: str) -> bool:
    """A tiny evaluator of an IoT policy: Allow statements, policy variables, `*`/`?` wildcards."""
    for statement in policy["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        if statement["Effect"] != "Allow" or action not in actions:
            continue
        for pattern in resources:
            pattern = pattern.replace(definitions.THING_VAR, thing)
            if fnmatch.fnmatchcase(resource, pattern):
                return True
    return False


@pytest.mark.parametrize(
    ("action", "resource", "expected"),
    [
        ("iot:Connect", "client/lk-me", True),
        ("iot:Connect", "client/lk-other", False),
        ("iot:Publish", "topic/latchkey/things/lk-me/status", True),
        ("iot:Publish", "topic/latchkey/things/lk-other/status", False),
        ("iot:Publish", "topic/latchkey/things/lk-me/commands", False),
        ("iot:Subscribe", "topicfilter/latchkey/things/lk-me/commands", True),
        ("iot:Subscribe", "topicfilter/latchkey/things/lk-other/commands", False),
        ("iot:Subscribe", "topicfilter/latchkey/things/#", False),
        ("iot:Subscribe", "topicfilter/#", False),
        ("iot:Receive", "topic/$aws/things/lk-me/shadow/update/delta", True),
        ("iot:Receive", "topic/$aws/things/lk-other/shadow/update/delta", False),
        ("iot:Publish", "topic/$aws/things/lk-me/shadow/update", True),
        ("iot:Publish", "topic/$aws/things/lk-other/shadow/update", False),
    ],
)
def test_device_policy_confines_a_device_to_its_own_topics(action, resource, expected):
    policy = definitions.device_policy_document("us-east-1", "123456789012")
    arn = f"arn:aws:iot:us-east-1:123456789012:{resource}"
    assert _allowed(policy, action, arn, "lk-me") is expected


def _poll(event):
    answer = device_api.handler(event, None)
    return answer["statusCode"], json.loads(answer["body"]) if answer["body"] else None


def test_replayed_resigned_and_tampered_device_requests_are_refused(aws, device_key):
    aws.put_device("lk-abuse0000000000", device_key)
    body = {"attempt": 1, "agent": {}}
    assert _poll(signed_event("POST", "/v1/device/poll", body, device_key, "lk-abuse0000000000"))[0] == 200
    # Replayed later (outside the window): 401 with the server's time
    old = signed_event(
        "POST", "/v1/device/poll", body, device_key, "lk-abuse0000000000", timestamp=int(time.time()) - 301
    )
    status, answer = _poll(old)
    assert status == 401 and "serverTime" in answer
    # Re-signed with another key: 401
    other = ec.generate_private_key(ec.SECP256R1())
    assert _poll(signed_event("POST", "/v1/device/poll", body, other, "lk-abuse0000000000"))[0] == 401
    # Body changed after signing: 401
    tampered = signed_event("POST", "/v1/device/poll", body, device_key, "lk-abuse0000000000")
    tampered["body"] = json.dumps({"attempt": 2, "agent": {}})
    tampered["isBase64Encoded"] = False
    assert _poll(tampered)[0] == 401


def test_oversized_and_malformed_bodies_get_clear_4xx(aws, device_key):
    aws.put_device("lk-abuse0000000001", device_key, state="claimed", ownerId="owner-1")
    big = {"attempt": 1, "agent": {}, "pad": "x" * 20_000}
    status, answer = _poll(signed_event("POST", "/v1/device/poll", big, device_key, "lk-abuse0000000001"))
    assert status == 413 and answer["error"] and answer["message"]
    bad_csr = {
        "attempt": 1,
        "agent": {},
        "csr": "-----BEGIN CERTIFICATE REQUEST-----\nnope\n-----END CERTIFICATE REQUEST-----",
    }
    status, answer = _poll(signed_event("POST", "/v1/device/poll", bad_csr, device_key, "lk-abuse0000000001"))
    assert status == 400 and "CSR" in answer["message"].upper()
    owner = owner_api.handler(owner_event("POST", "/v1/claims", "owner-1", {"claimCode": "A" * 20_000}), None)
    assert owner["statusCode"] == 413 and json.loads(owner["body"])["error"]
    not_json = owner_api.handler(owner_event("POST", "/v1/claims", "owner-1", "{not json"), None)
    assert not_json["statusCode"] == 400 and json.loads(not_json["body"])["message"]


def test_no_secret_in_logs_or_audit_trail(aws, caplog, device_key):
    caplog.set_level(logging.DEBUG)
    minted = mint_device(None, "secret-test", "test")
    code = minted.claim_code
    claims.claim_device("owner-9", None, code.lower(), None, "198.51.100.9")
    pending = registration.create_pending(
        "owner-9", None, "Tokened", "esp32", "198.51.100.9", api_url="https://x"
    )
    token = pending["registrationToken"]
    key = ec.generate_private_key(ec.SECP256R1())
    registration.register(
        {"registrationToken": token, "mac": "24:6f:28:00:00:01", "csr": make_csr(key), "board": "esp32"},
        source_ip="198.51.100.9",
    )
    for probe in ("wrong-code", token):  # failures are logged too
        with contextlib.suppress(LatchkeyError):
            registration.register(
                {"registrationToken": probe + "x" * 30, "mac": "24:6f:28:00:00:02", "csr": make_csr(key)},
                "198.51.100.9",
            )
    audit = json.dumps(aws.ddb.scan(TableName=aws.tables["AuditEvents"])["Items"])
    logs = caplog.text
    key_line = private_pem(key).splitlines()[1]
    minted_key_line = minted.private_key_pem.splitlines()[1]
    for secret in (code, code.lower(), claim_code.display(code), token, key_line, minted_key_line):
        assert secret not in logs, "a secret reached the logs"
        assert secret not in audit, "a secret reached the audit trail"
