"""The invariant checker finds each kind of inconsistency; provisioning converges after a fault at any
AWS call, and races between owners, polls and deletes leave no inconsistency behind."""

from __future__ import annotations

import threading

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from click.testing import CliRunner

from cli.main import cli
from lambdas import constants as c
from lambdas.adapters import iot
from lambdas.dal import devices
from lambdas.errors import LatchkeyError
from lambdas.handlers import owner_api
from lambdas.logic import claims, invariants
from tests.unit.lambdas.conftest import owner_event
from tests.unit.lambdas.test_provisioning import (
    DEVICE,
    ack,
    call,
    poll,
)


def provision(aws, signed_event, key, device_id=DEVICE):
    status, body = poll(signed_event, key, device_id)
    assert status == 200 and body["status"] == "provisioned", body
    assert ack(signed_event, key, body["certificateId"], device_id)[0] == 204
    return body["certificateId"]


@pytest.fixture
def claimed(aws, device_key):
    aws.put_device(DEVICE, device_key, state="claimed", ownerId="owner-1")


def test_clean_after_a_normal_life(aws, signed_event, device_key, claimed):
    provision(aws, signed_event, device_key)
    assert invariants.check() == []


def test_each_inconsistency_is_reported(aws, signed_event, device_key, claimed):
    cert_id = provision(aws, signed_event, device_key)
    # Given: a stranger's thing, an orphan ACTIVE certificate, and a device naming a missing certificate
    aws.iot.create_thing(thingName="lk-stray00000000000")
    orphan = aws.iot.create_keys_and_certificate(setAsActive=True)["certificateId"]
    devices.update(DEVICE, {"certificateId": "f" * 64})
    found = {str(p) for p in invariants.check()}
    assert any("lk-stray00000000000" in p and "no device record" in p for p in found)
    assert any(orphan in p and "no device names it" in p for p in found)
    assert any(DEVICE in p and "does not exist" in p for p in found)
    assert any(cert_id in p and "does not name it" in p for p in found)
    # A revoked device whose certificate is still ACTIVE, and a claimed device without owner
    devices.update(DEVICE, {"certificateId": cert_id, "state": c.STATE_REVOKED})
    devices.update(DEVICE, {c.DEVICE_OWNER_KEY: None, "state": c.STATE_REVOKED})
    assert any("is revoked but certificate" in str(p) for p in invariants.check())


def test_doctor_command(aws, signed_event, device_key, claimed):
    provision(aws, signed_event, device_key)
    runner = CliRunner()
    clean = runner.invoke(cli, ["doctor"])
    assert clean.exit_code == 0 and "No problems found." in clean.output
    aws.iot.create_thing(thingName="lk-stray00000000000")
    dirty = runner.invoke(cli, ["doctor"])
    assert dirty.exit_code == 1 and "lk-stray00000000000" in dirty.output


FAULTS = {
    "throttled": lambda: ClientError(
        {"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "Op"
    ),
    "timeout": lambda: EndpointConnectionError(endpoint_url="https://iot.invalid"),
    "crash": lambda: RuntimeError("the Lambda was killed here"),
}
STEPS = [
    (iot, "ensure_thing"),
    (iot, "create_certificate"),
    (iot, "attach"),
    (devices, "update"),
    (iot, "activate_certificate"),
]


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize(("module", "name"), STEPS, ids=[n for _, n in STEPS])
def test_a_fault_at_any_step_converges_on_retry(
    aws, signed_event, device_key, claimed, monkeypatch, module, name, fault
):
    real = getattr(module, name)
    failures = {"left": 1}

    def flaky(*args, **kwargs):
        if failures["left"]:
            failures["left"] -= 1
            raise FAULTS[fault]()
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, flaky)
    # When: the device polls and acks until it is through (bounded)
    answers = []
    for _ in range(5):
        status, body = poll(signed_event, device_key)
        answers.append(status)
        if status == 200 and body["status"] == "provisioned":
            acked = ack(signed_event, device_key, body["certificateId"])[0]
            answers.append(acked)
            if acked == 204:
                break
    # Then: the failure was answered as a server error (never a stack trace), and the retry converged
    assert any(code >= 500 for code in answers), answers
    assert devices.get(DEVICE, consistent=True)["state"] == c.STATE_ACTIVE
    assert invariants.check() == []


def test_two_accounts_fifty_parallel_claims_one_winner(aws, device_key):
    from lambdas.logic.manufacturing import mint_device

    minted = mint_device(None, "race", "test")
    results: list[tuple[str, int]] = []

    def claim(sub):
        # The logic, not the handler: a Lambda container runs one invocation at a time, and the
        # Powertools resolver keeps the current event in a module global.
        try:
            claims.claim_device(sub, None, minted.display_code, None, "198.51.100.7")
            results.append((sub, 200))
        except LatchkeyError as exc:
            results.append((sub, exc.status))

    threads = [threading.Thread(target=claim, args=(f"owner-{i % 2}",)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    owner = devices.get(minted.device_id, consistent=True)[c.DEVICE_OWNER_KEY]
    assert {code for sub, code in results if sub == owner} == {200}
    assert {code for sub, code in results if sub != owner} == {409}
    assert invariants.check() == []
    print(
        f"\n50 parallel claims from 2 accounts: winner {owner}, {sum(1 for _, s in results if s == 409)} x 409"
    )


def test_delete_racing_provisioning_polls(aws, signed_event, device_key, claimed):
    done = threading.Event()

    def keep_polling():
        for _ in range(20):
            if done.is_set():
                return
            poll(signed_event, device_key)

    poller = threading.Thread(target=keep_polling)
    poller.start()
    status = owner_api.handler(owner_event("DELETE", f"/v1/devices/{DEVICE}", "owner-1"), None)["statusCode"]
    done.set()
    poller.join(30)
    assert status in (200, 204)
    # Whatever the interleaving: the device is gone and nothing of it is left in IoT
    assert devices.get(DEVICE, consistent=True) is None
    assert call(signed_event("POST", "/v1/device/poll", {"attempt": 1}, device_key, DEVICE))[0] == 404
    assert invariants.check() == []
