"""Races: real threads, and every interleaving of an owner action with the provisioning steps.

In-process moto (the `aws` fixture) makes each AWS call atomic, as AWS does, so threads interleave at
API-call granularity like Lambdas do. After each test the invariant checker must find nothing: no
device with two owners, no certificate without a device record, no device pointing at a missing
certificate, no ACTIVE certificate on a revoked device.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from lambdas import constants as c
from lambdas.adapters import iot
from lambdas.dal import audit, pending
from lambdas.dal import devices as dal
from lambdas.errors import LatchkeyError
from lambdas.logic import claims
from tests import rawdb as devices
from tests.security.flows import Device, Lab, assert_consistent


def run_together(*jobs: Callable[[], Any], timeout: float = 60) -> list[Any]:
    """Start every job on its own thread at the same moment; their results (or exceptions)."""
    barrier = threading.Barrier(len(jobs))
    results: list[Any] = [None] * len(jobs)

    def run(i: int, job: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            results[i] = job()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
        assert not thread.is_alive(), "a racing thread hung"
    return results


def iot_leftovers(aws: Any, device_id: str) -> list[str]:
    """The thing and any certificate of this device still in IoT."""
    left = [t["thingName"] for t in aws.iot.list_things()["things"] if t["thingName"] == device_id]
    named = {d.get("certificateId") for d in devices.list_all()}
    left += [
        cert["certificateId"]
        for cert in aws.iot.list_certificates()["certificates"]
        if cert["certificateId"] not in named
    ]
    return left


# --- claims ------------------------------------------------------------------------------------------


def test_same_code_from_two_accounts_fifty_parallel_claims_one_winner(lab: Lab) -> None:
    device = lab.mint()

    def claim(account: str) -> int:
        try:
            claims.claim_device(account, None, device.display_code, None, "198.51.100.7")
        except LatchkeyError as exc:
            return exc.status
        return 200

    accounts = [f"account-{i % 2}" for i in range(50)]
    results = run_together(*[lambda a=a: claim(a) for a in accounts])
    owner = (lab.record(device) or {})[c.DEVICE_OWNER_KEY]
    by_account = {
        a: Counter(r for acc, r in zip(accounts, results, strict=True) if acc == a) for a in set(accounts)
    }
    loser = next(a for a in by_account if a != owner)
    assert by_account[owner] == Counter({200: 25}), by_account
    assert by_account[loser] == Counter({409: 25}), by_account
    claimed_events = [e for e in audit.list_events(device.device_id) if e["action"] == "device.claimed"]
    assert len(claimed_events) == 1 and claimed_events[0]["actor"] == owner
    assert_consistent()
    print(f"\nclaim race: 50 parallel claims of one code from 2 accounts -> 1 owner; {dict(by_account)}")


# --- owner actions racing provisioning (real threads) ---------------------------------------------------

ROUNDS = 8


def _poll_and_ack(lab: Lab, device: Device, delay: float = 0.0) -> list[int]:
    time.sleep(delay)  # staggered, so that the threads meet the owner's action at different steps
    statuses = []
    status, body = lab.poll(device)
    statuses.append(status)
    if status == 200 and body.get("status") == "provisioned":
        statuses.append(lab.ack(device, body["certificateId"])[0])
    return statuses


@pytest.mark.parametrize("action", ["delete", "revoke", "release"])
def test_owner_action_racing_polls_and_acks(lab: Lab, aws: Any, action: str) -> None:
    outcomes: Counter[str] = Counter()
    for round_ in range(ROUNDS):
        device = lab.claimed()

        def owner_action(d: Device = device, wait: float = 0.003 * round_) -> Any:
            time.sleep(wait)  # later each round: it meets the polls at a different step
            return getattr(lab, action)(d)

        results = run_together(
            owner_action, *[lambda d=device, i=i: _poll_and_ack(lab, d, delay=0.002 * i) for i in range(3)]
        )
        assert not any(isinstance(r, Exception) for r in results), results
        owner_status = results[0][0]
        assert owner_status in (200, 204), results[0]
        outcomes.update(str(s) for r in results[1:] for s in r)
        record = lab.record(device)
        if action == "delete":
            assert record is None
            assert device.device_id not in iot_leftovers(aws, device.device_id)
            assert lab.poll(device)[0] == 404
        elif action == "revoke":
            assert record is not None and record["state"] == c.STATE_REVOKED
            assert lab.poll(device)[0] == 403
        else:
            assert record is not None and record["state"] == c.STATE_UNCLAIMED
            assert not record.get("certificateId")
            assert lab.poll(device)[1]["status"] == "unclaimed"
        assert_consistent()
    print(f"\n{action} racing 3 poll+ack threads x {ROUNDS}: device answers {dict(outcomes)}; consistent")


# --- every interleaving, deterministically ------------------------------------------------------------

# The provisioning steps (poll) and the activation (ack) an owner action can fall between.
STEPS = {
    "after ensure_thing": (iot, "ensure_thing"),
    "after create_certificate": (iot, "create_certificate"),
    "after attach": (iot, "attach"),
    "after the provisioned record": (dal, "transition"),
    "after activate_certificate": (iot, "activate_certificate"),
}
EXPECTED = {"delete": None, "revoke": c.STATE_REVOKED, "release": c.STATE_UNCLAIMED}


def _device_then_owner(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, device: Device, module: Any, name: str, action: str
) -> None:
    """Provision (poll, ack) with the owner's action run right after step `name` returns."""
    real = getattr(module, name)
    fired: list[Any] = []

    def step(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        is_step = name != "transition" or (args[1] if len(args) > 1 else kwargs.get("name")) == "provision"
        if is_step and not fired:
            fired.append(getattr(lab, action)(device))
        return result

    with monkeypatch.context() as patched:
        patched.setattr(module, name, step)
        _poll_and_ack(lab, device)
    assert fired and fired[0][0] in (200, 204), fired


def _owner_then_device(lab: Lab, monkeypatch: pytest.MonkeyPatch, device: Device, action: str) -> None:
    """The owner's action with a whole provisioning (poll, ack) run just before its final write."""
    fired: list[Any] = []
    module, name = dal, "transition"
    real = getattr(module, name)

    def write(*args: Any, **kwargs: Any) -> Any:
        owners_write = (args[1] if len(args) > 1 else kwargs.get("name")) == action
        if owners_write and not fired:
            fired.append(None)
            fired[0] = _poll_and_ack(lab, device)
        return real(*args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(module, name, write)
        status, body = getattr(lab, action)(device)
    assert status in (200, 204), body
    assert fired == [[200, 204]], fired  # the device really got through in between


@pytest.mark.parametrize("action", sorted(EXPECTED))
@pytest.mark.parametrize("where", [*STEPS, "owner first, provisioning before its write"])
def test_every_interleaving_of_owner_action_and_provisioning(
    lab: Lab, aws: Any, monkeypatch: pytest.MonkeyPatch, action: str, where: str
) -> None:
    device = lab.claimed()
    if where in STEPS:
        module, name = STEPS[where]
        if name == "activate_certificate":  # the owner acts between the ack's two writes
            status, body = lab.poll(device)
            assert status == 200
            with monkeypatch.context() as patched:
                real = iot.activate_certificate
                fired: list[Any] = []

                def activate(certificate_id: str) -> None:
                    real(certificate_id)
                    fired.append(getattr(lab, action)(device))

                patched.setattr(iot, "activate_certificate", activate)
                acked = lab.ack(device, body["certificateId"])[0]
            assert fired and acked in (403, 404, 409), (acked, fired)
        else:
            _device_then_owner(lab, monkeypatch, device, module, name, action)
    else:
        _owner_then_device(lab, monkeypatch, device, action)
    assert lab.state(device) == EXPECTED[action]
    if action == "delete":
        assert lab.poll(device)[0] == 404
        assert iot_leftovers(aws, device.device_id) == []
    assert_consistent()


# --- registration tokens ----------------------------------------------------------------------------------


def test_twenty_parallel_registrations_of_one_token_make_one_device(lab: Lab) -> None:
    added = lab.add_pending()
    macs = [f"24:6f:28:00:00:{i:02x}" for i in range(20)]
    results = run_together(*[lambda m=m: lab.register(added["registrationToken"], mac=m) for m in macs])
    statuses = Counter(r[0] for r in results)
    assert statuses[201] == 1 and set(statuses) <= {201, 409, 410}, statuses
    assert len(devices.list_all()) == 1
    assert_consistent()
    print(f"\nregister race: 20 parallel registrations of one token -> {dict(statuses)}")


def test_a_device_retrying_registration_in_parallel_gets_one_id(lab: Lab) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    added = lab.add_pending()
    key = ec.generate_private_key(ec.SECP256R1())
    results = run_together(*[lambda: lab.register(added["registrationToken"], key) for _ in range(10)])
    assert {r[0] for r in results} == {201}
    assert len({r[1]["deviceId"] for r in results}) == 1
    assert_consistent()


def test_register_racing_pending_delete(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    added = lab.add_pending()
    real = pending.delete
    fired: list[Any] = []

    def delete(*args: Any, **kwargs: Any) -> None:
        fired.append(lab.register(added["registrationToken"]))
        real(*args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(pending, "delete", delete)
        assert lab.owner_call("DELETE", f"/v1/pending/{added['id']}")[0] == 204
    assert fired[0][0] == 201  # registered just before the pending item went: an owned, working device
    assert_consistent()


def test_register_racing_token_regeneration(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    added = lab.add_pending()
    real = pending.update
    fired: list[Any] = []

    def update(*args: Any, **kwargs: Any) -> Any:
        if not fired:  # the regeneration read the item; now the device registers with the old token
            fired.append(lab.register(added["registrationToken"]))
        return real(*args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(pending, "update", update)
        status, _ = lab.owner_call("POST", f"/v1/pending/{added['id']}/token")
    assert status in (200, 409)
    assert fired[0][0] == 201
    assert_consistent()  # the device registered with the revoked token must not stay claimed
