"""`LatchkeyStack`: data, auth, functions, api, iot, web and monitoring, wired together."""

from __future__ import annotations

from typing import Any

from aws_cdk import App, CfnOutput, Stack, Validations
from aws_cdk import aws_lambda as lambda_
from cdk_nag import AwsSolutionsChecks
from constructs import Construct

from infrastructure.api import Api
from infrastructure.auth import Auth
from infrastructure.data import Data
from infrastructure.functions import Functions
from infrastructure.iot import Iot
from infrastructure.monitoring import Monitoring
from infrastructure.settings import Settings
from infrastructure.web import Web

STACK_NAME = "LatchkeyStack"


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
        self.functions = Functions(
            self,
            "Functions",
            settings=settings,
            tables=self.data.tables,
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
        self.iot = Iot(self, "Iot", settings=settings, presence=self.functions.functions["Presence"])
        for function in self.functions.functions.values():
            # Provisioning attaches the policy and names the thing type: both exist before any function runs.
            function.node.add_dependency(self.iot.policy, self.iot.thing_type)
        self.web = Web(
            self,
            "Web",
            settings=settings,
            api_domain_name=self.api.domain_name,
            user_pool_id=self.auth.user_pool.user_pool_id,
            user_pool_client_id=self.auth.client.user_pool_client_id,
        )
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            settings=settings,
            functions=self.functions.functions,
            http_api=self.api.http_api,
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
        # The CLI (cli/env.py) finds the tables by these names: "<logical id>TableName".
        for logical_id, table in self.data.tables.items():
            CfnOutput(self, f"{logical_id}TableName", value=table.table_name)
        CfnOutput(self, "AlarmTopicArn", value=self.monitoring.topic.topic_arn)


def add_checks(app: App) -> None:
    """cdk-nag's AwsSolutions pack as a CDK policy-validation plugin: any finding fails the synth.

    Acknowledgments are also written into the template (`Metadata.cdk_nag.rules_to_suppress` of each
    resource), so the deployed template carries its own audit trail of accepted findings and reasons.
    """
    Validations.of(app).add_plugins(AwsSolutionsChecks(app, write_suppressions_to_cloud_formation=True))


def build(app: App) -> LatchkeyStack:
    """The app as `cdk synth` builds it: the stack plus cdk-nag's AwsSolutions checks."""
    stack = LatchkeyStack(app, STACK_NAME)
    add_checks(app)
    return stack
