"""The devices table: one item per device, keyed by deviceId (docs/data-model.md), read as `Device`.

Every life-cycle change goes through `transition`, which builds the conditional write and its audit
events from the row of lambdas/domain/lifecycle.py. `observe` writes what a device reports about itself
(last poll, presence, agent info), never its state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lambdas import config
from lambdas import constants as c
from lambdas.dal import audit, ddb
from lambdas.dal.ddb import ConditionFailed
from lambdas.domain import times
from lambdas.domain.device import ATTRIBUTES, Device, State

if TYPE_CHECKING:
    from lambdas.domain import lifecycle

__all__ = [
    "ConditionFailed",
    "condition_check",
    "find_by_claim_code",
    "get",
    "list_all",
    "list_by_owner",
    "observe",
    "transition",
]


def _key(device_id: str) -> dict[str, str]:
    return {c.DEVICE_PK: device_id}


def get(device_id: str, consistent: bool = False) -> Device | None:
    item = ddb.get(config.devices_table(), _key(device_id), consistent=consistent)
    return Device.from_item(item) if item else None


def transition(
    device: Device,
    name: str,
    *,
    actor: str,
    source_ip: str | None = None,
    changes: dict[str, Any] | None = None,
    detail: dict[str, Any] | None = None,
    at: float | None = None,
    also: list[dict[str, Any]] | None = None,
    per_action: dict[str, tuple[str, dict[str, Any]]] | None = None,
) -> Device:
    """Apply transition `name` to `device` as it was read: one transaction with its audit events.

    Raises ConditionFailed when the stored device no longer matches what was read (the row's guard) or
    is in a state the row does not start from; lifecycle.TransitionRefused when `device` as read
    already is. `also` adds writes (another table's item) to the same transaction.
    """
    from lambdas.domain import lifecycle  # deferred: the unclaimed poll reads, it never transitions

    known = lifecycle.TRANSITIONS.get(name)
    row = lifecycle.check(name, None if known is not None and known.creates else device.state)
    changes = dict(changes or {})
    unknown = set(changes) - set(row.sets)
    if unknown:
        raise ValueError(f"transition {name} does not set {sorted(unknown)}")
    cleared = {field: _empty(field) for field in row.clears}
    target = device.state if row.target is None else row.target
    after = device.with_changes(**cleared, **changes, state=target)
    ownership = after.ownership or device.ownership
    events = []
    start = round((times.now() if at is None else at) * 1_000_000)  # whole microseconds
    for i, action in enumerate(row.audit):
        who, what = (per_action or {}).get(action, (actor, detail or {}))
        # One microsecond apart: the events of one transition sort in the row's order.
        stamp = (start + i) / 1_000_000
        event = audit.event_item(
            device.device_id, action, who, source_ip, what, ownership=ownership, at=stamp
        )
        events.append(audit.put_request(event))
    writes = [*events, *(also or [])]
    if row.ends_access:
        writes += _end_grants(device.device_id, writes)
    table = config.devices_table()
    if row.creates:
        ddb.put_new(table, c.DEVICE_PK, after.to_item(), also=writes)
        return after
    # The row's source states, narrowed to the exact values read for the guarded fields.
    expected: dict[str, Any] = {"state": [str(s) for s in row.sources]}
    for field in row.guard:
        value = getattr(device, field)
        expected[ATTRIBUTES[field]] = str(value) if isinstance(value, State) else value
    if row.removes:
        ddb.delete(table, _key(device.device_id), expected=expected, also=writes)
        _sweep_grants(row, after)
        return after
    set_fields = {ATTRIBUTES[f]: v for f, v in changes.items()}
    set_fields["state"] = str(target)
    ddb.write(
        table,
        _key(device.device_id),
        set_fields,
        expected=expected,
        remove=tuple(ATTRIBUTES[f] for f in row.clears),
        also=writes,
    )
    _sweep_grants(row, after)
    return after


def _end_grants(device_id: str, writes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Deletes of the device's grants (dal/grants.py) not already in `writes` (a transaction may name
    an item once; a transfer deletes its offer itself, conditionally)."""
    from lambdas.dal import grants

    grants_table = config.grants_table()
    named = {
        str(op["Key"][c.GRANT_SK]["S"])
        for entry in writes
        for op in entry.values()
        if op.get("TableName") == grants_table and "Key" in op
    }
    return grants.delete_requests(device_id, skip=named)


def _sweep_grants(row: lifecycle.Transition, after: Device) -> None:
    """After the commit: a grant made between the read in _end_grants and the commit is of the ended
    ownership (its own transaction checked the device); remove it too."""
    if row.ends_access:
        from lambdas.dal import grants

        grants.sweep(after.device_id, keep_ownership=None if row.removes else after.ownership)


def condition_check(
    device: Device, fields: tuple[str, ...] = ("owner_id", "ownership", "state")
) -> dict[str, Any]:
    """A TransactWriteItems ConditionCheck that the device still holds the values read for `fields`:
    a grant commits only while the ownership it is made for lasts."""
    expected: dict[str, Any] = {}
    for field in fields:
        value = getattr(device, field)
        expected[ATTRIBUTES[field]] = str(value) if isinstance(value, State) else value
    names: dict[str, str] = {"#pk": c.DEVICE_PK}
    values: dict[str, Any] = {}
    condition = "attribute_exists(#pk) AND " + ddb.condition_expression(expected, names, values)
    check: dict[str, Any] = {
        "TableName": config.devices_table(),
        "Key": ddb.to_item(_key(device.device_id)),
        "ConditionExpression": condition,
        "ExpressionAttributeNames": names,
    }
    if values:
        check["ExpressionAttributeValues"] = values
    return {"ConditionCheck": check}


def _empty(field: str) -> Any:
    return {} if field in ("agent", "presence", "registration") else None


def observe(device_id: str, fields: dict[str, Any], *, expected: dict[str, Any] | None = None) -> None:
    """Record what the device reports (stored attribute names: lastPollAt, presence, agent, ...).

    Never a life-cycle field: those change only through `transition`. Raises ConditionFailed."""
    lifecycle_fields = {"state", c.DEVICE_OWNER_KEY, "certificateId", "ownership"}
    if lifecycle_fields & set(fields):
        raise ValueError(f"observe() cannot change {sorted(lifecycle_fields & set(fields))}")
    ddb.write(config.devices_table(), _key(device_id), fields, expected=expected)


def find_by_claim_code(claim_code_hash: str) -> str | None:
    hits = ddb.query_index(
        config.devices_table(), c.DEVICE_CLAIM_CODE_INDEX, c.DEVICE_CLAIM_CODE_KEY, claim_code_hash, limit=1
    )
    return str(hits[0][c.DEVICE_PK]) if hits else None


def list_by_owner(owner_id: str) -> list[Device]:
    items = ddb.query_index(config.devices_table(), c.DEVICE_OWNER_INDEX, c.DEVICE_OWNER_KEY, owner_id)
    return [Device.from_item(i) for i in items]


def list_all() -> list[Device]:
    return [Device.from_item(i) for i in ddb.scan(config.devices_table())]
