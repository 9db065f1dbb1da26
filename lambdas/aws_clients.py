"""Lazily created, cached boto3 clients: nothing talks to AWS at import time.

Import of boto3 itself is deferred too, so that modules which only need the constants stay cheap.
Tests that start moto after import call `reset()`.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any


@cache
def client(service: str) -> Any:
    import boto3  # deferred: see module docstring

    endpoint = os.environ.get("LATCHKEY_AWS_ENDPOINT_URL") or None
    return boto3.session.Session().client(service, endpoint_url=endpoint)  # type: ignore[call-overload]


def reset() -> None:
    client.cache_clear()
