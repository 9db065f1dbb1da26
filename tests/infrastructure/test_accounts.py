"""Owner accounts in the stack: the owner API may read (only) its user pool, and Cognito's email goes
through SES when a sender is configured."""

from __future__ import annotations

import pytest
from aws_cdk import App, Stack
from aws_cdk.assertions import Match, Template

from infrastructure.auth import Auth
from infrastructure.settings import Settings
from tests.infrastructure.test_stack import Synth, _as_list, _render, _role_statements, synth  # noqa: F401

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infrastructure")]


def test_owner_api_reads_only_its_user_pool(synth: Synth) -> None:  # noqa: F811
    (statement,) = [
        s for s in _role_statements(synth, "OwnerApi") if "cognito-idp:ListUsers" in _as_list(s["Action"])
    ]
    assert sorted(_as_list(statement["Action"])) == ["cognito-idp:AdminGetUser", "cognito-idp:ListUsers"]
    assert _render(statement["Resource"]).startswith(
        "arn:<AWS::Partition>:cognito-idp:<AWS::Region>:<AWS::AccountId>:userpool/"
    )
    for function in ("DeviceApi", "Presence"):
        assert "cognito-idp" not in str(_role_statements(synth, function)), function


def _pool(settings: Settings) -> Template:
    stack = Stack(App(), "Accounts")
    Auth(stack, "Auth", settings=settings)
    return Template.from_stack(stack)


def test_email_through_ses_when_a_sender_is_set() -> None:
    template = _pool(Settings(bundle=False, ses_sender="no-reply@example.org", product_name="Acme"))
    template.has_resource_properties(
        "AWS::Cognito::UserPool",
        {
            "EmailConfiguration": Match.object_like(
                {"EmailSendingAccount": "DEVELOPER", "From": "Acme <no-reply@example.org>"}
            )
        },
    )
    source = template.find_resources("AWS::Cognito::UserPool")
    (pool,) = source.values()
    assert "identity/no-reply@example.org" in str(pool["Properties"]["EmailConfiguration"]["SourceArn"])


def test_cognito_default_sender_without_one() -> None:
    (pool,) = _pool(Settings(bundle=False)).find_resources("AWS::Cognito::UserPool").values()
    assert pool["Properties"].get("EmailConfiguration", {}).get("EmailSendingAccount", "COGNITO_DEFAULT") == (
        "COGNITO_DEFAULT"
    )


@pytest.mark.parametrize("bad", ["no-at-sign", "Acme <a@example.org>", "a@localhost"])
def test_a_sender_that_is_not_an_address_is_refused(bad: str) -> None:
    from infrastructure.settings import _ses_sender

    with pytest.raises(ValueError, match="sesSender"):
        _ses_sender(bad)
