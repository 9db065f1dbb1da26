"""Publish a message to a device: IoT Core's data plane on AWS, the local mosquitto when bridged.

`LATCHKEY_MQTT_BRIDGE` (local only) is JSON {"host", "port", "certfile", "keyfile", "cafile"} (the
shorter "cert", "key", "ca" are accepted too): the service's own client certificate for the local
broker. paho-mqtt is imported only then; one connection per publish, QoS 1, bounded wait for PUBACK.
"""

from __future__ import annotations

import json
import os
import secrets
from typing import Any

from lambdas import constants as c
from lambdas.adapters import iot
from lambdas.errors import ServiceUnavailable

PUBACK_TIMEOUT_S = 5.0


class PublishFailed(ServiceUnavailable):
    """The message could not be handed to the broker."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryAfter=5, headers={"Retry-After": "5"})


def publish(topic: str, payload: dict[str, Any] | None, retain: bool = False) -> None:
    """QoS 1. `retain`: the broker keeps the message for whoever subscribes later (needs
    iot:RetainPublish); a None payload with `retain` deletes the retained message of the topic."""
    data = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
    bridge = os.environ.get(c.ENV_MQTT_BRIDGE, "").strip()
    if bridge:
        _publish_bridge(json.loads(bridge), topic, data, retain)
    else:
        _publish_iot(topic, data, retain)


def _publish_iot(topic: str, data: bytes, retain: bool = False) -> None:
    try:
        retained = {"retain": True} if retain else {}
        iot.iot_data_client().publish(topic=topic, qos=1, payload=data, **retained)
    except Exception as exc:
        raise PublishFailed(f"IoT did not accept the message for {topic}.") from exc


def _publish_bridge(settings: dict[str, Any], topic: str, data: bytes, retain: bool = False) -> None:
    import paho.mqtt.client as paho  # deferred: local only

    client = paho.Client(
        callback_api_version=paho.CallbackAPIVersion.VERSION2,
        client_id=f"latchkey-service-{secrets.token_hex(4)}",
        protocol=paho.MQTTv311,
    )
    client.tls_set(
        ca_certs=settings.get("cafile") or settings.get("ca"),
        certfile=settings.get("certfile") or settings.get("cert"),
        keyfile=settings.get("keyfile") or settings.get("key"),
    )
    host, port = str(settings.get("host", "127.0.0.1")), int(settings.get("port", 8883))
    try:
        client.connect(host, port, keepalive=30)
    except (OSError, ValueError) as exc:
        raise PublishFailed(f"The MQTT broker at {host}:{port} is unreachable.") from exc
    client.loop_start()
    try:
        info = client.publish(topic, data, qos=1, retain=retain)
        info.wait_for_publish(timeout=PUBACK_TIMEOUT_S)
        if not info.is_published():
            raise PublishFailed(f"The MQTT broker did not acknowledge the message for {topic}.")
    except (RuntimeError, ValueError) as exc:  # paho: not connected / queue full
        raise PublishFailed(f"The MQTT broker refused the message for {topic}.") from exc
    finally:
        client.disconnect()
        client.loop_stop()
