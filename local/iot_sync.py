"""Carry certificate status from (moto) IoT to the broker's CRL, as IoT Core enforces it on AWS.

The Lambda code revokes a device with `UpdateCertificate(REVOKED)` (or deactivates and deletes the
certificate) and nothing else; on AWS, IoT Core then refuses the certificate and drops its connection.
Locally this thread watches moto's certificates every ~0.5 s and puts the serial of every certificate
issued by the local CA that is

- REVOKED, or
- INACTIVE after having been seen ACTIVE (deactivation; it comes off the CRL if reactivated), or
- deleted after having been seen,

on the broker's CRL, and takes over the device's live session (see `local.broker`). A fresh certificate
that is registered INACTIVE/PENDING and waits for the device's ack is deliberately *not* blocked, so
the device's first connect right after the ack does not race this poller (documented in docs/local.md).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from local.broker import Broker
from local.pki import LocalCA, common_name

LOG = logging.getLogger("latchkey.local.iot_sync")


@dataclass
class _Known:
    serial: int
    cn: str | None
    ours: bool  # issued by the local CA (the only ones the broker can trust anyway)
    was_active: bool = False


class IotCertificateSync:
    def __init__(self, iot_client: Any, broker: Broker, ca: LocalCA, interval: float = 0.5) -> None:
        self.iot = iot_client
        self.broker = broker
        self.ca = ca
        self.interval = interval
        self._known: dict[str, _Known] = {}  # certificate id -> what we learnt from its PEM
        self._blocked: dict[int, str | None] = {}  # serial -> CN, what this sync put on the CRL
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._passes = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def start(self) -> IotCertificateSync:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="iot-cert-sync", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync_once()
            except Exception as exc:  # moto shutting down, a transient error: try again next tick
                if not self._stop.is_set():
                    LOG.warning("certificate sync failed: %s", exc)
            with self._cond:
                self._passes += 1
                self._cond.notify_all()
            self._wake.wait(self.interval)
            self._wake.clear()

    def sync_now(self, timeout: float = 10.0) -> bool:
        """Wake the thread and wait for one complete pass that started after this call."""
        with self._cond:
            target = self._passes + 2  # the pass under way may have listed before our change
            self._wake.set()
            return self._cond.wait_for(lambda: self._passes >= target or self._stop.is_set(), timeout)

    # -- one pass -------------------------------------------------------------------------------
    def _list(self) -> dict[str, str]:
        statuses: dict[str, str] = {}
        kwargs: dict[str, Any] = {"pageSize": 250}
        while True:
            page = self.iot.list_certificates(**kwargs)
            for cert in page.get("certificates", []):
                statuses[cert["certificateId"]] = cert["status"]
            marker = page.get("nextMarker")
            if not marker:
                return statuses
            kwargs["marker"] = marker

    def _learn(self, certificate_id: str) -> _Known | None:
        try:
            pem = self.iot.describe_certificate(certificateId=certificate_id)["certificateDescription"][
                "certificatePem"
            ]
            cert = x509.load_pem_x509_certificate(pem.encode())
        except Exception as exc:  # deleted in between, or a PEM we cannot read
            LOG.debug("cannot read certificate %s: %s", certificate_id, exc)
            return None
        return _Known(cert.serial_number, common_name(cert), self.ca.issued_by_me(cert))

    def sync_once(self) -> None:
        statuses = self._list()
        for certificate_id in statuses.keys() - self._known.keys():
            known = self._learn(certificate_id)
            if known is not None:
                self._known[certificate_id] = known

        blocked: dict[int, str | None] = {}
        for certificate_id, known in list(self._known.items()):
            if not known.ours:
                continue
            status = statuses.get(certificate_id)
            if status == "ACTIVE":
                known.was_active = True
            elif status in ("REVOKED", None) or known.was_active:
                blocked[known.serial] = known.cn  # revoked, deleted (None), or deactivated

        added = blocked.keys() - self._blocked.keys()
        removed = self._blocked.keys() - blocked.keys()
        if added or removed:
            identities = sorted({cn for serial in added if (cn := blocked[serial])})
            LOG.info("CRL: +%s -%s (drop sessions of %s)", sorted(added), sorted(removed), identities)
            self.broker.sync_crl((self.broker.revoked - removed) | added, identities)
            self._blocked = blocked
