"""The agent survives its environment: the service down for an hour (the real agent state machine on a
virtual clock, with a fake HTTP layer), and the broker restarting under it (real mosquitto, real agent)."""

from __future__ import annotations

import itertools
import json
import random
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from firmware.agent import Agent, State
from firmware.api import NetworkError, Response
from firmware.clock import VirtualClock
from firmware.config import AgentConfig
from firmware.schedule import DEFAULT_CAP, DEFAULT_JITTER, attempts_to_cap
from local.testing import MqttClient, provision_thing, wait_until
from tests.integration.test_claim_e2e import _claim_until_online
from tests.unit.firmware.firmware_fakes import SYSTEM_INFO, FakeTransport, provisioned, write_identity

HOUR = 3600.0
HTTP_TIMEOUT = 10.0


class Outage:
    """The device API as seen from the device, on the virtual clock: down in [start, end), else up.

    `mode` says what "down" looks like: "refused" (no answer), "timeout" (no answer after the whole
    HTTP timeout), "502" (a load balancer's HTML error page, no JSON).
    """

    def __init__(self, clock: VirtualClock, start: float, end: float, mode: str, answered: int = 0) -> None:
        self.clock, self.start, self.end, self.mode = clock, start, end, mode
        self.answered = answered  # requests answered before the outage begins, whatever the time
        self.requests: list[tuple[float, str, bool]] = []  # (when, path, answered)

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Response:
        now = self.clock.monotonic()
        path = url.split("://", 1)[1].split("/", 1)[1]
        down = self.start <= now < self.end and len(self.requests) >= self.answered
        self.requests.append((now, "/" + path, not down))
        if down:
            if self.mode == "refused":
                raise NetworkError(f"{url}: [Errno 111] Connection refused")
            if self.mode == "timeout":
                self.clock.advance(timeout)
                raise NetworkError(f"{url}: timed out")
            return Response(502, None, {"content-type": "text/html"})
        if path.endswith("device/poll"):
            return Response(200, provisioned(), {})
        return Response(204, None, {})

    def polls(self) -> list[float]:
        return [when for when, path, _ in self.requests if path.endswith("/poll")]


def _agent(tmp_path: Path, clock: VirtualClock, http: Outage, transport: FakeTransport) -> Agent:
    identity_file, _ = write_identity(tmp_path)
    config = AgentConfig(
        api_url="https://api.latchkey.invalid",
        identity_file=identity_file,
        state_dir=tmp_path / "state",
        http_timeout=HTTP_TIMEOUT,
    )
    return Agent(
        config,
        clock=clock,
        rng=random.Random(11),
        http=http,
        transport=transport,
        system_info=lambda: dict(SYSTEM_INFO),
    )


def _files(tmp_path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(tmp_path)): p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}


def _run_until(agent: Agent, clock: VirtualClock, until: float, stop: Any = None) -> list[float]:
    """Step like run() does until the virtual clock reaches `until` (or `stop()`); the waits chosen."""
    waits: list[float] = []
    for _ in range(10_000):
        if clock.monotonic() >= until:
            return waits
        wait = agent.step()
        if stop and stop():
            return waits
        waits.append(wait)
        clock.advance(wait)
    raise AssertionError("the agent never let the clock move")


@pytest.mark.parametrize("mode", ["refused", "timeout", "502"])
def test_agent_polls_on_the_capped_schedule_through_an_hour_of_outage_then_is_provisioned(
    tmp_path: Path, mode: str
) -> None:
    clock = VirtualClock()
    http = Outage(clock, 0.0, HOUR, mode)
    transport = FakeTransport()
    agent = _agent(tmp_path, clock, http, transport)
    before = _files(tmp_path)

    # When: the service is down for an hour from power-on
    waits = _run_until(agent, clock, HOUR)

    # Then: it kept polling, on the schedule, never faster and never slower than the cap allows
    polls = [t for t in http.polls() if t < HOUR]
    gaps = [b - a for a, b in itertools.pairwise(polls)]
    extra = HTTP_TIMEOUT if mode == "timeout" else 0.0  # a timed-out request takes its time too
    settled = attempts_to_cap()
    assert all(w <= DEFAULT_CAP for w in waits), max(waits)
    assert all(g <= DEFAULT_CAP + extra + 1e-6 for g in gaps), max(gaps)
    assert all(g >= (1 - DEFAULT_JITTER) * DEFAULT_CAP + extra - 1e-6 for g in gaps[settled:]), gaps[settled:]
    assert gaps[0] >= (1 - DEFAULT_JITTER) * 5.0  # the first backoff step, not a tight loop
    assert (
        HOUR / (DEFAULT_CAP + extra)
        <= len(polls)
        <= HOUR / ((1 - DEFAULT_JITTER) * DEFAULT_CAP + extra) + settled
    )
    # ... and kept its state: same identity, nothing written, nothing wiped
    assert agent.state is State.POLL and agent.credentials is None
    assert _files(tmp_path) == before

    # When the service is back (at HOUR, in the middle of a wait), the next poll provisions it:
    # certificate saved, acknowledged, online - within one capped wait
    _run_until(agent, clock, HOUR + 2 * DEFAULT_CAP, stop=lambda: agent.state is State.ONLINE)
    assert agent.state is State.ONLINE, (agent.state, http.requests[-3:])
    assert clock.monotonic() - HOUR <= DEFAULT_CAP + extra
    saved = json.loads((tmp_path / "state" / "credentials.json").read_text())
    assert saved["certificate_id"] == "cert-1"
    print(
        f"\noutage ({mode}): {len(polls)} polls in the hour, gaps {min(gaps[settled:] or gaps):.0f}-{max(gaps):.0f} s "
        f"at the cap ({DEFAULT_CAP:.0f} s); online {clock.monotonic() - HOUR:.0f} s after the service came back"
    )


def test_agent_keeps_undelivered_credentials_through_an_outage_and_acks_after(tmp_path: Path) -> None:
    clock = VirtualClock()
    http = Outage(clock, 0.0, HOUR, "refused", answered=1)  # down right after delivering the certificate
    transport = FakeTransport()
    agent = _agent(tmp_path, clock, http, transport)
    agent.step()  # the first poll gets the certificate
    assert agent.state is State.ACK
    saved = (tmp_path / "state" / "credentials.json").read_bytes()

    waits = _run_until(agent, clock, HOUR)
    assert agent.state is State.ACK and all(w <= DEFAULT_CAP for w in waits)
    assert (tmp_path / "state" / "credentials.json").read_bytes() == saved  # intact, not wiped
    assert not transport.connects  # never used an unacknowledged certificate

    _run_until(agent, clock, clock.monotonic() + 2 * DEFAULT_CAP, stop=lambda: agent.state is State.ONLINE)
    assert agent.state is State.ONLINE
    assert json.loads((tmp_path / "state" / "credentials.json").read_text())["certificate_id"] == "cert-1"


# --- the broker restarting (real mosquitto, real agent) -------------------------------------------------


def test_agent_reconnects_after_the_broker_restarts_and_revocation_survives(
    cloud: Any, owner: Any, start_agent: Any, tmp_path: Path
) -> None:
    minted, _ = _claim_until_online(cloud, owner, start_agent, tmp_path)
    # A revoked certificate, to see that the restarted broker still refuses it
    revoked_thing = provision_thing(cloud, "lk-revoked" + uuid.uuid4().hex[:8])
    cloud.aws("iot").update_certificate(certificateId=revoked_thing.certificate_id, newStatus="REVOKED")
    revoked = revoked_thing.cert

    cloud.broker.restart()

    # The real agent connects again by itself and publishes its status
    assert cloud.broker.wait_connected(minted.device_id, timeout=60)
    listener = MqttClient(
        cloud.mqtt_host,
        cloud.mqtt_port,
        ca_file=cloud.ca_file,
        cert=cloud.broker.service,
        client_id="restart-sub",
    )
    stranger = MqttClient(
        cloud.mqtt_host, cloud.mqtt_port, ca_file=cloud.ca_file, cert=revoked, client_id=revoked_thing.thing
    )
    try:
        assert listener.connect()
        assert listener.subscribe(f"latchkey/things/{minted.device_id}/status")
        message = listener.wait_message(timeout=20)
        assert message is not None and message.json()["status"] == "online"
        assert not stranger.connect(timeout=3), "the restarted broker let a revoked certificate in"
    finally:
        listener.close()
        stranger.close()
    assert start_agent.started[-1][0].poll() is None
    assert wait_until(
        lambda: owner.request("GET", f"/v1/devices/{minted.device_id}")[1]["presence"] == "online", timeout=30
    )
