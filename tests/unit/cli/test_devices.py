"""`latchkey devices show | revoke`, environment resolution and the error contract."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from cli import env as cli_env
from cli.main import cli
from lambdas import constants as c
from lambdas.logic import manufacturing

DEVICE = "lk-0000000000000001"


def assert_one_line_error(result, exit_code: int = 1) -> str:
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


# --- show --------------------------------------------------------------------------------------------


def test_show(cli_cloud, runner):
    minted = manufacturing.mint_device(None, "esp32", "test")
    result = runner.invoke(cli, ["devices", "show", minted.device_id])
    assert result.exit_code == 0, result.output
    assert minted.device_id in result.stdout and "unclaimed" in result.stdout and "esp32" in result.stdout
    assert "claimCodeHash" not in result.stdout and minted.record["claimCodeHash"] not in result.stdout

    as_json = runner.invoke(cli, ["devices", "show", minted.device_id, "--json"])
    document = json.loads(as_json.stdout)
    assert document["deviceId"] == minted.device_id and "claimCodeHash" not in document

    with_events = runner.invoke(cli, ["devices", "show", minted.device_id, "--json", "--events"])
    assert [e["action"] for e in json.loads(with_events.stdout)["events"]] == ["device.minted"]
    table = runner.invoke(cli, ["devices", "show", minted.device_id, "--events"])
    assert "device.minted" in table.stdout

    line = assert_one_line_error(runner.invoke(cli, ["devices", "show", "lk-nothere"]))
    assert line == "Error: no device lk-nothere"


# --- revoke ------------------------------------------------------------------------------------------


def test_revoke_without_certificate(cli_cloud, runner):
    cli_cloud.aws.put_device(DEVICE, state="claimed")
    result = runner.invoke(cli, ["devices", "revoke", DEVICE])
    assert result.exit_code == 0, result.output
    assert "no certificate" in result.stdout
    record = cli_cloud.aws.device(DEVICE)
    assert record["state"] == c.STATE_REVOKED and "revokedAt" in record
    assert record["ownerId"] == "owner-1"  # the owner still sees it, revoked
    assert cli_cloud.aws.audit_actions(DEVICE) == ["certificate.revoked"]
    again = runner.invoke(cli, ["devices", "revoke", DEVICE])
    assert again.exit_code == 0 and "already revoked" in again.stdout
    assert cli_cloud.aws.audit_actions(DEVICE) == ["certificate.revoked"]

    other = "lk-0000000000000002"
    assert (
        assert_one_line_error(runner.invoke(cli, ["devices", "revoke", other])) == f"Error: no device {other}"
    )


def test_revoke_with_certificate(cli_cloud, runner, monkeypatch):
    """Through lambdas.adapters.iot against moto IoT; a stand-in adapter until that module exists."""
    cert = cli_cloud.aws.iot.create_keys_and_certificate(setAsActive=True)
    certificate_id = cert["certificateId"]
    try:
        from lambdas.adapters.iot import revoke_certificate  # noqa: F401
    except ImportError:
        fake = types.ModuleType("lambdas.adapters.iot")
        fake.revoke_certificate = lambda cid: cli_cloud.aws.iot.update_certificate(  # type: ignore[attr-defined]
            certificateId=cid, newStatus="REVOKED"
        )
        monkeypatch.setitem(sys.modules, "lambdas.adapters.iot", fake)
    cli_cloud.aws.put_device(DEVICE, state="active", certificateId=certificate_id, certificateStatus="ACTIVE")
    result = runner.invoke(cli, ["devices", "revoke", DEVICE])
    assert result.exit_code == 0, result.output
    assert f"certificate {certificate_id} REVOKED" in result.stdout
    status = cli_cloud.aws.iot.describe_certificate(certificateId=certificate_id)
    assert status["certificateDescription"]["status"] == "REVOKED"
    record = cli_cloud.aws.device(DEVICE)
    assert record["state"] == "revoked" and record["certificateStatus"] == "REVOKED"
    from lambdas.dal import audit

    (event,) = audit.list_events(DEVICE)
    assert event["action"] == "certificate.revoked" and event["actor"] == "operator"
    assert event["detail"] == {"certificateId": certificate_id, "previousState": "active"}


# --- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", ["0", "10001", "many", "-1"])
def test_bad_count(runner, tmp_path, count):
    result = runner.invoke(cli, ["devices", "mint", "--count", count, "--out", str(tmp_path / "o")])
    assert "--count" in assert_one_line_error(result, exit_code=2)
    assert not (tmp_path / "o").exists()


def test_unwritable_out(runner, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    line = assert_one_line_error(runner.invoke(cli, ["devices", "mint", "--out", str(blocker / "sub")]))
    assert line.startswith(f"Error: cannot create --out directory {blocker / 'sub'}")
    line = assert_one_line_error(runner.invoke(cli, ["devices", "mint", "--out", str(blocker)]), exit_code=2)
    assert "'--out'" in line and "is a file" in line


def test_no_overwrite_and_no_orphans(cli_cloud, runner, tmp_path, monkeypatch):
    monkeypatch.setattr(manufacturing, "new_device_id", lambda: DEVICE)
    # An identity file already there is never overwritten, and the device is not stored.
    out = tmp_path / "out"
    (out / DEVICE).mkdir(parents=True)
    (out / DEVICE / "identity.json").write_text("precious")
    line = assert_one_line_error(runner.invoke(cli, ["devices", "mint", "--out", str(out)]))
    assert "refusing to overwrite" in line
    assert (out / DEVICE / "identity.json").read_text() == "precious"
    assert cli_cloud.aws.device(DEVICE) is None
    # A failed store (here: the id is taken) leaves no files behind for a device the service lacks.
    cli_cloud.aws.put_device(DEVICE)
    fresh = tmp_path / "fresh"
    line = assert_one_line_error(runner.invoke(cli, ["devices", "mint", "--out", str(fresh)]))
    assert "already exists" in line
    assert not (fresh / DEVICE).exists() and not (fresh / "labels" / f"{DEVICE}.png").exists()


def test_api_url_required(cli_cloud, runner, tmp_path, monkeypatch):
    monkeypatch.delenv("LATCHKEY_API_URL")
    assert "--api-url" in assert_one_line_error(
        runner.invoke(cli, ["devices", "mint", "--out", str(tmp_path)])
    )
    result = runner.invoke(cli, ["devices", "mint", "--out", str(tmp_path), "--api-url", "ftp://x"])
    assert "http" in assert_one_line_error(result)


def _no_deployment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in (
        *cli_env.TABLE_VARS,
        c.ENV_SECRETS_ARN,
        "LATCHKEY_AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setattr(cli_env, "REPO_ROOT", tmp_path)
    monkeypatch.chdir(tmp_path)


def test_no_credentials(runner, tmp_path, monkeypatch):
    _no_deployment(monkeypatch, tmp_path)
    line = assert_one_line_error(runner.invoke(cli, ["devices", "show", DEVICE]))
    assert "no AWS credentials" in line


def test_missing_stack(cli_cloud, runner, tmp_path, monkeypatch):
    for var in cli_env.TABLE_VARS:
        monkeypatch.delenv(var)
    monkeypatch.setattr(cli_env, "REPO_ROOT", tmp_path)
    line = assert_one_line_error(runner.invoke(cli, ["--stack", "Nope", "devices", "show", DEVICE]))
    assert "no CloudFormation stack Nope" in line


# --- environment resolution --------------------------------------------------------------------------


def test_local_cloud_env_file(cli_cloud, runner, tmp_path, monkeypatch):
    minted = manufacturing.mint_device(None, None, "test")
    saved = {var: cli_cloud.aws.env[var] for var in cli_env.TABLE_VARS}
    for var in cli_env.TABLE_VARS:
        monkeypatch.delenv(var)
    env_file = tmp_path / ".run" / "cloud.env.json"
    env_file.parent.mkdir()
    env_file.write_text("{not json")
    assert "restart `make run`" in assert_one_line_error(runner.invoke(cli, ["devices", "show", DEVICE]))
    env_file.write_text(json.dumps(saved))
    result = runner.invoke(cli, ["--debug", "devices", "show", minted.device_id])
    assert result.exit_code == 0, result.output
    assert "environment: local cloud" in result.stderr


def test_resolve_prefers_environment(tmp_path):
    environ = {var: "t" for var in cli_env.TABLE_VARS}
    (tmp_path / ".run").mkdir()
    (tmp_path / ".run" / "cloud.env.json").write_text("{}")
    assert cli_env.resolve(environ=environ, search=(tmp_path,)).source == "environment"


def test_resolve_local_file_replaces_profile(tmp_path):
    local = {var: f"local-{var}" for var in cli_env.TABLE_VARS}
    local.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
    (tmp_path / ".run").mkdir()
    (tmp_path / ".run" / "cloud.env.json").write_text(json.dumps(local))
    environ = {"AWS_PROFILE": "prod", "AWS_SESSION_TOKEN": "tok"}
    resolved = cli_env.resolve(environ=environ, search=(tmp_path,))
    assert resolved.source.startswith("local cloud")
    assert environ == local


@pytest.mark.filterwarnings("ignore:Tried to parse AWS")
def test_resolve_stack_outputs(aws, tmp_path):
    import boto3

    outputs = {name: f"value-{name}" for name in cli_env.STACK_OUTPUTS}
    template = {
        "Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {name: {"Value": value} for name, value in outputs.items()},
    }
    boto3.client("cloudformation", region_name="us-east-1").create_stack(
        StackName="LatchkeyStack", TemplateBody=json.dumps(template)
    )
    environ: dict[str, str] = {}
    resolved = cli_env.resolve(environ=environ, search=(tmp_path,), region="us-east-1")
    assert resolved.source == "stack LatchkeyStack (us-east-1)"
    for name, var in cli_env.STACK_OUTPUTS.items():
        assert environ[var] == outputs[name]
    assert environ[c.ENV_DEVICES_TABLE] == "value-DevicesTableName"
