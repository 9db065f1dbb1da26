"""`latchkey doctor`: report every inconsistency between the tables and IoT (lambdas/logic/invariants.py)."""

from __future__ import annotations

import click

from cli import progress
from cli.context import ensure_environment

DEFAULT_EXPIRY_DAYS = 30


def print_expiring(devices: list[dict], days: float) -> None:
    """The active devices whose certificate expires within `days` (a warning, not a problem)."""
    from lambdas.domain.device import Device
    from lambdas.logic import rotation

    soon = rotation.expiring([Device.from_item(d) for d in devices], days * 86400)
    if not soon:
        click.echo(f"No certificate expires within {days:g} days.")
        return
    click.echo(f"{len(soon)} certificate{'s' if len(soon) != 1 else ''} expire within {days:g} days:")
    for entry in soon:
        state = f", rotation {entry['rotation']}" if entry["rotation"] else ""
        click.echo(
            f"  {entry['deviceId']}: certificate {entry['certificateId'][:12]}... expires "
            f"{entry['expiresAt']} ({entry['daysLeft']:g} days{state}); `latchkey devices rotate "
            f"{entry['deviceId']}` renews it"
        )


@click.command()
@click.option(
    "--expiring-within",
    "expiring_within",
    type=click.FloatRange(min=0),
    default=DEFAULT_EXPIRY_DAYS,
    show_default=True,
    metavar="DAYS",
    help="List the certificates that expire within DAYS.",
)
@click.pass_context
def doctor(ctx: click.Context, expiring_within: float = DEFAULT_EXPIRY_DAYS) -> None:
    """Check devices, pending devices, the audit trail, things, certificates and policies against
    each other. Prints every problem; exit status 1 if there is any, 0 when all is consistent."""
    from lambdas.logic import invariants

    source = ensure_environment(ctx)
    # The scan reads every table and IoT listing in full: minutes for a big fleet, so say it is working.
    with progress.spinner(f"Reading the tables and IoT ({source})"):
        snapshot = invariants.inventory()
    with progress.spinner(f"Checking {snapshot.summary()}"):
        problems = invariants.check(snapshot)
    click.echo(f"Checked {snapshot.summary()} ({source}).")
    for problem in problems:
        click.echo(str(problem))
    print_expiring(snapshot.devices, expiring_within)
    if problems:
        click.echo(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found.", err=True)
        ctx.exit(1)
    click.echo("No problems found.")
