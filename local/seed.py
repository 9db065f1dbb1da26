"""Create Latchkey's AWS resources in moto, from `lambdas.definitions`, and return the functions' environment.

Everything structural (table keys, indexes, projections, TTL, password length, auth flows, policy
document, thing type) is read from `definitions`; nothing is restated here. What is local-only (the
CA in the secret, the MQTT endpoint and the bridge identity) comes from `local.pki` / `local.broker`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from lambdas import constants as c
from lambdas import definitions as d
from local.pki import IssuedCert, LocalCA

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account
PREFIX = "latchkey-local"
PRODUCT_NAME = "Latchkey"
DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
}
# Variables that would send boto3 somewhere else (or fail) if the developer's shell has them.
UNSET_VARS = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL")


_session: Any = None
_clients: dict[tuple[str, str], Any] = {}
_clients_lock = threading.Lock()


def aws_client(service: str, endpoint_url: str) -> Any:
    """A cached boto3 client for the moto server at `endpoint_url` (dummy credentials)."""
    with _clients_lock:  # one session, created lazily; client creation from it is serialized
        key = (service, endpoint_url)
        if key not in _clients:
            import boto3

            global _session
            if _session is None:
                _session = boto3.session.Session(
                    region_name=REGION,
                    aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                    aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                )
            _clients[key] = _session.client(service, endpoint_url=endpoint_url)
        return _clients[key]


SERVICES = ("dynamodb", "cognito-idp", "iot", "secretsmanager")


def warm_clients(endpoint_url: str) -> None:
    """Create (and cache) the clients `seed()` uses; nothing is sent."""
    for service in SERVICES:
        aws_client(service, endpoint_url)


def table_name(table: d.Table, prefix: str = PREFIX) -> str:
    return f"{prefix}-{table.logical_id}"


@dataclass
class Seeded:
    """What `seed()` created; `env` is the environment every function gets."""

    moto_url: str
    env: dict[str, str]
    tables: dict[str, str]  # logical id -> physical name
    user_pool_id: str
    user_pool_client_id: str
    secret_arn: str
    claim_code_key: bytes = field(repr=False)
    region: str = REGION
    origin_verify: str = field(default="", repr=False)  # what CloudFront (the gateway) sends the functions

    @property
    def issuer(self) -> str:
        return f"https://cognito-idp.{self.region}.amazonaws.com/{self.user_pool_id}"

    def create_user(self, email: str, password: str) -> str:
        return create_user(self.moto_url, self.user_pool_id, email, password)

    def login(self, email: str, password: str) -> dict[str, Any]:
        return login(self.moto_url, self.user_pool_client_id, email, password)


def create_tables(ddb: Any, prefix: str = PREFIX) -> dict[str, str]:
    """Every table of `definitions.TABLES` as the stack creates it; logical id -> physical name."""
    names: dict[str, str] = {}
    for table in d.TABLES:
        name = table_name(table, prefix)
        keys = [{"AttributeName": table.partition_key, "KeyType": "HASH"}]
        if table.sort_key:
            keys.append({"AttributeName": table.sort_key, "KeyType": "RANGE"})
        kwargs: dict[str, Any] = {
            "TableName": name,
            "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": keys,
            "AttributeDefinitions": [
                {"AttributeName": attr, "AttributeType": "S"} for attr in table.attribute_names()
            ],
        }
        if table.indexes:
            kwargs["GlobalSecondaryIndexes"] = [
                {
                    "IndexName": index.name,
                    "KeySchema": [{"AttributeName": index.partition_key, "KeyType": "HASH"}]
                    + ([{"AttributeName": index.sort_key, "KeyType": "RANGE"}] if index.sort_key else []),
                    "Projection": {"ProjectionType": index.projection},
                }
                for index in table.indexes
            ]
        ddb.create_table(**kwargs)
        if table.ttl_attribute:
            ddb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
            )
        names[table.logical_id] = name
    return names


def _create_user_pool(idp: Any, prefix: str) -> tuple[str, str]:
    pool = d.USER_POOL
    pool_id = idp.create_user_pool(
        PoolName=f"{prefix}-owners",
        UsernameAttributes=[pool.sign_in_alias],
        AutoVerifiedAttributes=[pool.sign_in_alias],
        UsernameConfiguration={"CaseSensitive": False},
        Policies={
            "PasswordPolicy": {
                "MinimumLength": pool.password_min_length,
                # definitions.UserPool carries only the length; the classes are the CDK defaults.
                "RequireUppercase": True,
                "RequireLowercase": True,
                "RequireNumbers": True,
                "RequireSymbols": True,
            }
        },
        # As the stack deploys it by default (infrastructure/auth.py): self sign-up, reset by email only,
        # optional TOTP.
        AdminCreateUserConfig={"AllowAdminCreateUserOnly": False},
        AccountRecoverySetting={"RecoveryMechanisms": [{"Priority": 1, "Name": "verified_email"}]},
        MfaConfiguration="OPTIONAL",
    )["UserPool"]["Id"]
    idp.set_user_pool_mfa_config(
        UserPoolId=pool_id, SoftwareTokenMfaConfiguration={"Enabled": True}, MfaConfiguration="OPTIONAL"
    )
    client_id = idp.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName=f"{prefix}-web",
        GenerateSecret=False,
        ExplicitAuthFlows=[f"ALLOW_{flow}" for flow in pool.auth_flows] + ["ALLOW_REFRESH_TOKEN_AUTH"],
        PreventUserExistenceErrors="ENABLED",
    )["UserPoolClient"]["ClientId"]
    return pool_id, client_id


def _create_iot(iot: Any, ca: LocalCA) -> None:
    # Thing type and policy names are fixed by definitions; moto's state is per process, so a second
    # embedded cloud in the same process finds them already there (same content) and reuses them.
    with contextlib.suppress(iot.exceptions.ResourceAlreadyExistsException):
        iot.create_thing_type(thingTypeName=d.THING_TYPE_NAME)
    with contextlib.suppress(iot.exceptions.ResourceAlreadyExistsException):
        iot.create_policy(
            policyName=d.POLICY_NAME,
            policyDocument=json.dumps(d.device_policy_document(REGION, ACCOUNT_ID)),
        )
    # Own-CA mode on AWS registers the CA with IoT once; do the same so RegisterCertificate links it.
    iot.register_ca_certificate(caCertificate=ca.cert_pem, setAsActive=True, allowAutoRegistration=False)


def seed_in_process(
    session: Any, *, prefix: str, ca_cert: str, ca_key: str, claim_code_key: str, product: str
) -> dict[str, str]:
    """In-process moto (`mock_aws`: unit tests, the bench): the tables, the service secret (own-CA mode)
    and IoT's thing type and policy as the stack makes them; returns the functions' environment."""
    tables = create_tables(session.client("dynamodb"), prefix=prefix)
    secret = session.client("secretsmanager").create_secret(
        Name=f"{prefix}-secret",
        SecretString=json.dumps({"claimCodeKey": claim_code_key, "caCertPem": ca_cert, "caKeyPem": ca_key}),
    )
    iot = session.client("iot")
    iot.create_thing_type(thingTypeName=d.THING_TYPE_NAME)
    iot.create_policy(policyName=d.POLICY_NAME, policyDocument=json.dumps(d.device_policy_document()))
    return {
        **{t.env_var: tables[t.logical_id] for t in d.TABLES},
        c.ENV_SECRETS_ARN: secret["ARN"],
        c.ENV_CERT_MODE: "own-ca",
        c.ENV_IOT_POLICY_NAME: d.POLICY_NAME,
        c.ENV_THING_TYPE_NAME: d.THING_TYPE_NAME,
        c.ENV_IOT_ENDPOINT: "iot.test.invalid:8883",  # never resolved: the tests and the bench connect nowhere
        c.ENV_CA_PEM: ca_cert,
        c.ENV_PRODUCT_NAME: product,
    }


def seed(
    moto_url: str,
    *,
    ca: LocalCA,
    mqtt_host: str,
    mqtt_port: int,
    service_cert: IssuedCert,
    prefix: str = PREFIX,
    cert_mode: str = "aws",
) -> Seeded:
    """Create every resource in the moto server at `moto_url`; return what was made and the env."""
    tables = create_tables(aws_client("dynamodb", moto_url), prefix)
    pool_id, client_id = _create_user_pool(aws_client("cognito-idp", moto_url), prefix)
    _create_iot(aws_client("iot", moto_url), ca)

    claim_code_key = secrets.token_bytes(32)
    origin_verify = secrets.token_urlsafe(32)  # new every run: only this run's gateway knows it
    secret_arn = aws_client("secretsmanager", moto_url).create_secret(
        Name=f"{prefix}/service",
        SecretString=json.dumps(
            {
                "claimCodeKey": base64.b64encode(claim_code_key).decode(),
                "caCertPem": ca.cert_pem,
                "caKeyPem": ca.key_pem,
                c.SECRET_ORIGIN_VERIFY_KEY: origin_verify,
            }
        ),
    )["ARN"]

    bridge = {
        "host": mqtt_host,
        "port": mqtt_port,
        "certfile": str(service_cert.cert_file),
        "keyfile": str(service_cert.key_file),
        "cafile": str(ca.cert_file),
    }
    env = {
        **{table.env_var: tables[table.logical_id] for table in d.TABLES},
        c.ENV_SECRETS_ARN: secret_arn,
        c.ENV_CERT_MODE: cert_mode,  # "aws": CreateCertificateFromCsr (local.strict_iot honours the CSR)
        c.ENV_IOT_POLICY_NAME: d.POLICY_NAME,
        c.ENV_THING_TYPE_NAME: d.THING_TYPE_NAME,
        c.ENV_IOT_ENDPOINT: f"{mqtt_host}:{mqtt_port}",
        c.ENV_CA_PEM: ca.cert_pem,
        c.ENV_USER_POOL_ID: pool_id,
        c.ENV_USER_POOL_CLIENT_ID: client_id,
        c.ENV_MQTT_BRIDGE: json.dumps(bridge),
        c.ENV_PRODUCT_NAME: PRODUCT_NAME,
        "LATCHKEY_AWS_ENDPOINT_URL": moto_url,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        **DUMMY_CREDENTIALS,
    }
    return Seeded(
        moto_url=moto_url,
        env=env,
        tables=tables,
        user_pool_id=pool_id,
        user_pool_client_id=client_id,
        secret_arn=secret_arn,
        claim_code_key=claim_code_key,
        origin_verify=origin_verify,
    )


def create_user(moto_url: str, user_pool_id: str, email: str, password: str) -> str:
    """An owner account with a verified email and a permanent password; returns its `sub`."""
    idp = aws_client("cognito-idp", moto_url)
    user = idp.admin_create_user(
        UserPoolId=user_pool_id,
        Username=email,
        UserAttributes=[
            {"Name": "email", "Value": email},
            {"Name": "email_verified", "Value": "true"},
        ],
        MessageAction="SUPPRESS",
    )["User"]
    idp.admin_set_user_password(UserPoolId=user_pool_id, Username=email, Password=password, Permanent=True)
    attrs = {a["Name"]: a["Value"] for a in user.get("Attributes", [])}
    return attrs.get("sub") or user["Username"]


def login(moto_url: str, client_id: str, email: str, password: str) -> dict[str, Any]:
    """InitiateAuth USER_PASSWORD_AUTH, as the claim page does; the AuthenticationResult
    (`IdToken`, `AccessToken`, `RefreshToken`, `ExpiresIn`, `TokenType`)."""
    idp = aws_client("cognito-idp", moto_url)
    answer = idp.initiate_auth(
        ClientId=client_id,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": email, "PASSWORD": password},
    )
    return dict(answer["AuthenticationResult"])


def random_password() -> str:
    """A password that satisfies the pool policy (length from definitions, all character classes)."""
    length = max(d.USER_POOL.password_min_length, 16)
    core = secrets.token_urlsafe(length)[: length - 4]
    return f"{core}Aa1!"
