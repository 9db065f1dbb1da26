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


def _positive_int(env_var: str, default: int) -> int:
    raw = os.environ.get(env_var, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) <= 0:
        raise RuntimeError(f"{env_var} must be a positive whole number, not {raw!r}")
    return int(raw)


def cert_validity_days() -> int:
    """The certificate lifetime the stack configures (own-CA mode signs with it; AWS mode tracks it)."""
    return _positive_int(c.ENV_CERT_VALIDITY_DAYS, c.DEFAULT_CERT_VALIDITY_DAYS)


def rotation_window_hours() -> int:
    """How long a rotation may keep two usable certificates before the new one is abandoned."""
    return _positive_int(c.ENV_ROTATION_WINDOW_HOURS, c.DEFAULT_ROTATION_WINDOW_HOURS)
