"""What an owner notices in the first hour, in Chromium against the real embedded cloud: the label's QR
link pre-fills the claim, an already-claimed device says so, focus stays where the person put it,
badges show a device's real state, and problems are explained next to their field."""

from __future__ import annotations

import re
from typing import Any

import pytest

from lambdas.logic.manufacturing import mint_device
from local.testing import wait_until
from tests.browser.conftest import sign_in

pytestmark = pytest.mark.browser

ONLINE_TIMEOUT_MS = 60_000


def active_testid(page: Any) -> str | None:
    return page.evaluate("() => document.activeElement && document.activeElement.dataset.testid || null")


def active_id(page: Any) -> str:
    return page.evaluate("() => document.activeElement ? document.activeElement.id : ''")


def wait_for_refreshes(page: Any, count: int = 2) -> None:
    """Until the device list has been fetched and drawn `count` more times (bounded by the UI timeout)."""
    for _ in range(count):
        before = page.get_by_test_id("devices-updated").text_content()
        page.wait_for_function(
            "(before) => document.getElementById('devices-updated').textContent !== before", arg=before
        )


def test_label_link_prefills_the_code_through_sign_in(cloud: Any, owner: Any, page: Any) -> None:
    from playwright.sync_api import expect

    minted = mint_device(None, "linux-browser-test", "browser-test")
    code = minted.claim_code
    formatted = f"{code[:5]}-{code[5:]}"

    # Given: the QR code on the label, opened while signed out
    page.goto(f"{cloud.gateway_url}/#claim={code.lower()}")
    expect(page.get_by_test_id("signin-claim-note")).to_have_text(
        f"Sign in to claim the device with the code {formatted}."
    )
    # The code leaves the address bar (a reload must not fill it in again)
    expect(page).to_have_url(re.compile(r"#/$"))

    # When: they sign in
    page.get_by_test_id("signin-email").fill(owner.email)
    page.get_by_test_id("signin-password").fill(owner.password)
    page.get_by_test_id("signin-submit").click()

    # Then: the code is in the claim field and the focus on the name, ready to claim
    expect(page.get_by_test_id("claim-code-input")).to_have_value(formatted)
    expect(page.get_by_test_id("claim-prefilled")).to_be_visible()
    assert active_id(page) == "claim-name"
    page.get_by_test_id("claim-name-input").fill("Porch light")
    page.get_by_test_id("claim-submit").click()
    expect(page.get_by_test_id("claim-success")).to_have_text(
        "Claimed “Porch light”. It comes online the next time it checks in."
    )
    expect(page.get_by_test_id("live-region")).to_contain_text("Claimed “Porch light”")

    # When: the same code is claimed again, it says the device is already theirs
    page.get_by_test_id("claim-code-input").fill(formatted)
    page.get_by_test_id("claim-submit").click()
    expect(page.get_by_test_id("claim-success")).to_have_text("“Porch light” is already in your account.")
    expect(page.get_by_test_id("claim-error")).to_be_hidden()

    # And a reload does not fill the code in again
    page.reload()
    expect(page.get_by_test_id("devices-view")).to_be_visible()
    expect(page.get_by_test_id("claim-code-input")).to_have_value("")


def test_label_link_while_signed_in_and_a_bad_link(cloud: Any, owner: Any, page: Any) -> None:
    from playwright.sync_api import expect

    sign_in(page, cloud.gateway_url, owner.email, owner.password)
    # Signing in puts the focus on the claim form's heading, not on <body>
    assert active_id(page) == "claim-heading"
    minted = mint_device(None, "linux-browser-test", "browser-test")
    code = minted.claim_code

    page.goto(f"{cloud.gateway_url}/#claim={code[:5]}-{code[5:]}")
    expect(page.get_by_test_id("claim-code-input")).to_have_value(f"{code[:5]}-{code[5:]}")
    assert active_id(page) == "claim-name"

    # A link with a code that cannot be right: filled in, and what is wrong is said next to the field
    page.goto(f"{cloud.gateway_url}/#claim=abc12")
    expect(page.get_by_test_id("claim-code-input")).to_have_value("ABC12")
    expect(page.get_by_test_id("claim-error")).to_have_text(
        "A claim code has 10 letters and digits — you entered 5."
    )
    expect(page.get_by_test_id("claim-code-input")).to_have_attribute("aria-invalid", "true")


def test_plain_words_next_to_the_field_and_a_notice_that_stays_on_its_view(
    cloud: Any, owner: Any, page: Any
) -> None:
    from playwright.sync_api import expect

    minted = mint_device(None, "linux-browser-test", "browser-test")
    assert owner.request("POST", "/v1/claims", {"claimCode": minted.claim_code, "name": "Attic"})[0] in (
        200,
        201,
    )
    sign_in(page, cloud.gateway_url, owner.email, owner.password)

    # A name with a tab in it is explained by the field, before anything is sent
    page.get_by_test_id("claim-code-input").fill("ABCDE-12345")
    page.get_by_test_id("claim-name-input").fill("Back\tdoor")
    page.get_by_test_id("claim-submit").click()
    expect(page.get_by_test_id("claim-name-error")).to_have_text(
        "A name can't contain a tab — remove it and try again."
    )
    expect(page.get_by_test_id("claim-name-input")).to_have_attribute("aria-invalid", "true")

    page.get_by_test_id("add-device-button").click()
    page.get_by_test_id("add-device-submit").click()
    expect(page.get_by_test_id("add-device-name-error")).to_have_text("Enter a name.")
    page.get_by_test_id("add-device-cancel").click()
    expect(page.get_by_test_id("add-device-form")).to_be_hidden()
    assert active_testid(page) == "add-device-button"

    # Claimed, not checked in: its state, not a presence
    card = page.locator(f'[data-testid="device-card"][data-device-id="{minted.device_id}"]')
    expect(card.get_by_test_id("device-presence")).to_have_text("Claimed")
    expect(card.get_by_test_id("device-state")).to_have_text("Waiting for the device to check in")

    # Opening the details puts the focus on the device's name
    card.get_by_test_id("device-open").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("details-name")).to_have_text("Attic")
    page.wait_for_function("() => document.activeElement && document.activeElement.id === 'details-name'")

    # Rename: the problem inside the dialog, under the input; the dialog stays open
    page.get_by_test_id("rename-button").click()
    page.get_by_test_id("confirm-input").fill("Attic\tfan")
    page.get_by_test_id("confirm-ok").click()
    expect(page.get_by_test_id("confirm-error")).to_have_text(
        "A name can't contain a tab — remove it and try again."
    )
    expect(page.get_by_test_id("confirm-dialog")).to_be_visible()
    page.get_by_test_id("confirm-input").fill("Attic fan")
    page.get_by_test_id("confirm-ok").click()
    expect(page.get_by_test_id("confirm-dialog")).to_be_hidden()
    assert active_testid(page) == "rename-button"  # back where the person was

    # The notice is part of the page, not over it: it covers no control
    message = page.get_by_test_id("app-message")
    expect(message).to_have_text(re.compile("Renamed “Attic” to “Attic fan”"))
    overlaps = page.evaluate(
        """() => {
          const box = document.getElementById('notice').getBoundingClientRect();
          return [...document.querySelectorAll('a[href], button, input, select')]
            .filter((n) => n.offsetParent !== null && !document.getElementById('notice').contains(n))
            .filter((n) => {
              const r = n.getBoundingClientRect();
              return r.left < box.right && box.left < r.right && r.top < box.bottom && box.top < r.bottom;
            })
            .map((n) => n.dataset.testid || n.id || n.tagName);
        }"""
    )
    assert overlaps == []

    # Escape closes a dialog and also puts the focus back on its button
    page.get_by_test_id("delete-button").click()
    expect(page.get_by_test_id("confirm-dialog")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("confirm-dialog")).to_be_hidden()
    page.wait_for_function("() => document.activeElement && document.activeElement.id === 'delete-button'")

    # And it does not follow the person to another view
    page.get_by_test_id("details-back").click()
    expect(page.get_by_test_id("devices-view")).to_be_visible()
    expect(message).to_be_hidden()
    assert active_testid(page) == "device-open"  # back on the card they came from
    assert page.evaluate("() => document.activeElement.closest('[data-device-id]').dataset.deviceId") == (
        minted.device_id
    )


def test_focus_survives_refreshes_settings_by_the_field_and_a_revoked_card(
    cloud: Any, owner: Any, page: Any, start_agent: Any
) -> None:
    from playwright.sync_api import expect

    # Given: a device with relays whose agent is online, and a pending device
    minted = mint_device(None, "relay-board", "browser-test")
    assert owner.request("POST", "/v1/claims", {"claimCode": minted.claim_code, "name": "Garden"})[0] in (
        200,
        201,
    )
    assert owner.request("POST", "/v1/pending", {"name": "Shed", "board": "esp32"})[0] == 201
    sign_in(page, cloud.gateway_url, owner.email, owner.password)
    # The agent starts once the page shows the device, so that the page sees it come online (the live
    # region announces changes, not the state found at the first render).
    start_agent(minted, board="relay-board")
    card = page.locator(f'[data-testid="device-card"][data-device-id="{minted.device_id}"]')
    expect(card.get_by_test_id("device-presence")).to_have_attribute(
        "data-presence", "online", timeout=ONLINE_TIMEOUT_MS
    )
    expect(page.get_by_test_id("live-region")).to_have_text("Garden: Online")
    relay = card.locator('[data-testid="relay-toggle"][data-relay="r1"]')
    expect(relay).to_have_attribute("data-reported", "false", timeout=30_000)

    # When: the keyboard is on a relay toggle while the page refreshes, the focus stays on that button
    relay.focus()
    relay.evaluate("(node) => { node.dataset.marker = 'focused'; }")
    wait_for_refreshes(page)
    assert page.evaluate("() => document.activeElement.dataset.marker") == "focused"
    # ... also when it is switched with the keyboard
    page.keyboard.press("Enter")
    expect(relay).to_have_attribute("data-reported", "true", timeout=30_000)
    assert page.evaluate("() => document.activeElement.dataset.marker") == "focused"

    # ... and on a pending device's button
    shed = page.get_by_test_id("pending-item").filter(has_text="Shed")
    shed.get_by_test_id("pending-regenerate").focus()
    shed.get_by_test_id("pending-regenerate").evaluate("(node) => { node.dataset.marker = 'pending'; }")
    wait_for_refreshes(page)
    assert page.evaluate("() => document.activeElement.dataset.marker") == "pending"

    # Settings: an offset set earlier, which an empty field must leave alone
    status, _ = owner.request(
        "PATCH", f"/v1/devices/{minted.device_id}/state", {"sensorOffsets": {"t1": 1.5}}
    )
    assert status == 200

    def reported_caps() -> dict[str, Any]:
        return owner.request("GET", f"/v1/devices/{minted.device_id}/state")[1]["reported"]["capabilities"]

    wait_until(lambda: reported_caps()["sensors"]["t1"]["offset"] == 1.5, timeout=30, interval=0.5)
    card.get_by_test_id("device-open").click()
    form = page.get_by_test_id("controls-form")
    expect(form).to_be_visible()
    name_r1 = page.locator('[data-testid="relay-name"][data-relay="r1"]')
    offset = page.locator('[data-testid="sensor-offset"][data-sensor="t1"]')
    expect(offset).to_have_value("1.5")

    # Nothing changed: nothing is sent
    page.get_by_test_id("controls-save").click()
    expect(page.get_by_test_id("controls-status")).to_have_text(
        "Nothing to save — these are the current settings."
    )

    # An empty relay name is explained by its field, and nothing is sent
    name_r1.fill("")
    page.get_by_test_id("controls-save").click()
    expect(page.locator("#relay-name-r1-error")).to_have_text("Give relay r1 a name (up to 32 characters).")
    expect(name_r1).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_test_id("app-message")).to_be_hidden()  # no toast for form problems
    assert reported_caps()["relays"]["r1"]["name"] == "Relay 1"

    # A new name with the offset left empty: the name is sent, the offset is not (it stays 1.5)
    name_r1.fill("Sprinkler")
    offset.fill("")
    page.get_by_test_id("controls-save").click()
    expect(page.get_by_test_id("controls-status")).to_have_text(
        "Saved. The device applies the settings the next time it is online."
    )
    expect(name_r1).not_to_have_attribute("aria-invalid", "true")
    wait_until(lambda: reported_caps()["relays"]["r1"]["name"] == "Sprinkler", timeout=30, interval=0.5)
    assert reported_caps()["sensors"]["t1"]["offset"] == 1.5

    # Revoked (here through the API, as another tab would): the card shows that, not "Online",
    # and offers no live readings or relay toggles any more
    page.get_by_test_id("details-back").click()
    assert owner.request("POST", f"/v1/devices/{minted.device_id}/revoke")[0] == 200
    expect(card.get_by_test_id("device-presence")).to_have_text("Revoked")
    expect(card.get_by_test_id("device-presence")).to_have_attribute("data-presence", "offline")
    expect(card.get_by_test_id("device-controls")).to_have_count(0)
    expect(page.get_by_test_id("live-region")).to_have_text("Garden: Revoked")


def test_the_page_modules_say_things_in_words(cloud: Any, page: Any) -> None:
    """The pure parts of the page's modules, run by Chromium itself."""
    page.goto(cloud.gateway_url + "/")
    words = page.evaluate(
        """async () => {
          const { timeUntil } = await import('/format.js');
          const { badgeOf, presenceOf } = await import('/status.js');
          const { plainApiMessage, nameProblem } = await import('/fields.js');
          const now = Date.now();
          const badge = (state) => badgeOf({ state, presence: 'online' });
          return {
            fresh: timeUntil(new Date(now + 24 * 3600e3 - 2e3).toISOString(), now),
            half: timeUntil(new Date(now + 30 * 60e3).toISOString(), now),
            past: timeUntil(new Date(now - 1e3).toISOString(), now),
            active: badge('active'),
            revoked: badge('revoked'),
            released: badge('unclaimed'),
            deleted: badge('deleted'),
            claimed: badge('claimed'),
            revokedPresence: presenceOf({ state: 'revoked', presence: 'online' }),
            empty: plainApiMessage("The field 'relayNames.r1' must not be empty."),
            long: plainApiMessage("The field 'name' must be at most 64 characters long."),
            other: plainApiMessage('No device has this claim code.'),
            control: nameProblem('a\\u0007b'),
            tooLong: nameProblem('x'.repeat(65)),
          };
        }"""
    )
    assert words["fresh"] == "expires in 24 h"
    assert words["half"] == "expires in 30 min"
    assert words["past"] == "expired"
    assert words["active"] == {"key": "online", "label": "Online"}
    assert words["revoked"] == {"key": "revoked", "label": "Revoked"}
    assert words["released"] == {"key": "released", "label": "Released"}
    assert words["deleted"] == {"key": "deleted", "label": "Deleted"}
    assert words["claimed"]["label"] == "Claimed"
    assert words["revokedPresence"] == "offline"
    assert words["empty"] == {"field": "relayNames.r1", "text": "Enter a name."}
    assert words["long"] == {"field": "name", "text": "Use at most 64 characters."}
    assert words["other"] == {"field": "", "text": "No device has this claim code."}
    assert (
        words["control"] == "A name can't contain an invisible control character — remove it and try again."
    )
    assert words["tooLong"] == "A name can have at most 64 characters — this one has 65."
