"""MQTT over mutual TLS behind a small interface, so the agent's state machine can be tested without a broker.

The agent decides when to (re)connect; the transport never reconnects on its own, because a refused
reconnect may mean the certificate was revoked, and only the agent can ask the API about that.
"""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import paho.mqtt.client as mqtt

from firmware.api import tls_context

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0

MessageHandler = Callable[[str, bytes], None]
DisconnectHandler = Callable[[], None]


class TransportError(Exception):
    """Could not connect or lost the connection (network, broker down)."""


class TransportRefused(TransportError):
    """The broker or its TLS layer refused this device's identity (bad, inactive or revoked certificate)."""


@dataclass(frozen=True)
class MqttSettings:
    host: str
    port: int
    client_id: str
    certificate_pem: str = field(repr=False)
    private_key_pem: bytes = field(repr=False)
    ca_pem: str = field(repr=False)
    will_topic: str | None = None  # none by default: IoT's lifecycle events say when a device drops
    will_payload: bytes = b""
    keepalive: int = 40
    skip_time_check: bool = False  # the device clock is known to be wrong; still verify the chain
    key_dir: Path | None = None  # where the key may touch disk for a moment (ssl loads keys from files only)


class Transport(Protocol):
    def connect(
        self, settings: MqttSettings, on_message: MessageHandler, on_disconnect: DisconnectHandler
    ) -> None:
        """Connect and wait for the broker's answer; raises TransportRefused or TransportError."""
        ...

    def subscribe(self, topic: str, qos: int = 1) -> None: ...

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """Queue a message; raises TransportError when not connected."""
        ...

    def is_connected(self) -> bool: ...

    def disconnect(self) -> None:
        """Clean disconnect (no last will); safe to call when not connected."""
        ...


def client_tls_context(settings: MqttSettings) -> ssl.SSLContext:
    context = tls_context(settings.skip_time_check)
    context.load_verify_locations(cadata=settings.ca_pem)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # ssl can only load a client key from a file: write it 0600 next to our state, load, delete at once.
    fd, key_path = tempfile.mkstemp(dir=settings.key_dir, prefix=".mqtt-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(settings.private_key_pem)
            handle.write(b"\n")
            handle.write(settings.certificate_pem.encode())
        context.load_cert_chain(certfile=key_path, keyfile=key_path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(key_path)
    return context


class PahoTransport:
    def __init__(self, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self._connect_timeout = connect_timeout
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()
        self._last_publish: mqtt.MQTTMessageInfo | None = None

    def connect(
        self, settings: MqttSettings, on_message: MessageHandler, on_disconnect: DisconnectHandler
    ) -> None:
        self.disconnect()
        try:
            context = client_tls_context(settings)
        except (ssl.SSLError, ValueError) as exc:
            raise TransportRefused(f"cannot load the device certificate or CA: {exc}") from exc

        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            clean_session=True,
            protocol=mqtt.MQTTv311,
            reconnect_on_failure=False,
        )
        client.tls_set_context(context)
        if settings.will_topic:
            client.will_set(settings.will_topic, settings.will_payload, qos=1, retain=False)
        answered = threading.Event()
        result: dict[str, object] = {}

        def handle_connect(_c: object, _u: object, _f: object, reason: object, _p: object) -> None:
            result["reason"] = reason
            if not getattr(reason, "is_failure", False):
                self._connected.set()
            answered.set()

        def handle_disconnect(_c: object, _u: object, _f: object, reason: object, _p: object) -> None:
            was_connected = self._connected.is_set()
            self._connected.clear()
            result.setdefault("reason", reason)
            answered.set()
            if was_connected:
                on_disconnect()

        def handle_message(_c: object, _u: object, message: mqtt.MQTTMessage) -> None:
            on_message(message.topic, bytes(message.payload))

        client.on_connect = handle_connect
        client.on_disconnect = handle_disconnect
        client.on_message = handle_message
        try:
            client.connect(settings.host, settings.port, keepalive=settings.keepalive)
        except ssl.SSLError as exc:
            raise TransportRefused(
                f"TLS handshake with {settings.host}:{settings.port} failed: {exc}"
            ) from exc
        except OSError as exc:
            raise TransportError(f"cannot reach {settings.host}:{settings.port}: {exc}") from exc
        client.loop_start()
        self._client = client
        if not answered.wait(self._connect_timeout):
            self.disconnect()
            raise TransportError(
                f"no answer from {settings.host}:{settings.port} in {self._connect_timeout:.0f} s"
            )
        if not self._connected.is_set():
            self.disconnect()
            # Closed before CONNACK: with TLS 1.3 a refused client certificate surfaces this way.
            raise TransportRefused(
                f"broker closed the connection before accepting it ({result.get('reason')}); "
                "certificate refused or revoked?"
            )

    def subscribe(self, topic: str, qos: int = 1) -> None:
        client = self._client
        if client is None or not self._connected.is_set():
            raise TransportError("not connected")
        rc, _mid = client.subscribe(topic, qos=qos)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            raise TransportError(f"subscribe to {topic} failed: {mqtt.error_string(rc)}")

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        client = self._client
        if client is None or not self._connected.is_set():
            raise TransportError("not connected")
        info = client.publish(topic, payload, qos=qos, retain=False)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise TransportError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
        self._last_publish = info

    def is_connected(self) -> bool:
        return self._connected.is_set()

    def disconnect(self) -> None:
        client, self._client = self._client, None
        self._connected.clear()
        last, self._last_publish = self._last_publish, None
        if client is None:
            return
        if last is not None:
            # Let the last message reach the broker before the clean disconnect.
            with contextlib.suppress(RuntimeError, ValueError):
                last.wait_for_publish(timeout=2.0)
        with contextlib.suppress(OSError, ValueError):
            client.disconnect()
        client.loop_stop()
