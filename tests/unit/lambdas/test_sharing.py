"""Sharing a device: roles, owner-only actions, no existence oracle, audit, and shares ending with the
ownership (release, delete), also when a share races the release."""

from __future__ import annotations

import json
import threading

import pytest

from lambdas import constants as c
from lambdas.dal import grants
from lambdas.handlers.owner_api import handler
from lambdas.logic import invariants, ratelimit
from tests.unit.lambdas.conftest import owner_event
from tests.unit.lambdas.test_owner_api import DEVICE, active_device, cert_status

MISSING = "lk-nosuchdevice0000"
OWNERSHIP = "own-1"


def call(event):
    answer = handler(event, None)
    return answer["statusCode"], json.loads(answer["body"]) if answer["body"] else None


class Accounts:
    """Cognito users in moto's user pool; `sub(email)` is the owner id the API sees."""

    def __init__(self, idp, pool):
        self.idp, self.pool, self.subs = idp, pool, {}

    def add(self, email: str) -> str:
        user = self.idp.admin_create_user(
            UserPoolId=self.pool,
            Username=email,
            UserAttributes=[{"Name": "email", "Value": email}, {"Name": "email_verified", "Value": "true"}],
            MessageAction="SUPPRESS",
        )["User"]
        sub = next(a["Value"] for a in user["Attributes"] if a["Name"] == "sub")
        self.subs[email] = sub
        return sub


@pytest.fixture
def accounts(aws, monkeypatch):
    from lambdas.aws_clients import client

    idp = client("cognito-idp")
    pool = idp.create_user_pool(PoolName="latchkey-test", UsernameAttributes=["email"])["UserPool"]["Id"]
    monkeypatch.setenv(c.ENV_USER_POOL_ID, pool)
    return Accounts(idp, pool)


@pytest.fixture
def household(aws, accounts, monkeypatch):
    """An active device of `owner` (with ownership), and two other accounts: `sam` and `eve`."""
    from lambdas.adapters import mqtt

    monkeypatch.setattr(mqtt, "publish", lambda topic, payload: None)
    owner = accounts.add("olivia@example.com")
    sam = accounts.add("sam@example.com")
    eve = accounts.add("eve@example.com")
    cert = active_device(aws, owner=owner, ownership=OWNERSHIP, ownerEmail="olivia@example.com")
    return {"owner": owner, "sam": sam, "eve": eve, "cert": cert}


def share(owner, email, role, device=DEVICE):
    return call(owner_event("POST", f"/v1/devices/{device}/shares", owner, {"email": email, "role": role}))


def test_a_viewer_sees_the_device_with_its_role_and_nothing_more(aws, household):
    owner, sam = household["owner"], household["sam"]
    status, body = share(owner, "sam@example.com", "viewer")
    assert status == 201 and body["userId"] == sam and body["role"] == "viewer"
    assert body["email"] == "sam@example.com"

    listed = call(owner_event("GET", "/v1/devices", sam))[1]["devices"]
    assert [(d["id"], d["role"], d["sharedBy"]) for d in listed] == [(DEVICE, "viewer", "olivia@example.com")]
    assert call(owner_event("GET", "/v1/devices", owner))[1]["devices"][0]["role"] == "owner"
    assert call(owner_event("GET", f"/v1/devices/{DEVICE}", sam))[1]["role"] == "viewer"
    assert call(owner_event("GET", f"/v1/devices/{DEVICE}/state", sam))[0] == 200

    status, body = call(owner_event("PATCH", f"/v1/devices/{DEVICE}/state", sam, {"relays": {"r1": True}}))
    assert status == 403 and body["error"] == "forbidden"


OWNER_ONLY = [
    ("PATCH", "/v1/devices/{id}", {"name": "Mine now"}),
    ("DELETE", "/v1/devices/{id}", None),
    ("POST", "/v1/devices/{id}/revoke", None),
    ("POST", "/v1/devices/{id}/release", None),
    ("GET", "/v1/devices/{id}/events", None),
    ("GET", "/v1/devices/{id}/shares", None),
    ("POST", "/v1/devices/{id}/shares", {"email": "eve@example.com", "role": "viewer"}),
    ("POST", "/v1/devices/{id}/transfer", {"email": "eve@example.com"}),
]


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_members_get_403_for_owner_only_actions_and_change_nothing(aws, household, role):
    owner, sam = household["owner"], household["sam"]
    share(owner, "sam@example.com", role)
    before = aws.device(DEVICE)
    for method, path, body in OWNER_ONLY:
        status, answer = call(owner_event(method, path.format(id=DEVICE), sam, body))
        assert (status, answer["error"]) == (403, "forbidden"), (method, path)
    assert aws.device(DEVICE) == before
    assert cert_status(aws, household["cert"]["certificateId"]) == "ACTIVE"
    assert [
        s["userId"] for s in call(owner_event("GET", f"/v1/devices/{DEVICE}/shares", owner))[1]["shares"]
    ] == [sam]


def test_a_non_member_gets_exactly_what_a_missing_device_answers(aws, household):
    owner, eve = household["owner"], household["eve"]
    share(owner, "sam@example.com", "operator")
    routes = [*OWNER_ONLY, ("GET", "/v1/devices/{id}", None), ("GET", "/v1/devices/{id}/state", None)]
    routes.append(("DELETE", "/v1/devices/{id}/shares/" + household["sam"], None))
    for method, path, body in routes:
        there = call(owner_event(method, path.format(id=DEVICE), eve, body))
        missing = call(owner_event(method, path.format(id=MISSING), eve, body))
        assert there == missing and there[0] == 404, (method, path)
    assert call(owner_event("GET", "/v1/devices", eve))[1] == {"devices": []}


def test_an_operator_switches_relays(aws, household):
    from lambdas.adapters import iot

    owner, sam = household["owner"], household["sam"]
    reported = {
        "capabilities": {"relays": {"r1": {"name": "Lamp", "logic": "positive"}}},
        "relays": {"r1": False},
    }
    iot.iot_data_client().update_thing_shadow(
        thingName=DEVICE, payload=json.dumps({"state": {"reported": reported}}).encode()
    )
    share(owner, "sam@example.com", "operator")
    status, body = call(owner_event("PATCH", f"/v1/devices/{DEVICE}/state", sam, {"relays": {"r1": True}}))
    assert status == 200 and body["desired"]["relays"] == {"r1": True}
    settings = {"relayNames": {"r1": "Hall"}}
    status, _ = call(owner_event("PATCH", f"/v1/devices/{DEVICE}/state", sam, settings))
    assert status == 200
    assert "device.settings_changed" in aws.audit_actions(DEVICE)


def test_sharing_again_changes_the_role_and_every_change_is_audited(aws, household):
    owner, sam = household["owner"], household["sam"]
    share(owner, "sam@example.com", "viewer")
    assert share(owner, "sam@example.com", "operator")[1]["role"] == "operator"
    assert call(owner_event("GET", f"/v1/devices/{DEVICE}", sam))[1]["role"] == "operator"
    assert call(owner_event("DELETE", f"/v1/devices/{DEVICE}/shares/{sam}", owner))[0] == 204
    assert call(owner_event("GET", f"/v1/devices/{DEVICE}", sam))[0] == 404
    events = call(owner_event("GET", f"/v1/devices/{DEVICE}/events", owner))[1]["events"]
    assert [e["action"] for e in events] == ["share.removed", "share.changed", "share.added"]
    assert events[1]["detail"] == {
        "userId": sam,
        "email": "sam@example.com",
        "role": "operator",
        "previousRole": "viewer",
    }
    assert all(e["actor"] == owner for e in events)


def test_a_member_may_leave_but_not_remove_others(aws, household):
    owner, sam, eve = household["owner"], household["sam"], household["eve"]
    share(owner, "sam@example.com", "operator")
    share(owner, "eve@example.com", "viewer")
    status, body = call(owner_event("DELETE", f"/v1/devices/{DEVICE}/shares/{eve}", sam))
    assert (status, body["error"]) == (403, "forbidden")
    assert call(owner_event("DELETE", f"/v1/devices/{DEVICE}/shares/{sam}", sam))[0] == 204
    assert call(owner_event("GET", "/v1/devices", sam))[1] == {"devices": []}
    assert call(owner_event("GET", f"/v1/devices/{DEVICE}", eve))[0] == 200
    status, body = call(owner_event("DELETE", f"/v1/devices/{DEVICE}/shares/{sam}", owner))
    assert (status, body["error"]) == (404, "not_found")


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"email": "nobody@example.com", "role": "viewer"}, 404, "no account"),
        ({"email": "olivia@example.com", "role": "viewer"}, 400, "You own this device"),
        ({"email": "sam@example.com", "role": "owner"}, 400, "role"),
        ({"email": "sam@example.com"}, 400, "role"),
        ({"email": "not-an-email", "role": "viewer"}, 400, "email"),
        ({"email": 'x"@example.com', "role": "viewer"}, 400, "email"),
        ({"role": "viewer"}, 400, "email"),
    ],
)
def test_bad_shares_get_a_clear_answer_and_store_nothing(aws, household, body, status, fragment):
    answer = call(owner_event("POST", f"/v1/devices/{DEVICE}/shares", household["owner"], body))
    assert answer[0] == status and set(answer[1]) >= {"error", "message"}
    assert fragment in answer[1]["message"]
    assert grants.for_device(DEVICE) == []


def test_share_creation_is_rate_limited_per_account(aws, household):
    owner = household["owner"]
    for _ in range(ratelimit.GRANT_PER_ACCOUNT.limit):
        share(owner, "nobody@example.com", "viewer")
    status, body = share(owner, "sam@example.com", "viewer")
    assert status == 429 and body["error"] == "too_many_requests"
    assert grants.for_device(DEVICE) == []


def test_a_share_of_an_earlier_ownership_grants_nothing(aws, household):
    """What a crash could leave behind (the transaction that ended the ownership missed it) is inert."""
    sam = household["sam"]
    item = {
        "deviceId": DEVICE,
        "grantKey": grants.share_key(sam),
        "kind": "share",
        "userId": sam,
        "role": "operator",
        "ownership": "an-older-one",
    }
    grants.transact([grants.put_request(item)])
    assert call(owner_event("GET", f"/v1/devices/{DEVICE}", sam))[0] == 404
    assert call(owner_event("GET", "/v1/devices", sam))[1] == {"devices": []}
    problems = [p for p in invariants.check() if p.kind == "grant-stale"]
    assert [p.subject for p in problems] == [f"{DEVICE}/share#{sam}"]


@pytest.mark.parametrize("end", ["release", "delete"])
def test_shares_end_with_the_ownership(aws, household, end):
    owner, sam, eve = household["owner"], household["sam"], household["eve"]
    share(owner, "sam@example.com", "operator")
    share(owner, "eve@example.com", "viewer")
    if end == "release":
        assert call(owner_event("POST", f"/v1/devices/{DEVICE}/release", owner))[0] == 200
    else:
        assert call(owner_event("DELETE", f"/v1/devices/{DEVICE}", owner))[0] == 204
    assert grants.for_device(DEVICE) == []
    for member in (sam, eve):
        assert call(owner_event("GET", "/v1/devices", member))[1] == {"devices": []}
        assert call(owner_event("GET", f"/v1/devices/{DEVICE}", member))[0] == 404


def test_a_share_racing_a_release_leaves_no_share(aws, household):
    """Whichever commits first, no grant outlives the ownership (transaction, then the sweep). Through the
    logic: the owner API's resolver serves one request at a time, as a Lambda container does."""
    from lambdas.errors import LatchkeyError
    from lambdas.logic import owner as owner_logic
    from lambdas.logic import sharing

    owner = household["owner"]
    barrier = threading.Barrier(2)
    answers: dict[str, int] = {}

    def run(name, fn):
        barrier.wait()
        try:
            fn()
            answers[name] = 200
        except LatchkeyError as error:
            answers[name] = error.status

    jobs = {
        "share": lambda: sharing.add_share(owner, DEVICE, "sam@example.com", "viewer"),
        "release": lambda: owner_logic.release(owner, DEVICE, None),
    }
    threads = [threading.Thread(target=run, args=item) for item in jobs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert answers["release"] == 200 and answers["share"] in (200, 404, 409), answers
    assert grants.for_device(DEVICE) == []
    assert [p for p in invariants.check() if p.kind == "grant-stale"] == []
