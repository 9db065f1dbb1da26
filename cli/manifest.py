"""manifest.csv: one row per minted device, appended and flushed as each device is stored.

Never a claim code or a key: the manifest travels with the batch, the secrets stay on the labels.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from lambdas import constants as c

MANIFEST_FIELDS = ("deviceId", "board", "owner", "createdAt")


class Manifest:
    def __init__(self, path: Path) -> None:
        self.path = path
        new = not path.exists() or path.stat().st_size == 0
        self._handle = path.open("a", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._handle, fieldnames=MANIFEST_FIELDS)
        if new:
            self._writer.writeheader()

    def add(self, record: dict[str, Any]) -> None:
        self._writer.writerow(
            {
                "deviceId": record[c.DEVICE_PK],
                "board": record.get("board", ""),
                "owner": record.get("ownerEmail", ""),
                "createdAt": record["createdAt"],
            }
        )
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()
