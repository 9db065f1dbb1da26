"""`latchkey devices rotate` and the expiry listing of `latchkey doctor`, against moto."""

from __future__ import annotations

import pytest

from cli.main import cli
from lambdas import constants as c
from lambdas.adapters import mqtt
from tests.unit.cli.test_devices import assert_one_line_error

DEVICE = "lk-0000000000000002"


@pytest.fixture
def notices(monkeypatch):
    sent: list = []
    monkeypatch.setattr(
        mqtt, "publish", lambda topic, payload, retain=False: sent.append((topic, payload, retain))
    )
    return sent


def active(cli_cloud):
    cert = cli_cloud.aws.iot.create_keys_and_certificate(setAsActive=False)
    cli_cloud.aws.put_device(
        DEVICE,
        state="active",
        certificateId=cert["certificateId"],
        certificatePem=cert["certificatePem"],
        certificateStatus="ACTIVE",
    )
    return cert


def test_rotate_requests_a_rotation_once(cli_cloud, runner, notices):
    cert = active(cli_cloud)
    result = runner.invoke(cli, ["devices", "rotate", DEVICE])
    assert result.exit_code == 0, result.output
    assert "is requested" in result.stdout and cert["certificateId"] in result.stdout
    assert notices[-1][0] == c.TOPIC_COMMANDS.format(thing=DEVICE) and notices[-1][2] is True
    again = runner.invoke(cli, ["devices", "rotate", DEVICE])
    assert again.exit_code == 0
    from lambdas.dal import audit

    actions = [e["action"] for e in audit.list_events(DEVICE)]
    assert actions.count("certificate.rotation-requested") == 1
    assert [e["actor"] for e in audit.list_events(DEVICE)] == ["operator"]


def test_rotate_refuses_what_is_not_active_or_missing(cli_cloud, runner, notices):
    cli_cloud.aws.put_device(DEVICE, state="claimed")
    line = assert_one_line_error(runner.invoke(cli, ["devices", "rotate", DEVICE]))
    assert "active" in line
    assert (
        assert_one_line_error(runner.invoke(cli, ["devices", "rotate", "lk-nothere"]))
        == "Error: no device lk-nothere"
    )
    assert notices == []


def test_doctor_lists_certificates_close_to_expiry(cli_cloud, runner, monkeypatch):
    active(cli_cloud)
    monkeypatch.setenv(c.ENV_CERT_VALIDITY_DAYS, "20")  # moto's certificate was issued just now
    soon = runner.invoke(cli, ["doctor", "--expiring-within", "30"])
    assert "1 certificate expire within 30 days" in soon.stdout and DEVICE in soon.stdout
    later = runner.invoke(cli, ["doctor", "--expiring-within", "5"])
    assert "No certificate expires within 5 days." in later.stdout
    bad = runner.invoke(cli, ["doctor", "--expiring-within", "-1"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
