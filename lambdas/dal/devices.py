"""DeviceRepository: the devices table. One item per device, keyed by deviceId.

Attributes (docs/data-model.md): state, ownerId, ownerEmail, name, publicKeyPem, claimCodeHash, board,
mac, agent{...}, thingName, certificateId, certificatePem, certificateStatus, presence{status, lastSeen,
ip}, createdAt, claimedAt, lastPollAt, registration{...}.
"""

from __future__ import annotations

from typing import Any

from lambdas import config
from lambdas import constants as c
from lambdas.dal import ddb
from lambdas.dal.ddb import ConditionFailed

__all__ = [
    "ConditionFailed",
    "create",
    "delete",
    "find_by_claim_code",
    "get",
    "list_all",
    "list_by_owner",
    "update",
]


def _key(device_id: str) -> dict[str, str]:
    return {c.DEVICE_PK: device_id}


def get(device_id: str, consistent: bool = False) -> dict[str, Any] | None:
    return ddb.get(config.devices_table(), _key(device_id), consistent=consistent)


def create(item: dict[str, Any], also: list[dict[str, Any]] | None = None) -> None:
    ddb.put_new(config.devices_table(), c.DEVICE_PK, item, also=also)


def update(
    device_id: str,
    fields: dict[str, Any],
    *,
    expected: dict[str, Any] | None = None,
    remove: tuple[str, ...] = (),
    also: list[dict[str, Any]] | None = None,
) -> dict[str, Any] | None:
    """Set `fields` (None removes) if the device exists and matches `expected`; raises ConditionFailed."""
    return ddb.write(
        config.devices_table(), _key(device_id), fields, expected=expected, remove=remove, also=also
    )


def delete(
    device_id: str, expected: dict[str, Any] | None = None, also: list[dict[str, Any]] | None = None
) -> None:
    ddb.delete(config.devices_table(), _key(device_id), expected=expected, also=also)


def find_by_claim_code(claim_code_hash: str) -> str | None:
    hits = ddb.query_index(
        config.devices_table(), c.DEVICE_CLAIM_CODE_INDEX, c.DEVICE_CLAIM_CODE_KEY, claim_code_hash, limit=1
    )
    return hits[0][c.DEVICE_PK] if hits else None


def list_by_owner(owner_id: str) -> list[dict[str, Any]]:
    return ddb.query_index(config.devices_table(), c.DEVICE_OWNER_INDEX, c.DEVICE_OWNER_KEY, owner_id)


def list_all() -> list[dict[str, Any]]:
    return ddb.scan(config.devices_table())
