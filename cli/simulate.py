"""`latchkey simulate`: what a fleet costs and how it behaves (the fleetsim package does the work).

Prints, side by side for the agent's schedule and the comparison schedules: polls per unclaimed device,
claim-to-online delay against the goals, the fleet's load and the peak after a regional power outage;
then the whole monthly bill per component (presence at the floor next to today's), the sweep of the
schedule's growth, and the reconnect storm against the throttle and the IoT quotas (fleetsim/prices.toml).
Method and error: docs/performance.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from cli import progress
from cli.errors import fail
from fleetsim.study import Service


def service_facts() -> Service:
    """DeviceApi memory, the device routes' stage throttle and the lastPollAt interval, from the service."""
    try:
        from lambdas import constants, definitions
    except ImportError:  # an installation without the service code: prices.toml's assumptions
        return Service()
    memory = next((f.memory_mb for f in definitions.FUNCTIONS if f.logical_id == "DeviceApi"), None)
    return Service(
        memory_mb=memory,
        throttle=definitions.DEVICE_ROUTE_THROTTLE,
        write_interval=float(constants.LAST_SEEN_WRITE_INTERVAL_SECONDS),
        poll_throttle=getattr(definitions, "DEVICE_POLL_THROTTLE", None),
    )


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
    type=click.Choice(["agent", "cap60", "cap3600", "fixed5", "ioto", "backoff"]),
    multiple=True,
    help="Schedules to compare (repeatable) [default: all]. agent is the agent's own code; cap60 and "
    "cap3600 the previous 5 s doubling with a 60 s (today's) or 1 h cap; fixed5 polls every 5 s; ioto "
    "waits 1 s + 0.25 s per attempt up to 3,660 s; backoff is the former name of agent.",
)
@click.option(
    "--cap", type=click.FloatRange(30, 86400), default=None, help="The agent's cap, s [default: the agent's]."
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
@click.option("--sweep/--no-sweep", default=True, show_default=True, help="Sweep the schedule's growth.")
@click.option(
    "--storm/--no-storm",
    default=True,
    show_default=True,
    help="Simulate the reconnect storm after an outage.",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write a PNG: the monthly bill per component (stacked), the outage and the horizon.",
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
    storm: bool,
    plot_path: Path | None,
    json_path: Path | None,
) -> None:
    """Polls per device, claim-to-online delay, the whole monthly bill and the reconnect storm."""
    from firmware import schedule
    from fleetsim import fleet, plot, prices, replay, report, study, units

    try:
        spread = units.parse_duration(power_on)
        claim = fleet.parse_claim(claim_spec, never_claimed)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    try:
        price_list = prices.load_prices()
    except (OSError, ValueError) as exc:
        fail(f"cannot read the price list {prices.PRICES_RESOURCE}: {exc}")
    spec = study.StudySpec(
        fleet=fleet.Fleet(devices, days, spread / units.HOUR, claim),
        schedules=tuple(dict.fromkeys("agent" if k == "backoff" else k for k in schedules))
        or replay.SCHEDULES,
        cap=schedule.DEFAULT_CAP if cap is None else cap,
        jitter=schedule.DEFAULT_JITTER if jitter is None else jitter,
        samples=samples,
        seed=seed,
        sweep=sweep,
        storm=storm,
        service=service_facts(),
    )
    for line in report.header(spec, price_list):
        click.echo(line)
    with progress.share_bar("Simulating") as update:
        result = study.run(spec, price_list, update)
    for line in report.lines(result):
        click.echo(line)
    if plot_path is not None:
        plot.save(result, plot_path)
        click.echo(f"Plot written to {plot_path}")
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(study.figures(result), indent=2))
        click.echo(f"Figures written to {json_path}")
    click.echo(f"Simulated in {result.seconds:.1f} s")
