"""Relays through the device shadow, end to end: the owner's change reaches the real agent over
mosquitto on IoT Core's shadow topics, is applied and reported back; a change made while the agent is
stopped is applied when it returns; settings that don't match the device get 400."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from local.testing import wait_until
from tests.integration.test_claim_e2e import _claim_until_online


def _state(owner: Any, device_id: str) -> dict[str, Any]:
    status, body = owner.request("GET", f"/v1/devices/{device_id}/state")
    assert status == 200, body
    return body


def test_relay_toggle_reaches_the_agent_and_survives_a_restart(
    cloud: Any, owner: Any, make_owner: Any, start_agent: Any, tmp_path: Path
) -> None:
    minted, _ = _claim_until_online(cloud, owner, start_agent, tmp_path)
    device_id = minted.device_id
    wait_until(lambda: _state(owner, device_id)["reported"].get("capabilities"), timeout=20, interval=0.3)
    caps = _state(owner, device_id)["reported"]["capabilities"]
    assert set(caps["relays"]) == {"r1", "r2"} and caps["sensors"]["t1"]["unit"] == "°C"

    # When the owner switches r1 on, the agent applies it and reports it
    status, body = owner.request("PATCH", f"/v1/devices/{device_id}/state", {"relays": {"r1": True}})
    assert status == 200, body
    assert body["desired"]["relays"]["r1"] is True
    confirmed = wait_until(
        lambda: (s := _state(owner, device_id))["reported"]["relays"]["r1"] is True and not s["delta"] and s,
        timeout=20,
        interval=0.3,
    )
    assert confirmed["staleSeconds"] is not None

    # Settings that don't match the device's capabilities: 400 with a clear message
    status, body = owner.request("PATCH", f"/v1/devices/{device_id}/state", {"relays": {"r9": True}})
    assert status == 400 and "r9" in body["message"]
    status, body = owner.request(
        "PATCH", f"/v1/devices/{device_id}/state", {"relayLogic": {"r1": "sideways"}}
    )
    assert status == 400 and body["error"] == "validation_error"

    # Another owner: 404, never the state
    stranger = make_owner()
    assert stranger.request("GET", f"/v1/devices/{device_id}/state")[0] == 404
    assert stranger.request("PATCH", f"/v1/devices/{device_id}/state", {"relays": {"r1": False}})[0] == 404

    # A change made while the agent is stopped is applied when it returns
    agent = start_agent.started[-1][0]
    agent.send_signal(signal.SIGTERM)
    agent.wait(timeout=15)
    status, _ = owner.request(
        "PATCH", f"/v1/devices/{device_id}/state", {"relays": {"r2": True}, "relayNames": {"r2": "Pump"}}
    )
    assert status == 200
    assert _state(owner, device_id)["delta"]["relays"] == {"r2": True}
    start_agent.run(tmp_path / device_id / "agent.toml")
    state = wait_until(
        lambda: (s := _state(owner, device_id))["reported"]["relays"]["r2"] is True and s,
        timeout=30,
        interval=0.3,
    )
    assert state["reported"]["capabilities"]["relays"]["r2"]["name"] == "Pump"
    assert state["reported"]["relays"]["r1"] is True  # kept across the restart
