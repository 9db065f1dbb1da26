"""The agent's state machine: register (mode B) → poll → save → ack → connect → online, and back.

Everything with side effects (clock, randomness, HTTP, MQTT, system facts) is injected, so tests and the
fleet simulator drive the real state machine: `step()` does one thing and returns how long to wait.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import queue
import random
import threading
from collections.abc import Callable
from typing import Any

from firmware import __version__, rotation, schedule, sysinfo
from firmware.api import DeviceApi, Http, NetworkError, Response, UrllibHttp, tls_context
from firmware.clock import Clock, SystemClock
from firmware.config import AgentConfig, ConfigError
from firmware.credentials import Credentials, CredentialsError, CredentialStore
from firmware.device import DeviceModel
from firmware.exits import ExitCode, Unrecoverable
from firmware.identity import (
    Identity,
    IdentityError,
    load_identity_file,
    load_or_create_key,
    save_identity_file,
)
from firmware.schedule import Backoff, Reconnect
from firmware.transport import MqttSettings, PahoTransport, Transport, TransportError

log = logging.getLogger("latchkey.agent")

IDENTITY_FILE = "identity.json"  # written after a registration-token registration
KEY_FILE = "device_key.pem"  # the self-generated key, kept from before registration
CLOCK_RETRY_DELAY = 1.0
# A clock before this (2025-01-01) is certainly wrong: no certificate date check can be trusted.
MIN_PLAUSIBLE_TIME = 1_735_689_600
# Beyond this learned offset certificate dates cannot be checked against our clock either.
MAX_TRUSTED_OFFSET = 86400.0
# The error codes of the device API's refusals that only a re-flash can change (docs/protocol.md).
# An answer with the status but not the code came from something else (a wrong api_url, a proxy).
FINAL_ANSWERS = {
    ("register", 410): ("registration_token_used", ExitCode.TOKEN_USED),
    ("register", 401): ("invalid_registration_token", ExitCode.TOKEN_REJECTED),
    ("register", 409): ("mac_mismatch", ExitCode.MAC_MISMATCH),
    ("poll", 403): ("forbidden", ExitCode.REVOKED),
    ("ack", 403): ("forbidden", ExitCode.REVOKED),
    ("poll", 404): ("not_found", ExitCode.DELETED),
}
# Answers read from eventually consistent data (a fresh token's index entry, a just registered device)
# are believed only when repeated after a wait at the cap; the others are final at once.
CONFIRM_FIRST = {ExitCode.TOKEN_REJECTED, ExitCode.DELETED}
# How often the agent looks at its own facts (ip, version) while online: local, free; a change is sent.
FACTS_CHECK_INTERVAL = 60.0
# A sensor reading is reported again when it moved by at least this much (in its unit) since the last
# report; smaller wobbles are not a change worth a shadow update.
SENSOR_DEADBAND = 0.5

SysInfo = Callable[[], dict[str, Any]]


class State(enum.Enum):
    REGISTER = "register"
    POLL = "poll"
    ACK = "ack"
    CONNECT = "connect"
    ONLINE = "online"


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        http: Http | None = None,
        transport: Transport | None = None,
        system_info: SysInfo | None = None,
    ) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.backoff = Backoff(
            config.backoff_initial,
            config.backoff_cap,
            config.jitter,
            rng or random.Random(),
            fast_window=config.poll_fast_window,
            growth=config.poll_growth,
            fast_wait=config.poll_fast_wait,
        )
        # MQTT has its own backoff: a broker outage must not age the poll schedule, nor poll the API.
        self.reconnect = Reconnect(config.reconnect_initial, config.reconnect_cap, self.backoff.rng)
        self._throttled = 0  # consecutive 429 answers
        self.clock_offset = 0.0
        self.polls = 0  # polls since power-on: the "attempt" the service sees
        self.store = CredentialStore(config.state_dir)
        self.transport: Transport = transport or PahoTransport()
        self._system_info = system_info or self._detect_system_info
        self._clock_untrusted = self.clock.time() < MIN_PLAUSIBLE_TIME
        if self._clock_untrusted:
            log.warning("system clock is before 2025; certificate dates will not be checked until it is set")
        self._clock_retry_armed = True
        self._suspect: ExitCode | None = None  # a final answer heard once, to be confirmed
        self._csr: str | None = None
        self._board = config.board or sysinfo.board()
        self._commands: queue.SimpleQueue[tuple[str, bytes]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._next_status = 0.0
        self._published: dict[str, Any] | None = None  # the facts of the last status sent (this boot)
        self._reported: dict[str, Any] | None = None  # the shadow's reported state, as we last knew it
        self.device = DeviceModel(config.state_dir)

        self.identity = self._load_identity()
        if self.identity is not None:  # certificate rotation (firmware/rotation.py): its key, if any
            rotation.finish_interrupted(config.state_dir, self.identity.device_id)
            self.identity = rotation.with_rotated_key(self.identity, config.state_dir)
        self.rotation = rotation.Rotation(config.state_dir, config.renew_share, config.rotate_key)
        api_url = config.api_url or (self.identity.api_url if self.identity else "")
        if not api_url:
            raise ConfigError("no api_url: set it in the config (or the identity file's apiUrl)")
        self.api = DeviceApi(
            api_url, http or UrllibHttp(tls_context(self._clock_untrusted)), config.http_timeout
        )
        self.credentials: Credentials | None = None
        self.state = self._boot_state()

    # -- start-up ---------------------------------------------------------------------------------

    def _load_identity(self) -> Identity | None:
        try:
            if self.config.identity_file is not None:
                return load_identity_file(self.config.identity_file)
            saved = self.config.state_dir / IDENTITY_FILE
            if saved.exists():
                return load_identity_file(saved)
        except IdentityError as exc:
            raise ConfigError(str(exc)) from exc
        if self.config.registration_token:
            return None
        raise ConfigError("the config needs identity_file (claim code devices) or registration_token")

    def _boot_state(self) -> State:
        credentials = self.store.load()
        if self.identity is None:
            if credentials is not None:
                log.warning("credentials without a device identity; discarding them")
                self.store.wipe()
            log.info("not registered yet; registering with the registration token")
            return State.REGISTER
        if credentials is not None and credentials.thing_name != self.identity.device_id:
            log.warning(
                "saved credentials belong to %s, not %s; discarding them",
                credentials.thing_name,
                self.identity.device_id,
            )
            self.store.wipe()
            credentials = None
        self.credentials = credentials
        if credentials is None:
            log.info("device %s has no credentials; polling for a claim", self.identity.device_id)
            return State.POLL
        if not credentials.acked:
            log.info("credentials saved but not yet acknowledged; acknowledging")
            return State.ACK
        log.info("device %s has credentials; connecting directly", self.identity.device_id)
        return State.CONNECT

    # -- the loop ---------------------------------------------------------------------------------

    def run(self, max_steps: int | None = None) -> None:
        """Step until stop() (or `max_steps`), then disconnect cleanly."""
        steps = 0
        try:
            # A random pause before the first request: a region's devices powering on together spread out.
            first = schedule.first_poll_delay(
                self.backoff.rng, self.config.first_poll_spread, self.config.backoff_initial
            )
            if first > 0 and not self._stop.is_set():
                self.clock.sleep(first, self._wake)
            while not self._stop.is_set() and (max_steps is None or steps < max_steps):
                self._wake.clear()
                try:
                    delay = self.step()
                except Unrecoverable:
                    raise  # for the caller to exit with its code (python -m firmware)
                except Exception:
                    # A device agent must not die on a bug or a full disk; the service will re-send.
                    log.exception("unexpected error in state %s; retrying later", self.state.value)
                    delay = self.backoff.next()
                steps += 1
                if delay > 0 and not self._stop.is_set():
                    self.clock.sleep(delay, self._wake)
        finally:
            self._shutdown()

    def stop(self) -> None:
        """Ask run() to return; safe from signal handlers and other threads."""
        self._stop.set()
        self._wake.set()

    def step(self) -> float:
        """Do one thing in the current state; return the seconds to wait before the next step."""
        handlers = {
            State.REGISTER: self._register,
            State.POLL: self._poll,
            State.ACK: self._ack,
            State.CONNECT: self._connect,
            State.ONLINE: self._online,
        }
        return handlers[self.state]()

    # -- helpers ----------------------------------------------------------------------------------

    def now(self) -> float:
        """Unix time corrected by what the service told us."""
        return self.clock.time() + self.clock_offset

    def _timestamp(self) -> int:
        return int(self.now())

    def _detect_system_info(self) -> dict[str, Any]:
        ip = sysinfo.ip_address(self.api.base_url)
        mac = sysinfo.normalize_mac(self.config.mac) if self.config.mac else sysinfo.mac_address(ip)
        return {
            "version": __version__,
            "board": self._board,
            "mac": mac,
            "ip": ip,
            "uptime": sysinfo.uptime(),
        }

    def _info(self) -> dict[str, Any]:
        info = dict(self._system_info())
        info.setdefault("version", __version__)
        info.setdefault("board", self._board)
        return info

    def _csr_pem(self, identity: Identity) -> str:
        if self._csr is None:
            self._csr = identity.key.csr_pem(identity.device_id)
        return self._csr

    def _require_identity(self) -> Identity:
        if self.identity is None:
            raise RuntimeError("no identity")  # unreachable: REGISTER runs first
        return self.identity

    def _learn_time(self, response: Response) -> None:
        server_time = response.server_time()
        if server_time is None:
            return
        offset = server_time - self.clock.time()
        if abs(offset - self.clock_offset) > 5:
            log.warning("clock corrected by %+.0f s from the service's time", offset - self.clock_offset)
        self.clock_offset = offset

    def _unauthorized(self, response: Response, what: str) -> float:
        if response.server_time() is not None and self._clock_retry_armed:
            # Once per run of 401s: a corrected clock deserves a quick retry, a bad key does not.
            self._clock_retry_armed = False
            log.warning("%s refused (401); retrying with the corrected clock", what)
            return CLOCK_RETRY_DELAY
        log.error("%s refused (401): signature not accepted; is this device's key the registered one?", what)
        return self.backoff.next(self._retry_after(response))

    def _retry_after(self, response: Response) -> float | None:
        return response.retry_after(now=self.now())

    def _throttled_wait(self, retry_after: float | None) -> float:
        """After a 429 (the device API's own, with a Retry-After, or API Gateway's, without): a spread
        wait, growing with consecutive 429s, counted into the schedule's age."""
        self._throttled += 1
        wait = schedule.throttled_delay(
            retry_after, self._throttled, self.backoff.rng, cap=self.config.backoff_cap
        )
        self.backoff.age += wait
        return wait

    def _wipe(self) -> None:
        self.store.wipe()
        self.credentials = None
        self.rotation.wipe()

    def _final(self, call: str, response: Response) -> ExitCode | None:
        """The exit code if this answer is one only a re-flash changes, from the device API itself."""
        final = FINAL_ANSWERS.get((call, response.status))
        if final is None:
            return None
        code, exit_code = final
        if response.value("error") != code:
            log.warning(
                "%s answered HTTP %s without the device API's error code; is api_url %s right?",
                call,
                response.status,
                self.api.base_url,
            )
            return None
        return exit_code

    def _give_up(self, exit_code: ExitCode, sentence: str, retry_after: float | None) -> float:
        """Raise Unrecoverable, or wait at the cap once first if the answer must be confirmed."""
        if exit_code in CONFIRM_FIRST and self._suspect is not exit_code:
            self._suspect = exit_code
            log.warning("%s; asking again at the cap before giving up", sentence.rstrip("."))
            return self.backoff.at_cap(retry_after)
        raise Unrecoverable(exit_code, sentence)

    def _revoked(self, retry_after: float | None) -> float:
        self._wipe()  # a revoked certificate is of no use to anyone
        device = self.identity.device_id if self.identity else "this device"
        return self._give_up(
            ExitCode.REVOKED,
            f"The service revoked device {device}: only a new identity brings it back "
            "(mint one, or use Add device on the claim page, and flash it).",
            retry_after,
        )

    # -- states -----------------------------------------------------------------------------------

    def _register(self) -> float:
        key = load_or_create_key(self.config.state_dir / KEY_FILE)
        info = self._info()
        mac = sysinfo.normalize_mac(str(info.get("mac", "")))
        csr = key.csr_pem("pending-" + mac.replace(":", ""))
        try:
            response = self.api.register(self.config.registration_token, mac, csr, str(info["board"]))
        except NetworkError as exc:
            log.warning("register failed: %s; retrying", exc)
            return self.backoff.next()
        if response.status in (200, 201):
            device_id = response.value("deviceId")
            if not isinstance(device_id, str) or not device_id:
                log.error("register answered %s without a deviceId; retrying", response.status)
                return self.backoff.next()
            identity = Identity(device_id, key, self.api.base_url)
            save_identity_file(self.config.state_dir / IDENTITY_FILE, identity)
            self.identity, self._csr = identity, None
            log.info("registered as device %s; polling for credentials", device_id)
            self.state = State.POLL
            self.backoff.reset()
            return 0.0
        retry_after = self._retry_after(response)
        suspect, self._suspect = self._suspect, None
        if response.status == 429:
            log.warning("register rate-limited; retrying later")
            return self._throttled_wait(retry_after)
        self._throttled = 0
        final = self._final("register", response)
        if final is not None:
            self._suspect = suspect
            sentences = {
                ExitCode.TOKEN_REJECTED: "The registration token is unknown or has expired: download a new "
                "configuration for this device from the claim page and flash it.",
                ExitCode.MAC_MISMATCH: f"The registration token is bound to another device's MAC address, not "
                f"{mac}: download a configuration for this device from the claim page and flash it.",
                ExitCode.TOKEN_USED: "The registration token was already used: regenerate it on the claim page "
                "and flash the new configuration.",
            }
            return self._give_up(final, sentences[final], retry_after)
        log.warning("register answered HTTP %s; retrying", response.status)
        return (
            self.backoff.at_cap(retry_after)
            if response.status in (401, 409, 410)
            else self.backoff.next(retry_after)
        )

    def _poll(self) -> float:
        identity = self._require_identity()
        payload = {"attempt": self.polls, "agent": self._info(), "csr": self._csr_pem(identity)}
        self.polls += 1
        try:
            response = self.api.poll(identity, payload, self._timestamp())
        except NetworkError as exc:
            log.warning("poll failed: %s; retrying", exc)
            return self.backoff.next()
        self._learn_time(response)
        if response.status == 401:
            return self._unauthorized(response, "poll")
        self._clock_retry_armed = True
        retry_after = self._retry_after(response)
        if response.status != 429:
            self._throttled = 0
        suspect, self._suspect = self._suspect, None
        if response.status == 200:
            return self._poll_answer(response, retry_after)
        final = self._final("poll", response)
        if final is ExitCode.REVOKED:
            return self._revoked(retry_after)
        if final is ExitCode.DELETED:
            self._suspect = suspect
            return self._give_up(
                final,
                f"The service does not know device {identity.device_id} (deleted): only a new identity "
                "brings it back (mint one, or use Add device on the claim page, and flash it).",
                retry_after,
            )
        if response.status in (403, 404):
            return self.backoff.at_cap(retry_after)  # not the device API's answer: keep asking, slowly
        if response.status == 429:
            if self.credentials is not None and self.credentials.acked:
                # A check after failed MQTT connects: no news is no reason to poll again; back to MQTT.
                self.state = State.CONNECT
                return self.reconnect.next()
            wait = self._throttled_wait(retry_after)
            log.warning("poll rate-limited; waiting %.0f s", wait)
            return wait
        log.warning("poll answered HTTP %s; retrying", response.status)
        return self.backoff.next(retry_after)

    def _poll_answer(self, response: Response, retry_after: float | None) -> float:
        status = response.value("status")
        if status == "provisioned":
            try:
                fresh = Credentials.from_poll(response.body)
            except CredentialsError as exc:
                log.error("%s; retrying", exc)
                return self.backoff.next(retry_after)
            current = self.credentials
            same = current is not None and current.certificate_id == fresh.certificate_id
            if same and current is not None and current.acked:
                fresh = fresh.with_ack()
            self.store.save(fresh)
            self.credentials = fresh
            if not same:
                log.info("claimed: received certificate %s for %s", fresh.certificate_id, fresh.thing_name)
                self.backoff.reset()
            self.state = State.CONNECT if fresh.acked else State.ACK
            return 0.0
        if status == "unclaimed":
            if self.credentials is not None:
                log.warning("the service says unclaimed (released while offline); wiping credentials")
                self._wipe()
                self.backoff.reset()
            return self.backoff.next(retry_after)
        if self.credentials is not None:
            # Any other answer (e.g. active) leaves our certificate standing: try the broker again.
            self.state = State.CONNECT if self.credentials.acked else State.ACK
            return 0.0
        log.info("poll answered status %r; waiting", status)
        return self.backoff.next(retry_after)

    def _ack(self) -> float:
        identity, credentials = self._require_identity(), self.credentials
        if credentials is None:
            self.state = State.POLL
            return 0.0
        try:
            response = self.api.ack(identity, credentials.certificate_id, self._timestamp())
        except NetworkError as exc:
            log.warning("ack failed: %s; retrying before connecting", exc)
            return self.backoff.next()
        self._learn_time(response)
        if response.status == 401:
            return self._unauthorized(response, "ack")
        self._clock_retry_armed = True
        retry_after = self._retry_after(response)
        if 200 <= response.status < 300:
            self.credentials = credentials.with_ack()
            self.store.save(self.credentials)
            log.info("certificate %s acknowledged", credentials.certificate_id)
            self.state = State.CONNECT
            self.backoff.reset()
            return 0.0
        if self._final("ack", response) is ExitCode.REVOKED:
            self.state = State.POLL
            return self._revoked(retry_after)
        if response.status in (404, 409, 410):
            log.error(
                "the service no longer expects certificate %s (HTTP %s); polling again",
                credentials.certificate_id,
                response.status,
            )
            self._wipe()
            self.state = State.POLL
            return self.backoff.next(retry_after)
        log.warning("ack answered HTTP %s; retrying before connecting", response.status)
        return self.backoff.next(retry_after)

    def _clock_trusted(self) -> bool:
        return not self._clock_untrusted or abs(self.clock_offset) > 0

    def _mqtt_settings(self, identity: Identity, credentials: Credentials) -> MqttSettings:
        return MqttSettings(
            host=credentials.host,
            port=credentials.port,
            client_id=credentials.thing_name,
            certificate_pem=credentials.certificate_pem,
            private_key_pem=identity.key.private_pem(),
            ca_pem=credentials.ca_pem,
            # No last will: IoT's disconnect lifecycle event already says it, for free (docs/protocol.md).
            keepalive=self.config.mqtt_keepalive,
            skip_time_check=self._clock_untrusted or abs(self.clock_offset) > MAX_TRUSTED_OFFSET,
            key_dir=self.config.state_dir,
        )

    def _connect(self) -> float:
        identity, credentials = self._require_identity(), self.credentials
        if credentials is None:
            self.state = State.POLL
            return 0.0
        try:
            self.transport.connect(
                self._mqtt_settings(identity, credentials), self._on_message, self._on_disconnect
            )
            self.transport.subscribe(credentials.topics["commands"])
            shadow = credentials.topics.get("shadow")
            if shadow:
                # Reconcile after every (re)connect: ask for the document; its answer says what is
                # wanted (delta) and whether our report is still right (reported only if not).
                self.transport.subscribe(shadow + "/update/delta")
                self.transport.subscribe(shadow + "/get/accepted")
                self.transport.subscribe(shadow + "/get/rejected")  # no document yet: report ours
                self._reported = None
                self.transport.publish(shadow + "/get", b"{}")
            self._publish_status(only_if_changed=True)
        except TransportError as exc:
            self.transport.disconnect()
            wait = self.reconnect.next()
            # Refused may mean revoked or released: the API knows. But a throttled or unreachable broker
            # looks the same, so ask it only on some failures (8th, 16th, 32nd, ...), not on every one.
            check = self.reconnect.check_service()
            log.warning(
                "MQTT connect to %s:%s failed (%d in a row): %s; %s in %.0f s",
                credentials.host,
                credentials.port,
                self.reconnect.failures,
                exc,
                "checking with the service" if check else "retrying",
                wait,
            )
            if check:
                self.state = State.POLL
            return wait
        log.info("online as %s on %s:%s", credentials.thing_name, credentials.host, credentials.port)
        self.state = State.ONLINE
        self.backoff.reset()
        self.reconnect.reset()
        self._next_status = self.clock.monotonic() + self.config.status_interval
        return min(FACTS_CHECK_INTERVAL, self.config.status_interval)

    def _online(self) -> float:
        while True:
            try:
                topic, payload = self._commands.get_nowait()
            except queue.Empty:
                break
            if self._handle_command(topic, payload):
                return 0.0
        if not self.transport.is_connected():
            return self._connection_lost("connection closed")
        if self.rotation.due(self.credentials, self.now(), self.clock.monotonic(), self._clock_trusted()):
            delay, reconnect = self.rotation.step(self)
            if reconnect:
                self.state = State.CONNECT
            return delay
        now = self.clock.monotonic()
        heartbeat = now >= self._next_status
        try:
            # The heartbeat confirms we are online; between heartbeats only a change is sent.
            self._publish_status(only_if_changed=not heartbeat)
            if self._reported is not None:  # once the shadow's answer told us what it holds
                self._report_shadow()
        except TransportError as exc:
            return self._connection_lost(str(exc))
        if heartbeat:
            self._next_status = now + self.config.status_interval
        return min(FACTS_CHECK_INTERVAL, max(0.0, self._next_status - now))

    def _connection_lost(self, why: str) -> float:
        log.warning("MQTT connection lost (%s); reconnecting", why)
        self.transport.disconnect()
        self.state = State.CONNECT
        return self.reconnect.next()

    def _status(self, status: str, info: dict[str, Any] | None = None, **extra: Any) -> bytes:
        info = self._info() if info is None else info
        return json.dumps({"status": status, "timestamp": self._timestamp(), **info, **extra}).encode()

    @staticmethod
    def _facts(info: dict[str, Any]) -> dict[str, Any]:
        """What presence stores of a status (uptime changes every second and is not a change)."""
        return {k: v for k, v in info.items() if k != "uptime"}

    def _publish_status(self, only_if_changed: bool = False) -> None:
        if self.credentials is None:
            return
        info = self._info()
        facts = self._facts(info)
        if only_if_changed and facts == self._published:
            return
        self.transport.publish(self.credentials.topics["status"], self._status("online", info))
        self._published = facts

    def _report_shadow(self) -> None:
        """Report the device's state when it differs from what the shadow holds (as far as we know)."""
        shadow = self.credentials.topics.get("shadow") if self.credentials else None
        reported = self.device.reported()
        if shadow and _differs(self._reported, reported):
            body = {"state": {"reported": reported}}
            self.transport.publish(shadow + "/update", json.dumps(body).encode())
            self._reported = reported

    def _handle_shadow(self, topic: str, payload: bytes) -> None:
        """A desired change (update/delta) or the whole document (get/accepted, after connecting)."""
        try:
            message = json.loads(payload)
        except ValueError:
            log.warning("ignoring a shadow message that is not JSON")
            return
        if not isinstance(message, dict):
            return
        state = message.get("state") or {}
        whole = topic.endswith("/get/accepted")
        if whole and isinstance(state.get("reported"), dict):
            self._reported = state["reported"]  # what the service has: report only what differs
        change = state.get("delta") if whole else state
        version = message.get("version")
        changed = (
            isinstance(change, dict)
            and change
            and self.device.apply(change, version if isinstance(version, int) else None)
        )
        if changed or whole:
            with contextlib.suppress(TransportError):
                self._report_shadow()

    def _handle_command(self, topic: str, payload: bytes) -> bool:
        """Act on one command; True when it changed state."""
        credentials = self.credentials
        shadow = credentials.topics.get("shadow") if credentials else None
        if shadow and topic in (shadow + "/update/delta", shadow + "/get/accepted"):
            self._handle_shadow(topic, payload)
            return False
        if shadow and topic == shadow + "/get/rejected":
            with contextlib.suppress(TransportError):
                self._report_shadow()
            return False
        if credentials is None or topic != credentials.topics.get("commands"):
            return False
        if not payload:
            return False  # a cleared retained message (the rotate notice, once done)
        try:
            message = json.loads(payload)
        except ValueError:
            log.warning("ignoring a command that is not JSON")
            return False
        command = message.get("command") if isinstance(message, dict) else None
        if command == "rotate" and isinstance(message, dict):
            self.rotation.on_notice(message)
            self._wake.set()
            return False
        if command != "release":
            log.info("ignoring unknown command %r", command)
            return False
        log.warning("released by the owner: wiping credentials and polling for a new claim")
        # The service may already have cut us off; the wipe is what matters (and the disconnect says offline).
        self.transport.disconnect()
        self._wipe()
        self.state = State.POLL
        self.backoff.reset()
        return True

    # Called from the transport's network thread: hand over and wake the loop.
    def _on_message(self, topic: str, payload: bytes) -> None:
        self._commands.put((topic, payload))
        self._wake.set()

    def _on_disconnect(self) -> None:
        self._wake.set()

    def _shutdown(self) -> None:
        # A clean DISCONNECT: IoT's lifecycle event (CLIENT_INITIATED_DISCONNECT) makes the device offline.
        self.transport.disconnect()
        log.info("stopped")


def _differs(known: dict[str, Any] | None, reported: dict[str, Any]) -> bool:
    """True when `reported` is a change over `known`: anything but the sensors' reading times, and a
    sensor value only when it moved by SENSOR_DEADBAND or more."""
    if not isinstance(known, dict):
        return True
    if {k: v for k, v in known.items() if k != "sensors"} != {
        k: v for k, v in reported.items() if k != "sensors"
    }:
        return True
    raw = known.get("sensors")
    before: dict[str, Any] = raw if isinstance(raw, dict) else {}
    after: dict[str, Any] = reported.get("sensors") or {}
    if set(before) != set(after):
        return True
    for sid, reading in after.items():
        old = before.get(sid)
        if not isinstance(old, dict) or old.get("unit") != reading.get("unit"):
            return True
        value, previous = reading.get("value"), old.get("value")
        if not isinstance(previous, int | float) or not isinstance(value, int | float):
            return value != previous
        if abs(value - previous) >= SENSOR_DEADBAND:
            return True
    return False
