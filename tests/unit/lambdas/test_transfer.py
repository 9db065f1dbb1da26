"""Transferring a device: offer, list, decline/cancel, expiry, accept (the hard cut: new ownership, old
certificate gone, the device provisions again), and accept racing revoke, release, delete, cancel and
a second accept."""

from __future__ import annotations

import json
import threading

import pytest

from lambdas.adapters import iot, mqtt, shadow
from lambdas.dal import audit, devices, grants
from lambdas.domain import times
from lambdas.errors import LatchkeyError, NotFound
from lambdas.handlers import device_api
from lambdas.handlers.owner_api import handler
from lambdas.logic import invariants, owner, transfer
from tests.unit.lambdas.conftest import make_csr, owner_event
from tests.unit.lambdas.test_sharing import Accounts, accounts  # noqa: F401 - the fixture

DEVICE = "lk-xfer000000000000"
DAY = 24 * 3600


def call(event):
    answer = handler(event, None)
    return answer["statusCode"], json.loads(answer["body"]) if answer["body"] else None


def device_call(event):
    answer = device_api.handler(event, None)
    return answer["statusCode"], json.loads(answer["body"]) if answer["body"] else None


def poll(signed_event, key):
    body = {"attempt": 0, "agent": {"version": "1.0.0"}, "csr": make_csr(key, DEVICE)}
    return device_call(signed_event("POST", "/v1/device/poll", body, key, DEVICE))


def ack(signed_event, key, certificate_id):
    return device_call(signed_event("POST", "/v1/device/ack", {"certificateId": certificate_id}, key, DEVICE))


@pytest.fixture
def sale(aws, accounts: Accounts, signed_event, device_key, monkeypatch):  # noqa: F811
    """An active device (provisioned and acknowledged through the device API) of `olivia`, shared with
    `sam`, with relay settings in its shadow; `eve` is the buyer, `mallory` a stranger."""
    monkeypatch.setattr(mqtt, "publish", lambda topic, payload: None)
    people = {name: accounts.add(f"{name}@example.com") for name in ("olivia", "sam", "eve", "mallory")}
    aws.put_device(
        DEVICE,
        device_key,
        state="claimed",
        ownerId=people["olivia"],
        ownerEmail="olivia@example.com",
        ownership="own-olivia",
        name="Garage door",
    )
    audit.record(audit.event_item(DEVICE, "device.minted", "manufacturer", None))
    audit.record(audit.event_item(DEVICE, "device.claimed", people["olivia"], None, ownership="own-olivia"))
    status, answer = poll(signed_event, device_key)
    assert status == 200 and answer["status"] == "provisioned"
    assert ack(signed_event, device_key, answer["certificateId"])[0] == 204
    reported = {
        "capabilities": {"relays": {"r1": {"name": "Door", "logic": "positive"}}},
        "relays": {"r1": False},
    }
    iot.iot_data_client().update_thing_shadow(
        thingName=DEVICE, payload=json.dumps({"state": {"reported": reported}}).encode()
    )
    olivia = people["olivia"]
    patch = {"relays": {"r1": True}, "relayNames": {"r1": "Olivia's door"}}
    assert call(owner_event("PATCH", f"/v1/devices/{DEVICE}/state", olivia, patch))[0] == 200
    body = {"email": "sam@example.com", "role": "operator"}
    assert call(owner_event("POST", f"/v1/devices/{DEVICE}/shares", olivia, body))[0] == 201
    return {**people, "certificateId": answer["certificateId"], "key": device_key}


def offer(sale, email="eve@example.com"):
    return call(
        owner_event(
            "POST", f"/v1/devices/{DEVICE}/transfer", sale["olivia"], {"email": email}, "olivia@example.com"
        )
    )


def accept(sale, transfer_id, who="eve"):
    return call(
        owner_event("POST", f"/v1/transfers/{transfer_id}/accept", sale[who], email=f"{who}@example.com")
    )


def test_the_recipient_sees_the_offer_and_the_sender_sees_it_pending(aws, sale):
    status, made = offer(sale)
    assert status == 201 and made["direction"] == "outgoing" and made["status"] == "pending"
    assert made["deviceId"] == DEVICE and made["recipient"] == "eve@example.com"
    expires = times.parse_iso(made["expiresAt"])
    assert expires is not None and 7 * DAY - 60 < expires.timestamp() - times.now() <= 7 * DAY
    incoming = call(owner_event("GET", "/v1/transfers", sale["eve"]))[1]["transfers"]
    assert [(t["id"], t["direction"], t["sender"], t["deviceName"]) for t in incoming] == [
        (made["id"], "incoming", "olivia@example.com", "Garage door")
    ]
    outgoing = call(owner_event("GET", "/v1/transfers", sale["olivia"]))[1]["transfers"]
    assert [(t["id"], t["direction"]) for t in outgoing] == [(made["id"], "outgoing")]
    assert call(owner_event("GET", "/v1/transfers", sale["mallory"]))[1] == {"transfers": []}
    assert "transfer.offered" in aws.audit_actions(DEVICE)


def test_accepting_is_a_hard_cut(aws, sale, signed_event):
    olivia, eve, sam = sale["olivia"], sale["eve"], sale["sam"]
    _, made = offer(sale)
    status, device = accept(sale, made["id"])
    assert status == 200
    assert device["role"] == "owner" and device["state"] == "claimed" and device["certificate"] is None
    assert device["name"] == "Device 0000"  # reset: the default name
    stored = devices.get(DEVICE, consistent=True)
    assert stored.owner_id == eve and stored.owner_email == "eve@example.com"
    assert stored.ownership not in (None, "own-olivia")

    # The previous owner and the old members have nothing left; the offer and shares are gone.
    assert call(owner_event("GET", f"/v1/devices/{DEVICE}", olivia))[0] == 404
    assert call(owner_event("GET", f"/v1/devices/{DEVICE}", sam))[0] == 404
    assert call(owner_event("GET", "/v1/devices", sam))[1] == {"devices": []}
    assert grants.for_device(DEVICE) == []
    assert call(owner_event("GET", "/v1/transfers", eve))[1] == {"transfers": []}

    # No credential of the old ownership: the certificate is gone from IoT, the shadow too.
    listed = {c["certificateId"] for c in aws.iot.list_certificates()["certificates"]}
    assert sale["certificateId"] not in listed
    assert shadow.get(DEVICE) is None
    assert DEVICE in aws.dropped_connections

    # The new owner sees only the events of their own ownership.
    events = call(owner_event("GET", f"/v1/devices/{DEVICE}/events", eve))[1]["events"]
    # (the transition's two events are 1 µs apart, which an epoch float cannot always tell apart: no order)
    assert sorted(e["action"] for e in events) == ["device.claimed", "device.transferred"]
    assert "olivia" not in json.dumps(events) and "sam@" not in json.dumps(events)
    trail = aws.audit_actions(DEVICE)  # the old ownership's end is recorded, just not shown to the new owner
    assert trail[-4:-2] == ["transfer.accepted", "certificate.revoked"]
    assert sorted(trail[-2:]) == ["device.claimed", "device.transferred"]

    # The device's next poll (a fresh CSR) provisions it for the new owner with a new certificate.
    status, answer = poll(signed_event, sale["key"])
    assert status == 200 and answer["status"] == "provisioned"
    assert answer["certificateId"] != sale["certificateId"]
    assert ack(signed_event, sale["key"], answer["certificateId"])[0] == 204
    assert devices.get(DEVICE, consistent=True).state == "active"
    assert call(owner_event("GET", f"/v1/devices/{DEVICE}/state", eve))[1]["desired"] in ({}, None)
    problems = [p for p in invariants.check() if p.subject.startswith(DEVICE) or p.kind == "grant-stale"]
    assert problems == []


def test_decline_cancel_and_strangers(aws, sale):
    _, made = offer(sale)
    missing = made["id"][:-16] + "0" * 16
    for who in ("mallory", "sam"):
        for method, path in (("POST", "/v1/transfers/{}/accept"), ("DELETE", "/v1/transfers/{}")):
            there = call(owner_event(method, path.format(made["id"]), sale[who]))
            nothing = call(owner_event(method, path.format(missing), sale[who]))
            assert there == nothing and there[0] == 404
    status, body = accept(sale, made["id"], who="olivia")
    assert (status, body["error"]) == (403, "forbidden")

    assert call(owner_event("DELETE", f"/v1/transfers/{made['id']}", sale["eve"]))[0] == 204
    assert accept(sale, made["id"])[0] == 404
    _, again = offer(sale)
    assert again["id"] != made["id"]
    assert call(owner_event("DELETE", f"/v1/transfers/{again['id']}", sale["olivia"]))[0] == 204
    assert call(owner_event("GET", "/v1/transfers", sale["eve"]))[1] == {"transfers": []}
    assert devices.get(DEVICE, consistent=True).owner_id == sale["olivia"]
    actions = aws.audit_actions(DEVICE)
    assert actions.count("transfer.offered") == 2
    assert "transfer.declined" in actions and "transfer.cancelled" in actions


@pytest.mark.parametrize(
    ("email", "status", "fragment"),
    [
        ("nobody@example.com", 404, "no account"),
        ("olivia@example.com", 400, "already own"),
        ("not-an-email", 400, "email"),
    ],
)
def test_bad_offers(aws, sale, email, status, fragment):
    answer = offer(sale, email)
    assert answer[0] == status and fragment in answer[1]["message"]
    assert grants.get_offer(DEVICE) is None


def test_one_pending_offer_per_device_and_none_for_a_revoked_one(aws, sale):
    assert offer(sale)[0] == 201
    status, body = offer(sale, "mallory@example.com")
    assert (status, body["error"]) == (409, "conflict")
    assert call(owner_event("POST", f"/v1/devices/{DEVICE}/revoke", sale["olivia"]))[0] == 200
    status, body = offer(sale, "mallory@example.com")
    assert status == 409 and "revoked" in body["message"]
    assert call(owner_event("GET", "/v1/transfers", sale["eve"]))[1] == {"transfers": []}  # no longer valid


def test_an_offer_expires_after_seven_days_although_the_item_stays(aws, sale):
    start = times.now()
    made = transfer.offer(sale["olivia"], "olivia@example.com", DEVICE, "eve@example.com", now=start)
    assert [t["id"] for t in transfer.list_transfers(sale["eve"], now=start + 7 * DAY - 1)] == [made["id"]]
    assert transfer.list_transfers(sale["eve"], now=start + 7 * DAY + 1) == []
    with pytest.raises(NotFound, match="expired"):
        transfer.accept(sale["eve"], "eve@example.com", made["id"], now=start + 7 * DAY + 1)
    assert grants.get_offer(DEVICE) is not None  # moto's TTL never deletes it: the read enforces expiry
    # An expired offer does not block a new one.
    renewed = transfer.offer(
        sale["olivia"], "olivia@example.com", DEVICE, "mallory@example.com", now=start + 8 * DAY
    )
    assert renewed["id"] != made["id"]
    assert devices.get(DEVICE, consistent=True).owner_id == sale["olivia"]


def _race(*actions):
    """Run the actions at once, each in its own thread, through the logic (the resolver of the owner API
    is a per-container singleton, as Lambda runs one request per container at a time); each result is
    (HTTP status, value)."""
    barrier = threading.Barrier(len(actions))
    results: list = [None] * len(actions)

    def run(i, fn):
        barrier.wait()
        try:
            value = fn()
            results[i] = (200 if value is not None else 204, value)
        except LatchkeyError as error:
            results[i] = (error.status, error.body())

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(actions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def _consistent(aws, sale):
    """Exactly one of: Eve owns it (fresh ownership, no certificate, no grants) or Olivia's outcome."""
    stored = devices.get(DEVICE, consistent=True)
    problems = [p for p in invariants.check() if p.subject.startswith(DEVICE) or p.kind == "grant-stale"]
    assert problems == []
    listed = {c["certificateId"]: c["status"] for c in aws.iot.list_certificates()["certificates"]}
    if stored is not None and stored.owner_id == sale["eve"]:
        assert stored.state == "claimed" and stored.certificate_id is None
        assert sale["certificateId"] not in listed
        assert grants.for_device(DEVICE) == []
        return "eve"
    assert grants.get_offer(DEVICE) is None
    return "olivia"


def _accept(sale, transfer_id):
    return lambda: transfer.accept(sale["eve"], "eve@example.com", transfer_id, "198.51.100.20")


@pytest.mark.parametrize("rival", ["revoke", "release", "delete"])
def test_accept_racing_the_owner(aws, sale, rival):
    _, made = offer(sale)
    olivia = sale["olivia"]
    owner_action = {
        "revoke": lambda: owner.revoke(olivia, DEVICE, None),
        "release": lambda: owner.release(olivia, DEVICE, None),
        "delete": lambda: owner.delete(olivia, DEVICE, None),
    }[rival]
    accepted, owners = _race(_accept(sale, made["id"]), owner_action)
    winner = _consistent(aws, sale)
    if winner == "eve":
        assert accepted[0] == 200 and owners[0] == 404  # the owner's action came too late
    else:
        assert accepted[0] in (404, 409) and owners[0] in (200, 204), (accepted, owners)
        stored = devices.get(DEVICE, consistent=True)
        expected = {"revoke": "revoked", "release": "unclaimed", "delete": None}[rival]
        assert (stored.state if stored else None) == expected
        if rival == "revoke":
            assert listed_status(aws, sale["certificateId"]) == "REVOKED"


def listed_status(aws, certificate_id):
    return {c["certificateId"]: c["status"] for c in aws.iot.list_certificates()["certificates"]}.get(
        certificate_id
    )


def test_two_accepts_make_one_transfer(aws, sale):
    _, made = offer(sale)
    first, second = _race(_accept(sale, made["id"]), _accept(sale, made["id"]))
    assert first[0] == second[0] == 200
    assert first[1].device_id == second[1].device_id == DEVICE
    assert first[1].ownership == second[1].ownership
    assert _consistent(aws, sale) == "eve"
    assert aws.audit_actions(DEVICE).count("device.transferred") == 1


def test_accept_racing_a_cancel_has_one_outcome(aws, sale):
    _, made = offer(sale)
    cancel = lambda: transfer.decline(sale["olivia"], made["id"])  # noqa: E731
    accepted, cancelled = _race(_accept(sale, made["id"]), cancel)
    winner = _consistent(aws, sale)
    if winner == "eve":
        assert accepted[0] == 200 and cancelled[0] in (404, 409), (accepted, cancelled)
    else:
        assert (cancelled[0], accepted[0]) == (204, 404), (cancelled, accepted)
        stored = devices.get(DEVICE, consistent=True)
        assert stored.state == "active" and listed_status(aws, sale["certificateId"]) == "ACTIVE"
