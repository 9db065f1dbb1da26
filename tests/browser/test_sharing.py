"""Sharing in Chromium with two accounts: the owner shares a live device from the Share dialog; the member
sees it with their role (a viewer without relay toggles and owner actions, an operator with toggles),
and loses it when the owner removes them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from lambdas.logic.manufacturing import mint_device
from tests.browser.conftest import _open_tab, assert_accessible, screenshot, sign_in

pytestmark = pytest.mark.browser

ONLINE_TIMEOUT_MS = 60_000


@pytest.fixture
def member_page(browser: Any) -> Iterator[Any]:
    """A second browser context: the other account's own tab (own session)."""
    yield from _open_tab(browser)


def test_share_as_viewer_then_operator_then_remove(
    cloud: Any, make_owner: Any, audited_page: Any, member_page: Any, start_agent: Any
) -> None:
    from playwright.sync_api import expect

    page = audited_page  # the owner's tab (axe-core is injected into it)
    owner, member = make_owner(), make_owner()
    # Given: the owner's device with relays is online
    minted = mint_device(None, "relay-board", "browser-test")
    start_agent(minted, board="relay-board")
    assert owner.request("POST", "/v1/claims", {"claimCode": minted.display_code, "name": "Porch"})[0] == 200
    sign_in(page, cloud.gateway_url, owner.email, owner.password)
    card = page.get_by_test_id("device-card").filter(has_text="Porch")
    expect(card.get_by_test_id("device-presence")).to_have_attribute(
        "data-presence", "online", timeout=ONLINE_TIMEOUT_MS
    )

    # When: the owner shares it with the member as a viewer, from the Share dialog
    card.get_by_test_id("device-open").click()
    page.get_by_test_id("share-button").click()
    dialog = page.get_by_test_id("share-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_test_id("share-empty")).to_be_visible()
    dialog.get_by_test_id("share-email").fill("nobody-here@latchkey.test")
    dialog.get_by_test_id("share-add").click()
    expect(dialog.get_by_test_id("share-error")).to_contain_text("no account")
    dialog.get_by_test_id("share-email").fill(member.email)
    dialog.get_by_test_id("share-role").select_option("viewer")
    dialog.get_by_test_id("share-add").click()
    row = dialog.get_by_test_id("share-item").filter(has_text=member.email)
    expect(row.get_by_test_id("share-role-text")).to_have_text("Viewer")
    assert_accessible(page, "share dialog")
    screenshot(page, "share-dialog")

    # Then: the member sees it as a viewer: sensors, no relay toggles, none of the owner's actions
    sign_in(member_page, cloud.gateway_url, member.email, member.password)
    shared = member_page.get_by_test_id("device-card").filter(has_text="Porch")
    expect(shared.get_by_test_id("device-role")).to_contain_text(f"Shared by {owner.email} · Viewer")
    expect(shared.get_by_test_id("sensor-reading").first).to_be_visible(timeout=30_000)
    expect(shared.get_by_test_id("relay-toggle")).to_have_count(0)
    shared.get_by_test_id("device-open").click()
    expect(member_page.get_by_test_id("details-role-note")).to_contain_text("a viewer")
    for action in (
        "rename-button",
        "revoke-button",
        "release-button",
        "delete-button",
        "share-button",
        "transfer-button",
    ):
        expect(member_page.get_by_test_id(action)).to_be_hidden()
    expect(member_page.get_by_test_id("events-section")).to_be_hidden()
    expect(member_page.get_by_test_id("controls-section")).to_be_hidden()

    # When: the owner makes the member an operator (sharing again with the other role)
    dialog.get_by_test_id("share-email").fill(member.email)
    dialog.get_by_test_id("share-role").select_option("operator")
    dialog.get_by_test_id("share-add").click()
    expect(row.get_by_test_id("share-role-text")).to_have_text("Operator")

    # Then: the member's page offers the relays (refreshed by the page's own polling)
    member_page.get_by_test_id("details-back").click()
    expect(shared.get_by_test_id("device-role")).to_contain_text("Operator")
    relay = shared.locator('[data-testid="relay-toggle"][data-relay="r1"]')
    expect(relay).to_be_visible(timeout=30_000)
    expect(relay).to_have_attribute("data-reported", "false", timeout=30_000)
    relay.click()
    expect(relay).to_have_attribute("data-reported", "true", timeout=30_000)
    screenshot(member_page, "shared-device-operator")

    # When: the owner removes the member
    row.get_by_test_id("share-remove").click()
    expect(dialog.get_by_test_id("share-empty")).to_be_visible()
    dialog.get_by_test_id("share-close").click()
    expect(dialog).to_be_hidden()

    # Then: the device leaves the member's list
    expect(member_page.get_by_test_id("device-card")).to_have_count(0, timeout=15_000)
    expect(member_page.get_by_test_id("devices-empty")).to_be_visible()
    actions = [
        e["action"] for e in owner.request("GET", f"/v1/devices/{minted.device_id}/events")[1]["events"]
    ]
    assert actions[:3] == ["share.removed", "share.changed", "share.added"]
