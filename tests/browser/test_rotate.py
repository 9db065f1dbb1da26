""" "Renew certificate" on the details view, in headless Chromium against the embedded cloud and the real
agent: behind the confirmation dialog, and the page then shows the new certificate and the rotation in
the audit trail."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.conftest import sign_in

pytestmark = pytest.mark.browser

ONLINE_TIMEOUT_MS = 60_000


def test_renew_certificate_asks_first_then_the_device_switches(
    cloud: Any, owner: Any, page: Any, start_agent: Any
) -> None:
    from playwright.sync_api import expect

    from lambdas.logic.manufacturing import mint_device

    minted = mint_device(None, "linux-browser-test", "browser-test")
    start_agent(minted)
    status, body = owner.request("POST", "/v1/claims", {"claimCode": minted.claim_code, "name": "Porch"})
    assert status == 200, body

    sign_in(page, cloud.gateway_url, owner.email, owner.password)
    page.goto(f"{cloud.gateway_url}/#/devices/{minted.device_id}")
    expect(page.get_by_test_id("details-presence")).to_have_attribute(
        "data-presence", "online", timeout=ONLINE_TIMEOUT_MS
    )
    old_id = page.get_by_test_id("cert-id").inner_text()
    button = page.get_by_test_id("rotate-button")
    expect(button).to_be_enabled()
    dialog = page.get_by_test_id("confirm-dialog")

    # Cancel changes nothing.
    button.click()
    expect(dialog).to_be_visible()
    expect(page.get_by_test_id("confirm-message")).to_contain_text("“Porch”")
    page.get_by_test_id("confirm-cancel").click()
    expect(dialog).to_be_hidden()
    assert "certificate.rotation-requested" not in _actions(owner, minted.device_id)

    button.click()
    page.get_by_test_id("confirm-ok").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_test_id("app-message")).to_contain_text("new certificate")
    # The page polls: the new certificate appears, ACTIVE, and the trail records the rotation.
    expect(page.get_by_test_id("cert-id")).not_to_have_text(old_id, timeout=ONLINE_TIMEOUT_MS)
    expect(page.get_by_test_id("cert-id")).to_have_text(re.compile(r"^[0-9a-f]{16,}$"))
    expect(page.get_by_test_id("cert-status")).to_have_text("ACTIVE")
    expect(page.get_by_test_id("events-table")).to_contain_text("rotated", timeout=ONLINE_TIMEOUT_MS)
    expect(page.get_by_test_id("details-presence")).to_have_attribute(
        "data-presence", "online", timeout=ONLINE_TIMEOUT_MS
    )


def _actions(owner: Any, device_id: str) -> list[str]:
    status, body = owner.request("GET", f"/v1/devices/{device_id}/events")
    assert status == 200
    return [e["action"] for e in body["events"]]
