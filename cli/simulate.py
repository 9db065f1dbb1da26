"""`latchkey simulate`: what polling costs a fleet, replaying the agent's schedule (bench/fleet.py)."""

from __future__ import annotations

from pathlib import Path

import click

from cli.errors import fail

CAP_SWEEP = (30.0, 45.0, 60.0, 120.0, 300.0, 900.0, 3600.0)
DELAY_TARGET_S = 30.0


@click.command()
@click.option("--devices", type=click.IntRange(1, 100_000_000), default=1_000_000, show_default=True)
@click.option("--days", type=click.FloatRange(1, 365), default=30.0, show_default=True)
@click.option(
    "--power-on-hours",
    type=click.FloatRange(0, 24 * 365),
    default=24.0,
    show_default=True,
    help="Power-on times are spread uniformly over this many hours.",
)
@click.option(
    "--claim-median-minutes",
    type=click.FloatRange(0.1, 1e6),
    default=30.0,
    show_default=True,
    help="Claim delay after power-on: lognormal with this median.",
)
@click.option("--never-claimed", type=click.FloatRange(0, 1), default=0.1, show_default=True)
@click.option(
    "--cap", type=click.FloatRange(5, 86400), default=None, help="Backoff cap [default: the agent's]."
)
@click.option("--samples", type=click.IntRange(100, 200_000), default=5000, show_default=True)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write a PNG of requests per second after a fleet-wide power outage.",
)
def simulate(
    devices: int,
    days: float,
    power_on_hours: float,
    claim_median_minutes: float,
    never_claimed: float,
    cap: float | None,
    samples: int,
    plot_path: Path | None,
) -> None:
    """Polls per device, claim-to-online delay, outage peak and the device API's monthly bill."""
    from bench import fleet as sim
    from firmware import schedule

    cap = schedule.DEFAULT_CAP if cap is None else cap
    shape = sim.Fleet(devices, days, power_on_hours, claim_median_minutes, 1.5, never_claimed, samples)
    try:
        prices = sim.load_prices()
    except (OSError, ValueError) as exc:
        fail(f"cannot read {sim.PRICES_FILE}: {exc}")
    click.echo(
        f"Fleet of {devices:,} devices over {days:g} days ({samples:,} sampled; the agent's own "
        f"schedule code for 'backoff'). Prices: {prices['source']}, {prices['date']}.\n"
    )
    rows = [sim.simulate(shape, "backoff", cap), sim.simulate(shape, "fixed5"), sim.simulate(shape, "linear")]
    header = f"{'schedule':24} {'1st hour':>9} {'1st day':>9} {'/month':>9} {'p50 s':>7} {'p90 s':>7} {'p99 s':>8} {'$/month':>10}"
    click.echo("Polls per device (while unclaimed), claim-to-online delay, device API bill")
    click.echo(header)
    for row in rows:
        bill = sim.monthly_cost(row.polls_total * 30 / days, prices)["total"]
        click.echo(
            f"{row.name:24} {row.polls_first_hour:9.1f} {row.polls_first_day:9.1f} "
            f"{row.polls_per_month_after:9.0f} {row.percentile(50):7.1f} {row.percentile(90):7.1f} "
            f"{row.percentile(99):8.1f} {bill:10,.0f}"
        )

    click.echo(
        f"\nBackoff cap sweep: devices claimed within 10 minutes of power-on (target median < {DELAY_TARGET_S:g} s)"
    )
    click.echo(f"{'cap s':>7} {'p50 s':>7} {'p90 s':>7} {'/month unclaimed':>17} {'$/month':>10}")
    quick = sim.Fleet(devices, days, power_on_hours, 10 / 2.5, 0.5, 0.0, min(samples, 3000))
    # The bill of small caps is dominated by unclaimed devices at the cap: fewer samples suffice.
    billing = sim.Fleet(devices, days, power_on_hours, claim_median_minutes, 1.5, never_claimed, 600)
    best = None
    for swept in CAP_SWEEP:
        row = sim.simulate(quick, "backoff", swept)  # claims concentrated in the first 10 minutes
        billed = sim.simulate(billing, "backoff", swept)
        bill = sim.monthly_cost(billed.polls_total * 30 / days, prices)["total"]
        ok = row.percentile(50) < DELAY_TARGET_S
        if ok:
            best = swept
        click.echo(
            f"{swept:7.0f} {row.percentile(50):7.1f} {row.percentile(90):7.1f} "
            f"{billed.polls_per_month_after:17.0f} {bill:10,.0f}{'  meets target' if ok else ''}"
        )
    click.echo(
        f"Largest (cheapest) cap meeting the target: {best:g} s" if best else "No cap in the sweep meets it."
    )

    click.echo("\nRegional power outage: the whole fleet reboots at once and polls on the agent's schedule")
    for jitter in (schedule.DEFAULT_JITTER, 0.0):
        peak = sim.outage_peak(devices, jitter, samples=min(samples, 5000))
        click.echo(
            f"  jitter {jitter:4.0%}: first second {peak['first_second']:,.0f} req/s, "
            f"busiest second after it {peak['peak_after_first']:,.0f} req/s"
        )
    if plot_path is not None:
        _plot(plot_path, devices, min(samples, 5000))
        click.echo(f"\nPlot written to {plot_path}")


def _plot(path: Path, devices: int, samples: int) -> None:
    import random

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench import fleet as sim
    from firmware import schedule

    seconds = 1800
    rng = random.Random(7)
    series = {
        "backoff ±20 % (agent)": [0.0] * (seconds + 1),
        "every 5 s": [0.0] * (seconds + 1),
        "+1 s per attempt": [0.0] * (seconds + 1),
    }
    for _ in range(samples):
        for t in sim.backoff_polls(seconds, rng, schedule.DEFAULT_CAP):
            if t <= seconds:
                series["backoff ±20 % (agent)"][int(t)] += devices / samples
    for t in range(0, seconds + 1, 5):
        series["every 5 s"][t] += devices
    t, n = 0.0, 0
    while t <= seconds:
        series["+1 s per attempt"][int(t)] += devices
        t += 5 + n if n else 5
        n += 1
    width = 10  # average over 10 s bins: per-second lines of synchronized schedules are unreadable
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for name, values in series.items():
        averaged = [max(sum(values[i : i + width]) / width, 1) for i in range(0, seconds, width)]
        ax.plot(range(0, seconds, width), averaged, label=name, linewidth=1.2, drawstyle="steps-post")
    ax.set_yscale("log")
    ax.set_xlabel("seconds after the fleet-wide power-on")
    ax.set_ylabel("requests per second (10 s average)")
    ax.set_title(f"Device API load after a power outage, {devices:,} unclaimed devices")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
