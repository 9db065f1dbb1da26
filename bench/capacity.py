"""DynamoDB capacity of a request by the pricing rules, computed from the sizes of the items it touches.

moto answers `ReturnConsumedCapacity` with constants, not with DynamoDB's rules, so the bench computes
the units itself. For every DynamoDB call the Lambda code makes, `CapacityMeter.before()` reads the
items the call will write (by key, with a separate, uncounted client) and `after()` reads them again,
then applies the rules of the DynamoDB developer guide ("Read/write capacity mode", "Item sizes",
"Global secondary indexes", "Transactions"):

- item size: attribute names (UTF-8 bytes) + values: strings UTF-8 bytes, numbers 1 byte per 2
  significant digits + 1, binary its bytes, booleans and null 1 byte, lists and maps 3 bytes + 1 byte
  per element + the elements (and, for maps, their names), sets the sum of their elements;
- reads: 1 unit per 4 KB of item, rounded up, per item (GetItem, BatchGetItem) or over the sum of all
  items read before any filter (Query, Scan); eventually consistent reads cost half; a read that finds
  nothing still costs the minimum; transactional reads cost double;
- writes: 1 unit per 1 KB of the larger of the item before and after, rounded up, minimum 1;
  transactional writes (Put, Update, Delete and ConditionCheck) cost double;
- global secondary indexes: a write that adds, changes or removes an index entry costs 1 unit per KB
  of the projected entry (2 writes when the index key changes); an update that changes neither the
  index key nor a projected attribute costs nothing there.

On-demand tables bill these units as read and write request units (RRU, WRU).
"""

from __future__ import annotations

import base64
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

KB = 1024
READ_BLOCK = 4 * KB


def number_size(text: str) -> int:
    digits = text.strip().lstrip("+-")
    if "e" in digits.lower():
        digits = format(Decimal(digits), "f")
    digits = digits.replace(".", "").lstrip("0").rstrip("0") or "0"
    return math.ceil(len(digits) / 2) + 1


def value_size(value: dict[str, Any]) -> int:
    ((kind, data),) = value.items()
    if kind == "S":
        return len(data.encode())
    if kind == "N":
        return number_size(data)
    if kind == "B":
        return len(data) if isinstance(data, bytes | bytearray) else len(base64.b64decode(data))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in data)
    if kind == "NS":
        return sum(number_size(n) for n in data)
    if kind == "BS":
        return sum(len(b) for b in data)
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in data)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(v) for k, v in data.items())
    raise ValueError(f"unknown DynamoDB type {kind}")


def item_size(item: dict[str, Any] | None) -> int:
    if not item:
        return 0
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


@dataclass(frozen=True)
class Index:
    name: str
    keys: tuple[str, ...]
    projection: str  # ALL | KEYS_ONLY | INCLUDE
    include: tuple[str, ...] = ()


@dataclass(frozen=True)
class Schema:
    keys: tuple[str, ...]
    indexes: tuple[Index, ...]

    def key_of(self, item: dict[str, Any]) -> dict[str, Any]:
        return {k: item[k] for k in self.keys}

    def project(self, item: dict[str, Any], index: Index) -> dict[str, Any]:
        if index.projection == "ALL":
            return item
        names = set(self.keys) | set(index.keys) | set(index.include)
        return {k: v for k, v in item.items() if k in names}


@dataclass
class Units:
    read: float = 0.0
    write: float = 0.0
    notes: list[str] = field(default_factory=list)

    def add(self, other: Units) -> None:
        self.read += other.read
        self.write += other.write
        self.notes.extend(other.notes)


_PLACEHOLDER = re.compile(r"[#:][A-Za-z0-9_]+")


class CapacityMeter:
    """Read and write units of the DynamoDB calls it is shown (see the module docstring)."""

    def __init__(self, lookup: Any) -> None:
        self.lookup = lookup  # a dynamodb client whose calls are not counted
        self._schemas: dict[str, Schema] = {}
        self.largest_item: dict[str, int] = {}  # table -> largest item size seen, bytes

    def schema(self, table: str) -> Schema:
        if table not in self._schemas:
            described = self.lookup.describe_table(TableName=table)["Table"]
            keys = tuple(k["AttributeName"] for k in described["KeySchema"])
            indexes = tuple(
                Index(
                    g["IndexName"],
                    tuple(k["AttributeName"] for k in g["KeySchema"]),
                    g["Projection"]["ProjectionType"],
                    tuple(g["Projection"].get("NonKeyAttributes", ())),
                )
                for g in described.get("GlobalSecondaryIndexes", [])
            )
            self._schemas[table] = Schema(keys, indexes)
        return self._schemas[table]

    def _get(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        item = self.lookup.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
        if item:
            self.largest_item[table] = max(self.largest_item.get(table, 0), item_size(item))
        return item

    # -- writes: what the items looked like before --------------------------------------------------

    def _targets(self, operation: str, params: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
        """(kind, table, key) of every item a write call touches."""
        out = []
        if operation == "PutItem":
            table = params["TableName"]
            out.append(("Put", table, self.schema(table).key_of(params["Item"])))
        elif operation in ("UpdateItem", "DeleteItem"):
            out.append((operation[:-4], params["TableName"], params["Key"]))
        elif operation == "TransactWriteItems":
            for action in params.get("TransactItems", []):
                ((kind, body),) = action.items()
                table = body["TableName"]
                key = self.schema(table).key_of(body["Item"]) if kind == "Put" else body["Key"]
                out.append((f"Transact{kind}", table, key))
        elif operation == "BatchWriteItem":
            for table, requests in params.get("RequestItems", {}).items():
                for request in requests:
                    if "PutRequest" in request:
                        out.append(("Put", table, self.schema(table).key_of(request["PutRequest"]["Item"])))
                    else:
                        out.append(("Delete", table, request["DeleteRequest"]["Key"]))
        return out

    def before(self, operation: str, params: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], Any]]:
        return [
            (kind, table, key, self._get(table, key)) for kind, table, key in self._targets(operation, params)
        ]

    # -- the units -----------------------------------------------------------------------------------

    def after(self, operation: str, params: dict[str, Any], state: list[Any]) -> Units:
        units = Units()
        factor = 1.0 if params.get("ConsistentRead") else 0.5
        if operation == "GetItem":
            size = item_size(self._get(params["TableName"], params["Key"]))
            units.read = factor * max(1, math.ceil(size / READ_BLOCK))
            units.notes.append(f"GetItem {size} B")
        elif operation == "BatchGetItem":
            for table, request in params.get("RequestItems", {}).items():
                f = 1.0 if request.get("ConsistentRead") else 0.5
                for key in request.get("Keys", []):
                    size = item_size(self._get(table, key))
                    units.read += f * max(1, math.ceil(size / READ_BLOCK))
                    units.notes.append(f"BatchGet {table.rsplit('-', 1)[-1]} {size} B")
        elif operation == "TransactGetItems":
            for action in params.get("TransactItems", []):
                body = action["Get"]
                units.read += 2 * max(
                    1, math.ceil(item_size(self._get(body["TableName"], body["Key"])) / READ_BLOCK)
                )
        elif operation in ("Query", "Scan"):
            size = self._query_size(operation, params)
            units.read = factor * max(1, math.ceil(size / READ_BLOCK))
            units.notes.append(f"{operation} {size} B")
        else:
            for kind, table, key, old in state:
                units.add(self._write_units(kind, table, key, old))
        return units

    def _write_units(self, kind: str, table: str, key: dict[str, Any], old: Any) -> Units:
        units = Units()
        new = None if kind in ("Delete", "TransactDelete") else self._get(table, key)
        if kind == "TransactConditionCheck":
            new = old
        double = 2 if kind.startswith("Transact") else 1
        size = max(item_size(old), item_size(new))
        units.write = double * max(1, math.ceil(size / KB))
        units.notes.append(f"{kind} {table.rsplit('-', 1)[-1]} {size} B")
        schema = self.schema(table)
        for index in schema.indexes:
            before = schema.project(old, index) if old and all(k in old for k in index.keys) else None
            after = schema.project(new, index) if new and all(k in new for k in index.keys) else None
            if before == after:
                continue
            if before and after and any(before[k] != after[k] for k in index.keys):
                writes = math.ceil(item_size(before) / KB) + math.ceil(item_size(after) / KB)
            else:
                writes = max(1, math.ceil(max(item_size(before), item_size(after)) / KB))
            units.write += writes
            units.notes.append(f"index {index.name} {writes}")
        return units

    def _query_size(self, operation: str, params: dict[str, Any]) -> int:
        """Bytes read by a Query/Scan before any filter: the same call again, all attributes, no filter."""
        again = {
            k: v
            for k, v in params.items()
            if k
            not in (
                "ProjectionExpression",
                "FilterExpression",
                "Select",
                "AttributesToGet",
                "ReturnConsumedCapacity",
                "ExpressionAttributeNames",
                "ExpressionAttributeValues",
            )
        }
        used = set(_PLACEHOLDER.findall(params.get("KeyConditionExpression", "")))
        names = {k: v for k, v in params.get("ExpressionAttributeNames", {}).items() if k in used}
        values = {k: v for k, v in params.get("ExpressionAttributeValues", {}).items() if k in used}
        if names:
            again["ExpressionAttributeNames"] = names
        if values:
            again["ExpressionAttributeValues"] = values
        items = getattr(self.lookup, operation.lower())(**again).get("Items", [])
        schema = self.schema(params["TableName"])
        index = next((i for i in schema.indexes if i.name == params.get("IndexName")), None)
        return sum(item_size(schema.project(item, index) if index else item) for item in items)
