"""Custom::LatchkeyServiceSetup against moto's Secrets Manager and IoT, answering a local HTTP server.

Own-CA mode needs no hand step: the deploy generates the CA inside the secret, registers it with IoT, and
the device API can then sign and register a device certificate under it. Rollover and re-runs are
idempotent; claimCodeKey is never touched.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lambdas import constants as c
from lambdas.handlers import service_setup

REGION = "eu-west-1"
CLAIM_KEY = "A" * 44


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from moto import mock_aws

    from lambdas import aws_clients
    from lambdas.adapters import ca, secrets

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("LATCHKEY_AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        aws_clients.reset()
        secrets.reset()
        ca.reset()
        arn = boto3.client("secretsmanager").create_secret(
            Name="svc", SecretString=json.dumps({"claimCodeKey": CLAIM_KEY})
        )["ARN"]
        monkeypatch.setenv(c.ENV_SECRETS_ARN, arn)
        yield arn
        aws_clients.reset()
        secrets.reset()
        ca.reset()


def _secret(arn: str) -> dict[str, Any]:
    return json.loads(boto3.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"])


def _versions(arn: str) -> int:
    return len(
        boto3.client("secretsmanager").list_secret_version_ids(SecretId=arn, IncludeDeprecated=True)[
            "Versions"
        ]
    )


def _ca_status(ca_id: str) -> str:
    return str(
        boto3.client("iot").describe_ca_certificate(certificateId=ca_id)["certificateDescription"]["status"]
    )


def test_aws_mode_adds_origin_verify_once_and_keeps_the_claim_key(aws: str) -> None:
    service_setup.apply(aws, "aws", 1)
    first = _secret(aws)
    assert first["claimCodeKey"] == CLAIM_KEY
    assert len(first["originVerify"]) >= 40
    assert "caKeyPem" not in first and "caCertPem" not in first
    versions = _versions(aws)
    service_setup.apply(aws, "aws", 1)  # the next deploy changes nothing
    assert _secret(aws) == first and _versions(aws) == versions


def test_own_ca_mode_generates_and_registers_the_ca(aws: str) -> None:
    data = service_setup.apply(aws, "own-ca", 1)
    secret = _secret(aws)
    assert secret["claimCodeKey"] == CLAIM_KEY and secret["caGeneration"] == 1
    cert = x509.load_pem_x509_certificate(secret["caCertPem"].encode())
    key = serialization.load_pem_private_key(secret["caKeyPem"].encode(), password=None)
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert data["CaRegistered"] == "new" and _ca_status(data["CaCertificateId"]) == "ACTIVE"

    versions = _versions(aws)
    again = service_setup.apply(aws, "own-ca", 1)
    assert _secret(aws) == secret and _versions(aws) == versions, "a re-deploy keeps the CA"
    assert again["CaRegistered"] == "already" and again["CaCertificateId"] == data["CaCertificateId"]


def test_the_device_api_issues_under_the_generated_ca(aws: str) -> None:
    """The point of the mode: with nothing done by hand, a CSR is signed and IoT accepts the certificate."""
    from lambdas.adapters import ca

    service_setup.apply(aws, "own-ca", 1)
    device_key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "anything")]))
        .sign(device_key, hashes.SHA256())
    )
    pem = ca.sign_csr(csr.public_bytes(serialization.Encoding.PEM).decode(), "lk-0000000000000001")
    answer = boto3.client("iot").register_certificate(
        certificatePem=pem, caCertificatePem=ca.ca_certificate_pem(), status="INACTIVE"
    )
    assert answer["certificateId"]


def test_rollover_keeps_the_old_ca_registered(aws: str) -> None:
    first = service_setup.apply(aws, "own-ca", 1)
    old = _secret(aws)
    second = service_setup.apply(aws, "own-ca", 2)
    new = _secret(aws)
    assert new["caGeneration"] == 2 and new["caCertPem"] != old["caCertPem"]
    assert new["previousCaCertPems"] == [old["caCertPem"]]
    assert new["claimCodeKey"] == CLAIM_KEY and new["originVerify"] == old["originVerify"]
    # Devices with certificates from the old CA keep connecting: it stays registered and active.
    assert second["CaCertificateId"] != first["CaCertificateId"]
    assert {_ca_status(first["CaCertificateId"]), _ca_status(second["CaCertificateId"])} == {"ACTIVE"}
    service_setup.apply(aws, "own-ca", 1)  # an older generation on the command line never goes back
    assert _secret(aws)["caCertPem"] == new["caCertPem"]


def test_a_hand_made_pair_is_adopted_not_replaced(aws: str) -> None:
    cert_pem, key_pem = service_setup.new_ca(7)
    boto3.client("secretsmanager").put_secret_value(
        SecretId=aws,
        SecretString=json.dumps({"claimCodeKey": CLAIM_KEY, "caCertPem": cert_pem, "caKeyPem": key_pem}),
    )
    service_setup.apply(aws, "own-ca", 1)
    secret = _secret(aws)
    assert (secret["caCertPem"], secret["caKeyPem"], secret["caGeneration"]) == (cert_pem, key_pem, 1)


class _Responses(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_PUT(self) -> None:
        length = int(self.headers["content-length"])
        self.received.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def response_url() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Responses)
    _Responses.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/response", _Responses.received
    server.shutdown()
    server.server_close()


def _event(kind: str, url: str, **props: str) -> dict[str, Any]:
    return {
        "RequestType": kind,
        "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/LatchkeyStack/1",
        "RequestId": "r-1",
        "LogicalResourceId": "ServiceSetup",
        "ResourceProperties": props,
    }


def test_handler_answers_cloudformation(aws: str, response_url: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = response_url
    service_setup.handler(_event("Create", url, SecretArn=aws, CertMode="own-ca", CaGeneration="1"), None)
    (answer,) = received
    assert answer["Status"] == "SUCCESS" and answer["Data"]["CaGeneration"] == "1"
    assert answer["NoEcho"] is True and "caKeyPem" not in json.dumps(answer)


def test_handler_reports_a_failure_without_hanging_the_stack(
    aws: str, response_url: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = response_url
    service_setup.handler(_event("Update", url, SecretArn=aws + "-missing", CertMode="aws"), None)
    service_setup.handler(_event("Delete", url, SecretArn=aws), None)
    assert [a["Status"] for a in received] == ["FAILED", "SUCCESS"]
    assert "ResourceNotFoundException" in received[0]["Reason"]
    assert CLAIM_KEY not in json.dumps(received)
