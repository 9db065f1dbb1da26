"""What the commands share through click's context: the deployment, resolved once per invocation."""

from __future__ import annotations

import click

from cli.env import DEFAULT_STACK, EnvironmentProblem, resolve
from cli.errors import fail

_RESOLVED = "latchkey.environment"


def ensure_environment(ctx: click.Context) -> str:
    """Resolve the deployment (cli/env.py) from the root options, once; returns where it came from."""
    root = ctx.find_root()
    store = root.ensure_object(dict)
    if _RESOLVED not in store:
        try:
            resolved = resolve(root.params.get("stack") or DEFAULT_STACK, root.params.get("region"))
        except EnvironmentProblem as exc:
            fail(str(exc))
        store[_RESOLVED] = resolved.source
        if root.params.get("debug"):
            click.echo(f"environment: {resolved.source}", err=True)
    return str(store[_RESOLVED])
