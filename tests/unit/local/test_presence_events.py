"""The local lifecycle events: IoT Core's keep-alive range and versionNumber, without a broker."""

from __future__ import annotations

import pytest

from local.broker import ClientEvent
from local.mqtt_front import effective_keepalive
from local.presence_bridge import PresenceBridge


@pytest.mark.parametrize(
    ("asked", "enforced"), [(0, 1200), (1, 30), (29, 30), (30, 30), (40, 40), (1200, 1200), (3600, 1200)]
)
def test_keepalive_is_clamped_to_iot_cores_range(asked, enforced):
    assert effective_keepalive(asked) == enforced


class _Broker:
    host, port = "127.0.0.1", 0


def _events(bridge: PresenceBridge) -> list[dict]:
    out = []
    while not bridge._queue.empty():
        out.append(bridge._queue.get_nowait())
    return out


def test_each_connection_gets_a_higher_version_shared_by_its_disconnect():
    bridge = PresenceBridge(_Broker())  # type: ignore[arg-type]
    dev = "lk-0123456789abcdef"
    for kind, reason, at in (
        ("connected", "", 100.0),
        ("disconnected", "MQTT_KEEP_ALIVE_TIMEOUT", 160.0),
        ("connected", "", 50.0),  # a clock that went backwards still gives a higher version
        ("disconnected", "CLIENT_INITIATED_DISCONNECT", 51.0),
    ):
        bridge._on_client_event(ClientEvent(kind, dev, dev, "127.0.0.1", reason, timestamp=at))

    first, first_gone, second, second_gone = _events(bridge)
    assert first["versionNumber"] == first_gone["versionNumber"] == 100_000
    assert second["versionNumber"] == second_gone["versionNumber"] > first["versionNumber"]
    assert (
        first_gone["disconnectReason"] == "MQTT_KEEP_ALIVE_TIMEOUT"
        and not first_gone["clientInitiatedDisconnect"]
    )
    assert second_gone["clientInitiatedDisconnect"] is True
    assert first["sessionIdentifier"] == first_gone["sessionIdentifier"] != second["sessionIdentifier"]
    assert {e["topic"] for e in (first, second)} == {f"$aws/events/presence/connected/{dev}"}
