"""Driving the service in-process (over the unit tests' `aws` moto fixture) the way devices and owners do.

`Lab` mints devices like the CLI, claims them like the owner API, and polls/acks with signed device API
events like the agent. Owner calls go through the owner API handler; a Lambda container runs one
invocation at a time and Powertools' resolver keeps the current event in a module global, so threaded
tests call `owner_call` under one lock (like one container) or the logic functions directly.
"""

from __future__ import annotations

import http.client
import json
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from firmware.identity import DeviceKey, sign_request
from lambdas.handlers import device_api, owner_api
from lambdas.logic import claims, invariants
from lambdas.logic.manufacturing import mint_device
from tests import rawdb as devices
from tests.unit.lambdas.conftest import make_csr, owner_event, signed_event

POLL = "/v1/device/poll"
ACK = "/v1/device/ack"
DEVICE_IP = "203.0.113.50"
OWNER_IP = "198.51.100.50"

_OWNER_API = threading.Lock()


@dataclass
class Device:
    device_id: str
    key: Any  # the device's private key (cryptography object)
    claim_code: str  # canonical 10 characters
    display_code: str  # XXXXX-XXXXX, as on the label
    private_key_pem: str


def answer(raw: dict[str, Any]) -> tuple[int, Any]:
    body = raw.get("body") or ""
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = body
    return raw["statusCode"], parsed


class Lab:
    def __init__(self) -> None:
        self.published: list[tuple[str, Any]] = []  # MQTT messages the service sent (not delivered)

    def mint(self, board: str = "security-lab") -> Device:
        minted = mint_device(None, board, "manufacturer")
        assert minted.private_key_pem is not None
        key = load_pem_private_key(minted.private_key_pem.encode(), None)
        return Device(minted.device_id, key, minted.claim_code, minted.display_code, minted.private_key_pem)

    def claim(self, device: Device, owner: str, ip: str = OWNER_IP) -> dict[str, Any]:
        view, _ = claims.claim_device(owner, f"{owner}@example.com", device.display_code, None, ip)
        return view

    def claimed(self, owner: str = "owner-1") -> Device:
        device = self.mint()
        self.claim(device, owner)
        return device

    def poll(self, device: Device, csr: bool = True, ip: str = DEVICE_IP, **extra: Any) -> tuple[int, Any]:
        body: dict[str, Any] = {"attempt": 0, "agent": {"version": "lab"}, **extra}
        if csr:
            body["csr"] = make_csr(device.key, device.device_id)
        event = signed_event("POST", POLL, body, device.key, device.device_id, source_ip=ip)
        return answer(device_api.handler(event, None))

    def device_call(
        self, path: str, body: dict[str, Any], key: Any, device_id: str, ip: str = DEVICE_IP
    ) -> tuple[int, Any]:
        """Any signed device route, signed with `key` (a rotation signs with the new key too)."""
        return answer(
            device_api.handler(signed_event("POST", path, body, key, device_id, source_ip=ip), None)
        )

    def ack(self, device: Device, certificate_id: str, ip: str = DEVICE_IP) -> tuple[int, Any]:
        event = signed_event(
            "POST", ACK, {"certificateId": certificate_id}, device.key, device.device_id, source_ip=ip
        )
        return answer(device_api.handler(event, None))

    def provision(self, device: Device) -> str:
        """Poll and ack until active; the certificate id."""
        status, body = self.poll(device)
        assert status == 200 and body["status"] == "provisioned", (status, body)
        status, ack_body = self.ack(device, body["certificateId"])
        assert status == 204, (status, ack_body)
        return str(body["certificateId"])

    def active(self, owner: str = "owner-1") -> tuple[Device, str]:
        device = self.claimed(owner)
        return device, self.provision(device)

    def owner_call(
        self, method: str, path: str, owner: str = "owner-1", body: Any = None, ip: str = OWNER_IP
    ) -> tuple[int, Any]:
        with _OWNER_API:
            return answer(owner_api.handler(owner_event(method, path, owner, body, source_ip=ip), None))

    def delete(self, device: Device, owner: str = "owner-1") -> tuple[int, Any]:
        return self.owner_call("DELETE", f"/v1/devices/{device.device_id}", owner)

    def revoke(self, device: Device, owner: str = "owner-1") -> tuple[int, Any]:
        return self.owner_call("POST", f"/v1/devices/{device.device_id}/revoke", owner)

    def release(self, device: Device, owner: str = "owner-1") -> tuple[int, Any]:
        return self.owner_call("POST", f"/v1/devices/{device.device_id}/release", owner)

    # -- registration tokens (design B) --------------------------------------------------------------

    def add_pending(self, owner: str = "owner-1", name: str = "Garage door") -> dict[str, Any]:
        """ "Add device": the pending device with its one-time `registrationToken`."""
        status, body = self.owner_call("POST", "/v1/pending", owner, {"name": name, "board": "esp32"})
        assert status == 201, body
        return dict(body)

    def register(
        self, token: str, key: Any = None, mac: str = "24:6f:28:aa:bb:cc", ip: str = DEVICE_IP
    ) -> tuple[int, Any]:
        key = key or ec.generate_private_key(ec.SECP256R1())
        body = {"registrationToken": token, "mac": mac, "csr": make_csr(key), "board": "esp32"}
        event = signed_event("POST", "/v1/device/register", body, None, "", source_ip=ip)
        return answer(device_api.handler(event, None))

    def registered(self, owner: str = "owner-1") -> tuple[Device, dict[str, Any]]:
        """A device onboarded with a registration token (claimed by `owner`), and its pending item."""
        added = self.add_pending(owner)
        key = ec.generate_private_key(ec.SECP256R1())
        status, body = self.register(added["registrationToken"], key)
        assert status == 201, body
        pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
        return Device(str(body["deviceId"]), key, "", "", pem), added

    def record(self, device: Device) -> dict[str, Any] | None:
        return devices.get(device.device_id, consistent=True)

    def state(self, device: Device) -> str | None:
        record = self.record(device)
        return None if record is None else str(record.get("state"))


def assert_consistent() -> None:
    """The invariant checker finds nothing."""
    problems = invariants.check()
    assert problems == [], "\n".join(str(p) for p in problems)


def problems_now() -> set[str]:
    return {str(p) for p in invariants.check()}


def assert_no_new_problems(before: set[str]) -> None:
    """Against the shared embedded cloud (other tests on this worker may have left their own
    inconsistencies on purpose): nothing the test did made it inconsistent."""
    new = sorted(problems_now() - before)
    assert not new, "\n".join(new)


# --- against the embedded cloud (real HTTP through the local gateway) ----------------------------------


def fresh_loopback() -> str:
    """A loopback address of its own (127.x.y.z), so that a test's failed attempts are counted for a
    source IP no other test uses (the rate limits are per source IP, and the cloud lives per worker)."""
    return f"127.{secrets.randbelow(250) + 2}.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"


class LoopbackClient:
    """Plain HTTP to the gateway from a chosen loopback source address."""

    def __init__(self, base_url: str, source_ip: str | None = None) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.source_ip = source_ip or fresh_loopback()

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], Any]:
        connection = http.client.HTTPConnection(
            self.host, self.port, timeout=30, source_address=(self.source_ip, 0)
        )
        try:
            connection.request(method, path, body=body, headers=headers or {})
            reply = connection.getresponse()
            raw = reply.read()
            headers_out = {k.lower(): v for k, v in reply.getheaders()}
        finally:
            connection.close()
        try:
            parsed: Any = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode("utf-8", "replace")
        return reply.status, headers_out, parsed

    def signed(
        self, device_id: str, private_key_pem: str, path: str, payload: Any, timestamp: int | None = None
    ) -> tuple[int, dict[str, str], Any]:
        """A device request signed like the agent signs it (firmware.identity.sign_request)."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        stamp = int(time.time()) if timestamp is None else timestamp
        headers = {
            "Content-Type": "application/json",
            "X-Device-Id": device_id,
            "X-Timestamp": str(stamp),
            "X-Signature": sign_request(DeviceKey.from_pem(private_key_pem), "POST", path, stamp, body),
        }
        return self.request("POST", path, body, headers)
