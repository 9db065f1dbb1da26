"""A relay toggled in the browser reaches the real agent over MQTT and the card shows the confirmed state."""

from __future__ import annotations

from typing import Any

import pytest

from lambdas.logic.manufacturing import mint_device
from tests.browser.conftest import ARTIFACTS, sign_in

pytestmark = pytest.mark.browser


def test_toggle_relay_pending_then_confirmed(cloud: Any, owner: Any, page: Any, start_agent: Any) -> None:
    from playwright.sync_api import expect

    # Given: a claimed device whose real agent is online
    minted = mint_device(None, "relay-board", "browser-test")
    start_agent(minted, board="relay-board")
    status, _ = owner.request("POST", "/v1/claims", {"claimCode": minted.display_code, "name": "Garden"})
    assert status == 200
    sign_in(page, cloud.gateway_url, owner.email, owner.password)
    card = page.get_by_test_id("device-card").filter(has_text="Garden")
    expect(card.get_by_test_id("device-presence")).to_have_attribute(
        "data-presence", "online", timeout=60_000
    )
    relay = card.locator('[data-testid="relay-toggle"][data-relay="r1"]')
    expect(relay).to_have_attribute("data-reported", "false", timeout=30_000)

    # When: the owner switches relay 1 on
    relay.click()

    # Then: the device applies it and reports it; the card shows the confirmed state
    expect(relay).to_have_attribute("data-reported", "true", timeout=30_000)
    expect(relay).to_have_attribute("data-pending", "false")
    expect(relay).to_contain_text("On")
    expect(card.get_by_test_id("sensor-reading")).to_contain_text("°C")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "relays.png"), full_page=True)

    # And the details view offers the relay and sensor settings
    card.get_by_test_id("device-open").click()
    expect(page.get_by_test_id("controls-form")).to_be_visible(timeout=15_000)
    page.locator('[data-testid="relay-name"][data-relay="r2"]').fill("Pump")
    page.get_by_test_id("controls-save").click()

    def renamed() -> bool:
        state = owner.request("GET", f"/v1/devices/{minted.device_id}/state")[1]
        return state["reported"]["capabilities"]["relays"]["r2"]["name"] == "Pump"

    from local.testing import wait_until

    assert wait_until(renamed, timeout=30, interval=0.5)
