"""`latchkey simulate`: what polling costs a fleet, replaying the agent's schedule (firmware/simulate.py).

Prints, side by side for the agent's backoff and two comparison schedules: polls per unclaimed device,
claim-to-online delay, the fleet's load and DynamoDB capacity, the peak after a regional power outage,
and the device API's monthly bill at list prices (config/prices.toml); then the backoff cap sweep that
chose the agent's default cap. Method and error: docs/performance.md.
"""

from __future__ import annotations

import json
import math
import time
import tomllib
from pathlib import Path
from typing import Any

import click

from cli.errors import fail

PRICES_FILE = Path(__file__).resolve().parents[1] / "config" / "prices.toml"
CAP_SWEEP = (30.0, 40.0, 45.0, 50.0, 55.0, 60.0, 65.0, 70.0, 75.0, 80.0, 90.0, 120.0, 300.0, 900.0, 3600.0)
DELAY_TARGET_S = 30.0
CLAIM_WINDOW_S = 600.0  # "a device claimed within 10 minutes of power-on"
OUTAGE_SECONDS = 600


def load_prices(path: Path = PRICES_FILE) -> dict[str, Any]:
    return tomllib.loads(path.read_text())


def _service_facts() -> tuple[float | None, tuple[float, int] | None, float]:
    """DeviceApi memory, the device routes' stage throttle and the lastPollAt interval, from the service."""
    try:
        from lambdas import constants, definitions
    except ImportError:  # an installation without the service code
        return None, None, 300.0
    memory = next((f.memory_mb for f in definitions.FUNCTIONS if f.logical_id == "DeviceApi"), None)
    return memory, definitions.DEVICE_ROUTE_THROTTLE, float(constants.LAST_SEEN_WRITE_INTERVAL_SECONDS)


@click.command()
@click.option("--devices", type=click.IntRange(1, 1_000_000_000), default=1_000_000, show_default=True)
@click.option("--days", type=click.FloatRange(1, 365), default=30.0, show_default=True)
@click.option(
    "--power-on",
    "power_on",
    default="24h",
    show_default=True,
    help="Power-on times are spread uniformly over this span (e.g. 24h, 7d; 0 = all at once).",
)
@click.option(
    "--claim",
    "claim_spec",
    default="lognormal:30m:1.5",
    show_default=True,
    help="Delay from power-on to claim: lognormal:MEDIAN[:SIGMA], exponential:MEDIAN or uniform:MAX.",
)
@click.option(
    "--never-claimed",
    type=click.FloatRange(0, 1),
    default=0.1,
    show_default=True,
    help="Share of devices nobody claims within the horizon.",
)
@click.option(
    "--schedule",
    "schedules",
    type=click.Choice(["backoff", "fixed5", "linear"]),
    multiple=True,
    help="Schedules to compare (repeatable) [default: all three]. backoff is the agent's own code; "
    "fixed5 polls every 5 s; linear waits 5 s, 6 s, 7 s, ...",
)
@click.option(
    "--cap", type=click.FloatRange(5, 86400), default=None, help="Backoff cap, s [default: the agent's]."
)
@click.option(
    "--jitter",
    type=click.FloatRange(0, 0.99),
    default=None,
    help="Jitter of every schedule's waits [default: the agent's, 0.2].",
)
@click.option(
    "--samples",
    type=click.IntRange(100, 1_000_000),
    default=5000,
    show_default=True,
    help="Sampled devices that get claimed, per schedule.",
)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--sweep/--no-sweep", default=True, show_default=True, help="Sweep the backoff cap.")
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write a PNG: requests per second after a power outage, and over the horizon.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write every figure as JSON.",
)
def simulate(
    devices: int,
    days: float,
    power_on: str,
    claim_spec: str,
    never_claimed: float,
    schedules: tuple[str, ...],
    cap: float | None,
    jitter: float | None,
    samples: int,
    seed: int,
    sweep: bool,
    plot_path: Path | None,
    json_path: Path | None,
) -> None:
    """Polls per device, claim-to-online delay, outage peak and the device API's monthly bill."""
    from firmware import schedule
    from firmware import simulate as sim

    started = time.monotonic()
    try:
        spread = sim.parse_duration(power_on)
        claim = sim.parse_claim(claim_spec, never_claimed)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    try:
        prices = load_prices()
    except (OSError, ValueError) as exc:
        fail(f"cannot read {PRICES_FILE}: {exc}")
    memory, throttle, write_interval = _service_facts()
    workload = sim.Workload.from_prices(prices, memory)
    cap = schedule.DEFAULT_CAP if cap is None else cap
    jitter = schedule.DEFAULT_JITTER if jitter is None else jitter
    kinds = schedules or sim.SCHEDULES
    fleet = sim.Fleet(devices, days, spread / sim.HOUR, claim)
    sampling = sim.Sampling(claimed=samples, seed=seed)
    specs = [sim.Schedule(kind, cap=cap, jitter=jitter) for kind in kinds]

    click.echo(f"Fleet simulation: {devices:,} devices over {days:g} days")
    click.echo(
        f"  power-on uniform over the first {sim._duration(spread) if spread else '0 s (all at once)'}; "
        f"claim delay {claim.describe()}"
    )
    click.echo(
        f"  per schedule: {samples:,} sampled claimed devices + never-claimed timelines x {sampling.replicas} "
        "power-on times, scaled to the fleet; 'backoff' runs firmware.schedule, the agent's own code"
    )
    click.echo(f"  prices: {prices['source']}, {prices['date']} (to be re-checked)\n")

    results = [sim.simulate(fleet, spec, sampling, write_interval) for spec in specs]
    outages = {
        spec.kind: {
            "jitter": sim.outage(spec, devices, OUTAGE_SECONDS, seed=seed),
            "none": sim.outage(
                sim.Schedule(spec.kind, cap=spec.cap, jitter=0.0), devices, OUTAGE_SECONDS, seed=seed
            ),
        }
        for spec in specs
    }
    billed = [sim.bills(r, prices, workload) for r in results]
    _print_table(results, outages, billed, jitter)

    figures: dict[str, Any] = {
        "fleet": {
            "devices": devices,
            "days": days,
            "power_on_spread_s": spread,
            "claim": claim.describe(),
            "sampled_claimed": samples,
            "seed": seed,
        },
        "prices": {"source": prices["source"], "date": prices["date"]},
        "workload": workload.__dict__,
        "schedules": {
            r.schedule.kind: _figures(r, outages[r.schedule.kind], b)
            for r, b in zip(results, billed, strict=True)
        },
    }

    chosen = None
    if sweep and "backoff" in kinds:
        chosen, figures["cap_sweep"] = _sweep(fleet, seed, jitter, prices, workload, write_interval)
        figures["cap_chosen"] = chosen
        click.echo(
            f"Cheapest cap with a median claim-to-online under {DELAY_TARGET_S:g} s: "
            + (f"{chosen:g} s" if chosen else "none in the sweep")
            + f" (the agent's default: {schedule.DEFAULT_CAP:g} s)\n"
        )

    if throttle is not None:
        rate, burst = throttle
        for r in results:
            if r.schedule.kind == "backoff":
                click.echo(
                    f"Device routes' stage throttle (lambdas/definitions.py): {rate:g} req/s, burst {burst}. "
                    f"This fleet on the agent's schedule needs {r.mean_rps:,.0f} req/s on average over "
                    f"its first {days:g} days, {r.peak_hour_rps:,.0f} in its busiest hour and "
                    f"{r.last_day_requests / sim.DAY:,.0f} on its last day: "
                    + ("within it." if r.peak_hour_rps <= rate else "above it; the excess is answered 429.")
                )
        click.echo()

    if plot_path is not None:
        _plot(plot_path, results, outages)
        click.echo(f"Plot written to {plot_path}")
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(figures, indent=2, default=_json_default))
        click.echo(f"Figures written to {json_path}")
    click.echo(f"Simulated in {time.monotonic() - started:.1f} s")


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def _figures(r: Any, outage: dict[str, Any], bill: dict[str, dict[str, float]]) -> dict[str, Any]:
    return {
        "label": r.schedule.label,
        "cap_s": r.schedule.cap if r.schedule.kind == "backoff" else None,
        "polls_per_unclaimed_device": {
            "first_hour": r.first_hour,
            "first_day": r.first_day,
            "per_month_after": r.per_month_after,
        },
        "claim_to_online_s": {"p50": r.percentile(50), "p90": r.percentile(90), "p99": r.percentile(99)},
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


def _print_table(results: list[Any], outages: dict[str, Any], billed: list[Any], jitter: float) -> None:
    width = 20
    names = [r.schedule.label for r in results]
    days = results[0].fleet.days

    def row(label: str, values: list[str]) -> None:
        click.echo(f"  {label:<40}" + "".join(f"{v:>{width}}" for v in values))

    def num(value: float, digits: int = 0) -> str:
        return "n/a" if value != value else f"{value:,.{digits}f}"

    click.echo(f"  {'':<40}" + "".join(f"{n:>{width}}" for n in names))
    click.echo("Polls of a device nobody claims")
    row("in its first hour", [num(r.first_hour) for r in results])
    row("in its first day", [num(r.first_day) for r in results])
    row("per month after its first day", [num(r.per_month_after) for r in results])
    click.echo("Claim to online (claim -> the next poll), s")
    for pct in (50, 90, 99):
        row(f"p{pct}", [num(r.percentile(pct), 1) for r in results])
    click.echo(f"Fleet load over the {days:g} days")
    row("device API requests, millions", [num(r.requests / 1e6, 1) for r in results])
    row("average req/s", [num(r.mean_rps) for r in results])
    row("busiest hour, req/s", [num(r.peak_hour_rps) for r in results])
    row("last day, req/s", [num(r.last_day_requests / 86400) for r in results])
    row("still unclaimed at the end", [f"{r.unclaimed_at_end:.1%}" for r in results])
    click.echo("DynamoDB, on-demand (1 read per poll, lastPollAt write <= 1 per 5 min)")
    row("reads/s, average (RCU = reads/s x 0.5)", [num(r.mean_rps) for r in results])
    row("reads/s, busiest hour", [num(r.peak_hour_rps) for r in results])
    row("read request units / 30 days, millions", [num(b["first"]["read_units"] / 1e6, 1) for b in billed])
    row("write request units / 30 days, millions", [num(b["first"]["write_units"] / 1e6, 1) for b in billed])
    click.echo("Power outage: the whole fleet, none claimed, reboots at t=0, req/s")
    for name, text in (("jitter", f"jitter ±{jitter:.0%}"), ("none", "no jitter")):
        row(f"first second, {text}", [num(outages[r.schedule.kind][name].first_second) for r in results])
        later = [outages[r.schedule.kind][name] for r in results]
        row(
            f"busiest later second, {text}",
            [f"{num(o.peak_after_first)} (t={o.peak_after_first_at}s)" for o in later],
        )
    row(
        f"first second, the fleet at day {days:g}",
        [
            f"{num(outages[r.schedule.kind]['jitter'].first_second * r.unclaimed_at_end)} ({r.unclaimed_at_end:.0%})"
            for r in results
        ],
    )
    click.echo("  (claimed devices with saved credentials reconnect to IoT Core without polling)")
    click.echo("Monthly bill of the device API, $ (list prices)")
    row("API Gateway (HTTP API)", [num(b["first"]["api_gateway"]) for b in billed])
    row("Lambda (arm64, requests + GB-s)", [num(b["first"]["lambda"]) for b in billed])
    row("DynamoDB (reads + writes)", [num(b["first"]["dynamodb"]) for b in billed])
    row(f"total, first {days:g} days scaled to 30", [num(b["first"]["total"]) for b in billed])
    row("total, a later month (last day's rate)", [num(b["later"]["total"]) for b in billed])
    row("+ CloudWatch Logs and X-Ray, first month", [num(b["first"]["observability"]) for b in billed])
    click.echo()


def _sweep(
    fleet: Any, seed: int, jitter: float, prices: dict[str, Any], workload: Any, write_interval: float
) -> tuple[float | None, list[dict[str, Any]]]:
    """The cheapest cap whose median claim-to-online stays under the target for devices claimed within
    the first 10 minutes, whether those claims are spread uniformly over the window or follow the
    fleet's own claim-delay distribution cut at 10 minutes."""
    from firmware import simulate as sim

    window = f"{CLAIM_WINDOW_S / 60:g} min"
    uniform = sim.uniform_claims(CLAIM_WINDOW_S, seed=seed)
    own = sim.truncated_claims(fleet.claim, CLAIM_WINDOW_S, seed=seed)
    click.echo(
        f"Backoff cap sweep: median claim-to-online (claim -> the next poll) of devices claimed within {window} "
        f"of power-on, target < {DELAY_TARGET_S:g} s,"
    )
    click.echo(
        f"  U: claims uniform over the {window}; F: the fleet's claim delays ({fleet.claim.kind}) cut at {window}"
        + ("" if own else " (too rare: skipped)")
    )
    click.echo(
        f"  {'cap s':>7} {'U p50':>7} {'U p90':>7} {'U p99':>7} {'F p50':>7} {'polls/month':>12} "
        f"{'$ first 30 d':>13} {'$ later month':>14}   (polls/month: a device nobody claims)"
    )
    by_uniform = sim.claim_delay_sweep(CAP_SWEEP, uniform, seed=seed, jitter=jitter)
    by_fleet = sim.claim_delay_sweep(CAP_SWEEP, own, seed=seed, jitter=jitter) if own else []
    light = sim.Sampling(claimed=1000, never_budget=300_000, never_min=2, replicas=4, seed=seed)
    rows, chosen, best_cost = [], None, math.inf
    for i, u in enumerate(by_uniform):
        f = by_fleet[i] if by_fleet else None
        result = sim.simulate(fleet, sim.Schedule("backoff", cap=u.cap, jitter=jitter), light, write_interval)
        bill = sim.bills(result, prices, workload)
        meets = u.p50 < DELAY_TARGET_S and (f is None or f.p50 < DELAY_TARGET_S)
        if meets and bill["first"]["total"] < best_cost:
            chosen, best_cost = u.cap, bill["first"]["total"]
        click.echo(
            f"  {u.cap:7.0f} {u.p50:7.1f} {u.p90:7.1f} {u.p99:7.1f} {f.p50 if f else math.nan:7.1f} "
            f"{result.per_month_after:12,.0f} {bill['first']['total']:13,.0f} {bill['later']['total']:14,.0f}"
            + ("   meets the target" if meets else "")
        )
        rows.append(
            {
                "cap_s": u.cap,
                "uniform_p50_s": u.p50,
                "uniform_p90_s": u.p90,
                "uniform_p99_s": u.p99,
                "fleet_p50_s": f.p50 if f else None,
                "polls_per_month_unclaimed": result.per_month_after,
                "bill_first_30_days": bill["first"]["total"],
                "bill_later_month": bill["later"]["total"],
                "meets_target": meets,
            }
        )
    return chosen, rows


def _plot(path: Path, results: list[Any], outages: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 8))
    devices = results[0].fleet.devices
    for r in results:
        jittered = outages[r.schedule.kind]["jitter"]
        series = [max(v, 1.0) for v in jittered.per_second]
        top.plot(range(len(series)), series, label=r.schedule.label, linewidth=0.9)
    top.set_yscale("log")
    top.set_ylim(bottom=1)
    top.set_xlabel("seconds after the power comes back")
    top.set_ylabel("requests per second")
    top.set_title(
        f"After a regional power outage: {devices:,} unclaimed devices reboot at once (jittered waits)"
    )
    top.legend()
    for r in results:
        days = [h / 24 for h in range(len(r.hourly))]
        bottom.plot(days, [max(v / 3600, 0.01) for v in r.hourly], label=r.schedule.label, linewidth=1.0)
    bottom.set_yscale("log")
    bottom.set_xlabel("days after the first power-on")
    bottom.set_ylabel("requests per second (hourly mean)")
    bottom.set_title(f"The fleet over {results[0].fleet.days:g} days: power-on and claims spread out")
    bottom.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
