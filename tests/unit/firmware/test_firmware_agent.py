"""The agent's state machine against a real HTTP server on 127.0.0.1, on virtual time, with a fake MQTT transport."""

import json
import random
import socket
import stat
import threading
import time

import pytest
from cryptography import x509

from firmware.agent import CLOCK_RETRY_DELAY, IDENTITY_FILE, KEY_FILE, Agent, State
from firmware.clock import SystemClock, VirtualClock
from firmware.config import AgentConfig, ConfigError
from firmware.credentials import Credentials, CredentialStore
from firmware.exits import ExitCode, Unrecoverable
from firmware.identity import load_identity_file
from firmware.schedule import CHECK_AFTER, DEFAULT_CAP
from tests.unit.firmware.firmware_fakes import (
    DEVICE_ID,
    SYSTEM_INFO,
    FakeTransport,
    StubApi,
    drive,
    provisioned,
    write_identity,
)

POLL, ACK, REGISTER = "/v1/device/poll", "/v1/device/ack", "/v1/device/register"


@pytest.fixture
def api():
    stub = StubApi()
    yield stub
    stub.close()


@pytest.fixture
def identity(tmp_path):
    return write_identity(tmp_path)


@pytest.fixture
def make_agent(tmp_path, api, identity):
    created = []

    def make(transport=None, clock=None, system_info=None, **config):
        config.setdefault("api_url", api.url)
        if "registration_token" not in config:
            config.setdefault("identity_file", identity[0])
        config.setdefault("state_dir", tmp_path / "state")
        agent = Agent(
            AgentConfig(**config),
            clock=clock or VirtualClock(),
            rng=random.Random(1),
            transport=transport or FakeTransport(),
            system_info=system_info or (lambda: dict(SYSTEM_INFO)),
        )
        created.append(agent)
        return agent

    return make


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unclaimed_twice_then_provisioned_saves_acks_and_connects(api, make_agent, identity):
    # Given a service that answers unclaimed twice, then hands over a certificate
    api.reply(POLL, 200, {"status": "unclaimed", "retryAfter": 0})
    api.reply(POLL, 200, {"status": "unclaimed", "retryAfter": 0})
    api.reply(POLL, 200, provisioned())
    transport = FakeTransport()
    agent = make_agent(transport)
    clock = agent.clock

    # When the agent runs until it is online
    waits = drive(agent, clock, lambda: agent.state is State.ONLINE)

    # Then it polled at once, after ~5 s and ~10 s, acked, and connected with the delivered credentials
    assert api.paths() == [POLL, POLL, POLL, ACK]
    assert 4 <= waits[0] <= 6 and 8 <= waits[1] <= 12 and waits[2:] == [0.0, 0.0, 60.0]
    polls = [r.json for r in api.requests if r.path == POLL]
    assert [p["attempt"] for p in polls] == [0, 1, 2]
    assert polls[0]["agent"] == SYSTEM_INFO
    csr = x509.load_pem_x509_csr(polls[0]["csr"].encode())
    assert csr.subject.rfc4514_string() == f"CN={DEVICE_ID}"
    assert all(r.signature_valid(identity[1]) for r in api.requests)
    assert all(r.headers["x-device-id"] == DEVICE_ID for r in api.requests)
    assert api.requests[3].json == {"certificateId": "cert-1"}

    settings = transport.connects[0]
    assert (settings.client_id, settings.host, settings.port) == (DEVICE_ID, "127.0.0.1", 8883)
    # No last will: IoT's disconnect lifecycle event says it without a metered message
    assert settings.ca_pem == provisioned()["caPem"] and settings.will_topic is None
    assert settings.keepalive == 40
    shadow = f"$aws/things/{DEVICE_ID}/shadow"
    assert transport.subscribed == [
        f"latchkey/things/{DEVICE_ID}/commands",
        f"{shadow}/update/delta",
        f"{shadow}/get/accepted",
        f"{shadow}/get/rejected",
    ]
    topic, status = next((t, m) for t, m in transport.published if t.endswith("/status"))
    assert topic == f"latchkey/things/{DEVICE_ID}/status"
    # It asked for the document first, and reports once the shadow answers that there is none
    assert transport.shadow_reports() == []
    transport.deliver(f"{shadow}/get/rejected", b'{"code": 404, "message": "No shadow exists"}')
    agent.step()
    assert transport.shadow_reports()[0]["capabilities"]["relays"]["r1"] == {
        "name": "Relay 1",
        "logic": "positive",
    }
    assert (f"{shadow}/get", {}) in transport.published
    assert status["status"] == "online"
    assert {k: status[k] for k in SYSTEM_INFO} == SYSTEM_INFO

    saved = CredentialStore(agent.config.state_dir)
    assert saved.load() == Credentials.from_poll(provisioned()).with_ack()
    assert stat.S_IMODE(saved.path.stat().st_mode) == 0o600


def test_online_agent_sends_a_heartbeat_every_interval_and_nothing_else_when_idle(make_agent, api):
    api.reply(POLL, 200, provisioned())
    transport = FakeTransport()
    agent = make_agent(transport, status_interval=600)
    drive(agent, agent.clock, lambda: agent.state is State.ONLINE)
    sent = len(transport.published)

    # When it stays idle for three heartbeat intervals (looking at its own facts every minute)
    waits = drive(agent, agent.clock, lambda: len(transport.statuses()) == 4)

    # Then it sent three heartbeats and nothing else: no shadow report, no other status
    assert sum(waits) == 3 * 600 and max(waits) == 60
    assert transport.statuses() == ["online"] * 4
    assert len(transport.published) == sent + 3


def test_a_changed_fact_is_sent_at_once_an_unchanged_one_never(make_agent, api):
    api.reply(POLL, 200, provisioned())
    transport = FakeTransport()
    info = dict(SYSTEM_INFO)
    agent = make_agent(transport, system_info=lambda: dict(info, uptime=agent.clock.monotonic()))
    drive(agent, agent.clock, lambda: agent.state is State.ONLINE)
    agent.step()
    agent.step()
    assert transport.statuses() == ["online"]  # uptime moves on; that is not a change

    info["ip"] = "10.0.0.99"
    agent.step()

    assert transport.statuses() == ["online", "online"]
    assert transport.published[-1][1]["ip"] == "10.0.0.99"


def test_the_shadow_is_reported_only_when_the_document_differs(make_agent, api):
    api.reply(POLL, 200, provisioned())
    transport = FakeTransport()
    agent = make_agent(transport)
    drive(agent, agent.clock, lambda: agent.state is State.ONLINE)
    shadow = f"$aws/things/{DEVICE_ID}/shadow"
    current = agent.device.reported()

    # When the document already holds what the device is, nothing is reported
    transport.deliver(f"{shadow}/get/accepted", json.dumps({"state": {"reported": current}}).encode())
    agent.step()
    assert transport.shadow_reports() == []

    # And when it holds something else (or after a reconnect, an older report), the device reports
    transport.drop()
    agent.step()
    drive(agent, agent.clock, lambda: agent.state is State.ONLINE)
    transport.deliver(f"{shadow}/get/accepted", json.dumps({"state": {"reported": {"old": 1}}}).encode())
    agent.step()
    assert transport.shadow_reports() == [current]


def test_server_errors_and_connection_refused_keep_the_schedule_and_the_state(api, make_agent):
    # Given an API that is down (nothing listens on the port), then answers 500 and 503
    agent = make_agent(api_url=f"http://127.0.0.1:{free_port()}", backoff_cap=3600)
    waits = [agent.step() for _ in range(3)]
    agent.api.base_url = api.url
    api.reply(POLL, 500, {"error": "internal"})
    api.reply(POLL, 503, None)
    api.reply(POLL, 200, provisioned())
    waits += [agent.step(), agent.step()]

    # Then the schedule simply continued (5, 10, 20, then the fast window's 30 s, with jitter), the
    # attempt counter kept counting, and the next good answer still gets the device online
    for wait, base in zip(waits, [5, 10, 20, 30, 30], strict=True):
        assert 0.8 * base <= wait <= 1.2 * base
    assert agent.step() == 0.0
    assert [r.json["attempt"] for r in api.requests] == [3, 4, 5]
    drive(agent, agent.clock, lambda: agent.state is State.ONLINE)


def test_ack_failures_are_retried_before_connecting_and_keep_the_credentials(api, make_agent):
    api.reply(POLL, 200, provisioned())
    api.reply(ACK, 500, None)
    api.reply(ACK, 502, None)
    transport = FakeTransport()
    agent = make_agent(transport)

    drive(agent, agent.clock, lambda: agent.state is State.ONLINE)

    assert api.paths() == [POLL, ACK, ACK, ACK]
    assert len(transport.connects) == 1  # never tried MQTT with an inactive certificate
    assert agent.store.load().acked


def test_401_with_server_time_corrects_the_clock_and_retries_soon(api, make_agent):
    # Given a device whose clock is two hours slow and a service that enforces ±300 s
    server_now = time.time()
    clock = VirtualClock(start=server_now - 7200)

    def check_time(request):
        skew = abs(int(request.headers["x-timestamp"]) - server_now)
        if skew > 300:
            return 401, {"error": "bad_timestamp", "serverTime": int(server_now)}, {}
        return 200, {"status": "unclaimed", "retryAfter": 0}, {}

    api.respond_with(POLL, check_time)
    api.respond_with(POLL, check_time)
    agent = make_agent(clock=clock)

    # When it polls
    first_wait = agent.step()
    agent.step()

    # Then the first answer set its clock offset, it retried after a second, and was accepted
    assert first_wait == CLOCK_RETRY_DELAY
    assert abs(agent.clock_offset - 7200) < 5
    assert abs(int(api.requests[1].headers["x-timestamp"]) - server_now) < 300
    assert agent.backoff.attempt == 1  # the clock fix did not count as backoff growth


def test_repeated_401_backs_off_instead_of_hammering(api, make_agent):
    for _ in range(3):
        api.reply(POLL, 401, {"error": "bad_signature", "serverTime": int(time.time())})
    agent = make_agent()

    waits = [agent.step() for _ in range(3)]

    assert waits[0] == CLOCK_RETRY_DELAY
    assert 4 <= waits[1] <= 6 and 8 <= waits[2] <= 12


def test_429_retry_after_header_is_honoured(api, make_agent):
    api.reply(POLL, 429, {"error": "too_many_requests"}, {"Retry-After": "120"})
    api.reply(POLL, 200, {"status": "unclaimed", "retryAfter": 45})
    agent = make_agent()

    # A throttled answer's Retry-After is spread over [R, 2R] so that shed devices do not return together
    assert 120 <= agent.step() <= 240
    assert agent.step() == 45  # the body's retryAfter wins too


def test_revoked_device_found_after_a_refused_connect_wipes_and_stops(api, make_agent):
    api.reply(POLL, 200, provisioned())
    transport = FakeTransport()
    agent = make_agent(transport)
    drive(agent, agent.clock, lambda: agent.state is State.ONLINE)

    # When the broker refuses the (now revoked) certificate and the API says 403
    transport.drop()
    transport.refuse = 10
    api.reply(POLL, 403, {"error": "forbidden", "message": "This device has been revoked."})
    with pytest.raises(Unrecoverable) as stopped:
        drive(agent, agent.clock, lambda: False)

    # Then it asked the API after the refused connect, wiped, and stops for good: only a re-flash helps
    assert stopped.value.exit_code == ExitCode.REVOKED
    assert api.paths()[-1] == POLL
    assert agent.store.load() is None and agent.credentials is None


def test_unknown_device_asks_once_more_at_the_cap_then_stops(api, make_agent):
    api.reply(POLL, 404, {"error": "not_found"})
    api.reply(POLL, 404, {"error": "not_found"})
    agent = make_agent()

    wait = agent.step()
    with pytest.raises(Unrecoverable) as stopped:
        agent.step()

    assert 0.8 * DEFAULT_CAP <= wait <= DEFAULT_CAP
    assert stopped.value.exit_code == ExitCode.DELETED


def test_release_command_wipes_credentials_and_goes_back_to_polling(api, make_agent):
    api.reply(POLL, 200, provisioned())
    transport = FakeTransport()
    agent = make_agent(transport)
    drive(agent, agent.clock, lambda: agent.state is State.ONLINE)
    polls_before = api.paths().count(POLL)

    # When the owner releases the device
    transport.deliver(f"latchkey/things/{DEVICE_ID}/commands", json.dumps({"command": "release"}).encode())
    assert agent.step() == 0.0

    # Then the credentials are gone, MQTT is closed, and the device polls again at once, fresh schedule
    assert agent.store.load() is None and agent.credentials is None
    assert not transport.connected and transport.statuses() == ["online"]  # the disconnect says it
    assert agent.state is State.POLL
    wait = agent.step()
    assert api.paths().count(POLL) == polls_before + 1
    assert 4 <= wait <= 6


def test_unknown_commands_are_ignored(api, make_agent):
    api.reply(POLL, 200, provisioned())
    transport = FakeTransport()
    agent = make_agent(transport)
    drive(agent, agent.clock, lambda: agent.state is State.ONLINE)

    transport.deliver(f"latchkey/things/{DEVICE_ID}/commands", b'{"command":"reboot"}')
    transport.deliver(f"latchkey/things/{DEVICE_ID}/commands", b"garbage")
    agent.step()

    assert agent.state is State.ONLINE and agent.credentials is not None


def test_restart_with_saved_credentials_connects_without_polling(api, make_agent, tmp_path):
    CredentialStore(tmp_path / "state").save(Credentials.from_poll(provisioned()).with_ack())
    transport = FakeTransport()

    agent = make_agent(transport)
    agent.step()

    assert agent.state is State.ONLINE
    assert api.requests == []
    assert len(transport.connects) == 1


def test_restart_after_saving_but_before_ack_acks_first(api, make_agent, tmp_path):
    CredentialStore(tmp_path / "state").save(Credentials.from_poll(provisioned()))
    transport = FakeTransport()
    agent = make_agent(transport)

    drive(agent, agent.clock, lambda: agent.state is State.ONLINE)

    assert api.paths() == [ACK]


def test_lost_connection_reconnects_with_backoff(api, make_agent):
    api.reply(POLL, 200, provisioned())
    transport = FakeTransport()
    agent = make_agent(transport)
    drive(agent, agent.clock, lambda: agent.state is State.ONLINE)

    transport.drop()
    wait = agent.step()
    drive(agent, agent.clock, lambda: agent.state is State.ONLINE)

    assert 1 <= wait <= 2  # the MQTT reconnect backoff's first wait: [initial/2, initial]
    assert len(transport.connects) == 2
    assert transport.statuses() == ["online"]  # same facts: the lifecycle events say the rest


def test_released_while_offline_wipes_when_the_api_says_unclaimed(api, make_agent, tmp_path):
    CredentialStore(tmp_path / "state").save(Credentials.from_poll(provisioned()).with_ack())
    transport = FakeTransport(refuse=CHECK_AFTER)
    agent = make_agent(transport)

    for _ in range(CHECK_AFTER):
        agent.step()  # connect refused: retried on MQTT, the CHECK_AFTER-th time checked with the service
    agent.step()  # poll: unclaimed

    assert api.paths() == [POLL]
    assert agent.credentials is None and agent.store.load() is None


def test_run_stops_with_a_clean_disconnect_and_no_offline_message(api, make_agent):
    api.reply(POLL, 200, provisioned())
    transport = FakeTransport()
    agent = make_agent(transport, clock=SystemClock(), status_interval=60)
    thread = threading.Thread(target=agent.run)
    thread.start()
    deadline = time.monotonic() + 5
    while agent.state is not State.ONLINE and time.monotonic() < deadline:
        time.sleep(0.01)

    agent.stop()
    thread.join(timeout=5)

    assert not thread.is_alive()
    assert transport.statuses() == ["online"]
    assert not transport.connected and transport.disconnects >= 1


def test_run_is_bounded_by_max_steps(make_agent, api):
    agent = make_agent()
    agent.run(max_steps=3)
    assert api.paths() == [POLL, POLL, POLL]


# -- registration token (mode B) ------------------------------------------------------------------------


def test_registration_token_registers_then_polls_with_the_new_identity(api, make_agent, tmp_path):
    api.reply(POLL, 200, provisioned())
    transport = FakeTransport()
    agent = make_agent(transport, registration_token="tok-secret", identity_file=None)
    assert agent.state is State.REGISTER

    drive(agent, agent.clock, lambda: agent.state is State.ONLINE)

    register = api.requests[0]
    assert register.path == REGISTER and "x-signature" not in register.headers
    body = register.json
    assert body["registrationToken"] == "tok-secret"
    assert body["mac"] == SYSTEM_INFO["mac"] and body["board"] == SYSTEM_INFO["board"]
    key_file = tmp_path / "state" / KEY_FILE
    saved = load_identity_file(tmp_path / "state" / IDENTITY_FILE)
    assert saved.device_id == DEVICE_ID
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "state" / IDENTITY_FILE).stat().st_mode) == 0o600
    csr = x509.load_pem_x509_csr(body["csr"].encode())
    assert csr.public_key().public_numbers() == saved.key._key.public_key().public_numbers()
    assert api.paths()[1:] == [POLL, ACK]
    assert api.requests[1].signature_valid(saved.key)


def test_registered_device_restarts_without_registering_again(api, make_agent):
    make_agent(registration_token="tok", identity_file=None).step()

    again = make_agent(registration_token="tok", identity_file=None)

    assert again.state is State.POLL
    assert again.identity.device_id == DEVICE_ID


@pytest.mark.parametrize("status", [401, 409, 410])
def test_a_registration_refusal_from_something_else_is_backed_off(api, make_agent, caplog, status):
    # "refused" is not the device API's error code (tests/unit/firmware/test_agent_exit_codes.py has those)
    api.reply(REGISTER, status, {"error": "refused"})
    agent = make_agent(registration_token="tok-very-secret", identity_file=None)

    wait = agent.step()

    assert 0.8 * DEFAULT_CAP <= wait <= DEFAULT_CAP
    assert agent.state is State.REGISTER
    assert f"HTTP {status}" in caplog.text
    assert "tok-very-secret" not in caplog.text


def test_registration_retries_the_same_key_after_a_network_error(api, make_agent, tmp_path):
    agent = make_agent(
        registration_token="tok", identity_file=None, api_url=f"http://127.0.0.1:{free_port()}"
    )
    assert 4 <= agent.step() <= 6
    key_before = (tmp_path / "state" / KEY_FILE).read_bytes()

    agent.api.base_url = api.url
    agent.step()

    assert (tmp_path / "state" / KEY_FILE).read_bytes() == key_before
    assert agent.state is State.POLL


def test_a_config_without_identity_or_token_is_refused(tmp_path, api):
    with pytest.raises(ConfigError, match="identity_file"):
        Agent(AgentConfig(api_url=api.url, state_dir=tmp_path), transport=FakeTransport())


def test_a_sensor_wobble_is_not_a_change_a_move_or_a_relay_is():
    from firmware.agent import SENSOR_DEADBAND, _differs

    known = {"relays": {"r1": False}, "sensors": {"t": {"value": 21.0, "unit": "C", "at": 1}}}

    def now(value=21.0, relay=False):
        return {"relays": {"r1": relay}, "sensors": {"t": {"value": value, "unit": "C", "at": 999}}}

    assert not _differs(known, now())  # only the reading time moved
    assert not _differs(known, now(21.0 + SENSOR_DEADBAND / 2))
    assert _differs(known, now(21.0 + SENSOR_DEADBAND))
    assert _differs(known, now(relay=True))
    assert _differs(None, now())
