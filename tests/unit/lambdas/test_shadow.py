"""The one delta computation and the validation of owner changes against the device's capabilities."""

from __future__ import annotations

import pytest

from lambdas.errors import BadRequest, Conflict
from lambdas.logic import shadow

REPORTED = {
    "capabilities": {
        "relays": {"r1": {"name": "Relay 1", "logic": "positive"}},
        "sensors": {"t1": {"type": "temperature", "unit": "°C", "offset": 0.0}},
    },
    "relays": {"r1": False},
}


def test_delta_is_what_desired_asks_that_reported_lacks():
    desired = {"relays": {"r1": True}, "capabilities": {"relays": {"r1": {"name": "Relay 1"}}}}
    assert shadow.delta(desired, REPORTED) == {"relays": {"r1": True}}
    assert shadow.delta({"relays": {"r1": False}}, REPORTED) is None
    assert shadow.delta({"a": {"b": 1}}, {}) == {"a": {"b": 1}}


def test_patch_becomes_a_desired_document():
    desired = shadow.desired_from_patch(
        {"relays": {"r1": True}, "relayNames": {"r1": " Pump "}, "sensorOffsets": {"t1": -0.5}}, REPORTED
    )
    assert desired == {
        "relays": {"r1": True},
        "capabilities": {"relays": {"r1": {"name": "Pump"}}, "sensors": {"t1": {"offset": -0.5}}},
    }


@pytest.mark.parametrize(
    "patch, fragment",
    [
        ({"relays": {"r2": True}}, "r2"),
        ({"sensorOffsets": {"h1": 1.0}}, "h1"),
        ({"relayLogic": {"r1": "sideways"}}, "positive"),
        ({"sensorOffsets": {"t1": 1e9}}, "within"),
        ({}, "Nothing to change"),
    ],
)
def test_patches_that_do_not_fit_the_device_are_400(patch, fragment):
    with pytest.raises(BadRequest) as error:
        shadow.desired_from_patch(patch, REPORTED)
    assert fragment in error.value.message


def test_device_that_never_reported_is_a_conflict():
    with pytest.raises(Conflict):
        shadow.desired_from_patch({"relays": {"r1": True}}, {})


def test_view_reports_staleness():
    document = {
        "state": {"reported": REPORTED},
        "metadata": {"reported": {"relays": {"r1": {"timestamp": 100}}}},
    }
    view = shadow.view(document, now=130)
    assert view["reportedAt"] == 100 and view["staleSeconds"] == 30 and view["delta"] == {}
