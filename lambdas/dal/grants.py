"""The grants table: who besides the owner may use a device (shares) and the open transfer offer.

Items (docs/data-model.md), keyed by device so that an ownership's grants are one strongly consistent
query and end in the transaction of the transition that ends the ownership (dal/devices.py):
- share: {deviceId, grantKey: "share#<user id>", kind: "share", userId, email, role, ownership, sharedBy,
  createdAt};
- offer: {deviceId, grantKey: "transfer", kind: "transfer", transferId, userId (recipient), email,
  senderId, senderEmail, deviceName, ownership, status (pending|accepting), createdAt, expiresAt}.

Every grant carries the device's `ownership` when it was made: a grant of another ownership grants
nothing (logic/sharing.py checks it on every read), so one left behind by a crash is inert.
"""

from __future__ import annotations

from typing import Any

from lambdas import config
from lambdas import constants as c
from lambdas.dal import ddb
from lambdas.dal.ddb import ConditionFailed

__all__ = [
    "OFFER_KEY",
    "ConditionFailed",
    "delete_requests",
    "for_device",
    "get_offer",
    "get_share",
    "offers_sent_by",
    "put_request",
    "received_by",
    "share_key",
]

SHARE_PREFIX = "share#"
OFFER_KEY = "transfer"


def share_key(user_id: str) -> str:
    return SHARE_PREFIX + user_id


def _key(device_id: str, grant_key: str) -> dict[str, str]:
    return {c.GRANT_PK: device_id, c.GRANT_SK: grant_key}


def get_share(device_id: str, user_id: str) -> dict[str, Any] | None:
    return ddb.get(config.grants_table(), _key(device_id, share_key(user_id)), consistent=True)


def get_offer(device_id: str) -> dict[str, Any] | None:
    return ddb.get(config.grants_table(), _key(device_id, OFFER_KEY), consistent=True)


def for_device(device_id: str) -> list[dict[str, Any]]:
    """Every grant of the device (shares and the offer), strongly consistent."""
    from lambdas.aws_clients import client

    items: list[dict[str, Any]] = []
    request: dict[str, Any] = {
        "TableName": config.grants_table(),
        "KeyConditionExpression": "#pk = :d",
        "ExpressionAttributeNames": {"#pk": c.GRANT_PK},
        "ExpressionAttributeValues": {":d": {"S": device_id}},
        "ConsistentRead": True,
    }
    dynamodb = client("dynamodb")
    while True:
        answer = dynamodb.query(**request)
        items += [ddb.from_item(i) for i in answer.get("Items", [])]
        if "LastEvaluatedKey" not in answer:
            return items
        request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]


def received_by(user_id: str) -> list[dict[str, Any]]:
    """Shares with the user and offers to them (the index is eventually consistent)."""
    return ddb.query_index(config.grants_table(), c.GRANT_USER_INDEX, c.GRANT_USER_KEY, user_id)


def offers_sent_by(user_id: str) -> list[dict[str, Any]]:
    return ddb.query_index(config.grants_table(), c.GRANT_SENDER_INDEX, c.GRANT_SENDER_KEY, user_id)


def put_request(item: dict[str, Any], condition: str | None = None, **expression: Any) -> dict[str, Any]:
    """A TransactWriteItems Put of a grant (optionally conditional)."""
    request: dict[str, Any] = {"TableName": config.grants_table(), "Item": ddb.to_item(item)}
    if condition:
        request["ConditionExpression"] = condition
        request.update({k: v for k, v in expression.items() if v})
    return {"Put": request}


def delete_request(device_id: str, grant_key: str, expected: dict[str, Any] | None = None) -> dict[str, Any]:
    """A TransactWriteItems Delete of one grant; `expected` as in ddb.condition_expression."""
    request: dict[str, Any] = {
        "TableName": config.grants_table(),
        "Key": ddb.to_item(_key(device_id, grant_key)),
    }
    if expected:
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        request["ConditionExpression"] = ddb.condition_expression(expected, names, values)
        request["ExpressionAttributeNames"] = names
        if values:
            request["ExpressionAttributeValues"] = values
    return {"Delete": request}


def delete_requests(device_id: str, skip: frozenset[str] | set[str] = frozenset()) -> list[dict[str, Any]]:
    """Deletes of every grant of the device except the grant keys in `skip` (for a transaction)."""
    return [
        delete_request(device_id, str(item[c.GRANT_SK]))
        for item in for_device(device_id)
        if str(item[c.GRANT_SK]) not in skip
    ]


def delete(device_id: str, grant_key: str, expected: dict[str, Any] | None = None) -> None:
    ddb.delete(config.grants_table(), _key(device_id, grant_key), expected=expected)


def sweep(device_id: str, keep_ownership: str | None) -> int:
    """Delete the device's grants of any other ownership (what a concurrent grant may have left after
    the transaction that ended its ownership); returns how many. Never fails the caller."""
    removed = 0
    try:
        for item in for_device(device_id):
            if keep_ownership is None or item.get("ownership") != keep_ownership:
                ddb.delete(config.grants_table(), _key(device_id, str(item[c.GRANT_SK])))
                removed += 1
    except (
        Exception
    ):  # best effort: a stale grant is inert (other ownership) and `latchkey doctor` reports it
        import logging

        logging.getLogger("latchkey.grants").warning("sweep of %s failed", device_id, exc_info=True)
    return removed


def transact(writes: list[dict[str, Any]]) -> None:
    """Commit writes (grants, audit events, device condition checks) in one transaction."""
    from lambdas.aws_clients import client

    try:
        client("dynamodb").transact_write_items(TransactItems=writes)
    except Exception as exc:
        if ddb.is_condition_failure(exc):
            raise ConditionFailed(str(exc)) from exc
        raise


def list_all() -> list[dict[str, Any]]:
    return ddb.scan(config.grants_table())
