"""The local Cognito front and mailbox, through the gateway as the page calls them: codes are delivered to
the mailbox and required exactly (wrong, expired, reused and brute-forced codes refused), RevokeToken
works, TOTP codes are checked against a secret of each account's own."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from local.cloud import EmbeddedCloud
from local.cognito_front import (
    CHALLENGE_SECONDS,
    MAX_ATTEMPTS,
    RESET_CODE_SECONDS,
    SIGN_UP_CODE_SECONDS,
    totp,
)
from local.testing import HttpClient

pytestmark = pytest.mark.integration

PASSWORD = "Mailbox-test-pw-1"


def cognito(http: HttpClient, operation: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    answer = http.post(
        "/cognito/",
        json=payload,
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": f"AWSCognitoIdentityProviderService.{operation}",
        },
    )
    return answer.status, answer.json()


def error(answer: tuple[int, dict[str, Any]]) -> str:
    status, body = answer
    assert status == 400, body
    return str(body["__type"])


def mails(http: HttpClient, email: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = http.get(f"/_local/mailbox.json?to={email}").json()["messages"]
    return messages


def new_email() -> str:
    return f"acct-{uuid.uuid4().hex[:10]}@latchkey.test"


@pytest.fixture
def client_id(cloud: EmbeddedCloud) -> str:
    return cloud.user_pool_client_id


def sign_up(http: HttpClient, client_id: str, email: str) -> str:
    status, body = cognito(http, "SignUp", {"ClientId": client_id, "Username": email, "Password": PASSWORD})
    assert status == 200, body
    assert body["UserConfirmed"] is False and body["CodeDeliveryDetails"]["DeliveryMedium"] == "EMAIL"
    (message,) = mails(http, email)
    assert message["code"] in message["text"] and len(message["code"]) == 6
    return str(message["code"])


def sign_in(http: HttpClient, client_id: str, email: str, password: str = PASSWORD) -> tuple[int, dict]:
    return cognito(
        http,
        "InitiateAuth",
        {
            "ClientId": client_id,
            "AuthFlow": "USER_PASSWORD_AUTH",
            "AuthParameters": {"USERNAME": email, "PASSWORD": password},
        },
    )


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def test_sign_up_needs_the_mailed_code(cloud: EmbeddedCloud, http: HttpClient, client_id: str) -> None:
    # Given a new sign-up: the code is in the mailbox (JSON and page) and the account cannot sign in yet
    email = new_email()
    code = sign_up(http, client_id, email)
    page = http.get("/_local/mailbox")
    assert page.status == 200 and email in page.text and code in page.text
    assert error(sign_in(http, client_id, email)) == "UserNotConfirmedException"
    # When a wrong code is typed, then it is refused and the account stays unconfirmed
    confirm = {"ClientId": client_id, "Username": email}
    assert error(cognito(http, "ConfirmSignUp", {**confirm, "ConfirmationCode": wrong(code)})) == (
        "CodeMismatchException"
    )
    assert error(sign_in(http, client_id, email)) == "UserNotConfirmedException"
    # When the mailed code is typed, then the account is confirmed with a verified email
    status, _ = cognito(http, "ConfirmSignUp", {**confirm, "ConfirmationCode": code})
    assert status == 200
    status, body = sign_in(http, client_id, email)
    assert status == 200 and body["AuthenticationResult"]["AccessToken"]
    user = cloud.aws("cognito-idp").admin_get_user(UserPoolId=cloud.user_pool_id, Username=email)
    assert {"Name": "email_verified", "Value": "true"} in user["UserAttributes"]
    # and the code is used up
    assert (
        error(cognito(http, "ConfirmSignUp", {**confirm, "ConfirmationCode": code}))
        == "NotAuthorizedException"
    )
    assert error(cognito(http, "ResendConfirmationCode", confirm)) == "InvalidParameterException"


def test_expired_resent_and_guessed_codes(
    cloud: EmbeddedCloud, http: HttpClient, client_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    email = new_email()
    first = sign_up(http, client_id, email)
    confirm = {"ClientId": client_id, "Username": email}
    # a code past its 24 hours is refused (the front's clock moved on: nobody waits a day)
    later = time.time() + SIGN_UP_CODE_SECONDS + 1
    monkeypatch.setattr(cloud.gateway.cognito, "clock", lambda: later)
    assert (
        error(cognito(http, "ConfirmSignUp", {**confirm, "ConfirmationCode": first}))
        == "ExpiredCodeException"
    )
    monkeypatch.undo()
    # a new code replaces the old one
    status, _ = cognito(http, "ResendConfirmationCode", confirm)
    assert status == 200
    second = mails(http, email)[0]["code"]
    if second != first:
        assert error(cognito(http, "ConfirmSignUp", {**confirm, "ConfirmationCode": first})) == (
            "CodeMismatchException"
        )
    # guessing: after MAX_ATTEMPTS wrong codes even the right one is refused until a new one is sent
    for _ in range(MAX_ATTEMPTS - (1 if second != first else 0)):
        error(cognito(http, "ConfirmSignUp", {**confirm, "ConfirmationCode": wrong(second)}))
    assert error(cognito(http, "ConfirmSignUp", {**confirm, "ConfirmationCode": second})) == (
        "LimitExceededException"
    )
    cognito(http, "ResendConfirmationCode", confirm)
    third = mails(http, email)[0]["code"]
    assert cognito(http, "ConfirmSignUp", {**confirm, "ConfirmationCode": third})[0] == 200


def test_forgot_password_resets_with_the_mailed_code(
    cloud: EmbeddedCloud, http: HttpClient, client_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    email = new_email()
    cloud.create_user(email, PASSWORD)
    status, body = cognito(http, "ForgotPassword", {"ClientId": client_id, "Username": email})
    assert status == 200 and body["CodeDeliveryDetails"]["DeliveryMedium"] == "EMAIL"
    (message,) = mails(http, email)
    code = message["code"]
    reset = {"ClientId": client_id, "Username": email}
    new_password = "Reset-password-2!"
    # a password the policy refuses, a wrong code and an expired code change nothing
    assert error(
        cognito(http, "ConfirmForgotPassword", {**reset, "ConfirmationCode": code, "Password": "short"})
    ) == ("InvalidPasswordException")
    bad = {**reset, "ConfirmationCode": wrong(code), "Password": new_password}
    assert error(cognito(http, "ConfirmForgotPassword", bad)) == "CodeMismatchException"
    later = time.time() + RESET_CODE_SECONDS + 1
    monkeypatch.setattr(cloud.gateway.cognito, "clock", lambda: later)
    good = {**reset, "ConfirmationCode": code, "Password": new_password}
    assert error(cognito(http, "ConfirmForgotPassword", good)) == "ExpiredCodeException"
    monkeypatch.undo()
    assert sign_in(http, client_id, email)[0] == 200
    # the mailed code sets the new password, once
    assert cognito(http, "ConfirmForgotPassword", good)[0] == 200
    assert error(sign_in(http, client_id, email)) == "NotAuthorizedException"
    assert sign_in(http, client_id, email, new_password)[0] == 200
    assert error(cognito(http, "ConfirmForgotPassword", good)) == "CodeMismatchException"
    # an unknown account gets the same answer and no mail
    stranger = new_email()
    assert cognito(http, "ForgotPassword", {"ClientId": client_id, "Username": stranger})[0] == 200
    assert mails(http, stranger) == []


def test_revoke_token_ends_the_session(cloud: EmbeddedCloud, http: HttpClient, client_id: str) -> None:
    email = new_email()
    cloud.create_user(email, PASSWORD)
    tokens = sign_in(http, client_id, email)[1]["AuthenticationResult"]
    access, refresh = tokens["AccessToken"], tokens["RefreshToken"]
    assert cognito(http, "GetUser", {"AccessToken": access})[0] == 200
    # an access token is not what RevokeToken takes
    assert error(cognito(http, "RevokeToken", {"ClientId": client_id, "Token": access})) == (
        "UnsupportedTokenTypeException"
    )
    # When the page signs out
    status, body = cognito(http, "RevokeToken", {"ClientId": client_id, "Token": refresh})
    # Then no error, and neither the refresh token nor the access token issued with it work with Cognito
    assert (status, body) == (200, {})
    renew = {
        "ClientId": client_id,
        "AuthFlow": "REFRESH_TOKEN_AUTH",
        "AuthParameters": {"REFRESH_TOKEN": refresh},
    }
    status, body = cognito(http, "InitiateAuth", renew)
    assert (status, body["__type"], body["message"]) == (
        400,
        "NotAuthorizedException",
        "Refresh Token has been revoked",
    )
    assert error(cognito(http, "GetUser", {"AccessToken": access})) == "NotAuthorizedException"


def test_totp_mfa_with_a_secret_of_its_own(
    cloud: EmbeddedCloud, http: HttpClient, client_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two accounts that each associate an authenticator app
    secrets_seen = []
    for _ in range(2):
        email = new_email()
        cloud.create_user(email, PASSWORD)
        access = sign_in(http, client_id, email)[1]["AuthenticationResult"]["AccessToken"]
        status, body = cognito(http, "AssociateSoftwareToken", {"AccessToken": access})
        assert status == 200
        secrets_seen.append(body["SecretCode"])
    assert secrets_seen[0] != secrets_seen[1]
    secret = secrets_seen[1]
    # a wrong code does not enable it, the app's code does
    verify = {"AccessToken": access, "FriendlyDeviceName": "phone"}
    now = time.time()
    assert error(cognito(http, "VerifySoftwareToken", {**verify, "UserCode": wrong(totp(secret, now))})) == (
        "EnableSoftwareTokenMFAException"
    )
    assert error(
        cognito(http, "VerifySoftwareToken", {**verify, "UserCode": totp(secrets_seen[0], now)})
    ) == ("EnableSoftwareTokenMFAException")
    status, body = cognito(http, "VerifySoftwareToken", {**verify, "UserCode": totp(secret, now)})
    assert status == 200 and body["Status"] == "SUCCESS"
    prefer = {"AccessToken": access, "SoftwareTokenMfaSettings": {"Enabled": True, "PreferredMfa": True}}
    assert cognito(http, "SetUserMFAPreference", prefer)[0] == 200
    # When the account signs in, then Cognito asks for a code
    status, body = sign_in(http, client_id, email)
    assert status == 200 and body["ChallengeName"] == "SOFTWARE_TOKEN_MFA"

    def answer(code: str, session: str) -> tuple[int, dict[str, Any]]:
        return cognito(
            http,
            "RespondToAuthChallenge",
            {
                "ClientId": client_id,
                "ChallengeName": "SOFTWARE_TOKEN_MFA",
                "Session": session,
                "ChallengeResponses": {"USERNAME": email, "SOFTWARE_TOKEN_MFA_CODE": code},
            },
        )

    assert error(answer(wrong(totp(secret, time.time())), body["Session"])) == "CodeMismatchException"
    # the code of the next step (one step of skew is allowed); the verified one was spent already
    code = totp(secret, time.time() + 30)
    status, result = answer(code, body["Session"])
    assert status == 200 and result["AuthenticationResult"]["AccessToken"]
    # the same code a second time is refused
    again = sign_in(http, client_id, email)[1]
    assert error(answer(code, again["Session"])) == "ExpiredCodeException"
    # and a sign-in left waiting longer than 3 minutes must start again, whatever the code
    stale = sign_in(http, client_id, email)[1]
    later = time.time() + CHALLENGE_SECONDS + 1
    monkeypatch.setattr(cloud.gateway.cognito, "clock", lambda: later)
    status, body = answer(totp(secret, later), stale["Session"])
    assert (status, body["__type"]) == (400, "NotAuthorizedException"), body
