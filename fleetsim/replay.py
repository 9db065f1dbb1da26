"""One device's polls, replayed with the agent's own schedule code.

The schedule under test is `firmware.schedule` itself: a simulated device makes its power-on poll, then
waits whatever `schedule.Backoff.next()` (hence `schedule.next_delay`) returns, exactly as
`firmware.agent.Agent` does. Nothing here copies the formula. The comparison schedules are not the
agent's: the previous doubling schedule (5 s doubling up to a 60 s or a 1 h cap, `schedule.scheduled_delay`),
every 5 s, and Ioto's published agent schedule (1 s + 0.25 s per attempt, cap 3,660 s); they reuse
`schedule.jitter_delay` for their jitter.

Also here, because they only need single devices' timelines: the power-outage peak (every device of a
fleet powers on at t=0) and the claim-delay sweep over backoff caps.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from firmware import schedule

SCHEDULES = ("agent", "cap60", "cap3600", "fixed5", "ioto")
FIXED_WAIT = 5.0
IOTO_INITIAL, IOTO_STEP, IOTO_CAP = 1.0, 0.25, 3660.0  # Ioto's agent: 1 s + 0.25 s per attempt, capped
DOUBLING_INITIAL = 5.0
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


_CAPS = {"cap60": 60.0, "cap3600": 3600.0, "ioto": IOTO_CAP}


@dataclass(frozen=True)
class Schedule:
    """agent: the agent's (firmware.schedule.Backoff); cap60/cap3600: the previous 5 s doubling with a
    60 s (today's) or 1 h cap; fixed5: every 5 s; ioto: 1 s + 0.25 s per attempt, cap 3,660 s.

    `cap`, `initial`, `growth`, `fast_wait` and `fast_window` shape the agent's schedule only."""

    kind: str = "agent"
    cap: float = field(default_factory=lambda: schedule.DEFAULT_CAP)
    initial: float = schedule.INITIAL_DELAY
    jitter: float = schedule.DEFAULT_JITTER
    growth: float = schedule.GROWTH
    fast_wait: float = schedule.FAST_WAIT
    fast_window: float = schedule.FAST_WINDOW

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.kind!r}; one of {', '.join(SCHEDULES)}")
        schedule.validate(self.initial, self.cap, self.jitter)
        schedule.validate_shape(self.fast_window, self.growth, self.fast_wait)

    @property
    def effective_cap(self) -> float:
        return _CAPS.get(self.kind, self.cap if self.kind == "agent" else math.inf)

    @property
    def label(self) -> str:
        return {
            "agent": f"agent, {self.growth:g}x age",
            "cap60": "doubling, 60 s cap",
            "cap3600": "doubling, 1 h cap",
            "fixed5": "every 5 s",
            "ioto": "Ioto 1 s+0.25 s/try",
        }[self.kind]

    def backoff(self, rng: random.Random) -> schedule.Backoff:
        """The agent's schedule object for this spec (kind "agent")."""
        return schedule.Backoff(
            self.initial,
            self.cap,
            self.jitter,
            rng,
            fast_window=self.fast_window,
            growth=self.growth,
            fast_wait=self.fast_wait,
        )


def poll_times(spec: Schedule, rng: random.Random, until: float) -> list[float]:
    """Seconds after power-on of each poll of a device nobody has claimed yet: the power-on poll, then
    one after every wait, up to and including the first poll at or after `until`."""
    t = 0.0
    times = [t]
    jitter_delay, jitter = schedule.jitter_delay, spec.jitter
    if spec.kind == "agent":
        wait = spec.backoff(rng).next  # as the agent does
        while t < until:
            t += wait()
            times.append(t)
    elif spec.kind == "fixed5":
        inf = math.inf
        while t < until:
            t += jitter_delay(FIXED_WAIT, rng, jitter, inf)
            times.append(t)
    elif spec.kind == "ioto":
        attempt = 0
        while t < until:
            base = min(IOTO_CAP, IOTO_INITIAL + IOTO_STEP * attempt)
            t += jitter_delay(base, rng, jitter, IOTO_CAP)
            times.append(t)
            attempt += 1
    else:
        cap, attempt, doubled = _CAPS[spec.kind], 0, schedule.scheduled_delay
        while t < until:
            attempt += 1
            t += jitter_delay(doubled(attempt, DOUBLING_INITIAL, cap), rng, jitter, cap)
            times.append(t)
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
