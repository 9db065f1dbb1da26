"""Every failure becomes one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import errno
import os
import sys
from typing import Any, NoReturn

import click

EXIT_ERROR = 1
EXIT_USAGE = 2


class CliError(click.ClickException):
    """A failure the operator can act on; shown as `Error: <message>`."""

    exit_code = EXIT_ERROR


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _describe_aws(exc: BaseException) -> str | None:
    from botocore import exceptions as bx

    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
        return (
            "no AWS credentials found: configure a profile (AWS_PROFILE) or AWS_ACCESS_KEY_ID, "
            "or start the local cloud with `make run`"
        )
    if isinstance(exc, bx.NoRegionError):
        return "no AWS region configured: pass --region or set AWS_REGION"
    if isinstance(exc, bx.EndpointConnectionError | bx.ConnectTimeoutError | bx.ReadTimeoutError):
        hint = ""
        if os.environ.get("LATCHKEY_AWS_ENDPOINT_URL"):
            hint = " (is the local cloud running? start it with `make run`)"
        return f"cannot reach {getattr(exc, 'kwargs', {}).get('endpoint_url', 'AWS')}{hint}"
    if isinstance(exc, bx.ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "Error")
        message = error.get("Message", "")
        if code in (
            "ExpiredToken",
            "ExpiredTokenException",
            "UnrecognizedClientException",
            "InvalidClientTokenId",
            "InvalidSignatureException",
        ):
            return f"AWS rejected the credentials ({code}): refresh them and try again"
        if code in ("AccessDenied", "AccessDeniedException"):
            return f"AWS denied access during {exc.operation_name}: {message}"
        if code == "ResourceNotFoundException":
            return f"{exc.operation_name}: {message or code} (is the stack deployed, the environment right?)"
        return f"AWS {exc.operation_name} failed: {code}: {message}"
    if isinstance(exc, bx.BotoCoreError):
        return f"AWS: {exc}"
    return None


def describe(exc: BaseException) -> str:
    """A human sentence for an exception raised below the CLI (AWS, files, domain errors)."""
    from lambdas.errors import LatchkeyError

    if isinstance(exc, LatchkeyError):
        return exc.message
    aws = _describe_aws(exc)
    if aws is not None:
        return aws
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename}"
    if isinstance(exc, FileExistsError):
        return f"refusing to overwrite {exc.filename}"
    if isinstance(exc, OSError):
        if exc.errno == errno.ENOSPC:
            return f"no space left on device writing {exc.filename}"
        where = f" {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or exc.__class__.__name__}:{where}"
    return f"unexpected {exc.__class__.__name__}: {exc}"


def fail(message: str) -> NoReturn:
    raise CliError(_one_line(message))


def translate(exc: BaseException) -> CliError:
    return CliError(_one_line(describe(exc)))


class LatchkeyGroup(click.Group):
    """The root group: turns every exception of a subcommand into a one-line `Error:` (no traceback,
    unless `--debug`), and usage errors into one line too."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if ctx.find_root().params.get("debug"):
                raise
            raise translate(exc) from exc

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        run: Any = super().main  # click's overloads key on a literal standalone_mode
        if not standalone_mode:
            return run(args, prog_name, complete_var, False, windows_expand_args, **extra)
        try:
            result = run(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
            click.echo(f"Error: {_one_line(exc.format_message())}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except (click.Abort, EOFError, KeyboardInterrupt):
            click.echo("Aborted.", err=True)
            sys.exit(EXIT_ERROR)
        sys.exit(result if isinstance(result, int) else 0)
