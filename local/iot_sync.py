"""The broker's view of IoT: who may connect as which client id, asked of (moto's) IoT at every connect.

On AWS, IoT Core authenticates a device by its certificate and authorizes the connect with the policies
attached to it. Locally the front door (`local.mqtt_front`) calls `IotDirectory.authorize(DER, client
id)` for every CONNECT, which answers from IoT's state at that moment, as IoT Core does:

- the certificate must exist in IoT (looked up by its id, the SHA-256 of its DER) and be ACTIVE, so an
  INACTIVE, REVOKED or deleted certificate is refused ("Certificates must be in the ACTIVE state to
  authenticate devices", UpdateCertificate);
- the client id must be a thing the certificate is attached to (`iot:Connection.Thing.IsAttached`, and
  "the value of clientId in the MQTT connect message ... must exactly match the thing name");
- an attached policy must allow `iot:Connect` on `client/<client id>` (with
  `${iot:Connection.Thing.ThingName}` = the client id), and none deny it.

The service's own identity (the presence bridge, the shadow service, the local publish path of the
Lambda code) is admitted with any client id: it stands for IoT rules and the data-plane API.

A certificate that leaves ACTIVE while connected is dropped by IoT Core only "within a few minutes"
(UpdateCertificate); the Lambda code calls DeleteConnection to drop it at once. `revalidate_every`
seconds (30 by default, `None` = never) this class re-checks every live session and drops those no longer
admitted, standing in for that eventual drop, slowly enough that a test of DeleteConnection cannot pass
without the call.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import threading
from typing import Any

from local.broker import Broker
from local.mqtt_front import Admission
from local.pki import SERVICE_CN, IssuedCert

LOG = logging.getLogger("latchkey.local.iot_sync")
THING_NAME_VAR = "${iot:Connection.Thing.ThingName}"
REVALIDATE_EVERY = 30.0


def certificate_id(der: bytes) -> str:
    """IoT's certificate id: the SHA-256 of the DER certificate, in hex."""
    return hashlib.sha256(der).hexdigest()


def _error_code(exc: BaseException) -> str:
    return str((getattr(exc, "response", None) or {}).get("Error", {}).get("Code", ""))


def _pages(call: Any, key: str, **kwargs: Any) -> list[Any]:
    items: list[Any] = []
    while True:
        answer = call(**kwargs)
        items += answer.get(key, [])
        token = answer.get("nextToken") or answer.get("nextMarker")
        if not token:
            return items
        kwargs["nextToken" if answer.get("nextToken") else "marker"] = token


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statement_matches(statement: dict[str, Any], action: str, resource: str, client_id: str) -> bool:
    actions = [str(a).lower() for a in _as_list(statement.get("Action", []))]
    if not any(fnmatch.fnmatchcase(action.lower(), a) for a in actions):
        return False
    resources = [str(r).replace(THING_NAME_VAR, client_id) for r in _as_list(statement.get("Resource", []))]
    if not any(fnmatch.fnmatchcase(resource, r) for r in resources):
        return False
    for operator, tests in (statement.get("Condition") or {}).items():
        for key, wanted in tests.items():
            # Only the attachment condition is known here, and the caller has already required it.
            if not (operator == "Bool" and key == "iot:Connection.Thing.IsAttached"):
                return False
            if str(_as_list(wanted)[0]).lower() != "true":
                return False
    return True


def policy_allows_connect(documents: list[dict[str, Any]], client_arn: str, client_id: str) -> bool:
    """IAM-style evaluation of `iot:Connect` on `client_arn`: an explicit Allow and no Deny."""
    allowed = False
    for document in documents:
        for statement in _as_list(document.get("Statement", [])):
            if not _statement_matches(statement, "iot:Connect", client_arn, client_id):
                continue
            if statement.get("Effect") == "Deny":
                return False
            allowed = allowed or statement.get("Effect") == "Allow"
    return allowed


class IotDirectory:
    def __init__(
        self,
        iot_client: Any,
        broker: Broker,
        service: IssuedCert,
        revalidate_every: float | None = REVALIDATE_EVERY,
    ) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        self.iot = iot_client
        self.broker = broker
        self.revalidate_every = revalidate_every
        cert = x509.load_pem_x509_certificate(service.cert_pem.encode())
        self._service_der = cert.public_bytes(serialization.Encoding.DER)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped: list[str] = []  # client ids the revalidation dropped

    def start(self) -> IotDirectory:
        self.broker.authorizer = self.authorize
        if self.revalidate_every:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="iot-revalidate", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    # -- the connect-time decision ------------------------------------------------------------------
    def authorize(self, der: bytes, client_id: str) -> Admission | str:
        """An Admission (username = the thing name), or why IoT Core would refuse this connect."""
        if der == self._service_der:
            return Admission(SERVICE_CN, SERVICE_CN)
        cid = certificate_id(der)
        try:
            description = self.iot.describe_certificate(certificateId=cid)["certificateDescription"]
        except Exception as exc:
            if _error_code(exc) == "ResourceNotFoundException":
                return f"certificate {cid[:12]}... is not registered in IoT"
            raise
        status = description.get("status")
        if status != "ACTIVE":
            return f"certificate {cid[:12]}... is {status}"
        arn = str(description["certificateArn"])
        things = _pages(self.iot.list_principal_things, "things", principal=arn)
        if client_id not in things:
            return f"client id {client_id!r} is not a thing attached to certificate {cid[:12]}..."
        documents = []
        for policy in _pages(self.iot.list_attached_policies, "policies", target=arn):
            document = self.iot.get_policy(policyName=policy["policyName"])["policyDocument"]
            documents.append(json.loads(document) if isinstance(document, str) else document)
        prefix = arn.split(":cert/", 1)[0]  # arn:aws:iot:<region>:<account>
        if not policy_allows_connect(documents, f"{prefix}:client/{client_id}", client_id):
            return f"no policy attached to certificate {cid[:12]}... allows iot:Connect as {client_id!r}"
        return Admission(client_id, cid)

    # -- the eventual drop ----------------------------------------------------------------------------
    def _run(self) -> None:
        assert self.revalidate_every
        while not self._stop.wait(self.revalidate_every):
            try:
                self.revalidate()
            except Exception as exc:  # moto shutting down, a transient error: next round
                if not self._stop.is_set():
                    LOG.warning("revalidating sessions failed: %s", exc)

    def revalidate(self) -> list[str]:
        """Drop every live session whose certificate would be refused now; the client ids dropped."""
        front = self.broker.front
        dropped = []
        for client_id, session in (front.sessions() if front else {}).items():
            if session.admission.username == SERVICE_CN:
                continue
            verdict = self.authorize(session.certificate_der, client_id)
            if isinstance(verdict, str) and self.broker.drop(client_id, "SERVER_INITIATED_DISCONNECT"):
                LOG.info("dropped %s: %s", client_id, verdict)
                dropped.append(client_id)
        self.dropped += dropped
        return dropped
