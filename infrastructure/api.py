"""The HTTP API of `definitions.ROUTES`: JWT authorizer on owner routes, throttling, access logs."""

from __future__ import annotations

import json
from collections.abc import Mapping

import jsii
from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infrastructure.nag import acknowledge
from infrastructure.settings import Settings
from lambdas import definitions

ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId",
    "ip": "$context.identity.sourceIp",
    "requestTime": "$context.requestTime",
    "routeKey": "$context.routeKey",
    "path": "$context.path",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "responseLatency": "$context.responseLatency",
    "integrationLatency": "$context.integrationLatency",
    "integrationError": "$context.integrationErrorMessage",
    "authorizerError": "$context.authorizer.error",
    "userAgent": "$context.identity.userAgent",
}


def _throttle(route: definitions.Route) -> tuple[float, int]:
    # Unauthenticated routes (device API, OpenAPI document) get the device budget, owner routes the owner one.
    if route.route_key == "POST /v1/device/poll":
        return definitions.DEVICE_POLL_THROTTLE
    return definitions.OWNER_ROUTE_THROTTLE if route.auth else definitions.DEVICE_ROUTE_THROTTLE


class Api(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        functions: Mapping[str, lambda_.IFunction],
        user_pool: cognito.IUserPool,
        user_pool_client: cognito.IUserPoolClient,
    ) -> None:
        super().__init__(scope, construct_id)
        self.http_api = apigwv2.HttpApi(
            self,
            "HttpApi",
            description="Latchkey device and owner API",
            create_default_stage=False,
        )
        # issuer = the user pool, audience = the app client; identity source: the Authorization header.
        self.authorizer = authorizers.HttpUserPoolAuthorizer(
            "OwnerJwt", user_pool, user_pool_clients=[user_pool_client]
        )
        lambda_integrations = {
            name: integrations.HttpLambdaIntegration(f"{name}Integration", fn)
            for name, fn in functions.items()
        }

        self.routes: dict[str, apigwv2.HttpRoute] = {}
        for route in definitions.ROUTES:
            (http_route,) = self.http_api.add_routes(
                path=route.path,
                methods=[apigwv2.HttpMethod(route.method)],
                integration=lambda_integrations[route.function],
                authorizer=self.authorizer if route.auth else apigwv2.HttpNoneAuthorizer(),
            )
            self.routes[route.route_key] = http_route
            if not route.auth:
                acknowledge(
                    http_route,
                    "AwsSolutions-APIG4",
                    "Deliberately without user authorization: device routes authenticate each request "
                    "in the function by the device's signature (private key never leaves the device) or "
                    "the single-use registration token, and GET /v1/openapi.json is the public API document.",
                )

        self.access_logs = logs.LogGroup(self, "AccessLogs", removal_policy=RemovalPolicy.DESTROY)
        self.access_logs.node.default_child.retention_in_days = settings.log_retention_days  # type: ignore[union-attr]
        owner_rate, owner_burst = definitions.OWNER_ROUTE_THROTTLE
        self.stage = apigwv2.HttpStage(
            self,
            "DefaultStage",
            http_api=self.http_api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(rate_limit=owner_rate, burst_limit=owner_burst),
            access_log_settings=_JsonAccessLogs(self.access_logs),
        )
        cfn_stage: apigwv2.CfnStage = self.stage.node.default_child  # type: ignore[assignment]
        route_settings = {}
        for route in definitions.ROUTES:
            rate, burst = _throttle(route)
            route_settings[route.route_key] = {"ThrottlingRateLimit": rate, "ThrottlingBurstLimit": burst}
        cfn_stage.add_property_override("RouteSettings", route_settings)
        for http_route in self.routes.values():
            # Route settings name route keys: the routes must exist before the stage refers to them.
            self.stage.node.add_dependency(http_route)

    @property
    def url(self) -> str:
        """`https://<id>.execute-api.<region>.amazonaws.com/` (the routes start with /v1/)."""
        return self.stage.url

    @property
    def domain_name(self) -> str:
        return f"{self.http_api.api_id}.execute-api.{self.http_api.stack.region}.{self.http_api.stack.url_suffix}"


@jsii.implements(apigwv2.IAccessLogSettings)
class _JsonAccessLogs:
    """Access logs as JSON lines (ACCESS_LOG_FORMAT) into a CloudWatch log group."""

    def __init__(self, log_group: logs.ILogGroup) -> None:
        self._destination = apigwv2.LogGroupLogDestination(log_group)
        self._format = apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FORMAT))

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw.AccessLogFormat:
        return self._format
