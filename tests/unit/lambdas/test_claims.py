"""Claiming with the label's code: forgiving input, 404/409/200, exactly once, and the failure limits."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from lambdas import constants as c
from lambdas.errors import TooManyRequests
from lambdas.handlers.owner_api import handler
from lambdas.logic import claim_code, claims, ratelimit
from tests.unit.lambdas.conftest import owner_event

CODE = "ABCDEFGHJK"  # displayed ABCDE-FGHJK
DEVICE = "lk-claim0000000wxyz"
KEY = b"k" * 32  # the fixture's claim-code key


def call(event):
    answer = handler(event, None)
    return answer["statusCode"], json.loads(answer["body"]) if answer["body"] else None, answer["headers"]


def claim(code, sub="owner-1", name=None, source_ip="198.51.100.10"):
    body = {"claimCode": code} if name is None else {"claimCode": code, "name": name}
    return call(owner_event("POST", "/v1/claims", sub, body, source_ip=source_ip))


def put_claimable(aws, device_id=DEVICE, code=CODE, **fields):
    return aws.put_device(device_id, claimCodeHash=claim_code.keyed_hash(code, KEY), **fields)


def test_claim_happy_path(aws):
    put_claimable(aws, board="esp32")
    status, body, _ = claim("ABCDE-FGHJK", "owner-1", name="  Kitchen sensor ")
    assert status == 200
    assert body["id"] == DEVICE and body["state"] == "claimed" and body["name"] == "Kitchen sensor"
    assert body["board"] == "esp32" and body["presence"] == "offline" and body["certificate"] is None
    item = aws.device(DEVICE)
    assert item["ownerId"] == "owner-1" and item["ownerEmail"] == "owner-1@example.com"
    assert item["state"] == c.STATE_CLAIMED and item["claimedAt"].endswith("Z")
    assert aws.audit_actions(DEVICE) == ["device.claimed"]
    assert "claimCodeHash" not in body and "ownerId" not in body


def test_default_name_is_device_and_last_four(aws):
    put_claimable(aws)
    status, body, _ = claim(CODE)
    assert status == 200 and body["name"] == "Device WXYZ"


@pytest.mark.parametrize(
    "typed",
    ["abcde fghjk", "abcdefghjk", "ABCDE-FGHJK", " a-b-c-d-e-f-g-h-j-k ", "ABCDE_FGHJK"],
)
def test_forgiving_input(aws, typed):
    put_claimable(aws)
    assert claim(typed)[0] == 200


def test_crockford_substitutions(aws):
    put_claimable(aws, code="1100011000")
    assert claim("IL0O0-lIoO0")[0] == 200  # I and L read as 1, O as 0


def test_invalid_format_is_400_with_a_sentence(aws):
    status, body, _ = claim("ABC")
    assert status == 400 and body["error"] == "invalid_code"
    assert body["message"].endswith(".") and "ABCDE-FGHJK" in body["message"]
    assert claim("ABCDE-FGHJU")[0] == 400  # U is not in the alphabet


def test_unknown_code_is_404(aws):
    put_claimable(aws)
    status, body, _ = claim("ZZZZZ-ZZZZZ")
    assert status == 404 and body["error"] == "unknown_code"
    assert aws.device(DEVICE)["state"] == "unclaimed"


def test_claimed_by_another_account_is_409(aws):
    put_claimable(aws)
    assert claim(CODE, "owner-1")[0] == 200
    status, body, _ = claim(CODE, "owner-2")
    assert status == 409 and body["error"] == "claimed_by_another_account"
    assert aws.device(DEVICE)["ownerId"] == "owner-1"


def test_already_yours_is_200_and_idempotent(aws):
    put_claimable(aws)
    first = claim(CODE, name="Porch")
    again = claim(CODE, name="Other name")
    assert first[0] == again[0] == 200
    assert again[1]["name"] == "Porch"  # the second claim changed nothing
    assert aws.audit_actions(DEVICE) == ["device.claimed"]


def test_pre_claimed_device_is_yours(aws):
    put_claimable(aws, state="claimed", ownerId="owner-1", name="Factory")
    status, body, _ = claim(CODE, "owner-1")
    assert status == 200 and body["name"] == "Factory"
    assert claim(CODE, "owner-2")[0] == 409


def test_released_device_can_be_claimed_again_with_its_label(aws, monkeypatch):
    from lambdas.adapters import mqtt

    monkeypatch.setattr(mqtt, "publish", lambda topic, payload: None)
    put_claimable(aws)
    assert claim(CODE, "owner-1")[0] == 200
    assert call(owner_event("POST", f"/v1/devices/{DEVICE}/release", "owner-1"))[0] == 200
    assert claim(CODE, "owner-2")[0] == 200
    assert aws.device(DEVICE)["ownerId"] == "owner-2"


@pytest.fixture
def serialized_moto(monkeypatch):
    """DynamoDB applies each request atomically; moto does not under threads, so serialize its requests."""
    from moto.core.botocore_stubber import BotocoreStubber

    lock = threading.Lock()
    original = BotocoreStubber.__call__

    def locked(self, *args, **kwargs):
        with lock:
            return original(self, *args, **kwargs)

    monkeypatch.setattr(BotocoreStubber, "__call__", locked)


def test_concurrent_claims_have_exactly_one_winner(aws, serialized_moto):
    put_claimable(aws)
    from lambdas.adapters import secrets
    from lambdas.aws_clients import client

    client("dynamodb")  # created once, before the threads
    secrets.claim_code_key()
    owners = [f"owner-{i:02d}" for i in range(20)]
    barrier = threading.Barrier(len(owners))

    def attempt(sub):
        barrier.wait()
        return sub, claim(CODE, sub, source_ip=f"198.51.100.{len(sub)}")[0]

    with ThreadPoolExecutor(len(owners)) as pool:
        results = list(pool.map(attempt, owners))
    statuses = sorted(status for _, status in results)
    assert statuses == [200] + [409] * 19
    winner = next(sub for sub, status in results if status == 200)
    assert aws.device(DEVICE)["ownerId"] == winner
    assert aws.audit_actions(DEVICE) == ["device.claimed"]


# --- failed attempts -----------------------------------------------------------------------------------


def wrong(i: int) -> str:
    return f"ZZZZZ-{i:05d}"


def test_wrong_codes_per_account_then_429(aws):
    put_claimable(aws)
    limit = ratelimit.CLAIM_PER_ACCOUNT.limit
    for i in range(limit):
        assert claim(wrong(i), "attacker", source_ip=f"203.0.113.{i}")[0] == 404
    status, body, headers = claim(CODE, "attacker", source_ip="203.0.113.200")  # even a right code
    assert status == 429 and body["error"] == "too_many_requests"
    retry_after = int(headers["Retry-After"])
    assert 1 <= retry_after <= ratelimit.CLAIM_PER_ACCOUNT.window and body["retryAfter"] == retry_after
    assert aws.device(DEVICE)["state"] == "unclaimed"
    assert claim(CODE, "someone-else", source_ip="203.0.113.201")[0] == 200  # other accounts unaffected


def test_wrong_codes_per_ip_across_accounts_then_429(aws):
    limit = ratelimit.CLAIM_PER_IP.limit
    per_account = ratelimit.CLAIM_PER_ACCOUNT.limit
    for i in range(limit):
        assert claim(wrong(i), f"acct-{i // per_account}", source_ip="203.0.113.9")[0] == 404
    status, _, headers = claim(wrong(99), "fresh-account", source_ip="203.0.113.9")
    assert status == 429 and int(headers["Retry-After"]) > 0
    assert claim(wrong(99), "fresh-account", source_ip="203.0.113.10")[0] == 404


def test_ipv6_counts_per_64(aws):
    assert ratelimit.ip_subject("2001:db8:1:2:3:4:5:6") == ratelimit.ip_subject("2001:db8:1:2:ffff::1")
    assert ratelimit.ip_subject("2001:db8:1:3::1") != ratelimit.ip_subject("2001:db8:1:2::1")
    assert ratelimit.ip_subject("192.0.2.1") == "192.0.2.1"


def test_limit_window_expires_on_read(aws):
    """moto never expires TTL items: the window end must be enforced when reading."""
    start = 1_800_000_000 - 1_800_000_000 % 3600
    for i in range(ratelimit.CLAIM_PER_ACCOUNT.limit):
        with pytest.raises(claims.UnknownCode):
            claims.claim_device("slow", None, wrong(i), None, "", now=start + 10)
    with pytest.raises(TooManyRequests) as caught:
        claims.claim_device("slow", None, wrong(50), None, "", now=start + 600)
    assert caught.value.retry_after == 3000  # seconds to the end of the window
    with pytest.raises(claims.UnknownCode):  # the next window starts fresh
        claims.claim_device("slow", None, wrong(51), None, "", now=start + 3600)


def test_counters_expire_with_their_window(aws):
    from lambdas.dal import rate_limits

    rate_limits.add("k#1", expires_at=1000)
    assert rate_limits.counts(["k#1"], now=999) == {"k#1": 1}
    assert rate_limits.counts(["k#1"], now=1000) == {"k#1": 0}
    assert rate_limits.counts(["missing"], now=0) == {"missing": 0}


def test_invalid_codes_and_successes_are_not_counted(aws):
    put_claimable(aws)
    for _ in range(ratelimit.CLAIM_PER_ACCOUNT.limit + 2):
        assert claim("nope", "typo")[0] == 400
        assert claim(CODE, "typo")[0] == 200
    assert claim(wrong(1), "typo")[0] == 404
