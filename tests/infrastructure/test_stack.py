"""The CDK stack, synthesized once for this module (bundling off: no network, a few seconds).

Properties that matter, not snapshots: everything is checked against `lambdas/definitions.py`, the one
resource definition the stack is built from.
"""

from __future__ import annotations

import fcntl
import importlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Match, Template

from infrastructure.functions import LocalPipBundling
from infrastructure.settings import REPO_ROOT, Settings
from infrastructure.stack import STACK_NAME, add_checks, build
from infrastructure.web import site_files
from lambdas import constants as c
from lambdas import definitions

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infrastructure")]

# Statements allowed to use Resource "*", by action, with the reason (IAM offers nothing narrower).
ALLOWED_STAR_ACTIONS = {
    "xray:PutTraceSegments": "X-Ray has no resource-level permissions (active tracing)",
    "xray:PutTelemetryRecords": "X-Ray has no resource-level permissions (active tracing)",
    "iot:DescribeEndpoint": "no resource type in IAM; the functions look up the iot:Data-ATS endpoint",
    "iot:CreateCertificateFromCsr": "no resource type: the certificate does not exist before the call",
    "iot:RegisterCertificate": "no resource type (own-CA mode); same reason",
    "iot:RegisterCACertificate": "no resource type (own-CA setup, deploy time only); same reason",
    "cloudfront:CreateInvalidation": "CDK BucketDeployment provider, deploy time only",
    "cloudfront:GetInvalidation": "CDK BucketDeployment provider, deploy time only",
}


CONTEXT = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
TEST_CONTEXT = {
    **CONTEXT,
    "bundle": False,
    "@aws-cdk/core:validationReportJson": True,
    "aws:cdk:enable-path-metadata": True,  # as the CLI does: resources name their construct path
}


@dataclass
class Synth:
    outdir: Path
    error: str | None
    template: dict[str, Any]

    def resources(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.template["Resources"].items() if v["Type"] == kind}

    def logical_id(self, path: str) -> str:
        """The resource synthesized from construct `LatchkeyStack/<path>` (the L1 below it)."""
        wanted = {f"{STACK_NAME}/{path}", f"{STACK_NAME}/{path}/Resource"}
        found = [
            k
            for k, v in self.template["Resources"].items()
            if v.get("Metadata", {}).get("aws:cdk:path") in wanted
        ]
        assert len(found) == 1, f"{path}: {found}"
        return found[0]


def _synthesize(outdir: Path) -> None:
    app = App(context=TEST_CONTEXT, outdir=str(outdir))
    build(app)
    try:
        app.synth()
    except Exception as exc:  # cdk-nag findings interrupt synthesis; test_cdk_nag_* reports them
        (outdir / "synth-error.txt").write_text(str(exc))
    (outdir / "synth-done").write_text("")


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """One synth per test session, shared by xdist workers through a file lock.

    (pytest-xdist 3.8's `xdist_group` has no effect under pytest 9, so `--dist loadgroup` may spread this
    module over both workers; the lock keeps it at one synth either way.)
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    root = tmp_path_factory.getbasetemp().parent if worker else tmp_path_factory.getbasetemp()
    outdir = root / "latchkey-cdk.out"
    with (root / "latchkey-cdk.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (outdir / "synth-done").exists():
                outdir.mkdir(exist_ok=True)
                _synthesize(outdir)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    error_file = outdir / "synth-error.txt"
    template_file = outdir / f"{STACK_NAME}.template.json"
    template = json.loads(template_file.read_text()) if template_file.exists() else {"Resources": {}}
    return Synth(outdir, error_file.read_text() if error_file.exists() else None, template)


@pytest.fixture(scope="module")
def template(synth: Synth) -> Template:
    return Template.from_json(synth.template)


# --- checks ------------------------------------------------------------------------------------------


def test_cdk_nag_aws_solutions_passes(synth: Synth) -> None:
    """cdk-nag 3 runs as a policy-validation plugin: a finding makes `app.synth()` raise (and is listed
    in policy-validation-report.json); an acknowledged one is not reported at all."""
    violations: list[str] = []
    report_file = synth.outdir / "policy-validation-report.json"
    if report_file.exists():
        for plugin in json.loads(report_file.read_text()).get("pluginReports", []):
            for violation in plugin.get("violations", []):
                paths = [r.get("constructPath") for r in violation.get("violatingResources", [])]
                violations.append(f"{violation.get('ruleName')}: {paths}")
    assert synth.error is None and not violations, f"{synth.error}\n" + "\n".join(violations)


def test_cdk_nag_would_catch_a_finding(tmp_path: Path) -> None:
    """Control for the test above: the same plugin registration fails a synth with a known finding."""
    app = App(outdir=str(tmp_path))
    stack = Stack(app, "Control")
    s3.Bucket(stack, "Unlogged", enforce_ssl=True)  # AwsSolutions-S1: no server access logs
    add_checks(app)
    with pytest.raises(Exception, match=r"[Vv]alidation"):
        app.synth()
    reports = "".join(p.read_text() for p in tmp_path.glob("*validation-report*"))
    assert "AwsSolutions-S1" in reports


def test_every_acknowledgment_has_a_reason(synth: Synth) -> None:
    """Acknowledged findings are written to the template (Metadata.cdk_nag), each with its reason."""
    acknowledged = {}
    for logical_id, resource in synth.template["Resources"].items():
        for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", []):
            acknowledged[(logical_id, rule["id"])] = rule["reason"]
    assert acknowledged, "no acknowledgments in the template: is write_suppressions_to_cloud_formation on?"
    for (logical_id, rule), reason in acknowledged.items():
        assert len(str(reason).split()) >= 8, f"{logical_id} {rule}: {reason!r}"
    rules = {rule for _, rule in acknowledged}
    assert "AwsSolutions-IAM5[Resource::*]" in rules  # X-Ray and the IoT calls without resource types


def test_cfn_lint_clean(synth: Synth) -> None:
    template_file = synth.outdir / f"{STACK_NAME}.template.json"
    assert template_file.exists()
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run(
        [str(cfn_lint), str(template_file)], capture_output=True, text=True, timeout=120, check=False
    )
    # cfn-lint's exit code is a bit mask: 2 errors, 4 warnings, 8 informational. `make synth` wants 0.
    assert result.returncode == 0, result.stdout + result.stderr


def test_synth_is_environment_agnostic(synth: Synth) -> None:
    """No account or region baked in: synth made no AWS calls and needs no credentials."""
    manifest = json.loads((synth.outdir / "manifest.json").read_text())
    assert manifest["artifacts"][STACK_NAME]["environment"] == "aws://unknown-account/unknown-region"


# --- data --------------------------------------------------------------------------------------------


def test_tables_match_definitions(synth: Synth) -> None:
    tables = synth.resources("AWS::DynamoDB::Table")
    assert len(tables) == len(definitions.TABLES)
    for spec in definitions.TABLES:
        table = tables[synth.logical_id(f"Data/{spec.logical_id}")]
        props = table["Properties"]
        assert table["DeletionPolicy"] == "Retain" and table["UpdateReplacePolicy"] == "Retain"
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert props["DeletionProtectionEnabled"] is True
        assert props["TimeToLiveSpecification"] == {"AttributeName": spec.ttl_attribute, "Enabled": True}
        keys = {k["KeyType"]: k["AttributeName"] for k in props["KeySchema"]}
        assert keys == {"HASH": spec.partition_key, **({"RANGE": spec.sort_key} if spec.sort_key else {})}
        indexes = {i["IndexName"]: i for i in props.get("GlobalSecondaryIndexes", [])}
        assert set(indexes) == {i.name for i in spec.indexes}
        for index in spec.indexes:
            deployed = indexes[index.name]
            schema = {k["KeyType"]: k["AttributeName"] for k in deployed["KeySchema"]}
            expected = {"HASH": index.partition_key, **({"RANGE": index.sort_key} if index.sort_key else {})}
            assert schema == expected, index.name
            assert deployed["Projection"]["ProjectionType"] == index.projection
        attributes = {a["AttributeName"] for a in props["AttributeDefinitions"]}
        assert attributes == set(spec.attribute_names())


# --- functions ---------------------------------------------------------------------------------------


def _resolve_handler(handler: str) -> Any:
    """What the local gateway does with a handler string (local/lambda_runtime.load_handler)."""
    module_name, _, attr = handler.rpartition(".")
    return getattr(importlib.import_module(module_name), attr)


def test_functions_match_definitions(synth: Synth) -> None:
    functions = synth.resources("AWS::Lambda::Function")
    for spec in definitions.FUNCTIONS:
        props = functions[synth.logical_id(f"Functions/{spec.logical_id}")]["Properties"]
        assert props["Runtime"] == "python3.14"
        assert props["Architectures"] == ["arm64"]
        assert props["Handler"] == spec.handler
        assert props["MemorySize"] == spec.memory_mb
        assert props["Timeout"] == spec.timeout_s
        assert props["TracingConfig"] == {"Mode": "Active"}
        env = props["Environment"]["Variables"]
        table_vars = {t.env_var for t in definitions.TABLES}
        assert {k for k in env if k in table_vars} == {
            t.env_var for t in definitions.TABLES if t.logical_id in spec.tables
        }
        for name in (
            c.ENV_SECRETS_ARN,
            c.ENV_CERT_MODE,
            c.ENV_IOT_POLICY_NAME,
            c.ENV_THING_TYPE_NAME,
            c.ENV_IOT_ENDPOINT,
            c.ENV_CA_PEM,
            c.ENV_USER_POOL_ID,
            c.ENV_USER_POOL_CLIENT_ID,
            c.ENV_PRODUCT_NAME,
        ):
            assert name in env, f"{spec.logical_id}: {name}"
        # The stack's own (CloudFormation-named) policy and thing type, not the local cloud's fixed names.
        assert env[c.ENV_IOT_POLICY_NAME] == {"Ref": synth.logical_id("Iot/DevicePolicy")}
        assert env[c.ENV_THING_TYPE_NAME] == {"Ref": synth.logical_id("Iot/ThingType")}
        assert env[c.ENV_CERT_MODE] in ("aws", "own-ca")
        assert "BEGIN CERTIFICATE" in env[c.ENV_CA_PEM]
        assert len(json.dumps(env)) < 4096, "Lambda's 4 KB environment limit"


@pytest.mark.parametrize("spec", definitions.FUNCTIONS, ids=lambda f: f.logical_id)
def test_handler_string_resolves_to_a_callable(spec: definitions.Function) -> None:
    """The handler string the stack deploys is what the local gateway imports: it must exist."""
    assert callable(_resolve_handler(spec.handler)), spec.handler


def test_function_asset_ships_only_lambdas(synth: Synth) -> None:
    assets = json.loads((synth.outdir / f"{STACK_NAME}.assets.json").read_text())["files"]
    functions = synth.resources("AWS::Lambda::Function")
    spec = definitions.FUNCTIONS[0]
    code = functions[synth.logical_id(f"Functions/{spec.logical_id}")]["Properties"]["Code"]
    key = code["S3Key"]
    asset_hash = key.split(".")[0]
    staged = synth.outdir / assets[asset_hash]["source"]["path"]
    # No CDK code, no cdk-nag: the deploy-time custom resource is one of the lambdas' handlers.
    assert sorted(p.name for p in staged.iterdir()) == ["lambdas"]
    assert (staged / "lambdas" / "handlers" / "service_setup.py").exists()
    assert (staged / "lambdas" / "definitions.py").exists()
    assert (staged / "lambdas" / "requirements.lock").exists(), "the lock is part of the asset hash"
    assert not list(staged.rglob("__pycache__"))


def test_service_setup_runs_before_the_functions(synth: Synth) -> None:
    """Custom::LatchkeyServiceSetup completes the secret (originVerify, own CA) before any request."""
    (setup_id, setup) = next(iter(synth.resources("Custom::LatchkeyServiceSetup").items()))
    secret = synth.logical_id("Functions/ServiceSecret")
    assert setup["Properties"]["SecretArn"] == {"Ref": secret}
    assert setup["Properties"]["CertMode"] == CONTEXT["certMode"]
    functions = synth.resources("AWS::Lambda::Function")
    handler = functions[synth.logical_id("Functions/ServiceSetup")]["Properties"]["Handler"]
    assert callable(_resolve_handler(handler))
    for name in ("DeviceApi", "OwnerApi"):
        assert setup_id in functions[synth.logical_id(f"Functions/{name}")].get("DependsOn", []), name


def test_table_grants_follow_function_tables(synth: Synth) -> None:
    """Each role reaches exactly the tables its function declares (grant_read_write_data per table)."""
    policies = synth.resources("AWS::IAM::Policy")
    table_ids = {t.logical_id: synth.logical_id(f"Data/{t.logical_id}") for t in definitions.TABLES}
    for spec in definitions.FUNCTIONS:
        role = synth.logical_id(f"Functions/{spec.logical_id}Role")
        text = json.dumps([p for p in policies.values() if {"Ref": role} in p["Properties"]["Roles"]])
        reached = {name for name, logical_id in table_ids.items() if f'"{logical_id}"' in text}
        assert reached == set(spec.tables), spec.logical_id


def _statements(synth: Synth) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for logical_id, policy in synth.resources("AWS::IAM::Policy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            found.append((logical_id, statement))
    for logical_id, role in synth.resources("AWS::IAM::Role").items():
        for inline in role["Properties"].get("Policies", []):
            for statement in inline["PolicyDocument"]["Statement"]:
                found.append((logical_id, statement))
    return found


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_no_unreasoned_star_resources(synth: Synth) -> None:
    statements = _statements(synth)
    assert statements
    for logical_id, statement in statements:
        if statement["Effect"] != "Allow" or "*" not in _as_list(statement.get("Resource")):
            continue
        unexpected = set(_as_list(statement["Action"])) - set(ALLOWED_STAR_ACTIONS)
        assert not unexpected, f"{logical_id}: Resource '*' for {sorted(unexpected)}"
        assert not any(a.endswith("*") for a in _as_list(statement["Action"])), logical_id


def _role_statements(synth: Synth, function: str) -> list[dict[str, Any]]:
    role = synth.logical_id(f"Functions/{function}Role")
    return [
        statement
        for policy in synth.resources("AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_no_function_may_change_or_delete_audit_events(synth: Synth) -> None:
    audit = synth.logical_id("Data/AuditEvents")
    for spec in definitions.FUNCTIONS:
        for statement in _role_statements(synth, spec.logical_id):
            if f'"{audit}"' not in json.dumps(statement.get("Resource")):
                continue
            actions = set(_as_list(statement["Action"]))
            assert actions <= {
                "dynamodb:PutItem",
                "dynamodb:GetItem",
                "dynamodb:Query",
                "dynamodb:DescribeTable",
            }, (
                spec.logical_id,
                sorted(actions),
            )
    writers = [
        s for s in _role_statements(synth, "DeviceApi") if f'"{audit}"' in json.dumps(s.get("Resource"))
    ]
    assert writers and "dynamodb:PutItem" in json.dumps(writers), "the trail is still written"


def test_owner_api_may_disconnect_only_device_clients(synth: Synth) -> None:
    (statement,) = [
        s for s in _role_statements(synth, "OwnerApi") if "iot:DeleteConnection" in _as_list(s["Action"])
    ]
    assert _as_list(statement["Action"]) == ["iot:DeleteConnection"]
    assert _render(statement["Resource"]) == (
        f"arn:<AWS::Partition>:iot:<AWS::Region>:<AWS::AccountId>:client/{c.DEVICE_ID_PREFIX}*"
    )
    device_api = json.dumps(_role_statements(synth, "DeviceApi"))
    assert "iot:DeleteConnection" not in device_api


def test_arns_follow_the_partition(synth: Synth) -> None:
    """aws-cn and aws-us-gov deployments: no ARN in the template names the aws partition literally."""
    assert '"arn:aws:' not in json.dumps(synth.template["Resources"])
    text = json.dumps(synth.resources("AWS::IoT::Policy"))
    assert "arn:aws:" not in text and '{"Ref": "AWS::Partition"}' in text


def test_iot_permissions_are_scoped(synth: Synth) -> None:
    text = json.dumps(_statements(synth))
    assert f":thing/{c.DEVICE_ID_PREFIX}*" in text
    assert ":thing/*" not in text, "thing ARNs are limited to the device-id prefix"
    assert ":cert/*" in text
    assert f":topic/{definitions.device_topics('*')['commands']}" in text
    presence_role = synth.logical_id("Functions/PresenceRole")
    presence = [
        p
        for p in synth.resources("AWS::IAM::Policy").values()
        if {"Ref": presence_role} in p["Properties"]["Roles"]
    ]
    assert presence and '"iot:' not in json.dumps(presence)


# --- api ---------------------------------------------------------------------------------------------


def test_every_route_exists_with_its_auth(synth: Synth) -> None:
    routes = {
        r["Properties"]["RouteKey"]: r["Properties"]
        for r in synth.resources("AWS::ApiGatewayV2::Route").values()
    }
    assert set(routes) == {r.route_key for r in definitions.ROUTES}
    (authorizer_id,) = synth.resources("AWS::ApiGatewayV2::Authorizer")
    for route in definitions.ROUTES:
        props = routes[route.route_key]
        if route.auth:
            assert props["AuthorizationType"] == "JWT", route.route_key
            assert props["AuthorizerId"] == {"Ref": authorizer_id}
        else:
            assert props.get("AuthorizationType", "NONE") == "NONE", route.route_key
            assert "AuthorizerId" not in props


def test_jwt_authorizer_trusts_the_user_pool_and_client(synth: Synth, template: Template) -> None:
    pool = synth.logical_id("Auth/UserPool")
    client = synth.logical_id("Auth/UserPool/WebClient")
    template.has_resource_properties(
        "AWS::ApiGatewayV2::Authorizer",
        {
            "AuthorizerType": "JWT",
            "IdentitySource": ["$request.header.Authorization"],
            "JwtConfiguration": {
                "Audience": [{"Ref": client}],
                "Issuer": {
                    "Fn::Join": [
                        "",
                        ["https://cognito-idp.", {"Ref": "AWS::Region"}, ".amazonaws.com/", {"Ref": pool}],
                    ]
                },
            },
        },
    )


def test_stage_throttles_and_logs(synth: Synth) -> None:
    (stage,) = synth.resources("AWS::ApiGatewayV2::Stage").values()
    props = stage["Properties"]
    assert props["StageName"] == "$default" and props["AutoDeploy"] is True
    assert props["AccessLogSettings"]["DestinationArn"]
    assert "$context.requestId" in props["AccessLogSettings"]["Format"]
    rate, burst = definitions.OWNER_ROUTE_THROTTLE
    assert props["DefaultRouteSettings"] == {"ThrottlingRateLimit": rate, "ThrottlingBurstLimit": burst}
    for route in definitions.ROUTES:
        rate, burst = definitions.OWNER_ROUTE_THROTTLE if route.auth else definitions.DEVICE_ROUTE_THROTTLE
        if route.route_key == "POST /v1/device/poll":  # sized apart, from the reconnect storm
            rate, burst = definitions.DEVICE_POLL_THROTTLE
        assert props["RouteSettings"][route.route_key] == {
            "ThrottlingRateLimit": rate,
            "ThrottlingBurstLimit": burst,
        }
    route_ids = set(synth.resources("AWS::ApiGatewayV2::Route"))
    assert route_ids <= set(stage.get("DependsOn", [])), "route settings need the routes to exist first"


# --- auth --------------------------------------------------------------------------------------------


def test_user_pool(template: Template) -> None:
    template.has_resource_properties(
        "AWS::Cognito::UserPool",
        {
            "UsernameAttributes": ["email"],
            "AutoVerifiedAttributes": ["email"],
            "Policies": {
                "PasswordPolicy": Match.object_like(
                    {
                        "MinimumLength": definitions.USER_POOL.password_min_length,
                        "RequireLowercase": True,
                        "RequireUppercase": True,
                        "RequireNumbers": True,
                        "RequireSymbols": True,
                    }
                )
            },
            "DeletionProtection": "ACTIVE",
            "UserPoolTier": "PLUS",
            "UserPoolAddOns": {"AdvancedSecurityMode": "ENFORCED"},
        },
    )
    template.has_resource_properties(
        "AWS::Cognito::UserPoolClient",
        {
            "GenerateSecret": False,
            "ExplicitAuthFlows": Match.array_with(["ALLOW_USER_PASSWORD_AUTH", "ALLOW_USER_SRP_AUTH"]),
            "PreventUserExistenceErrors": "ENABLED",
            # No hosted-UI OAuth: no implicit grant, no callback URL (CDK's default is https://example.com).
            "AllowedOAuthFlowsUserPoolClient": False,
            "AllowedOAuthFlows": Match.absent(),
            "CallbackURLs": Match.absent(),
        },
    )
    assert "example.com" not in json.dumps(template.to_json()["Resources"])


# --- iot ---------------------------------------------------------------------------------------------


def test_device_policy_uses_thing_name_variables(synth: Synth) -> None:
    (policy,) = synth.resources("AWS::IoT::Policy").values()
    assert "PolicyName" not in policy["Properties"], "CloudFormation names it after the stack"
    assert policy["DeletionPolicy"] == "Retain" and policy["UpdateReplacePolicy"] == "Retain"
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    actions = {s["Action"]: s for s in statements}
    assert set(actions) == {"iot:Connect", "iot:Publish", "iot:Subscribe", "iot:Receive"}
    for action in ("iot:Connect", "iot:Publish", "iot:Subscribe"):
        resources = [json.dumps(r) for r in _as_list(actions[action]["Resource"])]
        assert resources and all(definitions.THING_VAR in r for r in resources), action
    for statement in statements:
        for resource in _as_list(statement["Resource"]):
            text = json.dumps(resource)
            assert "topic/*" not in text and "topicfilter/*" not in text and text != '"*"', text
            assert "topic/#" not in text and "topicfilter/#" not in text


def test_thing_type_and_presence_rules(synth: Synth) -> None:
    (thing_type_id, thing_type) = next(iter(synth.resources("AWS::IoT::ThingType").items()))
    assert "ThingTypeName" not in thing_type["Properties"] and thing_type["DeletionPolicy"] == "Retain"
    rules = synth.resources("AWS::IoT::TopicRule")
    sqls = {_render(r["Properties"]["TopicRulePayload"]["Sql"]) for r in rules.values()}
    sources = {sql.split("FROM ", 1)[1].split(" WHERE ")[0] for sql in sqls}
    assert sources == {f"'{c.TOPIC_STATUS_FILTER}'", "'$aws/events/presence/+/+'"}
    for sql in sqls:  # only this stack's things: their registry entry names this stack's thing type
        assert sql.endswith(f".thingTypeName = '<{thing_type_id}>'"), sql
        assert "get_registry_data('DescribeThing', " in sql
    presence = synth.logical_id("Functions/Presence")
    permissions = synth.resources("AWS::Lambda::Permission").values()
    for rule_id, rule in rules.items():
        payload = rule["Properties"]["TopicRulePayload"]
        assert payload["Actions"] == [{"Lambda": {"FunctionArn": {"Fn::GetAtt": [presence, "Arn"]}}}]
        assert "topic() AS topic" in _render(payload["Sql"]) and "ErrorAction" in payload
        assert any(
            p["Properties"]["Principal"] == "iot.amazonaws.com"
            and p["Properties"]["SourceArn"] == {"Fn::GetAtt": [rule_id, "Arn"]}
            for p in permissions
        ), rule_id


# --- web ---------------------------------------------------------------------------------------------


def test_buckets_are_private_encrypted_and_tls_only(synth: Synth) -> None:
    buckets = synth.resources("AWS::S3::Bucket")
    assert len(buckets) == 2
    policies = {
        p["Properties"]["Bucket"]["Ref"]: p for p in synth.resources("AWS::S3::BucketPolicy").values()
    }
    for logical_id, bucket in buckets.items():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert "WebsiteConfiguration" not in props
        statements = policies[logical_id]["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
            for s in statements
        ), logical_id
        for statement in statements:
            assert statement.get("Principal") != "*" or statement["Effect"] == "Deny", logical_id
    site = synth.logical_id("Web/Site")
    assert buckets[site]["Properties"]["LoggingConfiguration"]["LogFilePrefix"] == "site/"


def test_cloudfront_uses_oac_and_routes_the_api(synth: Synth, template: Template) -> None:
    template.resource_count_is("AWS::CloudFront::OriginAccessControl", 1)
    template.has_resource_properties(
        "AWS::CloudFront::OriginAccessControl",
        {
            "OriginAccessControlConfig": Match.object_like(
                {"OriginAccessControlOriginType": "s3", "SigningBehavior": "always"}
            )
        },
    )
    (distribution,) = synth.resources("AWS::CloudFront::Distribution").values()
    config = distribution["Properties"]["DistributionConfig"]
    assert config["DefaultRootObject"] == "index.html"
    assert config["Logging"]["Bucket"]
    origins = {o["Id"]: o for o in config["Origins"]}
    s3_origins = [o for o in origins.values() if "S3OriginConfig" in o]
    assert s3_origins and all(o.get("OriginAccessControlId") for o in s3_origins)
    assert all(o["S3OriginConfig"].get("OriginAccessIdentity", "") == "" for o in s3_origins)
    behaviors = {b["PathPattern"]: b for b in config["CacheBehaviors"]}
    api = behaviors["/v1/*"]
    assert "CustomOriginConfig" in origins[api["TargetOriginId"]]
    assert origins[api["TargetOriginId"]]["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"
    assert set(api["AllowedMethods"]) == {"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "POST", "DELETE"}
    assert config["DefaultCacheBehavior"]["ViewerProtocolPolicy"] == "redirect-to-https"


def test_the_api_behind_cloudfront_sees_the_viewer_address(synth: Synth) -> None:
    """Issue 14 item 4: CloudFront forwards its own CloudFront-Viewer-Address and proves itself with the
    origin-verify header, whose value is a dynamic reference to the service secret's originVerify key."""
    (distribution,) = synth.resources("AWS::CloudFront::Distribution").values()
    config = distribution["Properties"]["DistributionConfig"]
    api = {b["PathPattern"]: b for b in config["CacheBehaviors"]}["/v1/*"]
    origin = {o["Id"]: o for o in config["Origins"]}[api["TargetOriginId"]]
    (header,) = origin["OriginCustomHeaders"]
    assert header["HeaderName"] == c.HEADER_ORIGIN_VERIFY
    secret = synth.logical_id("Functions/ServiceSecret")
    assert _render(header["HeaderValue"]) == (
        f"{{{{resolve:secretsmanager:<{secret}>:SecretString:{c.SECRET_ORIGIN_VERIFY_KEY}::}}}}"
    )
    (setup_id,) = synth.resources("Custom::LatchkeyServiceSetup")
    assert setup_id in distribution["DependsOn"], "the key exists before CloudFront resolves it"

    request_policy = synth.resources("AWS::CloudFront::OriginRequestPolicy")[
        api["OriginRequestPolicyId"]["Ref"]
    ]
    headers = request_policy["Properties"]["OriginRequestPolicyConfig"]["HeadersConfig"]
    assert headers["HeaderBehavior"] == "whitelist"
    forwarded = {h.lower() for h in headers["Headers"]}
    assert c.HEADER_VIEWER_ADDRESS in forwarded
    assert {c.HEADER_DEVICE_ID, c.HEADER_TIMESTAMP, c.HEADER_SIGNATURE, "content-type"} <= forwarded
    assert not forwarded & {"host", "x-forwarded-for", c.HEADER_ORIGIN_VERIFY}

    cache_policy = synth.resources("AWS::CloudFront::CachePolicy")[api["CachePolicyId"]["Ref"]]
    cache = cache_policy["Properties"]["CachePolicyConfig"]
    assert (cache["DefaultTTL"], cache["MinTTL"]) == (0, 0) and cache["MaxTTL"] <= 1
    key = cache["ParametersInCacheKeyAndForwardedToOrigin"]
    assert key["HeadersConfig"] == {"HeaderBehavior": "whitelist", "Headers": ["Authorization"]}
    errors = {e["ErrorCode"]: e for e in config["CustomErrorResponses"]}
    assert all(e["ErrorCachingMinTTL"] == 0 and "ResponsePagePath" not in e for e in errors.values())
    assert {403, 404, 500, 503} <= set(errors)


def _render(value: Any) -> str:
    """A CloudFormation value as text: `{"Ref": "X"}` -> `<X>`, joins concatenated."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        delimiter, items = value["Fn::Join"]
        return delimiter.join(_render(item) for item in items)
    if "Ref" in value:
        return f"<{value['Ref']}>"
    if "Fn::GetAtt" in value:
        return "<{}.{}>".format(*value["Fn::GetAtt"])
    raise AssertionError(f"unexpected intrinsic {value}")


def test_site_config_has_the_local_cloud_keys(synth: Synth) -> None:
    """config.json (Source.json_data) carries the keys the local gateway serves, filled at deploy time."""
    (deployment,) = synth.resources("Custom::CDKBucketDeployment").values()
    props = deployment["Properties"]
    assert props["DistributionPaths"] == ["/*"]
    configs = [p / "config.json" for p in synth.outdir.glob("asset.*") if (p / "config.json").is_file()]
    assert len(configs) == 1
    text = configs[0].read_text()
    for markers in props["SourceMarkers"]:  # deploy-time values: the custom resource substitutes them
        for marker, value in markers.items():
            text = text.replace(marker, _render(value))
    config = json.loads(text)
    assert config == {
        "apiUrl": "",
        "cognitoEndpoint": "https://cognito-idp.<AWS::Region>.amazonaws.com/",
        "region": "<AWS::Region>",
        "userPoolId": f"<{synth.logical_id('Auth/UserPool')}>",
        "userPoolClientId": f"<{synth.logical_id('Auth/UserPool/WebClient')}>",
        "productName": CONTEXT["productName"],
        "logoUrl": CONTEXT["logoUrl"],
    }


# --- monitoring --------------------------------------------------------------------------------------


def _alarm_metrics(alarm: dict[str, Any]) -> set[str]:
    props = alarm["Properties"]
    if "MetricName" in props:
        return {props["MetricName"]}
    return {m["MetricStat"]["Metric"]["MetricName"] for m in props["Metrics"] if "MetricStat" in m}


def test_alarms(synth: Synth) -> None:
    alarms = synth.resources("AWS::CloudWatch::Alarm").values()
    by_metric: dict[str, list[dict[str, Any]]] = {}
    for alarm in alarms:
        for metric in _alarm_metrics(alarm):
            by_metric.setdefault(metric, []).append(alarm["Properties"])
        assert alarm["Properties"]["AlarmActions"], "every alarm notifies the topic"
        assert alarm["Properties"]["AlarmDescription"].startswith("Latchkey ")
    assert len(by_metric["Errors"]) == len(definitions.FUNCTIONS)
    assert len(by_metric["Throttles"]) == len(definitions.FUNCTIONS)
    assert len(by_metric["5xx"]) == 1
    # DynamoDB: one alarm per table over read + write throttle events.
    assert (
        len(by_metric["ReadThrottleEvents"])
        == len(by_metric["WriteThrottleEvents"])
        == len(definitions.TABLES)
    )
    # IoT rule errors: every event the rules' error action writes to RuleErrors counts, in the stack's own
    # metric namespace (a second stack's errors are not this one's).
    (rule_errors,) = by_metric["IotRuleErrors"]
    assert rule_errors["Namespace"] == f"Latchkey/{STACK_NAME}"
    (metric_filter,) = synth.resources("AWS::Logs::MetricFilter").values()
    assert metric_filter["Properties"]["LogGroupName"] == {"Ref": synth.logical_id("Iot/RuleErrors")}
    assert metric_filter["Properties"]["FilterPattern"] == ""
    transformation = metric_filter["Properties"]["MetricTransformations"][0]
    assert (transformation["MetricNamespace"], transformation["MetricName"]) == (
        f"Latchkey/{STACK_NAME}",
        "IotRuleErrors",
    )
    for rule in synth.resources("AWS::IoT::TopicRule").values():
        error_action = rule["Properties"]["TopicRulePayload"]["ErrorAction"]["CloudwatchLogs"]
        assert error_action["LogGroupName"] == {"Ref": synth.logical_id("Iot/RuleErrors")}
    # Account-wide IoT authN/authZ failures (this stack owns IoT logging), and the presence failure queue.
    (auth,) = [a for a in alarms if {"Connection.AuthNError", "Connect.AuthError"} <= _alarm_metrics(a)]
    assert {"PublishIn.AuthError", "Subscribe.AuthError"} <= _alarm_metrics(auth)
    (queue,) = by_metric["ApproximateNumberOfMessagesVisible"]
    assert queue["Dimensions"][0]["Value"] == {
        "Fn::GetAtt": [synth.logical_id("Functions/PresenceFailures"), "QueueName"]
    }
    (topic,) = synth.resources("AWS::SNS::Topic")
    policies = json.dumps(synth.resources("AWS::SNS::TopicPolicy"))
    assert topic in policies and "aws:SecureTransport" in policies


def test_presence_failures_have_a_destination(synth: Synth) -> None:
    """IoT rules invoke Presence asynchronously; what still fails after Lambda's retries is kept."""
    (config,) = synth.resources("AWS::Lambda::EventInvokeConfig").values()
    props = config["Properties"]
    assert props["FunctionName"] == {"Ref": synth.logical_id("Functions/Presence")}
    assert props["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": [synth.logical_id("Functions/PresenceFailures"), "Arn"]
    }
    assert props["MaximumRetryAttempts"] == 2
    queue = synth.resources("AWS::SQS::Queue")[synth.logical_id("Functions/PresenceFailures")]
    assert queue["Properties"]["SqsManagedSseEnabled"] is True


def test_iot_core_logging(synth: Synth) -> None:
    (logging,) = synth.resources("AWS::IoT::Logging").values()
    assert logging["Properties"]["DefaultLogLevel"] == "WARN"
    assert logging["Properties"]["AccountId"] == {"Ref": "AWS::AccountId"}
    role = synth.resources("AWS::IAM::Role")[logging["Properties"]["RoleArn"]["Fn::GetAtt"][0]]
    text = json.dumps(role["Properties"])
    assert "iot.amazonaws.com" in text and "log-group:AWSIotLogsV2:*" in text


def test_outputs(template: Template) -> None:
    outputs = template.to_json()["Outputs"]
    assert {"ApiUrl", "WebUrl", "UserPoolId", "UserPoolClientId"} <= set(outputs)


# --- helpers that need no synth ----------------------------------------------------------------------


def test_site_files_copes_with_an_empty_or_missing_web_dir(tmp_path: Path) -> None:
    """Without page files only config.json is deployed (Source.asset of an empty dir is skipped)."""
    assert site_files(tmp_path / "missing") == []
    assert site_files(tmp_path) == []
    (tmp_path / ".keep").write_text("")
    assert site_files(tmp_path) == []
    (tmp_path / "index.html").write_text("<!doctype html>")
    assert site_files(tmp_path) == [tmp_path / "index.html"]


def test_local_bundling_falls_back_to_docker_when_pip_fails(tmp_path: Path) -> None:
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial.txt").write_text("left over by a failed pip run")
    bundler = LocalPipBundling(python="/bin/false")
    assert bundler.try_bundle(str(tmp_path)) is False
    assert list(tmp_path.iterdir()) == []


def test_settings_from_context() -> None:
    app = App(context={"bundle": "false", "certMode": "own-ca", "selfSignUp": "no", "webDir": "/tmp/w"})
    settings = Settings.from_context(app)
    assert (settings.bundle, settings.cert_mode, settings.self_sign_up) == (False, "own-ca", False)
    assert settings.web_dir == Path("/tmp/w")
    assert Settings.from_context(App()).bundle is True
    with pytest.raises(ValueError, match="certMode"):
        Settings.from_context(App(context={"certMode": "letsencrypt"}))


def test_stack_outputs_what_the_cli_reads(template: Template) -> None:
    from cli.env import STACK_OUTPUTS

    outputs = template.to_json().get("Outputs", {})
    missing = sorted(set(STACK_OUTPUTS) - set(outputs))
    assert not missing, f"the CLI reads these stack outputs, which the stack does not define: {missing}"
