"""Transfer in Chromium with two accounts and the real agent: the owner offers a live device, the
recipient declines a first offer and accepts a second; the device leaves the old owner's page, and the
agent reconnects for the new owner with a new certificate, the old one gone."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from lambdas.logic.manufacturing import mint_device
from tests.browser.conftest import _open_tab, assert_accessible, screenshot, sign_in

pytestmark = pytest.mark.browser

ONLINE_TIMEOUT_MS = 60_000


@pytest.fixture
def buyer_page(browser: Any) -> Iterator[Any]:
    """The recipient's own tab (its own session), with axe-core allowed in."""
    yield from _open_tab(browser, bypass_csp=True)


def offer_from_details(page: Any, email: str) -> None:
    from playwright.sync_api import expect

    page.get_by_test_id("transfer-button").click()
    dialog = page.get_by_test_id("confirm-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_test_id("confirm-input").fill(email)
    dialog.get_by_test_id("confirm-ok").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_test_id("details-transfer-text")).to_contain_text(f"Offered to {email}")


def test_offer_decline_offer_accept(
    cloud: Any, make_owner: Any, page: Any, buyer_page: Any, start_agent: Any
) -> None:
    from playwright.sync_api import expect

    seller, buyer = make_owner(), make_owner()
    minted = mint_device(None, "relay-board", "browser-test")
    start_agent(minted, board="relay-board")
    assert (
        seller.request("POST", "/v1/claims", {"claimCode": minted.display_code, "name": "Old garage"})[0]
        == 200
    )
    sign_in(page, cloud.gateway_url, seller.email, seller.password)
    card = page.get_by_test_id("device-card").filter(has_text="Old garage")
    presence = card.get_by_test_id("device-presence")
    expect(presence).to_have_attribute("data-presence", "online", timeout=ONLINE_TIMEOUT_MS)
    old_certificate = seller.request("GET", f"/v1/devices/{minted.device_id}")[1]["certificate"]["id"]

    # An address without an account is refused inside the dialog
    card.get_by_test_id("device-open").click()
    page.get_by_test_id("transfer-button").click()
    page.get_by_test_id("confirm-input").fill("nobody-here@latchkey.test")
    page.get_by_test_id("confirm-ok").click()
    expect(page.get_by_test_id("confirm-error")).to_contain_text("no account")
    page.get_by_test_id("confirm-cancel").click()

    # When: the seller offers it; the buyer declines
    offer_from_details(page, buyer.email)
    expect(page.get_by_test_id("transfer-button")).to_be_disabled()
    sign_in(buyer_page, cloud.gateway_url, buyer.email, buyer.password)
    offer = buyer_page.get_by_test_id("transfer-item").filter(has_text="Old garage")
    expect(offer).to_contain_text(f"offered to you by {seller.email}")
    expect(offer.get_by_test_id("transfer-expires")).to_have_text("expires in 7 days")
    assert_accessible(buyer_page, "transfer offers")
    screenshot(buyer_page, "transfer-offer")
    offer.get_by_test_id("transfer-decline").click()
    buyer_page.get_by_test_id("confirm-ok").click()
    expect(buyer_page.get_by_test_id("transfers-section")).to_be_hidden()
    expect(page.get_by_test_id("details-transfer-note")).to_be_hidden(timeout=15_000)

    # When: the seller offers it again; the buyer accepts
    offer_from_details(page, buyer.email)
    expect(offer).to_be_visible(timeout=15_000)
    offer.get_by_test_id("transfer-accept").click()
    buyer_page.get_by_test_id("confirm-ok").click()
    expect(buyer_page.get_by_test_id("app-message")).to_contain_text("is now yours")

    # Then: it is the buyer's, renamed to the default, and comes online again with a new certificate
    mine = buyer_page.get_by_test_id("device-card").filter(has_text=minted.device_id[-4:].upper())
    expect(mine).to_have_count(1)
    expect(mine.get_by_test_id("device-role")).to_have_count(0)  # owned, not shared
    expect(mine.get_by_test_id("device-presence")).to_have_attribute(
        "data-presence", "online", timeout=ONLINE_TIMEOUT_MS
    )
    device = buyer.request("GET", f"/v1/devices/{minted.device_id}")[1]
    assert device["role"] == "owner" and device["state"] == "active"
    assert device["certificate"]["id"] != old_certificate
    from lambdas.aws_clients import client

    listed = {c["certificateId"] for c in client("iot").list_certificates()["certificates"]}
    assert old_certificate not in listed

    # And the seller has nothing of it left; the buyer's trail starts with the transfer
    expect(page.get_by_test_id("details-error")).to_contain_text("isn't in your account", timeout=15_000)
    page.get_by_test_id("details-back").click()
    expect(page.get_by_test_id("device-card")).to_have_count(0)
    assert seller.request("GET", f"/v1/devices/{minted.device_id}")[0] == 404
    mine.get_by_test_id("device-open").click()
    row = 'tr[data-testid="event-row"][data-action="{}"]'.format
    expect(buyer_page.locator(row("device.transferred"))).to_have_count(1)
    expect(buyer_page.locator(row("transfer.offered"))).to_have_count(0)
    expect(buyer_page.locator(row("share.added"))).to_have_count(0)
    actions = [
        e["action"] for e in buyer.request("GET", f"/v1/devices/{minted.device_id}/events")[1]["events"]
    ]
    assert "transfer.offered" not in actions and "device.renamed" not in actions
    screenshot(buyer_page, "transferred-device")
