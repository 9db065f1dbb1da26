"""Two Latchkey stacks in one account and region (production and staging) share no physical name.

Both are synthesized into one app for the same account and region. Every resource type in the template
is classified: either its name properties are account/region-wide identifiers (compared across the two
stacks), or its names are scoped to a parent or not unique by AWS's rules. A new resource type fails
the test until someone classifies it, so a fixed name cannot slip in unnoticed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Environment

from infrastructure.settings import REPO_ROOT
from infrastructure.stack import STACK_NAME, LatchkeyStack, add_checks, stack_name

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infrastructure")]

ENV = Environment(account="111122223333", region="eu-west-1")
STAGING = "LatchkeyStaging"

# Resource type -> property paths whose values must be unique in an account and region (or globally).
GLOBAL_NAMES: dict[str, tuple[str, ...]] = {
    "AWS::DynamoDB::Table": ("TableName",),
    "AWS::Lambda::Function": ("FunctionName",),
    "AWS::Lambda::LayerVersion": ("LayerName",),
    "AWS::IAM::Role": ("RoleName",),
    "AWS::Logs::LogGroup": ("LogGroupName",),
    "AWS::IoT::TopicRule": ("RuleName",),
    "AWS::IoT::Policy": ("PolicyName",),
    "AWS::IoT::ThingType": ("ThingTypeName",),
    "AWS::IoT::Logging": ("AccountId",),  # one per account and region: its identity is the account
    "AWS::S3::Bucket": ("BucketName",),
    "AWS::SecretsManager::Secret": ("Name",),
    "AWS::SNS::Topic": ("TopicName",),
    "AWS::SQS::Queue": ("QueueName",),
    "AWS::CloudWatch::Alarm": ("AlarmName",),
    "AWS::Cognito::UserPool": ("UserPoolName",),
    "AWS::CloudFront::OriginAccessControl": ("OriginAccessControlConfig.Name",),
    "AWS::CloudFront::CachePolicy": ("CachePolicyConfig.Name",),
    "AWS::CloudFront::OriginRequestPolicy": ("OriginRequestPolicyConfig.Name",),
}
# Types without an account-wide name: unnamed, or named within a parent (a role's inline policy, an API's
# stage), or names AWS does not require to be unique (an HTTP API's Name is a label).
SCOPED_OR_UNNAMED = {
    "AWS::Lambda::Permission",
    "AWS::Lambda::EventInvokeConfig",
    "AWS::Logs::MetricFilter",  # named within its log group
    "AWS::IAM::Policy",
    "AWS::ApiGatewayV2::Api",
    "AWS::ApiGatewayV2::Route",
    "AWS::ApiGatewayV2::Integration",
    "AWS::ApiGatewayV2::Authorizer",
    "AWS::ApiGatewayV2::Stage",
    "AWS::Cognito::UserPoolClient",
    "AWS::S3::BucketPolicy",
    "AWS::SNS::TopicPolicy",
    "AWS::SNS::Subscription",
    "AWS::SQS::QueuePolicy",
    "AWS::CloudFront::Distribution",
    "Custom::CDKBucketDeployment",
    "Custom::LatchkeyServiceSetup",
}
PSEUDO = {"AWS::AccountId", "AWS::Region", "AWS::Partition", "AWS::URLSuffix"}


def _context(**extra: Any) -> dict[str, Any]:
    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    return {**context, "bundle": False, **extra}


def _synth(outdir: Path, staging_context: dict[str, Any]) -> dict[str, dict[str, Any]]:
    app = App(context=_context(), outdir=str(outdir))
    LatchkeyStack(app, STACK_NAME, env=ENV)
    staging_app_context = App(context=_context(**staging_context), outdir=str(outdir / "staging"))
    LatchkeyStack(staging_app_context, STAGING, env=ENV)
    add_checks(app)
    add_checks(staging_app_context)
    return {
        STACK_NAME: app.synth().get_stack_by_name(STACK_NAME).template,
        STAGING: staging_app_context.synth().get_stack_by_name(STAGING).template,
    }


def _lookup(properties: dict[str, Any], path: str) -> Any:
    value: Any = properties
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _stack_specific(value: Any, resources: set[str]) -> bool:
    """Does the value depend on this stack: a reference to one of its resources, or its name or id?"""
    if isinstance(value, dict):
        ref = value.get("Ref")
        if isinstance(ref, str) and (ref in resources or ref in ("AWS::StackName", "AWS::StackId")):
            return True
        if "Fn::GetAtt" in value:
            return True
        return any(_stack_specific(v, resources) for v in value.values())
    if isinstance(value, list):
        return any(_stack_specific(v, resources) for v in value)
    return False


def physical_names(template: dict[str, Any]) -> dict[tuple[str, str, str], str]:
    """(type, property, rendered value) -> logical id, for names that are not tied to this stack."""
    resources = set(template["Resources"])
    found: dict[tuple[str, str, str], str] = {}
    unclassified = []
    for logical_id, resource in template["Resources"].items():
        kind = resource["Type"]
        if kind in SCOPED_OR_UNNAMED:
            continue
        if kind not in GLOBAL_NAMES:
            unclassified.append(kind)
            continue
        for path in GLOBAL_NAMES[kind]:
            value = _lookup(resource.get("Properties", {}), path)
            if value is None or _stack_specific(value, resources):
                continue  # CloudFormation generates it from the stack name, or it names this stack's resource
            found[(kind, path, json.dumps(value, sort_keys=True))] = logical_id
    assert not unclassified, f"classify these resource types in {__name__}: {sorted(set(unclassified))}"
    return found


def collisions(templates: dict[str, dict[str, Any]]) -> list[str]:
    first, second = (physical_names(t) for t in templates.values())
    return [
        f"{key[0]} {key[1]}={key[2]}: {first[key]} / {second[key]}"
        for key in sorted(set(first) & set(second))
    ]


@pytest.fixture(scope="module")
def two_stacks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    # The second stack leaves IoT logging (one setting per account and region) to the first, and runs in
    # own-CA mode (so that mode's template is checked too).
    return _synth(
        tmp_path_factory.mktemp("two-stacks"),
        {"stackName": STAGING, "iotLogging": False, "certMode": "own-ca"},
    )


def test_two_stacks_in_one_account_share_no_physical_name(two_stacks: dict[str, dict[str, Any]]) -> None:
    assert collisions(two_stacks) == []


def test_the_check_finds_a_fixed_name(two_stacks: dict[str, dict[str, Any]]) -> None:
    """Control: give both stacks' device policy the same fixed name and the check reports it."""
    templates = json.loads(json.dumps(two_stacks))
    for template in templates.values():
        for resource in template["Resources"].values():
            if resource["Type"] == "AWS::IoT::Policy":
                resource["Properties"]["PolicyName"] = "LatchkeyDevicePolicy"
    (found,) = collisions(templates)
    assert found.startswith('AWS::IoT::Policy PolicyName="LatchkeyDevicePolicy"'), found


def test_iot_logging_is_owned_by_one_stack(tmp_path: Path, two_stacks: dict[str, dict[str, Any]]) -> None:
    """IoT logging is an account setting: with it on in both stacks, the check reports the clash."""
    kinds = {name: {r["Type"] for r in t["Resources"].values()} for name, t in two_stacks.items()}
    assert "AWS::IoT::Logging" in kinds[STACK_NAME] and "AWS::IoT::Logging" not in kinds[STAGING]
    # The account-wide IoT auth-failure alarm goes with it: one alarm per account, not one per stack.
    auth_alarms = {
        name: json.dumps(t["Resources"]).count('"Connection.AuthNError"') for name, t in two_stacks.items()
    }
    assert auth_alarms == {STACK_NAME: 1, STAGING: 0}
    both_on = _synth(tmp_path, {"stackName": STAGING})
    assert any(c.startswith("AWS::IoT::Logging AccountId") for c in collisions(both_on))


def test_stack_name_comes_from_context() -> None:
    assert stack_name(App()) == STACK_NAME
    assert stack_name(App(context={"stackName": STAGING})) == STAGING
    for bad in ("1stack", "has_underscore", "x" * 65):
        with pytest.raises(ValueError, match="stackName"):
            stack_name(App(context={"stackName": bad}))


def test_own_ca_mode_grants_only_what_the_setup_and_device_api_call(
    two_stacks: dict[str, dict[str, Any]],
) -> None:
    text = {name: json.dumps(t["Resources"]) for name, t in two_stacks.items()}
    for action in ("iot:RegisterCACertificate", "iot:RegisterCertificate"):
        assert f'"{action}"' in text[STAGING] and f'"{action}"' not in text[STACK_NAME], action
    assert '"iot:CreateCertificateFromCsr"' in text[STACK_NAME]
    assert '"iot:CreateCertificateFromCsr"' not in text[STAGING]
