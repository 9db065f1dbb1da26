"""Everything `latchkey simulate` computes, as data: `run(spec)` -> `Study`, `figures(study)` -> JSON.

Side by side for each schedule: the fleet over the horizon (fleet.simulate), the power-outage peak
(replay.outage) and the device API's bill (prices.bills); the whole monthly bill of the fleet with
presence at the floor and as today (cost.fleet_bill); the reconnect storm (storm.simulate); and, for the
agent's schedule, the sweep of its growth against the goals (GOALS).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from firmware import schedule
from fleetsim import cost, replay
from fleetsim import fleet as fm
from fleetsim import prices as pm
from fleetsim import storm as storm_m

GROWTH_SWEEP = (0.08, 0.1, 0.12, 0.15, 0.18, 0.2, 0.25)
CLAIM_WINDOW_S = 600.0  # "a device claimed within 10 minutes of power-on"
OUTAGE_SECONDS = 600
# The schedule's goals (issue 16): polls of a never-claimed device, claim-to-online medians.
GOALS = {"polls_day1": 70.0, "polls_month_after": 800.0, "p50_within_10min_s": 20.0, "p50_all_s": 120.0}

# Told the current step's description and the share of the whole study done so far (0..1).
Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class Service:
    """What the study needs to know about the deployed service (lambdas.definitions, when installed)."""

    memory_mb: float | None = None  # DeviceApi memory; None: prices.toml [assumptions]
    throttle: tuple[float, int] | None = None  # the device routes' stage throttle: rate/s, burst
    write_interval: float = replay.LAST_SEEN_WRITE_INTERVAL  # lastPollAt is written at most this often
    poll_throttle: tuple[float, int] | None = None  # the poll route's own throttle, when it has one


@dataclass(frozen=True)
class StudySpec:
    fleet: fm.Fleet = field(default_factory=fm.Fleet)
    schedules: tuple[str, ...] = replay.SCHEDULES
    cap: float = schedule.DEFAULT_CAP
    jitter: float = schedule.DEFAULT_JITTER
    samples: int = 5000  # sampled devices that get claimed, per schedule
    seed: int = 7
    sweep: bool = True
    storm: bool = True
    service: Service = field(default_factory=Service)

    @property
    def sampling(self) -> fm.Sampling:
        return fm.Sampling(claimed=self.samples, seed=self.seed)

    @property
    def specs(self) -> list[replay.Schedule]:
        return [replay.Schedule(kind, cap=self.cap, jitter=self.jitter) for kind in self.schedules]

    @property
    def online_share(self) -> float:
        return 1.0 - self.fleet.claim.never

    @property
    def sweeps(self) -> bool:
        return self.sweep and "agent" in self.schedules


@dataclass
class SweepRow:
    growth: float
    result: fm.FleetResult  # the fleet at this growth, lightly sampled

    def goals(self) -> dict[str, float]:
        return goal_figures(self.result)

    @property
    def meets(self) -> bool:
        return meets(goal_figures(self.result))


def goal_figures(r: fm.FleetResult) -> dict[str, float]:
    return {
        "polls_day1": r.first_day,
        "polls_month_after": r.per_month_after,
        "p50_within_10min_s": r.percentile_within(CLAIM_WINDOW_S),
        "p50_all_s": r.percentile(50),
    }


def meets(figures: dict[str, float]) -> bool:
    return all(figures[k] <= GOALS[k] for k in GOALS)


@dataclass
class Study:
    spec: StudySpec
    prices: dict[str, Any]
    workload: pm.Workload
    results: list[fm.FleetResult]
    outages: dict[str, dict[str, replay.Outage]]  # schedule kind -> "jitter" -> outage
    bills: list[dict[str, dict[str, float]]]  # per result: the device API's "first" 30 days, a "later" month
    fleet_bills: dict[str, cost.FleetBill] = field(default_factory=dict)  # "floor" (agent) / "today"
    storm: storm_m.StormResult | None = None
    sweep: list[SweepRow] | None = None
    seconds: float = 0.0  # how long the study took

    def result(self, kind: str) -> fm.FleetResult | None:
        return next((r for r in self.results if r.schedule.kind == kind), None)


# Relative cost of each kind of step, for a progress bar whose pace is steady (measured on the README's
# run: a jitter-free outage replays one device, the claim sweeps replay 15 x 20,000).
_WEIGHTS = {"fleet": 6.0, "outage": 1.5, "storm": 12.0, "sweep": 1.5}


class _Steps:
    """Turns the per-step share that each computation reports into the share of the whole study."""

    def __init__(self, kinds: list[str], progress: Progress | None) -> None:
        self._weights = [_WEIGHTS[k] for k in kinds]
        self._total = sum(self._weights) or 1.0
        self._done = 0.0
        self._index = 0
        self._progress = progress
        self._description = ""

    def start(self, description: str) -> replay.Tick:
        self._description = description
        weight = self._weights[self._index]
        base = self._done
        self._index += 1
        self._done += weight
        self._report(base)

        def tick(share: float) -> None:
            self._report(base + weight * min(1.0, max(0.0, share)))

        return tick

    def _report(self, done: float) -> None:
        if self._progress is not None:
            self._progress(self._description, done / self._total)

    def finish(self) -> None:
        self._description = "done"
        self._report(self._total)


def _plan(spec: StudySpec) -> list[str]:
    kinds = ["fleet"] * len(spec.schedules) + ["outage"] * len(spec.schedules)
    if spec.storm:
        kinds.append("storm")
    if spec.sweeps:
        kinds += ["sweep"] * len(GROWTH_SWEEP)
    return kinds


def storm_spec(spec: StudySpec, prices: dict[str, Any]) -> storm_m.StormSpec:
    """The storm of this fleet against the service's throttle and the account's quotas (prices.toml)."""
    quotas = prices.get("quotas", {})
    rate, burst = spec.service.poll_throttle or spec.service.throttle or (50.0, 100)
    return storm_m.StormSpec(
        devices=spec.fleet.devices,
        unclaimed=spec.fleet.claim.never,
        api_rate=float(rate),
        api_burst=float(burst),
        connect_quota=float(quotas.get("iot_connect_per_second", 500)),
        # The fleet cannot be online at all under the default; the storm assumes it was raised to fit.
        concurrent_quota=max(float(quotas.get("iot_concurrent_connections", 500_000)), spec.fleet.devices),
        # No more samples than devices: a small fleet is simulated device by device.
        claimed_samples=max(1, min(storm_m.StormSpec.claimed_samples, spec.fleet.devices)),
        unclaimed_samples=max(1, min(storm_m.StormSpec.unclaimed_samples, spec.fleet.devices)),
        seed=spec.seed,
    )


def run(spec: StudySpec, prices: dict[str, Any] | None = None, progress: Progress | None = None) -> Study:
    started = time.monotonic()
    prices = pm.load_prices() if prices is None else prices
    workload = pm.Workload.from_prices(prices, spec.service.memory_mb)
    steps = _Steps(_plan(spec), progress)
    fleet, seed = spec.fleet, spec.seed

    results = [
        fm.simulate(
            fleet,
            s,
            spec.sampling,
            spec.service.write_interval,
            tick=steps.start(f"fleet over {fleet.days:g} days: {s.label}"),
        )
        for s in spec.specs
    ]
    outages: dict[str, dict[str, replay.Outage]] = {}
    for s in spec.specs:
        outages[s.kind] = {
            "jitter": replay.outage(
                s, fleet.devices, OUTAGE_SECONDS, seed=seed, tick=steps.start(f"power outage: {s.label}")
            )
        }
    billed = [pm.bills(r, prices, workload) for r in results]
    study = Study(spec, prices, workload, results, outages, billed)
    agent = study.result("agent")
    today = study.result("cap60")
    for design, r in (("floor", agent), ("today", today)):
        if r is not None:
            study.fleet_bills[design] = cost.fleet_bill(
                fleet.devices, r.requests / r.months, r.writes / r.months, prices, workload, design
            )
    if spec.storm:
        study.storm = storm_m.simulate(storm_spec(spec, prices), tick=steps.start("reconnect storm"))
    if spec.sweeps:
        light = fm.Sampling(claimed=1500, never_budget=200_000, never_min=2, replicas=2, seed=seed)
        study.sweep = [
            SweepRow(
                g,
                fm.simulate(
                    fleet,
                    replay.Schedule("agent", cap=spec.cap, jitter=spec.jitter, growth=g),
                    light,
                    spec.service.write_interval,
                    tick=steps.start(f"growth sweep: {g:g} x age"),
                ),
            )
            for g in GROWTH_SWEEP
        ]
    steps.finish()
    study.seconds = time.monotonic() - started
    return study


# --- as JSON ------------------------------------------------------------------------------------------------


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _schedule_figures(
    r: fm.FleetResult, outage: dict[str, replay.Outage], bill: dict[str, dict[str, float]]
) -> dict[str, Any]:
    return {
        "label": r.schedule.label,
        "polls_per_unclaimed_device": {
            "first_hour": r.first_hour,
            "first_day": r.first_day,
            "per_month_after": _finite(r.per_month_after),
        },
        "claim_to_online_s": {f"p{p}": _finite(r.percentile(p)) for p in (50, 90, 99)},
        "p50_claim_within_10min_s": _finite(r.percentile_within(CLAIM_WINDOW_S)),
        "p50_with_replugs_s": _finite(replay.percentile(r.replugged_delays, 50)),
        "replugs_per_claim": r.replug_share,
        "requests": r.requests,
        "mean_rps": r.mean_rps,
        "peak_hour_rps": r.peak_hour_rps,
        "unclaimed_at_end": r.unclaimed_at_end,
        "outage_first_second": outage["jitter"].first_second,
        "outage_peak_after_first": outage["jitter"].peak_after_first,
        "device_api_bill_first_30_days": bill["first"],
        "polls_simulated": r.polls_simulated,
    }


def key_figures(study: Study) -> dict[str, float]:
    """The flat figures `make bench` writes (cost.*, schedule.*, storm.*), numbers only (nan: missing)."""
    out: dict[str, float] = {}
    p = study.prices
    floor = cost.connectivity_floor(p)
    out["cost.connectivity_floor_device_month_usd"] = floor
    out["cost.online_idle_device_month_usd"] = cost.price(cost.presence_usage("floor", p), p)["total"]
    out["cost.online_idle_device_month_today_usd"] = cost.price(cost.presence_usage("today", p), p)["total"]
    for design, bill in study.fleet_bills.items():
        key = "cost.fleet_month_usd" if design == "floor" else "cost.fleet_month_today_usd"
        out[key] = bill.cost["total"]
    agent = study.result("agent")
    if agent is not None:
        for name, value in goal_figures(agent).items():
            key = {
                "polls_day1": "schedule.never_claimed_polls_day1",
                "polls_month_after": "schedule.never_claimed_polls_month_after",
                "p50_within_10min_s": "schedule.p50_claim_within_10min_s",
                "p50_all_s": "schedule.p50_all_claims_s",
            }[name]
            out[key] = value
        out["schedule.replugs_per_claim"] = agent.replug_share
    if study.storm is not None:
        s = study.storm
        out["storm.peak_device_api_rps"] = s.peak_api_rps
        out["storm.device_api_throttle_rps"] = s.spec.api_rate
        out["storm.peak_iot_connects_per_s"] = s.peak_connects_per_s
        out["storm.iot_connect_quota_per_s"] = s.spec.connect_quota
        out["storm.minutes_to_99pct_online"] = s.seconds_to_online(0.99) / 60
        out["storm.checks_per_claimed_device"] = s.checks / max(1.0, s.spec.devices * (1 - s.spec.unclaimed))
    return out


def figures(study: Study) -> dict[str, Any]:
    """Every figure of the study, JSON-ready (no NaN: missing figures are null)."""
    spec = study.spec
    out: dict[str, Any] = {
        "fleet": {
            "devices": spec.fleet.devices,
            "days": spec.fleet.days,
            "power_on_spread_s": spec.fleet.power_on_hours * 3600,
            "claim": spec.fleet.claim.describe(),
            "sampled_claimed": spec.samples,
            "seed": spec.seed,
        },
        "prices": {"source": study.prices["source"], "date": study.prices["date"]},
        "workload": asdict(study.workload),
        "schedules": {
            r.schedule.kind: _schedule_figures(r, study.outages[r.schedule.kind], b)
            for r, b in zip(study.results, study.bills, strict=True)
        },
        "fleet_bills": {
            design: {"shares": bill.shares, "cost": bill.cost, "by_kind": bill.by_kind}
            for design, bill in study.fleet_bills.items()
        },
        "key": {k: _finite(v) for k, v in key_figures(study).items()},
        "goals": GOALS,
        "seconds": study.seconds,
    }
    if study.sweep is not None:
        out["growth_sweep"] = [
            {"growth": row.growth, **{k: _finite(v) for k, v in row.goals().items()}, "meets": row.meets}
            for row in study.sweep
        ]
    return out
