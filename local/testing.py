"""Helpers for tests and simulations against the embedded cloud (used by tests/conftest.py).

Nothing here is used by the cloud itself. Every wait is bounded by a deadline.
"""

from __future__ import annotations

import json as jsonlib
import queue
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from local.pki import IssuedCert

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02) -> T:
    """Poll `predicate` until it returns something truthy; raise TimeoutError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(interval)


# -- HTTP ------------------------------------------------------------------------------------------
@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return jsonlib.loads(self.body) if self.body else None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class HttpClient:
    """urllib against the gateway (no redirects, no exceptions for 4xx/5xx)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        token: str | None = None,
        timeout: float = 30.0,
    ) -> HttpResponse:
        url = path if path.startswith("http") else self.base_url + path
        hdrs = dict(headers or {})
        body: bytes | None
        if json is not None:
            body = jsonlib.dumps(json).encode()
            hdrs.setdefault("Content-Type", "application/json")
        else:
            body = data.encode() if isinstance(data, str) else data
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(url, data=body, headers=hdrs, method=method.upper())  # noqa: S310
        try:
            with urllib.request.urlopen(req, timeout=timeout) as answer:  # noqa: S310 (loopback)
                return HttpResponse(
                    answer.status, {k.lower(): v for k, v in answer.headers.items()}, answer.read()
                )
        except urllib.error.HTTPError as exc:
            return HttpResponse(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read())

    def get(self, path: str, **kw: Any) -> HttpResponse:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> HttpResponse:
        return self.request("POST", path, **kw)


@dataclass
class Owner:
    """A Cognito user of the embedded cloud, signed in."""

    email: str
    password: str
    sub: str
    id_token: str
    access_token: str
    http: HttpClient = field(repr=False)

    @property
    def token(self) -> str:
        """The ID token (the page sends the access token; the API takes the email from either:
        tests/browser/test_accounts.py and tests/unit/lambdas/test_cognito_adapter.py cover that path)."""
        return self.id_token

    def request(
        self, method: str, path: str, json: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """(status, parsed JSON body or None) of an authenticated call to the owner API."""
        answer = self.http.request(method, path, json=json, headers=headers, token=self.token)
        try:
            return answer.status, answer.json()
        except ValueError:
            return answer.status, answer.text


# -- MQTT ------------------------------------------------------------------------------------------
@dataclass
class Message:
    topic: str
    payload: bytes

    def json(self) -> Any:
        return jsonlib.loads(self.payload)


class MqttClient:
    """A small synchronous paho wrapper: connect with a client certificate, publish, subscribe, wait."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ca_file: str | Path,
        cert: IssuedCert | None = None,
        client_id: str | None = None,
        reconnect: bool = False,
    ) -> None:
        import paho.mqtt.client as mqtt

        self.host = host
        self.port = port
        self.client_id = client_id or (cert.common_name if cert else f"test-{uuid.uuid4().hex[:8]}")
        self.messages: queue.Queue[Message] = queue.Queue()
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.reconnect = reconnect
        self._acks: dict[int, list[Any]] = {}
        self._cond = threading.Condition()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True)
        client.tls_set(
            ca_certs=str(ca_file),
            certfile=str(cert.cert_file) if cert else None,
            keyfile=str(cert.key_file) if cert else None,
        )
        client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]  # paho sleeps floats
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = lambda *_a: self.disconnected.set()
        client.on_message = lambda _c, _u, m: self.messages.put(Message(m.topic, bytes(m.payload)))
        client.on_subscribe = self._on_subscribe
        self.client = client

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self.disconnected.set()
        else:
            self.disconnected.clear()
            self.connected.set()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, _reason: Any, _p: Any) -> None:
        self.connected.clear()
        self.disconnected.set()

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, reasons: list[Any], _p: Any) -> None:
        with self._cond:
            self._acks[mid] = reasons
            self._cond.notify_all()

    def connect(self, timeout: float = 5.0) -> bool:
        """True when the broker accepted us (CONNACK), False when it refused or hung up."""
        self.disconnected.clear()
        try:
            self.client.connect(self.host, self.port, keepalive=30)
        except OSError:  # includes ssl.SSLError: refused during the handshake
            return False
        self.client.loop_start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.connected.is_set():
                return True
            if self.disconnected.is_set():
                break
            time.sleep(0.01)
        if not self.reconnect or not self.connected.is_set():
            self.client.loop_stop()
        return self.connected.is_set()

    def subscribe(self, topic: str, qos: int = 1, timeout: float = 5.0) -> bool:
        """True when the broker granted the subscription."""
        _result, mid = self.client.subscribe(topic, qos=qos)
        if mid is None:  # not connected: nothing was sent
            return False
        with self._cond:
            if not self._cond.wait_for(lambda: mid in self._acks, timeout):
                return False
            reasons = self._acks.pop(mid)
        return all(not r.is_failure for r in reasons)

    def publish(self, topic: str, payload: Any, qos: int = 1, timeout: float = 5.0) -> None:
        data = payload if isinstance(payload, bytes | str) else jsonlib.dumps(payload)
        info = self.client.publish(topic, data, qos=qos)
        info.wait_for_publish(timeout)

    def wait_message(
        self, predicate: Callable[[Message], bool] = lambda _m: True, timeout: float = 5.0
    ) -> Message | None:
        """The first message (in arrival order) matching `predicate`; others are dropped."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                message = self.messages.get(timeout=left)
            except queue.Empty:
                return None
            if predicate(message):
                return message

    def close(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()


# -- devices in IoT --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ThingCert:
    """A thing with an ACTIVE certificate attached and the device policy on it, as provisioning leaves."""

    thing: str
    certificate_id: str
    certificate_arn: str
    cert: IssuedCert  # with cert_file / key_file, for MqttClient


def provision_thing(cloud: Any, thing: str, *, mode: str = "aws", status: str = "ACTIVE") -> ThingCert:
    """Register `thing` in the cloud's IoT the way the Lambda code does (`mode` "aws":
    CreateCertificateFromCsr; "own-ca": signed by the local CA + RegisterCertificate)."""
    import os

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    from lambdas import definitions as d
    from local.pki import key_pem, new_key

    iot = cloud.aws("iot")
    key = new_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, thing)]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    iot.create_thing(thingName=thing, thingTypeName=d.THING_TYPE_NAME)
    if mode == "aws":
        answer = iot.create_certificate_from_csr(certificateSigningRequest=csr)
        pem = answer["certificatePem"]
    else:
        pem = cloud.ca.sign_csr(csr, thing).cert_pem
        answer = iot.register_certificate(
            certificatePem=pem, caCertificatePem=cloud.ca_pem, status="INACTIVE"
        )
    iot.attach_policy(policyName=d.POLICY_NAME, target=answer["certificateArn"])
    iot.attach_thing_principal(thingName=thing, principal=answer["certificateArn"])
    if status != "INACTIVE":
        iot.update_certificate(certificateId=answer["certificateId"], newStatus=status)
    directory = Path(cloud.state_dir) / "clients"
    directory.mkdir(mode=0o700, exist_ok=True)
    stem = f"{thing}-{uuid.uuid4().hex[:8]}"
    cert_file, key_file = directory / f"{stem}.pem", directory / f"{stem}.key"
    cert_file.write_text(pem)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_pem(key))
    serial = x509.load_pem_x509_certificate(pem.encode()).serial_number
    issued = IssuedCert(thing, serial, pem, key_pem(key).decode(), cert_file, key_file)
    return ThingCert(thing, answer["certificateId"], answer["certificateArn"], issued)
