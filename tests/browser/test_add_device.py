"""Add device in the browser (design.md B): the configuration is shown, the pending card counts down,
and the real agent started with that configuration registers and turns the device card online."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import ARTIFACTS, sign_in
from tests.conftest import TEST_AGENT_SETTINGS, random_mac

pytestmark = pytest.mark.browser


def test_add_device_pending_then_online(
    cloud: Any, owner: Any, page: Any, start_agent: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    # Given: a signed-in owner
    sign_in(page, cloud.gateway_url, owner.email, owner.password)

    # When: they add a device for the Python agent
    page.get_by_test_id("add-device-button").click()
    page.get_by_test_id("add-device-name").fill("Greenhouse")
    page.get_by_test_id("add-device-board").select_option("python-agent")
    page.get_by_test_id("add-device-submit").click()

    # Then: the configuration is shown with its token, and a pending card counts down
    config = page.get_by_test_id("config-text")
    expect(config).to_contain_text("registration_token")
    expect(page.get_by_test_id("config-download")).to_contain_text("agent.toml")
    pending = page.get_by_test_id("pending-item").filter(has_text="Greenhouse")
    expect(pending).to_be_visible()
    expect(pending.get_by_test_id("pending-expires")).to_have_text("expires in 24 h")
    expect(pending.get_by_test_id("pending-delete")).to_be_visible()

    # When: the real agent boots with the configuration the page showed
    home = tmp_path / "greenhouse"
    home.mkdir()
    extra = "".join(f"{k} = {v}\n" for k, v in TEST_AGENT_SETTINGS.items())
    (home / "agent.toml").write_text(
        config.inner_text() + f'\nmac = "{random_mac()}"\nstate_dir = "state"\n' + extra
    )
    start_agent.run(home / "agent.toml")

    # Then: the pending card goes away and the device card turns online
    card = page.get_by_test_id("device-card").filter(has_text="Greenhouse")
    expect(card.get_by_test_id("device-presence")).to_have_attribute(
        "data-presence", "online", timeout=60_000
    )
    expect(pending).to_have_count(0)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "add-device-online.png"), full_page=True)
