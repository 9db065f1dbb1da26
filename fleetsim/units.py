"""Durations as people type and read them."""

from __future__ import annotations

import math

HOUR = 3600.0
DAY = 86400.0
MONTH = 30 * DAY

_UNITS = {"s": 1.0, "m": 60.0, "h": HOUR, "d": DAY}


def parse_duration(text: str) -> float:
    """Seconds in a duration: "90s", "30m", "1.5h", "7d"; "0" is 0."""
    text = text.strip().lower()
    if text in ("0", "0.0"):
        return 0.0
    if len(text) < 2 or text[-1] not in _UNITS:
        raise ValueError(f"{text!r}: give a duration with a unit, e.g. 90s, 30m, 24h, 7d")
    try:
        value = float(text[:-1])
    except ValueError:
        raise ValueError(f"{text!r}: give a duration with a unit, e.g. 90s, 30m, 24h, 7d") from None
    if value < 0 or not math.isfinite(value):
        raise ValueError(f"{text!r}: must be a non-negative duration")
    return value * _UNITS[text[-1]]


def describe_duration(seconds: float) -> str:
    """The largest whole unit: "30 min", "24 h", "7 d", else seconds."""
    for unit, size in (("d", DAY), ("h", HOUR), ("min", 60.0)):
        if seconds >= (2 * size if unit == "d" else size) and (seconds / size).is_integer():
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"
