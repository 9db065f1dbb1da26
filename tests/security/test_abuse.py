"""Abuse: guessing claim codes is throttled (with the figure), device requests cannot be replayed,
re-signed or tampered with, a device's certificate reaches only its own topics (AWS policy and the local
broker ACL), and hostile bodies get clear JSON 4xx answers."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from firmware.identity import DeviceKey
from lambdas import constants as c
from lambdas import definitions
from lambdas.errors import LatchkeyError, TooManyRequests
from lambdas.handlers import device_api
from lambdas.logic import claim_code, claims, ratelimit
from local.pki import IssuedCert
from local.testing import MqttClient
from tests.security.flows import ACK, POLL, Lab, LoopbackClient, answer
from tests.unit.lambdas.conftest import make_csr, signed_event

# --- brute force of claim codes -----------------------------------------------------------------------

CODE_SPACE = 32**claim_code.LENGTH  # 2**50
FLEET = 1_000_000  # unclaimed devices an attacker could hit


def _wrong_code(i: int) -> str:
    """A well-formed code that no device has (the alphabet without 0-9 never collides with a mint here)."""
    digits = "".join("ABCDEFGHJK"[int(d)] for d in f"{i:010d}")
    return claim_code.display(digits)


def _attack(accounts: int, addresses: int, now: float) -> tuple[int, int]:
    """The best an attacker can do within one window: each account guesses from address after address
    until the limiter refuses; (guesses allowed, guesses refused)."""
    run = uuid.uuid4().hex[:8]
    net = int(run[:2], 16)  # addresses of their own: earlier runs in this window counted theirs
    ips = [f"10.{net}.{i // 250}.{i % 250 + 1}" for i in range(addresses)]
    allowed = refused = 0
    ip = 0
    for a in range(accounts):
        account = f"attacker-{run}-{a}"
        while ip < addresses:
            subjects = ratelimit.claim_subjects(account, ips[ip])
            try:
                ratelimit.check(subjects, now)
            except TooManyRequests:
                refused += 1
                try:
                    ratelimit.check(subjects[:1], now)
                except TooManyRequests:
                    break  # this account is used up: the next one
                ip += 1  # this address is used up: the next one
                continue
            ratelimit.fail(subjects, now)  # an unknown code counts as a failure
            allowed += 1
    return allowed, refused


def test_guesses_per_hour_an_attacker_with_100_accounts_gets(aws: Any) -> None:
    per_account, per_ip = ratelimit.CLAIM_PER_ACCOUNT, ratelimit.CLAIM_PER_IP
    assert per_account.window == per_ip.window == 3600
    window = (int(time.time()) // 3600) * 3600 + 1
    rows = []
    for accounts, addresses in [(1, 1), (1, 100), (100, 1), (100, 10), (100, 100)]:
        allowed, refused = _attack(accounts, addresses, window)
        expected = min(accounts * per_account.limit, addresses * per_ip.limit)
        assert allowed == expected, (accounts, addresses, allowed, expected)
        rows.append(
            f"  {accounts:>3} accounts x {addresses:>3} addresses: {allowed:>4} guesses/h ({refused} refused)"
        )
    figure = 100 * per_account.limit
    chance = figure * FLEET / CODE_SPACE
    print(
        "\nclaim-code guessing, measured through the limiter:\n"
        + "\n".join(rows)
        + f"\nguesses per hour an attacker with 100 accounts gets: {figure} "
        f"(chance of hitting one of {FLEET:,} unclaimed devices in that hour: {chance:.1e}; "
        f"one hit every {1 / chance / 24 / 365:,.0f} years)"
    )


def test_the_claim_route_counts_failures_and_refuses_before_the_lookup(lab: Lab) -> None:
    device = lab.mint()
    now = (int(time.time()) // 3600) * 3600 + 5
    outcomes = []
    for guess in range(ratelimit.CLAIM_PER_ACCOUNT.limit + 1):
        try:
            claims.claim_device("guesser", None, _wrong_code(guess), None, "198.51.100.77", now=now)
        except LatchkeyError as exc:
            outcomes.append(exc.status)
    assert outcomes == [404] * ratelimit.CLAIM_PER_ACCOUNT.limit + [429]
    # Even the right code is refused now: the limit is checked before the code is looked up (no oracle)
    with pytest.raises(TooManyRequests) as refused:
        claims.claim_device("guesser", None, device.display_code, None, "198.51.100.78", now=now)
    assert 0 < refused.value.retry_after <= 3600
    # Other accounts from another address are not affected
    view, _ = claims.claim_device("someone", None, device.display_code, None, "198.51.100.79", now=now)
    assert view["state"] == c.STATE_CLAIMED


def test_a_spoofed_x_forwarded_for_does_not_escape_the_address_limit(cloud: Any, make_owner: Any) -> None:
    """Through the gateway: the limit counts the connection's address (API Gateway's sourceIp), not
    headers the client sends."""
    for _attempt in range(2):  # once more if the run straddled a window boundary
        hour = int(time.time()) // 3600
        client = LoopbackClient(cloud.gateway_url)
        per_ip = ratelimit.CLAIM_PER_IP.limit
        statuses = []
        for i in range(per_ip // ratelimit.CLAIM_PER_ACCOUNT.limit + 1):
            owner = make_owner()
            for j in range(ratelimit.CLAIM_PER_ACCOUNT.limit):
                body = json.dumps({"claimCode": _wrong_code(i * 100 + j)}).encode()
                status, headers, reply = client.request(
                    "POST",
                    "/v1/claims",
                    body,
                    {
                        "Authorization": f"Bearer {owner.token}",
                        "Content-Type": "application/json",
                        "X-Forwarded-For": f"192.0.2.{len(statuses) % 250 + 1}",
                        "X-Real-IP": f"192.0.2.{len(statuses) % 250 + 1}",
                    },
                )
                statuses.append(status)
                assert set(reply) == {"error", "message", "retryAfter"} or set(reply) == {"error", "message"}
        if int(time.time()) // 3600 == hour:
            break
    assert statuses[:per_ip] == [404] * per_ip
    assert set(statuses[per_ip:]) == {429}, statuses
    assert "retry-after" in headers


# --- signed device requests: replay, re-signing, tampering ---------------------------------------------


def test_device_requests_cannot_be_replayed_late_re_signed_or_tampered_with(lab: Lab) -> None:
    victim, other = lab.claimed(), lab.claimed()
    body = {"attempt": 0, "agent": {}, "csr": make_csr(victim.key, victim.device_id)}

    def poll(event: dict[str, Any]) -> tuple[int, Any]:
        return answer(device_api.handler(event, None))

    fresh = signed_event("POST", POLL, body, victim.key, victim.device_id)
    status, first = poll(fresh)
    assert status == 200 and first["status"] == "provisioned"

    # A replay inside the ±300 s window repeats an idempotent answer: same certificate, nothing new
    assert poll(fresh) == (200, first)
    ack = signed_event("POST", ACK, {"certificateId": first["certificateId"]}, victim.key, victim.device_id)
    assert poll(ack)[0] == 204 and poll(ack)[0] == 204
    events = [e["action"] for e in lab_events(victim.device_id)]
    assert events.count("certificate.issued") == 1 and events.count("certificate.activated") == 1

    refused = {
        "captured 301 s ago": signed_event(
            "POST", POLL, body, victim.key, victim.device_id, timestamp=int(time.time()) - 301
        ),
        "dated 301 s ahead": signed_event(
            "POST", POLL, body, victim.key, victim.device_id, timestamp=int(time.time()) + 301
        ),
        "re-signed with another device's key": signed_event("POST", POLL, body, other.key, victim.device_id),
        "re-signed with a fresh key": signed_event(
            "POST", POLL, body, ec.generate_private_key(ec.SECP256R1()), victim.device_id
        ),
        "sent as another device": _with_header(fresh, "x-device-id", other.device_id),
        "body changed after signing": _with_body(fresh, {**body, "attempt": 7}),
        "signed for /ack, sent to /poll": _with_path(ack, POLL),
        "timestamp changed after signing": _with_header(fresh, "x-timestamp", str(int(time.time()) + 1)),
        "signature missing": _without_header(fresh, "x-signature"),
        "signature garbage": _with_header(fresh, "x-signature", "bm90IGEgc2lnbmF0dXJl"),
    }
    for why, event in refused.items():
        status, reply = poll(event)
        assert status == 401, (why, status, reply)
        assert reply["error"] == "unauthorized" and reply["message"], (why, reply)
        if "301 s" in why:
            assert abs(reply["serverTime"] - time.time()) < 5, why
    print(f"\nrefused with 401: {', '.join(refused)}; an in-window replay of poll/ack changed nothing")


def lab_events(device_id: str) -> list[dict[str, Any]]:
    from lambdas.dal import audit

    return audit.list_events(device_id)


def _with_header(event: dict[str, Any], name: str, value: str) -> dict[str, Any]:
    return {**event, "headers": {**event["headers"], name: value}}


def _without_header(event: dict[str, Any], name: str) -> dict[str, Any]:
    return {**event, "headers": {k: v for k, v in event["headers"].items() if k != name}}


def _with_body(event: dict[str, Any], body: Any) -> dict[str, Any]:
    return {**event, "body": json.dumps(body), "isBase64Encoded": False}


def _with_path(event: dict[str, Any], path: str) -> dict[str, Any]:
    context = {**event["requestContext"], "http": {**event["requestContext"]["http"], "path": path}}
    return {**event, "rawPath": path, "routeKey": f"POST {path}", "requestContext": context}


# --- the device policy on AWS: a tiny evaluator of IoT policy documents --------------------------------

ACCOUNT_ARN = "arn:aws:iot:eu-west-1:123456789012"


def _glob(pattern: str) -> re.Pattern[str]:
    """IoT policy resource wildcards: `*` any run of characters (also `/`), `?` one character."""
    return re.compile(
        "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern) + r"\Z"
    )


def _listify(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def iot_allows(
    policy: dict[str, Any], action: str, resource: str, thing: str | None, attached: bool = True
) -> bool:
    """Allowed iff some Allow statement matches and no Deny does. `thing` is the thing the connection's
    certificate is attached to (None: none): it is what `${iot:Connection.Thing.ThingName}` becomes; a
    statement whose variable cannot be resolved matches nothing."""
    allowed = False
    for statement in policy["Statement"]:
        if action not in _listify(statement["Action"]) and "iot:*" not in _listify(statement["Action"]):
            continue
        condition = statement.get("Condition", {}).get("Bool", {})
        if condition.get("iot:Connection.Thing.IsAttached") == "true" and not attached:
            continue
        for pattern in _listify(statement["Resource"]):
            if definitions.THING_VAR in pattern:
                if thing is None:
                    continue
                pattern = pattern.replace(definitions.THING_VAR, thing)
            if _glob(pattern).match(resource):
                if statement["Effect"] == "Deny":
                    return False
                allowed = True
    return allowed


ME, NEIGHBOUR = "lk-me00000000000000", "lk-me000000000000001"  # one id is a prefix of the other
POLICY_CASES = [
    # (action, resource after the account ARN, allowed for ME)
    ("iot:Connect", f"client/{ME}", True),
    ("iot:Connect", f"client/{NEIGHBOUR}", False),
    ("iot:Connect", "client/anything", False),
    ("iot:Publish", f"topic/latchkey/things/{ME}/status", True),
    ("iot:Publish", f"topic/$aws/things/{ME}/shadow/update", True),
    ("iot:Publish", f"topic/$aws/things/{ME}/shadow/get", True),
    ("iot:Publish", f"topic/latchkey/things/{NEIGHBOUR}/status", False),
    ("iot:Publish", f"topic/latchkey/things/{ME}/commands", False),  # only the service commands
    ("iot:Publish", f"topic/latchkey/things/{ME}/status/extra", False),
    ("iot:Publish", f"topic/$aws/things/{NEIGHBOUR}/shadow/update", False),
    ("iot:Publish", f"topic/$aws/things/{ME}/shadow/delete", False),
    ("iot:Subscribe", f"topicfilter/latchkey/things/{ME}/commands", True),
    ("iot:Subscribe", f"topicfilter/$aws/things/{ME}/shadow/update/delta", True),
    ("iot:Subscribe", f"topicfilter/$aws/things/{ME}/shadow/#", True),
    ("iot:Subscribe", f"topicfilter/latchkey/things/{NEIGHBOUR}/commands", False),
    ("iot:Subscribe", "topicfilter/#", False),
    ("iot:Subscribe", "topicfilter/latchkey/#", False),
    ("iot:Subscribe", "topicfilter/latchkey/things/#", False),
    ("iot:Subscribe", "topicfilter/latchkey/things/+/commands", False),
    ("iot:Subscribe", "topicfilter/latchkey/things/+/status", False),
    ("iot:Subscribe", "topicfilter/$aws/things/+/shadow/update/delta", False),
    ("iot:Subscribe", "topicfilter/$aws/#", False),
    ("iot:Receive", f"topic/latchkey/things/{ME}/commands", True),
    ("iot:Receive", f"topic/latchkey/things/{NEIGHBOUR}/commands", False),
    ("iot:Receive", f"topic/$aws/things/{NEIGHBOUR}/shadow/update/delta", False),
    ("iot:UpdateThingShadow", f"thing/{NEIGHBOUR}", False),
    ("iot:DeleteThingShadow", f"thing/{ME}", False),
]


@pytest.mark.parametrize(("action", "resource", "expected"), POLICY_CASES)
def test_the_iot_policy_confines_a_device_to_its_own_topics(
    action: str, resource: str, expected: bool
) -> None:
    policy = definitions.device_policy_document("eu-west-1", "123456789012")
    assert iot_allows(policy, action, f"{ACCOUNT_ARN}:{resource}", ME) is expected


def test_the_iot_policy_gives_nothing_to_a_certificate_without_its_thing() -> None:
    policy = definitions.device_policy_document("eu-west-1", "123456789012")
    for action, resource, _ in POLICY_CASES:
        arn = f"{ACCOUNT_ARN}:{resource}"
        assert not iot_allows(policy, action, arn, None, attached=False), (action, resource)
    # Attached to a thing, but the condition is checked too
    assert not iot_allows(policy, "iot:Connect", f"{ACCOUNT_ARN}:client/{ME}", ME, attached=False)


def test_the_evaluator_is_not_trivially_permissive() -> None:
    everything = {"Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]}
    assert iot_allows(everything, "iot:Subscribe", f"{ACCOUNT_ARN}:topicfilter/#", ME)
    denied = {
        "Statement": [
            *everything["Statement"],
            {"Effect": "Deny", "Action": "iot:Subscribe", "Resource": "*"},
        ]
    }
    assert not iot_allows(denied, "iot:Subscribe", f"{ACCOUNT_ARN}:topicfilter/#", ME)


# --- the local broker: a certificate from a real provisioning, real mosquitto ---------------------------


def _provisioned_client(cloud: Any, owner: Any, tmp_path: Path) -> tuple[str, IssuedCert]:
    """Mint, claim, and provision a device through the gateway like the agent; its MQTT identity."""
    from lambdas.logic.manufacturing import mint_device

    minted = mint_device(None, "acl-test", "manufacturer")
    assert minted.private_key_pem is not None
    status, body = owner.request("POST", "/v1/claims", {"claimCode": minted.display_code})
    assert status == 200, body
    client = LoopbackClient(cloud.gateway_url)
    csr = DeviceKey.from_pem(minted.private_key_pem).csr_pem(minted.device_id)
    status, _, delivered = client.signed(
        minted.device_id, minted.private_key_pem, POLL, {"attempt": 0, "csr": csr}
    )
    assert status == 200 and delivered["status"] == "provisioned", delivered
    status, _, _ = client.signed(
        minted.device_id, minted.private_key_pem, ACK, {"certificateId": delivered["certificateId"]}
    )
    assert status == 204
    cert_file, key_file = tmp_path / f"{minted.device_id}.pem", tmp_path / f"{minted.device_id}.key"
    cert_file.write_text(delivered["certificatePem"])
    key_file.write_text(minted.private_key_pem)
    key_file.chmod(0o600)
    return minted.device_id, IssuedCert(
        minted.device_id, 0, delivered["certificatePem"], None, cert_file, key_file
    )


def test_a_provisioned_certificate_reaches_only_its_own_topics_on_the_broker(
    cloud: Any, owner: Any, tmp_path: Path
) -> None:
    me, my_cert = _provisioned_client(cloud, owner, tmp_path)
    victim = "lk-victim000000000"
    mine, theirs = definitions.device_topics(me), definitions.device_topics(victim)
    clients: list[MqttClient] = []

    def mqtt(cert: IssuedCert, client_id: str) -> MqttClient:
        made = MqttClient(
            cloud.mqtt_host, cloud.mqtt_port, ca_file=cloud.ca_file, cert=cert, client_id=client_id
        )
        clients.append(made)
        assert made.connect(), f"{client_id} could not connect"
        return made

    try:
        service = mqtt(cloud.broker.service, f"svc-{uuid.uuid4().hex[:8]}")
        assert service.subscribe("latchkey/things/#") and service.subscribe("$aws/things/#")
        device = mqtt(my_cert, me)
        # Subscriptions outside its own topics: mosquitto grants them but never delivers (IoT Core
        # refuses them outright: see the policy test above)
        for topic_filter in ("#", "latchkey/things/+/commands", theirs["commands"], "$aws/things/#"):
            device.subscribe(topic_filter)
        assert device.subscribe(mine["commands"])
        # Publishing outside its own topics is dropped
        device.publish(theirs["status"], {"status": "online", "forged": True})
        device.publish(theirs["shadow"] + "/update", {"state": {"reported": {"forged": True}}})
        device.publish(mine["commands"], {"command": "release"})
        device.publish(mine["status"], {"status": "online", "marker": True})  # same connection: arrives last
        seen: list[str] = []
        got = service.wait_message(lambda m: seen.append(m.topic) or m.topic == mine["status"], timeout=10)
        assert got is not None and got.json().get("marker")
        assert not [t for t in seen if victim in t or t == mine["commands"]], seen
        # Messages for the victim never reach the device; its own command does
        service.publish(theirs["commands"], {"command": "release"})
        service.publish(theirs["shadow"] + "/update/delta", {"state": {"relay": True}})
        service.publish(mine["commands"], {"marker": True})
        received: list[str] = []
        got = device.wait_message(
            lambda m: received.append(m.topic) or m.topic == mine["commands"], timeout=10
        )
        assert got is not None
        assert received == [mine["commands"]], received
    finally:
        for client in clients:
            client.close()


# --- hostile bodies ---------------------------------------------------------------------------------------


def test_hostile_bodies_get_clear_json_errors_through_the_gateway(cloud: Any, owner: Any) -> None:
    from lambdas.logic.manufacturing import mint_device

    minted = mint_device(None, "hostile", "manufacturer")
    assert minted.private_key_pem is not None
    assert owner.request("POST", "/v1/claims", {"claimCode": minted.display_code})[0] == 200
    client = LoopbackClient(cloud.gateway_url)
    key = minted.private_key_pem
    other_key = DeviceKey.generate()
    big = "x" * (c.MAX_BODY_BYTES + 1)
    auth = {"Authorization": f"Bearer {owner.token}", "Content-Type": "application/json"}
    cases: dict[str, tuple[int, Any]] = {
        "device poll over 16 KiB": (
            413,
            client.signed(minted.device_id, key, POLL, {"attempt": 0, "pad": big}),
        ),
        "owner claim over 16 KiB": (
            413,
            client.request("POST", "/v1/claims", json.dumps({"claimCode": big}).encode(), auth),
        ),
        "owner rename over 16 KiB": (
            413,
            client.request(
                "PATCH", f"/v1/devices/{minted.device_id}", json.dumps({"name": big}).encode(), auth
            ),
        ),
        "register over 16 KiB": (
            413,
            client.request(
                "POST",
                "/v1/device/register",
                json.dumps({"csr": big}).encode(),
                {"Content-Type": "application/json"},
            ),
        ),
        "CSR that is not PEM": (
            400,
            client.signed(minted.device_id, key, POLL, {"attempt": 0, "csr": "hello"}),
        ),
        "CSR with a broken PEM body": (
            400,
            client.signed(
                minted.device_id,
                key,
                POLL,
                {
                    "attempt": 0,
                    "csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
                },
            ),
        ),
        "CSR for another key": (
            400,
            client.signed(
                minted.device_id, key, POLL, {"attempt": 0, "csr": other_key.csr_pem(minted.device_id)}
            ),
        ),
        "register with a broken CSR": (
            400,
            client.request(
                "POST",
                "/v1/device/register",
                json.dumps(
                    {
                        "registrationToken": "t" * 43,
                        "mac": "24:6f:28:00:00:01",
                        "csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
                    }
                ).encode(),
                {"Content-Type": "application/json"},
            ),
        ),
        "device body not JSON": (400, _signed_raw(client, minted.device_id, key, b"{not json")),
        "owner body not JSON": (400, client.request("POST", "/v1/claims", b"{not json", auth)),
        "owner body not UTF-8": (400, client.request("POST", "/v1/claims", b"\xff\xfe\xfa", auth)),
    }
    for why, (expected, (status, _headers, reply)) in cases.items():
        assert status == expected, (why, status, reply)
        assert isinstance(reply, dict) and set(reply) >= {"error", "message"}, (why, reply)
        assert len(reply["message"]) > 15 and "Traceback" not in reply["message"], (why, reply)
    assert "CSR" in cases["CSR for another key"][1][2]["message"]
    assert "csr" in cases["CSR that is not PEM"][1][2]["message"].lower()
    print("\nhostile bodies: " + "; ".join(f"{why} -> {exp}" for why, (exp, _) in cases.items()))


def _signed_raw(
    client: LoopbackClient, device_id: str, private_key_pem: str, body: bytes
) -> tuple[int, dict[str, str], Any]:
    from firmware.identity import sign_request

    stamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "X-Device-Id": device_id,
        "X-Timestamp": str(stamp),
        "X-Signature": sign_request(DeviceKey.from_pem(private_key_pem), "POST", POLL, stamp, body),
    }
    return client.request("POST", POLL, body, headers)
