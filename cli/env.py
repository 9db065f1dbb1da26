"""Where the CLI finds the Latchkey deployment it operates on: one function, `resolve()`.

1. The `LATCHKEY_*` table variables are already set (the local cloud, tests, a shell that exported them):
   use the environment as it is.
2. Else `.run/cloud.env.json` exists (written by `make run`: the functions' environment as a JSON object
   of strings), in the current directory or the repository: load it into `os.environ`.
3. Else read the outputs of the CloudFormation stack `--stack` (default `LatchkeyStack`) with the
   operator's own AWS credentials and map them onto the same variables.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lambdas import constants as c
from lambdas import definitions

DEFAULT_STACK = "LatchkeyStack"
LOCAL_ENV_FILE = Path(".run") / "cloud.env.json"
REPO_ROOT = Path(__file__).resolve().parent.parent
# Not function settings, so not in lambdas.constants: what the CLI writes into device files and labels.
ENV_API_URL = "LATCHKEY_API_URL"
ENV_WEB_URL = "LATCHKEY_WEB_URL"
TABLE_VARS: tuple[str, ...] = tuple(t.env_var for t in definitions.TABLES)

# CloudFormation output name -> environment variable. The stack must export these (docs/cli.md).
STACK_OUTPUTS: dict[str, str] = {
    "DevicesTableName": c.ENV_DEVICES_TABLE,
    "PendingTableName": c.ENV_PENDING_TABLE,
    "AuditEventsTableName": c.ENV_AUDIT_TABLE,
    "RateLimitsTableName": c.ENV_RATE_LIMITS_TABLE,
    "GrantsTableName": c.ENV_GRANTS_TABLE,
    "SecretsArn": c.ENV_SECRETS_ARN,
    "UserPoolId": c.ENV_USER_POOL_ID,
    "UserPoolClientId": c.ENV_USER_POOL_CLIENT_ID,
    "CertMode": c.ENV_CERT_MODE,
    "IotPolicyName": c.ENV_IOT_POLICY_NAME,  # stack-scoped names (infrastructure/iot.py)
    "ThingTypeName": c.ENV_THING_TYPE_NAME,
    "ApiUrl": ENV_API_URL,
    "WebUrl": ENV_WEB_URL,
}
REQUIRED_OUTPUTS = ("DevicesTableName", "AuditEventsTableName", "SecretsArn")
# Would send boto3 to a real account (or fail) while the local cloud's dummy credentials are in use.
_LOCAL_UNSET = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN")


class EnvironmentProblem(Exception):
    """The deployment cannot be found; the message says what to do."""


@dataclass
class Resolved:
    source: str  # "environment", "local cloud (<file>)" or "stack <name> (<region>)"
    variables: dict[str, str] = field(default_factory=dict)  # what was put into os.environ


def local_env_file(search: tuple[Path, ...] | None = None) -> Path | None:
    for base in search if search is not None else (Path.cwd(), REPO_ROOT):
        candidate = base / LOCAL_ENV_FILE
        if candidate.is_file():
            return candidate
    return None


def _load_local(path: Path, environ: Any) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EnvironmentProblem(
            f"{path} is not readable JSON ({exc.__class__.__name__}); restart `make run`"
        ) from exc
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise EnvironmentProblem(f"{path} must be a JSON object of environment variables")
    variables = {k: str(v) for k, v in data.items() if v is not None}
    if not all(variables.get(v) for v in TABLE_VARS):
        raise EnvironmentProblem(f"{path} lacks the LATCHKEY_* table variables; restart `make run`")
    if "AWS_ACCESS_KEY_ID" in variables:
        for name in _LOCAL_UNSET:
            if name not in variables:
                environ.pop(name, None)
    environ.update(variables)
    return variables


def stack_outputs(stack: str, region: str | None = None) -> tuple[dict[str, str], str]:
    """The stack's outputs (name -> value) and the region they came from (DescribeStacks)."""
    import boto3
    from botocore.exceptions import ClientError

    session = boto3.session.Session(region_name=region)
    cfn = session.client("cloudformation")
    try:
        answer = cfn.describe_stacks(StackName=stack)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ValidationError":
            raise EnvironmentProblem(
                f"no CloudFormation stack {stack} in {session.region_name}: deploy it (`make deploy`), "
                "pass --stack/--region, or start the local cloud (`make run`)"
            ) from exc
        raise
    stacks = answer.get("Stacks", [])
    if not stacks:
        raise EnvironmentProblem(f"no CloudFormation stack {stack} in {session.region_name}")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    return outputs, str(session.region_name)


def _load_stack(stack: str, region: str | None, environ: Any) -> tuple[dict[str, str], str]:
    outputs, used_region = stack_outputs(stack, region)
    missing = [name for name in REQUIRED_OUTPUTS if not outputs.get(name)]
    if missing:
        raise EnvironmentProblem(f"stack {stack} lacks the outputs {', '.join(missing)}; redeploy it")
    variables = {var: outputs[name] for name, var in STACK_OUTPUTS.items() if outputs.get(name)}
    variables.setdefault(c.ENV_CERT_MODE, "aws")
    variables["AWS_DEFAULT_REGION"] = used_region
    variables["AWS_REGION"] = used_region
    environ.update(variables)
    return variables, used_region


def resolve(
    stack: str = DEFAULT_STACK,
    region: str | None = None,
    *,
    environ: Any = None,
    search: tuple[Path, ...] | None = None,
) -> Resolved:
    """Make `os.environ` (or `environ`) describe the deployment to operate on; see the module docstring.

    Raises EnvironmentProblem (and botocore errors for credentials/network) when nothing is found.
    """
    from lambdas import aws_clients
    from lambdas.adapters import secrets

    env = os.environ if environ is None else environ
    if region:
        env["AWS_DEFAULT_REGION"] = region
        env["AWS_REGION"] = region
    try:
        if all(env.get(v) for v in TABLE_VARS):
            return Resolved("environment")
        path = local_env_file(search)
        if path is not None:
            return Resolved(f"local cloud ({path})", _load_local(path, env))
        variables, used_region = _load_stack(stack, region, env)
        return Resolved(f"stack {stack} ({used_region})", variables)
    finally:
        # Clients and the secret cached under a previous environment must not be reused.
        aws_clients.reset()
        secrets.reset()
