"""The local IoT Core data plane: mosquitto with mutual TLS, the ACL from definitions, the CRL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdas import constants as c
from lambdas import definitions as d
from local.broker import Broker, ClientEvent
from local.pki import SERVICE_CN, IssuedCert, LocalCA
from local.testing import MqttClient, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("broker")


@pytest.fixture(scope="module")
def ca(state: Path) -> LocalCA:
    return LocalCA(state / "pki")


@pytest.fixture(scope="module")
def broker(state: Path, ca: LocalCA) -> Iterator[Broker]:
    b = Broker(state / "broker", ca).start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def clients() -> Iterator[list[MqttClient]]:
    made: list[MqttClient] = []
    yield made
    for client in made:
        client.close()


def thing() -> str:
    return "lk-" + uuid.uuid4().hex[:16]


def device_cert(ca: LocalCA, name: str) -> IssuedCert:
    return ca.issue_client_cert(name, save_as=f"dev-{name}")


def mqtt(broker: Broker, clients: list[MqttClient], cert: IssuedCert | None, **kw: object) -> MqttClient:
    client = MqttClient(broker.host, broker.port, ca_file=broker.ca.cert_file, cert=cert, **kw)  # type: ignore[arg-type]
    clients.append(client)
    return client


def service(broker: Broker, clients: list[MqttClient], topic: str) -> MqttClient:
    svc = mqtt(broker, clients, broker.service, client_id=f"svc-{uuid.uuid4().hex[:8]}")
    assert svc.connect()
    assert svc.subscribe(topic)
    return svc


def test_device_with_local_ca_cert_connects_and_publishes_its_status(broker, ca, clients):
    name = thing()
    svc = service(broker, clients, c.TOPIC_STATUS_FILTER)
    dev = mqtt(broker, clients, device_cert(ca, name))
    assert dev.connect()
    dev.publish(c.TOPIC_STATUS.format(thing=name), {"state": "online"})
    got = svc.wait_message(lambda m: m.topic == c.TOPIC_STATUS.format(thing=name))
    assert got is not None and got.json() == {"state": "online"}


def test_device_receives_commands_and_shadow_on_its_own_topics(broker, ca, clients):
    name = thing()
    topics = d.device_topics(name)
    dev = mqtt(broker, clients, device_cert(ca, name))
    assert dev.connect()
    assert dev.subscribe(topics["commands"])
    assert dev.subscribe(topics["shadow"] + "/#")
    svc = mqtt(broker, clients, broker.service, client_id=f"svc-{uuid.uuid4().hex[:8]}")
    assert svc.connect()
    svc.publish(topics["commands"], {"command": "wipe"})
    svc.publish(topics["shadow"] + "/update/accepted", {"state": {}})
    assert dev.wait_message(lambda m: m.topic == topics["commands"]) is not None
    assert dev.wait_message(lambda m: m.topic == topics["shadow"] + "/update/accepted") is not None


def test_client_without_certificate_is_refused(broker, clients):
    assert not mqtt(broker, clients, None, client_id="anonymous").connect(timeout=3)


def test_client_with_certificate_from_another_ca_is_refused(broker, clients, tmp_path):
    other = LocalCA(tmp_path / "other-ca")
    stranger = other.issue_client_cert(thing(), save_as="stranger")
    assert not mqtt(broker, clients, stranger).connect(timeout=3)


def test_revoked_certificate_is_refused_and_its_live_session_dropped(broker, ca, clients):
    name = thing()
    cert = device_cert(ca, name)
    bystander_name = thing()
    bystander = mqtt(broker, clients, device_cert(ca, bystander_name))
    assert bystander.connect()
    dev = mqtt(broker, clients, cert, reconnect=True)
    assert dev.connect()
    assert broker.wait_connected(name)

    events: list[ClientEvent] = []
    broker.add_client_listener(events.append)
    try:
        assert broker.revoke([cert.serial], identities=[name])
        gone = wait_until(
            lambda: [e for e in events if e.client_id == name and e.username == name], timeout=5
        )
    finally:
        broker.remove_client_listener(events.append)
    assert [(e.event_type, e.reason) for e in gone] == [("disconnected", "SERVER_INITIATED_DISCONNECT")]

    assert dev.disconnected.wait(5), "the revoked device kept its session"
    assert cert.serial in broker.revoked
    assert not mqtt(broker, clients, cert, client_id=name + "-again").connect(timeout=3)
    wait_until(lambda: name not in broker.connected(), timeout=5)
    assert bystander.connected.is_set(), "revocation must not disconnect other devices"
    # the bystander still works
    svc = service(broker, clients, c.TOPIC_STATUS.format(thing=bystander_name))
    bystander.publish(c.TOPIC_STATUS.format(thing=bystander_name), "{}")
    assert svc.wait_message() is not None


def test_unrevoke_lets_the_certificate_in_again(broker, ca, clients):
    name = thing()
    cert = device_cert(ca, name)
    broker.revoke([cert.serial])
    assert not mqtt(broker, clients, cert).connect(timeout=3)
    broker.unrevoke([cert.serial])
    assert mqtt(broker, clients, cert, client_id=name).connect()


def test_device_cannot_publish_to_another_devices_topic(broker, ca, clients):
    me, victim = thing(), thing()
    svc = service(broker, clients, c.TOPIC_STATUS_FILTER)
    dev = mqtt(broker, clients, device_cert(ca, me))
    assert dev.connect()
    dev.publish(c.TOPIC_STATUS.format(thing=victim), {"forged": True})
    dev.publish(c.TOPIC_STATUS.format(thing=me), {"marker": True})  # same connection, so it arrives after
    seen = []
    got = svc.wait_message(lambda m: seen.append(m.topic) or m.topic == c.TOPIC_STATUS.format(thing=me))
    assert got is not None
    assert c.TOPIC_STATUS.format(thing=victim) not in seen


def test_device_cannot_receive_another_devices_topics(broker, ca, clients):
    """IoT Core refuses the SUBSCRIBE itself; mosquitto's acl_file does not check subscriptions but
    never delivers a message the ACL does not let the client read (docs/local.md)."""
    me, victim = thing(), thing()
    dev = mqtt(broker, clients, device_cert(ca, me))
    assert dev.connect()
    for topic_filter in (c.TOPIC_COMMANDS.format(thing=victim), c.TOPIC_STATUS_FILTER, "#"):
        dev.subscribe(topic_filter)
    assert dev.subscribe(c.TOPIC_COMMANDS.format(thing=me))
    svc = mqtt(broker, clients, broker.service, client_id=f"svc-{uuid.uuid4().hex[:8]}")
    assert svc.connect()
    svc.publish(c.TOPIC_COMMANDS.format(thing=victim), {"command": "wipe"})
    svc.publish(c.TOPIC_STATUS.format(thing=victim), {"state": "online"})
    svc.publish(c.TOPIC_COMMANDS.format(thing=me), {"marker": True})  # same connection: arrives last
    seen: list[str] = []
    got = dev.wait_message(lambda m: seen.append(m.topic) or m.topic == c.TOPIC_COMMANDS.format(thing=me))
    assert got is not None
    assert seen == [c.TOPIC_COMMANDS.format(thing=me)]


def test_device_cannot_publish_to_its_own_command_topic(broker, ca, clients):
    """Only the service sends commands (the IoT policy gives devices Publish on status/shadow only)."""
    me = thing()
    svc = service(broker, clients, c.TOPIC_COMMANDS.format(thing=me))
    dev = mqtt(broker, clients, device_cert(ca, me))
    assert dev.connect()
    dev.publish(c.TOPIC_COMMANDS.format(thing=me), "{}")
    assert svc.wait_message(timeout=0.5) is None


def test_acl_file_is_generated_from_definitions(broker):
    text = broker.acl_file.read_text()
    for rule in d.device_acl():
        assert f"pattern {rule.access} {rule.topic}" in text
    assert f"user {SERVICE_CN}" in text


def test_connects_and_disconnects_are_reported(broker, ca, clients):
    name = thing()
    events: list[ClientEvent] = []
    broker.add_client_listener(events.append)
    try:
        dev = mqtt(broker, clients, device_cert(ca, name))
        assert dev.connect()
        wait_until(lambda: any(e.client_id == name and e.event_type == "connected" for e in events))
        dev.close()
        wait_until(lambda: any(e.client_id == name and e.event_type == "disconnected" for e in events))
    finally:
        broker.remove_client_listener(events.append)
    connected = next(e for e in events if e.client_id == name and e.event_type == "connected")
    assert connected.username == name and connected.ip == "127.0.0.1"


def test_stop_leaves_no_process(tmp_path):
    ca = LocalCA(tmp_path / "pki")
    b = Broker(tmp_path / "b", ca).start()
    pid = b.pid
    assert pid and b.running
    b.stop()
    b.stop()  # idempotent
    assert not b.running
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()


def test_key_files_are_private(ca, broker):
    for path in [ca.key_file, broker.service.key_file]:
        assert path is not None and (path.stat().st_mode & 0o777) == 0o600
    assert json.loads(json.dumps(broker.service.common_name)) == SERVICE_CN
