"""Lazily created, cached boto3 clients: nothing talks to AWS at import time.

Import of boto3 itself is deferred too, so that modules which only need the constants stay cheap.
Tests that start moto after import call `reset()`.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

# botocore logs whole request and response bodies at DEBUG - GetSecretValue's too, that is the
# claim-code HMAC key and the own-CA private key. A function whose logging is set to DEBUG (Lambda's
# ApplicationLogLevel, LATCHKEY_LOG_LEVEL) must not write them to CloudWatch: these loggers stay at INFO.
_BODY_LOGGERS = ("botocore.parsers", "botocore.endpoint", "botocore.httpsession")


@cache
def client(service: str) -> Any:
    import logging

    import boto3  # deferred: see module docstring

    for name in _BODY_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)
    endpoint = os.environ.get("LATCHKEY_AWS_ENDPOINT_URL") or None
    return boto3.session.Session().client(service, endpoint_url=endpoint)  # type: ignore[call-overload]


def reset() -> None:
    client.cache_clear()
