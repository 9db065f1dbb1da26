"""The one place that turns times into the ISO 8601 strings stored and shown, and back."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any


def now() -> float:
    return time.time()


def iso(at: float) -> str:
    """Second precision, UTC: what records and answers carry (`2026-12-03T09:00:00Z`)."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_micro(at: float) -> str:
    """Microsecond precision: audit event keys, which must sort events within one second. Counted in
    whole microseconds, so that times one microsecond apart never print the same (a float epoch near
    1.7e9 carries ~0.24 us of error, which datetime's own rounding could fold together)."""
    micros = round(at * 1_000_000)
    seconds, fraction = divmod(micros, 1_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{fraction:06d}Z"


def iso_ms(ms: int) -> str:
    return iso(ms / 1000)


def parse_iso(value: Any) -> datetime | None:
    """A stored ISO string as an aware datetime; None for anything that is not one."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def seconds_since(value: Any, at: float) -> float:
    """Seconds from a stored ISO time to `at`; infinity when there is none."""
    parsed = parse_iso(value)
    return float("inf") if parsed is None else at - parsed.timestamp()
