"""Settings read from the environment the stack (or the local cloud) sets."""

from __future__ import annotations

import os

from lambdas import constants as c


def table_name(env_var: str) -> str:
    name = os.environ.get(env_var)
    if not name:
        raise RuntimeError(f"{env_var} is not set")
    return name


def devices_table() -> str:
    return table_name(c.ENV_DEVICES_TABLE)


def pending_table() -> str:
    return table_name(c.ENV_PENDING_TABLE)


def audit_table() -> str:
    return table_name(c.ENV_AUDIT_TABLE)


def rate_limits_table() -> str:
    return table_name(c.ENV_RATE_LIMITS_TABLE)


def grants_table() -> str:
    return table_name(c.ENV_GRANTS_TABLE)


def cert_mode() -> str:
    return os.environ.get(c.ENV_CERT_MODE, "aws")
