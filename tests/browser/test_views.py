"""Every view of the claim page, at desktop and phone widths: axe-core finds no serious or critical
accessibility problem, nothing scrolls sideways, and a screenshot of each lands in test-artifacts/.

The devices are real: one with relays whose agent runs and comes online, one claimed whose device has
not checked in yet, and one pending device added with a registration token.
"""

from __future__ import annotations

from typing import Any

import pytest

from lambdas.logic.manufacturing import mint_device
from tests.browser.conftest import DESKTOP, PHONE, assert_accessible, screenshot, sign_in

pytestmark = pytest.mark.browser

ONLINE_TIMEOUT_MS = 60_000


def check_view(page: Any, name: str) -> None:
    """axe at both widths, no sideways scrolling, and `<name>-desktop.png` / `<name>-phone.png`."""
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        assert_accessible(page, f"{name} ({label})")
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= size["width"], f"{name} ({label}) scrolls sideways: {width} px"
        screenshot(page, f"{name}-{label}")
    page.set_viewport_size(DESKTOP)


def test_every_view_is_accessible_at_desktop_and_phone_widths(
    cloud: Any, owner: Any, audited_page: Any, start_agent: Any
) -> None:
    from playwright.sync_api import expect

    page = audited_page

    # Signed out, then a wrong password
    page.goto(cloud.gateway_url + "/")
    expect(page.get_by_test_id("signin-form")).to_be_visible()
    check_view(page, "signin")
    page.get_by_test_id("signin-email").fill(owner.email)
    page.get_by_test_id("signin-password").fill("not-the-password-1A!")
    page.get_by_test_id("signin-submit").click()
    expect(page.get_by_test_id("signin-error")).to_be_visible()
    check_view(page, "signin-error")

    # Given: an online device with relays, a claimed one not yet checked in, a pending one
    live = mint_device(None, "relay-board", "browser-test")
    start_agent(live, board="relay-board")
    assert owner.request("POST", "/v1/claims", {"claimCode": live.display_code, "name": "Greenhouse pump"})[
        0
    ] in (
        200,
        201,
    )
    waiting = mint_device(None, "esp32", "browser-test")
    assert owner.request("POST", "/v1/claims", {"claimCode": waiting.display_code, "name": "Hall sensor"})[
        0
    ] in (
        200,
        201,
    )
    assert owner.request("POST", "/v1/pending", {"name": "Workshop", "board": "esp32"})[0] == 201

    # My Devices, light and dark
    sign_in(page, cloud.gateway_url, owner.email, owner.password)
    card = page.get_by_test_id("device-card").filter(has_text="Greenhouse pump")
    expect(card.get_by_test_id("device-presence")).to_have_attribute(
        "data-presence", "online", timeout=ONLINE_TIMEOUT_MS
    )
    expect(card.get_by_test_id("relay-toggle").first).to_be_visible(timeout=30_000)
    expect(card.get_by_test_id("sensor-reading").first).to_be_visible(timeout=30_000)
    other = page.get_by_test_id("device-card").filter(has_text="Hall sensor")
    expect(other.get_by_test_id("device-presence")).to_have_text("Claimed")
    expect(page.get_by_test_id("pending-item").filter(has_text="Workshop")).to_be_visible()
    check_view(page, "devices")
    page.emulate_media(color_scheme="dark")
    assert_accessible(page, "devices (dark)")
    screenshot(page, "devices-dark")
    page.emulate_media(color_scheme="light")

    # Add device: the form, then the configuration it hands out
    page.get_by_test_id("add-device-button").click()
    expect(page.get_by_test_id("add-device-form")).to_be_visible()
    check_view(page, "add-device")
    page.get_by_test_id("add-device-name").fill("Garage door")
    page.get_by_test_id("add-device-submit").click()
    expect(page.get_by_test_id("config-text")).to_contain_text("registration_token")
    check_view(page, "add-device-config")

    # The confirmation dialog on a pending device
    dialog = page.get_by_test_id("confirm-dialog")
    page.get_by_test_id("pending-item").filter(has_text="Workshop").get_by_test_id("pending-delete").click()
    expect(dialog).to_be_visible()
    check_view(page, "dialog-pending-delete")
    page.get_by_test_id("confirm-cancel").click()
    expect(dialog).to_be_hidden()

    # Details, with the relay and sensor settings
    card.get_by_test_id("device-open").click()
    expect(page.get_by_test_id("controls-form")).to_be_visible(timeout=15_000)
    expect(page.get_by_test_id("event-row").first).to_be_visible()
    check_view(page, "details")
    page.emulate_media(color_scheme="dark")
    assert_accessible(page, "details (dark)")
    page.emulate_media(color_scheme="light")

    # The confirmation dialogs: one with an input, one destructive
    page.get_by_test_id("rename-button").click()
    expect(dialog).to_be_visible()
    check_view(page, "dialog-rename")
    page.get_by_test_id("confirm-cancel").click()
    page.get_by_test_id("delete-button").click()
    expect(dialog).to_be_visible()
    check_view(page, "dialog-delete")
    page.get_by_test_id("confirm-cancel").click()
    expect(dialog).to_be_hidden()

    # A revoked device: its state, not a stale "Online", and no relay settings
    page.get_by_test_id("revoke-button").click()
    page.get_by_test_id("confirm-ok").click()
    expect(page.get_by_test_id("cert-status")).to_have_text("REVOKED")
    expect(page.get_by_test_id("details-presence")).to_have_text("Revoked")
    expect(page.get_by_test_id("controls-section")).to_be_hidden()
    check_view(page, "details-revoked")


def test_the_accessibility_check_finds_a_real_problem(cloud: Any, audited_page: Any) -> None:
    """The check above can fail: a button without a name and grey-on-grey text are caught."""
    from playwright.sync_api import expect

    from tests.browser.conftest import axe_violations

    audited_page.goto(cloud.gateway_url + "/")
    expect(audited_page.get_by_test_id("signin-form")).to_be_visible()
    audited_page.evaluate(
        """() => {
          const form = document.getElementById('signin-form');
          form.append(document.createElement('button'));
          const faint = document.createElement('p');
          faint.textContent = 'Hard to read';
          faint.className = 'muted';
          faint.setAttribute('data-faint', '');
          form.append(faint);
          const sheet = new CSSStyleSheet();
          sheet.replaceSync('[data-faint] { color: #c8ccd0 !important; }');
          document.adoptedStyleSheets = [sheet];
        }"""
    )
    found = {v["id"] for v in axe_violations(audited_page)}
    assert {"button-name", "color-contrast"} <= found, found
