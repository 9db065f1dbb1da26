"""The local IoT Core data plane: mosquitto with mutual TLS, per-device ACLs and a CRL.

- Listener on 127.0.0.1 (a free port unless one is given) with `require_certificate true` and
  `use_identity_as_username true`: the MQTT username is the certificate CN, which is the thing name.
- The ACL file is generated from `lambdas.definitions.device_acl()` (pattern lines, `%u` = CN) plus full
  access for the service identity (`latchkey-service`), so it cannot drift from the IoT policy.
- The CRL comes from `local.pki.LocalCA`. Revocation: rewrite the CRL, SIGHUP mosquitto (2.0 reloads
  the listener's TLS files, CRL included, without dropping anyone), then take over the revoked client's
  session: connecting with the service certificate and the same client id makes mosquitto close the old
  connection ("Client X already connected, closing old connection"), and the device's reconnect fails the
  TLS handshake. Nobody else is disconnected.
- mosquitto logs to stdout; a reader thread copies the log to `mosquitto.log` and follows "New client
  connected ... u'<CN>'" / "Client X disconnected" lines, so the broker knows who is connected and can
  report connect/disconnect (the presence bridge turns them into IoT lifecycle events).
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
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from lambdas import definitions as d
from local.moto_server import free_port
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
_TAKEN_OVER = re.compile(r"Client (?P<cid>\S+) already connected, closing old connection\.$")
_GONE = re.compile(
    r"Client (?P<cid>\S+) (?P<how>disconnected|closed its connection|has exceeded timeout|been disconnected)"
)


@dataclass(frozen=True)
class ClientEvent:
    """A device connecting to or leaving the broker (what IoT Core reports as a lifecycle event)."""

    event_type: str  # "connected" | "disconnected"
    client_id: str
    username: str | None  # the certificate CN
    ip: str | None = None
    reason: str = ""
    timestamp: float = field(default_factory=time.time)


def _pdeathsig() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Broker:
    """mosquitto for one embedded cloud; files under `state_dir`."""

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        ca: LocalCA,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        executable: str = MOSQUITTO,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.ca = ca
        self.host = host
        self.requested_port = port
        self.port = 0
        self.executable = executable
        self.conf_file = self.state_dir / "mosquitto.conf"
        self.acl_file = self.state_dir / "acl"
        self.log_file = self.state_dir / "mosquitto.log"
        self.server: IssuedCert | None = None
        self.service: IssuedCert = ca.service_cert()
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._lock = threading.RLock()  # CRL writes, reloads, takeovers
        self._state = threading.Condition()
        self._reloads = 0
        self._clients: dict[str, tuple[str | None, str | None]] = {}  # client id -> (username, ip)
        self._listeners: list[Callable[[ClientEvent], None]] = []
        self._applied: frozenset[int] = frozenset()
        self._kicking: set[str] = set()  # client ids being taken over by kick()

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> Broker:
        if not (os.path.exists(self.executable) or shutil.which(self.executable)):
            raise RuntimeError(f"mosquitto not found ({self.executable}); `make system-deps` installs it")
        self.server = self.ca.issue_server_cert(("127.0.0.1", "localhost"), name="broker-server")
        self.ca.write_crl(self.ca.revoked)
        self._applied = self.ca.revoked
        self.write_acl()
        attempts = 1 if self.requested_port else 3  # a free port can be taken before mosquitto binds it
        for attempt in range(attempts):
            self.port = self.requested_port or free_port(self.host)
            self._write_conf()
            self._launch()
            try:
                self._wait_tls(timeout)
                LOG.debug("mosquitto on %s:%d (pid %d)", self.host, self.port, self.pid)
                return self
            except RuntimeError:
                self._terminate()
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def _write_conf(self) -> None:
        assert self.server is not None
        lines = [
            "# generated by local/broker.py",
            "per_listener_settings false",
            "allow_anonymous false",
            "persistence false",
            # mosquitto drops root privileges to user "mosquitto", which could not read our 0600 keys
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
            f"listener {self.port} {self.host}",
            f"cafile {self.ca.cert_file}",
            f"certfile {self.server.cert_file}",
            f"keyfile {self.server.key_file}",
            "require_certificate true",
            "use_identity_as_username true",
            f"crlfile {self.ca.crl_file}",
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

    def _wait_tls(self, timeout: float) -> None:
        ctx = self.client_ssl_context()
        deadline = time.monotonic() + timeout
        while True:
            if self._proc is None or self._proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited at start; see {self.log_file}")
            try:
                with (
                    socket.create_connection((self.host, self.port), timeout=1) as raw,
                    ctx.wrap_socket(raw, server_hostname=self.host),
                ):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"mosquitto did not accept TLS on {self.port}; see {self.log_file}"
                    ) from None
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
        """Stop and start the broker on the same port (tests of devices surviving a broker restart)."""
        with self._lock:
            self._terminate()
            with self._state:
                self._clients.clear()
            self._launch()
            self._wait_tls(timeout)

    def stop(self) -> None:
        with self._lock:
            self._terminate()
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

    # -- log follower -----------------------------------------------------------------------------
    def add_client_listener(self, listener: Callable[[ClientEvent], None]) -> None:
        self._listeners.append(listener)

    def remove_client_listener(self, listener: Callable[[ClientEvent], None]) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def connected(self) -> dict[str, str | None]:
        """Client id -> username (certificate CN) of every client connected right now."""
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
        with self._state:
            if message == "Reloading config.":
                self._reloads += 1
                self._state.notify_all()
                return
            if m := _CONNECTED.search(message):
                self._clients[m["cid"]] = (m["user"], m["ip"])
                events.append(ClientEvent("connected", m["cid"], m["user"], m["ip"]))
            elif m := _TAKEN_OVER.search(message):
                old = self._clients.pop(m["cid"], None)
                if old:
                    # our own takeover (revocation) is the server's doing; otherwise the device reconnected
                    reason = (
                        "SERVER_INITIATED_DISCONNECT" if m["cid"] in self._kicking else "DUPLICATE_CLIENTID"
                    )
                    events.append(ClientEvent("disconnected", m["cid"], old[0], old[1], reason))
            elif m := _GONE.search(message):
                old = self._clients.pop(m["cid"], None)
                if old:
                    reason = (
                        "CLIENT_INITIATED_DISCONNECT" if m["how"] == "disconnected" else "CONNECTION_LOST"
                    )
                    if m["how"] == "has exceeded timeout":
                        reason = "MQTT_KEEP_ALIVE_TIMEOUT"
                    events.append(ClientEvent("disconnected", m["cid"], old[0], old[1], reason))
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

    # -- revocation -------------------------------------------------------------------------------
    @property
    def revoked(self) -> frozenset[int]:
        """The serials mosquitto refuses (in force: the CRL is written *and* reloaded)."""
        return self._applied

    def revoke(self, serials: Iterable[int], identities: Iterable[str] = ()) -> bool:
        """Refuse these certificate serials from now on and drop the live sessions of `identities`
        (certificate CNs = thing names). True when the CRL changed."""
        with self._lock:
            return self.sync_crl(self._applied | set(serials), identities)

    def unrevoke(self, serials: Iterable[int]) -> bool:
        with self._lock:
            return self.sync_crl(self._applied - set(serials))

    def sync_crl(self, serials: Iterable[int], identities: Iterable[str] = ()) -> bool:
        """Make the CRL revoke exactly `serials`; reload mosquitto; take over `identities`' sessions."""
        wanted = frozenset(serials)
        with self._lock:
            changed = wanted != self.ca.revoked
            if changed:
                self.ca.write_crl(wanted)
                self.reload()
            self._applied = wanted
            for identity in identities:
                self.kick(identity)
            return changed

    def reload(self, timeout: float = 5.0) -> None:
        """SIGHUP: mosquitto re-reads the config, ACL, certificates and CRL; wait until it has."""
        with self._lock:
            if not self.running:
                return
            assert self._proc is not None
            with self._state:
                before = self._reloads
            self._proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + timeout
            with self._state:
                while self._reloads == before:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        LOG.warning("mosquitto did not confirm the reload within %.1fs", timeout)
                        return
                    self._state.wait(left)

    def kick(self, identity: str, timeout: float = 5.0) -> None:
        """Close the live session(s) of a device: every client whose CN is `identity`, and the client
        id `identity` (device contract: client id = thing name = CN)."""
        with self._state:
            client_ids = {cid for cid, (user, _ip) in self._clients.items() if user == identity}
        client_ids.add(identity)
        for cid in sorted(client_ids):
            self._take_over(cid, timeout)

    def _take_over(self, client_id: str, timeout: float) -> None:
        import paho.mqtt.client as mqtt

        if not self.running:
            return
        with self._state:
            self._kicking.add(client_id)
        done = threading.Event()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        client.tls_set_context(self.client_ssl_context())
        client.on_connect = lambda *_args: done.set()
        try:
            client.connect(self.host, self.port, keepalive=10)
            client.loop_start()
            if not done.wait(timeout):
                LOG.warning("takeover of %s not acknowledged", client_id)
            with self._state:  # let the log reader see the takeover while it is still ours
                self._state.wait_for(lambda: (self._clients.get(client_id) or ("",))[0] == SERVICE_CN, 1.0)
            client.disconnect()
        except OSError as exc:
            LOG.warning("takeover of %s failed: %s", client_id, exc)
        finally:
            client.loop_stop()
            with self._state:
                self._kicking.discard(client_id)
