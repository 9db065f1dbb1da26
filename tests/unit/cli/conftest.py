"""Fixtures for the CLI tests: the Lambda tests' moto cloud (`aws`) plus a Cognito user pool."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.unit.lambdas.conftest import CLAIM_CODE_KEY, REGION, AwsEnv, aws  # reuse; aws is a fixture

__all__ = ["aws"]

API_URL = "https://api.latchkey.test"


@dataclass
class CliCloud:
    aws: AwsEnv
    user_pool_id: str
    claim_code_key: bytes

    def create_owner(self, email: str) -> str:
        """An owner account; returns its `sub`."""
        import boto3

        idp = boto3.client("cognito-idp", region_name=REGION)
        user = idp.admin_create_user(
            UserPoolId=self.user_pool_id,
            Username=email,
            UserAttributes=[{"Name": "email", "Value": email}, {"Name": "email_verified", "Value": "true"}],
            MessageAction="SUPPRESS",
        )["User"]
        return {a["Name"]: a["Value"] for a in user["Attributes"]}["sub"]


@pytest.fixture
def cli_cloud(aws: AwsEnv, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[CliCloud]:
    import boto3

    from lambdas import constants as c

    idp = boto3.client("cognito-idp", region_name=REGION)
    pool_id = idp.create_user_pool(
        PoolName="latchkey-test-owners",
        UsernameAttributes=["email"],
        UsernameConfiguration={"CaseSensitive": False},
    )["UserPool"]["Id"]
    monkeypatch.setenv(c.ENV_USER_POOL_ID, pool_id)
    monkeypatch.setenv("LATCHKEY_API_URL", API_URL)
    for name in ("LATCHKEY_WEB_URL", "LATCHKEY_STACK", "LATCHKEY_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .run/cloud.env.json
    yield CliCloud(aws, pool_id, base64.b64decode(CLAIM_CODE_KEY))


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()
