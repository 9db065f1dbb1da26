"""The user-pool adapter: an account by its verified email, a caller's email from an access token, and
the owner API storing that email (not the Cognito user name) on a claim."""

from __future__ import annotations

import json

import pytest

from lambdas import constants as c
from lambdas.adapters import cognito
from lambdas.errors import BadRequest
from lambdas.handlers.owner_api import handler
from lambdas.logic import claim_code
from local.seed import _create_user_pool
from tests.unit.lambdas.conftest import owner_event

PASSWORD = "Correct-horse-1!"


@pytest.fixture
def pool(aws, monkeypatch):
    import boto3

    idp = boto3.client("cognito-idp")
    pool_id, client_id = _create_user_pool(idp, "latchkey-test")
    monkeypatch.setenv(c.ENV_USER_POOL_ID, pool_id)
    cognito.forget_cache()
    yield idp, pool_id, client_id
    cognito.forget_cache()


def admin_user(idp, pool_id, email, *, verified=True):
    user = idp.admin_create_user(
        UserPoolId=pool_id,
        Username=email,
        UserAttributes=[{"Name": "email", "Value": email}]
        + ([{"Name": "email_verified", "Value": "true"}] if verified else []),
        MessageAction="SUPPRESS",
    )["User"]
    idp.admin_set_user_password(UserPoolId=pool_id, Username=email, Password=PASSWORD, Permanent=True)
    return {a["Name"]: a["Value"] for a in user["Attributes"]}["sub"]


def test_find_user_by_email_returns_the_sub_of_a_verified_account(pool):
    # Given two accounts
    idp, pool_id, _ = pool
    alice = admin_user(idp, pool_id, "alice@example.com")
    admin_user(idp, pool_id, "bob@example.com")
    # When / Then: the email finds its own account, however it is typed
    assert cognito.find_user_by_email("alice@example.com") == alice
    assert cognito.find_user_by_email("  Alice@Example.COM ") == alice
    assert cognito.find_user_by_email("carol@example.com") is None


def test_unconfirmed_unverified_and_disabled_accounts_are_not_found(pool):
    idp, pool_id, client_id = pool
    # a sign-up nobody confirmed with the emailed code
    idp.sign_up(ClientId=client_id, Username="pending@example.com", Password=PASSWORD)
    admin_user(idp, pool_id, "unverified@example.com", verified=False)
    admin_user(idp, pool_id, "gone@example.com")
    idp.admin_disable_user(UserPoolId=pool_id, Username="gone@example.com")
    for email in ("pending@example.com", "unverified@example.com", "gone@example.com"):
        assert cognito.find_user_by_email(email) is None, email


@pytest.mark.parametrize("bad", ["", "alice", "alice@", "@example.com", 'a"@example.com', "a b@example.com"])
def test_not_an_email_is_a_bad_request(pool, bad):
    with pytest.raises(BadRequest):
        cognito.find_user_by_email(bad)


def test_caller_email_from_access_token_claims(pool):
    # Given an access token's claims: `username` is the sub in an email-alias pool, and no `email`
    idp, pool_id, _ = pool
    sub = admin_user(idp, pool_id, "dana@example.com")
    claims = {"sub": sub, "username": sub, "token_use": "access", "client_id": "x"}
    # When / Then
    assert cognito.caller_email(claims) == "dana@example.com"
    # an ID token's own claim is taken as is (no call)
    assert cognito.caller_email({"sub": sub, "email": "id@example.com"}) == "id@example.com"
    assert cognito.email_of("no-such-user") is None


def test_claim_with_an_access_token_stores_the_owners_email(pool, aws):
    # Given an account and a claimable device
    idp, pool_id, _ = pool
    sub = admin_user(idp, pool_id, "erin@example.com")
    aws.put_device("lk-claim0000000erin", claimCodeHash=claim_code.keyed_hash("ABCDEFGHJK", b"k" * 32))
    # When the page claims with its access token (no `email` claim)
    answer = handler(access_token_event("POST", "/v1/claims", sub, {"claimCode": "ABCDEFGHJK"}), None)
    # Then the stored email is the account's, not its user name (the sub)
    assert answer["statusCode"] == 200, answer["body"]
    assert json.loads(answer["body"])["id"] == "lk-claim0000000erin"
    item = aws.device("lk-claim0000000erin")
    assert item["ownerId"] == sub and item["ownerEmail"] == "erin@example.com"


def access_token_event(method, path, sub, body=None):
    event = owner_event(method, path, sub, body)
    event["requestContext"]["authorizer"]["jwt"]["claims"] = {
        "sub": sub,
        "username": sub,
        "token_use": "access",
        "client_id": "web",
    }
    return event


def test_reads_do_not_wait_for_the_pool_and_a_claim_without_it_stores_nothing(pool, aws, monkeypatch):
    # Given the user pool unreachable
    def unreachable(user_id):
        raise ConnectionError("cognito-idp unreachable")

    monkeypatch.setattr(cognito, "email_of", unreachable)
    aws.put_device("lk-claim0000000fred", claimCodeHash=claim_code.keyed_hash("ABCDEFGHJK", b"k" * 32))
    # When / Then: listing devices needs no email
    answer = handler(access_token_event("GET", "/v1/devices", "sub-fred"), None)
    assert answer["statusCode"] == 200, answer["body"]
    # a claim, which stores the email, says the service is unavailable and claims nothing
    answer = handler(access_token_event("POST", "/v1/claims", "sub-fred", {"claimCode": "ABCDEFGHJK"}), None)
    assert answer["statusCode"] == 503, answer["body"]
    assert json.loads(answer["body"])["error"] == "service_unavailable"
    assert "ownerId" not in aws.device("lk-claim0000000fred")
