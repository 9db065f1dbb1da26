"""The IoT control-plane adapter: things, certificates, the device policy, the data endpoint.

The only code that calls the `iot` API (and iot-data's DeleteConnection). Every function is idempotent
and safe to repeat, so that the provisioning steps above it can be retried after a crash. botocore errors
are translated here, by error code, into domain errors (which the handlers already know how to answer) or
the exceptions below.

What IoT finishes asynchronously is waited for here, within a bound: DetachThingPrincipal "might take
several seconds" to propagate, and until it has, DeleteCertificate fails with DeleteConflictException and
DeleteThing with InvalidRequestException. Those are retried with backoff for up to
`PROPAGATION_BUDGET_S`; past that the caller gets `IotUnavailable` (503, Retry-After), never a 500, and
repeating the call finishes the job (or `latchkey doctor --repair` does, `lambdas.logic.repair`).

Taking a certificate out of service (`revoke_certificate`, `remove_certificate_and_thing`) is, in this
order: status REVOKED (IoT refuses new connections with it), DeleteConnection for the thing's client id
(IoT Core otherwise drops a live connection only "within a few minutes"), the policy detached, then, for
removal, the thing detached and the certificate deleted.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from lambdas import config, definitions
from lambdas import constants as c
from lambdas.aws_clients import client
from lambdas.errors import BadRequest, Conflict, ServiceUnavailable

log = logging.getLogger("latchkey.iot")

ATS_PORT = 8883
PROPAGATION_BUDGET_S = 6.0  # how long one call waits for a detach to propagate (the Lambda timeout is 10 s)
RETRY_AFTER_S = 2
_NOT_FOUND = "ResourceNotFoundException"
_ALREADY_EXISTS = "ResourceAlreadyExistsException"
_THROTTLED = (
    "ThrottlingException",
    "ServiceUnavailableException",
    "InternalFailureException",
    "LimitExceededException",
)


class IotUnavailable(ServiceUnavailable):
    """IoT throttled us or failed; the caller may retry (503 + Retry-After)."""

    def __init__(
        self, message: str = "The IoT service is busy; retry shortly.", retry_after: int = 5
    ) -> None:
        super().__init__(message, retryAfter=retry_after, headers={"Retry-After": str(retry_after)})


class _Patience:
    """Bounded waiting, with backoff, for what IoT finishes asynchronously (a detach propagating)."""

    def __init__(self, budget: float | None = None) -> None:
        self.deadline = time.monotonic() + (PROPAGATION_BUDGET_S if budget is None else budget)
        self.delay = 0.1

    def wait(self, what: str) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            log.warning("IoT still finishing %s after %.1fs", what, PROPAGATION_BUDGET_S)
            raise IotUnavailable(f"IoT is still finishing {what}; retry shortly.", retry_after=RETRY_AFTER_S)
        time.sleep(min(self.delay, left))
        self.delay = min(self.delay * 2, 1.0)


class InvalidCsr(BadRequest):
    """IoT refused the certificate signing request."""


class CertificateMissing(Conflict):
    """The certificate does not exist (any more) in IoT."""


class CertificateStateConflict(Conflict):
    """IoT refused a status change, e.g. re-activating a REVOKED certificate."""


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _translate(exc: Exception) -> Exception:
    code = error_code(exc)
    if code in _THROTTLED:
        return IotUnavailable()
    return exc


def _iot() -> Any:
    return client("iot")


def policy_name() -> str:
    return os.environ.get(c.ENV_IOT_POLICY_NAME) or definitions.POLICY_NAME


def thing_type_name() -> str:
    return os.environ.get(c.ENV_THING_TYPE_NAME) or definitions.THING_TYPE_NAME


# --- ARNs ------------------------------------------------------------------------------------------

_arn_prefix: str | None = None  # "arn:<partition>:iot:<region>:<account>:cert/", learnt from any answer


def _learn_arn(arn: str) -> None:
    global _arn_prefix
    if arn and ":cert/" in arn:
        _arn_prefix = arn.rsplit("/", 1)[0] + "/"


def certificate_arn(certificate_id: str) -> str:
    """The certificate's ARN (the principal for policies and things)."""
    if _arn_prefix is None:
        try:
            answer = _iot().describe_certificate(certificateId=certificate_id)
        except Exception as exc:
            if error_code(exc) == _NOT_FOUND:
                raise CertificateMissing(f"Certificate {certificate_id} does not exist.") from exc
            raise _translate(exc) from exc
        arn = str(answer["certificateDescription"]["certificateArn"])
        _learn_arn(arn)
        return arn
    return _arn_prefix + certificate_id


def _certificate_id(arn: str) -> str | None:
    return arn.rsplit("/", 1)[1] if ":cert/" in arn else None


# --- things ----------------------------------------------------------------------------------------


def ensure_thing(thing_name: str, attributes: dict[str, str] | None = None) -> None:
    """Create the thing (of the Latchkey thing type) unless it exists."""
    request: dict[str, Any] = {"thingName": thing_name, "thingTypeName": thing_type_name()}
    if attributes:
        request["attributePayload"] = {"attributes": attributes}
    try:
        _iot().create_thing(**request)
    except Exception as exc:
        if error_code(exc) == _ALREADY_EXISTS:  # exists with other attributes: still ours, by name
            return
        raise _translate(exc) from exc


def thing_principals(thing_name: str) -> list[str]:
    """ARNs of the principals attached to the thing ([] if the thing does not exist)."""
    arns: list[str] = []
    request: dict[str, Any] = {"thingName": thing_name}
    while True:
        try:
            answer = _iot().list_thing_principals(**request)
        except Exception as exc:
            if error_code(exc) == _NOT_FOUND:
                return []
            raise _translate(exc) from exc
        arns += answer.get("principals", [])
        if not answer.get("nextToken"):
            break
        request["nextToken"] = answer["nextToken"]
    for arn in arns:
        _learn_arn(arn)
    return arns


class _ThingInUse(Exception):
    """DeleteThing refused: a principal is attached (a detach still propagating, or a new attach)."""


def _delete_thing(thing_name: str) -> None:
    try:
        _iot().delete_thing(thingName=thing_name)
    except Exception as exc:
        code = error_code(exc)
        if code == _NOT_FOUND:
            return
        if code in ("InvalidRequestException", "DeleteConflictException") and "attached" in str(exc).lower():
            raise _ThingInUse(thing_name) from exc
        raise _translate(exc) from exc


# --- certificates ----------------------------------------------------------------------------------


def create_certificate(csr_pem: str, thing_name: str | None = None) -> tuple[str, str]:
    """Issue an INACTIVE certificate for the CSR: (certificate id, certificate PEM).

    Mode "aws": CreateCertificateFromCsr. Mode "own-ca": signed by the service CA with CN=thing_name,
    then RegisterCertificate with the CA certificate (the CA must be registered with IoT; see
    `register_ca`). Either way the certificate stays INACTIVE until the device acknowledges it.
    """
    if config.cert_mode() == "own-ca":
        return _register_own_ca(csr_pem, thing_name)
    try:
        # setAsActive is left out: it defaults to false, and moto reads an explicit "false" as true.
        answer = _iot().create_certificate_from_csr(certificateSigningRequest=csr_pem)
    except Exception as exc:
        if error_code(exc) in ("InvalidRequestException", "CertificateValidationException"):
            raise InvalidCsr("IoT refused the certificate signing request.") from exc
        raise _translate(exc) from exc
    _learn_arn(answer["certificateArn"])
    return str(answer["certificateId"]), str(answer["certificatePem"])


def _register_own_ca(csr_pem: str, thing_name: str | None) -> tuple[str, str]:
    from lambdas.adapters import ca

    if not thing_name:
        raise ValueError("own-CA mode needs the thing name for the certificate subject")
    certificate_pem = ca.sign_csr(csr_pem, thing_name)
    try:
        answer = _iot().register_certificate(
            certificatePem=certificate_pem, caCertificatePem=ca.ca_certificate_pem(), status="INACTIVE"
        )
    except Exception as exc:
        if error_code(exc) == "CertificateValidationException":
            raise InvalidCsr("IoT refused the certificate made from the CSR.") from exc
        raise _translate(exc) from exc
    _learn_arn(answer["certificateArn"])
    return str(answer["certificateId"]), certificate_pem


def register_ca(ca_certificate_pem: str) -> str | None:
    """Register the own CA with IoT (SNI_ONLY: no verification certificate needed); returns its id.

    For the deploy/CLI side of own-CA mode; the device API only registers certificates under it.
    """
    try:
        answer = _iot().register_ca_certificate(
            caCertificate=ca_certificate_pem,
            setAsActive=True,
            allowAutoRegistration=False,
            certificateMode="SNI_ONLY",
        )
    except Exception as exc:
        if error_code(exc) == _ALREADY_EXISTS:
            return None
        raise _translate(exc) from exc
    return str(answer["certificateId"])


def describe_certificate(certificate_id: str) -> dict[str, Any] | None:
    """IoT's certificateDescription, or None if the certificate does not exist."""
    try:
        answer = _iot().describe_certificate(certificateId=certificate_id)
    except Exception as exc:
        if error_code(exc) == _NOT_FOUND:
            return None
        raise _translate(exc) from exc
    description: dict[str, Any] = answer["certificateDescription"]
    _learn_arn(str(description.get("certificateArn", "")))
    return description


def same_public_key(certificate_pem: str, public_key_pem: str) -> bool:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    try:
        cert_key = x509.load_pem_x509_certificate(certificate_pem.encode()).public_key()
        device_key = serialization.load_pem_public_key(public_key_pem.encode())
    except (ValueError, TypeError):
        return False
    der = serialization.Encoding.DER
    return bool(cert_key.public_bytes(der, spki) == device_key.public_bytes(der, spki))


def find_reusable_certificate(thing_name: str, public_key_pem: str) -> tuple[str, str] | None:
    """An INACTIVE certificate already attached to the thing for this public key: (id, PEM), or None.

    This is what makes issuing idempotent: a poll that crashed after attaching its certificate, but
    before recording it, left exactly this behind, and the retry adopts it instead of issuing another.
    """
    for arn in thing_principals(thing_name):
        certificate_id = _certificate_id(arn)
        if certificate_id is None:
            continue
        description = describe_certificate(certificate_id)
        if not description or description.get("status") != "INACTIVE":
            continue
        pem = str(description.get("certificatePem") or "")
        if pem and same_public_key(pem, public_key_pem):
            return certificate_id, pem
    return None


def attach(thing_name: str, certificate_id: str) -> None:
    """Attach the device policy to the certificate, then the certificate to the thing (both idempotent).

    The principal is attached last: from then on `find_reusable_certificate` can find the certificate.
    """
    arn = certificate_arn(certificate_id)
    iot = _iot()
    try:
        iot.attach_policy(policyName=policy_name(), target=arn)
        iot.attach_thing_principal(thingName=thing_name, principal=arn)
    except Exception as exc:
        if error_code(exc) == _NOT_FOUND:
            raise CertificateMissing(f"Certificate {certificate_id} or thing {thing_name} is gone.") from exc
        raise _translate(exc) from exc


def _set_status(certificate_id: str, status: str) -> None:
    _iot().update_certificate(certificateId=certificate_id, newStatus=status)


def activate_certificate(certificate_id: str) -> None:
    """INACTIVE -> ACTIVE. A REVOKED certificate stays revoked (AWS refuses; moto would not)."""
    description = describe_certificate(certificate_id)
    if description is None:
        raise CertificateMissing(f"Certificate {certificate_id} does not exist.")
    if description.get("status") == "REVOKED":
        raise CertificateStateConflict(f"Certificate {certificate_id} is revoked.")
    try:
        _set_status(certificate_id, "ACTIVE")
    except Exception as exc:
        code = error_code(exc)
        if code == _NOT_FOUND:
            raise CertificateMissing(f"Certificate {certificate_id} does not exist.") from exc
        if code == "CertificateStateException":
            raise CertificateStateConflict(f"Certificate {certificate_id} cannot be activated.") from exc
        raise _translate(exc) from exc


def revoke_certificate(certificate_id: str, thing_name: str | None = None) -> None:
    """Take the certificate out of service for good; each step idempotent, a missing certificate fine.

    1. status REVOKED: IoT refuses new connections with it;
    2. DeleteConnection for the things it is attached to (`thing_name`, else all of them), if it was
       ACTIVE or REVOKED before (an INACTIVE certificate cannot have a live connection, and the thing may
       be connected with another one): on AWS a live connection survives a revocation for minutes;
    3. every policy detached: nothing it might still do is authorized.
    """
    description = describe_certificate(certificate_id)
    if description is not None:
        _revoke(certificate_id, description, thing_name)


def _revoke(
    certificate_id: str, description: dict[str, Any], thing_name: str | None, drop: bool = True
) -> list[str] | None:
    """The three steps of `revoke_certificate`; the certificate's things when it looked them up.
    Without `drop` the thing's connection stays (a rotation: it is the new certificate's)."""
    arn = str(description.get("certificateArn") or certificate_arn(certificate_id))
    status = description.get("status")
    if status != "REVOKED":
        try:
            _set_status(certificate_id, "REVOKED")
        except Exception as exc:
            if error_code(exc) == _NOT_FOUND:
                return None
            if error_code(exc) != "CertificateStateException":
                raise _translate(exc) from exc
    things = None
    if drop and status in (
        "ACTIVE",
        "REVOKED",
    ):  # REVOKED too: an earlier attempt may have stopped before the drop
        things = [thing_name] if thing_name else _principal_things(arn)
        for thing in things:
            drop_connection(thing)
    _detach_policies(arn)
    return None if thing_name else things


def drop_connection(thing_name: str) -> bool:
    """iot-data DeleteConnection for the device's client id (the thing name): IoT Core closes its live
    MQTT connection at once. False when it was not connected. The will message is published, as a
    lost connection's would be, so presence sees the device go offline."""
    try:
        iot_data_client().delete_connection(clientId=thing_name)
    except Exception as exc:
        code = error_code(exc)
        if code == _NOT_FOUND:
            return False
        if code == "ForbiddenException":
            # The revocation still stands (reconnects are refused); IoT drops the session within minutes.
            log.error("not allowed to DeleteConnection for %s: check the function's IAM grant", thing_name)
            return False
        raise _translate(exc) from exc
    return True


def _tolerant(call: Any, **kwargs: Any) -> None:
    try:
        call(**kwargs)
    except Exception as exc:
        if error_code(exc) not in (_NOT_FOUND, "CertificateStateException"):
            raise _translate(exc) from exc


def _principal_things(arn: str) -> list[str]:
    try:
        return list(_iot().list_principal_things(principal=arn).get("things", []))
    except Exception as exc:
        if error_code(exc) == _NOT_FOUND:
            return []
        raise _translate(exc) from exc


def _detach_policies(arn: str) -> None:
    iot = _iot()
    try:
        policies = iot.list_attached_policies(target=arn).get("policies", [])
    except Exception as exc:
        if error_code(exc) != _NOT_FOUND:
            raise _translate(exc) from exc
        policies = []
    for policy in policies:
        _tolerant(iot.detach_policy, policyName=policy["policyName"], target=arn)


def _detach_everything(arn: str, things: list[str]) -> None:
    """Detach the certificate from every policy and from these things (each step tolerates "gone")."""
    _detach_policies(arn)
    for thing in things:
        _tolerant(_iot().detach_thing_principal, thingName=thing, principal=arn)


def _remove_certificate(thing_name: str, certificate_id: str, patience: _Patience, drop: bool = True) -> None:
    """Revoke (and disconnect), detach, delete; waits, within `patience`, for the detach to propagate."""
    description = describe_certificate(certificate_id)
    if description is None:
        return
    arn = str(description["certificateArn"])
    # REVOKED even when INACTIVE: a provisioning poll must not adopt a certificate on its way out.
    things = _revoke(certificate_id, description, None, drop=drop)
    things = _principal_things(arn) if things is None else things
    for thing in sorted({thing_name, *things}):  # the policies are detached already
        _tolerant(_iot().detach_thing_principal, thingName=thing, principal=arn)
    # No forceDelete: it would delete a certificate a provisioning poll attached again meanwhile.
    while True:
        try:
            _iot().delete_certificate(certificateId=certificate_id)
            return
        except Exception as exc:
            code = error_code(exc)
            if code in (_NOT_FOUND, "CertificateStateException"):
                return
            if code != "DeleteConflictException":
                raise _translate(exc) from exc
        patience.wait(f"detaching certificate {certificate_id}")
        _detach_everything(arn, _principal_things(arn))  # again: a poll may have attached it meanwhile


def remove_certificate_and_thing(
    thing_name: str, certificate_id: str | None, delete_thing: bool = True
) -> None:
    """Undo provisioning: revoke, disconnect, detach and delete the certificate, then (optionally) the thing.

    Every step tolerates "not found", so this can be repeated. With `delete_thing`, any other
    certificate still attached to the thing (leftovers of interrupted attempts) is removed as well,
    because a thing cannot be deleted while principals are attached. Waits for detaches to propagate
    for up to `PROPAGATION_BUDGET_S`, then raises `IotUnavailable` (503): repeating finishes the job.
    """
    patience = _Patience()
    if certificate_id:
        _remove_certificate(thing_name, certificate_id, patience)
    if not delete_thing:
        return
    while True:
        for arn in thing_principals(thing_name):
            other = _certificate_id(arn)
            if other:
                _remove_certificate(thing_name, other, patience)
            else:
                _tolerant(_iot().detach_thing_principal, thingName=thing_name, principal=arn)
        try:
            _delete_thing(thing_name)
            return
        except _ThingInUse:
            patience.wait(f"detaching the certificates of thing {thing_name}")


def retire_certificate(thing_name: str, certificate_id: str) -> None:
    """Take one certificate of a thing out of service without touching the thing's connection: REVOKED,
    policies and thing detached, deleted. For rotation, where the live connection (same client id) is
    the other certificate's; a connection with this one could only be a stale session, which IoT drops
    itself once the certificate is revoked. Idempotent; IotUnavailable past the propagation budget."""
    _remove_certificate(thing_name, certificate_id, _Patience(), drop=False)


# --- the data endpoint -----------------------------------------------------------------------------

_endpoint: dict[str, Any] | None = None
_endpoint_lock = threading.Lock()


def describe_endpoint() -> dict[str, Any]:
    """{"host", "port"} of the MQTT endpoint: LATCHKEY_IOT_ENDPOINT, else DescribeEndpoint (cached)."""
    global _endpoint
    configured = os.environ.get(c.ENV_IOT_ENDPOINT, "").strip()
    if configured:
        host, _, port = configured.rpartition(":")
        if not host or not port.isdigit():
            return {"host": configured, "port": ATS_PORT}
        return {"host": host, "port": int(port)}
    with _endpoint_lock:
        if _endpoint is None:
            try:
                answer = _iot().describe_endpoint(endpointType="iot:Data-ATS")
            except Exception as exc:
                raise _translate(exc) from exc
            _endpoint = {"host": str(answer["endpointAddress"]), "port": ATS_PORT}
        return dict(_endpoint)


_data_client: Any = None


def iot_data_client() -> Any:
    """The iot-data client (publish, DeleteConnection, shadows) for this account's ATS endpoint, or the
    configured endpoint (moto) when there is one. Here, not in adapters/mqtt.py: revocation needs it too."""
    global _data_client
    if _data_client is None:
        if os.environ.get("LATCHKEY_AWS_ENDPOINT_URL"):
            _data_client = client("iot-data")
        else:
            import boto3

            host = describe_endpoint()["host"]
            _data_client = boto3.session.Session().client("iot-data", endpoint_url=f"https://{host}")
    return _data_client


def reset() -> None:
    """Forget cached answers (tests, or a new moto behind the same process)."""
    global _endpoint, _arn_prefix, _data_client
    _data_client = None
    _endpoint = None
    _arn_prefix = None
