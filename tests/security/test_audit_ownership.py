"""Audit events belong to one ownership at any timing (issue 12, item 6): owner A claims, renames and
releases, owner B claims the same device, all within one second (the clock is frozen or advanced by a
microsecond per reading, so no timestamp can tell the ownerships apart), and B's
`GET /v1/devices/{id}/events` holds nothing of A's."""

from __future__ import annotations

from typing import Any

import pytest

from lambdas.domain import times
from tests.security.flows import Lab, assert_consistent

SECOND = 1_800_000_000.0  # 2027-01-15T08:00:00Z: any whole second will do


def _clock(kind: str) -> Any:
    """`frozen`: every reading is the same instant; `ticking`: one microsecond later each reading,
    never leaving the second (events still sort; claimedAt is the same second for A and B)."""
    if kind == "frozen":
        return lambda: SECOND
    readings = iter(range(1, 900_000))
    return lambda: SECOND + next(readings) / 1_000_000


@pytest.mark.parametrize("clock", ["frozen", "ticking"])
def test_the_next_owner_sees_none_of_the_previous_owners_events_within_one_second(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, clock: str
) -> None:
    device = lab.mint()
    path = f"/v1/devices/{device.device_id}"
    monkeypatch.setattr(times, "now", _clock(clock))

    assert lab.owner_call("POST", "/v1/claims", "owner-a", {"claimCode": device.display_code})[0] == 200
    assert lab.owner_call("PATCH", path, "owner-a", {"name": "A's lamp"})[0] == 200
    assert lab.owner_call("POST", f"{path}/release", "owner-a")[0] == 200
    status, claimed = lab.owner_call("POST", "/v1/claims", "owner-b", {"claimCode": device.display_code})
    assert status == 200, claimed
    assert lab.owner_call("PATCH", path, "owner-b", {"name": "B's lamp"})[0] == 200

    status, body = lab.owner_call("GET", f"{path}/events", "owner-b")
    assert status == 200, body
    seen = [(e["action"], e["actor"]) for e in body["events"]]
    assert ("device.claimed", "owner-b") in seen and ("device.renamed", "owner-b") in seen, seen
    assert all(actor != "owner-a" for _, actor in seen), seen
    assert not {"device.released", "device.minted"} & {action for action, _ in seen}, seen
    assert "A's lamp" not in str(body)  # not even in a detail

    # A no longer owns it: A's view of the trail is a 404, not B's events.
    assert lab.owner_call("GET", f"{path}/events", "owner-a")[0] == 404
    assert_consistent()
