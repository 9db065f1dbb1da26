"""The devices table as stored items (dicts), for tests that assert on or tamper with attributes
behind the logic's back. The service itself reads devices only through lambdas.dal.devices."""

from __future__ import annotations

from typing import Any

from lambdas import config
from lambdas import constants as c
from lambdas.dal import ddb


def get(device_id: str, consistent: bool = True) -> dict[str, Any] | None:
    return ddb.get(config.devices_table(), {c.DEVICE_PK: device_id}, consistent=consistent)


def update(device_id: str, fields: dict[str, Any]) -> None:
    ddb.write(config.devices_table(), {c.DEVICE_PK: device_id}, fields)


def list_all() -> list[dict[str, Any]]:
    return ddb.scan(config.devices_table())
