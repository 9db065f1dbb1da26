"""The transitions table, walked: every transition from every state is allowed or refused exactly as
the table says, by the real conditional write against DynamoDB (moto), and docs/architecture.md shows
the table as the code has it."""

from __future__ import annotations

from pathlib import Path

import pytest

from lambdas.dal import devices
from lambdas.dal.devices import ConditionFailed
from lambdas.domain import lifecycle
from lambdas.domain.device import Device, State
from lambdas.domain.lifecycle import TRANSITIONS, TransitionRefused

DEVICE = "lk-life000000000000"
STORED = [s for s in State if s != State.DELETED]


def stored_device(aws, state: State) -> Device:
    owned = state not in (State.UNCLAIMED,)
    aws.put_device(DEVICE, state=str(state), **({"ownerId": "owner-1"} if owned else {}))
    device = devices.get(DEVICE, consistent=True)
    assert device is not None and device.state == state
    return device


@pytest.mark.parametrize("name", [n for n, t in TRANSITIONS.items() if not t.creates])
@pytest.mark.parametrize("state", STORED)
def test_every_transition_from_every_state(aws, name, state):
    row = TRANSITIONS[name]
    device = stored_device(aws, state)
    changes = {"name": "x"} if "name" in row.sets else {}
    if not row.allows(state):
        with pytest.raises(TransitionRefused):
            devices.transition(device, name, actor="test", changes=changes)
        return
    after = devices.transition(device, name, actor="test", changes=changes)
    stored = devices.get(DEVICE, consistent=True)
    if row.removes:
        assert stored is None
        return
    assert stored is not None
    expected_state = state if row.target is None else row.target
    assert stored.state == after.state == expected_state
    for field in row.clears:
        assert getattr(stored, field) in (None, {}), field
    assert aws.audit_actions(DEVICE)[-len(row.audit) :] == list(row.audit)


@pytest.mark.parametrize("name", [n for n, t in TRANSITIONS.items() if not t.creates and t.guard])
def test_a_guarded_transition_loses_to_a_concurrent_change(aws, name):
    """The write is conditional on what was read: a change in between makes it fail, not overwrite."""
    row = TRANSITIONS[name]
    state = next(s for s in STORED if row.allows(s))
    device = stored_device(aws, state)
    guarded = row.guard[0]
    aws.force(DEVICE, {"ownerId": "owner-2"} if guarded == "owner_id" else {"certificateId": "c" * 64})
    with pytest.raises(ConditionFailed):
        devices.transition(device, name, actor="test", changes={"name": "x"} if "name" in row.sets else {})


@pytest.mark.parametrize("name", [n for n, t in TRANSITIONS.items() if t.creates])
def test_creating_transitions_make_a_new_device_once(aws, name):
    device = Device(DEVICE, state=TRANSITIONS[name].target or State.UNCLAIMED, owner_id="owner-1")
    devices.transition(device, name, actor="test")
    assert devices.get(DEVICE, consistent=True).state == TRANSITIONS[name].target
    with pytest.raises(ConditionFailed):
        devices.transition(device, name, actor="test")


def test_a_transition_sets_only_what_its_row_names(aws):
    device = stored_device(aws, State.ACTIVE)
    with pytest.raises(ValueError):
        devices.transition(device, "rename", actor="test", changes={"owner_id": "someone"})


def test_the_architecture_doc_shows_the_table_as_the_code_has_it():
    doc = (Path(__file__).resolve().parents[3] / "docs" / "architecture.md").read_text()
    assert lifecycle.render_markdown() in doc
    assert lifecycle.render_mermaid() in doc
