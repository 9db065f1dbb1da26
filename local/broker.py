"""The local IoT Core data plane: mosquitto behind a front door that checks certificates against IoT.

- mosquitto listens only on a Unix socket in a private (0700) directory, no TLS: only this process can
  reach it. Its ACL is generated from `lambdas.definitions.device_acl()` (pattern lines, `%u` = the thing
  name) plus full access for the service identity (`latchkey-service`), so it cannot drift from the IoT
  policy. `allow_anonymous true` there is safe for that reason; mosquitto 2.0 refuses a username without
  a password file otherwise.
- Devices connect to `local.mqtt_front` on 127.0.0.1 (mutual TLS): it asks IoT whether the certificate
  may connect with that client id (`authorizer`, see `local.iot_sync`) and forwards the CONNECT with
  username = thing name. `drop(client id)` closes one connection (iot-data DeleteConnection's stand-in).
- mosquitto logs to stdout; a reader thread copies the log to `mosquitto.log` and follows "New client
  connected ... u'<thing>'" / "Client X closed its connection" lines, so the broker knows who is connected
  and reports connects/disconnects (the presence bridge turns them into IoT lifecycle events); the peer
  address and the certificate id come from the front door.
"""

from __future__ import annotations

import contextlib
import ctypes
import getpass
import logging
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from lambdas import definitions as d
from local.moto_server import free_port
from local.mqtt_front import Admission, Authorizer, MqttFront
from local.pki import SERVICE_CN, IssuedCert, LocalCA
from local.processes import stop_process

LOG = logging.getLogger("latchkey.local.broker")
MOSQUITTO = os.environ.get("LATCHKEY_MOSQUITTO") or (
    "/usr/sbin/mosquitto"
    if os.path.exists("/usr/sbin/mosquitto")
    else shutil.which("mosquitto") or "mosquitto"
)

_CONNECTED = re.compile(
    r"New client connected from (?P<ip>[^ ]+?):(?P<port>\d+) as (?P<cid>\S+) \(p\d+, c\d+, k\d+(?:, u'(?P<user>.*)')?\)\.$"
)
UNIX_PATH_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin
SOCKET_NAME = "mqtt.sock"
CONTROL_NAME = "control.sock"

_TAKEN_OVER = re.compile(r"Client (?P<cid>\S+) already connected, closing old connection\.$")
_GONE = re.compile(
    r"Client (?P<cid>\S+) (?P<how>disconnected|closed its connection|has exceeded timeout|been disconnected)"
)


@dataclass(frozen=True)
class ClientEvent:
    """A device connecting to or leaving the broker (what IoT Core reports as a lifecycle event)."""

    event_type: str  # "connected" | "disconnected"
    client_id: str
    username: str | None  # the thing name the front door admitted (or the service identity)
    ip: str | None = None
    reason: str = ""
    timestamp: float = field(default_factory=time.time)
    principal: str | None = None  # IoT's principal: the certificate id


def socket_dir(state_dir: str | os.PathLike[str]) -> Path:
    """Where the broker's Unix sockets go: `state_dir` itself, or a private temporary directory when
    that path is too long for a socket address. Known before the broker starts (the moto child needs
    the control socket's path at launch)."""
    state = Path(state_dir).resolve()
    if len(str(state / CONTROL_NAME)) <= UNIX_PATH_MAX:
        return state
    return Path(tempfile.mkdtemp(prefix="latchkey-mqtt-"))


def service_only(service: IssuedCert) -> Authorizer:
    """An authorizer that admits only the service identity (a broker with no IoT behind it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    der = x509.load_pem_x509_certificate(service.cert_pem.encode()).public_bytes(serialization.Encoding.DER)

    def authorize(certificate_der: bytes, _client_id: str) -> Admission | str:
        return Admission(SERVICE_CN, SERVICE_CN) if certificate_der == der else "unknown certificate"

    return authorize


def _pdeathsig() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Broker:
    """mosquitto and its front door for one embedded cloud; files under `state_dir`."""

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        ca: LocalCA,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        executable: str = MOSQUITTO,
        trusted_cas: Iterable[Path] = (),
        sockets: Path | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.state_dir, 0o700)
        self.ca = ca
        self.host = host
        self.requested_port = port
        self.port = 0
        self.executable = executable
        self.trusted_cas = [ca.cert_file, *trusted_cas]
        self.conf_file = self.state_dir / "mosquitto.conf"
        self.acl_file = self.state_dir / "acl"
        self.log_file = self.state_dir / "mosquitto.log"
        self.sockets = sockets or socket_dir(self.state_dir)
        self._own_sockets = self.sockets.resolve() != self.state_dir.resolve()  # a temporary directory
        os.chmod(self.sockets, 0o700)
        self.socket_file = self.sockets / SOCKET_NAME
        self.control_file = self.sockets / CONTROL_NAME
        self.server: IssuedCert | None = None
        self.service: IssuedCert = ca.service_cert()
        self.authorizer: Authorizer = service_only(self.service)
        self.front: MqttFront | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._lock = threading.RLock()
        self._state = threading.Condition()
        self._clients: dict[str, tuple[str | None, str | None]] = {}  # client id -> (username, ip)
        self._listeners: list[Callable[[ClientEvent], None]] = []
        self._dropping: dict[str, str] = {}  # client id -> disconnect reason, while the front drops it

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> Broker:
        if not (os.path.exists(self.executable) or shutil.which(self.executable)):
            raise RuntimeError(f"mosquitto not found ({self.executable}); `make system-deps` installs it")
        self.server = self.ca.issue_server_cert(("127.0.0.1", "localhost"), name="broker-server")
        self.write_acl()
        self._write_conf()
        self._launch()
        try:
            self._wait_socket(timeout)
            self._start_front(timeout)
        except BaseException:
            self.stop()
            raise
        LOG.debug(
            "mosquitto on %s (pid %d), front door on %s:%d", self.socket_file, self.pid, self.host, self.port
        )
        return self

    def _start_front(self, timeout: float) -> None:
        assert self.server is not None and self.server.cert_file and self.server.key_file
        attempts = 1 if self.requested_port else 3  # a free port can be taken before we bind it
        for attempt in range(attempts):
            front = MqttFront(
                host=self.host,
                port=self.requested_port or free_port(self.host),
                server_cert=self.server.cert_file,
                server_key=self.server.key_file,
                trusted_cas=self.trusted_cas,
                upstream=self.socket_file,
                control=self.control_file,
                authorize=lambda der, cid: self.authorizer(der, cid),
                on_drop=self._on_drop,
            )
            try:
                self.front = front.start()
            except OSError:
                if attempt == attempts - 1:
                    raise
                continue
            self.port = front.port
            self._wait_tls(timeout)
            return

    def _write_conf(self) -> None:
        lines = [
            "# generated by local/broker.py",
            "per_listener_settings false",
            # only our Unix socket, in a 0700 directory: the front door is the only way in
            "allow_anonymous true",
            "persistence false",
            # mosquitto drops root privileges to user "mosquitto", which could not use our directory
            f"user {getpass.getuser()}",
            # a log *file* is flushed line by line (stdout would be block-buffered into our pipe)
            "log_dest file /dev/stdout",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "log_type subscribe",
            "log_timestamp true",
            "connection_messages true",
            f"acl_file {self.acl_file}",
            f"listener 0 {self.socket_file}",
            "",
        ]
        self.conf_file.write_text("\n".join(lines))

    def write_acl(self) -> None:
        """The ACL: the device rules from `definitions.device_acl()`, and everything for the service."""
        lines = ["# generated by local/broker.py from lambdas.definitions.device_acl()"]
        lines += [f"pattern {rule.access} {rule.topic}" for rule in d.device_acl()]
        lines += [
            "",
            f"user {SERVICE_CN}",
            "topic readwrite #",
            "topic readwrite $aws/#",
            "topic read $SYS/#",
            "",
        ]
        self.acl_file.write_text("\n".join(lines))

    def _launch(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.socket_file.unlink()
        main_thread = threading.current_thread() is threading.main_thread()
        self._proc = subprocess.Popen(
            [self.executable, "-c", str(self.conf_file)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C goes to us; we stop the broker in order
            # die with the parent even on SIGKILL (only safe when the forking thread lives as long)
            preexec_fn=_pdeathsig if main_thread else None,
        )
        self._reader = threading.Thread(
            target=self._read_log, args=(self._proc,), name="mosquitto-log", daemon=True
        )
        self._reader.start()

    def _wait_socket(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self._proc is None or self._proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited at start; see {self.log_file}")
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                    sock.settimeout(1)
                    sock.connect(str(self.socket_file))
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"mosquitto did not listen on {self.socket_file}; see {self.log_file}"
                    ) from None
                time.sleep(0.02)

    def _wait_tls(self, timeout: float) -> None:
        ctx = self.client_ssl_context()
        deadline = time.monotonic() + timeout
        while True:
            try:
                with (
                    socket.create_connection((self.host, self.port), timeout=1) as raw,
                    ctx.wrap_socket(raw, server_hostname=self.host),
                ):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the MQTT front door did not accept TLS on {self.port}") from None
                time.sleep(0.02)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        stop_process(proc)
        if self._reader is not None:
            self._reader.join(timeout=5)
            self._reader = None
        if proc.stdout:
            proc.stdout.close()

    def restart(self, timeout: float = 10.0) -> None:
        """Stop and start mosquitto (tests of devices surviving a broker restart); every connection
        through the front door is closed with it, the front door keeps listening."""
        with self._lock:
            self._terminate()
            with self._state:
                self._clients.clear()
            self._launch()
            self._wait_socket(timeout)

    def stop(self) -> None:
        with self._lock:
            front, self.front = self.front, None
            if front is not None:
                front.stop()
            self._terminate()
            if self._own_sockets:
                shutil.rmtree(self.sockets, ignore_errors=True)
        with self._state:
            self._clients.clear()

    # -- TLS material for clients ---------------------------------------------------------------
    def client_ssl_context(self, cert: IssuedCert | None = None) -> ssl.SSLContext:
        cert = cert or self.service
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca.cert_file))
        if cert.cert_file is None or cert.key_file is None:
            raise ValueError("certificate must be saved to files")
        ctx.load_cert_chain(str(cert.cert_file), str(cert.key_file))
        return ctx

    # -- connections ------------------------------------------------------------------------------
    def drop(self, client_id: str, reason: str = "SERVER_INITIATED_DISCONNECT") -> bool:
        """Close a client's connection now (what DeleteConnection does); False if it is not connected."""
        front = self.front
        return front.drop(client_id, reason) if front is not None else False

    def _on_drop(self, client_id: str, reason: str) -> None:
        with self._state:
            self._dropping[client_id] = reason

    def add_client_listener(self, listener: Callable[[ClientEvent], None]) -> None:
        self._listeners.append(listener)

    def remove_client_listener(self, listener: Callable[[ClientEvent], None]) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def connected(self) -> dict[str, str | None]:
        """Client id -> username (thing name) of every client connected right now."""
        with self._state:
            return {cid: user for cid, (user, _ip) in self._clients.items()}

    def _read_log(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        with open(self.log_file, "ab", buffering=0) as log:
            for raw in proc.stdout:
                with contextlib.suppress(OSError):
                    log.write(raw)
                try:
                    self._parse(raw.decode("utf-8", "replace").rstrip("\n"))
                except Exception:  # the reader must never die: mosquitto would block on a full pipe
                    LOG.exception("broker log line not understood: %r", raw)

    def _parse(self, line: str) -> None:
        _, _, message = line.partition(": ")
        events: list[ClientEvent] = []
        front = self.front
        with self._state:
            if m := _CONNECTED.search(message):
                cid = m["cid"]
                ip = (front.peer(cid) if front else None) or m["ip"]
                self._clients[cid] = (m["user"], ip)
                self._dropping.pop(cid, None)
                principal = front.principal(cid) if front else None
                events.append(ClientEvent("connected", cid, m["user"], ip, principal=principal))
            elif m := _TAKEN_OVER.search(message):
                old = self._clients.pop(m["cid"], None)
                if old:
                    events.append(ClientEvent("disconnected", m["cid"], old[0], old[1], "DUPLICATE_CLIENTID"))
            elif m := _GONE.search(message):
                old = self._clients.pop(m["cid"], None)
                dropped = self._dropping.pop(m["cid"], None)
                if old:
                    reason = (
                        "CLIENT_INITIATED_DISCONNECT" if m["how"] == "disconnected" else "CONNECTION_LOST"
                    )
                    if m["how"] == "has exceeded timeout":
                        reason = "MQTT_KEEP_ALIVE_TIMEOUT"
                    events.append(ClientEvent("disconnected", m["cid"], old[0], old[1], dropped or reason))
            self._state.notify_all()
        for event in events:
            for listener in list(self._listeners):
                try:
                    listener(event)
                except Exception:
                    LOG.exception("client listener failed")

    def wait_connected(self, client_id: str, timeout: float = 10.0) -> bool:
        """True once the broker has logged `client_id` as connected (bounded by `timeout`)."""
        deadline = time.monotonic() + timeout
        with self._state:
            while client_id not in self._clients:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._state.wait(left)
            return True

    def wait_gone(self, client_id: str, timeout: float = 10.0) -> bool:
        """True once `client_id` is not connected (bounded by `timeout`)."""
        deadline = time.monotonic() + timeout
        with self._state:
            while client_id in self._clients:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._state.wait(left)
            return True
