"""The page's check-in hint (web/checkin.js) follows the agent's schedule and says when and how."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest

from firmware import schedule

WEB = Path(__file__).resolve().parents[3] / "web"
CLAIMED_AT = "2026-12-03T10:00:00Z"
CLAIMED_MS = 1_796_292_000_000  # CLAIMED_AT in epoch ms


def run_js(body: str) -> object:
    """Evaluate `body` (which must `return` a JSON-able value) with web/checkin.js imported, in node."""
    code = f"import * as m from {json.dumps((WEB / 'checkin.js').as_uri())};\nconsole.log(JSON.stringify((() => {{ {body} }})()));"
    out = subprocess.run(
        ["node", "--input-type=module", "-e", code], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_the_pages_schedule_is_the_agents():
    assert run_js("return m.SCHEDULE;") == {
        "fastWait": schedule.FAST_WAIT,
        "fastWindow": schedule.FAST_WINDOW,
        "growth": schedule.GROWTH,
        "cap": schedule.DEFAULT_CAP,
        "jitter": schedule.DEFAULT_JITTER,
    }


@pytest.mark.parametrize("age", [0, 300, 900, 5000, 40000, 10**7])
def test_the_longest_wait_bounds_the_agents_waits(age):
    longest = run_js(f"return m.longestWait({age});")
    # the wait in flight when the owner claims, at any age up to the claim's, jitter included
    waits = [schedule.Backoff(age=float(age), attempt=10, rng=random.Random(i)).next() for i in range(500)]
    assert max(waits) <= longest + 1e-9
    assert max(waits) >= 0.95 * longest  # and the hint is not needlessly pessimistic


def test_a_claimed_device_quiet_for_30_s_gets_when_and_how():
    device = {"state": "claimed", "claimedAt": CLAIMED_AT}
    hints = run_js(
        f"const d = {json.dumps(device)};"
        f"return [m.checkInHint(d, {CLAIMED_MS + 10_000}), m.checkInHint(d, {CLAIMED_MS + 40_000}),"
        f" m.checkInHint(d, {CLAIMED_MS + 5 * 3600_000}), m.checkInHint({{...d, state: 'active'}}, {CLAIMED_MS + 40_000}),"
        f" m.checkInHint({{state: 'claimed'}}, {CLAIMED_MS})];"
    )
    early, quiet, late, active, undated = hints
    assert early == "" and active == "" and undated == ""
    assert "within 36 s" in quiet and "at the latest" in quiet and "plugging it back in" in quiet
    assert "should have" in late and "plugging it back in" in late
