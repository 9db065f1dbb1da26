"""The audit trail: one item per ownership or certificate change, keyed by device and time.

Each event carries the `ownership` of the device it was written under, so an owner's view can show
exactly the events of their own ownership at any timing (logic/owner.py `events`).
"""

from __future__ import annotations

from typing import Any

from lambdas import config
from lambdas import constants as c
from lambdas.dal import ddb
from lambdas.domain import times

RETENTION_SECONDS = 400 * 24 * 3600


def event_item(
    device_id: str,
    action: str,
    actor: str,
    source_ip: str | None,
    detail: dict[str, Any] | None = None,
    *,
    ownership: str | None = None,
    at: float | None = None,
) -> dict[str, Any]:
    import secrets  # deferred: the unclaimed poll imports this module but writes no event

    at = times.now() if at is None else at
    stamp = times.iso_micro(at)
    return {
        c.AUDIT_PK: device_id,
        c.AUDIT_SK: f"{stamp}#{secrets.token_hex(4)}",
        "at": stamp,
        "action": action,
        "actor": actor,
        "sourceIp": source_ip,
        "ownership": ownership,
        "detail": detail or {},
        c.TTL_ATTRIBUTE: int(at) + RETENTION_SECONDS,
    }


def put_request(event: dict[str, Any]) -> dict[str, Any]:
    """The event as a TransactWriteItems entry, so it commits together with the change it records."""
    return {"Put": {"TableName": config.audit_table(), "Item": ddb.to_item(event)}}


def record(event: dict[str, Any]) -> None:
    from lambdas.aws_clients import client

    client("dynamodb").put_item(TableName=config.audit_table(), Item=ddb.to_item(event))


def list_events(device_id: str, limit: int = 200) -> list[dict[str, Any]]:
    from lambdas.aws_clients import client

    answer = client("dynamodb").query(
        TableName=config.audit_table(),
        KeyConditionExpression="#pk = :d",
        ExpressionAttributeNames={"#pk": c.AUDIT_PK},
        ExpressionAttributeValues={":d": {"S": device_id}},
        ScanIndexForward=False,
        Limit=limit,
    )
    return [ddb.from_item(i) for i in answer.get("Items", [])]
