"""Registration tokens (design.md B): pending devices, register exactly once, expiry, regenerate."""

from __future__ import annotations

import json
import threading
import tomllib

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from lambdas import constants as c
from lambdas.handlers import device_api, owner_api
from lambdas.logic import device_config, registration
from tests.unit.lambdas.conftest import make_csr, owner_event

MAC = "24:6f:28:aa:bb:cc"
OTHER_MAC = "24:6f:28:aa:bb:dd"


def call_owner(method, path, sub="owner-1", body=None, **kw):
    answer = owner_api.handler(owner_event(method, path, sub, body, **kw), None)
    return answer["statusCode"], json.loads(answer["body"]) if answer["body"] else None


def call_register(body, source_ip="203.0.113.5"):
    event = {
        "version": "2.0",
        "routeKey": "POST /v1/device/register",
        "rawPath": "/v1/device/register",
        "headers": {"content-type": "application/json"},
        "requestContext": {"http": {"method": "POST", "path": "/v1/device/register", "sourceIp": source_ip}},
        "body": json.dumps(body),
    }
    answer = device_api.handler(event, None)
    return answer["statusCode"], json.loads(answer["body"]) if answer["body"] else None, answer["headers"]


def add_device(sub="owner-1", name="Garage door", board="esp32"):
    status, body = call_owner("POST", "/v1/pending", sub, {"name": name, "board": board})
    assert status == 201, body
    return body


def register_body(token, key=None, mac=MAC):
    key = key or ec.generate_private_key(ec.SECP256R1())
    return {"registrationToken": token, "mac": mac, "csr": make_csr(key), "board": "esp32"}


def test_add_device_returns_token_and_both_configs_once(aws):
    # Given / When
    added = add_device()
    # Then: the token is in both renderings, stored only as a hash
    token = added["registrationToken"]
    assert tomllib.loads(added["config"]["agentToml"])["registration_token"] == token
    assert f'#define LATCHKEY_REGISTRATION_TOKEN "{token}"' in added["config"]["arduinoHeader"]
    assert added["config"]["recommended"] == "arduinoHeader"
    stored = aws.ddb.scan(TableName=aws.tables["Pending"])["Items"]
    assert token not in json.dumps(stored)
    listed = call_owner("GET", "/v1/pending")[1]["pending"]
    assert [p["id"] for p in listed] == [added["id"]]
    assert "registrationToken" not in listed[0] and 0 < listed[0]["secondsLeft"] <= 24 * 3600


def test_pending_devices_are_private_to_their_owner(aws):
    added = add_device()
    assert call_owner("GET", "/v1/pending", "owner-2")[1]["pending"] == []
    assert call_owner("DELETE", f"/v1/pending/{added['id']}", "owner-2")[0] == 404
    assert call_owner("POST", f"/v1/pending/{added['id']}/token", "owner-2")[0] == 404
    assert call_owner("POST", f"/v1/pending/{added['id']}/claim", "owner-2")[0] == 404
    assert call_owner("DELETE", f"/v1/pending/{added['id']}")[0] == 204
    assert call_owner("GET", "/v1/pending")[1]["pending"] == []


def test_register_creates_a_device_claimed_by_the_token_owner(aws):
    added = add_device()
    key = ec.generate_private_key(ec.SECP256R1())
    status, body, _ = call_register(register_body(added["registrationToken"], key))
    assert status == 201, body
    device = aws.device(body["deviceId"])
    assert device["state"] == c.STATE_CLAIMED and device["ownerId"] == "owner-1"
    assert device["mac"] == MAC and device["name"] == "Garage door"
    from tests.unit.lambdas.conftest import public_pem

    assert device["publicKeyPem"] == public_pem(key)
    assert {"device.registered", "device.claimed"} <= set(aws.audit_actions(body["deviceId"]))
    # Registered: no longer listed as pending
    assert call_owner("GET", "/v1/pending")[1]["pending"] == []


def test_token_used_again_is_410_from_another_mac_409_same_device_retry_201(aws):
    added = add_device()
    key = ec.generate_private_key(ec.SECP256R1())
    first = call_register(register_body(added["registrationToken"], key))
    assert first[0] == 201
    # The device retrying after a lost answer: same MAC, same key → same device
    again = call_register(register_body(added["registrationToken"], key))
    assert again[:2] == (201, first[1])
    # Another key from the bound MAC: used
    assert call_register(register_body(added["registrationToken"]))[0] == 410
    # Another MAC: bound elsewhere
    assert call_register(register_body(added["registrationToken"], mac=OTHER_MAC))[0] == 409


def test_expired_token_is_401_on_read(aws, monkeypatch):
    added = add_device()
    real_now = registration.now()
    monkeypatch.setattr(registration, "now", lambda: real_now + 24 * 3600 + 1)
    status, body, _ = call_register(register_body(added["registrationToken"]))
    assert status == 401 and body["error"] == "invalid_registration_token"
    assert call_owner("GET", "/v1/pending")[1]["pending"] == []


def test_unknown_token_401_and_hammering_429(aws):
    for _ in range(registration.REGISTER_FAILURES_PER_IP.limit):
        assert call_register(register_body("x" * 43))[0] == 401
    status, _body, headers = call_register(register_body("x" * 43))
    assert status == 429 and int(headers["Retry-After"]) > 0
    # Other addresses are not affected
    assert call_register(register_body("x" * 43), source_ip="203.0.113.99")[0] == 401


@pytest.mark.parametrize(
    "change, fragment",
    [({"mac": "nonsense"}, "mac"), ({"csr": "-----BEGIN NOPE-----"}, "CSR"), ({"csr": "x" * 5000}, "csr")],
)
def test_malformed_register_is_400(aws, change, fragment):
    added = add_device()
    status, body, _ = call_register({**register_body(added["registrationToken"]), **change})
    assert status == 400 and fragment.lower() in body["message"].lower()
    assert call_register(register_body(added["registrationToken"]))[0] == 201  # nothing consumed


def test_concurrent_registers_make_exactly_one_device(aws):
    added = add_device()
    results = []
    bodies = [register_body(added["registrationToken"], mac=f"24:6f:28:aa:bb:{i:02x}") for i in range(20)]

    def go(body):
        results.append(call_register(body)[0])

    threads = [threading.Thread(target=go, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results).count(201) == 1
    assert all(r in (201, 409, 410) for r in results), results
    devices = aws.ddb.scan(TableName=aws.tables["Devices"])["Items"]
    assert len(devices) == 1


def test_regenerate_kills_the_old_token_and_retires_its_device(aws):
    added = add_device()
    first = call_register(register_body(added["registrationToken"]))
    device_id = first[1]["deviceId"]
    status, fresh = call_owner("POST", f"/v1/pending/{added['id']}/token")
    assert status == 200 and fresh["registrationToken"] != added["registrationToken"]
    assert call_register(register_body(added["registrationToken"]))[0] == 401
    assert aws.device(device_id) is None
    assert "device.deleted" in aws.audit_actions(device_id)
    assert call_register(register_body(fresh["registrationToken"]))[0] == 201


def test_legacy_token_is_unbound_and_can_be_upgraded(aws):
    legacy = registration.create_pending(
        "owner-1", None, "Old", "esp8266", "", token_version=registration.TOKEN_VERSION_LEGACY
    )
    listed = call_owner("GET", "/v1/pending")[1]["pending"][0]
    assert listed["tokenVersion"] == 1 and listed["upgradeAvailable"] is True
    key = ec.generate_private_key(ec.SECP256R1())
    assert call_register(register_body(legacy["registrationToken"], key))[0] == 201
    # Unbound: a second use from another MAC is "used", not "bound elsewhere"
    assert call_register(register_body(legacy["registrationToken"], mac=OTHER_MAC))[0] == 410
    status, upgraded = call_owner("POST", f"/v1/pending/{legacy['id']}/token")
    assert status == 200 and upgraded["tokenVersion"] == 2 and upgraded["upgradeAvailable"] is False


def test_manual_claim_of_a_released_registered_device(aws):
    added = add_device()
    device_id = call_register(register_body(added["registrationToken"]))[1]["deviceId"]
    assert call_owner("POST", f"/v1/pending/{added['id']}/claim")[0] == 200  # already yours
    aws.ddb.update_item(
        TableName=aws.tables["Devices"],
        Key={"deviceId": {"S": device_id}},
        UpdateExpression="SET #s = :u REMOVE ownerId",
        ExpressionAttributeNames={"#s": "state"},
        ExpressionAttributeValues={":u": {"S": "unclaimed"}},
    )
    assert [p["id"] for p in call_owner("GET", "/v1/pending")[1]["pending"]] == [added["id"]]
    status, body = call_owner("POST", f"/v1/pending/{added['id']}/claim")
    assert status == 200 and body["state"] == c.STATE_CLAIMED
    assert aws.device(device_id)["ownerId"] == "owner-1"


def test_manual_claim_before_registration_is_409(aws):
    added = add_device()
    assert call_owner("POST", f"/v1/pending/{added['id']}/claim")[0] == 409


@pytest.mark.parametrize("name", ['x"; system("rm -rf /"); "', "back\\slash ?? trigraph", "Café ☕"])
def test_config_escapes_hostile_names(name):
    items = device_config.settings("https://api.example.com", "tok", name, "esp32")
    assert tomllib.loads(device_config.render_toml(items))["name"] == name
    header = device_config.render_c_header(items)
    line = next(li for li in header.splitlines() if li.startswith("#define LATCHKEY_DEVICE_NAME"))
    literal = line.split(" ", 2)[2]
    assert literal.startswith('"') and literal.endswith('"')
    inner = literal[1:-1].replace('\\"', "").replace("\\\\", "")
    assert '"' not in inner.replace('""', ""), line  # no unescaped quote ends the literal early


def test_control_characters_are_refused_in_config():
    with pytest.raises(ValueError):
        device_config.render_toml(device_config.settings("u", "t", "a\nb", "esp32"))
