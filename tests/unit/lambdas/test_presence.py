"""Presence from status messages and IoT lifecycle events; online/away/offline at read time."""

from __future__ import annotations

import json
import time

import pytest

from lambdas.domain.device import AWAY_SECONDS, HEARTBEAT_SECONDS, ONLINE_SECONDS, Device
from lambdas.handlers.presence import handler
from lambdas.logic import presence

DEVICE = "lk-presence0000aaaa"
T0 = 1_700_000_000_000  # ms


def status_event(thing=DEVICE, received_at=T0, **payload):
    body = {
        "status": "online",
        "version": "1.4.0",
        "board": "esp32",
        "ip": "10.0.0.7",
        "mac": "aa:bb:cc:dd:ee:01",
    }
    body.update(payload)
    event = {**body, "thingName": thing, "topic": f"latchkey/things/{thing}/status"}
    if received_at is not None:
        event["receivedAt"] = received_at
    return event


def lifecycle_event(kind, thing=DEVICE, timestamp=T0, **extra):
    event = {
        "clientId": thing,
        "timestamp": timestamp,
        "eventType": kind,
        "sessionIdentifier": "s-1",
        "principalIdentifier": "cert",
        "versionNumber": 0,
        "thingName": thing,
        "topic": f"$aws/events/presence/{kind}/{thing}",
        **extra,
    }
    if kind == "connected":
        event.setdefault("ipAddress", "203.0.113.8")
    else:
        event.setdefault("disconnectReason", "CLIENT_INITIATED_DISCONNECT")
    return event


def status_of(item, now):
    return Device.from_item(item).presence_status(now)


@pytest.fixture
def device(aws):
    aws.put_device(DEVICE, state="active", ownerId="owner-1", agent={"version": "1.0", "extra": "kept"})
    return aws


def count_writes(aws):
    writes: list[str] = []
    aws.ddb.meta.events.register(
        "before-call.dynamodb.UpdateItem", lambda model, **_: writes.append(model.name)
    )
    return writes


# --- online / away / offline -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age_s", "expected"),
    [
        (0, "online"),
        (ONLINE_SECONDS - 1, "online"),
        (ONLINE_SECONDS, "away"),
        (AWAY_SECONDS - 1, "away"),
        (AWAY_SECONDS, "offline"),
    ],
)
def test_compute_from_last_seen(age_s, expected):
    item = {"deviceId": DEVICE, "state": "active", "presence": {"status": "online", "lastSeen": "x"}}
    assert status_of({**item, "lastSeenAt": T0}, now=T0 / 1000 + age_s) == (expected, "x")


def test_offline_at_once_after_an_explicit_offline():
    item = {"deviceId": DEVICE, "state": "active", "presence": {"status": "offline", "lastSeen": "x"}}
    assert status_of({**item, "lastSeenAt": T0}, now=T0 / 1000 + 1)[0] == "offline"


def test_never_seen_is_offline():
    assert status_of({"deviceId": DEVICE, "state": "active"}, now=T0 / 1000) == ("offline", None)


@pytest.mark.parametrize("state", ["unclaimed", "claimed", "revoked"])
def test_a_device_that_cannot_connect_is_never_online(state):
    """Revoked (or released: unclaimed) devices keep their last presence, but never show it as online."""
    item = {"deviceId": DEVICE, "state": state, "presence": {"status": "online", "lastSeen": "x"}}
    assert status_of({**item, "lastSeenAt": T0}, now=T0 / 1000 + 1) == ("offline", "x")


# --- status messages --------------------------------------------------------------------------------------


def test_status_message_updates_presence_and_agent(device):
    assert handler(status_event(), None)["result"] == "updated"
    item = device.device(DEVICE)
    assert item["presence"] == {"status": "online", "lastSeen": "2023-11-14T22:13:20Z", "ip": "10.0.0.7"}
    assert item["lastSeenAt"] == T0
    assert item["agent"] == {
        "version": "1.4.0",
        "board": "esp32",
        "ip": "10.0.0.7",
        "mac": "aa:bb:cc:dd:ee:01",
        "extra": "kept",
    }


def test_the_owner_sees_it_online_then_away(device):
    now_ms = int(time.time() * 1000)
    handler(status_event(received_at=now_ms), None)
    view = Device.from_item(device.device(DEVICE)).owner_view(now_ms / 1000 + 5)
    assert (view["presence"], view["ip"], view["agentVersion"]) == ("online", "10.0.0.7", "1.4.0")
    assert view["lastSeen"].endswith("Z")
    # A connected device stays online between heartbeats; two missed ones make it "away"
    later = Device.from_item(device.device(DEVICE))
    assert later.owner_view(now_ms / 1000 + HEARTBEAT_SECONDS + 60)["presence"] == "online"
    assert later.owner_view(now_ms / 1000 + 2 * HEARTBEAT_SECONDS + 900)["presence"] == "away"


def test_explicit_offline_status(device):
    handler(status_event(), None)
    handler(status_event(received_at=T0 + 1000, status="offline"), None)
    item = device.device(DEVICE)
    assert status_of(item, now=T0 / 1000 + 2)[0] == "offline"


def test_older_message_is_not_written(device):
    handler(status_event(received_at=T0 + 60_000), None)
    writes = count_writes(device)
    assert handler(status_event(received_at=T0, status="offline"), None)["result"] == "stale"
    assert writes == []
    assert device.device(DEVICE)["presence"]["status"] == "online"


def test_unchanged_heartbeats_are_written_at_most_every_interval(device):
    handler(status_event(), None)
    writes = count_writes(device)
    assert handler(status_event(received_at=T0 + 30_000), None)["result"] == "unchanged"
    assert handler(status_event(received_at=T0 + presence.CONFIRM_INTERVAL_MS - 1), None)["result"] == (
        "unchanged"
    )
    assert writes == []
    assert handler(status_event(received_at=T0 + presence.CONFIRM_INTERVAL_MS), None)["result"] == "updated"
    assert (
        handler(status_event(received_at=T0 + presence.CONFIRM_INTERVAL_MS + 50, ip="10.0.0.8"), None)[
            "result"
        ]
        == "updated"
    )  # changed


def test_topic_names_the_thing_not_the_payload(device, aws):
    aws.put_device("lk-victim000000000", state="active", ownerId="owner-2")
    event = status_event()
    event["thingName"] = "lk-victim000000000"  # a device cannot speak for another one
    handler(event, None)
    assert "presence" in aws.device(DEVICE) and "presence" not in aws.device("lk-victim000000000")


def test_without_receive_time_the_handling_time_is_used(device):
    before = int(time.time() * 1000)
    handler(status_event(received_at=None), None)
    assert device.device(DEVICE)["lastSeenAt"] >= before


def test_future_timestamps_are_clamped(device):
    handler(status_event(received_at=int(time.time() * 1000) + 10**9), None)
    assert device.device(DEVICE)["lastSeenAt"] <= int(time.time() * 1000) + presence.MAX_FUTURE_MS


def test_bad_fields_are_dropped(device):
    handler(status_event(ip="not-an-ip", version="v" * 200, mac="zz", board="esp\x0032"), None)
    item = device.device(DEVICE)
    assert item["presence"]["ip"] is None
    assert item["agent"] == {"version": "1.0", "extra": "kept"}


@pytest.mark.parametrize(
    "event",
    [
        {"status": "sleeping", "topic": f"latchkey/things/{DEVICE}/status"},
        {"status": "online", "topic": "latchkey/things/bad thing!/status"},
        {"eventType": "subscribed", "clientId": DEVICE, "timestamp": T0},
        "not a dict",
        {**status_event(), "junk": "x" * 5000},
    ],
)
def test_invalid_events_are_ignored(device, event):
    assert handler(event, None)["result"] in ("ignored", "rejected")
    assert "presence" not in device.device(DEVICE)


def test_unknown_thing_is_ignored(aws):
    assert handler(status_event(thing="lk-unknown00000000"), None)["result"] == "unknown"
    assert aws.device("lk-unknown00000000") is None


def test_devices_without_a_certificate_are_ignored(aws):
    aws.put_device(DEVICE)  # unclaimed
    assert handler(status_event(), None)["result"] == "ignored"
    assert "presence" not in aws.device(DEVICE)


# --- lifecycle events --------------------------------------------------------------------------------------


def test_connect_then_disconnect(device):
    assert handler(lifecycle_event("connected"), None)["result"] == "updated"
    item = device.device(DEVICE)
    assert item["presence"]["status"] == "online" and item["presence"]["ip"] == "203.0.113.8"
    assert status_of(item, now=T0 / 1000 + 1)[0] == "online"
    handler(lifecycle_event("disconnected", timestamp=T0 + 5000), None)
    item = device.device(DEVICE)
    assert status_of(item, now=T0 / 1000 + 6)[0] == "offline"
    assert item["presence"]["ip"] == "203.0.113.8"  # the last known address stays


def test_late_disconnect_of_an_old_session_does_not_win(device):
    handler(lifecycle_event("connected", timestamp=T0 + 10_000, versionNumber=2), None)
    writes = count_writes(device)
    assert handler(lifecycle_event("disconnected", timestamp=T0, versionNumber=1), None)["result"] == "stale"
    assert device.device(DEVICE)["presence"]["status"] == "online" and writes == []


def test_late_disconnect_does_not_win_even_with_a_later_timestamp(device):
    """Timestamps are +/- 2 minutes: the version orders, not the clock."""
    handler(lifecycle_event("connected", timestamp=T0, versionNumber=7), None)
    old = lifecycle_event("disconnected", timestamp=T0 + 60_000, versionNumber=6)
    assert handler(old, None)["result"] == "stale"
    assert device.device(DEVICE)["presence"]["status"] == "online"


def test_a_connect_delivered_after_its_own_disconnect_does_not_win(device):
    handler(lifecycle_event("disconnected", timestamp=T0 + 1000, versionNumber=3), None)
    assert handler(lifecycle_event("connected", timestamp=T0, versionNumber=3), None)["result"] == "stale"
    item = device.device(DEVICE)
    assert item["presence"]["status"] == "offline" and status_of(item, now=T0 / 1000 + 2)[0] == "offline"


def test_a_newer_disconnect_wins_over_an_inaccurate_clock(device):
    handler(lifecycle_event("connected", timestamp=T0 + 90_000, versionNumber=4), None)
    assert (
        handler(lifecycle_event("disconnected", timestamp=T0, versionNumber=4), None)["result"] == "updated"
    )
    item = device.device(DEVICE)
    assert (
        item["presence"]["status"] == "offline"
        and item["presence"]["reason"] == "CLIENT_INITIATED_DISCONNECT"
    )
    assert item["lastSeenAt"] == T0 + 90_000  # last seen never goes backwards


def test_a_first_versioned_disconnect_over_frequent_status_messages_is_believed(device):
    """An older agent's 30 s status messages and IoT's approximate disconnect time must not keep it online."""
    handler(status_event(received_at=T0 + 30_000), None)
    assert (
        handler(lifecycle_event("disconnected", timestamp=T0, versionNumber=5), None)["result"] == "updated"
    )
    assert device.device(DEVICE)["presence"]["status"] == "offline"


def test_duplicate_lifecycle_events_write_nothing(device):
    handler(lifecycle_event("connected", versionNumber=9), None)
    writes = count_writes(device)
    assert handler(lifecycle_event("connected", versionNumber=9), None)["result"] == "unchanged"
    handler(lifecycle_event("disconnected", timestamp=T0 + 5, versionNumber=9), None)
    assert handler(lifecycle_event("disconnected", timestamp=T0 + 5, versionNumber=9), None)["result"] == (
        "unchanged"
    )
    assert len(writes) == 1


def test_a_status_message_from_before_a_disconnect_does_not_resurrect(device):
    handler(lifecycle_event("connected", versionNumber=1), None)
    handler(lifecycle_event("disconnected", timestamp=T0 + 60_000, versionNumber=1), None)
    late = status_event(received_at=T0 + 60_000 + presence.LIFECYCLE_SKEW_MS)
    assert handler(late, None)["result"] == "stale"
    assert device.device(DEVICE)["presence"]["status"] == "offline"
    # but one received well after it is proof of life (a lost connected event)
    alive = status_event(received_at=T0 + 60_000 + presence.LIFECYCLE_SKEW_MS + 1)
    assert handler(alive, None)["result"] == "updated"
    item = device.device(DEVICE)
    assert item["presence"]["status"] == "online" and item["presence"]["version"] == 1
    # and the next connection's events still order after it
    assert (
        handler(lifecycle_event("disconnected", timestamp=T0, versionNumber=1), None)["result"] == "updated"
    )
    assert device.device(DEVICE)["presence"]["status"] == "offline"


def test_a_heartbeat_of_a_connected_device_writes_nothing_new(device):
    handler(lifecycle_event("connected", versionNumber=1), None)
    handler(status_event(received_at=T0 + 1000), None)  # the facts, once
    writes = count_writes(device)
    assert handler(status_event(received_at=T0 + 2000), None)["result"] == "unchanged"
    assert writes == []


def test_duplicate_client_id_disconnect_is_ignored(device):
    handler(lifecycle_event("connected"), None)
    event = lifecycle_event("disconnected", timestamp=T0 + 1000, disconnectReason="DUPLICATE_CLIENTID")
    assert handler(event, None)["result"] == "ignored"
    assert device.device(DEVICE)["presence"]["status"] == "online"


def test_handler_result_is_json(device):
    json.dumps(handler(status_event(), None))
