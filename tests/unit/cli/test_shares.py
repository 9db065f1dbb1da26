"""`latchkey devices shares`: an operator sees who a device is shared with and its live offer, against
moto; grants of an ended ownership and expired offers are not shown (they grant nothing)."""

from __future__ import annotations

import json
import time

from cli.main import cli
from lambdas.dal import grants
from tests.unit.cli.test_devices import assert_one_line_error

DEVICE = "lk-0000000000000005"


def _grant(**item):
    grants.transact([grants.put_request({"deviceId": DEVICE, **item})])


def test_shares_lists_members_and_the_live_offer(cli_cloud, runner):
    cli_cloud.aws.put_device(
        DEVICE, state="active", ownerId="u-olivia", ownerEmail="olivia@example.com", ownership="own-2"
    )
    _grant(
        grantKey="share#u-sam",
        kind="share",
        userId="u-sam",
        email="sam@example.com",
        role="operator",
        ownership="own-2",
        sharedBy="u-olivia",
        createdAt="2026-12-01T10:00:00Z",
    )
    _grant(
        grantKey="share#u-old",
        kind="share",
        userId="u-old",
        email="old@example.com",
        role="viewer",
        ownership="own-1",
        sharedBy="u-someone",
        createdAt="2026-11-01T10:00:00Z",
    )  # an ended ownership's
    _grant(
        grantKey="transfer",
        kind="transfer",
        transferId=f"{DEVICE}.abc",
        userId="u-eve",
        email="eve@example.com",
        senderId="u-olivia",
        senderEmail="olivia@example.com",
        ownership="own-2",
        status="pending",
        createdAt="2026-12-02T10:00:00Z",
        expiresAt=int(time.time()) + 3600,
    )
    result = runner.invoke(cli, ["devices", "shares", DEVICE])
    assert result.exit_code == 0, result.output
    assert "operator sam@example.com" in " ".join(result.stdout.split())
    assert "old@example.com" not in result.stdout
    assert "transfer offered to eve@example.com (pending" in result.stdout
    document = json.loads(runner.invoke(cli, ["devices", "shares", DEVICE, "--json"]).stdout)
    assert [m["userId"] for m in document["shares"]] == ["u-sam"]
    assert document["offer"]["recipient"] == "eve@example.com"


def test_an_expired_offer_is_not_shown(cli_cloud, runner):
    cli_cloud.aws.put_device(DEVICE, state="active", ownerId="u-olivia", ownership="own-2")
    _grant(
        grantKey="transfer",
        kind="transfer",
        transferId=f"{DEVICE}.abc",
        userId="u-eve",
        email="eve@example.com",
        senderId="u-olivia",
        ownership="own-2",
        status="pending",
        expiresAt=int(time.time()) - 1,
    )
    document = json.loads(runner.invoke(cli, ["devices", "shares", DEVICE, "--json"]).stdout)
    assert document == {"deviceId": DEVICE, "shares": [], "offer": None}


def test_unknown_and_unowned_devices_are_one_line_errors(cli_cloud, runner):
    assert "no device lk-nope" in assert_one_line_error(runner.invoke(cli, ["devices", "shares", "lk-nope"]))
    cli_cloud.aws.put_device(DEVICE, state="unclaimed")
    assert "has no owner" in assert_one_line_error(runner.invoke(cli, ["devices", "shares", DEVICE]))
