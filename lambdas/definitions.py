"""The one definition of Latchkey's resources, read by the CDK stack and by the local embedded cloud.

Tables, functions, routes and the device policy are described here as plain data so that the stack
(`infrastructure/`) and the local cloud (`local/`) build the same thing and cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lambdas import constants as c


@dataclass(frozen=True)
class Index:
    name: str
    partition_key: str
    sort_key: str | None = None
    projection: str = "ALL"  # "ALL" or "KEYS_ONLY"


@dataclass(frozen=True)
class Table:
    logical_id: str  # construct id in CDK, suffix of the local table name
    env_var: str  # environment variable that carries the physical name to the functions
    partition_key: str
    sort_key: str | None = None
    indexes: tuple[Index, ...] = ()
    ttl_attribute: str | None = c.TTL_ATTRIBUTE

    def attribute_names(self) -> list[str]:
        names = [self.partition_key] + ([self.sort_key] if self.sort_key else [])
        for index in self.indexes:
            names += [index.partition_key] + ([index.sort_key] if index.sort_key else [])
        return list(dict.fromkeys(names))


TABLES: tuple[Table, ...] = (
    Table(
        logical_id="Devices",
        env_var=c.ENV_DEVICES_TABLE,
        partition_key=c.DEVICE_PK,
        indexes=(
            Index(c.DEVICE_OWNER_INDEX, c.DEVICE_OWNER_KEY, c.DEVICE_PK),
            Index(c.DEVICE_CLAIM_CODE_INDEX, c.DEVICE_CLAIM_CODE_KEY, projection="KEYS_ONLY"),
        ),
    ),
    Table(
        logical_id="Pending",
        env_var=c.ENV_PENDING_TABLE,
        partition_key=c.PENDING_PK,
        indexes=(
            Index(c.PENDING_OWNER_INDEX, c.PENDING_OWNER_KEY, c.PENDING_PK),
            Index(c.PENDING_TOKEN_INDEX, c.PENDING_TOKEN_KEY, projection="KEYS_ONLY"),
        ),
    ),
    Table(
        logical_id="AuditEvents",
        env_var=c.ENV_AUDIT_TABLE,
        partition_key=c.AUDIT_PK,
        sort_key=c.AUDIT_SK,
    ),
    Table(
        logical_id="RateLimits",
        env_var=c.ENV_RATE_LIMITS_TABLE,
        partition_key=c.RATE_LIMIT_PK,
    ),
    Table(
        logical_id="Grants",
        env_var=c.ENV_GRANTS_TABLE,
        partition_key=c.GRANT_PK,
        sort_key=c.GRANT_SK,
        indexes=(
            Index(c.GRANT_USER_INDEX, c.GRANT_USER_KEY, c.GRANT_PK),
            Index(c.GRANT_SENDER_INDEX, c.GRANT_SENDER_KEY, c.GRANT_PK),
        ),
    ),
)


@dataclass(frozen=True)
class Function:
    logical_id: str
    handler: str  # "module.path.function", importable from the repository root and from the asset
    memory_mb: int = 256
    timeout_s: int = 10
    tables: tuple[str, ...] = ()  # table logical ids it reads and writes
    description: str = ""


FUNCTIONS: tuple[Function, ...] = (
    Function(
        logical_id="DeviceApi",
        handler="lambdas.handlers.device_api.handler",
        memory_mb=512,
        tables=("Devices", "Pending", "AuditEvents", "RateLimits"),
        description="Device API: poll, ack, register (signed requests, no user auth)",
    ),
    Function(
        logical_id="OwnerApi",
        handler="lambdas.handlers.owner_api.handler",
        memory_mb=512,
        tables=("Devices", "Pending", "AuditEvents", "RateLimits", "Grants"),
        description="Owner API behind the Cognito JWT authorizer, and the OpenAPI document",
    ),
    Function(
        logical_id="Presence",
        handler="lambdas.handlers.presence.handler",
        tables=("Devices",),
        description="Device status messages and IoT lifecycle events to presence",
    ),
)


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # API Gateway v2 path, "{id}" for path parameters
    function: str  # Function.logical_id
    auth: bool  # True: JWT authorizer (owner routes)

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"


def _owner(method: str, path: str) -> Route:
    return Route(method, path, "OwnerApi", auth=True)


def _device(method: str, path: str) -> Route:
    return Route(method, path, "DeviceApi", auth=False)


ROUTES: tuple[Route, ...] = (
    _device("POST", "/v1/device/poll"),
    _device("POST", "/v1/device/ack"),
    _device("POST", "/v1/device/register"),
    Route("GET", "/v1/openapi.json", "OwnerApi", auth=False),
    _owner("POST", "/v1/claims"),
    _owner("GET", "/v1/devices"),
    _owner("GET", "/v1/devices/{id}"),
    _owner("PATCH", "/v1/devices/{id}"),
    _owner("DELETE", "/v1/devices/{id}"),
    _owner("POST", "/v1/devices/{id}/revoke"),
    _owner("POST", "/v1/devices/{id}/release"),
    _owner("GET", "/v1/devices/{id}/events"),
    _owner("GET", "/v1/devices/{id}/state"),
    _owner("PATCH", "/v1/devices/{id}/state"),
    _owner("POST", "/v1/pending"),
    _owner("GET", "/v1/pending"),
    _owner("DELETE", "/v1/pending/{id}"),
    _owner("POST", "/v1/pending/{id}/claim"),
    _owner("POST", "/v1/pending/{id}/token"),
    _owner("GET", "/v1/devices/{id}/shares"),
    _owner("POST", "/v1/devices/{id}/shares"),
    _owner("DELETE", "/v1/devices/{id}/shares/{userId}"),
    _owner("POST", "/v1/devices/{id}/transfer"),
    _owner("GET", "/v1/transfers"),
    _owner("POST", "/v1/transfers/{id}/accept"),
    _owner("DELETE", "/v1/transfers/{id}"),
    _device("POST", "/v1/device/rotate"),
    _owner("POST", "/v1/devices/{id}/rotate"),
)

# API Gateway stage throttling for the open device routes (per second, burst).
DEVICE_ROUTE_THROTTLE = (50.0, 100)
OWNER_ROUTE_THROTTLE = (20.0, 40)
# The poll route on its own (it carries every unclaimed device): sized from the reconnect storm of a
# million devices (`latchkey simulate`, docs/performance.md). Its excess is answered 429 and the agent
# spreads its retries; the rest of the device routes keep DEVICE_ROUTE_THROTTLE.
DEVICE_POLL_THROTTLE = (1000.0, 2000)

THING_TYPE_NAME = "LatchkeyDevice"
POLICY_NAME = "LatchkeyDevicePolicy"
THING_VAR = "${iot:Connection.Thing.ThingName}"


def device_topics(thing: str) -> dict[str, str]:
    """The topics one device may use, as handed to it in the provisioned poll answer."""
    shadow = c.TOPIC_SHADOW_PREFIX.format(thing=thing)
    return {
        "status": c.TOPIC_STATUS.format(thing=thing),
        "commands": c.TOPIC_COMMANDS.format(thing=thing),
        "shadow": shadow,
    }


def device_policy_document(region: str = "*", account: str = "*", partition: str = "aws") -> dict:
    """IoT policy: a device may connect only as its own thing and use only its own topics."""
    arn = f"arn:{partition}:iot:{region}:{account}"
    topics = device_topics(THING_VAR)
    own = [topics["status"], topics["commands"], topics["shadow"] + "/*"]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "iot:Connect",
                "Resource": f"{arn}:client/{THING_VAR}",
                "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}},
            },
            {
                "Effect": "Allow",
                "Action": "iot:Publish",
                "Resource": [
                    f"{arn}:topic/{topics['status']}",
                    f"{arn}:topic/{topics['shadow']}/get",
                    f"{arn}:topic/{topics['shadow']}/update",
                ],
            },
            {
                "Effect": "Allow",
                "Action": "iot:Subscribe",
                "Resource": [f"{arn}:topicfilter/{t}" for t in own],
            },
            {
                "Effect": "Allow",
                "Action": "iot:Receive",
                "Resource": [f"{arn}:topic/{t}" for t in own],
            },
        ],
    }


@dataclass(frozen=True)
class AclRule:
    access: str  # "read" (subscribe/receive) or "write" (publish)
    topic: str  # with "%u" standing for the certificate CN, which is the thing name


def device_acl() -> tuple[AclRule, ...]:
    """The broker ACL that mirrors device_policy_document for the local mosquitto."""
    topics = device_topics("%u")
    return (
        AclRule("write", topics["status"]),
        AclRule("write", topics["shadow"] + "/get"),
        AclRule("write", topics["shadow"] + "/update"),
        AclRule("read", topics["commands"]),
        AclRule("read", topics["shadow"] + "/#"),
    )


@dataclass(frozen=True)
class UserPool:
    password_min_length: int = 12
    sign_in_alias: str = "email"
    auth_flows: tuple[str, ...] = field(default=("USER_PASSWORD_AUTH", "USER_SRP_AUTH"))


USER_POOL = UserPool()
