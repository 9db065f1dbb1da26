"""The agent survives its environment: the broker restarting under it (real mosquitto, real agent),
and the service being down for an hour (virtual clock)."""

from __future__ import annotations

import random
import socket
from pathlib import Path
from typing import Any

from firmware.agent import Agent, State
from firmware.clock import VirtualClock
from firmware.config import AgentConfig
from firmware.schedule import DEFAULT_CAP
from local.testing import MqttClient, wait_until
from tests.integration.test_claim_e2e import _claim_until_online
from tests.unit.firmware.firmware_fakes import (
    SYSTEM_INFO,
    FakeTransport,
    StubApi,
    provisioned,
    write_identity,
)


def test_agent_reconnects_after_the_broker_restarts(
    cloud: Any, owner: Any, start_agent: Any, tmp_path: Path
) -> None:
    minted, _ = _claim_until_online(cloud, owner, start_agent, tmp_path)
    listener = MqttClient(
        cloud.mqtt_host,
        cloud.mqtt_port,
        ca_file=cloud.ca_file,
        cert=cloud.broker.service,
        client_id="resilience-sub",
    )
    # When: the broker restarts
    cloud.broker.restart()
    # Then: the real agent connects again by itself and publishes its status
    assert cloud.broker.wait_connected(minted.device_id, timeout=60)
    try:
        assert listener.connect()
        assert listener.subscribe(f"latchkey/things/{minted.device_id}/status")
        assert listener.wait_message(timeout=20) is not None
    finally:
        listener.close()
    assert start_agent.started[-1][0].poll() is None
    assert wait_until(
        lambda: owner.request("GET", f"/v1/devices/{minted.device_id}")[1]["presence"] == "online", timeout=30
    )


POLL = "/v1/device/poll"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_agent_survives_an_hour_without_the_service(tmp_path: Path) -> None:
    api = StubApi()
    try:
        identity_file, _ = write_identity(tmp_path)
        clock = VirtualClock()
        agent = Agent(
            AgentConfig(
                api_url=f"http://127.0.0.1:{_closed_port()}",
                identity_file=identity_file,
                state_dir=tmp_path / "state",
            ),
            clock=clock,
            rng=random.Random(3),
            transport=FakeTransport(),
            system_info=lambda: dict(SYSTEM_INFO),
        )
        # Given: the service is unreachable for one (virtual) hour
        waits = []
        start = clock.monotonic()
        for _ in range(1000):
            if clock.monotonic() - start >= 3600:
                break
            wait = agent.step()
            waits.append(wait)
            clock.advance(wait)
        # Then: it kept polling on its schedule, never faster than the jitter allows nor slower than the cap
        assert clock.monotonic() - start >= 3600
        assert agent.state is State.POLL and agent.identity is not None
        assert all(w <= DEFAULT_CAP for w in waits) and len(waits) < 3600 / (0.8 * DEFAULT_CAP) + 20
        # When the service is back, the next poll provisions it
        api.reply(POLL, 200, provisioned())
        agent.api.base_url = api.url
        for _ in range(10):
            if agent.state is State.ONLINE:
                break
            clock.advance(agent.step())
        assert agent.state is State.ONLINE, (agent.state, api.paths())
    finally:
        api.close()
