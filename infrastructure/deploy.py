"""`make deploy`: bootstrap the account and region of your credentials when they need it, then deploy.

CDK publishes the function code and the page to the bootstrap stack (`CDKToolkit`: an S3 bucket, roles),
and the synthesized template refuses to deploy without it (its `CheckBootstrapVersion` rule reads the SSM
parameter `/cdk-bootstrap/<qualifier>/version`). A fresh account and region have neither, so this reads
that parameter first and runs `cdk bootstrap` when it is missing or too old. Anything it cannot fix
itself ends in one sentence naming the command to run.

    python -m infrastructure.deploy [cdk deploy arguments...]   # e.g. -c alarmEmail=ops@example.org
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from infrastructure.settings import REPO_ROOT

CDK = ["npx", "--no-install", "cdk", "--no-notices"]
DEFAULT_QUALIFIER = "hnb659fds"  # CDK's default bootstrap qualifier
# The oldest bootstrap stack the synthesized template accepts (its CheckBootstrapVersion rule).
MIN_BOOTSTRAP_VERSION = 6


class DeployProblem(Exception):
    """Deploying cannot go on; the message says what to do."""


@dataclass(frozen=True)
class Target:
    account: str
    region: str

    @property
    def environment(self) -> str:
        return f"aws://{self.account}/{self.region}"


def qualifier(context: dict[str, Any] | None = None) -> str:
    if context is None:
        context = json.loads((REPO_ROOT / "cdk.json").read_text()).get("context", {})
    return str(context.get("@aws-cdk/core:bootstrapQualifier") or DEFAULT_QUALIFIER)


def bootstrap_command(target: Target) -> list[str]:
    return [*CDK, "bootstrap", target.environment]


def resolve_target(session: Any) -> Target:
    """The account and region `cdk deploy` would use: those of the caller's credentials and profile."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    region = session.region_name
    if not region:
        raise DeployProblem("No AWS region: set AWS_REGION (or a region in your AWS profile) and run again.")
    try:
        account = session.client("sts", region_name=region).get_caller_identity()["Account"]
    except NoCredentialsError:
        raise DeployProblem(
            "No AWS credentials: set AWS_PROFILE (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and run again."
        ) from None
    except (BotoCoreError, ClientError) as exc:
        raise DeployProblem(f"Your AWS credentials do not work ({exc}); fix them and run again.") from None
    return Target(str(account), str(region))


def bootstrap_version(session: Any, target: Target, qualifier_: str) -> int | None:
    """The bootstrap stack's version in the target, or None if the account/region is not bootstrapped."""
    from botocore.exceptions import ClientError

    ssm = session.client("ssm", region_name=target.region)
    try:
        value = ssm.get_parameter(Name=f"/cdk-bootstrap/{qualifier_}/version")["Parameter"]["Value"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ParameterNotFound":
            return None
        if exc.response.get("Error", {}).get("Code") in ("AccessDeniedException", "AccessDenied"):
            # Not allowed to read it: bootstrapping is the only way to find out, and it is idempotent.
            return None
        raise
    try:
        return int(value)
    except ValueError:
        return None


def needs_bootstrap(version: int | None) -> bool:
    return version is None or version < MIN_BOOTSTRAP_VERSION


Runner = Callable[[Sequence[str]], int]


def _run(command: Sequence[str]) -> int:
    return subprocess.run(list(command), cwd=REPO_ROOT, check=False).returncode


def deploy(session: Any, cdk_args: Sequence[str], run: Runner = _run, out: Any = sys.stdout) -> int:
    target = resolve_target(session)
    version = bootstrap_version(session, target, qualifier())
    if needs_bootstrap(version):
        why = (
            "not bootstrapped"
            if version is None
            else f"bootstrap version {version} < {MIN_BOOTSTRAP_VERSION}"
        )
        command = bootstrap_command(target)
        print(
            f"==> {target.environment} is {why} for CDK: running `{' '.join(command)}`", file=out, flush=True
        )
        if run(command) != 0:
            raise DeployProblem(
                f"Bootstrapping {target.environment} failed. Run it yourself with credentials that may create "
                f"the CDKToolkit stack (IAM roles, an S3 bucket): {' '.join(command)}"
            )
    else:
        print(f"==> {target.environment}: CDK bootstrap version {version}", file=out, flush=True)
    print(f"==> Deploying to {target.environment}", file=out, flush=True)
    return run([*CDK, "deploy", "--require-approval", "broadening", *cdk_args])


def main(argv: Sequence[str] | None = None) -> int:
    import boto3

    try:
        return deploy(boto3.session.Session(), list(sys.argv[1:] if argv is None else argv))
    except DeployProblem as problem:
        print(f"make deploy: {problem}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
