"""The agent's waits: the unclaimed poll schedule, throttled answers, MQTT reconnects, the first poll.

Pure and deterministic given their random source, so that the fleet simulator (fleetsim/replay.py,
fleetsim/storm.py) replays exactly the code that runs on devices instead of a copy of it.

The poll schedule is derived from the claim-delay distribution the simulator assumes (lognormal, median
30 min, sigma 1.5, 10 % never claimed; docs/performance.md): the claim hazard peaks a few minutes after
power-on and falls from then on, so polls are dense first and thin out with the device's age. A fast
window serves the owners who claim a device they just plugged in: waits of `initial` seconds doubling
up to `fast_wait` (5, 10, 20, 30, 30, ... s) for the first `fast_window` seconds; after it each wait is
`growth` times the device's age (polls at geometric moments, so their density falls as 1/age), capped. `latchkey simulate` sweeps `growth` and
`fast_wait` against the goals (a never-claimed device <= 70 polls on its first day and <= 800 a month
after; claim-to-online p50 <= 20 s within 10 minutes of power-on and <= 120 s over all claims).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Protocol

INITIAL_DELAY = 5.0  # the first wait (config: backoff_initial), doubling up to FAST_WAIT
FAST_WAIT = 30.0  # the wait in the fast window once the doubling reaches it (config: poll_fast_wait)
FAST_WINDOW = 600.0  # seconds after power-on (or a reset) with waits of at most FAST_WAIT
GROWTH = 0.15  # after the window, each wait is this share of the device's age
# Ioto's 3,660 s plus a little: at ±20 % mirrored jitter the mean wait at the cap is 0.9 x cap, and
# 800 polls in 30 days need a mean wait of 3,240 s or more.
DEFAULT_CAP = 3900.0
DEFAULT_JITTER = 0.2
# Before its very first request after power-on the agent waits a uniform random 0..FIRST_POLL_SPREAD s
# (never more than its fast wait), so that a region's devices coming back together do not all hit the
# service in the same second.
FIRST_POLL_SPREAD = 10.0
# MQTT reconnects: equal-jitter exponential backoff, a uniform wait in [b/2, b] with
# b = min(cap, initial x 2^(failures-1)).
RECONNECT_INITIAL = 2.0
RECONNECT_CAP = 300.0
# A failed MQTT connect is retried on MQTT; the device API is asked (is the certificate still good?)
# only on the CHECK_AFTER-th consecutive failure (some 4-8 minutes in) and then each time the count
# doubles, so an IoT outage or a throttled reconnect storm costs each device a handful of polls rather
# than one per reconnect, and devices that get back within minutes never poll at all. A throttled check
# (429) is not retried: the device goes back to MQTT.
CHECK_AFTER = 8
# A throttled answer (429) without a Retry-After (API Gateway's own throttle sends none) is retried after
# an equal-jitter exponential wait from THROTTLE_INITIAL; one with a Retry-After R after a uniform
# wait in [R, R x (1 + THROTTLE_SPREAD)], so a server that sheds load spreads the retries it asks for.
THROTTLE_INITIAL = 10.0
THROTTLE_SPREAD = 1.0
# A server asking for more than a day is far more likely broken than right; the device must come back.
MAX_RETRY_AFTER = 86400.0
# Past this many doublings any sane cap is reached; stops 2**n from overflowing a float.
_MAX_DOUBLINGS = 64


class RandomSource(Protocol):
    def uniform(self, a: float, b: float, /) -> float: ...


def age_delay(
    age: float,
    attempt: int = 1,
    initial: float = INITIAL_DELAY,
    cap: float = DEFAULT_CAP,
    fast_wait: float = FAST_WAIT,
    fast_window: float = FAST_WINDOW,
    growth: float = GROWTH,
) -> float:
    """The un-jittered wait after the `attempt`-th poll, made `age` seconds after power-on (or the last
    reset): doubling from `initial` to `fast_wait` in the fast window, then `growth` x age, up to `cap`."""
    fast = min(fast_wait, cap, scheduled_delay(max(attempt, 1), initial, max(fast_wait, initial)))
    if age < fast_window:
        return fast
    return min(cap, max(fast, growth * age))


def scheduled_delay(attempt: int, initial: float = 5.0, cap: float = 60.0) -> float:
    """The previous schedule, kept to compare against (`latchkey simulate`): 0, initial, 2·initial, ...
    doubling up to cap after `attempt` polls."""
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
    age: float = 0.0,
    fast_wait: float = FAST_WAIT,
    fast_window: float = FAST_WINDOW,
    growth: float = GROWTH,
) -> float:
    """Seconds to wait before the next poll, after `attempt` polls made over `age` seconds since
    power-on (attempt 0: poll now).

    A positive `retry_after` from the server wins over the local schedule for this one wait; 0 or
    None means "use the schedule".
    """
    if retry_after is not None and retry_after > 0:
        return min(float(retry_after), MAX_RETRY_AFTER)
    if attempt <= 0:
        return 0.0
    base = age_delay(age, attempt, initial, cap, fast_wait, fast_window, growth)
    return jitter_delay(base, rng, jitter, cap)


def cap_delay(rng: RandomSource, cap: float = DEFAULT_CAP, jitter: float = DEFAULT_JITTER) -> float:
    """A jittered wait at the cap: for answers that will not change soon (revoked, unknown device)."""
    return jitter_delay(cap, rng, jitter, cap)


def first_poll_delay(
    rng: RandomSource, spread: float = FIRST_POLL_SPREAD, initial: float = INITIAL_DELAY
) -> float:
    """The random wait before the first request after power-on: uniform in [0, spread], and never more
    than twice the first scheduled wait (configurations with sub-second waits stay sub-second)."""
    bound = min(spread, 2.0 * initial)
    return rng.uniform(0.0, bound) if bound > 0 else 0.0


def exponential_jitter(failures: int, rng: RandomSource, initial: float, cap: float) -> float:
    """Equal jitter: uniform in [b/2, b], b = min(cap, initial x 2^(failures-1)) (failures >= 1)."""
    bound = min(cap, initial * 2.0 ** min(max(failures, 1) - 1, _MAX_DOUBLINGS))
    return rng.uniform(bound / 2.0, bound)


def throttled_delay(
    retry_after: float | None,
    throttled: int,
    rng: RandomSource,
    initial: float = THROTTLE_INITIAL,
    cap: float = DEFAULT_CAP,
) -> float:
    """The wait after the `throttled`-th consecutive 429: the server's Retry-After spread over
    [R, R x (1 + THROTTLE_SPREAD)], or, without one, equal-jitter exponential from `initial`."""
    if retry_after is not None and retry_after > 0:
        wait = min(float(retry_after), MAX_RETRY_AFTER)
        return min(MAX_RETRY_AFTER, rng.uniform(wait, wait * (1.0 + THROTTLE_SPREAD)))
    return exponential_jitter(throttled, rng, initial, max(initial, cap))


def should_check_service(failures: int, check_after: int = CHECK_AFTER) -> bool:
    """Whether the `failures`-th consecutive failed MQTT connect is one to check with the device API:
    the check_after-th, then 2x, 4x, ... that (8, 16, 32, ... by default)."""
    if failures < check_after or check_after <= 0:
        return False
    ratio = failures // check_after
    return failures % check_after == 0 and ratio & (ratio - 1) == 0


def attempts_to_cap(
    initial: float = INITIAL_DELAY,
    cap: float = DEFAULT_CAP,
    fast_wait: float = FAST_WAIT,
    fast_window: float = FAST_WINDOW,
    growth: float = GROWTH,
) -> int:
    """The first attempt whose un-jittered wait is the cap (about 50 with the defaults: 7.2 h in)."""
    attempt, age = 1, 0.0
    while (wait := age_delay(age, attempt, initial, cap, fast_wait, fast_window, growth)) < cap:
        age += wait
        attempt += 1
    return attempt


def validate(initial: float, cap: float, jitter: float) -> None:
    if initial <= 0:
        raise ValueError(f"backoff_initial must be > 0, got {initial}")
    if cap < initial:
        raise ValueError(f"backoff_cap ({cap}) must be >= backoff_initial ({initial})")
    if not 0 <= jitter < 1:
        raise ValueError(f"jitter must be in [0, 1), got {jitter}")


def validate_shape(fast_window: float, growth: float, fast_wait: float = FAST_WAIT) -> None:
    if fast_wait <= 0:
        raise ValueError(f"poll_fast_wait must be > 0, got {fast_wait}")
    if fast_window < 0:
        raise ValueError(f"poll_fast_window must be >= 0, got {fast_window}")
    if not 0 < growth <= 10:
        raise ValueError(f"poll_growth must be in (0, 10], got {growth}")


@dataclass
class Backoff:
    """The poll schedule with its position: `next()` after each try, `reset()` when starting over.

    `attempt` counts the tries made since the last reset (power-on or a fresh start such as release);
    `age` is the time the schedule has waited since then (the device's age, as the schedule sees it).
    """

    initial: float = INITIAL_DELAY
    cap: float = DEFAULT_CAP
    jitter: float = DEFAULT_JITTER
    rng: RandomSource = field(default_factory=random.Random)
    attempt: int = 0
    fast_window: float = FAST_WINDOW
    growth: float = GROWTH
    fast_wait: float = FAST_WAIT
    age: float = 0.0

    def __post_init__(self) -> None:
        validate(self.initial, self.cap, self.jitter)
        validate_shape(self.fast_window, self.growth, self.fast_wait)

    def next(self, retry_after: float | None = None) -> float:
        """Count one more try and return the wait before the following one."""
        self.attempt += 1
        delay = next_delay(
            self.attempt,
            self.rng,
            self.initial,
            self.cap,
            self.jitter,
            retry_after,
            self.age,
            self.fast_wait,
            self.fast_window,
            self.growth,
        )
        self.age += delay
        return delay

    def at_cap(self, retry_after: float | None = None) -> float:
        """Jump to the cap and stay there until reset(): for answers that will not change soon."""
        self.attempt += 1
        self.age = max(self.age, self.fast_window, self.cap / self.growth)
        if retry_after is not None and retry_after > 0:
            delay = min(float(retry_after), MAX_RETRY_AFTER)
        else:
            delay = cap_delay(self.rng, self.cap, self.jitter)
        self.age += delay
        return delay

    def reset(self) -> None:
        self.attempt = 0
        self.age = 0.0


@dataclass
class Reconnect:
    """MQTT reconnect backoff: `next()` after each failed connect or lost connection, `reset()` once online."""

    initial: float = RECONNECT_INITIAL
    cap: float = RECONNECT_CAP
    rng: RandomSource = field(default_factory=random.Random)
    failures: int = 0

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.cap < self.initial:
            raise ValueError(f"reconnect backoff needs 0 < initial <= cap, got {self.initial}, {self.cap}")

    def next(self) -> float:
        self.failures += 1
        return exponential_jitter(self.failures, self.rng, self.initial, self.cap)

    def check_service(self) -> bool:
        """Whether the failure just counted is one to check with the device API (should_check_service)."""
        return should_check_service(self.failures)

    def reset(self) -> None:
        self.failures = 0
