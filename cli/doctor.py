"""`latchkey doctor`: report every inconsistency between the tables and IoT (lambdas/logic/invariants.py),
and with `--repair` fix what an interrupted change left half-done (lambdas/logic/repair.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from cli import progress
from cli.context import ensure_environment

if TYPE_CHECKING:
    from lambdas.logic.invariants import Inventory, Problem


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


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
    "--repair",
    is_flag=True,
    help="Fix what can be fixed safely (orphan things and certificates, a revoked device's ACTIVE "
    "certificate, a lost attachment), then check again.",
)
@click.option("--dry-run", is_flag=True, help="Say what --repair would do, and change nothing.")
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
def doctor(
    ctx: click.Context, repair: bool, dry_run: bool, expiring_within: float = DEFAULT_EXPIRY_DAYS
) -> None:
    """Check devices, pending devices, the audit trail, things, certificates and policies against
    each other. Prints every problem; exit status 1 if there is any (with --repair: any left after
    repairing), 0 when all is consistent."""
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
    if not problems:
        click.echo("No problems found.")
        return
    click.echo(f"{_plural(len(problems), 'problem')} found.", err=True)
    if dry_run:
        _dry_run(snapshot, problems)
    elif repair and _repair(snapshot, problems, source):
        return
    ctx.exit(1)


def _dry_run(snapshot: Inventory, problems: list[Problem]) -> None:
    from lambdas.logic import repair

    fixes = repair.plan(snapshot, problems)
    click.echo("Dry run, nothing changed:")
    for fix in fixes:
        verb = "would fix  " if fix.apply is not None else "would leave"
        click.echo(f"  {verb} {fix.problem.subject}: {fix.description} [{fix.problem.kind}]")
    doable = sum(1 for fix in fixes if fix.apply is not None)
    click.echo(f"{doable} of {_plural(len(fixes), 'problem')} would be repaired.")


def _repair(snapshot: Inventory, problems: list[Problem], source: str) -> bool:
    """Fix, report, check again; True when nothing is left."""
    from lambdas.logic import invariants, repair

    with progress.spinner(f"Repairing {_plural(len(problems), 'problem')}"):
        outcomes = repair.repair(problems, snapshot=snapshot)
    fixed = [o for o in outcomes if o.done]
    failed = [o for o in outcomes if not o.done and o.error]
    left = [o for o in outcomes if not o.done and not o.error]
    for title, group in (("Fixed", fixed), ("Failed", failed), ("Left for a person", left)):
        if not group:
            continue
        click.echo(f"{title}:")
        for o in group:
            why = f" ({o.error})" if o.error else ""
            click.echo(f"  {o.problem.subject}: {o.description}{why} [{o.problem.kind}]")
    with progress.spinner("Checking again"):
        remaining = invariants.check()
    if not remaining:
        click.echo(f"Checked again ({source}): no problems left.")
        return True
    click.echo(f"Checked again ({source}): {_plural(len(remaining), 'problem')} left:")
    for problem in remaining:
        click.echo(f"  {problem}")
    if failed:
        click.echo(
            "A failed repair may be IoT still finishing a detach: run `latchkey doctor --repair` again."
        )
    return False
