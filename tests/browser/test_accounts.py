"""Accounts on the page, in Chromium against the embedded cloud: sign up with the code from the local
mailbox, then claim (the device row names the owner by id and real email); forgot / reset password;
change password; TOTP two-step sign-in; sign out without an error. axe checks each new form."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import pytest

from lambdas.logic.manufacturing import mint_device
from local.cognito_front import totp
from local.testing import HttpClient
from tests import rawdb
from tests.browser.conftest import assert_accessible, screenshot, sign_in

pytestmark = pytest.mark.browser

PASSWORD = "Browser-accounts-1!"
NEW_PASSWORD = "Browser-accounts-2?"
FIRST_CALL_TIMEOUT_MS = 60_000


def mailed_code(cloud: Any, email: str, after: int = 0) -> str:
    """The code of the newest message to `email` (the mailbox is read as a person would, by URL)."""
    messages = HttpClient(cloud.gateway_url).get(f"/_local/mailbox.json?to={email}").json()["messages"]
    assert len(messages) > after, f"no new mail to {email}: {messages}"
    return str(messages[0]["code"])


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def sign_out_cleanly(page: Any) -> None:
    """Sign out, and prove that Cognito's RevokeToken answered 200 and the page shows no error."""
    from playwright.sync_api import expect

    def is_revoke(response: Any) -> bool:
        return "RevokeToken" in (response.request.headers.get("x-amz-target") or "")

    with page.expect_response(is_revoke) as revoked:
        page.get_by_test_id("signout-button").click()
    assert revoked.value.status == 200, revoked.value.text()
    expect(page.get_by_test_id("signin-form")).to_be_visible()
    expect(page.get_by_test_id("signin-error")).to_be_hidden()


def test_sign_up_confirm_claim_and_sign_out(cloud: Any, audited_page: Any) -> None:
    from playwright.sync_api import expect

    page = audited_page
    email = f"New-Owner-{uuid.uuid4().hex[:8]}@Latchkey.test"  # typed with capitals: stored lowercase
    stored = email.lower()
    # Given the sign-in page, when the person chooses "Create an account"
    page.goto(cloud.gateway_url + "/")
    page.get_by_test_id("signup-link").click()
    expect(page.get_by_test_id("signup-form")).to_be_visible()
    expect(page.get_by_test_id("signup-email")).to_be_focused()
    assert_accessible(page, "sign-up form")
    # a password the policy refuses is explained before anything is sent
    page.get_by_test_id("signup-email").fill(email)
    page.get_by_test_id("signup-password").fill("short")
    page.get_by_test_id("signup-submit").click()
    expect(page.get_by_test_id("signup-error")).to_contain_text("at least 12 characters")
    page.get_by_test_id("signup-password").fill(PASSWORD)
    page.get_by_test_id("signup-submit").click()
    # Then it asks for the mailed code
    expect(page.get_by_test_id("confirm-signup-form")).to_be_visible()
    expect(page.get_by_test_id("confirm-signup-text")).to_contain_text(stored)
    expect(page.get_by_test_id("confirm-signup-code")).to_be_focused()
    assert_accessible(page, "confirm form")
    screenshot(page, "signup-confirm-desktop")
    code = mailed_code(cloud, stored)
    # a wrong code is refused in words
    page.get_by_test_id("confirm-signup-code").fill(wrong(code))
    page.get_by_test_id("confirm-signup-submit").click()
    expect(page.get_by_test_id("confirm-signup-error")).to_have_text(re.compile("code isn't right"))
    # the mailed one signs the new owner in
    page.get_by_test_id("confirm-signup-code").fill(code)
    page.get_by_test_id("confirm-signup-submit").click()
    expect(page.get_by_test_id("devices-view")).to_be_visible()
    expect(page.get_by_test_id("user-email")).to_have_text(stored)
    # This file runs first in a session: the owner function's first call imports it (seconds when busy)
    expect(page.get_by_test_id("devices-loading")).to_be_hidden(timeout=FIRST_CALL_TIMEOUT_MS)

    # When the new owner claims a device
    minted = mint_device(None, "esp32", "browser-test")
    page.get_by_test_id("claim-code-input").fill(minted.display_code)
    page.get_by_test_id("claim-submit").click()
    # (the first claim of a process also creates its Cognito client, to read the owner's email)
    expect(page.get_by_test_id("claim-success")).to_be_visible(timeout=FIRST_CALL_TIMEOUT_MS)
    # Then the device row names the owner by Cognito id and real email (the page sends the access token)
    user = cloud.aws("cognito-idp").admin_get_user(UserPoolId=cloud.user_pool_id, Username=stored)
    sub = {a["Name"]: a["Value"] for a in user["UserAttributes"]}["sub"]
    item = rawdb.get(minted.device_id)
    assert item is not None and (item["ownerId"], item["ownerEmail"]) == (sub, stored)

    # And signing out answers no error
    sign_out_cleanly(page)


def test_forgot_password_then_sign_in_with_the_new_one(cloud: Any, audited_page: Any) -> None:
    from playwright.sync_api import expect

    page = audited_page
    email = f"forgetful-{uuid.uuid4().hex[:8]}@latchkey.test"
    cloud.create_user(email, PASSWORD)
    page.goto(cloud.gateway_url + "/")
    page.get_by_test_id("signin-email").fill(email)
    page.get_by_test_id("forgot-link").click()
    expect(page.get_by_test_id("forgot-form")).to_be_visible()
    expect(page.get_by_test_id("forgot-email")).to_have_value(email)  # carried over from sign-in
    assert_accessible(page, "forgot-password form")
    page.get_by_test_id("forgot-submit").click()
    expect(page.get_by_test_id("reset-form")).to_be_visible()
    assert_accessible(page, "reset form")
    code = mailed_code(cloud, email)
    # a wrong code changes nothing
    page.get_by_test_id("reset-code").fill(wrong(code))
    page.get_by_test_id("reset-password").fill(NEW_PASSWORD)
    page.get_by_test_id("reset-submit").click()
    expect(page.get_by_test_id("reset-error")).to_have_text(re.compile("code isn't right"))
    # the mailed code sets the new password, and the page goes back to sign in with the email filled in
    page.get_by_test_id("reset-code").fill(code)
    page.get_by_test_id("reset-password").fill(NEW_PASSWORD)
    page.get_by_test_id("reset-submit").click()
    expect(page.get_by_test_id("signin-info")).to_contain_text("password has been changed")
    expect(page.get_by_test_id("signin-email")).to_have_value(email)
    expect(page.get_by_test_id("signin-password")).to_be_focused()
    page.get_by_test_id("signin-password").fill(PASSWORD)  # the old one no longer works
    page.get_by_test_id("signin-submit").click()
    expect(page.get_by_test_id("signin-error")).to_have_text("Incorrect email or password.")
    sign_in(page, cloud.gateway_url, email, NEW_PASSWORD)
    sign_out_cleanly(page)


def test_change_password_and_two_step_sign_in(cloud: Any, audited_page: Any) -> None:
    from playwright.sync_api import expect

    page = audited_page
    email = f"careful-{uuid.uuid4().hex[:8]}@latchkey.test"
    cloud.create_user(email, PASSWORD)
    sign_in(page, cloud.gateway_url, email, PASSWORD)
    page.get_by_test_id("account-link").click()
    expect(page.get_by_test_id("account-view")).to_be_visible()
    expect(page.get_by_test_id("account-email")).to_have_text(email)
    expect(page.get_by_test_id("mfa-status")).to_have_attribute("data-enabled", "false")
    expect(page.get_by_test_id("mfa-start")).to_be_visible()
    assert_accessible(page, "account view")

    # change password: a wrong current one is refused, the right one changes it
    page.get_by_test_id("password-current").fill("Not-the-password-9!")
    page.get_by_test_id("password-new").fill(NEW_PASSWORD)
    page.get_by_test_id("password-submit").click()
    expect(page.get_by_test_id("password-error")).to_have_text("Your current password is not right.")
    page.get_by_test_id("password-current").fill(PASSWORD)
    page.get_by_test_id("password-new").fill(NEW_PASSWORD)
    page.get_by_test_id("password-submit").click()
    expect(page.get_by_test_id("password-success")).to_be_visible()

    # two-step sign-in with an authenticator app: the key shown, a wrong code refused, the right one
    page.get_by_test_id("mfa-start").click()
    expect(page.get_by_test_id("mfa-setup-form")).to_be_visible()
    secret = page.get_by_test_id("mfa-secret").inner_text().replace(" ", "")
    assert re.fullmatch("[A-Z2-7]{32}", secret), secret
    expect(page.get_by_test_id("mfa-uri")).to_contain_text(f"secret={secret}")
    assert_accessible(page, "authenticator set-up")
    screenshot(page, "account-mfa-desktop")
    page.get_by_test_id("mfa-setup-code").fill(wrong(totp(secret, time.time())))
    page.get_by_test_id("mfa-setup-submit").click()
    expect(page.get_by_test_id("mfa-settings-error")).to_contain_text("code isn't right")
    page.get_by_test_id("mfa-setup-code").fill(totp(secret, time.time()))
    page.get_by_test_id("mfa-setup-submit").click()
    expect(page.get_by_test_id("mfa-status")).to_have_attribute("data-enabled", "true")
    sign_out_cleanly(page)

    # signing in now asks for the app's code, with the new password
    page.get_by_test_id("signin-email").fill(email)
    page.get_by_test_id("signin-password").fill(NEW_PASSWORD)
    page.get_by_test_id("signin-submit").click()
    expect(page.get_by_test_id("mfa-form")).to_be_visible()
    expect(page.get_by_test_id("mfa-code")).to_be_focused()
    assert_accessible(page, "authentication-code form")
    page.get_by_test_id("mfa-code").fill(wrong(totp(secret, time.time())))
    page.get_by_test_id("mfa-submit").click()
    expect(page.get_by_test_id("mfa-error")).to_contain_text("code isn't right")
    page.get_by_test_id("mfa-code").fill(totp(secret, time.time() + 30))  # the next step: not used yet
    page.get_by_test_id("mfa-submit").click()
    expect(page.get_by_test_id("devices-view")).to_be_visible()
    expect(page.get_by_test_id("user-email")).to_have_text(email)

    # and it can be turned off again
    page.get_by_test_id("account-link").click()
    expect(page.get_by_test_id("mfa-disable")).to_be_visible()
    page.get_by_test_id("mfa-disable").click()
    expect(page.get_by_test_id("mfa-status")).to_have_attribute("data-enabled", "false")
