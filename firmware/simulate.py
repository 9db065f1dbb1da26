"""Fleet simulator: what the device poll costs a fleet, replaying the agent's own schedule code.

`latchkey simulate` (cli/simulate.py) prints it; docs/performance.md explains the method and its error.

The schedule under test is `firmware.schedule` itself: a simulated device makes its power-on poll, then
waits whatever `schedule.Backoff.next()` (hence `schedule.next_delay`) returns, exactly as
`firmware.agent.Agent` does. Nothing here copies the formula. The two comparison schedules ("every 5 s",
"+1 s per attempt") are not the agent's; they reuse `schedule.jitter_delay` for their jitter.

A million devices are not simulated one by one. The fleet is split in two strata and sampled:

- claimed devices (share 1 - never): K devices, each with its own power-on time and claim delay, polled
  until the first poll at or after the claim (the poll that finds the claim and gets the certificate;
  from then on the device talks MQTT and never polls again) or the horizon; each stands for N(1-f)/K.
- never-claimed devices (share f): their poll count over a month varies by far less than 0.1 % from
  device to device, so a handful suffice: devices are simulated over the whole horizon until a poll
  budget is spent, and each timeline is reused at several power-on times (`replicas`) for the
  time series. Each (timeline, power-on) pair stands for N·f/(devices·replicas).

Totals are scaled sums; the claim-to-online percentiles come from the claimed sample. The power-outage
peak samples devices that all power on at t=0, histograms their poll times into 1 s bins and scales by
N/K (jitter-free schedules make every sample identical, so that figure is exact).

Pure standard library (the agent ships without numpy); deterministic for a given seed.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from firmware import schedule

HOUR = 3600.0
DAY = 86400.0
MONTH = 30 * DAY
SCHEDULES = ("backoff", "fixed5", "linear")
FIXED_WAIT = 5.0
# lambdas.constants.LAST_SEEN_WRITE_INTERVAL_SECONDS; the agent never imports the service, so callers
# that can (cli/simulate.py) pass the service's value.
LAST_SEEN_WRITE_INTERVAL = 300.0


# --- schedules -----------------------------------------------------------------------------------------


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


# --- the fleet -----------------------------------------------------------------------------------------


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
            shape = f"lognormal, median {_duration(self.scale)}, sigma {self.sigma:g}"
        elif self.kind == "exponential":
            shape = f"exponential, median {_duration(self.scale)}"
        else:
            shape = f"uniform over the first {_duration(self.scale)}"
        return f"{shape}; {self.never:.0%} never claimed"


@dataclass(frozen=True)
class Fleet:
    devices: int = 1_000_000
    days: float = 30.0
    power_on_hours: float = 24.0  # power-on times uniform over this span (0: all at once)
    claim: ClaimModel = field(default_factory=ClaimModel)

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
    hourly: list[float] = field(default_factory=list)  # fleet requests in each hour of the horizon
    sampled_claimed: int = 0
    sampled_never: int = 0
    polls_simulated: int = 0

    def percentile(self, pct: float) -> float:
        return percentile(self.delays, pct)

    @property
    def months(self) -> float:
        return self.fleet.days / 30.0

    @property
    def peak_hour_rps(self) -> float:
        return max(self.hourly, default=0.0) / HOUR

    @property
    def mean_rps(self) -> float:
        return self.requests / self.fleet.horizon


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (nan for no values)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(pct / 100 * len(ordered)) - 1))]


def simulate(
    fleet: Fleet,
    spec: Schedule | None = None,
    sampling: Sampling | None = None,
    write_interval: float = LAST_SEEN_WRITE_INTERVAL,
) -> FleetResult:
    """The fleet's polls over the horizon under `spec` (default: the agent's schedule)."""
    spec = spec or Schedule()
    sampling = sampling or Sampling()
    result = FleetResult(spec, fleet)
    horizon = fleet.horizon
    hours = max(1, math.ceil(horizon / HOUR))
    hourly = [0.0] * hours
    last_day = horizon - DAY
    # Two streams: the population (power-on, claim) is the same whatever the schedule, so schedules and
    # caps are compared on the same devices; the jitter draws are the schedule's own.
    population = random.Random(sampling.seed)
    jitter_rng = random.Random(sampling.seed + 1)

    # Stratum 1: devices that get claimed.
    claimed_share = 1.0 - fleet.claim.never
    if claimed_share > 0 and sampling.claimed > 0:
        weight = fleet.devices * claimed_share / sampling.claimed
        for _ in range(sampling.claimed):
            power_on = fleet.power_on(population)
            claim = fleet.claim.delay(population)
            end = horizon - power_on
            if end <= 0:
                continue
            times = poll_times(spec, jitter_rng, min(claim, end))
            result.polls_simulated += len(times)
            if claim < end:
                result.delays.append(times[-1] - claim)
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
) -> Outage:
    """Every device of the fleet, none of them claimed, powers on at t=0 and polls on `spec`: requests
    in each 1 s bin, from K sampled devices scaled by N/K (K within `samples` and a poll `budget`)."""
    rng = random.Random(seed)
    counts = [0] * seconds
    first = poll_times(spec, rng, seconds)
    k = max(1, min(samples, budget // max(1, len(first))))
    for i in range(k):
        times = first if i == 0 else poll_times(spec, rng, seconds)
        for t in times:
            if t >= seconds:
                break
            counts[int(t)] += 1
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


def claim_delay_sweep(
    caps: Sequence[float],
    claims: Sequence[float],
    seed: int = 7,
    initial: float = schedule.INITIAL_DELAY,
    jitter: float = schedule.DEFAULT_JITTER,
) -> list[CapRow]:
    """Claim-to-online delay (claim -> the next poll) under the agent's schedule with each cap, for
    devices claimed `claims` seconds after power-on (the same claims and jitter seed for every cap)."""
    rows = []
    for cap in caps:
        spec = Schedule("backoff", cap=cap, initial=initial, jitter=jitter)
        rng = random.Random(seed + 1)
        delays = [poll_times(spec, rng, claim)[-1] - claim for claim in claims]
        rows.append(CapRow(cap, percentile(delays, 50), percentile(delays, 90), percentile(delays, 99)))
    return rows


# --- money -------------------------------------------------------------------------------------------------


def tiered(quantity: float, tiers: Sequence[dict[str, float]], unit: float = 1.0) -> float:
    """Cost of `quantity` under cumulative tiers [{"up_to": q, "price": p per `unit`}, ...]."""
    cost, floor = 0.0, 0.0
    for tier in tiers:
        ceiling = float(tier["up_to"])
        if quantity <= floor:
            break
        cost += (min(quantity, ceiling) - floor) / unit * float(tier["price"])
        floor = ceiling
    return cost


@dataclass(frozen=True)
class Workload:
    """What one device API request costs in resources (prices.toml [assumptions]; memory from definitions)."""

    memory_mb: float = 512.0
    billed_ms: float = 10.0
    read_units_per_poll: float = 0.5  # one eventually consistent GetItem of an item <= 4 KB
    write_units_per_touch: float = 1.0  # one UpdateItem of an item <= 1 KB, no index touched
    log_bytes_per_request: float = 800.0
    traced_share: float = 0.05

    @classmethod
    def from_prices(cls, prices: dict[str, Any], memory_mb: float | None = None) -> Workload:
        a = prices.get("assumptions", {})
        return cls(
            memory_mb=float(memory_mb if memory_mb is not None else a.get("memory_mb", 512)),
            billed_ms=float(a.get("billed_ms", 10)),
            read_units_per_poll=float(a.get("read_units_per_poll", 0.5)),
            write_units_per_touch=float(a.get("write_units_per_touch", 1.0)),
            log_bytes_per_request=float(a.get("log_bytes_per_request", 800)),
            traced_share=float(a.get("traced_share", 0.05)),
        )


def monthly_bill(
    requests: float, writes: float, prices: dict[str, Any], workload: Workload | None = None
) -> dict[str, float]:
    """One month of the device API: `requests` polls (each one Lambda invocation and one DynamoDB read)
    and `writes` lastPollAt writes, at the list prices of `prices` (config/prices.toml).

    `total` = API Gateway + Lambda + DynamoDB (what the design asks for); `observability` = CloudWatch
    Logs ingestion and X-Ray traces that the stack also turns on, reported apart."""
    w = workload or Workload()
    p = prices
    gb_seconds = requests * w.memory_mb / 1024 * w.billed_ms / 1000
    read_units = requests * w.read_units_per_poll
    write_units = writes * w.write_units_per_touch
    cost = {
        "api_gateway": tiered(requests, p["api_gateway"]["requests"], 1e6),
        "lambda_requests": requests / 1e6 * p["lambda"]["per_million_requests"],
        "lambda_duration": tiered(gb_seconds, p["lambda"]["gb_seconds"]),
        "dynamodb_reads": read_units / 1e6 * p["dynamodb"]["per_million_read_request_units"],
        "dynamodb_writes": write_units / 1e6 * p["dynamodb"]["per_million_write_request_units"],
    }
    cost["lambda"] = cost["lambda_requests"] + cost["lambda_duration"]
    cost["dynamodb"] = cost["dynamodb_reads"] + cost["dynamodb_writes"]
    cost["total"] = cost["api_gateway"] + cost["lambda"] + cost["dynamodb"]
    cost["logs"] = requests * w.log_bytes_per_request / 1e9 * p["cloudwatch_logs"]["per_gb_ingested"]
    cost["xray"] = requests * w.traced_share / 1e6 * p["xray"]["per_million_traces"]
    cost["observability"] = cost["logs"] + cost["xray"]
    cost["gb_seconds"] = gb_seconds
    cost["read_units"] = read_units
    cost["write_units"] = write_units
    return cost


def bills(
    result: FleetResult, prices: dict[str, Any], workload: Workload | None = None
) -> dict[str, dict[str, float]]:
    """The bill of the simulated horizon scaled to 30 days ("first"), and of a later month at the rate
    of the horizon's last day ("later")."""
    per_month = 1.0 / result.months
    return {
        "first": monthly_bill(result.requests * per_month, result.writes * per_month, prices, workload),
        "later": monthly_bill(result.last_day_requests * 30, result.last_day_writes * 30, prices, workload),
    }


# --- helpers ----------------------------------------------------------------------------------------------


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


def _duration(seconds: float) -> str:
    for unit, size in (("d", DAY), ("h", HOUR), ("min", 60.0)):
        if seconds >= (2 * size if unit == "d" else size) and (seconds / size).is_integer():
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"
