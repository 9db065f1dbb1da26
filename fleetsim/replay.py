"""One device's polls, replayed with the agent's own schedule code.

The schedule under test is `firmware.schedule` itself: a simulated device makes its power-on poll, then
waits whatever `schedule.Backoff.next()` (hence `schedule.next_delay`) returns, exactly as
`firmware.agent.Agent` does. Nothing here copies the formula. The two comparison schedules ("every 5 s",
"+1 s per attempt") are not the agent's; they reuse `schedule.jitter_delay` for their jitter.

Also here, because they only need single devices' timelines: the power-outage peak (every device of a
fleet powers on at t=0) and the claim-delay sweep over backoff caps.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from firmware import schedule

SCHEDULES = ("backoff", "fixed5", "linear")
FIXED_WAIT = 5.0
# lambdas.constants.LAST_SEEN_WRITE_INTERVAL_SECONDS; the simulator does not import the service, so
# callers that can (`latchkey simulate`) pass the service's value.
LAST_SEEN_WRITE_INTERVAL = 300.0

# Called with the share of a computation done so far (0..1), for progress bars.
Tick = Callable[[float], None]


def every(total: int, tick: Tick | None, start: float = 0.0, share: float = 1.0) -> Callable[[int], None]:
    """A per-item callback that reports to `tick` about a hundred times over `total` items, as the
    part [start, start + share] of a larger computation."""
    if tick is None or total <= 0:
        return lambda _done: None
    step = max(1, total // 100)
    report = tick

    def item(done: int) -> None:
        if done % step == 0 or done == total:
            report(start + share * done / total)

    return item


@dataclass(frozen=True)
class Schedule:
    """backoff: the agent's (firmware.schedule); fixed5: every 5 s; linear: 5 s, 6 s, 7 s, ..."""

    kind: str = "backoff"
    cap: float = field(default_factory=lambda: schedule.DEFAULT_CAP)
    initial: float = schedule.INITIAL_DELAY
    jitter: float = schedule.DEFAULT_JITTER

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.kind!r}; one of {', '.join(SCHEDULES)}")
        schedule.validate(self.initial, self.cap, self.jitter)

    @property
    def label(self) -> str:
        if self.kind == "backoff":
            return f"backoff, cap {self.cap:g} s"
        return "every 5 s" if self.kind == "fixed5" else "+1 s per attempt"


def poll_times(spec: Schedule, rng: random.Random, until: float) -> list[float]:
    """Seconds after power-on of each poll of a device nobody has claimed yet: the power-on poll, then
    one after every wait, up to and including the first poll at or after `until`."""
    t = 0.0
    times = [t]
    if spec.kind == "backoff":
        wait = schedule.Backoff(spec.initial, spec.cap, spec.jitter, rng).next  # as the agent does
        while t < until:
            t += wait()
            times.append(t)
    elif spec.kind == "fixed5":
        jitter_delay, jitter, inf = schedule.jitter_delay, spec.jitter, math.inf
        while t < until:
            t += jitter_delay(FIXED_WAIT, rng, jitter, inf)
            times.append(t)
    else:
        jitter_delay, jitter, inf = schedule.jitter_delay, spec.jitter, math.inf
        base = spec.initial
        while t < until:
            t += jitter_delay(base, rng, jitter, inf)
            times.append(t)
            base += 1.0
    return times


def write_times(
    times: Sequence[float], end: float, interval: float = LAST_SEEN_WRITE_INTERVAL
) -> list[float]:
    """The polls before `end` at which the service writes lastPollAt: the first, then any poll that finds
    the stored value `interval` seconds old or more (lambdas.logic.poll.touch)."""
    out: list[float] = []
    last = -math.inf
    for t in times:
        if t >= end:
            break
        if t - last >= interval:
            out.append(t)
            last = t
    return out


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (nan for no values)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(pct / 100 * len(ordered)) - 1))]


# --- a regional power outage ----------------------------------------------------------------------------


@dataclass
class Outage:
    schedule: Schedule
    devices: int
    per_second: list[float]  # fleet requests in each second after the power comes back
    samples: int

    @property
    def first_second(self) -> float:
        return self.per_second[0]

    @property
    def peak_after_first(self) -> float:
        return max(self.per_second[1:], default=0.0)

    @property
    def peak_after_first_at(self) -> int:
        rest = self.per_second[1:]
        return 1 + rest.index(max(rest)) if rest else 0


def outage(
    spec: Schedule,
    devices: int,
    seconds: int = 600,
    samples: int = 20_000,
    budget: int = 1_500_000,
    seed: int = 7,
    tick: Tick | None = None,
) -> Outage:
    """Every device of the fleet, none of them claimed, powers on at t=0 and polls on `spec`: requests
    in each 1 s bin, from K sampled devices scaled by N/K (K within `samples` and a poll `budget`).

    Jitter-free schedules make every sample identical, so that figure is exact."""
    rng = random.Random(seed)
    counts = [0] * seconds
    first = poll_times(spec, rng, seconds)
    k = max(1, min(samples, budget // max(1, len(first))))
    # Without jitter every sample repeats the first one: count it k times instead of replaying it.
    replays = 1 if spec.jitter == 0 else k
    done = every(replays, tick)
    for i in range(replays):
        times = first if i == 0 else poll_times(spec, rng, seconds)
        for t in times:
            if t >= seconds:
                break
            counts[int(t)] += k // replays
        done(i + 1)
    return Outage(spec, devices, [c * devices / k for c in counts], k)


# --- choosing the cap -------------------------------------------------------------------------------------


@dataclass
class CapRow:
    cap: float
    p50: float
    p90: float
    p99: float


def uniform_claims(window: float, samples: int = 20_000, seed: int = 7) -> list[float]:
    """Claim moments uniformly spread over the first `window` seconds after power-on."""
    rng = random.Random(seed)
    return [rng.uniform(0.0, window) for _ in range(samples)]


def claim_delay_sweep(
    caps: Sequence[float],
    claims: Sequence[float],
    seed: int = 7,
    initial: float = schedule.INITIAL_DELAY,
    jitter: float = schedule.DEFAULT_JITTER,
    tick: Tick | None = None,
) -> list[CapRow]:
    """Claim-to-online delay (claim -> the next poll) under the agent's schedule with each cap, for
    devices claimed `claims` seconds after power-on (the same claims and jitter seed for every cap)."""
    rows = []
    done = every(len(caps), tick)
    for i, cap in enumerate(caps):
        spec = Schedule("backoff", cap=cap, initial=initial, jitter=jitter)
        rng = random.Random(seed + 1)
        delays = [poll_times(spec, rng, claim)[-1] - claim for claim in claims]
        rows.append(CapRow(cap, percentile(delays, 50), percentile(delays, 90), percentile(delays, 99)))
        done(i + 1)
    return rows
