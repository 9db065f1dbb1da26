"""`make deploy` in a fresh account: it finds out whether CDK is bootstrapped and bootstraps when needed.

The account is moto's (STS and SSM as CDK's bootstrap stack leaves them); the `cdk` commands are recorded
instead of run - they would need a real account.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator, Sequence

import boto3
import pytest

from infrastructure import deploy
from infrastructure.settings import REPO_ROOT

REGION = "eu-west-1"


@pytest.fixture
def session(monkeypatch: pytest.MonkeyPatch) -> Iterator[boto3.session.Session]:
    from moto import mock_aws

    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield boto3.session.Session(region_name=REGION)


class Recorder:
    def __init__(self, results: dict[str, int] | None = None) -> None:
        self.commands: list[list[str]] = []
        self.results = results or {}

    def __call__(self, command: Sequence[str]) -> int:
        self.commands.append(list(command))
        return self.results.get(command[4], 0)  # after "npx --no-install cdk --no-notices"


def _bootstrapped(session: boto3.session.Session, version: str) -> None:
    session.client("ssm").put_parameter(
        Name=f"/cdk-bootstrap/{deploy.DEFAULT_QUALIFIER}/version", Value=version, Type="String"
    )


def test_a_fresh_account_is_bootstrapped_before_the_deploy(session: boto3.session.Session) -> None:
    run, out = Recorder(), io.StringIO()
    assert deploy.deploy(session, ["-c", "alarmEmail=ops@example.org"], run=run, out=out) == 0
    account = session.client("sts").get_caller_identity()["Account"]
    assert run.commands == [
        [*deploy.CDK, "bootstrap", f"aws://{account}/{REGION}"],
        [*deploy.CDK, "deploy", "--require-approval", "broadening", "-c", "alarmEmail=ops@example.org"],
    ]
    assert "not bootstrapped" in out.getvalue()


def test_an_old_bootstrap_stack_is_upgraded(session: boto3.session.Session) -> None:
    _bootstrapped(session, str(deploy.MIN_BOOTSTRAP_VERSION - 1))
    run = Recorder()
    deploy.deploy(session, [], run=run, out=io.StringIO())
    assert [c[4] for c in run.commands] == ["bootstrap", "deploy"]


def test_a_bootstrapped_account_deploys_at_once(session: boto3.session.Session) -> None:
    _bootstrapped(session, "28")
    run = Recorder()
    deploy.deploy(session, [], run=run, out=io.StringIO())
    assert [c[4] for c in run.commands] == ["deploy"]


def test_a_failed_bootstrap_names_the_command_to_run(session: boto3.session.Session) -> None:
    run = Recorder({"bootstrap": 1})
    with pytest.raises(deploy.DeployProblem) as problem:
        deploy.deploy(session, [], run=run, out=io.StringIO())
    assert f"npx --no-install cdk --no-notices bootstrap aws://123456789012/{REGION}" in str(problem.value)
    assert [c[4] for c in run.commands] == ["bootstrap"], "no deploy after a failed bootstrap"


def test_no_region_or_no_credentials_is_one_clear_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(deploy.DeployProblem, match="No AWS region"):
        deploy.resolve_target(boto3.session.Session())
    with pytest.raises(deploy.DeployProblem, match="No AWS credentials"):
        deploy.resolve_target(boto3.session.Session(region_name=REGION))


def test_main_prints_the_problem_and_exits_non_zero(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    assert deploy.main([]) == 1
    assert capsys.readouterr().err.startswith("make deploy: No AWS region")


def test_minimum_version_matches_the_template_rule() -> None:
    """The template's CheckBootstrapVersion rule rejects versions 1-5; the check here uses the same floor."""
    from aws_cdk import App

    from infrastructure.stack import build

    app = App(context={"bundle": False})
    stack = build(app)
    rules = app.synth().get_stack_by_name(stack.stack_name).template["Rules"]
    rejected = json.dumps(rules["CheckBootstrapVersion"])
    versions = {int(v) for v in re.findall(r'"(\d+)"', rejected)}
    assert max(versions) + 1 == deploy.MIN_BOOTSTRAP_VERSION


def test_qualifier_follows_cdk_json() -> None:
    assert deploy.qualifier({}) == deploy.DEFAULT_QUALIFIER
    assert deploy.qualifier({"@aws-cdk/core:bootstrapQualifier": "acme1234"}) == "acme1234"
    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    assert deploy.qualifier() == deploy.qualifier(context)


def test_make_synth_lint_and_deploy_install_no_debian_packages() -> None:
    """Only the targets of the local cloud depend on `system-deps` (apt): synth/lint/deploy work on macOS."""
    makefile = (REPO_ROOT / "Makefile").read_text()
    prerequisites = dict(re.findall(r"^([a-z-]+):[ \t]*([^\n=]*)$", makefile, flags=re.M))

    def closure(target: str) -> set[str]:
        seen: set[str] = set()
        todo = [target]
        while todo:
            name = todo.pop()
            for dep in prerequisites.get(name, "").split():
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        return seen

    for target in ("synth", "lint", "deploy", "lock"):
        assert "system-deps" not in closure(target), target
    for target in ("run", "test"):
        assert "system-deps" in closure(target), target
    assert "pip install -q" not in makefile, "the first setup shows pip's progress"
