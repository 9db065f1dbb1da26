"""Alarms into one SNS topic (subscribe with `-c alarmEmail=...`); docs/deploy.md says what each means.

Per stack: Lambda errors and throttles per function, API 5xx, DynamoDB throttles per table, IoT rule
errors (the rules' error-action log), presence events that failed for good. Per account and region (only in the stack that
owns IoT logging, `iotLogging`): IoT Core authentication and authorization failures, which IoT reports
for the whole account.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infrastructure.settings import Settings

PERIOD = Duration.minutes(5)
API_5XX_THRESHOLD = 5  # per 5 minutes; a single 5xx is noise, a handful is an incident
# IoT authN/authZ failures per 5 minutes, account-wide. Internet scanners and a device with a revoked
# certificate retrying produce a few; a stream of them is an attack or a fleet-wide credential problem.
IOT_AUTH_FAILURE_THRESHOLD = 20
# AWS/IoT metric names (docs/deploy.md cites the metrics page): authentication of connections, then the
# message broker's authorization failures of CONNECT, PUBLISH and SUBSCRIBE.
IOT_AUTH_METRICS = {
    "authn": "Connection.AuthNError",
    "connectAuthz": "Connect.AuthError",
    "publishAuthz": "PublishIn.AuthError",
    "subscribeAuthz": "Subscribe.AuthError",
}


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        functions: dict[str, lambda_.Function],
        http_api: apigwv2.HttpApi,
        tables: dict[str, dynamodb.Table],
        rule_error_logs: logs.ILogGroup,
        presence_failures: sqs.IQueue,
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(self, "Alarms", display_name="Latchkey alarms", enforce_ssl=True)
        if settings.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(settings.alarm_email))
        self.action = actions.SnsAction(self.topic)
        self.alarms: dict[str, cloudwatch.Alarm] = {}

        for name, function in functions.items():
            self._alarm(
                f"{name}Errors",
                function.metric_errors(period=PERIOD, statistic="Sum"),
                threshold=1,
                description=f"{name}: the function raised or timed out (see its log group)",
            )
            self._alarm(
                f"{name}Throttles",
                function.metric_throttles(period=PERIOD, statistic="Sum"),
                threshold=1,
                description=f"{name}: invocations throttled (account or reserved concurrency exhausted)",
            )
        self._alarm(
            "Api5xx",
            http_api.metric_server_error(period=PERIOD, statistic="Sum"),
            threshold=API_5XX_THRESHOLD,
            description="HTTP API answered 5xx (function errors, timeouts or integration failures)",
        )
        for name, table in tables.items():
            throttles = cloudwatch.MathExpression(
                expression="reads + writes",
                using_metrics={
                    "reads": table.metric("ReadThrottleEvents", period=PERIOD, statistic="Sum"),
                    "writes": table.metric("WriteThrottleEvents", period=PERIOD, statistic="Sum"),
                },
                period=PERIOD,
                label=f"{name} throttle events",
            )
            self._alarm(
                f"{name}Throttles",
                throttles,
                threshold=1,
                description=f"DynamoDB throttled requests on the {name} table (on-demand peak or a hot key)",
            )
        # Every failed rule action reaches the rules' error action, which writes one event to the
        # RuleErrors log group: counting those is independent of IoT's metric dimensions.
        rule_errors = logs.MetricFilter(
            self,
            "IotRuleErrorEvents",
            log_group=rule_error_logs,
            filter_pattern=logs.FilterPattern.all_events(),
            metric_namespace=f"Latchkey/{Stack.of(self).stack_name}",
            metric_name="IotRuleErrors",
            metric_value="1",
        )
        self._alarm(
            "IotRuleErrors",
            rule_errors.metric(period=PERIOD, statistic="Sum"),
            threshold=1,
            description="an IoT presence rule could not invoke Presence (see the RuleErrors log group)",
        )
        self._alarm(
            "PresenceFailures",
            presence_failures.metric_approximate_number_of_messages_visible(
                period=PERIOD, statistic="Maximum"
            ),
            threshold=1,
            description="presence events that failed after Lambda's retries are waiting in the failure queue",
        )
        if settings.iot_logging:
            failures = cloudwatch.MathExpression(
                expression=" + ".join(f"FILL({key}, 0)" for key in IOT_AUTH_METRICS),
                using_metrics={
                    key: cloudwatch.Metric(
                        namespace="AWS/IoT",
                        metric_name=metric,
                        dimensions_map={"Protocol": "MQTT"},
                        period=PERIOD,
                        statistic="Sum",
                    )
                    for key, metric in IOT_AUTH_METRICS.items()
                },
                period=PERIOD,
                label="IoT authentication and authorization failures (account)",
            )
            self._alarm(
                "IotAuthFailures",
                failures,
                threshold=IOT_AUTH_FAILURE_THRESHOLD,
                description="IoT Core refused connections or messages (bad certificates, policy denials); "
                "account-wide, details in the AWSIotLogsV2 log group",
            )

    def _alarm(
        self,
        construct_id: str,
        metric: cloudwatch.Metric | cloudwatch.MathExpression,
        *,
        threshold: float,
        description: str,
    ) -> None:
        alarm = metric.create_alarm(
            self,
            construct_id,
            alarm_description=f"Latchkey {description}",
            threshold=threshold,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(self.action)
        alarm.add_ok_action(self.action)
        self.alarms[construct_id] = alarm
