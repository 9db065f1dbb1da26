"""`latchkey doctor`: report every inconsistency between the tables and IoT (lambdas/logic/invariants.py)."""

from __future__ import annotations

import click

from cli import progress
from cli.context import ensure_environment


@click.command()
@click.pass_context
def doctor(ctx: click.Context) -> None:
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
    if problems:
        click.echo(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found.", err=True)
        ctx.exit(1)
    click.echo("No problems found.")
