"""`latchkey doctor`: report every inconsistency between the devices table and IoT."""

from __future__ import annotations

import click


@click.command()
@click.pass_context
def doctor(ctx: click.Context) -> None:
    """Check devices, certificates and things against each other; exit 1 if anything is wrong."""
    from cli.main import ensure_environment
    from lambdas.logic.invariants import check

    ensure_environment(ctx)
    problems = check()
    for problem in problems:
        click.echo(str(problem))
    if problems:
        click.echo(f"{len(problems)} problem(s) found.", err=True)
        ctx.exit(1)
    click.echo("No problems found.")
