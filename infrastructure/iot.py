"""IoT Core: the thing type, the device policy and the rules that feed presence."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_iot as iot
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infrastructure.settings import Settings
from lambdas import constants as c
from lambdas import definitions

# IoT Core lifecycle events: $aws/events/presence/connected/<clientId>, .../disconnected/<clientId>.
PRESENCE_EVENTS_FILTER = "$aws/events/presence/+/+"


def rule_sql(topic_filter: str) -> str:
    """Everything the device (or IoT Core) sent, plus the topic and the broker's receive time (ms)."""
    # IoT SQL over our own constant topic filters, not user input.
    return f"SELECT *, topic() AS topic, timestamp() AS receivedAt FROM '{topic_filter}'"  # noqa: S608


class Iot(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, settings: Settings, presence: lambda_.IFunction
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)

        self.thing_type = iot.CfnThingType(
            self,
            "ThingType",
            thing_type_name=definitions.THING_TYPE_NAME,
            thing_type_properties=iot.CfnThingType.ThingTypePropertiesProperty(
                thing_type_description="A device provisioned by Latchkey"
            ),
        )
        # A device may connect only as its own thing and use only its own topics (policy variables).
        self.policy = iot.CfnPolicy(
            self,
            "DevicePolicy",
            policy_name=definitions.POLICY_NAME,
            policy_document=definitions.device_policy_document(stack.region, stack.account),
        )

        # Rule failures (e.g. the function throttled) land in a log group instead of vanishing.
        self.error_logs = logs.LogGroup(self, "RuleErrors", removal_policy=RemovalPolicy.DESTROY)
        self.error_logs.node.default_child.retention_in_days = settings.log_retention_days  # type: ignore[union-attr]
        error_role = iam.Role(
            self,
            "RuleErrorRole",
            assumed_by=iam.ServicePrincipal(
                "iot.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": stack.account}}
            ),
            description="Latchkey IoT rules: write rule errors to CloudWatch Logs",
        )
        self.error_logs.grant_write(error_role)

        self.rules: dict[str, iot.CfnTopicRule] = {}
        for rule_id, topic_filter, description in (
            ("StatusRule", c.TOPIC_STATUS_FILTER, "Device status messages to the Presence function"),
            (
                "LifecycleRule",
                PRESENCE_EVENTS_FILTER,
                "IoT connect/disconnect events to the Presence function",
            ),
        ):
            rule = iot.CfnTopicRule(
                self,
                rule_id,
                topic_rule_payload=iot.CfnTopicRule.TopicRulePayloadProperty(
                    sql=rule_sql(topic_filter),
                    aws_iot_sql_version="2016-03-23",
                    description=description,
                    rule_disabled=False,
                    actions=[
                        iot.CfnTopicRule.ActionProperty(
                            lambda_=iot.CfnTopicRule.LambdaActionProperty(function_arn=presence.function_arn)
                        )
                    ],
                    error_action=iot.CfnTopicRule.ActionProperty(
                        cloudwatch_logs=iot.CfnTopicRule.CloudwatchLogsActionProperty(
                            log_group_name=self.error_logs.log_group_name,
                            role_arn=error_role.role_arn,
                        )
                    ),
                ),
            )
            presence.add_permission(
                f"Invoke{rule_id}",
                principal=iam.ServicePrincipal("iot.amazonaws.com"),
                source_arn=rule.attr_arn,
                source_account=stack.account,
            )
            self.rules[rule_id] = rule
