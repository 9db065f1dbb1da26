"""Fleet simulator: what polling costs for a fleet, replaying the agent's own schedule code.

Method. K devices are sampled (power-on time, claim delay); for each, the poll times come from
`firmware.schedule.next_delay` — the function the agent runs — iterated until the device is claimed
(its next poll gets the certificate; from then on it talks MQTT and no longer polls) or the horizon
ends. Totals are scaled by N/K. The comparison schedules ("every 5 s", "+1 s per attempt") are not the
agent's code; their poll times have closed forms, used directly. Sampling error of a mean over K
devices is about 1/sqrt(K) relative (K = 5,000: ~1.4 %).
"""

from __future__ import annotations

import math
import random
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware import schedule

PRICES_FILE = Path(__file__).resolve().parents[1] / "config" / "prices.toml"
HOUR = 3600.0
DAY = 24 * HOUR
MONTH = 30 * DAY


@dataclass(frozen=True)
class Fleet:
    devices: int = 1_000_000
    days: float = 30.0
    power_on_spread_hours: float = 24.0  # power-on times uniform over this span
    claim_median_minutes: float = 30.0  # claim delay after power-on: lognormal with this median
    claim_sigma: float = 1.5
    never_claimed: float = 0.1  # share of devices nobody claims in the horizon
    samples: int = 5000
    seed: int = 7


@dataclass
class Result:
    name: str
    polls_first_hour: float = 0.0  # per device, within the first hour after power-on
    polls_first_day: float = 0.0
    polls_per_month_after: float = 0.0  # per still-unclaimed device, per 30 days after day 1
    polls_total: float = 0.0  # whole fleet over the horizon
    delays: list[float] = field(default_factory=list)  # claim -> next poll, seconds

    def percentile(self, pct: float) -> float:
        if not self.delays:
            return float("nan")
        ordered = sorted(self.delays)
        return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def _claim_delays(fleet: Fleet, rng: random.Random) -> list[tuple[float, float | None]]:
    """(power-on time, claim delay or None) per sampled device."""
    out = []
    mu = math.log(fleet.claim_median_minutes * 60)
    for _ in range(fleet.samples):
        power_on = rng.uniform(0, fleet.power_on_spread_hours * HOUR)
        claim = None if rng.random() < fleet.never_claimed else rng.lognormvariate(mu, fleet.claim_sigma)
        out.append((power_on, claim))
    return out


def backoff_polls(
    until: float, rng: random.Random, cap: float, jitter: float = schedule.DEFAULT_JITTER
) -> list[float]:
    """Poll times (seconds after power-on) of the agent's schedule, up to and including the first >= until."""
    times, t, attempt = [], 0.0, 0
    while True:
        t += schedule.next_delay(attempt, rng, cap=cap, jitter=jitter)
        times.append(t)
        attempt += 1
        if t >= until:
            return times


def _closed_form_next(kind: str, after: float) -> tuple[float, int]:
    """(time of the first poll at or after `after`, polls up to and including it) for the comparisons."""
    if kind == "fixed5":
        n = math.ceil(after / 5.0)
        return n * 5.0, n + 1
    # linear: waits 5, 6, 7, ... → t_n = 5n + n(n-1)/2
    n = math.ceil((-9 + math.sqrt(81 + 8 * after)) / 2) if after > 0 else 0
    while 5 * n + n * (n - 1) / 2 < after:
        n += 1
    return 5 * n + n * (n - 1) / 2, n + 1


def _count_until(kind: str, t: float) -> int:
    return _closed_form_next(kind, t)[1] - (0 if _closed_form_next(kind, t)[0] <= t else 1)


def simulate(fleet: Fleet, kind: str = "backoff", cap: float = schedule.DEFAULT_CAP) -> Result:
    rng = random.Random(fleet.seed)
    horizon = fleet.days * DAY
    result = Result(kind if kind != "backoff" else f"backoff (cap {cap:g} s)")
    per_month, unclaimed_after_day = 0.0, 0
    for power_on, claim in _claim_delays(fleet, rng):
        until = min(claim if claim is not None else math.inf, horizon - power_on)
        if kind == "backoff":
            times = backoff_polls(until, rng, cap)
            first_hour = sum(1 for t in times if t <= HOUR and t <= until)
            first_day = sum(1 for t in times if t <= DAY and t <= until)
            total = len(times)
            next_poll = times[-1]
            after_day = [t for t in times if t > DAY]
        else:
            next_poll, total = _closed_form_next(kind, until)
            first_hour = _count_until(kind, min(HOUR, until))
            first_day = _count_until(kind, min(DAY, until))
            after_day = []
            if until > DAY:
                after_day = [0.0] * (total - first_day)
        result.polls_first_hour += first_hour
        result.polls_first_day += first_day
        result.polls_total += total
        if claim is not None and claim < horizon - power_on:
            result.delays.append(next_poll - claim)
        if until > DAY + MONTH / 30:  # unclaimed past day 1: rate per 30 days after it
            unclaimed_after_day += 1
            per_month += len(after_day) * MONTH / (until - DAY)
    scale = fleet.devices / fleet.samples
    result.polls_first_hour /= fleet.samples
    result.polls_first_day /= fleet.samples
    result.polls_per_month_after = per_month / unclaimed_after_day if unclaimed_after_day else 0.0
    result.polls_total *= scale
    return result


def outage_peak(
    devices: int, jitter: float, seconds: int = 3 * 3600, samples: int = 20000, seed: int = 7
) -> dict[str, float]:
    """Every device reboots at t=0 and polls on the agent's schedule: the busiest second, and the busiest
    second after the power-on wave (which the schedule cannot spread: every device polls at once)."""
    rng = random.Random(seed)
    bins = [0] * (seconds + 1)
    for _ in range(samples):
        for t in backoff_polls(seconds, rng, schedule.DEFAULT_CAP, jitter):
            if t <= seconds:
                bins[int(t)] += 1
    scale = devices / samples
    return {"first_second": bins[0] * scale, "peak_after_first": max(bins[1:]) * scale}


def load_prices(path: Path = PRICES_FILE) -> dict[str, Any]:
    return tomllib.loads(path.read_text())


def monthly_cost(polls_per_month: float, prices: dict[str, Any]) -> dict[str, float]:
    """Device API cost of `polls_per_month` unclaimed polls: API Gateway, Lambda, one DynamoDB read each."""
    p = prices["prices"]
    millions = polls_per_month / 1e6
    gb_seconds = polls_per_month * p["lambda_memory_gb"] * p["lambda_duration_ms"] / 1000
    cost = {
        "api_gateway": millions * p["http_api_per_million"],
        "lambda": millions * p["lambda_requests_per_million"] + gb_seconds * p["lambda_arm_gb_second"],
        "dynamodb": millions * p["dynamodb_read_units_per_poll"] * p["dynamodb_on_demand_read_per_million"],
    }
    cost["total"] = sum(cost.values())
    return cost
