"""`lambdas.logic.repair`: what an interrupted change leaves in IoT is repaired, idempotently, and what
needs the owner is reported, never guessed (in-process moto, the service driven like devices/owners)."""

from __future__ import annotations

from typing import Any

import pytest

from lambdas import definitions as d
from lambdas.adapters import iot as iot_adapter
from lambdas.logic import invariants, repair
from tests.security.flows import Lab, assert_consistent


def _kinds() -> set[str]:
    return {p.kind for p in invariants.check()}


def _drop_record(aws: Any, device_id: str) -> None:
    """What a crash between removing the record and the thing leaves: IoT things with no record."""
    aws.ddb.delete_item(TableName=aws.tables["Devices"], Key={"deviceId": {"S": device_id}})


def test_an_orphan_thing_and_its_certificate_are_removed(lab: Lab, aws: Any) -> None:
    device, certificate_id = lab.active()
    _drop_record(aws, device.device_id)
    assert {"thing-orphan", "certificate-orphan"} <= _kinds()

    outcomes = repair.repair()
    assert outcomes and all(
        o.done for o in outcomes if o.problem.kind in ("thing-orphan", "certificate-orphan")
    )
    assert not {"thing-orphan", "certificate-orphan"} & _kinds()
    assert iot_adapter.describe_certificate(certificate_id) is None
    assert device.device_id in aws.dropped_connections  # it was ACTIVE: DeleteConnection first


def test_a_revoked_device_whose_certificate_is_active_is_revoked_and_disconnected(lab: Lab, aws: Any) -> None:
    device, certificate_id = lab.active()
    assert lab.revoke(device)[0] == 200
    aws.iot.update_certificate(certificateId=certificate_id, newStatus="ACTIVE")  # a revoke that half failed
    aws.dropped_connections.clear()
    assert "certificate-status" in _kinds()

    outcomes = repair.repair()
    assert [o.done for o in outcomes] == [True, True]  # reported twice (status, recorded status), fixed once
    assert_consistent()
    assert aws.dropped_connections == [device.device_id]


def test_a_missing_policy_and_attachment_are_restored(lab: Lab, aws: Any) -> None:
    device, certificate_id = lab.active()
    arn = iot_adapter.certificate_arn(certificate_id)
    aws.iot.detach_policy(policyName=d.POLICY_NAME, target=arn)
    aws.iot.detach_thing_principal(thingName=device.device_id, principal=arn)
    assert {"policy-missing", "certificate-detached"} <= _kinds()
    repair.repair()
    assert_consistent()


def test_a_claimed_devices_leftover_is_left_for_its_next_poll(lab: Lab, aws: Any) -> None:
    device = lab.claimed()
    iot_adapter.ensure_thing(device.device_id, {"latchkey": "device"})
    from tests.unit.lambdas.conftest import make_csr

    leftover, _pem = iot_adapter.create_certificate(make_csr(device.key, device.device_id), device.device_id)
    iot_adapter.attach(device.device_id, leftover)  # an interrupted poll: attached, not recorded
    outcomes = repair.repair()
    assert [(o.problem.kind, o.done) for o in outcomes] == [("certificate-orphan", False)]
    assert "next poll" in outcomes[0].description
    status, body = lab.poll(device)
    assert status == 200 and body["certificateId"] == leftover  # adopted
    assert_consistent()


def test_dry_run_changes_nothing_and_a_second_run_finds_nothing(lab: Lab, aws: Any) -> None:
    device, _ = lab.active()
    _drop_record(aws, device.device_id)
    before = invariants.check()
    planned = repair.repair(dry_run=True)
    assert [o.problem for o in planned] == before and not any(o.done for o in planned)
    assert invariants.check() == before
    repair.repair()
    assert not {"thing-orphan", "certificate-orphan"} & _kinds()
    assert all(o.problem.kind.startswith("audit") for o in repair.repair())  # only what needs a person


def test_iot_still_busy_is_an_outcome_not_an_exception(
    lab: Lab, aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    device, _ = lab.active()
    _drop_record(aws, device.device_id)

    real = iot_adapter.remove_certificate_and_thing
    busy = [True]

    def still_detaching(*args: Any, **kwargs: Any) -> None:
        if busy[0]:
            raise iot_adapter.IotUnavailable("IoT is still finishing a detach; retry shortly.")
        real(*args, **kwargs)

    monkeypatch.setattr(iot_adapter, "remove_certificate_and_thing", still_detaching)
    outcomes = [o for o in repair.repair() if o.problem.kind == "thing-orphan"]
    assert outcomes and not outcomes[0].done and "retry" in (outcomes[0].error or "")
    busy[0] = False
    repair.repair()
    assert "thing-orphan" not in _kinds()


def test_what_needs_the_owner_is_reported_not_guessed(lab: Lab, aws: Any) -> None:
    device, certificate_id = lab.active()
    aws.iot.update_certificate(certificateId=certificate_id, newStatus="REVOKED")  # a delete or release?
    outcomes = repair.repair()
    assert outcomes and not any(o.done for o in outcomes)
    assert all(o.description == "not repaired automatically" for o in outcomes)
    assert lab.state(device) == "active"


def test_an_active_leftover_on_a_claimed_devices_thing_is_revoked_and_removed(lab: Lab, aws: Any) -> None:
    # Only an INACTIVE leftover is adopted by the next poll; an ACTIVE one is a live credential, so
    # "left for the next poll" would leave it usable forever (the broker admits it as that thing).
    device = lab.claimed()
    iot_adapter.ensure_thing(device.device_id, {"latchkey": "device"})
    from tests.unit.lambdas.conftest import make_csr

    leftover, _pem = iot_adapter.create_certificate(make_csr(device.key, device.device_id), device.device_id)
    iot_adapter.attach(device.device_id, leftover)
    aws.iot.update_certificate(certificateId=leftover, newStatus="ACTIVE")
    assert {"certificate-orphan", "certificate-usable"} <= _kinds()
    outcomes = repair.repair()
    assert outcomes and all(o.done for o in outcomes), outcomes
    assert iot_adapter.describe_certificate(leftover) is None
    assert_consistent()
    status, body = lab.poll(device)
    assert status == 200 and body["certificateId"] != leftover  # a fresh certificate
    assert_consistent()


def test_a_provisioned_devices_active_certificate_is_left_for_its_ack(lab: Lab, aws: Any) -> None:
    # An ack that activated the certificate but did not write the record: the retried ack finishes it.
    device = lab.claimed()
    status, body = lab.poll(device)
    assert status == 200
    aws.iot.update_certificate(certificateId=body["certificateId"], newStatus="ACTIVE")
    usable = [o for o in repair.repair() if o.problem.kind == "certificate-usable"]
    assert usable and not usable[0].done and "left for the ack" in usable[0].description
    assert lab.ack(device, body["certificateId"])[0] == 204
    assert_consistent()
