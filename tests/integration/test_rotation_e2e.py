"""Certificate rotation end to end: moto server, the local gateway, mosquitto behind the strict front door,
and the real agent process.

Given an agent online with certificate A, when its owner asks for a new certificate, then the agent makes
a new key, gets certificate B over the signed device API, connects with B, and the service revokes A:
the broker refuses A from then on while the agent stays online with B. The same holds when the agent is
offline when the owner asks and comes back later (the notice is retained).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from lambdas.logic import invariants
from local.processes import stop_process
from local.testing import MqttClient, wait_until
from tests import rawdb as devices
from tests.integration.test_claim_e2e import _claim_until_online, _credentials, _device_cert


def _state(tmp_path: Path, device_id: str) -> Path:
    return tmp_path / device_id / "state"


def _rotated(device_id: str, old_certificate: str) -> dict[str, Any] | None:
    record = devices.get(device_id, consistent=True) or {}
    done = record.get("certificateId") not in (None, old_certificate) and "rotation" not in record
    return record if done else None


def _refused(cloud: Any, cert: Any) -> bool:
    client = MqttClient(cloud.mqtt_host, cloud.mqtt_port, ca_file=cloud.ca_file, cert=cert)
    try:
        return not client.connect(timeout=3)
    finally:
        client.close()


def _online_with(owner: Any, device_id: str, certificate_id: str) -> bool:
    status, body = owner.request("GET", f"/v1/devices/{device_id}")
    return (
        status == 200
        and body["presence"] == "online"
        and (body["certificate"] or {}).get("id") == certificate_id
        and body["certificate"]["status"] == "ACTIVE"
    )


def _assert_rotated(cloud: Any, owner: Any, tmp_path: Path, minted: Any, cert_a: Any, a_id: str) -> None:
    record = wait_until(lambda: _rotated(minted.device_id, a_id), timeout=90, interval=0.5)
    b_id = record["certificateId"]
    # The agent made a new key: certificate B certifies it, and the record now holds it.
    creds = wait_until(
        lambda: (lambda cr: cr if cr.certificate_id == b_id else None)(
            _credentials(tmp_path, minted.device_id)
        ),
        timeout=30,
    )
    cert_b = x509.load_pem_x509_certificate(creds.certificate_pem.encode())
    spki = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    assert cert_b.public_key().public_bytes(*spki).decode() != minted.public_key_pem
    assert record["publicKeyPem"] == cert_b.public_key().public_bytes(*spki).decode()
    assert (_state(tmp_path, minted.device_id) / "rotated_key.pem").stat().st_mode & 0o777 == 0o600

    # B works: the agent is back online with it. A is revoked: the broker refuses it at connect.
    assert wait_until(lambda: _online_with(owner, minted.device_id, b_id), timeout=60, interval=0.5)
    assert wait_until(lambda: _refused(cloud, cert_a), timeout=15, interval=0.5)
    assert _online_with(owner, minted.device_id, b_id)  # the refused attempt did not disturb B's session

    status, events = owner.request("GET", f"/v1/devices/{minted.device_id}/events")
    assert status == 200
    actions = [e["action"] for e in events["events"]]
    for action in ("certificate.rotation-requested", "certificate.issued", "certificate.activated"):
        assert action in actions
    rotated = next(e for e in events["events"] if e["action"] == "certificate.rotated")
    assert rotated["detail"]["previousCertificateId"] == a_id and rotated["detail"]["certificateId"] == b_id

    # Nothing inconsistent about this device or its certificates.
    mine = {minted.device_id, a_id, b_id}
    assert [str(p) for p in invariants.check() if p.subject in mine] == []


def test_owner_requested_rotation_moves_an_online_agent_to_a_new_key_and_revokes_the_old_certificate(
    cloud: Any, owner: Any, start_agent: Any, tmp_path: Path
) -> None:
    # Given: an agent online with certificate A
    minted, shown = _claim_until_online(cloud, owner, start_agent, tmp_path)
    a_id = shown["certificate"]["id"]
    cert_a = _device_cert(tmp_path, minted, _credentials(tmp_path, minted.device_id))

    # When: the owner asks for a new certificate
    began = time.time()
    status, body = owner.request("POST", f"/v1/devices/{minted.device_id}/rotate")
    assert status == 200, body
    assert body["certificateId"] == a_id and body["rotation"]["step"] == "requested"

    # Then: the agent rotates to B, and A is refused
    _assert_rotated(cloud, owner, tmp_path, minted, cert_a, a_id)
    print(f"\nrotation: request to old certificate refused in {time.time() - began:.1f} s")


def test_an_agent_offline_during_the_request_rotates_when_it_comes_back(
    cloud: Any, owner: Any, start_agent: Any, tmp_path: Path
) -> None:
    minted, shown = _claim_until_online(cloud, owner, start_agent, tmp_path)
    a_id = shown["certificate"]["id"]
    cert_a = _device_cert(tmp_path, minted, _credentials(tmp_path, minted.device_id))
    agent = start_agent.started[-1][0]
    stop_process(agent, timeout=10)
    assert cloud.broker.wait_gone(minted.device_id, timeout=15)

    status, body = owner.request("POST", f"/v1/devices/{minted.device_id}/rotate")
    assert status == 200, body
    # While it is away nothing changes: A stays the device's, and valid.
    time.sleep(1)
    record = devices.get(minted.device_id, consistent=True)
    assert record["certificateId"] == a_id and record["rotation"]["step"] == "requested"
    assert not _refused(cloud, cert_a)

    # The agent comes back (same files), hears the retained notice and rotates.
    start_agent.run(tmp_path / minted.device_id / "agent.toml")
    _assert_rotated(cloud, owner, tmp_path, minted, cert_a, a_id)


def test_rotate_is_refused_for_a_device_that_is_not_active(cloud: Any, owner: Any) -> None:
    from lambdas.logic.manufacturing import mint_device

    minted = mint_device(None, "e2e-board", "e2e-test")
    status, body = owner.request("POST", "/v1/claims", {"claimCode": minted.display_code})
    assert status == 200, body
    status, body = owner.request("POST", f"/v1/devices/{minted.device_id}/rotate")
    assert status == 409 and body["error"] == "conflict", body
    assert json.dumps(body).find("Traceback") == -1
