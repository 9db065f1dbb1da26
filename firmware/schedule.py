"""The poll schedule: at power-on at once, then 5 s doubling with ±20 % jitter up to a cap.

Pure and deterministic given its random source, so that the fleet simulator replays exactly the code
that runs on devices instead of a copy of it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Protocol

INITIAL_DELAY = 5.0
# Chosen with `latchkey simulate` (docs/performance.md): the cheapest (largest) cap that keeps the
# median claim-to-online delay under 30 s for devices claimed within 10 minutes of power-on, whether
# those claims are spread uniformly over the 10 minutes (27.2 s) or follow the fleet model's (28.3 s).
DEFAULT_CAP = 65.0
DEFAULT_JITTER = 0.2
# A server asking for more than a day is far more likely broken than right; the device must come back.
MAX_RETRY_AFTER = 86400.0
# Past this many doublings any sane cap is reached; stops 2**n from overflowing a float.
_MAX_DOUBLINGS = 64


class RandomSource(Protocol):
    def uniform(self, a: float, b: float, /) -> float: ...


def scheduled_delay(attempt: int, initial: float = INITIAL_DELAY, cap: float = DEFAULT_CAP) -> float:
    """The un-jittered wait after `attempt` polls since power-on: 0, initial, 2·initial, ... up to cap."""
    if attempt <= 0:
        return 0.0
    return min(cap, initial * 2.0 ** min(attempt - 1, _MAX_DOUBLINGS))


def jitter_delay(
    base: float, rng: RandomSource, jitter: float = DEFAULT_JITTER, cap: float = DEFAULT_CAP
) -> float:
    """`base` scaled by a uniform factor in [1-jitter, 1+jitter], never above `cap`.

    A value that the jitter pushes over the cap is mirrored back below it rather than clamped, so
    devices that sit at the cap stay spread out instead of piling up on exactly `cap` seconds.
    The result always lies in [(1-jitter)·min(base, cap), min(cap, (1+jitter)·base)].
    """
    if base <= 0:
        return 0.0
    delay = base * rng.uniform(1.0 - jitter, 1.0 + jitter)
    if delay > cap:
        delay = 2.0 * cap - delay
    return delay


def next_delay(
    attempt: int,
    rng: RandomSource,
    initial: float = INITIAL_DELAY,
    cap: float = DEFAULT_CAP,
    jitter: float = DEFAULT_JITTER,
    retry_after: float | None = None,
) -> float:
    """Seconds to wait before the next poll, after `attempt` polls since power-on (0: poll now).

    A positive `retry_after` from the server wins over the local schedule for this one wait; 0 or
    None means "use the schedule".
    """
    if retry_after is not None and retry_after > 0:
        return min(float(retry_after), MAX_RETRY_AFTER)
    return jitter_delay(scheduled_delay(attempt, initial, cap), rng, jitter, cap)


def cap_delay(rng: RandomSource, cap: float = DEFAULT_CAP, jitter: float = DEFAULT_JITTER) -> float:
    """A jittered wait at the cap: for answers that will not change soon (revoked, unknown device)."""
    return jitter_delay(cap, rng, jitter, cap)


def attempts_to_cap(initial: float = INITIAL_DELAY, cap: float = DEFAULT_CAP) -> int:
    """The first attempt whose scheduled delay is the cap."""
    attempt = 1
    while scheduled_delay(attempt, initial, cap) < cap:
        attempt += 1
    return attempt


def validate(initial: float, cap: float, jitter: float) -> None:
    if initial <= 0:
        raise ValueError(f"backoff_initial must be > 0, got {initial}")
    if cap < initial:
        raise ValueError(f"backoff_cap ({cap}) must be >= backoff_initial ({initial})")
    if not 0 <= jitter < 1:
        raise ValueError(f"jitter must be in [0, 1), got {jitter}")


@dataclass
class Backoff:
    """The schedule with its position: `next()` after each try, `reset()` when starting over.

    `attempt` counts the tries made since the last reset (power-on or a fresh start such as release).
    """

    initial: float = INITIAL_DELAY
    cap: float = DEFAULT_CAP
    jitter: float = DEFAULT_JITTER
    rng: RandomSource = field(default_factory=random.Random)
    attempt: int = 0

    def __post_init__(self) -> None:
        validate(self.initial, self.cap, self.jitter)

    def next(self, retry_after: float | None = None) -> float:
        """Count one more try and return the wait before the following one."""
        self.attempt += 1
        return next_delay(self.attempt, self.rng, self.initial, self.cap, self.jitter, retry_after)

    def at_cap(self, retry_after: float | None = None) -> float:
        """Jump to the cap and stay there until reset(): for answers that will not change soon."""
        self.attempt = max(self.attempt + 1, attempts_to_cap(self.initial, self.cap))
        if retry_after is not None and retry_after > 0:
            return min(float(retry_after), MAX_RETRY_AFTER)
        return cap_delay(self.rng, self.cap, self.jitter)

    def reset(self) -> None:
        self.attempt = 0
