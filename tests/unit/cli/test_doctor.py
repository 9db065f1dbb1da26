"""`latchkey doctor --repair` and `--dry-run` against moto: half-done states an interrupted change
leaves (an orphan thing and certificate, a device row left by an interrupted delete) are repaired,
reported as left, or as failed when IoT refuses; the command checks again and says what remains."""

from __future__ import annotations

from typing import Any

import pytest

from cli.main import cli
from lambdas.adapters import iot as iot_adapter
from lambdas.logic import invariants
from tests.security.flows import Lab


def _orphan(cli_cloud: Any) -> tuple[str, str]:
    """What a crash between removing the record and its thing leaves: a thing and an ACTIVE
    certificate with no device record (device id, certificate id)."""
    lab = Lab()
    device, certificate_id = lab.active()
    aws = cli_cloud.aws
    aws.ddb.delete_item(TableName=aws.tables["Devices"], Key={"deviceId": {"S": device.device_id}})
    return device.device_id, certificate_id


def _things(cli_cloud: Any) -> list[str]:
    return [t["thingName"] for t in cli_cloud.aws.iot.list_things()["things"]]


def test_repair_removes_an_orphan_thing_and_certificate_and_checks_again(cli_cloud, runner) -> None:
    device_id, certificate_id = _orphan(cli_cloud)
    result = runner.invoke(cli, ["doctor", "--repair"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"{device_id}: thing has no device record [thing-orphan]" in out  # the problem, first
    fixed = out.split("Fixed:\n", 1)[1]
    assert f"{device_id}: remove thing {device_id} and its certificates [thing-orphan]" in fixed
    assert f"{certificate_id}: revoke, disconnect, detach and delete certificate" in fixed
    assert "Failed:" not in out and "Left for a person:" not in out
    assert out.rstrip().endswith("no problems left.")
    assert device_id not in _things(cli_cloud)
    assert iot_adapter.describe_certificate(certificate_id) is None
    assert invariants.check() == []
    again = runner.invoke(cli, ["doctor", "--repair"])
    assert again.exit_code == 0 and "No problems found." in again.stdout


def test_dry_run_says_what_would_be_done_and_changes_nothing(cli_cloud, runner) -> None:
    device_id, certificate_id = _orphan(cli_cloud)
    before = sorted(str(p) for p in invariants.check())
    for args in (["doctor", "--dry-run"], ["doctor", "--repair", "--dry-run"]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 1, result.output
        assert "Dry run, nothing changed:" in result.stdout
        assert f"would fix   {device_id}: remove thing {device_id} and its certificates" in result.stdout
        assert "would be repaired." in result.stdout and "Fixed:" not in result.stdout
    assert device_id in _things(cli_cloud)
    assert iot_adapter.describe_certificate(certificate_id)["status"] == "ACTIVE"
    assert sorted(str(p) for p in invariants.check()) == before


def test_a_device_row_left_by_an_interrupted_delete_is_left_for_a_person(cli_cloud, runner) -> None:
    # IoT was cleaned (the delete's first half), the record was not removed (the crash).
    lab = Lab()
    device, certificate_id = lab.active()
    iot_adapter.remove_certificate_and_thing(device.device_id, certificate_id, delete_thing=True)
    result = runner.invoke(cli, ["doctor", "--repair"])
    assert result.exit_code == 1, result.output
    out = result.stdout
    left = out.split("Left for a person:\n", 1)[1].split("Checked again", 1)[0]
    assert f"{device.device_id}: not repaired automatically [certificate-missing]" in left
    assert "Fixed:" not in out
    assert "problem left:" in out or "problems left:" in out
    assert f"{device.device_id}: names certificate {certificate_id}" in out.split("Checked again", 1)[1]


def test_a_repair_iot_refuses_is_reported_as_failed_and_the_next_run_finishes(
    cli_cloud, runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    device_id, _ = _orphan(cli_cloud)
    real = iot_adapter.remove_certificate_and_thing

    def still_attached(*args: Any, **kwargs: Any) -> None:
        raise iot_adapter.IotUnavailable("IoT is still finishing detaching; retry shortly.")

    monkeypatch.setattr(iot_adapter, "remove_certificate_and_thing", still_attached)
    result = runner.invoke(cli, ["doctor", "--repair"])
    assert result.exit_code == 1, result.output
    failed = result.stdout.split("Failed:\n", 1)[1]
    assert f"{device_id}: remove thing {device_id} and its certificates (IoT is still finishing" in failed
    assert "run `latchkey doctor --repair` again" in result.stdout
    assert "Traceback" not in result.output

    monkeypatch.setattr(iot_adapter, "remove_certificate_and_thing", real)
    again = runner.invoke(cli, ["doctor", "--repair"])
    assert again.exit_code == 0, again.output
    assert device_id not in _things(cli_cloud)


def test_a_consistent_system_needs_no_repair(cli_cloud, runner) -> None:
    Lab().active()
    result = runner.invoke(cli, ["doctor", "--repair"])
    assert result.exit_code == 0, result.output
    assert "No problems found." in result.stdout and "Fixed:" not in result.stdout
