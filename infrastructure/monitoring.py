"""Alarms (Lambda errors and throttles per function, API 5xx) into an SNS topic."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infrastructure.settings import Settings

PERIOD = Duration.minutes(5)
API_5XX_THRESHOLD = 5  # per 5 minutes; a single 5xx is noise, a handful is an incident


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        functions: dict[str, lambda_.Function],
        http_api: apigwv2.HttpApi,
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(self, "Alarms", display_name="Latchkey alarms", enforce_ssl=True)
        if settings.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(settings.alarm_email))
        action = actions.SnsAction(self.topic)

        self.alarms: list[cloudwatch.Alarm] = []
        for name, function in functions.items():
            self._alarm(
                f"{name}Errors",
                function.metric_errors(period=PERIOD, statistic="Sum"),
                threshold=1,
                description=f"{name}: the function raised or timed out (see its log group)",
                action=action,
            )
            self._alarm(
                f"{name}Throttles",
                function.metric_throttles(period=PERIOD, statistic="Sum"),
                threshold=1,
                description=f"{name}: invocations throttled (account or reserved concurrency exhausted)",
                action=action,
            )
        self._alarm(
            "Api5xx",
            http_api.metric_server_error(period=PERIOD, statistic="Sum"),
            threshold=API_5XX_THRESHOLD,
            description="HTTP API answered 5xx (function errors, timeouts or integration failures)",
            action=action,
        )

    def _alarm(
        self,
        construct_id: str,
        metric: cloudwatch.Metric,
        *,
        threshold: float,
        description: str,
        action: actions.SnsAction,
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
        alarm.add_alarm_action(action)
        alarm.add_ok_action(action)
        self.alarms.append(alarm)
