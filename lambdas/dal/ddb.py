"""Plain-Python <-> DynamoDB attribute values, and the error names the DAL translates.

The low-level client is used instead of the resource layer: it imports less on the poll path.
"""

from __future__ import annotations

from typing import Any


def to_attr(value: Any) -> dict[str, Any]:
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return {"N": repr(value) if isinstance(value, float) else str(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, dict):
        return {"M": {k: to_attr(v) for k, v in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [to_attr(v) for v in value]}
    raise TypeError(f"cannot store {type(value).__name__} in DynamoDB")


def from_attr(attr: dict[str, Any]) -> Any:
    ((kind, value),) = attr.items()
    if kind == "S":
        return value
    if kind == "N":
        return int(value) if value.lstrip("-").isdigit() else float(value)
    if kind == "BOOL":
        return value
    if kind == "NULL":
        return None
    if kind == "M":
        return {k: from_attr(v) for k, v in value.items()}
    if kind == "L":
        return [from_attr(v) for v in value]
    if kind in ("SS", "NS"):
        return set(value)
    raise TypeError(f"unsupported DynamoDB type {kind}")


def to_item(data: dict[str, Any]) -> dict[str, Any]:
    return {k: to_attr(v) for k, v in data.items() if v is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: from_attr(v) for k, v in item.items()}


def error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def is_condition_failure(exc: Exception) -> bool:
    return error_code(exc) in ("ConditionalCheckFailedException", "TransactionCanceledException")


def update_expression(
    set_fields: dict[str, Any], remove_fields: tuple[str, ...] = ()
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """SET/REMOVE expression with placeholder names for every attribute (reserved words are many)."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    sets = []
    for i, (key, value) in enumerate(set_fields.items()):
        names[f"#s{i}"] = key
        if value is None:
            remove_fields = (*remove_fields, key)
            del names[f"#s{i}"]
            continue
        values[f":s{i}"] = to_attr(value)
        sets.append(f"#s{i} = :s{i}")
    removes = []
    for j, key in enumerate(remove_fields):
        names[f"#r{j}"] = key
        removes.append(f"#r{j}")
    expression = ""
    if sets:
        expression += "SET " + ", ".join(sets)
    if removes:
        expression += (" " if expression else "") + "REMOVE " + ", ".join(removes)
    return expression, names, values


def condition_expression(expected: dict[str, Any], names: dict[str, str], values: dict[str, Any]) -> str:
    """`attr = value` for each entry; a value of None means the attribute must not exist."""
    parts = []
    for i, (key, value) in enumerate(expected.items()):
        names[f"#c{i}"] = key
        if value is None:
            parts.append(f"attribute_not_exists(#c{i})")
        elif isinstance(value, list | tuple | set):
            options = []
            for j, option in enumerate(value):
                values[f":c{i}_{j}"] = to_attr(option)
                options.append(f":c{i}_{j}")
            parts.append(f"#c{i} IN ({', '.join(options)})")
        else:
            values[f":c{i}"] = to_attr(value)
            parts.append(f"#c{i} = :c{i}")
    return " AND ".join(parts)


class ConditionFailed(Exception):
    """A conditional write lost: the item was not in the expected state (or did not exist)."""


def write(
    table: str,
    key: dict[str, Any],
    set_fields: dict[str, Any],
    *,
    expected: dict[str, Any] | None = None,
    remove: tuple[str, ...] = (),
    must_exist: bool = True,
    also: list[dict[str, Any]] | None = None,
) -> dict[str, Any] | None:
    """Conditional update of one item; with `also`, the same change in one transaction with other writes.

    Returns the item after the update (None when run as a transaction, which cannot return it).
    """
    from lambdas.aws_clients import client

    expression, names, values = update_expression(set_fields, remove)
    conditions = []
    if must_exist:
        pk = next(iter(key))
        names["#pk"] = pk
        conditions.append("attribute_exists(#pk)")
    if expected:
        conditions.append(condition_expression(expected, names, values))
    request: dict[str, Any] = {
        "TableName": table,
        "Key": to_item(key),
        "UpdateExpression": expression,
        "ExpressionAttributeNames": names,
    }
    if values:
        request["ExpressionAttributeValues"] = values
    if conditions:
        request["ConditionExpression"] = " AND ".join(conditions)
    ddb = client("dynamodb")
    try:
        if also:
            ddb.transact_write_items(TransactItems=[{"Update": request}, *also])
            return None
        answer = ddb.update_item(**request, ReturnValues="ALL_NEW")
    except Exception as exc:
        if is_condition_failure(exc):
            raise ConditionFailed(str(exc)) from exc
        raise
    return from_item(answer.get("Attributes", {}))


def put_new(table: str, pk: str, item: dict[str, Any], also: list[dict[str, Any]] | None = None) -> None:
    """Create an item that must not exist yet."""
    from lambdas.aws_clients import client

    request = {
        "TableName": table,
        "Item": to_item(item),
        "ConditionExpression": "attribute_not_exists(#pk)",
        "ExpressionAttributeNames": {"#pk": pk},
    }
    ddb = client("dynamodb")
    try:
        if also:
            ddb.transact_write_items(TransactItems=[{"Put": request}, *also])
        else:
            ddb.put_item(**request)
    except Exception as exc:
        if is_condition_failure(exc):
            raise ConditionFailed(str(exc)) from exc
        raise


def get(table: str, key: dict[str, Any], consistent: bool = False) -> dict[str, Any] | None:
    from lambdas.aws_clients import client

    answer = client("dynamodb").get_item(TableName=table, Key=to_item(key), ConsistentRead=consistent)
    item = answer.get("Item")
    return from_item(item) if item else None


def delete(
    table: str,
    key: dict[str, Any],
    expected: dict[str, Any] | None = None,
    also: list[dict[str, Any]] | None = None,
) -> None:
    """Delete one item (conditionally); with `also`, in one transaction with other writes."""
    from lambdas.aws_clients import client

    request: dict[str, Any] = {"TableName": table, "Key": to_item(key)}
    if expected:
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        request["ConditionExpression"] = condition_expression(expected, names, values)
        request["ExpressionAttributeNames"] = names
        if values:
            request["ExpressionAttributeValues"] = values
    try:
        if also:
            client("dynamodb").transact_write_items(TransactItems=[{"Delete": request}, *also])
        else:
            client("dynamodb").delete_item(**request)
    except Exception as exc:
        if is_condition_failure(exc):
            raise ConditionFailed(str(exc)) from exc
        raise


def query_index(
    table: str, index: str, key_name: str, key_value: str, limit: int = 1000
) -> list[dict[str, Any]]:
    from lambdas.aws_clients import client

    items: list[dict[str, Any]] = []
    request: dict[str, Any] = {
        "TableName": table,
        "IndexName": index,
        "KeyConditionExpression": "#k = :v",
        "ExpressionAttributeNames": {"#k": key_name},
        "ExpressionAttributeValues": {":v": {"S": key_value}},
    }
    ddb = client("dynamodb")
    while len(items) < limit:
        answer = ddb.query(**request)
        items += [from_item(i) for i in answer.get("Items", [])]
        if "LastEvaluatedKey" not in answer:
            break
        request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
    return items[:limit]


def scan(table: str) -> list[dict[str, Any]]:
    from lambdas.aws_clients import client

    items: list[dict[str, Any]] = []
    request: dict[str, Any] = {"TableName": table}
    ddb = client("dynamodb")
    while True:
        answer = ddb.scan(**request)
        items += [from_item(i) for i in answer.get("Items", [])]
        if "LastEvaluatedKey" not in answer:
            return items
        request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
