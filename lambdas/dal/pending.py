"""The pending table: devices an owner added with "Add device", waiting for their registration token."""

from __future__ import annotations

from typing import Any

from lambdas import config
from lambdas import constants as c
from lambdas.dal import ddb
from lambdas.dal.ddb import ConditionFailed

__all__ = ["ConditionFailed", "create", "delete", "find_by_token_hash", "get", "list_by_owner", "update"]


def _key(pending_id: str) -> dict[str, str]:
    return {c.PENDING_PK: pending_id}


def get(pending_id: str, consistent: bool = True) -> dict[str, Any] | None:
    return ddb.get(config.pending_table(), _key(pending_id), consistent=consistent)


def create(item: dict[str, Any], also: list[dict[str, Any]] | None = None) -> None:
    ddb.put_new(config.pending_table(), c.PENDING_PK, item, also=also)


def update(
    pending_id: str,
    fields: dict[str, Any],
    *,
    expected: dict[str, Any] | None = None,
    also: list[dict[str, Any]] | None = None,
) -> dict[str, Any] | None:
    return ddb.write(config.pending_table(), _key(pending_id), fields, expected=expected, also=also)


def update_request(pending_id: str, fields: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    """The same conditional update as a TransactWriteItems entry."""
    expression, names, values = ddb.update_expression(fields)
    names["#pk"] = c.PENDING_PK
    condition = "attribute_exists(#pk) AND " + ddb.condition_expression(expected, names, values)
    return {
        "Update": {
            "TableName": config.pending_table(),
            "Key": ddb.to_item(_key(pending_id)),
            "UpdateExpression": expression,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
    }


def delete(pending_id: str, expected: dict[str, Any] | None = None) -> None:
    ddb.delete(config.pending_table(), _key(pending_id), expected=expected)


def find_by_token_hash(token_hash: str) -> str | None:
    hits = ddb.query_index(config.pending_table(), c.PENDING_TOKEN_INDEX, c.PENDING_TOKEN_KEY, token_hash, 1)
    return hits[0][c.PENDING_PK] if hits else None


def list_by_owner(owner_id: str) -> list[dict[str, Any]]:
    return ddb.query_index(config.pending_table(), c.PENDING_OWNER_INDEX, c.PENDING_OWNER_KEY, owner_id)
