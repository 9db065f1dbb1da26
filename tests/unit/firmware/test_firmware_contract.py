"""The agent's side of the contract, checked against the service's own parsers (not a copy of them)."""

import random

from firmware.agent import Agent, State
from firmware.clock import VirtualClock
from firmware.config import AgentConfig
from lambdas.logic import poll, presence, signature
from tests.unit.firmware.firmware_fakes import (
    DEVICE_ID,
    SYSTEM_INFO,
    FakeTransport,
    StubApi,
    provisioned,
    write_identity,
)


def test_poll_and_ack_requests_pass_the_services_signature_check_and_validation(tmp_path):
    api = StubApi()
    api.reply("/v1/device/poll", 200, provisioned())
    identity_file, key = write_identity(tmp_path)
    clock = VirtualClock()
    agent = Agent(
        AgentConfig(api_url=api.url, identity_file=identity_file, state_dir=tmp_path / "state"),
        clock=clock,
        rng=random.Random(1),
        transport=FakeTransport(),
        system_info=lambda: dict(SYSTEM_INFO),
    )
    try:
        agent.step()
        agent.step()
    finally:
        api.close()

    for request in api.requests:
        headers = signature.parse_headers(
            request.headers["x-device-id"],
            request.headers["x-timestamp"],
            request.headers["x-signature"],
            clock.time(),
        )
        signature.check(headers, key.public_pem().decode(), "POST", request.path, request.body)
    body = poll.validate(api.requests[0].json)
    assert body["agent"] == SYSTEM_INFO and body["csr"]


def test_status_messages_are_understood_by_presence_and_a_stop_sends_no_offline(tmp_path):
    api = StubApi()
    api.reply("/v1/device/poll", 200, provisioned())
    transport = FakeTransport()
    identity_file, _key = write_identity(tmp_path)
    try:
        agent = Agent(
            AgentConfig(api_url=api.url, identity_file=identity_file, state_dir=tmp_path / "state"),
            clock=VirtualClock(),
            rng=random.Random(1),
            transport=transport,
            system_info=lambda: dict(SYSTEM_INFO),
        )
        for _ in range(3):
            agent.step()
        assert agent.state is State.ONLINE
        agent.stop()
        agent.run()
    finally:
        api.close()

    # One status (the facts, on connecting); the clean disconnect's lifecycle event says offline
    (online,) = (dict(message, topic=t) for t, message in transport.published if t.endswith("/status"))
    seen_online = presence.parse(online)
    assert seen_online is not None and seen_online.status == "online" and seen_online.thing == DEVICE_ID
    assert seen_online.agent == {k: SYSTEM_INFO[k] for k in ("version", "board", "mac", "ip")}
    assert transport.connects[0].will_topic is None and not transport.connected


def test_the_heartbeat_and_the_keepalive_fit_the_services_presence_windows():
    from firmware import config
    from lambdas.domain import device

    # The agent's heartbeat is the one the service's online/away windows assume, and each confirms
    assert config.HEARTBEAT_INTERVAL == device.HEARTBEAT_SECONDS
    assert presence.CONFIRM_INTERVAL_MS < config.HEARTBEAT_INTERVAL * 1000
    assert device.ONLINE_SECONDS > 2 * config.HEARTBEAT_INTERVAL
    # A dropped connection is noticed after 1.5 x keep-alive, with room left in the page's 90 s
    assert config.MQTT_KEEPALIVE >= 30 and 1.5 * config.MQTT_KEEPALIVE <= 60
    # The counted rates follow from the intervals
    assert config.PRESENCE_PER_IDLE_DAY.messages == 86400 / config.HEARTBEAT_INTERVAL
    assert config.PRESENCE_PER_IDLE_DAY.shadow_operations == 0
