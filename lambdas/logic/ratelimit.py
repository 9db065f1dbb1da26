"""Fixed-window counters of failed attempts, with the limits in one place.

A limit counts *failures* (e.g. unknown claim codes) per subject (an account, a source IP) in fixed
windows. `check` costs one read per subject and raises TooManyRequests (Retry-After = seconds to the end
of the window) once a subject has used up its window; `fail` adds one to each subject atomically.
Concurrent requests of one subject can overshoot a limit by their number, never more.

Claim codes (design.md A) have 50 bits. With CLAIM_PER_ACCOUNT = 10 and CLAIM_PER_IP = 30 failures per
hour, an attacker with 100 accounts (and at least 34 source addresses) gets 100 x 10 = 1,000 guesses
per hour; from one address, 30 per hour whatever the number of accounts. Against a fleet of one million
unclaimed devices each guess hits with probability 1e6 / 2**50 = 8.9e-10, so 1,000 guesses per hour find
a device about once every 1.1 million hours (~128 years). IPv6 sources are counted per /64.
"""

from __future__ import annotations

import ipaddress
import math
import time
from dataclasses import dataclass

from lambdas.errors import TooManyRequests


@dataclass(frozen=True)
class Limit:
    name: str
    limit: int  # failures allowed per window
    window: int  # seconds


CLAIM_PER_ACCOUNT = Limit("claim-account", 10, 3600)
CLAIM_PER_IP = Limit("claim-ip", 30, 3600)
# Shares and transfer offers made by one account (every attempt counts: each looks an email up).
GRANT_PER_ACCOUNT = Limit("grant-account", 30, 3600)


def ip_subject(source_ip: str) -> str:
    """The address itself for IPv4; the /64 for IPv6 (one customer usually holds a whole /64)."""
    try:
        address = ipaddress.ip_address(source_ip)
    except ValueError:
        return source_ip
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _window(limit: Limit, now: float) -> tuple[int, int]:
    start = int(now // limit.window) * limit.window
    return start, start + limit.window


def _key(limit: Limit, subject: str, now: float) -> str:
    start, _ = _window(limit, now)
    return f"{limit.name}#{subject}#{start}"


Subjects = list[tuple[Limit, str]]


def check(subjects: Subjects, now: float | None = None, message: str | None = None) -> None:
    """Raise TooManyRequests if any subject has no failures left in its current window."""
    from lambdas.dal import rate_limits

    now = time.time() if now is None else now
    subjects = [(limit, subject) for limit, subject in subjects if subject]
    if not subjects:
        return
    current = rate_limits.counts([_key(limit, subject, now) for limit, subject in subjects], now)
    wait = 0
    for limit, subject in subjects:
        if current[_key(limit, subject, now)] >= limit.limit:
            _, end = _window(limit, now)
            wait = max(wait, max(1, math.ceil(end - now)))
    if wait:
        raise TooManyRequests(
            message or f"Too many failed attempts. Try again in {_minutes(wait)}.", retry_after=wait
        )


def fail(subjects: Subjects, now: float | None = None) -> None:
    """Count one failure for each subject."""
    from lambdas.dal import rate_limits

    now = time.time() if now is None else now
    for limit, subject in subjects:
        if subject:
            _, end = _window(limit, now)
            rate_limits.add(_key(limit, subject, now), end)


def claim_subjects(owner_id: str, source_ip: str) -> Subjects:
    return [(CLAIM_PER_ACCOUNT, owner_id), (CLAIM_PER_IP, ip_subject(source_ip) if source_ip else "")]


def _minutes(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} seconds"
    return f"{math.ceil(seconds / 60)} minutes"
