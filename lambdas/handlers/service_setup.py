"""Custom resource `Custom::LatchkeyServiceSetup`: fills in the service secret, registers the own CA.

Runs on every deploy (create and update), idempotently:

- `originVerify`: a random value CloudFront sends to the API as `x-latchkey-origin-verify`; added once,
  never changed by a deploy (the distribution reads it through a dynamic reference).
- own-CA mode: a CA key pair (`caCertPem`, `caKeyPem`, `caGeneration`) is generated inside the secret if
  there is none - the key never leaves Secrets Manager and this function - and the CA is registered with
  IoT (SNI_ONLY, active, no auto-registration). A higher `CaGeneration` property rolls the CA over: a new
  pair replaces the current one (the old certificate is kept as `previousCaCertPems`) and the old CA stays
  registered, so devices keep their certificates until they are re-provisioned.
  The CA's IoT id is kept as `caCertificateId`.
- `claimCodeKey` is never touched: CloudFormation generated it, and the printed claim codes depend on it.

Delete does nothing: the secret is retained, and a registered CA is removed by hand (docs/deploy.md).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
import urllib.request
from typing import Any

log = logging.getLogger("latchkey.setup")
log.setLevel(logging.INFO)

ORIGIN_VERIFY_BYTES = 32
CA_VALIDITY = dt.timedelta(days=3650 * 2)  # longer than a device certificate (lambdas/adapters/ca.py)


def new_ca(generation: int, now: dt.datetime | None = None) -> tuple[str, str]:
    """A self-signed EC P-256 CA that may sign client certificates only (path length 0)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from lambdas.adapters import ca

    key = ec.generate_private_key(ec.SECP256R1())
    start = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(minutes=5)
    cert = ca.self_signed_ca(key, f"Latchkey device CA {generation}", start, start + CA_VALIDITY)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem


def complete(secret: dict[str, Any], cert_mode: str, ca_generation: int) -> tuple[dict[str, Any], bool]:
    """The secret with what this deploy needs added, and whether anything changed. Pure but for randomness."""
    updated = dict(secret)
    if not updated.get("originVerify"):
        updated["originVerify"] = secrets.token_urlsafe(ORIGIN_VERIFY_BYTES)
    if cert_mode == "own-ca":
        has_pair = bool(updated.get("caCertPem") and updated.get("caKeyPem"))
        # A pair put there by hand (before this custom resource existed) counts as generation 1.
        current = int(updated.get("caGeneration") or 1) if has_pair else 0
        if current < ca_generation:
            if has_pair:
                updated["previousCaCertPems"] = [*updated.get("previousCaCertPems", []), updated["caCertPem"]]
            updated.pop("caCertificateId", None)  # the new CA is registered next
            updated["caCertPem"], updated["caKeyPem"] = new_ca(ca_generation)
            updated["caGeneration"] = ca_generation
        elif has_pair and "caGeneration" not in updated:
            updated["caGeneration"] = current
    return updated, updated != secret


def apply(secret_arn: str, cert_mode: str, ca_generation: int) -> dict[str, str]:
    from lambdas.adapters import iot
    from lambdas.aws_clients import client

    manager = client("secretsmanager")
    secret = json.loads(manager.get_secret_value(SecretId=secret_arn)["SecretString"])
    updated, _ = complete(secret, cert_mode, ca_generation)
    data = {"OriginVerifyKey": "originVerify"}
    if cert_mode == "own-ca":
        ca_id = updated.get("caCertificateId")
        if ca_id and _ca_registered(client("iot"), str(ca_id)):
            data["CaRegistered"] = "already"
        else:
            # None: IoT answered "already exists" (registered before its id was recorded).
            ca_id = iot.register_ca(updated["caCertPem"])
            data["CaRegistered"] = "new" if ca_id else "already"
            if ca_id:
                updated["caCertificateId"] = ca_id
        if updated.get("caCertificateId"):
            data["CaCertificateId"] = str(updated["caCertificateId"])
        data["CaGeneration"] = str(updated["caGeneration"])
    changed = updated != secret
    if changed:
        manager.put_secret_value(SecretId=secret_arn, SecretString=json.dumps(updated))
    log.info("service setup: secret %s, %s", "updated" if changed else "unchanged", data)
    return data


def _ca_registered(iot_client: Any, ca_id: str) -> bool:
    try:
        iot_client.describe_ca_certificate(certificateId=ca_id)
    except iot_client.exceptions.ResourceNotFoundException:
        return False
    return True


def handler(event: dict[str, Any], context: Any) -> None:
    """CloudFormation's custom-resource protocol: always answer the pre-signed URL, or the stack hangs."""
    props = event.get("ResourceProperties", {})
    physical_id = (
        event.get("PhysicalResourceId") or f"latchkey-service-setup-{event.get('LogicalResourceId')}"
    )
    try:
        if event["RequestType"] == "Delete":
            _respond(event, context, "SUCCESS", physical_id, {})
            return
        data = apply(
            str(props["SecretArn"]), str(props.get("CertMode", "aws")), int(props.get("CaGeneration", 1))
        )
    except Exception as exc:
        log.exception("service setup failed")
        # The reason shows in the CloudFormation events; never the secret's contents.
        _respond(event, context, "FAILED", physical_id, {}, reason=f"{type(exc).__name__}: {exc}"[:500])
        return
    _respond(event, context, "SUCCESS", physical_id, data)


def _respond(
    event: dict[str, Any], context: Any, status: str, physical_id: str, data: dict[str, str], reason: str = ""
) -> None:
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason or f"See CloudWatch log stream {getattr(context, 'log_stream_name', '?')}",
            "PhysicalResourceId": physical_id,
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
            "NoEcho": True,
            "Data": data,
        }
    ).encode()
    request = urllib.request.Request(  # noqa: S310 - CloudFormation's pre-signed https URL
        event["ResponseURL"],
        data=body,
        method="PUT",
        headers={"content-type": "", "content-length": str(len(body))},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        answer.read()
