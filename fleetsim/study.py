"""Everything `latchkey simulate` computes, as data: `run(spec)` -> `Study`, `figures(study)` -> JSON.

Side by side for each schedule: the fleet over the horizon (fleet.simulate), the power-outage peak with
and without jitter (replay.outage) and the bills (prices.bills); then, for the agent's backoff, the cap
sweep that chose the agent's default cap (`firmware.schedule.DEFAULT_CAP`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from firmware import schedule
from fleetsim import fleet as fm
from fleetsim import prices as pm
from fleetsim import replay

CAP_SWEEP = (30.0, 40.0, 45.0, 50.0, 55.0, 60.0, 65.0, 70.0, 75.0, 80.0, 90.0, 120.0, 300.0, 900.0, 3600.0)
DELAY_TARGET_S = 30.0
CLAIM_WINDOW_S = 600.0  # "a device claimed within 10 minutes of power-on"
OUTAGE_SECONDS = 600

# Told the current step's description and the share of the whole study done so far (0..1).
Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class Service:
    """What the study needs to know about the deployed service (lambdas.definitions, when installed)."""

    memory_mb: float | None = None  # DeviceApi memory; None: prices.toml [assumptions]
    throttle: tuple[float, int] | None = None  # the device routes' stage throttle: rate/s, burst
    write_interval: float = replay.LAST_SEEN_WRITE_INTERVAL  # lastPollAt is written at most this often


@dataclass(frozen=True)
class StudySpec:
    fleet: fm.Fleet = field(default_factory=fm.Fleet)
    schedules: tuple[str, ...] = replay.SCHEDULES
    cap: float = schedule.DEFAULT_CAP
    jitter: float = schedule.DEFAULT_JITTER
    samples: int = 5000  # sampled devices that get claimed, per schedule
    seed: int = 7
    sweep: bool = True
    service: Service = field(default_factory=Service)

    @property
    def sampling(self) -> fm.Sampling:
        return fm.Sampling(claimed=self.samples, seed=self.seed)

    @property
    def specs(self) -> list[replay.Schedule]:
        return [replay.Schedule(kind, cap=self.cap, jitter=self.jitter) for kind in self.schedules]

    @property
    def sweeps(self) -> bool:
        return self.sweep and "backoff" in self.schedules


@dataclass
class SweepRow:
    cap: float
    uniform: replay.CapRow  # claims uniform over the claim window
    own: replay.CapRow | None  # the fleet's own claim delays cut at the window (None: too rare)
    result: fm.FleetResult  # the fleet at this cap, lightly sampled, for its bill
    bill: dict[str, dict[str, float]]

    @property
    def meets(self) -> bool:
        return self.uniform.p50 < DELAY_TARGET_S and (self.own is None or self.own.p50 < DELAY_TARGET_S)


@dataclass
class Sweep:
    rows: list[SweepRow]
    own_claims: bool  # whether the fleet's own claim delays were frequent enough inside the window

    @property
    def chosen(self) -> float | None:
        """The cheapest cap whose median claim-to-online stays under the target."""
        meeting = [row for row in self.rows if row.meets]
        return min(meeting, key=lambda row: row.bill["first"]["total"]).cap if meeting else None


@dataclass
class Study:
    spec: StudySpec
    prices: dict[str, Any]
    workload: pm.Workload
    results: list[fm.FleetResult]
    outages: dict[str, dict[str, replay.Outage]]  # schedule kind -> "jitter" | "none" -> outage
    bills: list[dict[str, dict[str, float]]]  # per result: "first" 30 days, a "later" month
    sweep: Sweep | None = None
    seconds: float = 0.0  # how long the study took


# Relative cost of each kind of step, for a progress bar whose pace is steady (measured on the README's
# run: a jitter-free outage replays one device, the claim sweeps replay 15 x 20,000).
_WEIGHTS = {"fleet": 6.0, "outage": 1.5, "quiet": 0.05, "claims": 9.0, "cost": 1.6}


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


def _plan(spec: StudySpec, own_claims: bool) -> list[str]:
    kinds = ["fleet"] * len(spec.schedules) + ["outage", "quiet"] * len(spec.schedules)
    if spec.sweeps:
        kinds += ["claims"] * (2 if own_claims else 1) + ["cost"] * len(CAP_SWEEP)
    return kinds


def run(spec: StudySpec, prices: dict[str, Any] | None = None, progress: Progress | None = None) -> Study:
    started = time.monotonic()
    prices = pm.load_prices() if prices is None else prices
    workload = pm.Workload.from_prices(prices, spec.service.memory_mb)
    own = fm.truncated_claims(spec.fleet.claim, CLAIM_WINDOW_S, seed=spec.seed) if spec.sweeps else []
    steps = _Steps(_plan(spec, bool(own)), progress)
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
        quiet = replay.Schedule(s.kind, cap=s.cap, jitter=0.0)
        outages[s.kind] = {
            "jitter": replay.outage(
                s, fleet.devices, OUTAGE_SECONDS, seed=seed, tick=steps.start(f"power outage: {s.label}")
            ),
            "none": replay.outage(
                quiet,
                fleet.devices,
                OUTAGE_SECONDS,
                seed=seed,
                tick=steps.start(f"power outage: {s.label}, no jitter"),
            ),
        }
    billed = [pm.bills(r, prices, workload) for r in results]
    study = Study(spec, prices, workload, results, outages, billed)
    if spec.sweeps:
        study.sweep = _sweep(spec, own, prices, workload, steps)
    steps.finish()
    study.seconds = time.monotonic() - started
    return study


def _sweep(
    spec: StudySpec, own: list[float], prices: dict[str, Any], workload: pm.Workload, steps: _Steps
) -> Sweep:
    """For each cap: the median claim-to-online of devices claimed within the claim window (claims
    uniform over it, and the fleet's own claim delays cut at it), and the fleet's bill at that cap."""
    seed, jitter = spec.seed, spec.jitter
    uniform = replay.uniform_claims(CLAIM_WINDOW_S, seed=seed)
    by_uniform = replay.claim_delay_sweep(
        CAP_SWEEP, uniform, seed=seed, jitter=jitter, tick=steps.start("cap sweep: claims uniform")
    )
    by_own = (
        replay.claim_delay_sweep(
            CAP_SWEEP, own, seed=seed, jitter=jitter, tick=steps.start("cap sweep: the fleet's claims")
        )
        if own
        else []
    )
    light = fm.Sampling(claimed=1000, never_budget=300_000, never_min=2, replicas=4, seed=seed)
    rows = []
    for i, u in enumerate(by_uniform):
        result = fm.simulate(
            spec.fleet,
            replay.Schedule("backoff", cap=u.cap, jitter=jitter),
            light,
            spec.service.write_interval,
            tick=steps.start(f"cap sweep: the fleet at cap {u.cap:g} s"),
        )
        rows.append(
            SweepRow(u.cap, u, by_own[i] if by_own else None, result, pm.bills(result, prices, workload))
        )
    return Sweep(rows, bool(own))


# --- as JSON ------------------------------------------------------------------------------------------------


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _schedule_figures(
    r: fm.FleetResult, outage: dict[str, replay.Outage], bill: dict[str, dict[str, float]]
) -> dict[str, Any]:
    return {
        "label": r.schedule.label,
        "cap_s": r.schedule.cap if r.schedule.kind == "backoff" else None,
        "polls_per_unclaimed_device": {
            "first_hour": r.first_hour,
            "first_day": r.first_day,
            "per_month_after": _finite(r.per_month_after),
        },
        "claim_to_online_s": {f"p{p}": _finite(r.percentile(p)) for p in (50, 90, 99)},
        "requests": r.requests,
        "mean_rps": r.mean_rps,
        "peak_hour_rps": r.peak_hour_rps,
        "last_day_rps": r.last_day_requests / 86400,
        "unclaimed_at_end": r.unclaimed_at_end,
        "outage": {
            name: {
                "first_second": o.first_second,
                "peak_after_first": o.peak_after_first,
                "peak_after_first_at_s": o.peak_after_first_at,
                "samples": o.samples,
            }
            for name, o in outage.items()
        },
        "bill_first_30_days": bill["first"],
        "bill_later_month": bill["later"],
        "sampled_never_claimed_timelines": r.sampled_never,
        "polls_simulated": r.polls_simulated,
    }


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
        "seconds": study.seconds,
    }
    if study.sweep is not None:
        out["cap_sweep"] = [
            {
                "cap_s": row.cap,
                "uniform_p50_s": row.uniform.p50,
                "uniform_p90_s": row.uniform.p90,
                "uniform_p99_s": row.uniform.p99,
                "fleet_p50_s": row.own.p50 if row.own else None,
                "polls_per_month_unclaimed": _finite(row.result.per_month_after),
                "bill_first_30_days": row.bill["first"]["total"],
                "bill_later_month": row.bill["later"]["total"],
                "meets_target": row.meets,
            }
            for row in study.sweep.rows
        ]
        out["cap_chosen"] = study.sweep.chosen
    return out
