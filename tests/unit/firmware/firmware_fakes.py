"""Test doubles for the device agent: a scripted device API on 127.0.0.1 and a recording transport."""

from __future__ import annotations

import base64
import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from firmware.agent import Agent
from firmware.clock import VirtualClock
from firmware.identity import DeviceKey, Identity, save_identity_file, signing_string
from firmware.transport import (
    DisconnectHandler,
    MessageHandler,
    MqttSettings,
    TransportError,
    TransportRefused,
)

DEVICE_ID = "lk-0123456789abcdef"
FAKE_CERT = "-----BEGIN CERTIFICATE-----\nZmFrZQ==\n-----END CERTIFICATE-----\n"
FAKE_CA = "-----BEGIN CERTIFICATE-----\nY2E=\n-----END CERTIFICATE-----\n"
SYSTEM_INFO = {
    "version": "test",
    "board": "test-board",
    "mac": "02:00:00:00:00:01",
    "ip": "127.0.0.1",
    "uptime": 42,
}


def provisioned(
    device_id: str = DEVICE_ID, certificate_id: str = "cert-1", port: int = 8883
) -> dict[str, Any]:
    return {
        "status": "provisioned",
        "thingName": device_id,
        "certificateId": certificate_id,
        "certificatePem": FAKE_CERT,
        "caPem": FAKE_CA,
        "endpoint": {"host": "127.0.0.1", "port": port},
        "topics": {
            "status": f"latchkey/things/{device_id}/status",
            "commands": f"latchkey/things/{device_id}/commands",
            "shadow": f"$aws/things/{device_id}/shadow",
        },
        "retryAfter": 0,
    }


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def signature_valid(self, key: DeviceKey) -> bool:
        public = key._key.public_key()
        message = signing_string("POST", self.path, int(self.headers["x-timestamp"]), self.body)
        signature = base64.b64decode(self.headers["x-signature"])
        assert isinstance(public, ec.EllipticCurvePublicKey)
        try:
            public.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True


Reply = tuple[int, Any, dict[str, str]]
Responder = Callable[[Request], Reply]


@dataclass
class StubApi:
    """The device API as a scripted HTTP server: queued replies per path, then a default."""

    defaults: dict[str, Reply] = field(
        default_factory=lambda: {
            "/v1/device/poll": (200, {"status": "unclaimed", "retryAfter": 0}, {}),
            "/v1/device/ack": (204, None, {}),
            "/v1/device/register": (201, {"deviceId": DEVICE_ID}, {}),
        }
    )
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._script: dict[str, deque[Reply | Responder]] = {}
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                request = Request(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                stub.requests.append(request)
                status, payload, headers = stub._reply(request)
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def reply(self, path: str, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        self._script.setdefault(path, deque()).append((status, body, headers or {}))

    def respond_with(self, path: str, responder: Responder) -> None:
        self._script.setdefault(path, deque()).append(responder)

    def _reply(self, request: Request) -> Reply:
        queued = self._script.get(request.path)
        if queued:
            item = queued.popleft()
            return item(request) if callable(item) else item
        return self.defaults[request.path]

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class FakeTransport:
    """Records what the agent does with MQTT; `refuse` makes the next connects fail like a revoked cert."""

    def __init__(self, refuse: int = 0) -> None:
        self.refuse = refuse
        self.connects: list[MqttSettings] = []
        self.subscribed: list[str] = []
        self.published: list[tuple[str, dict[str, Any]]] = []
        self.disconnects = 0
        self.connected = False
        self._on_message: MessageHandler | None = None
        self._on_disconnect: DisconnectHandler | None = None

    def connect(
        self, settings: MqttSettings, on_message: MessageHandler, on_disconnect: DisconnectHandler
    ) -> None:
        self.connects.append(settings)
        if self.refuse > 0:
            self.refuse -= 1
            raise TransportRefused("certificate revoked")
        self.connected = True
        self._on_message, self._on_disconnect = on_message, on_disconnect

    def subscribe(self, topic: str, qos: int = 1) -> None:
        self.subscribed.append(topic)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        if not self.connected:
            raise TransportError("not connected")
        self.published.append((topic, json.loads(payload)))

    def is_connected(self) -> bool:
        return self.connected

    def disconnect(self) -> None:
        self.connected = False
        self.disconnects += 1

    def deliver(self, topic: str, payload: bytes) -> None:
        assert self._on_message is not None
        self._on_message(topic, payload)

    def drop(self) -> None:
        self.connected = False
        assert self._on_disconnect is not None
        self._on_disconnect()

    def statuses(self) -> list[str]:
        return [message["status"] for topic, message in self.published if topic.endswith("/status")]

    def shadow_reports(self) -> list[dict[str, Any]]:
        return [m["state"]["reported"] for topic, m in self.published if topic.endswith("/shadow/update")]


def write_identity(
    directory: Path, key: DeviceKey | None = None, device_id: str = DEVICE_ID
) -> tuple[Path, DeviceKey]:
    key = key or DeviceKey.generate()
    path = directory / "identity.json"
    save_identity_file(path, Identity(device_id, key, ""))
    return path, key


def drive(agent: Agent, clock: VirtualClock, until: Callable[[], bool], max_steps: int = 40) -> list[float]:
    """Step the agent like run() does, on virtual time, until `until()`; returns the waits it chose."""
    waits: list[float] = []
    for _ in range(max_steps):
        if until():
            return waits
        delay = agent.step()
        waits.append(delay)
        clock.advance(delay)
    raise AssertionError(f"condition not reached in {max_steps} steps; state {agent.state}, waits {waits}")
