"""Chromium through Playwright for the browser tests: Debian's /usr/bin/chromium, headless.

Helpers: `sign_in`, `assert_accessible` (axe-core from node_modules, injected into the page: no serious
or critical violations) and `screenshot` (into test-artifacts/, for the README and for people).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts"
AXE = REPO_ROOT / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",  # everything is on 127.0.0.1
]
UI_TIMEOUT_MS = 15_000
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
BLOCKING_IMPACTS = ("serious", "critical")


# -- browser -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is not installed (make system-deps installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _open_tab(browser: Any, **options: Any) -> Iterator[Any]:
    """A fresh browser context (own sessionStorage) at desktop size; fails the test on any JS error."""
    context = browser.new_context(viewport=DESKTOP, locale="en-US", **options)
    context.set_default_timeout(UI_TIMEOUT_MS)
    tab = context.new_page()
    js_errors: list[str] = []
    tab.on("pageerror", lambda exc: js_errors.append(str(exc)))
    try:
        yield tab
    finally:
        context.close()
    assert not js_errors, f"JavaScript errors on the page: {js_errors}"


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    yield from _open_tab(browser)


@pytest.fixture
def audited_page(browser: Any) -> Iterator[Any]:
    """The same, with the page's Content-Security-Policy bypassed so that axe-core can be injected
    (the policy allows no inline script, and an injected script is one)."""
    if not AXE.is_file():
        pytest.fail(f"{AXE} is missing: `make setup` (npm install) installs axe-core")
    yield from _open_tab(browser, bypass_csp=True)


def sign_in(page: Any, base_url: str, email: str, password: str) -> None:
    from playwright.sync_api import expect

    page.goto(base_url + "/")
    page.get_by_test_id("signin-email").fill(email)
    page.get_by_test_id("signin-password").fill(password)
    page.get_by_test_id("signin-submit").click()
    expect(page.get_by_test_id("devices-view")).to_be_visible()
    expect(page.get_by_test_id("user-email")).to_have_text(email)


# -- accessibility and screenshots ---------------------------------------------------------------------
def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, { resultTypes: ['violations'] })")
    return [v for v in result["violations"] if v.get("impact") in BLOCKING_IMPACTS]


def describe_violations(violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        targets = [json.dumps(n.get("target")) for n in v.get("nodes", [])[:5]]
        summary = (v.get("nodes") or [{}])[0].get("failureSummary", "").replace("\n", " ")
        lines.append(f"{v['impact']}: {v['id']} ({v['help']}) on {', '.join(targets)}; {summary}")
    return "\n".join(lines)


def assert_accessible(page: Any, view: str) -> None:
    violations = axe_violations(page)
    assert not violations, f"accessibility problems on {view}:\n{describe_violations(violations)}"


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
