"""A stricter AWS IoT for the moto child process: what the Lambda code meets on AWS and moto skips.

`install()` runs in the child (`local.moto_server`) before it serves; nothing else imports this.

- **CreateCertificateFromCsr honours the CSR.** moto signs a fresh key of its own; here the certificate
  carries the CSR's public key and subject and is signed by a local stand-in for Amazon's CA (made by the
  parent under `LATCHKEY_LOCAL_AWS_CA_DIR`, trusted by the local broker). The CSR must verify and carry
  an RSA key of at least 2048 bits or an EC P-256/P-384/P-521 key, as the API reference requires.
- **Certificate ids are the SHA-256 of the DER certificate**, as on AWS (moto hashes the PEM text), so the
  broker finds a connecting certificate in IoT by its fingerprint.
- **UpdateCertificate**: REVOKED is final ("Once a certificate is revoked, it's status can't be
  changed"); PENDING_TRANSFER / PENDING_ACTIVATION are refused (internal statuses).
- **DetachThingPrincipal is eventually consistent** ("This call is asynchronous. It might take several
  seconds for the detachment to propagate"): the principal stays attached for `detach_delay` seconds.
  Meanwhile it is listed, DeleteThing fails with InvalidRequestException and DeleteCertificate with
  DeleteConflictException (moto's own checks, since the attachment is still there). Attaching again
  cancels the pending detach. Pending detaches are applied at the start of every request, so nothing
  can observe one late.
- **RegisterCertificate with a CA** requires that CA to be registered and ACTIVE and the certificate to
  verify against it (CertificateValidationException otherwise).
- **DeleteCertificate(forceDelete)** also removes the policy attachments (moto keeps them dangling).
- **iot-data DeleteConnection** is handed to the local broker's front door over its control socket
  (`LATCHKEY_LOCAL_BROKER_CONTROL`), which closes that client's connection; ResourceNotFoundException
  when no such client is connected.

`POST /_latchkey/iot {"detachDelaySeconds": 0.3}` changes the delay at run time (tests); `GET` reads it.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from typing import Any
from urllib.parse import parse_qs, unquote

ENV_AWS_CA_DIR = "LATCHKEY_LOCAL_AWS_CA_DIR"
ENV_BROKER_CONTROL = "LATCHKEY_LOCAL_BROKER_CONTROL"
ENV_DETACH_DELAY = "LATCHKEY_LOCAL_DETACH_DELAY"
DEFAULT_DETACH_DELAY = 0.3  # seconds; AWS says "several seconds", kept short so tests stay quick
CONFIG_PATH = "/_latchkey/iot"  # also in local.moto_server


class _State:
    def __init__(self) -> None:
        self.detach_delay = float(os.environ.get(ENV_DETACH_DELAY) or DEFAULT_DETACH_DELAY)
        self.pending: dict[tuple[int, tuple[str, str]], tuple[Any, float]] = {}  # (backend, key) -> due
        self.ca: Any = None
        self.lock = threading.Lock()


STATE = _State()


def apply_due_detaches(now: float | None = None) -> None:
    """Finish every detach whose propagation delay has passed (called before each request)."""
    now = time.monotonic() if now is None else now
    with STATE.lock:
        due = [(key, backend) for key, (backend, at) in STATE.pending.items() if at <= now]
        for key, backend in due:
            STATE.pending.pop(key, None)
            backend.principal_things.pop(key[1], None)


def forget_pending() -> None:
    with STATE.lock:
        STATE.pending.clear()


def _stand_in_ca() -> Any:
    if STATE.ca is None:
        from local.pki import LocalCA

        directory = os.environ.get(ENV_AWS_CA_DIR)
        if not directory:
            raise RuntimeError(f"{ENV_AWS_CA_DIR} is not set: no CA to sign certificates from CSRs")
        STATE.ca = LocalCA(directory, create=False)
    return STATE.ca


def _check_csr_key(csr: Any) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from moto.iot.exceptions import InvalidRequestException

    key = csr.public_key()
    if isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048:
        return
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in (
        "secp256r1",
        "secp384r1",
        "secp521r1",
    ):
        return
    raise InvalidRequestException("The CSR's key must be RSA (2048 bits or more) or EC P-256/P-384/P-521.")


def install() -> None:
    """Patch moto's IoT and iot-data backends in this process."""
    import moto.settings
    from cryptography import x509
    from moto.iot.exceptions import (
        CertificateStateException,
        InvalidRequestException,
        IoTClientError,
        ResourceNotFoundException,
    )
    from moto.iot.models import IoTBackend

    moto.settings.default_user_config.setdefault("iot", {})["use_valid_cert"] = True

    class CertificateValidationException(IoTClientError):  # AWS's error; moto has none
        def __init__(self, message: str) -> None:
            super().__init__("CertificateValidationException", message)

    def create_certificate_from_csr(self: Any, csr: str, set_as_active: Any) -> Any:
        try:
            request = x509.load_pem_x509_csr(csr.encode())
        except ValueError:
            raise InvalidRequestException("The certificate signing request is not a PEM CSR.") from None
        if not request.is_signature_valid:
            raise InvalidRequestException("The signature of the certificate signing request does not verify.")
        _check_csr_key(request)
        issued = _stand_in_ca().sign_csr(csr, keep_subject=True, days=3650)
        active = set_as_active in (True, "true", "True")
        return self.register_certificate(issued.cert_pem, None, set_as_active=active, status="INACTIVE")

    original_register = IoTBackend.register_certificate

    def register_certificate(
        self: Any, certificate_pem: str, ca_certificate_pem: str | None, set_as_active: bool, status: str
    ) -> Any:
        if ca_certificate_pem:
            ca_id = self._find_ca_certificate(ca_certificate_pem)
            if ca_id is None or self.ca_certificates[ca_id].status != "ACTIVE":
                raise CertificateValidationException("The CA certificate is not registered and active.")
            try:
                cert = x509.load_pem_x509_certificate(certificate_pem.encode())
                cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_certificate_pem.encode()))
            except Exception:  # unreadable, or another issuer's signature
                raise CertificateValidationException("The certificate is not signed by that CA.") from None
        return original_register(self, certificate_pem, ca_certificate_pem, set_as_active, status)

    def update_certificate(self: Any, certificate_id: str, new_status: str) -> None:
        cert = self.describe_certificate(certificate_id)
        if new_status in ("PENDING_TRANSFER", "PENDING_ACTIVATION"):
            raise InvalidRequestException(f"Setting the status to {new_status} is not allowed.")
        if cert.status == "REVOKED" and new_status != "REVOKED":
            raise CertificateStateException("A revoked certificate cannot change status.", certificate_id)
        cert.status = new_status

    original_attach = IoTBackend.attach_thing_principal

    def attach_thing_principal(self: Any, thing_name: str, principal_arn: str) -> None:
        original_attach(self, thing_name, principal_arn)
        with STATE.lock:
            STATE.pending.pop((id(self), (principal_arn, thing_name)), None)

    def detach_thing_principal(self: Any, thing_name: str, principal_arn: str) -> None:
        self._get_principal(principal_arn)
        self.describe_thing(thing_name)
        key = (principal_arn, thing_name)
        if key not in self.principal_things:
            raise ResourceNotFoundException()
        if STATE.detach_delay <= 0:
            del self.principal_things[key]
            return
        with STATE.lock:  # a repeated detach keeps the first due time
            STATE.pending.setdefault((id(self), key), (self, time.monotonic() + STATE.detach_delay))

    original_delete_certificate = IoTBackend.delete_certificate

    def delete_certificate(self: Any, certificate_id: str, force_delete: bool) -> None:
        original_delete_certificate(self, certificate_id, force_delete)
        if force_delete:
            for key in [k for k in self.principal_policies if k[0].endswith(f"/{certificate_id}")]:
                del self.principal_policies[key]

    IoTBackend.create_certificate_from_csr = create_certificate_from_csr  # type: ignore[method-assign]
    IoTBackend.register_certificate = register_certificate  # type: ignore[method-assign]
    IoTBackend.update_certificate = update_certificate  # type: ignore[method-assign]
    IoTBackend.attach_thing_principal = attach_thing_principal  # type: ignore[method-assign]
    IoTBackend.detach_thing_principal = detach_thing_principal  # type: ignore[method-assign]
    IoTBackend.delete_certificate = delete_certificate  # type: ignore[method-assign]
    install_delete_connection()


def install_delete_connection() -> None:
    """iot-data DeleteConnection, which moto lacks: the broker's front door closes the connection
    (ResourceNotFoundException when no such client is connected, or no broker runs). The unit tests
    install it in their in-process moto too."""
    from moto.iotdata.exceptions import ResourceNotFoundException
    from moto.iotdata.responses import IoTDataPlaneResponse

    def delete_connection(self: Any) -> str:
        client_id = unquote(self.path.split("/connections/", 1)[-1].split("?", 1)[0])
        query = parse_qs(self.path.split("?", 1)[1]) if "?" in self.path else {}
        prevent_will = (query.get("preventWillMessage") or ["false"])[0].lower() == "true"
        if not _broker_control(
            {"op": "delete_connection", "clientId": client_id, "preventWill": prevent_will}
        ):
            raise ResourceNotFoundException()
        return json.dumps({})

    IoTDataPlaneResponse.delete_connection = delete_connection  # type: ignore[attr-defined]


def _broker_control(request: dict[str, Any], timeout: float = 5.0) -> bool:
    """Ask the broker's front door to close a client's connection; True when it had one."""
    path = os.environ.get(ENV_BROKER_CONTROL)
    if not path or not os.path.exists(path):
        return False  # no broker, so nobody is connected
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(json.dumps(request).encode() + b"\n")
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return bool(json.loads(answer or b"{}").get("found"))


def handle_config(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """`GET`/`POST /_latchkey/iot`: the detach delay (the only knob tests turn)."""
    if environ.get("REQUEST_METHOD") == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = json.loads(environ["wsgi.input"].read(length) or b"{}")
        if "detachDelaySeconds" in body:
            STATE.detach_delay = max(0.0, float(body["detachDelaySeconds"]))
    payload = json.dumps({"detachDelaySeconds": STATE.detach_delay, "pendingDetaches": len(STATE.pending)})
    start_response("200 OK", [("Content-Type", "application/json")])
    return [payload.encode()]
