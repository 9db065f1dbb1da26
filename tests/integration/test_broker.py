"""The local IoT Core data plane: real mosquitto behind the front door that asks (moto's) IoT who may
connect, as IoT Core does: certificate status, the thing attached, the policy, the client id."""

from __future__ import annotations

import socket
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lambdas import constants as c
from lambdas import definitions as d
from local.broker import Broker, ClientEvent
from local.pki import SERVICE_CN, LocalCA
from local.testing import MqttClient, ThingCert, provision_thing, wait_until


@pytest.fixture
def clients() -> Iterator[list[MqttClient]]:
    made: list[MqttClient] = []
    yield made
    for client in made:
        client.close()


@pytest.fixture
def events(cloud: Any) -> Iterator[list[ClientEvent]]:
    seen: list[ClientEvent] = []
    cloud.broker.add_client_listener(seen.append)
    yield seen
    cloud.broker.remove_client_listener(seen.append)


def thing() -> str:
    return "lk-" + uuid.uuid4().hex[:16]


def mqtt(cloud: Any, clients: list[MqttClient], cert: Any, **kw: Any) -> MqttClient:
    client = MqttClient(cloud.mqtt_host, cloud.mqtt_port, ca_file=cloud.ca_file, cert=cert, **kw)
    clients.append(client)
    return client


def device(
    cloud: Any, clients: list[MqttClient], name: str | None = None, **kw: Any
) -> tuple[ThingCert, MqttClient]:
    registered = provision_thing(cloud, name or thing(), mode=kw.pop("mode", "aws"))
    return registered, mqtt(cloud, clients, registered.cert, client_id=registered.thing, **kw)


def service(cloud: Any, clients: list[MqttClient], topic: str) -> MqttClient:
    svc = mqtt(cloud, clients, cloud.broker.service, client_id=f"svc-{uuid.uuid4().hex[:8]}")
    assert svc.connect()
    assert svc.subscribe(topic)
    return svc


# -- who may connect ----------------------------------------------------------------------------------


def test_aws_issued_device_connects_and_publishes_its_status(cloud, clients):
    svc = service(cloud, clients, c.TOPIC_STATUS_FILTER)
    me, dev = device(cloud, clients)
    assert dev.connect()
    dev.publish(c.TOPIC_STATUS.format(thing=me.thing), {"state": "online"})
    got = svc.wait_message(lambda m: m.topic == c.TOPIC_STATUS.format(thing=me.thing))
    assert got is not None and got.json() == {"state": "online"}


def test_own_ca_device_connects_too(cloud, clients):
    _me, dev = device(cloud, clients, mode="own-ca")
    assert dev.connect()


def test_client_without_certificate_is_refused(cloud, clients):
    assert not mqtt(cloud, clients, None, client_id="anonymous").connect(timeout=3)


def test_client_with_certificate_from_another_ca_is_refused(cloud, clients, tmp_path):
    stranger = LocalCA(tmp_path / "other-ca").issue_client_cert(thing(), save_as="stranger")
    assert not mqtt(cloud, clients, stranger).connect(timeout=3)


def test_certificate_not_registered_in_iot_is_refused(cloud, clients):
    name = thing()
    assert not mqtt(cloud, clients, cloud.issue_client_cert(name), client_id=name).connect(timeout=3)
    assert any(cid == name and "not registered" in why for cid, why in cloud.broker.front.refusals)


def test_inactive_revoked_and_deleted_certificates_are_refused(cloud, clients):
    iot = cloud.aws("iot")
    me = provision_thing(cloud, thing(), status="INACTIVE")

    def connects() -> bool:
        client = mqtt(cloud, clients, me.cert, client_id=me.thing)
        ok = client.connect(timeout=3)
        client.close()
        return ok

    assert not connects()  # INACTIVE, as registered before the device's ack
    iot.update_certificate(certificateId=me.certificate_id, newStatus="ACTIVE")
    assert connects()  # at once: IoT's status is read at every connect
    iot.update_certificate(certificateId=me.certificate_id, newStatus="INACTIVE")
    assert not connects()
    iot.update_certificate(certificateId=me.certificate_id, newStatus="REVOKED")
    assert not connects()
    with pytest.raises(iot.exceptions.CertificateStateException):  # REVOKED is final, as on AWS
        iot.update_certificate(certificateId=me.certificate_id, newStatus="ACTIVE")
    iot.detach_policy(policyName=d.POLICY_NAME, target=me.certificate_arn)
    delay = cloud.detach_delay
    cloud.set_detach_delay(0)
    try:
        iot.detach_thing_principal(thingName=me.thing, principal=me.certificate_arn)
        iot.delete_certificate(certificateId=me.certificate_id)
    finally:
        cloud.set_detach_delay(delay)
    assert not connects()


def test_certificate_without_the_policy_is_refused(cloud, clients):
    me = provision_thing(cloud, thing())
    cloud.aws("iot").detach_policy(policyName=d.POLICY_NAME, target=me.certificate_arn)
    assert not mqtt(cloud, clients, me.cert, client_id=me.thing).connect(timeout=3)
    assert any("allows iot:Connect" in why for cid, why in cloud.broker.front.refusals if cid == me.thing)


def test_client_id_spoofing_is_refused_and_never_credited(cloud, clients, events):
    """Device 1, with its own valid certificate, connects as device 2: refused before the broker sees
    it, so device 2 keeps its session and presence hears nothing of the attempt."""
    one = provision_thing(cloud, thing())
    two, victim = device(cloud, clients)
    assert victim.connect()
    assert cloud.broker.wait_connected(two.thing)

    spoof = mqtt(cloud, clients, one.cert, client_id=two.thing)
    assert not spoof.connect(timeout=3)
    assert not mqtt(cloud, clients, one.cert, client_id="lk-not-a-thing").connect(timeout=3)

    assert victim.connected.is_set() and not victim.disconnected.is_set()
    assert cloud.broker.connected().get(two.thing) == two.thing
    assert [(e.event_type, e.client_id) for e in events if e.client_id == two.thing] == [
        ("connected", two.thing)
    ]
    refused = [cid for cid, _why in cloud.broker.front.refusals]
    assert two.thing in refused and "lk-not-a-thing" in refused


# -- DeleteConnection, and what UpdateCertificate alone does ------------------------------------------


def test_delete_connection_drops_that_client_only(cloud, clients, events):
    me, dev = device(cloud, clients)
    _other, bystander = device(cloud, clients)
    assert dev.connect() and bystander.connect()
    assert cloud.broker.wait_connected(me.thing)

    cloud.aws("iot-data").delete_connection(clientId=me.thing)
    assert dev.disconnected.wait(5), "DeleteConnection did not close the connection"
    gone = wait_until(
        lambda: [e for e in events if e.client_id == me.thing and e.event_type == "disconnected"]
    )
    assert [e.reason for e in gone] == ["API_INITIATED_DISCONNECT"]
    assert bystander.connected.is_set()
    # the device may come back: its certificate is still ACTIVE (revocation is UpdateCertificate)
    assert mqtt(cloud, clients, me.cert, client_id=me.thing).connect()

    iot_data = cloud.aws("iot-data")
    with pytest.raises(iot_data.exceptions.ResourceNotFoundException):
        iot_data.delete_connection(clientId="lk-nobody-connected")


def test_revocation_alone_refuses_reconnects_and_drops_the_session_only_later(cloud, clients):
    """UpdateCertificate(REVOKED): AWS disconnects "within a few minutes"; locally the periodic
    revalidation stands for that (run by hand here), so only DeleteConnection drops at once."""
    me, dev = device(cloud, clients)
    assert dev.connect()
    cloud.aws("iot").update_certificate(certificateId=me.certificate_id, newStatus="REVOKED")
    assert not mqtt(cloud, clients, me.cert, client_id=me.thing).connect(timeout=3)
    # the refused attempt did not take over the live session either
    assert dev.connected.is_set()
    assert cloud.iot_sync.revalidate() == [me.thing]
    assert dev.disconnected.wait(5)


# -- topics ---------------------------------------------------------------------------------------------


def test_device_receives_commands_and_shadow_on_its_own_topics(cloud, clients):
    me, dev = device(cloud, clients)
    topics = d.device_topics(me.thing)
    assert dev.connect()
    assert dev.subscribe(topics["commands"])
    assert dev.subscribe(topics["shadow"] + "/#")
    svc = mqtt(cloud, clients, cloud.broker.service, client_id=f"svc-{uuid.uuid4().hex[:8]}")
    assert svc.connect()
    svc.publish(topics["commands"], {"command": "wipe"})
    svc.publish(topics["shadow"] + "/update/accepted", {"state": {}})
    assert dev.wait_message(lambda m: m.topic == topics["commands"]) is not None
    assert dev.wait_message(lambda m: m.topic == topics["shadow"] + "/update/accepted") is not None


def test_device_cannot_publish_to_another_devices_topic(cloud, clients):
    me, dev = device(cloud, clients)
    victim = thing()
    svc = service(cloud, clients, c.TOPIC_STATUS_FILTER)
    assert dev.connect()
    dev.publish(c.TOPIC_STATUS.format(thing=victim), {"forged": True})
    dev.publish(c.TOPIC_STATUS.format(thing=me.thing), {"marker": True})  # same connection: arrives after
    seen: list[str] = []
    got = svc.wait_message(lambda m: seen.append(m.topic) or m.topic == c.TOPIC_STATUS.format(thing=me.thing))
    assert got is not None
    assert c.TOPIC_STATUS.format(thing=victim) not in seen


def test_device_cannot_receive_another_devices_topics(cloud, clients):
    """IoT Core refuses the SUBSCRIBE itself; mosquitto's acl_file does not check subscriptions but
    never delivers a message the ACL does not let the client read (docs/local.md)."""
    me, dev = device(cloud, clients)
    victim = thing()
    assert dev.connect()
    for topic_filter in (c.TOPIC_COMMANDS.format(thing=victim), c.TOPIC_STATUS_FILTER, "#"):
        dev.subscribe(topic_filter)
    assert dev.subscribe(c.TOPIC_COMMANDS.format(thing=me.thing))
    svc = mqtt(cloud, clients, cloud.broker.service, client_id=f"svc-{uuid.uuid4().hex[:8]}")
    assert svc.connect()
    svc.publish(c.TOPIC_COMMANDS.format(thing=victim), {"command": "wipe"})
    svc.publish(c.TOPIC_STATUS.format(thing=victim), {"state": "online"})
    svc.publish(c.TOPIC_COMMANDS.format(thing=me.thing), {"marker": True})  # same connection: arrives last
    seen: list[str] = []
    got = dev.wait_message(
        lambda m: seen.append(m.topic) or m.topic == c.TOPIC_COMMANDS.format(thing=me.thing)
    )
    assert got is not None
    assert seen == [c.TOPIC_COMMANDS.format(thing=me.thing)]


def test_device_cannot_publish_to_its_own_command_topic(cloud, clients):
    """Only the service sends commands (the IoT policy gives devices Publish on status/shadow only)."""
    me, dev = device(cloud, clients)
    svc = service(cloud, clients, c.TOPIC_COMMANDS.format(thing=me.thing))
    assert dev.connect()
    dev.publish(c.TOPIC_COMMANDS.format(thing=me.thing), "{}")
    assert svc.wait_message(timeout=0.5) is None


def test_acl_file_is_generated_from_definitions(cloud):
    text = cloud.broker.acl_file.read_text()
    for rule in d.device_acl():
        assert f"pattern {rule.access} {rule.topic}" in text
    assert f"user {SERVICE_CN}" in text


# -- the plumbing -----------------------------------------------------------------------------------------


def test_connects_and_disconnects_are_reported_with_thing_address_and_certificate(cloud, clients, events):
    me, dev = device(cloud, clients)
    assert dev.connect()
    wait_until(lambda: any(e.client_id == me.thing and e.event_type == "connected" for e in events))
    dev.close()
    wait_until(lambda: any(e.client_id == me.thing and e.event_type == "disconnected" for e in events))
    connected = next(e for e in events if e.client_id == me.thing and e.event_type == "connected")
    assert (connected.username, connected.ip, connected.principal) == (
        me.thing,
        "127.0.0.1",
        me.certificate_id,
    )
    gone = next(e for e in events if e.client_id == me.thing and e.event_type == "disconnected")
    assert gone.reason == "CLIENT_INITIATED_DISCONNECT"


def test_mosquitto_is_reachable_only_through_the_front_door(cloud):
    conf = cloud.broker.conf_file.read_text()
    listeners = [line for line in conf.splitlines() if line.startswith("listener")]
    assert listeners == [f"listener 0 {cloud.broker.socket_file}"]
    assert (cloud.broker.sockets.stat().st_mode & 0o777) == 0o700


def test_a_first_packet_that_is_not_connect_is_closed(cloud):
    ctx = cloud.broker.client_ssl_context()
    with (
        socket.create_connection((cloud.mqtt_host, cloud.mqtt_port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=cloud.mqtt_host) as tls,
    ):
        tls.sendall(bytes([0x30, 0x03, 0x00, 0x01, 0x61]))  # a PUBLISH before CONNECT
        deadline = time.monotonic() + 5
        closed = False
        while time.monotonic() < deadline and not closed:
            try:
                closed = tls.recv(1) == b""
            except (ssl.SSLError, ConnectionError):
                closed = True
        assert closed


def test_stop_leaves_no_process(tmp_path):
    ca = LocalCA(tmp_path / "pki")
    b = Broker(tmp_path / "b", ca).start()
    pid = b.pid
    assert pid and b.running
    svc = MqttClient(b.host, b.port, ca_file=ca.cert_file, cert=b.service, client_id="svc")
    assert svc.connect()  # with no IoT behind it, the broker admits only the service identity
    svc.close()
    b.stop()
    b.stop()  # idempotent
    assert not b.running
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()


def test_key_files_are_private(cloud):
    for path in [cloud.ca.key_file, cloud.aws_ca.key_file, cloud.broker.service.key_file]:
        assert path is not None and (path.stat().st_mode & 0o777) == 0o600


def test_the_keepalive_mosquitto_enforces_is_iot_cores(cloud, events, tmp_path):
    """The agent's transport asking for 5 s gets IoT Core's minimum of 30 s: never a faster offline."""
    from firmware.transport import MqttSettings, PahoTransport

    me = provision_thing(cloud, thing())
    settings = MqttSettings(
        host=cloud.mqtt_host,
        port=cloud.mqtt_port,
        client_id=me.thing,
        certificate_pem=me.cert.cert_pem,
        private_key_pem=Path(me.cert.key_file).read_bytes(),
        ca_pem=Path(cloud.ca_file).read_text(),
        keepalive=5,
        key_dir=tmp_path,
    )
    transport = PahoTransport()
    transport.connect(settings, lambda _t, _p: None, lambda: None)
    try:
        wait_until(lambda: any(e.client_id == me.thing and e.event_type == "connected" for e in events))
        lines = [
            line for line in cloud.broker.log_file.read_text().splitlines() if f" as {me.thing} (" in line
        ]
        assert lines and ", k30," in lines[-1]
    finally:
        transport.disconnect()
