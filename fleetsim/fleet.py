"""The fleet model and its sampled simulation over a horizon.

A million devices are not simulated one by one. The fleet is split in two strata and sampled:

- claimed devices (share 1 - never): K devices, each with its own power-on time and claim delay, polled
  until the first poll at or after the claim (the poll that finds the claim and gets the certificate;
  from then on the device talks MQTT and never polls again) or the horizon; each stands for N(1-f)/K.
- never-claimed devices (share f): their poll count over a month varies by far less than 0.1 % from
  device to device, so a handful suffice: devices are simulated over the whole horizon until a poll
  budget is spent, and each timeline is reused at several power-on times (`replicas`) for the
  time series. Each (timeline, power-on) pair stands for N·f/(devices·replicas).

Totals are scaled sums; the claim-to-online percentiles come from the claimed sample.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass, field

from firmware import schedule
from fleetsim.replay import (
    LAST_SEEN_WRITE_INTERVAL,
    Schedule,
    Tick,
    every,
    percentile,
    poll_times,
    write_times,
)
from fleetsim.units import DAY, HOUR, MONTH, describe_duration, parse_duration


@dataclass(frozen=True)
class ClaimModel:
    """Delay from power-on to claim, for the devices that get claimed; `never` is the share never claimed."""

    kind: str = "lognormal"  # lognormal | exponential | uniform
    scale: float = 1800.0  # median (lognormal, exponential) or maximum (uniform), seconds
    sigma: float = 1.5  # lognormal only
    never: float = 0.1

    def __post_init__(self) -> None:
        if self.kind not in ("lognormal", "exponential", "uniform"):
            raise ValueError(f"unknown claim distribution {self.kind!r}")
        if self.scale <= 0 or self.sigma <= 0 or not 0 <= self.never <= 1:
            raise ValueError("claim scale and sigma must be > 0, never in [0, 1]")

    def delay(self, rng: random.Random) -> float:
        if self.kind == "lognormal":
            return rng.lognormvariate(math.log(self.scale), self.sigma)
        if self.kind == "exponential":
            return rng.expovariate(math.log(2) / self.scale)
        return rng.uniform(0.0, self.scale)

    def describe(self) -> str:
        if self.kind == "lognormal":
            shape = f"lognormal, median {describe_duration(self.scale)}, sigma {self.sigma:g}"
        elif self.kind == "exponential":
            shape = f"exponential, median {describe_duration(self.scale)}"
        else:
            shape = f"uniform over the first {describe_duration(self.scale)}"
        return f"{shape}; {self.never:.0%} never claimed"


@dataclass(frozen=True)
class Replug:
    """Owners who, told by the page after 30 s that the device has not checked in, unplug and replug it:
    a `share` of them do so `patience` s after the claim; the device is back `boot` s later and polls
    after its random first-poll delay (firmware.schedule.first_poll_delay)."""

    share: float = 0.3
    patience: float = 90.0
    boot: float = 20.0

    def __post_init__(self) -> None:
        if not 0 <= self.share <= 1 or self.patience < 0 or self.boot < 0:
            raise ValueError("replug share must be in [0, 1], patience and boot >= 0")


@dataclass(frozen=True)
class Fleet:
    devices: int = 1_000_000
    days: float = 30.0
    power_on_hours: float = 24.0  # power-on times uniform over this span (0: all at once)
    claim: ClaimModel = field(default_factory=ClaimModel)
    replug: Replug = field(default_factory=Replug)

    @property
    def horizon(self) -> float:
        return self.days * DAY

    def power_on(self, rng: random.Random) -> float:
        return rng.uniform(0.0, self.power_on_hours * HOUR) if self.power_on_hours > 0 else 0.0


@dataclass(frozen=True)
class Sampling:
    claimed: int = 5000  # sampled devices that get claimed
    never_budget: int = 1_500_000  # polls to spend on never-claimed timelines ...
    never_min: int = 3  # ... but at least this many timelines
    never_max: int = 200  # ... and at most this many
    replicas: int = 16  # power-on times at which each never-claimed timeline is counted
    seed: int = 7


@dataclass
class FleetResult:
    schedule: Schedule
    fleet: Fleet
    first_hour: float = 0.0  # polls of a device nobody claims, in its first hour after power-on
    first_day: float = 0.0  # ... in its first day
    per_month_after: float = 0.0  # ... per 30 days after its first day (nan if the horizon is <= 1 day)
    requests: float = (
        0.0  # fleet's device API requests over the horizon (incl. the poll that finds the claim)
    )
    unclaimed_polls: float = 0.0  # polls answered "unclaimed"
    writes: float = 0.0  # lastPollAt writes
    last_day_requests: float = 0.0  # requests in the horizon's last 24 h
    last_day_writes: float = 0.0
    unclaimed_at_end: float = 0.0  # share of the fleet still waiting at the horizon
    delays: list[float] = field(default_factory=list)  # claim -> next poll, s, of sampled claimed devices
    claims: list[float] = field(default_factory=list)  # ... and their claim delays after power-on, s
    replugged_delays: list[float] = field(default_factory=list)  # claim -> online when some owners replug
    replugs: float = 0.0  # owners (scaled to the fleet) who unplug and replug their device
    hourly: list[float] = field(default_factory=list)  # fleet requests in each hour of the horizon
    sampled_claimed: int = 0
    sampled_never: int = 0
    polls_simulated: int = 0

    def percentile(self, pct: float) -> float:
        return percentile(self.delays, pct)

    def percentile_within(self, window: float, pct: float = 50.0) -> float:
        """Claim-to-online percentile of the claims made within `window` s of power-on (no replugs)."""
        return percentile([d for d, c in zip(self.delays, self.claims, strict=True) if c <= window], pct)

    @property
    def replug_share(self) -> float:
        """Owners who replug, per claim."""
        claimed = self.fleet.devices * (1.0 - self.fleet.claim.never)
        return self.replugs / claimed if claimed else 0.0

    @property
    def months(self) -> float:
        return self.fleet.days / 30.0

    @property
    def peak_hour_rps(self) -> float:
        return max(self.hourly, default=0.0) / HOUR

    @property
    def mean_rps(self) -> float:
        return self.requests / self.fleet.horizon


def simulate(
    fleet: Fleet,
    spec: Schedule | None = None,
    sampling: Sampling | None = None,
    write_interval: float = LAST_SEEN_WRITE_INTERVAL,
    tick: Tick | None = None,
) -> FleetResult:
    """The fleet's polls over the horizon under `spec` (default: the agent's schedule).

    `tick` hears the share done: the claimed stratum is the first half, the never-claimed the second."""
    spec = spec or Schedule()
    sampling = sampling or Sampling()
    claimed_done = every(sampling.claimed, tick, share=0.5)
    result = FleetResult(spec, fleet)
    horizon = fleet.horizon
    hours = max(1, math.ceil(horizon / HOUR))
    hourly = [0.0] * hours
    last_day = horizon - DAY
    # Two streams: the population (power-on, claim) is the same whatever the schedule, so schedules and
    # caps are compared on the same devices; the jitter draws are the schedule's own.
    population = random.Random(sampling.seed)
    jitter_rng = random.Random(sampling.seed + 1)
    owners = random.Random(sampling.seed + 2)
    replug = fleet.replug

    # Stratum 1: devices that get claimed.
    claimed_share = 1.0 - fleet.claim.never
    if claimed_share > 0 and sampling.claimed > 0:
        weight = fleet.devices * claimed_share / sampling.claimed
        for i in range(sampling.claimed):
            claimed_done(i + 1)
            power_on = fleet.power_on(population)
            claim = fleet.claim.delay(population)
            end = horizon - power_on
            if end <= 0:
                continue
            times = poll_times(spec, jitter_rng, min(claim, end))
            result.polls_simulated += len(times)
            if claim < end:
                delay = times[-1] - claim
                result.delays.append(delay)
                result.claims.append(claim)
                if delay > replug.patience and owners.random() < replug.share:
                    # The owner replugs: a reboot restarts polling at once (after the first-poll delay).
                    back = replug.patience + replug.boot + schedule.first_poll_delay(owners)
                    delay = min(delay, back)
                    result.replugs += weight
                result.replugged_delays.append(delay)
            else:
                result.unclaimed_at_end += weight
            requests = bisect.bisect_left(times, end)
            waiting = bisect.bisect_left(times, min(claim, end))
            writes = write_times(times, min(claim, end), write_interval)
            result.requests += requests * weight
            result.unclaimed_polls += waiting * weight
            result.writes += len(writes) * weight
            result.last_day_requests += (requests - bisect.bisect_left(times, last_day - power_on)) * weight
            result.last_day_writes += (len(writes) - bisect.bisect_left(writes, last_day - power_on)) * weight
            for t in times[:requests]:
                hourly[int((power_on + t) // HOUR)] += weight
        result.sampled_claimed = sampling.claimed

    # Stratum 2: devices nobody claims: a few whole-horizon timelines, each counted at several power-on times.
    if fleet.claim.never > 0:
        timelines: list[list[float]] = []
        spent = 0
        while len(timelines) < sampling.never_max and (
            len(timelines) < sampling.never_min or spent < sampling.never_budget
        ):
            times = poll_times(spec, jitter_rng, horizon)
            timelines.append(times)
            spent += len(times)
            if tick is not None:
                budget = max(len(timelines) / sampling.never_max, spent / max(1, sampling.never_budget))
                tick(0.5 + min(1.0, budget) / 2)
        result.polls_simulated += spent
        result.sampled_never = len(timelines)
        first_hour = first_day = after = 0.0
        for times in timelines:
            first_hour += bisect.bisect_left(times, HOUR)
            first_day += bisect.bisect_left(times, DAY)
            after += bisect.bisect_left(times, horizon) - bisect.bisect_left(times, DAY)
        result.first_hour = _first_hour(spec, jitter_rng, first_hour, len(timelines))
        result.first_day = first_day / len(timelines)
        result.per_month_after = (
            after / len(timelines) * MONTH / (horizon - DAY) if horizon > DAY else math.nan
        )
        weight = fleet.devices * fleet.claim.never / (len(timelines) * sampling.replicas)
        for times in timelines:
            writes = write_times(times, horizon, write_interval)
            for _ in range(sampling.replicas):
                power_on = fleet.power_on(population)
                end = horizon - power_on
                if end <= 0:
                    continue
                requests = bisect.bisect_left(times, end)
                n_writes = bisect.bisect_left(writes, end)
                result.requests += requests * weight
                result.unclaimed_polls += requests * weight
                result.writes += n_writes * weight
                result.last_day_requests += (
                    requests - bisect.bisect_left(times, last_day - power_on)
                ) * weight
                result.last_day_writes += (
                    n_writes - bisect.bisect_left(writes, last_day - power_on)
                ) * weight
                result.unclaimed_at_end += weight
                _add_hourly(hourly, times, power_on, requests, weight)
    else:
        result.first_hour, result.first_day, result.per_month_after = _never_claimed_rates(
            spec, jitter_rng, horizon
        )
    result.unclaimed_at_end /= fleet.devices
    result.hourly = hourly
    if tick is not None:
        tick(1.0)
    return result


def _add_hourly(hourly: list[float], times: list[float], power_on: float, upto: int, weight: float) -> None:
    """Add a timeline's first `upto` polls, shifted by `power_on`, into hour bins (by bisection)."""
    first = int(power_on // HOUR)
    lo = 0
    for hour in range(first, len(hourly)):
        hi = bisect.bisect_left(times, (hour + 1) * HOUR - power_on, lo, upto)
        if hi > lo:
            hourly[hour] += (hi - lo) * weight
        lo = hi
        if lo >= upto:
            break


def _first_hour(spec: Schedule, rng: random.Random, counted: float, timelines: int, want: int = 200) -> float:
    """Mean polls in the first hour over `want` devices: the timelines' counts plus cheap extra hours."""
    extra = max(0, want - timelines)
    for _ in range(extra):
        counted += bisect.bisect_left(poll_times(spec, rng, HOUR), HOUR)
    return counted / (timelines + extra)


def _never_claimed_rates(spec: Schedule, rng: random.Random, horizon: float) -> tuple[float, float, float]:
    """Per-device rates of the schedule when the fleet has no never-claimed stratum to read them from."""
    span = max(horizon, 2 * DAY)
    times = poll_times(spec, rng, span)
    after = bisect.bisect_left(times, span) - bisect.bisect_left(times, DAY)
    return (
        float(bisect.bisect_left(times, HOUR)),
        float(bisect.bisect_left(times, DAY)),
        after * MONTH / (span - DAY),
    )


def parse_claim(text: str, never: float) -> ClaimModel:
    """The claim model of "lognormal:30m[:1.5]", "exponential:30m" or "uniform:10m"."""
    kind, _, rest = text.strip().lower().partition(":")
    parts = rest.split(":") if rest else []
    if kind not in ("lognormal", "exponential", "uniform") or not parts or len(parts) > 2:
        raise ValueError(f"{text!r}: use lognormal:MEDIAN[:SIGMA], exponential:MEDIAN or uniform:MAX")
    if len(parts) == 2 and kind != "lognormal":
        raise ValueError(f"{text!r}: only lognormal takes a sigma")
    scale = parse_duration(parts[0])
    try:
        sigma = float(parts[1]) if len(parts) == 2 else 1.5
    except ValueError:
        raise ValueError(f"{text!r}: sigma must be a number") from None
    return ClaimModel(kind, scale, sigma, never)


def truncated_claims(model: ClaimModel, window: float, samples: int = 20_000, seed: int = 7) -> list[float]:
    """Claim delays drawn from `model`, keeping those within `window` (empty if they are too rare)."""
    rng = random.Random(seed)
    out: list[float] = []
    for _ in range(200 * samples):
        delay = model.delay(rng)
        if delay <= window:
            out.append(delay)
            if len(out) == samples:
                break
    return out if len(out) == samples else []
