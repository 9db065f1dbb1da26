"""Certificate rotation on the device: a new key and certificate without re-flashing (docs/agent.md).

While online with its current certificate, the agent rotates when it is due - at `renew_share` of the
certificate's lifetime, or when the service asked (a retained `{"command": "rotate"}` notice on the
commands topic) - in four steps over the signed device API (`POST /v1/device/rotate`):

1. a new key (unless `rotate_key = false`), saved in `rotation.json` before its CSR is sent;
2. `request`: the new certificate arrives and is saved beside the current one; `ack` activates it;
3. a test connect with the new certificate and key (the current connection is closed first: one
   client id), then `complete`, signed with the new key: the service revokes the old certificate;
4. the new certificate becomes `credentials.json` and the new key `rotated_key.pem` (which overrides the
   identity file's key from then on), and the agent reconnects with them.

Until step 3 succeeds the old certificate and key stay in force, and each step is saved before the next
one, so a power cut, a lost answer or a refused connect at any point leaves a device that still connects:
it resumes, or drops the pending rotation and asks again later.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from firmware.api import DeviceApi, NetworkError, Response
from firmware.clock import Clock
from firmware.credentials import Credentials, CredentialsError, CredentialStore, atomic_write
from firmware.identity import DeviceKey, Identity, IdentityError
from firmware.transport import MqttSettings, Transport, TransportError

log = logging.getLogger("latchkey.rotation")

ROTATE_PATH = "/v1/device/rotate"
PENDING_FILE = "rotation.json"  # the rotation in progress: new key, step, new certificate
ROTATED_KEY_FILE = "rotated_key.pem"  # the key of the last completed rotation (JSON: deviceId, key)
MEMORY_FILE = "rotation-memory.json"  # notices already handled; the service's expiry per certificate
DEFAULT_RENEW_SHARE = 2 / 3
MAX_CONNECT_FAILURES = 3  # test connects refused before the pending certificate is given up
RETRY_BASE_S = 30.0
RETRY_CAP_S = 3600.0
_MAX_REMEMBERED = 16


class Agent(Protocol):
    """What the rotation uses of firmware.agent.Agent (which imports this module, not the reverse)."""

    identity: Identity | None
    credentials: Credentials | None
    api: DeviceApi
    transport: Transport
    clock: Clock
    _csr: str | None

    def _timestamp(self) -> int: ...
    def _learn_time(self, response: Response) -> None: ...
    def _mqtt_settings(self, identity: Identity, credentials: Credentials) -> MqttSettings: ...


# --- when ----------------------------------------------------------------------------------------------


def certificate_dates(certificate_pem: str) -> tuple[float, float] | None:
    """(notBefore, notAfter) as unix seconds, or None for a certificate that cannot be read."""
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(certificate_pem.encode())
    except ValueError:
        return None
    return cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp()


def _parse_iso(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def renew_at(certificate_pem: str, share: float, expires_at: float | None = None) -> float | None:
    """When to renew: notBefore + share x lifetime, the lifetime ending at notAfter or at the service's
    `expires_at` if sooner (AWS-issued certificates say 2049; the service tracks the configured validity)."""
    dates = certificate_dates(certificate_pem)
    if dates is None:
        return None
    not_before, not_after = dates
    end = min(not_after, expires_at) if expires_at else not_after
    return not_before + share * max(0.0, end - not_before)


# --- what is saved -------------------------------------------------------------------------------------


@dataclass
class Pending:
    key_pem: str = field(repr=False)
    step: str = "new"  # new -> issued -> acked -> connected -> complete
    rotation_id: str | None = None
    credentials: dict[str, Any] | None = None  # Credentials.to_json() of the new certificate
    certificate_expires_at: str | None = None
    connect_failures: int = 0

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, indent=2).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Pending:
        raw = json.loads(data)
        if not isinstance(raw, dict) or not isinstance(raw.get("key_pem"), str):
            raise ValueError("no key")
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})

    def new_credentials(self) -> Credentials:
        if not self.credentials:
            raise CredentialsError("no new certificate yet")
        return Credentials.from_json(json.dumps(self.credentials).encode())


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def load_pending(state_dir: Path) -> Pending | None:
    data = _read(Path(state_dir) / PENDING_FILE)
    if data is None:
        return None
    try:
        return Pending.from_json(data)
    except (ValueError, TypeError):
        log.warning("ignoring an unreadable %s; the rotation starts again when due", PENDING_FILE)
        return None


def with_rotated_key(identity: Identity | None, state_dir: Path) -> Identity | None:
    """The identity with the key of the last completed rotation, when there was one for this device."""
    data = _read(Path(state_dir) / ROTATED_KEY_FILE)
    if identity is None or data is None:
        return identity
    try:
        saved = json.loads(data)
        if saved.get("deviceId") != identity.device_id:
            return identity  # an earlier life of this hardware (a new registration)
        return Identity(identity.device_id, DeviceKey.from_pem(saved["privateKeyPem"]), identity.api_url)
    except (ValueError, TypeError, KeyError, AttributeError, IdentityError):
        log.error("%s is unreadable; signing with the identity's key", ROTATED_KEY_FILE)
        return identity


def finish_interrupted(state_dir: Path, device_id: str) -> None:
    """A rotation the service completed but the agent had not put in place when it stopped: finish it."""
    pending = load_pending(state_dir)
    if pending is not None and pending.step == "complete":
        _put_in_place(Path(state_dir), device_id, pending)


def _put_in_place(state_dir: Path, device_id: str, pending: Pending) -> Credentials:
    """New certificate, then new key, then the pending file goes: each write atomic, the order safe to
    repeat (a stop in between is finished by `finish_interrupted` at the next start)."""
    credentials = pending.new_credentials().with_ack()
    CredentialStore(state_dir).save(credentials)
    document = {"deviceId": device_id, "privateKeyPem": pending.key_pem}
    atomic_write(state_dir / ROTATED_KEY_FILE, json.dumps(document).encode())
    with contextlib.suppress(FileNotFoundError):
        (state_dir / PENDING_FILE).unlink()
    return credentials


# --- the rotation --------------------------------------------------------------------------------------


class Rotation:
    def __init__(self, state_dir: Path, share: float = DEFAULT_RENEW_SHARE, new_key: bool = True) -> None:
        self.state_dir = Path(state_dir)
        self.share = share
        self.new_key = new_key
        self.pending = load_pending(self.state_dir)
        self.requested: str | None = None  # the id of a notice not handled yet
        self.failures = 0
        self.next_try = 0.0  # monotonic
        self._memory = self._load_memory()

    # -- memory ---------------------------------------------------------------------------------------

    def _load_memory(self) -> dict[str, Any]:
        data = _read(self.state_dir / MEMORY_FILE)
        try:
            memory = json.loads(data) if data else {}
        except ValueError:
            memory = {}
        if not isinstance(memory, dict):
            memory = {}
        memory.setdefault("handled", [])
        memory.setdefault("expiresAt", {})
        return memory

    def _remember(
        self, rotation_id: str | None = None, certificate_id: str = "", expires: Any = None
    ) -> None:
        if rotation_id and rotation_id not in self._memory["handled"]:
            self._memory["handled"] = [*self._memory["handled"], rotation_id][-_MAX_REMEMBERED:]
        if certificate_id and expires:
            self._memory["expiresAt"] = {certificate_id: expires}  # only the newest matters
        atomic_write(self.state_dir / MEMORY_FILE, json.dumps(self._memory).encode())

    # -- when -----------------------------------------------------------------------------------------

    def on_notice(self, message: dict[str, Any]) -> None:
        """A `rotate` notice; retained, so it comes again after each connect until the service clears it."""
        rotation_id = message.get("rotationId")
        rotation_id = str(rotation_id) if rotation_id else "unnamed"
        if rotation_id in self._memory["handled"] or (
            self.pending and self.pending.rotation_id == rotation_id
        ):
            return
        log.info("the service asks for a new certificate (rotation %s)", rotation_id)
        self.requested = rotation_id
        self.next_try = 0.0

    def renew_at(self, credentials: Credentials) -> float | None:
        expires = _parse_iso(self._memory["expiresAt"].get(credentials.certificate_id))
        return renew_at(credentials.certificate_pem, self.share, expires)

    def due(self, credentials: Credentials | None, now: float, monotonic: float, clock_trusted: bool) -> bool:
        if credentials is None or monotonic < self.next_try:
            return False
        if self.pending is not None or self.requested:
            return True
        if not clock_trusted:
            return False  # a clock before 2025 cannot judge a certificate's age
        at = self.renew_at(credentials)
        return at is not None and now >= at

    def wipe(self) -> None:
        """Released or revoked: a pending rotation means nothing any more (the completed key stays: the
        service keeps it as the device's)."""
        self.pending, self.requested = None, None
        with contextlib.suppress(FileNotFoundError):
            (self.state_dir / PENDING_FILE).unlink()

    def _save(self, pending: Pending) -> None:
        self.pending = pending
        atomic_write(self.state_dir / PENDING_FILE, pending.to_json())

    def _later(self, monotonic: float, why: str) -> None:
        delay = min(RETRY_CAP_S, RETRY_BASE_S * 2**self.failures)
        self.failures += 1
        self.next_try = monotonic + delay
        log.warning("certificate rotation: %s; trying again in %.0f s", why, delay)

    # -- the steps (called from the agent's online state) ----------------------------------------------

    def step(self, agent: Agent) -> tuple[float, bool]:
        """Run the rotation as far as it goes: (the delay before the agent's next step, whether it must
        reconnect - with the new certificate, or with the old one when the new one was refused)."""
        identity = agent.identity
        if identity is None or agent.credentials is None:
            return 0.0, False
        monotonic = agent.clock.monotonic()
        try:
            if self.pending is None:
                key = DeviceKey.generate() if self.new_key else identity.key
                self._save(Pending(key.private_pem().decode(), rotation_id=self.requested))
            pending = self.pending
            assert pending is not None
            if pending.step == "new" and not self._request(agent, identity, pending):
                return self._stay(agent, monotonic, "the service did not deliver a new certificate")
            if pending.step == "issued" and not self._ack(agent, identity, pending):
                return self._stay(agent, monotonic, "the new certificate was not activated")
            if pending.step == "acked" and not self._try_connect(agent, pending):
                return self._reconnect(agent, monotonic, "the broker refused the new certificate")
            if pending.step == "connected" and not self._complete(agent, identity, pending):
                return self._reconnect(agent, monotonic, "the service did not complete the rotation")
        except NetworkError as exc:
            return self._stay(agent, monotonic, f"network error ({exc})")
        self._promote(agent, identity, pending)
        return 0.0, True

    def _stay(self, agent: Agent, monotonic: float, why: str) -> tuple[float, bool]:
        """Still connected with the current certificate: carry on, try again later."""
        self._later(monotonic, why)
        return 0.0, not agent.transport.is_connected()

    def _reconnect(self, agent: Agent, monotonic: float, why: str) -> tuple[float, bool]:
        """Back to the current certificate (still valid: the old one is revoked only by `complete`)."""
        self._later(monotonic, why)
        return 0.0, True

    def _post(self, agent: Agent, identity: Identity, body: dict[str, Any]) -> Response:
        response = agent.api.signed_post(identity, ROTATE_PATH, body, agent._timestamp())
        agent._learn_time(response)
        return response

    def _gone(self, response: Response) -> bool:
        """The service no longer knows this rotation (expired, replaced, device not active): drop it."""
        if response.status in (400, 404, 409):
            log.warning("the service dropped the pending rotation (HTTP %s)", response.status)
            self.wipe()
            return True
        return False

    def _request(self, agent: Agent, identity: Identity, pending: Pending) -> bool:
        csr = DeviceKey.from_pem(pending.key_pem).csr_pem(identity.device_id)
        response = self._post(agent, identity, {"step": "request", "csr": csr})
        if response.status != 200 or response.value("status") != "rotating":
            self._gone(response)
            return False
        try:
            credentials = Credentials.from_poll(response.body)
        except CredentialsError as exc:
            log.error("rotation answer: %s", exc)
            return False
        pending.credentials = json.loads(credentials.to_json())
        pending.rotation_id = response.value("rotationId") or pending.rotation_id
        pending.certificate_expires_at = response.value("certificateExpiresAt")
        pending.step = "issued"
        self._save(pending)
        log.info("new certificate %s received; acknowledging", credentials.certificate_id)
        return True

    def _ack(self, agent: Agent, identity: Identity, pending: Pending) -> bool:
        certificate_id = pending.new_credentials().certificate_id
        response = self._post(agent, identity, {"step": "ack", "certificateId": certificate_id})
        if not 200 <= response.status < 300:
            self._gone(response)
            return False
        pending.step = "acked"
        self._save(pending)
        return True

    def _try_connect(self, agent: Agent, pending: Pending) -> bool:
        """Connect once with the new certificate and key (closing the current connection first)."""
        identity = agent.identity
        assert identity is not None
        new = Identity(identity.device_id, DeviceKey.from_pem(pending.key_pem), identity.api_url)
        agent.transport.disconnect()
        try:
            agent.transport.connect(agent._mqtt_settings(new, pending.new_credentials()), _ignore, _ignore)
        except TransportError as exc:
            agent.transport.disconnect()
            pending.connect_failures += 1
            log.warning("test connect with the new certificate failed: %s", exc)
            if pending.connect_failures >= MAX_CONNECT_FAILURES:
                log.error("giving the new certificate up; the current one stays in use")
                self.wipe()
            else:
                self._save(pending)
            return False
        agent.transport.disconnect()
        pending.step = "connected"
        self._save(pending)
        return True

    def _complete(self, agent: Agent, identity: Identity, pending: Pending) -> bool:
        new = Identity(identity.device_id, DeviceKey.from_pem(pending.key_pem), identity.api_url)
        certificate_id = pending.new_credentials().certificate_id
        response = self._post(agent, new, {"step": "complete", "certificateId": certificate_id})
        if response.status == 401 and response.server_time() is None:
            # The service does not know the new key (any more): the rotation was abandoned there.
            log.warning("the service no longer accepts the new key; dropping the pending rotation")
            self.wipe()
            return False
        if not 200 <= response.status < 300:
            self._gone(response)
            return False
        pending.step = "complete"
        self._save(pending)
        return True

    def _promote(self, agent: Agent, identity: Identity, pending: Pending) -> None:
        credentials = _put_in_place(self.state_dir, identity.device_id, pending)
        self._remember(pending.rotation_id, credentials.certificate_id, pending.certificate_expires_at)
        self.pending, self.requested, self.failures, self.next_try = None, None, 0, 0.0
        agent.identity = Identity(identity.device_id, DeviceKey.from_pem(pending.key_pem), identity.api_url)
        agent.credentials = credentials
        agent._csr = None
        log.info("rotated to certificate %s; reconnecting with it", credentials.certificate_id)


def _ignore(*_: Any) -> None:
    """Message and disconnect handler of the test connect: nothing it hears matters."""
