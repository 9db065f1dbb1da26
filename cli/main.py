"""`latchkey`: the operator's console script (entry point `cli.main:main`).

Command groups register on `cli` (`cli.add_command(...)` in this module, one module per group under
`cli/`): `devices`, `simulate`, `doctor`. Nothing imports this module but the entry point: what the
commands share lives in `cli/context.py`.
"""

from __future__ import annotations

import click

from cli.devices import devices
from cli.doctor import doctor
from cli.env import DEFAULT_STACK
from cli.errors import LatchkeyGroup
from cli.simulate import simulate


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("latchkey")
    except PackageNotFoundError:
        return "(source checkout)"


@click.group(cls=LatchkeyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--stack",
    default=DEFAULT_STACK,
    show_default=True,
    envvar="LATCHKEY_STACK",
    help="CloudFormation stack to read table names etc. from, when neither the LATCHKEY_* "
    "variables nor the local cloud's .run/cloud.env.json are there.",
)
@click.option("--region", envvar="LATCHKEY_REGION", help="AWS region of the stack [default: boto3's].")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(version=_version(), prog_name="latchkey", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, stack: str, region: str | None, debug: bool) -> None:
    """Latchkey: mint, inspect and revoke device identities; check a deployment; simulate a fleet."""
    ctx.ensure_object(dict)


cli.add_command(devices)
cli.add_command(simulate)
cli.add_command(doctor)


def main() -> None:
    cli(prog_name="latchkey")


if __name__ == "__main__":
    main()
