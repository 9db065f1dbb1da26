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


# botocore's defaults (60 s connect, 60 s read, legacy retries) outlive a 10 s function several times over:
# a hung call would time the whole invocation out instead of failing fast with a clear error. Two
# attempts of at most CONNECT + READ seconds, plus standard mode's sub-second first backoff, stay below
# the shortest function timeout (definitions.FUNCTIONS; tests/unit/lambdas/test_aws_clients.py).
CONNECT_TIMEOUT_S = 1.0
READ_TIMEOUT_S = 3.0
MAX_ATTEMPTS = 2  # the first call and one retry (standard mode: throttling and transient errors)
# The local cloud's moto server shares two cores with the test suite; its latency is not AWS's.
LOCAL_READ_TIMEOUT_S = 30.0


def config(endpoint: str | None = None) -> Any:
    from botocore.config import Config

    return Config(
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=LOCAL_READ_TIMEOUT_S if endpoint else READ_TIMEOUT_S,
        retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},  # total, incl. the first
    )


@cache
def client(service: str) -> Any:
    import logging

    import boto3  # deferred: see module docstring

    for name in _BODY_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)
    endpoint = os.environ.get("LATCHKEY_AWS_ENDPOINT_URL") or None
    return boto3.session.Session().client(  # type: ignore[call-overload]
        service, endpoint_url=endpoint, config=config(endpoint)
    )


def reset() -> None:
    client.cache_clear()
