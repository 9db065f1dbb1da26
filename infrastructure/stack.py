"""`LatchkeyStack`: data, auth, functions, api, iot, web and monitoring, wired together."""

from __future__ import annotations

import re
from typing import Any

from aws_cdk import App, CfnOutput, Stack, Validations
from aws_cdk import aws_lambda as lambda_
from cdk_nag import AwsSolutionsChecks
from constructs import Construct

from infrastructure.api import Api
from infrastructure.auth import Auth
from infrastructure.data import Data
from infrastructure.functions import Functions, IotNames
from infrastructure.iot import Iot
from infrastructure.monitoring import Monitoring
from infrastructure.settings import Settings
from infrastructure.web import Web
from lambdas import constants as c

STACK_NAME = "LatchkeyStack"  # the default; `-c stackName=LatchkeyStaging` deploys a second one beside it
# CloudFormation's stack-name rule, shortened so that names derived from it stay within IoT's 128 characters.
STACK_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,63}$")


class LatchkeyStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, **kwargs: Any) -> None:
        super().__init__(
            scope,
            construct_id,
            description="Latchkey: AWS IoT device claiming and provisioning",
            **kwargs,
        )
        self.settings = settings = Settings.from_context(self)

        self.data = Data(self, "Data")
        self.auth = Auth(self, "Auth", settings=settings)
        self.iot = Iot(self, "Iot", settings=settings)
        self.functions = Functions(
            self,
            "Functions",
            settings=settings,
            tables=self.data.tables,
            iot_names=IotNames(policy=self.iot.policy_name, thing_type=self.iot.thing_type_name),
            user_pool_id=self.auth.user_pool.user_pool_id,
            user_pool_client_id=self.auth.client.user_pool_client_id,
        )
        self.api = Api(
            self,
            "Api",
            settings=settings,
            functions=self.functions.functions,
            user_pool=self.auth.user_pool,
            user_pool_client=self.auth.client,
        )
        self.iot.add_presence_rules(self.functions.functions["Presence"])
        self.web = Web(
            self,
            "Web",
            settings=settings,
            api_domain_name=self.api.domain_name,
            # A CloudFormation dynamic reference: resolved at deploy time, never in the template.
            origin_verify=self.functions.secret.secret_value_from_json(
                c.SECRET_ORIGIN_VERIFY_KEY
            ).unsafe_unwrap(),
            user_pool_id=self.auth.user_pool.user_pool_id,
            user_pool_client_id=self.auth.client.user_pool_client_id,
        )
        # The dynamic reference needs the originVerify key, which the setup custom resource adds.
        self.web.distribution.node.add_dependency(self.functions.setup)
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            settings=settings,
            functions=self.functions.functions,
            http_api=self.api.http_api,
            tables=self.data.tables,
            rule_error_logs=self.iot.error_logs,
            presence_failures=self.functions.presence_failures,
        )

        for construct in self.node.find_all():
            if isinstance(construct, lambda_.CfnFunction):
                # aws-cdk-lib adds DependsOn on the execution role next to the GetAtt of its ARN; cfn-lint
                # warns about the redundancy (W3005). Harmless, and not ours to change.
                construct.add_metadata("cfn-lint", {"config": {"ignore_checks": ["W3005"]}})

        CfnOutput(self, "ApiUrl", value=self.api.url, description="HTTP API (device and owner routes)")
        CfnOutput(
            self,
            "WebUrl",
            value=f"https://{self.web.distribution.distribution_domain_name}/",
            description="Claim page; its /v1/* is the same API",
        )
        CfnOutput(self, "UserPoolId", value=self.auth.user_pool.user_pool_id)
        CfnOutput(self, "UserPoolClientId", value=self.auth.client.user_pool_client_id)
        CfnOutput(self, "SecretsArn", value=self.functions.secret.secret_arn, description="Service secret")
        CfnOutput(self, "CertMode", value=settings.cert_mode)
        CfnOutput(self, "IotPolicyName", value=self.iot.policy_name, description="Device policy (retained)")
        CfnOutput(self, "ThingTypeName", value=self.iot.thing_type_name, description="Thing type (retained)")
        # The CLI (cli/env.py) finds the tables by these names: "<logical id>TableName".
        for logical_id, table in self.data.tables.items():
            CfnOutput(self, f"{logical_id}TableName", value=table.table_name)
        CfnOutput(self, "AlarmTopicArn", value=self.monitoring.topic.topic_arn)
        CfnOutput(
            self,
            "PresenceFailuresQueueUrl",
            value=self.functions.presence_failures.queue_url,
            description="Presence events that failed after Lambda's retries",
        )


def add_checks(app: App) -> None:
    """cdk-nag's AwsSolutions pack as a CDK policy-validation plugin: any finding fails the synth.

    Acknowledgments are also written into the template (`Metadata.cdk_nag.rules_to_suppress` of each
    resource), so the deployed template carries its own audit trail of accepted findings and reasons.
    """
    Validations.of(app).add_plugins(AwsSolutionsChecks(app, write_suppressions_to_cloud_formation=True))


def stack_name(app: App) -> str:
    name = str(app.node.try_get_context("stackName") or STACK_NAME)
    if not STACK_NAME_PATTERN.match(name):
        raise ValueError(f"stackName must be a letter then up to 63 letters, digits or hyphens, not {name!r}")
    return name


def build(app: App, name: str | None = None, **kwargs: Any) -> LatchkeyStack:
    """The app as `cdk synth` builds it: the stack plus cdk-nag's AwsSolutions checks."""
    stack = LatchkeyStack(app, name or stack_name(app), **kwargs)
    add_checks(app)
    return stack
