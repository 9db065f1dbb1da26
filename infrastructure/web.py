"""The claim page: private S3 bucket behind CloudFront (OAC), and `/v1/*` routed to the HTTP API.

Page and API share one origin, so the page calls the API with relative URLs (`apiUrl` is "") and needs
no CORS. `config.json` is generated at deploy time with the same keys the local cloud serves.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import DefaultStackSynthesizer, Duration, Stack
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from constructs import Construct

from infrastructure.nag import acknowledge, acknowledge_wildcard_resource
from infrastructure.settings import Settings
from lambdas import constants as c

API_PATH_PATTERN = "/v1/*"
CONFIG_PATH = "/config.json"
# Viewer headers the API reads (devices sign with X-*; bodies are JSON). Host must not be forwarded (API
# Gateway routes by it), and Authorization cannot be in an origin request policy: it is in the cache key.
API_VIEWER_HEADERS = ("x-device-id", "x-timestamp", "x-signature", "content-type", "accept", "user-agent")
# Set by CloudFront itself ("ip:port" of the viewer); lambdas/http.py believes it only with the origin secret.
VIEWER_ADDRESS_HEADER = "CloudFront-Viewer-Address"
# The error codes CloudFront caches (10 s by default): an API error must never be served to someone else.
CACHED_ERROR_CODES = (400, 403, 404, 405, 414, 416, 500, 501, 502, 503, 504)


def site_files(web_dir: Path) -> list[Path]:
    """The files the page ships; none yet (or no directory) means only config.json is deployed."""
    if not web_dir.is_dir():
        return []
    return sorted(p for p in web_dir.rglob("*") if p.is_file() and not p.name.startswith("."))


def site_config(
    *, region: str, user_pool_id: str, user_pool_client_id: str, product_name: str, logo_url: str
) -> dict[str, str]:
    """`/config.json` for the page: same origin for the API, Cognito's regional endpoint."""
    return {
        "apiUrl": "",
        "cognitoEndpoint": f"https://cognito-idp.{region}.amazonaws.com/",
        "region": region,
        "userPoolId": user_pool_id,
        "userPoolClientId": user_pool_client_id,
        "productName": product_name,
        "logoUrl": logo_url,
    }


class Web(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        api_domain_name: str,
        origin_verify: str,
        user_pool_id: str,
        user_pool_client_id: str,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)

        # Access logs of the site bucket and of CloudFront. Standard CloudFront logging writes with ACLs,
        # hence OBJECT_WRITER ownership; public access stays blocked.
        self.log_bucket = s3.Bucket(
            self,
            "AccessLogs",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.OBJECT_WRITER,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(90))],
        )
        acknowledge(
            self.log_bucket,
            "AwsSolutions-S1",
            "This bucket is the access-log destination of the site bucket and the distribution; logging "
            "its own accesses into itself would loop, and it holds only logs (expired after 90 days).",
        )

        self.bucket = s3.Bucket(
            self,
            "Site",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.log_bucket,
            server_access_logs_prefix="site/",
        )

        # The origin-verify header proves to the functions that a request came through this distribution,
        # so only then do they believe CloudFront-Viewer-Address (a direct caller could forge both headers
        # but not the secret value). CloudFront overwrites a viewer header of the same name.
        api_origin = origins.HttpOrigin(
            api_domain_name,
            protocol_policy=cloudfront.OriginProtocolPolicy.HTTPS_ONLY,
            origin_ssl_protocols=[cloudfront.OriginSslPolicy.TLS_V1_2],
            custom_headers={c.HEADER_ORIGIN_VERIFY: origin_verify},
        )
        # Nothing of the API is cached: TTL 0 unless the API says otherwise (it does not), at most 1 s,
        # and the owner's token is part of the key. A TTL above 0 is what lets Authorization be forwarded.
        self.api_cache_policy = cloudfront.CachePolicy(
            self,
            "ApiCachePolicy",
            comment="Latchkey /v1/*: no caching; Authorization forwarded as part of the cache key",
            default_ttl=Duration.seconds(0),
            min_ttl=Duration.seconds(0),
            max_ttl=Duration.seconds(1),
            header_behavior=cloudfront.CacheHeaderBehavior.allow_list("Authorization"),
            query_string_behavior=cloudfront.CacheQueryStringBehavior.all(),
            cookie_behavior=cloudfront.CacheCookieBehavior.none(),
        )
        self.api_request_policy = cloudfront.OriginRequestPolicy(
            self,
            "ApiOriginRequestPolicy",
            comment="Latchkey /v1/*: the API's headers and the viewer's address, never Host",
            header_behavior=cloudfront.OriginRequestHeaderBehavior.allow_list(
                *API_VIEWER_HEADERS, VIEWER_ADDRESS_HEADER
            ),
            query_string_behavior=cloudfront.OriginRequestQueryStringBehavior.all(),
            cookie_behavior=cloudfront.OriginRequestCookieBehavior.none(),
        )
        site_origin = origins.S3BucketOrigin.with_origin_access_control(self.bucket)
        self.distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment="Latchkey claim page and API",
            default_root_object="index.html",
            default_behavior=cloudfront.BehaviorOptions(
                origin=site_origin,
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED,
                response_headers_policy=cloudfront.ResponseHeadersPolicy.SECURITY_HEADERS,
                compress=True,
            ),
            additional_behaviors={
                # Like the local gateway's no-store: a deploy's new pool/client ids apply at once.
                CONFIG_PATH: cloudfront.BehaviorOptions(
                    origin=site_origin,
                    viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                    cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
                    response_headers_policy=cloudfront.ResponseHeadersPolicy.SECURITY_HEADERS,
                ),
                # Every method; the owner's JWT, the device's signature headers and the viewer's address.
                API_PATH_PATTERN: cloudfront.BehaviorOptions(
                    origin=api_origin,
                    viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
                    allowed_methods=cloudfront.AllowedMethods.ALLOW_ALL,
                    cache_policy=self.api_cache_policy,
                    origin_request_policy=self.api_request_policy,
                    compress=False,
                ),
            },
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            enable_logging=True,
            log_bucket=self.log_bucket,
            log_file_prefix="cloudfront/",
            web_acl_id=settings.web_acl_arn or None,
            error_responses=[
                cloudfront.ErrorResponse(http_status=code, ttl=Duration.seconds(0))
                for code in CACHED_ERROR_CODES
            ],
        )
        acknowledge(
            self.distribution,
            "AwsSolutions-CFR1",
            "No geo restriction: owners and devices are worldwide, and access is controlled by Cognito "
            "(owner API) and per-device signatures (device API), not by country.",
        )
        if not settings.web_acl_arn:
            acknowledge(
                self.distribution,
                "AwsSolutions-CFR2",
                "No WAF by default: a CloudFront web ACL must live in us-east-1 while this stack is "
                "region-agnostic, and it costs a fixed monthly fee. The API is throttled per route at the "
                "API Gateway stage, failed claims are rate-limited per account and source IP in DynamoDB, "
                "and Cognito threat protection guards sign-in. Pass -c webAclArn=<arn> to attach one.",
            )
        acknowledge(
            self.distribution,
            "AwsSolutions-CFR4",
            "The distribution uses the default *.cloudfront.net certificate, for which CloudFront fixes the "
            "viewer security policy (TLSv1 minimum) and it cannot be raised; browsers and the device agent "
            "negotiate TLS 1.2+/1.3 anyway. A custom domain with an ACM certificate and TLSv1.2_2021 is the "
            "documented upgrade (docs/deploy.md).",
        )

        config = site_config(
            region=stack.region,
            user_pool_id=user_pool_id,
            user_pool_client_id=user_pool_client_id,
            product_name=settings.product_name,
            logo_url=settings.logo_url,
        )
        sources = [s3deploy.Source.json_data(CONFIG_PATH.lstrip("/"), config)]
        if site_files(settings.web_dir):
            sources.insert(0, s3deploy.Source.asset(str(settings.web_dir), exclude=[".*", "**/.*"]))
        self.deployment = s3deploy.BucketDeployment(
            self,
            "Deploy",
            destination_bucket=self.bucket,
            sources=sources,
            distribution=self.distribution,
            distribution_paths=["/*"],
            memory_limit=256,
        )
        self._acknowledge_deployment_handler(stack)

    def _acknowledge_deployment_handler(self, stack: Stack) -> None:
        """BucketDeployment's provider is a CDK-owned singleton Lambda at the stack root."""
        handlers = [
            child for child in stack.node.children if child.node.id.startswith("Custom::CDKBucketDeployment")
        ]
        for handler in handlers:
            acknowledge(
                handler,
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
                "CDK's BucketDeployment provider (a deploy-time custom resource, not part of the request "
                "path) uses the AWS managed basic execution policy for its own CloudWatch logs only.",
            )
            for action in ("s3:GetBucket*", "s3:GetObject*", "s3:List*", "s3:Abort*", "s3:DeleteObject*"):
                acknowledge(
                    handler,
                    f"AwsSolutions-IAM5[Action::{action}]",
                    "CDK's BucketDeployment provider copies the page from the CDK asset bucket into the site "
                    "bucket and prunes stale files; these action groups are granted by the construct and "
                    "limited to those two buckets.",
                )
            acknowledge_wildcard_resource(
                handler,
                self.bucket.arn_for_objects("*"),
                "The deployment provider writes and prunes the page's objects: every object of the site "
                "bucket, and only that bucket.",
            )
            synthesizer = stack.synthesizer
            if isinstance(synthesizer, DefaultStackSynthesizer):
                qualifier = synthesizer.bootstrap_qualifier or DefaultStackSynthesizer.DEFAULT_QUALIFIER
                acknowledge_wildcard_resource(
                    handler,
                    f"arn:{stack.partition}:s3:::cdk-{qualifier}-assets-{stack.account}-{stack.region}/*",
                    "The deployment provider reads the zipped page from the CDK bootstrap asset bucket of this "
                    "account and region; asset object keys are content hashes known only at synth time.",
                )
            acknowledge(
                handler,
                "AwsSolutions-IAM5[Resource::*]",
                "cloudfront:CreateInvalidation/GetInvalidation, granted by CDK's BucketDeployment so that a "
                "deploy invalidates the cached page; used only at deploy time on this stack's distribution.",
            )
            acknowledge(
                handler,
                "AwsSolutions-L1",
                "The runtime of CDK's BucketDeployment provider is pinned by aws-cdk-lib and upgraded with "
                "it; it runs only during deployments. The service's own functions use the newest Python.",
            )
