"""The IoT control-plane adapter: things, certificates, the device policy, the data endpoint.

The only code that calls the `iot` API. Every function is idempotent and safe to repeat, so that the
provisioning steps above it can be retried after a crash. botocore errors are translated here, by error
code, into domain errors (which the handlers already know how to answer) or the exceptions below.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from lambdas import config, definitions
from lambdas import constants as c
from lambdas.aws_clients import client
from lambdas.errors import BadRequest, Conflict, ServiceUnavailable

log = logging.getLogger("latchkey.iot")

ATS_PORT = 8883
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
    """DeleteThing refused: a principal is attached (one was attached after we listed them)."""


def _delete_thing(thing_name: str) -> None:
    try:
        _iot().delete_thing(thingName=thing_name)
    except Exception as exc:
        code = error_code(exc)
        if code == _NOT_FOUND:
            return
        if code == "InvalidRequestException" and "attached" in str(exc).lower():
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


def revoke_certificate(certificate_id: str) -> None:
    """Set the certificate REVOKED (IoT drops its connections); a missing certificate is fine."""
    try:
        _set_status(certificate_id, "REVOKED")
    except Exception as exc:
        if error_code(exc) in (_NOT_FOUND, "CertificateStateException"):
            return
        raise _translate(exc) from exc


def _tolerant(call: Any, **kwargs: Any) -> None:
    try:
        call(**kwargs)
    except Exception as exc:
        if error_code(exc) not in (_NOT_FOUND, "CertificateStateException"):
            raise _translate(exc) from exc


def _detach_everything(arn: str, things: list[str]) -> None:
    """Detach the certificate from these things and from every policy (each step tolerates "gone")."""
    iot = _iot()
    for thing in things:
        _tolerant(iot.detach_thing_principal, thingName=thing, principal=arn)
    try:
        policies = iot.list_attached_policies(target=arn).get("policies", [])
    except Exception as exc:
        if error_code(exc) != _NOT_FOUND:
            raise _translate(exc) from exc
        policies = []
    for policy in policies:
        _tolerant(iot.detach_policy, policyName=policy["policyName"], target=arn)


def _remove_certificate(thing_name: str, certificate_id: str) -> None:
    iot = _iot()
    try:
        arn = certificate_arn(certificate_id)
    except CertificateMissing:
        return
    _detach_everything(arn, [thing_name])
    description = describe_certificate(certificate_id)
    if description is None:
        return
    if description.get("status") == "ACTIVE":
        _tolerant(iot.update_certificate, certificateId=certificate_id, newStatus="REVOKED")
    # No forceDelete: a provisioning poll adopting this certificate may attach it to its thing and the
    # policy again meanwhile; then the delete conflicts and we detach again. (moto's forceDelete would
    # also delete a certificate that still has a policy and keep that attachment, which then breaks every
    # later DeleteCertificate of the account with ResourceNotFound.)
    for _ in range(3):
        try:
            iot.delete_certificate(certificateId=certificate_id)
            return
        except Exception as exc:
            code = error_code(exc)
            if code in (_NOT_FOUND, "CertificateStateException"):
                return
            if code != "DeleteConflictException":
                raise _translate(exc) from exc
        try:
            things = iot.list_principal_things(principal=arn).get("things", [])
        except Exception as exc:
            raise _translate(exc) from exc
        _detach_everything(arn, things)
    raise IotUnavailable("The device is being provisioned right now; retry shortly.", retry_after=1)


def remove_certificate_and_thing(
    thing_name: str, certificate_id: str | None, delete_thing: bool = True
) -> None:
    """Undo provisioning: detach and delete the certificate, then (optionally) the thing.

    Every step tolerates "not found", so this can be repeated. With `delete_thing`, any other
    certificate still attached to the thing (leftovers of interrupted attempts) is removed as well,
    because a thing cannot be deleted while principals are attached.
    """
    if certificate_id:
        _remove_certificate(thing_name, certificate_id)
    if not delete_thing:
        return
    for _ in range(3):
        for arn in thing_principals(thing_name):
            other = _certificate_id(arn)
            if other:
                _remove_certificate(thing_name, other)
            else:
                _tolerant(_iot().detach_thing_principal, thingName=thing_name, principal=arn)
        try:
            _delete_thing(thing_name)
            return
        except _ThingInUse:
            continue  # a provisioning poll attached a certificate meanwhile: remove that one too
    raise IotUnavailable("The device is being provisioned right now; retry shortly.", retry_after=1)


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


def reset() -> None:
    """Forget cached answers (tests, or a new moto behind the same process)."""
    global _endpoint, _arn_prefix
    _endpoint = None
    _arn_prefix = None
