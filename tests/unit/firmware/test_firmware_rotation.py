"""Certificate rotation in the agent: when it renews, the four steps over the device API (a real HTTP
server on 127.0.0.1), the new key taking over, and what happens when a step fails - on virtual time."""

from __future__ import annotations

import datetime as dt
import json
import random

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from firmware import rotation
from firmware.agent import Agent, State
from firmware.clock import VirtualClock
from firmware.config import AgentConfig, ConfigError, parse_config
from firmware.credentials import Credentials, CredentialStore
from firmware.identity import DeviceKey
from tests.unit.firmware.firmware_fakes import (
    DEVICE_ID,
    SYSTEM_INFO,
    FakeTransport,
    StubApi,
    drive,
    provisioned,
    write_identity,
)

ROTATE = "/v1/device/rotate"
DAY = 86400.0
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z, VirtualClock's default
OLD_ID, NEW_ID = "a" * 64, "b" * 64


def certificate(key: DeviceKey, not_before: float, days: float) -> str:
    """A real certificate for `key` (self-signed: the agent only reads its dates)."""
    issuer = ec.generate_private_key(ec.SECP256R1())
    start = dt.datetime.fromtimestamp(not_before, dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DEVICE_ID)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key._key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .sign(issuer, hashes.SHA256())
    )
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture
def api():
    stub = StubApi()
    stub.defaults[ROTATE] = (500, {"error": "internal_error", "message": "unscripted"}, {})
    yield stub
    stub.close()


@pytest.fixture
def setup(tmp_path, api):
    """An agent with acknowledged credentials whose certificate was issued `age` days ago for 300 days."""
    identity_file, key = write_identity(tmp_path)
    state = tmp_path / "state"

    def make(age: float, clock: VirtualClock | None = None, **config) -> tuple[Agent, FakeTransport]:
        if not (state / "credentials.json").exists():
            answer = provisioned(certificate_id=OLD_ID) | {
                "certificatePem": certificate(key, START - age * DAY, 300)
            }
            CredentialStore(state).save(Credentials.from_poll(answer).with_ack())
        transport = FakeTransport()
        agent = Agent(
            AgentConfig(api_url=api.url, identity_file=identity_file, state_dir=state, **config),
            clock=clock or VirtualClock(),
            rng=random.Random(1),
            transport=transport,
            system_info=lambda: dict(SYSTEM_INFO),
        )
        return agent, transport

    return make, key, state


def script_rotation(api: StubApi, new_key_holder: list) -> None:
    """The service's side: deliver a certificate for the CSR's key, then 204 for ack and complete."""

    def deliver(request):
        csr = x509.load_pem_x509_csr(request.json["csr"].encode())
        new_key_holder.append(csr.public_key())
        body = provisioned(certificate_id=NEW_ID) | {
            "status": "rotating",
            "rotationId": "r1",
            "certificatePem": certificate_for(csr.public_key()),
            "certificateExpiresAt": "2027-01-01T00:00:00Z",
        }
        return 200, body, {}

    api.respond_with(ROTATE, deliver)
    api.reply(ROTATE, 204)
    api.reply(ROTATE, 204)


def certificate_for(public_key) -> str:
    from cryptography.hazmat.primitives import serialization

    issuer = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DEVICE_ID)])
    start = dt.datetime.fromtimestamp(START, dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=365))
        .sign(issuer, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def rotate_requests(api: StubApi) -> list:
    return [r for r in api.requests if r.path == ROTATE]


# --- when ---------------------------------------------------------------------------------------------


def test_renewal_comes_at_the_configured_share_of_the_lifetime():
    key = DeviceKey.generate()
    pem = certificate(key, START, 300)
    assert rotation.renew_at(pem, 2 / 3) == pytest.approx(START + 200 * DAY)
    assert rotation.renew_at(pem, 0.5) == pytest.approx(START + 150 * DAY)
    # The service's own expiry (AWS-issued certificates say 2049) shortens the lifetime.
    assert rotation.renew_at(pem, 0.5, expires_at=START + 100 * DAY) == pytest.approx(START + 50 * DAY)
    assert rotation.renew_at("not a certificate", 0.5) is None


def test_a_young_certificate_is_not_renewed(setup, api):
    make, _, _ = setup
    agent, _ = make(age=100)  # 100 of 300 days: before 2/3
    drive(agent, agent.clock, lambda: agent.state is State.ONLINE)
    for _ in range(5):
        agent.clock.advance(agent.step())
    assert rotate_requests(api) == []


def test_renew_share_is_validated():
    with pytest.raises(ConfigError):
        parse_config({"renew_share": 1.5}, base_dir=__import__("pathlib").Path("."))
    with pytest.raises(ConfigError):
        parse_config({"rotate_key": "yes"}, base_dir=__import__("pathlib").Path("."))
    assert (
        parse_config({"renew_share": 0.5, "rotate_key": False}, __import__("pathlib").Path(".")).rotate_key
        is False
    )


# --- the steps ----------------------------------------------------------------------------------------


def test_a_due_certificate_is_rotated_to_a_new_key_and_the_new_key_signs_from_then_on(setup, api):
    make, old_key, state = setup
    new_keys: list = []
    script_rotation(api, new_keys)
    agent, transport = make(age=250)  # past 200 of 300 days

    drive(agent, agent.clock, lambda: len(rotate_requests(api)) == 3 and agent.state is State.ONLINE)

    request, ack, complete = rotate_requests(api)
    assert [r.json["step"] for r in (request, ack, complete)] == ["request", "ack", "complete"]
    assert ack.json["certificateId"] == complete.json["certificateId"] == NEW_ID
    # request and ack are signed with the old key, complete with the new one (it proves the key).
    assert request.signature_valid(old_key) and ack.signature_valid(old_key)
    assert not complete.signature_valid(old_key)
    assert new_keys[0].public_numbers() != old_key._key.public_key().public_numbers()
    # The test connect and the reconnect both used the new certificate; the first connect the old one.
    certificates = [json.dumps(s.certificate_pem) for s in transport.connects]
    assert len(set(certificates)) == 2 and certificates[-1] == certificates[-2]
    assert CredentialStore(state).load().certificate_id == NEW_ID
    assert not (state / rotation.PENDING_FILE).exists()

    # A restarted agent signs with the new key and renews the new certificate at 2/3 of its year.
    restarted, _ = make(age=0)
    assert restarted.identity.key.public_pem() != old_key.public_pem()
    assert restarted.rotation.renew_at(restarted.credentials) == pytest.approx(START + 365 * DAY * 2 / 3)


def test_rotate_key_false_keeps_the_key(setup, api):
    make, old_key, _ = setup
    new_keys: list = []
    script_rotation(api, new_keys)
    agent, _ = make(age=250, rotate_key=False)
    drive(agent, agent.clock, lambda: len(rotate_requests(api)) == 3 and agent.state is State.ONLINE)
    assert new_keys[0].public_numbers() == old_key._key.public_key().public_numbers()


def test_a_notice_starts_a_rotation_and_a_handled_one_is_ignored(setup, api):
    make, _, _ = setup
    script_rotation(api, [])
    agent, transport = make(age=10)
    drive(agent, agent.clock, lambda: agent.state is State.ONLINE)
    commands = agent.credentials.topics["commands"]
    transport.deliver(commands, json.dumps({"command": "rotate", "rotationId": "r1"}).encode())
    drive(agent, agent.clock, lambda: len(rotate_requests(api)) == 3 and agent.state is State.ONLINE)
    # The retained notice comes again after the reconnect: already handled, nothing happens.
    transport.deliver(commands, json.dumps({"command": "rotate", "rotationId": "r1"}).encode())
    transport.deliver(commands, b"")  # the service clearing it
    for _ in range(5):
        agent.clock.advance(agent.step())
    assert len(rotate_requests(api)) == 3


def test_a_refused_test_connect_falls_back_to_the_old_certificate_and_retries_later(setup, api):
    make, _, state = setup
    script_rotation(api, [])
    agent, transport = make(age=250)
    drive(agent, agent.clock, lambda: agent.state is State.ONLINE)
    old_pem = agent.credentials.certificate_pem
    transport.refuse = 1  # the broker refuses the new certificate once
    drive(agent, agent.clock, lambda: len(rotate_requests(api)) == 2 and agent.state is State.ONLINE)
    assert transport.connects[-1].certificate_pem == old_pem  # back online with the old one
    assert rotation.load_pending(state).step == "acked"
    # Later the test connect succeeds and the rotation completes.
    drive(
        agent,
        agent.clock,
        lambda: len(rotate_requests(api)) == 3 and agent.state is State.ONLINE,
        max_steps=80,
    )
    assert agent.credentials.certificate_id == NEW_ID


def test_a_rotation_the_service_dropped_is_given_up_and_the_old_certificate_stays(setup, api):
    make, _, state = setup
    api.reply(ROTATE, 409, {"error": "conflict", "message": "The rotation expired."})
    agent, _ = make(age=250)
    drive(agent, agent.clock, lambda: len(rotate_requests(api)) == 1)
    drive(agent, agent.clock, lambda: agent.state is State.ONLINE)
    assert agent.credentials.certificate_id == OLD_ID
    assert not (state / rotation.PENDING_FILE).exists()


def test_a_stop_after_the_service_completed_is_finished_at_the_next_start(setup, api):
    make, _, state = setup
    make(age=250)
    new_key = DeviceKey.generate()
    new_credentials = Credentials.from_poll(
        provisioned(certificate_id=NEW_ID) | {"certificatePem": certificate_for(new_key._key.public_key())}
    )
    pending = rotation.Pending(
        new_key.private_pem().decode(), step="complete", credentials=json.loads(new_credentials.to_json())
    )
    (state / rotation.PENDING_FILE).write_bytes(pending.to_json())

    restarted, transport = make(age=250)
    assert restarted.credentials.certificate_id == NEW_ID and restarted.credentials.acked
    assert restarted.identity.key.public_pem() == new_key.public_pem()
    drive(restarted, restarted.clock, lambda: restarted.state is State.ONLINE)
    assert transport.connects[-1].private_key_pem == new_key.private_pem()
