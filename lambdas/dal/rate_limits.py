"""The rate-limits table: one counter item per (limit, subject, window), expiring with the window.

Item: {limitKey: "<limit>#<subject>#<window start>", count: N, expiresAt: <window end, epoch s>}.
DynamoDB's TTL deletes old items eventually (up to days later, and never under moto), so readers
must treat an item whose `expiresAt` has passed as absent (`counts` does).
"""

from __future__ import annotations

from typing import Any

from lambdas import config
from lambdas import constants as c
from lambdas.dal import ddb


def counts(keys: list[str], now: float) -> dict[str, int]:
    """Current count of each key (0 for absent or expired): one BatchGetItem, one read per key."""
    from lambdas.aws_clients import client

    table = config.rate_limits_table()
    out = dict.fromkeys(keys, 0)
    if not keys:
        return out
    request: dict[str, Any] = {table: {"Keys": [{c.RATE_LIMIT_PK: {"S": k}} for k in dict.fromkeys(keys)]}}
    ddb_client = client("dynamodb")
    for _ in range(5):
        answer = ddb_client.batch_get_item(RequestItems=request)
        for raw in answer.get("Responses", {}).get(table, []):
            item = ddb.from_item(raw)
            expires = item.get(c.TTL_ATTRIBUTE)
            if isinstance(expires, int | float) and expires <= now:
                continue
            out[str(item[c.RATE_LIMIT_PK])] = int(item.get("count", 0))
        request = answer.get("UnprocessedKeys") or {}
        if not request:
            break
    return out


def add(key: str, expires_at: int, amount: int = 1) -> int:
    """Atomically add to the counter (creating it with its expiry); returns the new count."""
    from lambdas.aws_clients import client

    answer = client("dynamodb").update_item(
        TableName=config.rate_limits_table(),
        Key={c.RATE_LIMIT_PK: {"S": key}},
        UpdateExpression="ADD #n :a SET #e = if_not_exists(#e, :e)",
        ExpressionAttributeNames={"#n": "count", "#e": c.TTL_ATTRIBUTE},
        ExpressionAttributeValues={":a": {"N": str(amount)}, ":e": {"N": str(expires_at)}},
        ReturnValues="UPDATED_NEW",
    )
    return int(answer.get("Attributes", {}).get("count", {}).get("N", "0"))
