"""The service secret (claim-code HMAC key, CloudFront origin-verify value, own-CA key pair), read once per
container."""

from __future__ import annotations

import base64
import json
import os
from functools import cache
from typing import Any

from lambdas import constants as c


@cache
def service_secret() -> dict[str, Any]:
    from lambdas.aws_clients import client

    arn = os.environ.get(c.ENV_SECRETS_ARN)
    if not arn:
        raise RuntimeError(f"{c.ENV_SECRETS_ARN} is not set")
    value = client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
    data: dict[str, Any] = json.loads(value)
    return data


def claim_code_key() -> bytes:
    raw = service_secret()["claimCodeKey"]
    try:
        return base64.b64decode(raw, validate=True)
    except ValueError:
        return str(raw).encode()  # a generated secret string is used as-is


def origin_verify_key() -> str | None:
    """The value CloudFront sends as the origin-verify header; None where there is none (no secret, or a
    secret from before the setup custom resource added it): then no request is taken to come via CloudFront."""
    if not os.environ.get(c.ENV_SECRETS_ARN):
        return None
    value = service_secret().get(c.SECRET_ORIGIN_VERIFY_KEY)
    return str(value) if value else None


def reset() -> None:
    service_secret.cache_clear()
