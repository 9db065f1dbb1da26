"""Registration token, end to end: "Add device" → the real agent with the downloaded config registers,
is claimed automatically, receives its certificate and comes online over mutual TLS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from lambdas import constants as c
from lambdas.logic import registration
from local.testing import wait_until
from tests.conftest import TEST_AGENT_SETTINGS, random_mac
from tests.unit.lambdas.conftest import make_csr


def _register(http: Any, token: str, mac: str) -> int:
    key = ec.generate_private_key(ec.SECP256R1())
    body = {"registrationToken": token, "mac": mac, "csr": make_csr(key), "board": "esp32"}
    return http.post("/v1/device/register", json=body).status


def test_added_device_registers_is_claimed_and_comes_online(
    cloud: Any, owner: Any, http: Any, start_agent: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    # Given: the owner adds a device and downloads its agent configuration
    status, added = owner.request("POST", "/v1/pending", {"name": "Shed", "board": "python-agent"})
    assert status == 201, added
    downloaded = added["config"]["agentToml"]
    assert cloud.gateway_url in downloaded  # the device is told where the API is
    mac = random_mac()
    home = tmp_path / "shed"
    home.mkdir()
    extra = "".join(f"{k} = {v}\n" for k, v in TEST_AGENT_SETTINGS.items())
    (home / "agent.toml").write_text(downloaded + f'mac = "{mac}"\nstate_dir = "state"\n' + extra)

    # When: the real agent boots with it
    agent = start_agent.run(home / "agent.toml")

    # Then: it registers, is claimed by the owner, gets its certificate and comes online
    def online() -> dict[str, Any] | None:
        _, body = owner.request("GET", "/v1/devices")
        return next((d for d in body["devices"] if d["name"] == "Shed" and d["presence"] == "online"), None)

    device = wait_until(online, timeout=60, interval=0.5)
    assert device["state"] == c.STATE_ACTIVE and device["certificate"]["status"] == "ACTIVE"
    assert device["mac"] == mac
    assert agent.poll() is None
    identity = (home / "state" / "device_key.pem").read_bytes()
    assert b"PRIVATE KEY" in identity  # the key was made on the device and stayed there
    assert owner.request("GET", "/v1/pending")[1]["pending"] == []

    # The same token again: 410 from the bound MAC, 409 from another MAC
    token = added["registrationToken"]
    assert _register(http, token, mac) == 410
    assert _register(http, token, random_mac()) == 409

    # A fresh token after 24 hours: 401
    _, later = owner.request("POST", "/v1/pending", {"name": "Late", "board": "esp32"})
    real_now = registration.now()
    monkeypatch.setattr(registration, "now", lambda: real_now + c.REGISTRATION_TOKEN_TTL_SECONDS + 1)
    assert _register(http, later["registrationToken"], random_mac()) == 401


def test_public_key_of_registered_device_is_the_agents(cloud: Any, owner: Any, http: Any) -> None:
    _, added = owner.request("POST", "/v1/pending", {"name": "Key check", "board": "esp32"})
    key = ec.generate_private_key(ec.SECP256R1())
    body = {"registrationToken": added["registrationToken"], "mac": random_mac(), "csr": make_csr(key)}
    answer = http.post("/v1/device/register", json=body)
    assert answer.status == 201
    from tests import rawdb as devices

    stored = devices.get(answer.json()["deviceId"], consistent=True)
    expected = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    assert stored["publicKeyPem"] == expected and stored["ownerId"] == owner.sub
