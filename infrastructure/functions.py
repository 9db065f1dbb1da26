"""The Lambda functions of `definitions.FUNCTIONS`, their code asset, roles and the service secret."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import (
    ArnFormat,
    AssetHashType,
    BundlingOptions,
    CustomResource,
    Duration,
    ILocalBundling,
    RemovalPolicy,
    Stack,
)
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infrastructure.nag import acknowledge, acknowledge_wildcard_resource
from infrastructure.settings import REPO_ROOT, Settings
from lambdas import constants as c
from lambdas import definitions

RUNTIME = lambda_.Runtime.PYTHON_3_14
ARCHITECTURE = lambda_.Architecture.ARM_64
PIP_PLATFORM = "manylinux2014_aarch64"
PIP_PYTHON_VERSION = "3.14"
# What the asset installs: the hash-locked pins of lambdas/requirements.txt (`make lock`). The lock lives in
# lambdas/, so it is part of the asset hash: a new pin is a new asset.
REQUIREMENTS = "lambdas/requirements.lock"

# The asset is the repository root filtered down to `lambdas/` (handler strings are "lambdas.handlers...").
# Excluding everything else also keeps fingerprinting fast (.venv, node_modules, cdk.out are never read).
# The deploy-time custom resource is a handler like the others (lambdas/handlers/service_setup.py).
ASSET_SOURCES = ("lambdas",)
ASSET_EXCLUDE = [
    "*",
    ".*",
    "!lambdas",
    "!lambdas/**",
    "**/__pycache__",
    "**/*.pyc",
    "**/.*",
]
SETUP_HANDLER = "lambdas.handlers.service_setup.handler"

AMAZON_ROOT_CA_PEM = (Path(__file__).parent / "amazon-root-ca.pem").read_text()

# IoT control-plane actions per function (what lambdas/adapters/iot.py calls). Both API functions undo
# provisioning (the device API cleans up after a lost race, the owner API revokes/deletes/releases).
# Presence needs none: it only writes presence to DynamoDB.
_LIFECYCLE = (
    "iot:DescribeCertificate",
    "iot:ListThingPrincipals",
    "iot:ListAttachedPolicies",
    "iot:ListPrincipalThings",  # a certificate's things, when a delete conflicts with a re-attach
    "iot:UpdateCertificate",  # ack: INACTIVE -> ACTIVE; revoke: -> REVOKED
    "iot:DetachThingPrincipal",
    "iot:DetachPolicy",
    "iot:DeleteCertificate",
    "iot:DeleteThing",
)
_PROVISIONING = (*_LIFECYCLE, "iot:CreateThing", "iot:AttachPolicy", "iot:AttachThingPrincipal")
IOT_ACTIONS: dict[str, tuple[str, ...]] = {"DeviceApi": _PROVISIONING, "OwnerApi": _LIFECYCLE}
# Issuing a certificate, by cert mode; neither call supports resource-level permissions.
ISSUE_ACTION = {"aws": "iot:CreateCertificateFromCsr", "own-ca": "iot:RegisterCertificate"}
ISSUES_CERTIFICATES = ("DeviceApi",)
USES_SHADOW = ("OwnerApi",)  # relays and sensors: GET/PATCH /v1/devices/{id}/state
# release/revoke tell the agent over MQTT; a rotation request leaves a retained notice (OwnerApi), which
# the completed rotation clears (DeviceApi): retained publishes need iot:RetainPublish as well.
PUBLISHES_COMMANDS = ("OwnerApi", "DeviceApi")
READS_SECRET = ("DeviceApi", "OwnerApi")  # claim-code HMAC key; origin-verify value; own-CA key pair
READS_USER_POOL = ("OwnerApi",)  # functions that look up owner accounts
# The audit trail is append-only for the functions: they write and read events, never change or delete
# one (expiry is DynamoDB's TTL). Operators' tools (`latchkey doctor`) use their own credentials.
APPEND_ONLY_TABLES: dict[str, tuple[str, ...]] = {
    "AuditEvents": ("dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:Query", "dynamodb:DescribeTable"),
}
# MQTT client ids are thing names (the device policy allows no other): release/revoke/delete drop the
# device's live connection (iot-data DeleteConnection).
DISCONNECTS_DEVICES = ("OwnerApi",)
# Lambda's retries of an asynchronous (IoT rule) invocation before the event goes to the failure queue.
PRESENCE_ASYNC_RETRIES = 2


def _pip_command(target: str, requirements: str) -> list[str]:
    return [
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--platform",
        PIP_PLATFORM,
        "--implementation",
        "cp",
        "--python-version",
        PIP_PYTHON_VERSION,
        "--only-binary=:all:",
        "--require-hashes",
        "--target",
        target,
        "-r",
        requirements,
    ]


@jsii.implements(ILocalBundling)
class LocalPipBundling:
    """Bundle without Docker: pip fetches arm64/cp314 wheels for the deps, then `lambdas/` is copied."""

    def __init__(self, root: Path = REPO_ROOT, python: str = sys.executable) -> None:
        self.root = root
        self.python = python

    def try_bundle(self, output_dir: str, *_args: Any, **_kwargs: Any) -> bool:
        out = Path(output_dir)
        try:
            subprocess.run(
                [self.python, *_pip_command(str(out), str(self.root / REQUIREMENTS))],
                check=True,
                cwd=self.root,
            )
        except (OSError, subprocess.CalledProcessError) as error:
            print(f"local bundling failed ({error}); falling back to Docker", file=sys.stderr)
            for child in out.iterdir():  # leave an empty directory for the Docker bundler
                if child.is_dir():
                    shutil.rmtree(child)
                else:
                    child.unlink()
            return False
        shutil.rmtree(out / "bin", ignore_errors=True)  # console scripts of the deps: useless in Lambda
        for source in ASSET_SOURCES:
            target = out / source
            if (self.root / source).is_dir():
                shutil.copytree(
                    self.root / source,
                    target,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"),
                    dirs_exist_ok=True,
                )
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(self.root / source, target)
        return True


def lambda_code(settings: Settings) -> lambda_.Code:
    """One code asset for all functions: `lambdas/` (+ its requirements unless `-c bundle=false`)."""
    if not settings.bundle:
        return lambda_.Code.from_asset(str(REPO_ROOT), exclude=ASSET_EXCLUDE)
    docker_pip = " ".join(_pip_command("/asset-output", REQUIREMENTS)).replace("--quiet ", "")
    return lambda_.Code.from_asset(
        str(REPO_ROOT),
        exclude=ASSET_EXCLUDE,
        asset_hash_type=AssetHashType.SOURCE,  # lambdas/ incl. requirements.txt decides the hash
        bundling=BundlingOptions(
            image=RUNTIME.bundling_image,
            local=LocalPipBundling(),
            command=[
                "bash",
                "-c",
                f"python {docker_pip} --no-cache-dir && cp -r --parents {' '.join(ASSET_SOURCES)} /asset-output/ "
                "&& find /asset-output -name __pycache__ -prune -exec rm -rf {} +",
            ],
        ),
    )


@dataclass(frozen=True)
class IotNames:
    """The stack's own device policy and thing type (CloudFormation-generated names, infrastructure/iot.py)."""

    policy: str
    thing_type: str


class Functions(Construct):
    """One arm64 Python Lambda per `definitions.FUNCTIONS` entry, each with its own least-privilege role."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        tables: dict[str, dynamodb.Table],
        iot_names: IotNames,
        user_pool_id: str,
        user_pool_client_id: str,
    ) -> None:
        super().__init__(scope, construct_id)

        self.secret = secretsmanager.Secret(
            self,
            "ServiceSecret",
            description="Latchkey: claim-code HMAC key (claimCodeKey); own-CA mode adds caCertPem/caKeyPem",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template="{}",  # noqa: S106 - an empty JSON object, not a password
                generate_string_key="claimCodeKey",
                # 44 alphanumeric characters: valid base64 (33 bytes, ~262 bits of entropy).
                password_length=44,
                exclude_punctuation=True,
                include_space=False,
                require_each_included_type=True,
            ),
            removal_policy=RemovalPolicy.RETAIN,  # losing the key would orphan every printed claim code
        )
        acknowledge(
            self.secret,
            "AwsSolutions-SMG4",
            "Not rotatable by design: claimCodeKey is the HMAC key under which the claim codes printed on "
            "device labels are stored (only their keyed hashes are kept), so a new key would orphan every "
            "unclaimed device; the optional own-CA key pair is rotated by re-keying the CA, an operator "
            "procedure (docs/deploy.md). Access is limited to the two API functions' roles.",
        )

        code = lambda_code(settings)  # one asset for the service's functions and the setup function
        self.setup = self._service_setup(settings, code)

        environment = {
            c.ENV_SECRETS_ARN: self.secret.secret_arn,
            c.ENV_CERT_MODE: settings.cert_mode,
            c.ENV_IOT_POLICY_NAME: iot_names.policy,
            c.ENV_THING_TYPE_NAME: iot_names.thing_type,
            c.ENV_IOT_ENDPOINT: settings.iot_endpoint,
            c.ENV_CA_PEM: AMAZON_ROOT_CA_PEM,  # IoT Core's ATS endpoints chain to these roots
            c.ENV_USER_POOL_ID: user_pool_id,
            c.ENV_USER_POOL_CLIENT_ID: user_pool_client_id,
            c.ENV_PRODUCT_NAME: settings.product_name,
            c.ENV_CERT_VALIDITY_DAYS: str(settings.cert_validity_days),
            c.ENV_ROTATION_WINDOW_HOURS: str(settings.rotation_window_hours),
            "LATCHKEY_LOG_LEVEL": settings.log_level,
            "POWERTOOLS_SERVICE_NAME": "latchkey",
        }
        table_env = {spec.logical_id: spec.env_var for spec in definitions.TABLES}

        self.functions: dict[str, lambda_.Function] = {}
        self.log_groups: dict[str, logs.LogGroup] = {}
        for spec in definitions.FUNCTIONS:
            log_group = logs.LogGroup(self, f"{spec.logical_id}Logs", removal_policy=RemovalPolicy.DESTROY)
            log_group.node.default_child.retention_in_days = settings.log_retention_days  # type: ignore[union-attr]
            role = iam.Role(
                self,
                f"{spec.logical_id}Role",
                assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                description=f"Latchkey {spec.logical_id} function",
            )
            log_group.grant_write(role)
            function = lambda_.Function(
                self,
                spec.logical_id,
                description=spec.description or f"Latchkey {spec.logical_id}",
                runtime=RUNTIME,
                architecture=ARCHITECTURE,
                handler=spec.handler,
                code=code,
                memory_size=spec.memory_mb,
                timeout=Duration.seconds(spec.timeout_s),
                role=role,
                log_group=log_group,
                tracing=lambda_.Tracing.ACTIVE,
                environment={
                    **{table_env[name]: tables[name].table_name for name in spec.tables},
                    **environment,
                },
            )
            for name in spec.tables:
                if name in APPEND_ONLY_TABLES:
                    tables[name].grant(role, *APPEND_ONLY_TABLES[name])
                else:
                    tables[name].grant_read_write_data(role)
                if definitions_table(name).indexes:
                    acknowledge_wildcard_resource(
                        role,
                        f"{tables[name].table_arn}/index/*",
                        f"Queries on the {name} table's own global secondary indexes "
                        "(owner listings, claim-code and token lookups); no other table is reachable.",
                    )
            if spec.logical_id in READS_SECRET:
                self.secret.grant_read(role)
                # originVerify and the own CA are in the secret before the first request.
                function.node.add_dependency(self.setup)
            self._grant_iot(role, spec.logical_id, settings, iot_names)
            if spec.logical_id in READS_USER_POOL:
                # lambdas/adapters/cognito.py: the caller's email (access tokens carry none) and the
                # account behind an email; read-only, this stack's pool only.
                role.add_to_policy(
                    iam.PolicyStatement(
                        actions=["cognito-idp:AdminGetUser", "cognito-idp:ListUsers"],
                        resources=[
                            Stack.of(self).format_arn(
                                service="cognito-idp", resource="userpool", resource_name=user_pool_id
                            )
                        ],
                    )
                )
            acknowledge(
                role,
                "AwsSolutions-IAM5[Resource::*]",
                "X-Ray PutTraceSegments/PutTelemetryRecords (active tracing) and, where present, "
                "iot:DescribeEndpoint and iot:CreateCertificateFromCsr/RegisterCertificate: these actions "
                "support no resource-level permissions (the certificate does not exist before the call), "
                "so IAM only accepts Resource '*'.",
            )
            self.functions[spec.logical_id] = function
            self.log_groups[spec.logical_id] = log_group
        self.presence_failures = self._presence_failure_destination(self.functions["Presence"])

    def _presence_failure_destination(self, presence: lambda_.Function) -> sqs.Queue:
        """IoT rules invoke Presence asynchronously: events that still fail after Lambda's retries (or grow
        too old) land in this queue instead of vanishing; an alarm watches it (monitoring.py)."""
        queue = sqs.Queue(
            self,
            "PresenceFailures",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        acknowledge(
            queue,
            "AwsSolutions-SQS3",
            "This queue is itself the failure destination of the asynchronously invoked Presence function; "
            "nothing consumes it automatically, so it needs no dead-letter queue of its own.",
        )
        presence.configure_async_invoke(
            on_failure=destinations.SqsDestination(queue),
            retry_attempts=PRESENCE_ASYNC_RETRIES,
            max_event_age=Duration.hours(1),
        )
        return queue

    def _service_setup(self, settings: Settings, code: lambda_.Code) -> CustomResource:
        """Custom::LatchkeyServiceSetup (lambdas/handlers/service_setup.py), run each deploy."""
        log_group = logs.LogGroup(self, "ServiceSetupLogs", removal_policy=RemovalPolicy.DESTROY)
        log_group.node.default_child.retention_in_days = settings.log_retention_days  # type: ignore[union-attr]
        role = iam.Role(
            self,
            "ServiceSetupRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Latchkey deploy-time setup: complete the service secret, register the own CA",
        )
        log_group.grant_write(role)
        self.secret.grant_read(role)
        self.secret.grant_write(role)
        if settings.cert_mode == "own-ca":
            role.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="RegisterOwnCa", actions=["iot:RegisterCACertificate"], resources=["*"]
                )
            )
            ca_certs = Stack.of(self).format_arn(
                service="iot", resource="cacert", resource_name="*", arn_format=ArnFormat.SLASH_RESOURCE_NAME
            )
            role.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="FindOwnCa", actions=["iot:DescribeCACertificate"], resources=[ca_certs]
                )
            )
            acknowledge_wildcard_resource(
                role,
                ca_certs,
                "The setup looks up the CA it registered earlier by its id (recorded in the secret), which IoT "
                "assigns at registration; read-only, this account and region.",
            )
            acknowledge(
                role,
                "AwsSolutions-IAM5[Resource::*]",
                "iot:RegisterCACertificate has no resource-level permissions (the CA certificate does not "
                "exist before the call); the function runs only during deployments.",
            )
        function = lambda_.Function(
            self,
            "ServiceSetup",
            description="Latchkey deploy-time setup (custom resource): service secret and own CA",
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=SETUP_HANDLER,
            code=code,
            memory_size=256,
            timeout=Duration.seconds(60),
            role=role,
            log_group=log_group,
            environment={"LATCHKEY_LOG_LEVEL": settings.log_level},
        )
        return CustomResource(
            self,
            "ServiceSetupResource",
            service_token=function.function_arn,
            resource_type="Custom::LatchkeyServiceSetup",
            properties={
                "SecretArn": self.secret.secret_arn,
                "CertMode": settings.cert_mode,
                "CaGeneration": str(settings.ca_generation),
            },
        )

    def _grant_iot(self, role: iam.Role, function: str, settings: Settings, names: IotNames) -> None:
        stack = Stack.of(self)
        actions = IOT_ACTIONS.get(function, ())
        publishes = function in PUBLISHES_COMMANDS
        if not actions and not publishes and function not in USES_SHADOW:
            return

        def arn(resource: str, name: str) -> str:
            return stack.format_arn(
                service="iot", resource=resource, resource_name=name, arn_format=ArnFormat.SLASH_RESOURCE_NAME
            )

        things = arn("thing", f"{c.DEVICE_ID_PREFIX}*")
        things_reason = (
            "Things (and their shadows) are created per device at run time, so they cannot be named in "
            f"advance; the ARN is limited to this account, region and the '{c.DEVICE_ID_PREFIX}' device-id "
            "prefix, and the functions check ownership in DynamoDB before touching a device."
        )
        certs = arn("cert", "*")
        if actions:
            role.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="DeviceThingsAndCertificates",
                    actions=sorted(actions),
                    # IoT authorizes these on the thing, the certificate or (AttachPolicy) the target
                    # certificate; the policy is the one device policy of the stack.
                    resources=[
                        things,
                        certs,
                        arn("thingtype", names.thing_type),
                        arn("policy", names.policy),
                    ],
                )
            )
            acknowledge_wildcard_resource(role, things, things_reason)
            acknowledge_wildcard_resource(
                role,
                certs,
                "Certificate ids are derived from certificates issued at run time (one per device), so they "
                "cannot be named in advance; the ARN is limited to this account and region.",
            )
            unscoped = ["iot:DescribeEndpoint"]
            if function in ISSUES_CERTIFICATES:
                unscoped.append(ISSUE_ACTION[settings.cert_mode])
            role.add_to_principal_policy(
                iam.PolicyStatement(sid="NoResourceLevelPermissions", actions=unscoped, resources=["*"])
            )
        if function in USES_SHADOW:
            role.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="DeviceShadow",
                    # Delete: a transfer starts the new owner without the old shadow (lambdas/logic/transfer.py).
                    actions=["iot:GetThingShadow", "iot:UpdateThingShadow", "iot:DeleteThingShadow"],
                    resources=[things],
                )
            )
            if not actions:
                acknowledge_wildcard_resource(role, things, things_reason)
        if function in DISCONNECTS_DEVICES:
            clients = arn("client", f"{c.DEVICE_ID_PREFIX}*")
            role.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="DisconnectDevices", actions=["iot:DeleteConnection"], resources=[clients]
                )
            )
            acknowledge_wildcard_resource(
                role,
                clients,
                "Drops the live MQTT connection of a device being revoked, released or deleted; MQTT client "
                f"ids are device ids known only at run time, limited to the '{c.DEVICE_ID_PREFIX}' prefix in "
                "this account and region, and ownership is checked in DynamoDB first.",
            )
        if publishes:
            commands = definitions.device_topics("*")["commands"]
            topic = arn("topic", commands)
            role.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="PublishDeviceCommands",
                    actions=["iot:Publish", "iot:RetainPublish"],
                    resources=[topic],
                )
            )
            if not actions:
                role.add_to_principal_policy(
                    iam.PolicyStatement(
                        sid="NoResourceLevelPermissions", actions=["iot:DescribeEndpoint"], resources=["*"]
                    )
                )
            acknowledge_wildcard_resource(
                role,
                topic,
                "Publishes only to the per-device commands topic (release/revoke tell the agent to wipe its "
                "credentials); the wildcard stands for the device id, which is known only at run time.",
            )


def definitions_table(logical_id: str) -> definitions.Table:
    return next(spec for spec in definitions.TABLES if spec.logical_id == logical_id)
