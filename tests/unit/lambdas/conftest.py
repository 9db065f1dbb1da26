"""Shared fixtures for the Lambda unit tests: an in-process moto cloud seeded like the real stack.

`aws`          mock_aws + every table from `lambdas.definitions.TABLES` + the service secret (claim-code
               key and a test CA pair) + the IoT policy and thing type + the LATCHKEY_* environment
               (own-CA mode, LATCHKEY_IOT_ENDPOINT=iot.test.invalid:8883, LATCHKEY_CA_PEM = test CA).
               Each mocked AWS call is atomic (as in AWS), so multi-threaded race tests are meaningful.
               Yields an `AwsEnv` with the names and a few helpers (`put_device`, `device`, `iot`, `ddb`).
`signed_event` a function `signed_event(method, path, body, key, device_id, timestamp=None)` that
               builds a signed API Gateway v2 event; also importable as a plain function.
`device_key`   a fresh EC P-256 private key; `rsa_device_key` an RSA-2048 one (session-cached).
"""

from __future__ import annotations

import base64
import hashlib
import json
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

REGION = "us-east-1"
CLAIM_CODE_KEY = base64.b64encode(b"k" * 32).decode()


# --- keys and certificates ---------------------------------------------------------------------------


def public_pem(key: Any) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def private_pem(key: Any) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def make_csr(key: Any, common_name: str = "device") -> str:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


_CA: tuple[str, str] | None = None
_CA_DIR: tempfile.TemporaryDirectory[str] | None = None


def test_ca() -> tuple[str, str]:
    """(certificate PEM, private key PEM) of the test CA (the local cloud's CA builder), made once per
    session in a temporary directory."""
    global _CA, _CA_DIR
    if _CA is None:
        from local.pki import LocalCA

        _CA_DIR = tempfile.TemporaryDirectory(prefix="latchkey-test-ca-")
        ca = LocalCA(_CA_DIR.name, common_name="Latchkey Test CA")
        _CA = (ca.cert_pem, ca.key_pem)
    return _CA


test_ca.__test__ = False  # type: ignore[attr-defined]  # not a test despite the name


@pytest.fixture
def device_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


_RSA: rsa.RSAPrivateKey | None = None


@pytest.fixture
def rsa_device_key() -> rsa.RSAPrivateKey:
    global _RSA
    if _RSA is None:
        _RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _RSA


# --- signed device requests --------------------------------------------------------------------------


def sign(key: Any, message: bytes) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    else:
        signature = key.sign(message, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(signature).decode()


def signed_event(
    method: str,
    path: str,
    body: Any,
    key: Any,
    device_id: str,
    timestamp: int | None = None,
    source_ip: str = "203.0.113.7",
) -> dict[str, Any]:
    """An API Gateway v2 (payload 2.0) event signed like the agent signs it.

    `body` may be a dict (JSON-encoded), str or bytes; `key` an EC or RSA private key (None: unsigned).
    """
    if isinstance(body, dict | list):
        raw = json.dumps(body).encode()
    elif isinstance(body, str):
        raw = body.encode()
    else:
        raw = body or b""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    headers = {"content-type": "application/json", "x-device-id": device_id, "x-timestamp": stamp}
    if key is not None:
        message = f"{method}\n{path}\n{stamp}\n{hashlib.sha256(raw).hexdigest()}".encode()
        headers["x-signature"] = sign(key, message)
    return {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "http": {"method": method, "path": path, "sourceIp": source_ip, "protocol": "HTTP/1.1"},
            "requestId": "test-request",
            "stage": "$default",
        },
        "body": base64.b64encode(raw).decode(),
        "isBase64Encoded": True,
    }


@pytest.fixture(name="signed_event")
def signed_event_fixture() -> Callable[..., dict[str, Any]]:
    return signed_event


# --- the moto cloud ----------------------------------------------------------------------------------


@dataclass
class AwsEnv:
    tables: dict[str, str]  # logical id -> physical name
    secret_arn: str
    ca_cert_pem: str
    ca_key_pem: str
    env: dict[str, str] = field(default_factory=dict)
    dropped_connections: list[str] = field(default_factory=list)  # iot-data DeleteConnection client ids

    @property
    def ddb(self) -> Any:
        from lambdas.aws_clients import client

        return client("dynamodb")

    @property
    def iot(self) -> Any:
        from lambdas.aws_clients import client

        return client("iot")

    def put_device(self, device_id: str, key: Any = None, state: str = "unclaimed", **fields: Any) -> dict:
        """Write a device item directly (bypassing the logic); `key` gives publicKeyPem."""
        from lambdas.dal import ddb

        item: dict[str, Any] = {"deviceId": device_id, "state": state, "createdAt": "2024-01-01T00:00:00Z"}
        if key is not None:
            item["publicKeyPem"] = public_pem(key)
        if state != "unclaimed" and "ownerId" not in fields:
            item["ownerId"] = "owner-1"
        item.update(fields)
        self.ddb.put_item(TableName=self.tables["Devices"], Item=ddb.to_item(item))
        return item

    def device(self, device_id: str) -> dict[str, Any] | None:
        """The stored item as it is (not through Device), for assertions on attributes."""
        from lambdas import config
        from lambdas.dal import ddb

        return ddb.get(config.devices_table(), {"deviceId": device_id}, consistent=True)

    def force(self, device_id: str, fields: dict[str, Any]) -> None:
        """Change stored attributes behind the logic's back (a concurrent writer, or corruption)."""
        from lambdas import config
        from lambdas.dal import ddb

        ddb.write(config.devices_table(), {"deviceId": device_id}, fields)

    def force_delete(self, device_id: str) -> None:
        from lambdas import config
        from lambdas.dal import ddb

        ddb.delete(config.devices_table(), {"deviceId": device_id})

    def audit_actions(self, device_id: str) -> list[str]:
        from lambdas.dal import audit

        return [e["action"] for e in reversed(audit.list_events(device_id))]


def reset_caches() -> None:
    """Forget every per-container cache (clients, secret, CA, IoT endpoint) so moto's state is used."""
    from local.lambda_runtime import reset_function_caches

    reset_function_caches()


_MOTO_LOCK = threading.RLock()


def _serialize_moto_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every mocked AWS call atomic, as it is in AWS.

    moto's in-process backends take no locks, so two threads could both pass a DynamoDB condition
    check before either writes. Tests that poll or claim from several threads rely on real semantics.
    """
    from moto.core.botocore_stubber import BotocoreStubber

    original = BotocoreStubber.process_request

    def process_request(self: Any, request: Any) -> Any:
        with _MOTO_LOCK:
            return original(self, request)

    monkeypatch.setattr(BotocoreStubber, "process_request", process_request)


_BOTOCORE_SESSION: Any = None


def _share_botocore_session(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Let every boto3 Session of the test run share one botocore session, hence one model cache.

    `lambdas.aws_clients` makes a new Session per client; without this, each test re-parses the large
    service models (IoT, DynamoDB endpoint rules) from disk, which costs most of the run's time.
    """
    global _BOTOCORE_SESSION
    import boto3.session
    import botocore.session

    if _BOTOCORE_SESSION is None:
        _BOTOCORE_SESSION = botocore.session.get_session()
    session_class = boto3.session.Session

    def shared_session(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("botocore_session", _BOTOCORE_SESSION)
        return session_class(*args, **kwargs)

    monkeypatch.setattr(boto3.session, "Session", shared_session)
    return session_class(botocore_session=_BOTOCORE_SESSION, region_name=REGION)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsEnv]:
    from moto import mock_aws

    from lambdas import constants as c
    from lambdas import definitions
    from local.seed import seed_in_process

    for name in ("LATCHKEY_AWS_ENDPOINT_URL", c.ENV_MQTT_BRIDGE, "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    base_env = {
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
    }
    for name, value in base_env.items():
        monkeypatch.setenv(name, value)
    reset_caches()
    _serialize_moto_requests(monkeypatch)
    ca_cert, ca_key = test_ca()
    session = _share_botocore_session(monkeypatch)
    with mock_aws():
        env = seed_in_process(
            session,
            prefix="latchkey-test",
            ca_cert=ca_cert,
            ca_key=ca_key,
            claim_code_key=CLAIM_CODE_KEY,
            product="Latchkey Test",
        )
        tables = {t.logical_id: env[t.env_var] for t in definitions.TABLES}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        reset_caches()
        from lambdas.adapters import iot
        from lambdas.aws_clients import client
        from local import strict_iot

        for service in ("dynamodb", "iot", "secretsmanager"):
            client(service)  # made here, not concurrently by the first threads of a race test
        env_ = AwsEnv(tables, env[c.ENV_SECRETS_ARN], ca_cert, ca_key, env)
        # iot-data at its default endpoint, which mock_aws serves; DeleteConnection is the embedded
        # cloud's stand-in (no broker here: "not connected"); the calls are recorded.
        strict_iot.install_delete_connection()
        data_plane = session.client("iot-data")
        data_plane.meta.events.register(
            "provide-client-params.iot-data.DeleteConnection",
            lambda params, **_kw: env_.dropped_connections.append(params["clientId"]),
        )
        monkeypatch.setattr(iot, "iot_data_client", lambda: data_plane)
        try:
            yield env_
        finally:
            reset_caches()


# --- owner API requests (owner engineer) --------------------------------------------------------------


def owner_event(
    method: str,
    path: str,
    sub: str | None = "owner-1",
    body: Any = None,
    email: str | None = None,
    source_ip: str = "198.51.100.10",
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An API Gateway v2 event for an owner route, with the JWT claims the authorizer would pass.

    `sub=None` leaves the claims out (an unauthenticated call); `body` may be a dict (JSON-encoded),
    str or bytes.
    """
    if isinstance(body, dict | list):
        raw: bytes | None = json.dumps(body).encode()
    elif isinstance(body, str):
        raw = body.encode()
    else:
        raw = body
    route_path = path.split("?", 1)[0]
    request_context: dict[str, Any] = {
        "http": {"method": method, "path": route_path, "sourceIp": source_ip, "protocol": "HTTP/1.1"},
        "requestId": "test-request",
        "stage": "$default",
    }
    if sub is not None:
        claims = {"sub": sub, "email": email or f"{sub}@example.com", "token_use": "id"}
        request_context["authorizer"] = {"jwt": {"claims": claims, "scopes": None}}
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method} {route_path}",
        "rawPath": route_path,
        "rawQueryString": path.split("?", 1)[1] if "?" in path else "",
        "headers": {"content-type": "application/json", **(headers or {})},
        "requestContext": request_context,
        "isBase64Encoded": False,
    }
    if raw is not None:
        event["body"] = base64.b64encode(raw).decode()
        event["isBase64Encoded"] = True
    return event


@pytest.fixture(name="owner_event")
def owner_event_fixture() -> Callable[..., dict[str, Any]]:
    return owner_event
