"""The invariant checker (lambdas/logic/invariants.py) and `latchkey doctor`: clean after every kind of
device life, and each kind of inconsistency is reported, with its subject."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner

from cli.main import cli
from lambdas import constants as c
from lambdas.adapters import iot
from lambdas.dal import ddb, pending
from lambdas.logic import invariants
from tests import rawdb as devices
from tests.security.flows import Lab, assert_consistent
from tests.unit.lambdas.conftest import make_csr


def test_clean_after_every_kind_of_life(lab: Lab) -> None:
    lab.mint()  # unclaimed
    lab.claimed()  # claimed, never polled
    provisioned = lab.claimed()
    assert lab.poll(provisioned)[0] == 200  # provisioned, not acknowledged yet
    lab.active()
    revoked, _ = lab.active()
    assert lab.revoke(revoked)[0] == 200
    released, _ = lab.active()
    assert lab.release(released)[0] == 200
    deleted, _ = lab.active()
    assert lab.delete(deleted)[0] == 204
    registered, _ = lab.registered()
    lab.provision(registered)
    lab.add_pending()  # waiting for its device
    regenerated, added = lab.registered()
    assert lab.owner_call("POST", f"/v1/pending/{added['id']}/token")[0] == 200  # retires the device
    assert lab.state(regenerated) is None
    assert_consistent()
    snapshot = invariants.inventory()
    assert len(snapshot.devices) == 7 and len(snapshot.pending) == 3


# --- each kind of inconsistency ----------------------------------------------------------------------


def _active(lab: Lab) -> tuple[str, str]:
    device, certificate_id = lab.active()
    return device.device_id, certificate_id


def _arn(certificate_id: str) -> str:
    return iot.certificate_arn(certificate_id)


def _put_audit(aws: Any, item: dict[str, Any]) -> None:
    aws.ddb.put_item(TableName=aws.tables["AuditEvents"], Item=ddb.to_item(item))


def _events(aws: Any, device_id: str) -> list[dict[str, Any]]:
    answer = aws.ddb.query(
        TableName=aws.tables["AuditEvents"],
        KeyConditionExpression="deviceId = :d",
        ExpressionAttributeValues={":d": {"S": device_id}},
    )
    return [ddb.from_item(i) for i in answer["Items"]]


def break_state(lab: Lab, aws: Any) -> str:
    device_id = lab.mint().device_id
    devices.update(device_id, {"state": "limbo"})
    return device_id


def break_owner_missing(lab: Lab, aws: Any) -> str:
    device_id, _ = _active(lab)
    devices.update(device_id, {c.DEVICE_OWNER_KEY: None})
    return device_id


def break_owner_on_unclaimed(lab: Lab, aws: Any) -> str:
    device_id = lab.mint().device_id
    devices.update(device_id, {c.DEVICE_OWNER_KEY: "owner-x"})
    return device_id


def break_certificate_too_early(lab: Lab, aws: Any) -> str:
    device_id = lab.claimed().device_id
    devices.update(device_id, {"certificateId": "f" * 64})
    return device_id


def break_certificate_missing(lab: Lab, aws: Any) -> str:
    device_id, _ = _active(lab)
    devices.update(device_id, {"certificateId": "e" * 64})
    return device_id


def break_certificate_status(lab: Lab, aws: Any) -> str:
    device_id, certificate_id = _active(lab)
    aws.iot.update_certificate(certificateId=certificate_id, newStatus="INACTIVE")
    return device_id


def break_revoked_but_active(lab: Lab, aws: Any) -> str:
    device_id, _ = _active(lab)
    devices.update(device_id, {"state": c.STATE_REVOKED})  # the record only: IoT still says ACTIVE
    return device_id


def break_thing_name(lab: Lab, aws: Any) -> str:
    device_id, _ = _active(lab)
    devices.update(device_id, {"thingName": "lk-someoneelse0000"})
    return device_id


def break_thing_missing(lab: Lab, aws: Any) -> str:
    device_id, certificate_id = _active(lab)
    aws.iot.detach_thing_principal(thingName=device_id, principal=_arn(certificate_id))
    aws.iot.delete_thing(thingName=device_id)
    return device_id


def break_certificate_detached(lab: Lab, aws: Any) -> str:
    device_id, certificate_id = _active(lab)
    aws.iot.detach_thing_principal(thingName=device_id, principal=_arn(certificate_id))
    return device_id


def break_policy_missing(lab: Lab, aws: Any) -> str:
    device_id, certificate_id = _active(lab)
    aws.iot.detach_policy(policyName=iot.policy_name(), target=_arn(certificate_id))
    return device_id


def break_policy_extra(lab: Lab, aws: Any) -> str:
    device_id, certificate_id = _active(lab)
    everything = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}],
    }
    aws.iot.create_policy(policyName="Everything", policyDocument=json.dumps(everything))
    aws.iot.attach_policy(policyName="Everything", target=_arn(certificate_id))
    return device_id


def break_certificate_shared(lab: Lab, aws: Any) -> str:
    _, certificate_id = _active(lab)
    other, _ = _active(lab)
    devices.update(other, {"certificateId": certificate_id})
    return certificate_id


def break_thing_orphan(lab: Lab, aws: Any) -> str:
    aws.iot.create_thing(thingName="lk-stray00000000000")
    return "lk-stray00000000000"


def break_certificate_orphan_unattached(lab: Lab, aws: Any) -> str:
    # What a crash right after issuing leaves behind; activated here to make it a live credential.
    device = lab.claimed()
    certificate_id, _ = iot.create_certificate(make_csr(device.key), device.device_id)
    aws.iot.update_certificate(certificateId=certificate_id, newStatus="ACTIVE")
    return certificate_id


def break_certificate_orphan_attached(lab: Lab, aws: Any) -> str:
    device = lab.claimed()
    iot.ensure_thing(device.device_id)
    certificate_id, _ = iot.create_certificate(make_csr(device.key), device.device_id)
    iot.attach(device.device_id, certificate_id)
    return certificate_id


def break_certificate_multi_thing(lab: Lab, aws: Any) -> str:
    _, certificate_id = _active(lab)
    other, _ = _active(lab)
    aws.iot.attach_thing_principal(thingName=other, principal=_arn(certificate_id))
    return certificate_id


def break_policy_absent(lab: Lab, aws: Any) -> str:
    name = iot.policy_name()
    for target in aws.iot.list_targets_for_policy(policyName=name)["targets"]:
        aws.iot.detach_policy(policyName=name, target=target)
    aws.iot.delete_policy(policyName=name)
    return name


def break_registration_stale(lab: Lab, aws: Any) -> str:
    device, added = lab.registered()
    pending.update(added["id"], {"deviceId": None, "state": "pending"})  # regenerated, device not retired
    return device.device_id


def break_pending_state(lab: Lab, aws: Any) -> str:
    added = lab.add_pending()
    pending.update(added["id"], {"state": "half-done"})
    return str(added["id"])


def break_pending_device(lab: Lab, aws: Any) -> str:
    _, added = lab.registered()
    pending.update(added["id"], {"deviceId": None})
    return str(added["id"])


def break_pending_token_shared(lab: Lab, aws: Any) -> str:
    added = lab.add_pending()
    item = pending.get(added["id"])
    assert item is not None
    pending.create({**item, c.PENDING_PK: "pd-copy000000000000"})
    return "pd-copy000000000000"


def break_pending_device_shared(lab: Lab, aws: Any) -> str:
    device, _ = lab.registered()
    other = lab.add_pending()
    pending.update(other["id"], {"deviceId": device.device_id, "state": "registered"})
    return device.device_id


def break_audit_malformed(lab: Lab, aws: Any) -> str:
    device_id = lab.mint().device_id
    _put_audit(aws, {"deviceId": device_id, "eventKey": "2026-01-01T00:00:00Z#x", "action": "device.touched"})
    return device_id


def break_audit_secret(lab: Lab, aws: Any) -> str:
    device = lab.mint()
    event = {
        "deviceId": device.device_id,
        "eventKey": "2026-01-01T00:00:00Z#y",
        "at": "2026-01-01T00:00:00Z",
        "action": "device.noted",
        "actor": "operator",
        "detail": {"note": device.private_key_pem},
    }
    _put_audit(aws, event)
    return device.device_id


def break_audit_missing(lab: Lab, aws: Any) -> str:
    device_id, _ = _active(lab)
    claimed = next(e for e in _events(aws, device_id) if e["action"] == "device.claimed")
    aws.ddb.delete_item(
        TableName=aws.tables["AuditEvents"],
        Key=ddb.to_item({"deviceId": device_id, "eventKey": claimed["eventKey"]}),
    )
    return device_id


def break_usable_second_certificate(lab: Lab, aws: Any) -> str:
    # A second live credential for one device: ACTIVE, on its thing, with the device policy.
    device, _ = lab.active()
    certificate_id, _ = iot.create_certificate(make_csr(device.key), device.device_id)
    iot.attach(device.device_id, certificate_id)
    aws.iot.update_certificate(certificateId=certificate_id, newStatus="ACTIVE")
    return certificate_id


def break_usable_on_claimed(lab: Lab, aws: Any) -> str:
    device = lab.claimed()
    iot.ensure_thing(device.device_id)
    certificate_id, _ = iot.create_certificate(make_csr(device.key), device.device_id)
    iot.attach(device.device_id, certificate_id)
    aws.iot.update_certificate(certificateId=certificate_id, newStatus="ACTIVE")
    return certificate_id


BREAKS: dict[str, tuple[str, Callable[[Lab, Any], str]]] = {
    "unknown state": ("device-state", break_state),
    "owned state without owner": ("owner-missing", break_owner_missing),
    "unclaimed with owner": ("owner-on-unclaimed", break_owner_on_unclaimed),
    "claimed naming a certificate": ("certificate-too-early", break_certificate_too_early),
    "active naming a missing certificate": ("certificate-missing", break_certificate_missing),
    "active with INACTIVE certificate": ("certificate-status", break_certificate_status),
    "revoked with ACTIVE certificate": ("certificate-status", break_revoked_but_active),
    "thing named after another device": ("thing-name", break_thing_name),
    "active without thing": ("thing-missing", break_thing_missing),
    "certificate detached from thing": ("certificate-detached", break_certificate_detached),
    "certificate without device policy": ("policy-missing", break_policy_missing),
    "certificate with an extra policy": ("policy-extra", break_policy_extra),
    "two devices one certificate": ("certificate-shared", break_certificate_shared),
    "thing without device": ("thing-orphan", break_thing_orphan),
    "ACTIVE certificate nobody names": ("certificate-orphan", break_certificate_orphan_unattached),
    "certificate on a thing whose device does not name it": (
        "certificate-orphan",
        break_certificate_orphan_attached,
    ),
    "certificate on two things": ("certificate-multi-thing", break_certificate_multi_thing),
    "device policy gone": ("policy-absent", break_policy_absent),
    "device of a regenerated token": ("registration-stale", break_registration_stale),
    "pending in unknown state": ("pending-state", break_pending_state),
    "registered pending naming no device": ("pending-device", break_pending_device),
    "two pending items one token": ("pending-token-shared", break_pending_token_shared),
    "two pending items one device": ("pending-device-shared", break_pending_device_shared),
    "audit event without actor": ("audit-malformed", break_audit_malformed),
    "private key in the audit trail": ("audit-secret", break_audit_secret),
    "claim not on record": ("audit-missing", break_audit_missing),
    "two usable certificates for one device": ("certificate-usable", break_usable_second_certificate),
    "usable certificate for a claimed device": ("certificate-usable", break_usable_on_claimed),
}


@pytest.mark.parametrize("case", sorted(BREAKS))
def test_each_inconsistency_is_reported(lab: Lab, aws: Any, case: str) -> None:
    kind, breaker = BREAKS[case]
    lab.active()  # a healthy bystander
    lab.registered()
    assert_consistent()
    subject = breaker(lab, aws)
    problems = invariants.check()
    found = [p for p in problems if p.kind == kind]
    assert any(subject in p.subject for p in found), (subject, [str(p) for p in problems])
    print(f"\n{case}: {found[0]}")


# --- latchkey doctor -----------------------------------------------------------------------------------


def test_doctor_reports_clean_and_dirty(lab: Lab, aws: Any) -> None:
    lab.active()
    runner = CliRunner()
    clean = runner.invoke(cli, ["doctor"])
    assert clean.exit_code == 0, clean.output
    assert "no problems" in clean.output.lower() and "Checked 1 devices" in clean.output
    aws.iot.create_thing(thingName="lk-stray00000000000")
    dirty = runner.invoke(cli, ["doctor"])
    assert dirty.exit_code == 1
    assert "lk-stray00000000000: thing has no device record [thing-orphan]" in dirty.output
    assert "1 problem found." in dirty.output


def test_doctor_without_credentials_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    # Given: the deployment's table names, but no AWS credentials anywhere (and no way off this host)
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "LATCHKEY_AWS_ENDPOINT_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    missing = str(tmp_path / "none")
    for name, value in {
        "AWS_SHARED_CREDENTIALS_FILE": missing,
        "AWS_CONFIG_FILE": missing,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_DEFAULT_REGION": "us-east-1",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        c.ENV_DEVICES_TABLE: "latchkey-devices",
        c.ENV_PENDING_TABLE: "latchkey-pending",
        c.ENV_AUDIT_TABLE: "latchkey-audit",
        c.ENV_RATE_LIMITS_TABLE: "latchkey-rate-limits",
    }.items():
        monkeypatch.setenv(name, value)
    from lambdas import aws_clients

    aws_clients.reset()
    try:
        result = CliRunner().invoke(cli, ["doctor"])
    finally:
        aws_clients.reset()
    assert result.exit_code == 1
    assert "no AWS credentials found" in result.output, result.output
    assert "Traceback" not in result.output
