"""Tables for people: a device record and its audit trail (rich, on stdout)."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

from lambdas import constants as c

# The attributes a person looks for first; the rest follow alphabetically.
FIRST = (c.DEVICE_PK, "name", "state", "board", c.DEVICE_OWNER_KEY, "ownerEmail", "createdAt", "claimedAt")


def _cell(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, indent=2, sort_keys=True, default=str)
    return str(value)


def device_table(record: dict[str, Any]) -> Table:
    table = Table(title=f"Device {record[c.DEVICE_PK]}", show_header=False, title_justify="left")
    table.add_column("attribute", style="bold")
    table.add_column("value", overflow="fold")
    for key in [*(k for k in FIRST if k in record), *sorted(k for k in record if k not in FIRST)]:
        table.add_row(key, _cell(record[key]))
    return table


def audit_table(events: list[dict[str, Any]]) -> Table:
    log = Table(title="Audit trail", title_justify="left")
    for column in ("at", "action", "actor", "detail"):
        log.add_column(column, overflow="fold")
    for event in events:
        log.add_row(
            str(event.get("at", "")),
            str(event.get("action", "")),
            str(event.get("actor", "")),
            json.dumps(event.get("detail") or {}, sort_keys=True),
        )
    return log


def print_device(record: dict[str, Any], events: list[dict[str, Any]] | None = None) -> None:
    console = Console(soft_wrap=False)
    console.print(device_table(record))
    if events is not None:
        console.print(audit_table(events))
