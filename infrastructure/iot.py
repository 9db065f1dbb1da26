"""IoT Core: the thing type, the device policy and the rules that feed presence.

Every name here is this stack's own: the policy and the thing type get names CloudFormation derives from
the stack name (so staging and production can share an account and region), and the topic rules pass on
only messages of things of this stack's thing type. The topics themselves cannot be scoped: lifecycle
events are always `$aws/events/presence/...`, and thing names (= device ids) are unique per account and
region anyway.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_iot as iot
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infrastructure.nag import acknowledge_wildcard_resource
from infrastructure.settings import Settings
from lambdas import constants as c
from lambdas import definitions

# IoT Core lifecycle events: $aws/events/presence/connected/<clientId>, .../disconnected/<clientId>.
PRESENCE_EVENTS_FILTER = "$aws/events/presence/+/+"
# Where each rule finds the thing name: the status topic's "+" level, the lifecycle event's clientId
# (a device may connect only with its thing name as client id, definitions.device_policy_document).
STATUS_THING = f"topic({c.TOPIC_STATUS_FILTER.split('/').index('+') + 1})"
LIFECYCLE_THING = "clientId"


def rule_sql(topic_filter: str, thing: str | None = None, thing_type: str = "", role_arn: str = "") -> str:
    """Everything the device (or IoT Core) sent, plus the topic and the broker's receive time (ms).

    With `thing`, only messages of things of `thing_type` pass: `get_registry_data` reads the thing's
    registry entry (DescribeThing) with `role_arn`.
    """
    # IoT SQL over our own constant topic filters and stack-generated names, not user input.
    sql = f"SELECT *, topic() AS topic, timestamp() AS receivedAt FROM '{topic_filter}'"  # noqa: S608
    if thing is None:
        return sql
    return f"{sql} WHERE get_registry_data('DescribeThing', {thing}, '{role_arn}').thingTypeName = '{thing_type}'"


class Iot(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings) -> None:
        super().__init__(scope, construct_id)
        self.settings = settings

        # Names left to CloudFormation: "<stack>-ThingType...-<random>". Both are retained: certificates
        # and things created at run time use them, and CloudFormation cannot delete a policy that is still
        # attached (docs/deploy.md "Deleting").
        self.thing_type = iot.CfnThingType(
            self,
            "ThingType",
            thing_type_properties=iot.CfnThingType.ThingTypePropertiesProperty(
                thing_type_description="A device provisioned by Latchkey"
            ),
        )
        self.thing_type.apply_removal_policy(RemovalPolicy.RETAIN)
        # A device may connect only as its own thing and use only its own topics (policy variables).
        stack = Stack.of(self)
        self.policy = iot.CfnPolicy(
            self,
            "DevicePolicy",
            policy_document=definitions.device_policy_document(stack.region, stack.account, stack.partition),
        )
        self.policy.apply_removal_policy(RemovalPolicy.RETAIN)
        self.rules: dict[str, iot.CfnTopicRule] = {}
        self.logging = self._logging(settings) if settings.iot_logging else None

    def _logging(self, settings: Settings) -> iot.CfnLogging:
        """IoT Core's own log (group AWSIotLogsV2): failed connects, authorization denials, rule errors."""
        stack = Stack.of(self)
        log_groups = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name="AWSIotLogsV2:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        role = iam.Role(
            self,
            "LoggingRole",
            assumed_by=iam.ServicePrincipal(
                "iot.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": stack.account}}
            ),
            description="IoT Core logging (set by Latchkey): write to the AWSIotLogsV2 log group",
            inline_policies={
                "WriteIotLogs": iam.PolicyDocument(
                    statements=[
                        iam.PolicyStatement(
                            actions=[
                                "logs:CreateLogGroup",
                                "logs:CreateLogStream",
                                "logs:PutLogEvents",
                                "logs:PutMetricFilter",
                                "logs:PutRetentionPolicy",
                            ],
                            resources=[log_groups],
                        )
                    ]
                )
            },
        )
        acknowledge_wildcard_resource(
            role,
            log_groups,
            "IoT Core writes its log streams (one per connection source, named by IoT at run time) into "
            "the fixed AWSIotLogsV2 log group; the ARN allows that group only.",
        )
        return iot.CfnLogging(
            self,
            "Logging",
            account_id=stack.account,
            default_log_level=settings.iot_log_level,
            role_arn=role.role_arn,
        )

    @property
    def thing_type_name(self) -> str:
        return self.thing_type.ref

    @property
    def policy_name(self) -> str:
        return self.policy.ref

    def add_presence_rules(self, presence: lambda_.IFunction) -> None:
        """Status messages and lifecycle events of this stack's things, to the Presence function."""
        stack = Stack.of(self)
        # Rule failures (e.g. the function throttled) land in a log group instead of vanishing.
        self.error_logs = logs.LogGroup(self, "RuleErrors", removal_policy=RemovalPolicy.DESTROY)
        self.error_logs.node.default_child.retention_in_days = self.settings.log_retention_days  # type: ignore[union-attr]
        error_role = iam.Role(
            self,
            "RuleErrorRole",
            assumed_by=iam.ServicePrincipal(
                "iot.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": stack.account}}
            ),
            description="Latchkey IoT rules: write rule errors to CloudWatch Logs",
        )
        self.error_logs.grant_write(error_role)

        things = stack.format_arn(service="iot", resource="thing", resource_name=f"{c.DEVICE_ID_PREFIX}*")
        registry_role = iam.Role(
            self,
            "RuleRegistryRole",
            assumed_by=iam.ServicePrincipal(
                "iot.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": stack.account}}
            ),
            description="Latchkey IoT rules: read a thing's type to keep only this stack's devices",
            inline_policies={
                "DescribeDeviceThings": iam.PolicyDocument(
                    statements=[iam.PolicyStatement(actions=["iot:DescribeThing"], resources=[things])]
                )
            },
        )
        acknowledge_wildcard_resource(
            registry_role,
            things,
            "The rules look up the thing that sent a message, known only at run time; the ARN is limited to "
            f"this account, region and the '{c.DEVICE_ID_PREFIX}' device-id prefix, and the only action is "
            "iot:DescribeThing.",
        )

        for rule_id, topic_filter, thing, description in (
            (
                "StatusRule",
                c.TOPIC_STATUS_FILTER,
                STATUS_THING,
                "Device status messages to the Presence function",
            ),
            (
                "LifecycleRule",
                PRESENCE_EVENTS_FILTER,
                LIFECYCLE_THING,
                "IoT connect/disconnect events to the Presence function",
            ),
        ):
            rule = iot.CfnTopicRule(
                self,
                rule_id,
                topic_rule_payload=iot.CfnTopicRule.TopicRulePayloadProperty(
                    sql=rule_sql(topic_filter, thing, self.thing_type_name, registry_role.role_arn),
                    aws_iot_sql_version="2016-03-23",
                    description=f"{description} (things of this stack's thing type only)",
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
