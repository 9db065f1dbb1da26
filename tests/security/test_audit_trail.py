"""The audit trail: every ownership and certificate change is on record with who (actor), what (action),
when (at) and from where (sourceIp); and no secret - claim code in any spelling, registration token,
private key - ever reaches the logs or the audit trail."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lambdas import constants as c
from lambdas.dal import audit, ddb
from lambdas.logic import claim_code
from lambdas.logic.manufacturing import ACTOR_OPERATOR, mint_device, revoke_device
from tests.security.flows import DEVICE_IP, Lab, assert_consistent, assert_no_new_problems, problems_now

FIELDS = {"deviceId", "eventKey", "at", "action", "actor", "sourceIp", "ownership", "detail", "expiresAt"}


def _trail(device_id: str) -> list[dict[str, Any]]:
    return list(reversed(audit.list_events(device_id)))  # oldest first


def _when(event: dict[str, Any]) -> float:
    return datetime.strptime(event["at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def _check(
    events: list[dict[str, Any]], expected: list[tuple[str, str, str | None]], since: float
) -> list[dict[str, Any]]:
    """The trail is exactly `expected` [(action, actor, sourceIp)], in order, each stamped in time."""
    assert [(e["action"], e["actor"], e.get("sourceIp")) for e in events] == expected
    stamps = [_when(e) for e in events]
    assert stamps == sorted(stamps)
    for event in events:
        assert set(event) <= FIELDS, event
        assert since - 1 <= _when(event) <= time.time() + 1, event["at"]
        assert event["expiresAt"] > time.time() + 365 * 86400  # kept for 400 days
    return events


def test_a_device_life_is_on_record_claim_provision_ack_revoke_delete(lab: Lab) -> None:
    since = time.time()
    device = lab.mint()
    lab.claim(device, "owner-a", ip="198.51.100.20")
    status, delivered = lab.poll(device, ip="203.0.113.21")
    assert status == 200
    assert lab.ack(device, delivered["certificateId"], ip="203.0.113.22")[0] == 204
    assert (
        lab.owner_call("POST", f"/v1/devices/{device.device_id}/revoke", "owner-a", ip="198.51.100.23")[0]
        == 200
    )
    assert (
        lab.owner_call("DELETE", f"/v1/devices/{device.device_id}", "owner-a", ip="198.51.100.24")[0] == 204
    )

    events = _check(
        _trail(device.device_id),
        [
            ("device.minted", "manufacturer", None),
            ("device.claimed", "owner-a", "198.51.100.20"),
            ("certificate.issued", "device", "203.0.113.21"),
            ("certificate.activated", "device", "203.0.113.22"),
            ("certificate.revoked", "owner-a", "198.51.100.23"),
            ("device.deleted", "owner-a", "198.51.100.24"),
        ],
        since,
    )
    certificate = delivered["certificateId"]
    for event in events[2:]:
        assert event["detail"]["certificateId"] == certificate, event
    assert events[1]["detail"] == {"via": "claim_code"}
    assert_consistent()  # the trail survives the device's deletion; nothing else is left


def test_release_and_a_new_owner_are_on_record(lab: Lab) -> None:
    since = time.time()
    device, certificate = lab.active("owner-a")
    assert (
        lab.owner_call("POST", f"/v1/devices/{device.device_id}/release", "owner-a", ip="198.51.100.30")[0]
        == 200
    )
    assert lab.published == [(f"latchkey/things/{device.device_id}/commands", {"command": "release"})]
    lab.claim(device, "owner-b", ip="198.51.100.31")
    second = lab.provision(device)
    events = _check(
        _trail(device.device_id),
        [
            ("device.minted", "manufacturer", None),
            ("device.claimed", "owner-a", "198.51.100.50"),
            ("certificate.issued", "device", DEVICE_IP),
            ("certificate.activated", "device", DEVICE_IP),
            ("device.released", "owner-a", "198.51.100.30"),
            ("device.claimed", "owner-b", "198.51.100.31"),
            ("certificate.issued", "device", DEVICE_IP),
            ("certificate.activated", "device", DEVICE_IP),
        ],
        since,
    )
    assert (
        events[4]["detail"]["certificateId"] == certificate and events[6]["detail"]["certificateId"] == second
    )
    # The new owner sees only what happened since the device joined their account, and never addresses
    status, shown = lab.owner_call("GET", f"/v1/devices/{device.device_id}/events", "owner-b")
    assert status == 200
    assert [e["action"] for e in shown["events"]] == [
        "certificate.activated",
        "certificate.issued",
        "device.claimed",
    ]
    assert all("sourceIp" not in e for e in shown["events"])
    assert_consistent()


def test_pre_claim_registration_regeneration_and_operator_revoke_are_on_record(lab: Lab) -> None:
    from lambdas.logic.manufacturing import Owner

    since = time.time()
    pre = mint_device(Owner("owner-c", "c@example.com"), "esp32", "manufacturer")
    _check(
        _trail(pre.device_id),
        [("device.minted", "manufacturer", None), ("device.claimed", "manufacturer", None)],
        since,
    )
    assert _trail(pre.device_id)[1]["detail"]["ownerId"] == "owner-c"

    registered, added = lab.registered("owner-c")
    lab.provision(registered)
    _, record = revoke_device(registered.device_id)
    assert record  # changed
    _check(
        _trail(registered.device_id),
        [
            ("device.registered", "device", DEVICE_IP),
            ("device.claimed", "owner-c", DEVICE_IP),
            ("certificate.issued", "device", DEVICE_IP),
            ("certificate.activated", "device", DEVICE_IP),
            ("certificate.revoked", ACTOR_OPERATOR, None),
        ],
        since,
    )
    assert lab.owner_call("POST", f"/v1/pending/{added['id']}/token", "owner-c", ip="198.51.100.40")[0] == 200
    last = _trail(registered.device_id)[-1]
    assert (last["action"], last["actor"], last["sourceIp"]) == ("device.deleted", "owner-c", "198.51.100.40")
    assert_consistent()


# --- no secret in logs or the audit trail --------------------------------------------------------------


def _spellings(code: str) -> list[str]:
    shown = claim_code.display(code)
    return [
        code,
        code.lower(),
        shown,
        shown.lower(),
        shown.replace("-", " "),
        shown.lower().replace("-", " "),
    ]


def _key_material(private_key_pem: str) -> list[str]:
    """The base64 lines of a PEM private key (any one of them is a leak)."""
    return [line for line in private_key_pem.strip().splitlines() if "-----" not in line and len(line) > 20]


def _leaks(text: str, secrets: dict[str, list[str]]) -> list[str]:
    return [
        f"{what}: {value!r}"
        for what, values in secrets.items()
        for value in values
        if value and value in text
    ]


@pytest.fixture
def everything_at_debug(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """caplog at DEBUG for the root logger and every logger that exists (some set their own level)."""
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def test_no_secret_in_logs_or_audit_trail_in_process(lab: Lab, aws: Any, everything_at_debug: Any) -> None:
    device = lab.mint()
    typed = device.display_code.lower().replace("-", " ")  # as a person types it
    assert lab.owner_call("POST", "/v1/claims", "owner-9", {"claimCode": typed})[0] == 200
    assert lab.owner_call("POST", "/v1/claims", "owner-9", {"claimCode": device.claim_code})[0] == 200
    lab.provision(device)
    for wrong in ("0000000000", "ZZZZZ-ZZZZZ"):  # failures are logged too
        lab.owner_call("POST", "/v1/claims", "owner-9", {"claimCode": wrong})
    registered, added = lab.registered("owner-9")
    token = added["registrationToken"]
    lab.register(token)  # used again: 409/410, logged
    lab.register(token[:-4] + "AAAA")  # unknown: 401, logged
    lab.provision(registered)
    assert lab.revoke(registered, "owner-9")[0] == 200

    secrets = {
        "claim code": _spellings(device.claim_code),
        "registration token": [token],
        "device private key": _key_material(device.private_key_pem)
        + _key_material(registered.private_key_pem),
    }
    audit_text = json.dumps(
        [ddb.from_item(i) for i in aws.ddb.scan(TableName=aws.tables["AuditEvents"])["Items"]]
    )
    logs = "\n".join(r.getMessage() + (r.exc_text or "") for r in everything_at_debug.records)
    assert len(everything_at_debug.records) > 20  # the handlers did log
    assert not _leaks(audit_text, secrets), _leaks(audit_text, secrets)
    assert not _leaks(logs, secrets), _leaks(logs, secrets)
    assert "PRIVATE KEY" not in audit_text
    assert_consistent()


def test_no_service_secret_in_the_logs_of_a_function_logging_at_debug(
    lab: Lab, aws: Any, caplog: Any
) -> None:
    """Lambda's ApplicationLogLevel=DEBUG makes the root logger DEBUG: botocore would then log the
    GetSecretValue answer (claim-code key, own-CA private key); lambdas/aws_clients.py keeps it quiet."""
    from tests.unit.lambdas.conftest import CLAIM_CODE_KEY

    caplog.set_level(logging.DEBUG)  # the root logger only, as the Lambda runtime sets it
    from lambdas.adapters import secrets as secret_cache

    secret_cache.reset()  # read the secret again, under DEBUG
    device, _ = lab.active()
    logs = "\n".join(r.getMessage() for r in caplog.records)
    assert any(r.levelno == logging.DEBUG for r in caplog.records)  # DEBUG is on
    assert "PRIVATE KEY" not in logs and CLAIM_CODE_KEY not in logs
    assert not _leaks(logs, {"claim code": _spellings(device.claim_code)})


def test_no_secret_in_the_gateway_agent_broker_or_moto_logs(
    cloud: Any, owner: Any, start_agent: Any, tmp_path: Path, everything_at_debug: Any
) -> None:
    """The whole system on this machine, the real agent included: a label claim typed loosely, and a
    registration-token device from its downloaded configuration; then every log is searched."""
    from local.testing import wait_until
    from tests.conftest import TEST_AGENT_SETTINGS, random_mac
    from tests.integration.test_claim_e2e import _claim_until_online

    before = problems_now()
    minted, _ = _claim_until_online(cloud, owner, start_agent, tmp_path)
    status, added = owner.request("POST", "/v1/pending", {"name": "Shed", "board": "python-agent"})
    assert status == 201
    home = tmp_path / "shed"
    home.mkdir()
    extra = "".join(f"{k} = {v}\n" for k, v in TEST_AGENT_SETTINGS.items())
    (home / "agent.toml").write_text(
        added["config"]["agentToml"] + f'mac = "{random_mac()}"\nstate_dir = "state"\n' + extra
    )
    start_agent.run(home / "agent.toml")

    def online() -> bool:
        _, body = owner.request("GET", "/v1/devices")
        return any(d["name"] == "Shed" and d["presence"] == "online" for d in body["devices"])

    assert wait_until(online, timeout=60, interval=0.5)
    assert owner.request("POST", "/v1/claims", {"claimCode": "ZZZZZ-ZZZZZ"})[0] == 404  # a failure, logged
    start_agent.stop_all()  # flush and close the agents' logs

    registered_key = (home / "state" / "device_key.pem").read_text()
    secrets = {
        "claim code": _spellings(minted.claim_code),
        "registration token": [added["registrationToken"]],
        "device private key": _key_material(minted.private_key_pem) + _key_material(registered_key),
    }
    logs = {
        "in-process (gateway, handlers, CLI code)": "\n".join(
            r.getMessage() + (r.exc_text or "") for r in everything_at_debug.records
        ),
        **{f"agent {p.parent.name}": p.read_text() for p in tmp_path.rglob("agent.log")},
        "moto server": (cloud.state_dir / "moto.log").read_text(errors="replace"),
        "mosquitto": cloud.broker.log_file.read_text(errors="replace"),
    }
    assert all(text for name, text in logs.items() if name != "moto server"), {
        k: len(v) for k, v in logs.items()
    }
    for name, text in logs.items():
        assert not _leaks(text, secrets), (name, _leaks(text, secrets))
    audit_text = json.dumps(
        [
            ddb.from_item(i)
            for i in cloud.aws("dynamodb").scan(TableName=cloud.env[c.ENV_AUDIT_TABLE])["Items"]
        ]
    )
    assert not _leaks(audit_text, secrets)
    assert_no_new_problems(before)  # and the whole system agrees with itself (latchkey doctor)
    print(f"\nsearched for secrets: {', '.join(f'{k} ({len(v):,} chars)' for k, v in logs.items())}")
