"""The local broker's front door: what IoT Core checks before its message broker sees a client.

mosquitto (`local.broker`) listens only on a Unix socket in a private directory. Devices reach it through
this TLS server, which does what IoT Core's connection layer does and mosquitto cannot:

1. mutual TLS against the trusted CAs (the stand-in for Amazon's CA, the local/own CA);
2. it reads the MQTT CONNECT and asks `authorize(certificate DER, client id)` (IoT's view, see
   `local.iot_sync`): the certificate is ACTIVE in IoT, the client id is a thing the certificate is
   attached to, and an attached policy allows `iot:Connect` on `client/<that thing>`. A refused client is
   disconnected before anything reaches mosquitto, so another device's session under that client id is
   untouched and presence never hears of the attempt;
3. an admitted CONNECT goes to mosquitto with username = the thing name (its ACL patterns use `%u`) and
   no password; then bytes are relayed both ways until either side closes;
4. `drop(client id)` closes that client's connection: iot-data `DeleteConnection` (the moto child asks
   over the control socket) and the eventual drop of a certificate that left ACTIVE;
5. the keep-alive as IoT Core applies it (`effective_keepalive`: below 30 s counts as 30, 0 or above
   1200 as 1200) is what mosquitto is told, and a device connection that ends without an MQTT DISCONNECT
   (a killed agent, a dropped network, a power cut) stays open towards mosquitto, so the broker notices
   only when the keep-alive runs out (1.5 x keep-alive) and reports MQTT_KEEP_ALIVE_TIMEOUT, as IoT Core
   does for a device whose FIN never arrives. A local cloud that noticed sooner would test a presence
   that AWS cannot deliver.

Why not mosquitto alone (2.0): with `use_identity_as_username` it skips every authentication plugin
("Authentication assumed to be cleared", handle_connect.c), so nothing can pin a client id to a
certificate; its identity is the certificate CN, which a device chooses in its CSR in AWS-issued mode
(IoT identifies a certificate by its fingerprint and its attachments); `use_username_as_clientid`
renames a client instead of refusing it; and a CRL cannot say INACTIVE or "not attached to this thing".
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

LOG = logging.getLogger("latchkey.local.mqtt_front")

CONNECT = 1
DISCONNECT = 14
MAX_CONNECT_BYTES = 256 * 1024
MAX_PACKET_BYTES = 256 * 1024  # IoT Core refuses payloads over 128 KB (CLIENT_ERROR) anyway
CONNECT_TIMEOUT = 10.0  # a client that does not send CONNECT in time is closed (IoT: a few seconds)
# IoT Core's keep-alive range (https://docs.aws.amazon.com/general/latest/gr/iot-core.html, message broker
# limits): a shorter one is treated as 30 s, 0 and longer ones as 1200 s.
MIN_KEEPALIVE = 30
MAX_KEEPALIVE = 1200
KEEPALIVE_GRACE = 1.5  # no packet for 1.5 x keep-alive: disconnected (MQTT 3.1.1 section 3.1.2.10)


def effective_keepalive(requested: int) -> int:
    """The keep-alive IoT Core enforces for a client that asked for `requested` seconds."""
    if requested == 0 or requested > MAX_KEEPALIVE:
        return MAX_KEEPALIVE
    return max(requested, MIN_KEEPALIVE)


class MalformedPacket(ValueError):
    pass


@dataclass(frozen=True)
class Admission:
    """An admitted client: what mosquitto's ACL sees as `%u`, and IoT's principal (certificate id)."""

    username: str
    principal: str


Authorizer = Callable[[bytes, str], "Admission | str"]  # a string is the reason for refusing


# --- MQTT CONNECT (3.1, 3.1.1, 5) ------------------------------------------------------------------


@dataclass(frozen=True)
class Connect:
    protocol_name: bytes
    level: int
    flags: int
    keepalive: int
    properties: bytes  # MQTT 5: the raw property block, length included; else b""
    client_id: str
    will: bytes  # the raw will section (properties, topic, payload); b"" without a will
    username: bytes | None
    password: bytes | None


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


class _Cursor:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise MalformedPacket("truncated CONNECT")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def field(self) -> bytes:
        return self.take(self.u16())

    def varint(self) -> int:
        value, shift = 0, 0
        for _ in range(4):
            byte = self.u8()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
        raise MalformedPacket("bad variable-length integer")


def parse_connect(body: bytes) -> Connect:
    cur = _Cursor(body)
    name = cur.field()
    level = cur.u8()
    if (name, level) not in ((b"MQTT", 4), (b"MQTT", 5), (b"MQIsdp", 3)):
        raise MalformedPacket(f"unsupported protocol {name!r} level {level}")
    flags = cur.u8()
    if flags & 0x01:
        raise MalformedPacket("reserved CONNECT flag set")
    keepalive = cur.u16()
    properties = b""
    if level == 5:
        start = cur.pos
        cur.take(cur.varint())
        properties = body[start : cur.pos]
    try:
        client_id = cur.field().decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPacket("client id is not UTF-8") from None
    will = b""
    if flags & 0x04:
        start = cur.pos
        if level == 5:
            cur.take(cur.varint())
        cur.field()
        cur.field()
        will = body[start : cur.pos]
    username = cur.field() if flags & 0x80 else None
    password = cur.field() if flags & 0x40 else None
    if cur.pos != len(body):
        raise MalformedPacket("surplus bytes after CONNECT")
    return Connect(name, level, flags, keepalive, properties, client_id, will, username, password)


def encode_connect(connect: Connect) -> bytes:
    def field(value: bytes) -> bytes:
        return len(value).to_bytes(2, "big") + value

    flags = connect.flags & ~0xC0
    if connect.username is not None:
        flags |= 0x80
    if connect.password is not None:
        flags |= 0x40
    body = (
        field(connect.protocol_name)
        + bytes([connect.level, flags])
        + connect.keepalive.to_bytes(2, "big")
        + connect.properties
        + field(connect.client_id.encode())
        + connect.will
        + (field(connect.username) if connect.username is not None else b"")
        + (field(connect.password) if connect.password is not None else b"")
    )
    return bytes([CONNECT << 4]) + _varint(len(body)) + body


async def read_packet(reader: asyncio.StreamReader, limit: int = MAX_CONNECT_BYTES) -> tuple[int, bytes]:
    """(packet type, body) of the next MQTT packet."""
    first = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    for _ in range(4):
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
    else:
        raise MalformedPacket("bad remaining length")
    if length > limit:
        raise MalformedPacket(f"packet of {length} bytes")
    return first >> 4, await reader.readexactly(length)


# --- the server ----------------------------------------------------------------------------------


@dataclass
class Session:
    client_id: str
    admission: Admission
    certificate_der: bytes
    peer: str
    device: asyncio.StreamWriter
    upstream: asyncio.StreamWriter


class MqttFront:
    """A TLS listener on `host:port` in front of mosquitto's Unix socket `upstream`."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        server_cert: Path,
        server_key: Path,
        trusted_cas: Iterable[Path],
        upstream: Path,
        control: Path | None,
        authorize: Authorizer,
        on_drop: Callable[[str, str], None] = lambda _cid, _reason: None,
    ) -> None:
        self.host = host
        self.port = port
        self.upstream = upstream
        self.control = control
        self.authorize = authorize
        self.on_drop = on_drop
        self.refusals: collections.deque[tuple[str, str]] = collections.deque(maxlen=200)
        self._ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ssl.minimum_version = ssl.TLSVersion.TLSv1_2
        self._ssl.load_cert_chain(str(server_cert), str(server_key))
        self._ssl.verify_mode = ssl.CERT_REQUIRED
        for ca in trusted_cas:
            self._ssl.load_verify_locations(cafile=str(ca))
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[asyncio.AbstractServer] = []

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> MqttFront:
        loop = self._loop = asyncio.new_event_loop()
        loop.set_exception_handler(self._quiet)
        self._thread = threading.Thread(target=loop.run_forever, name="mqtt-front", daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._listen(), loop).result(10)
        except BaseException:
            self.stop()
            raise
        return self

    async def _listen(self) -> None:
        server = await asyncio.start_server(
            self._serve, self.host, self.port, ssl=self._ssl, ssl_handshake_timeout=CONNECT_TIMEOUT
        )
        self._servers.append(server)
        self.port = int(server.sockets[0].getsockname()[1])
        if self.control is not None:
            with contextlib.suppress(FileNotFoundError):
                self.control.unlink()
            self._servers.append(await asyncio.start_unix_server(self._control, str(self.control)))
            os.chmod(self.control, 0o600)

    def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        if loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._close_all(), loop).result(5)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with contextlib.suppress(Exception):
            loop.close()
        if self.control is not None:
            with contextlib.suppress(FileNotFoundError):
                self.control.unlink()

    async def _close_all(self) -> None:
        for server in self._servers:
            server.close()
        self._servers.clear()
        with self._lock:
            sessions = list(self._sessions.values())
        for session in sessions:
            _abort(session.device)
            _abort(session.upstream)

    def _quiet(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # Failed TLS handshakes (no certificate, unknown CA) are refusals, not errors.
        LOG.debug("mqtt front: %s", context.get("message"), exc_info=context.get("exception"))

    # -- what callers use ---------------------------------------------------------------------------
    def sessions(self) -> dict[str, Session]:
        with self._lock:
            return dict(self._sessions)

    def peer(self, client_id: str) -> str | None:
        with self._lock:
            session = self._sessions.get(client_id)
        return session.peer if session else None

    def principal(self, client_id: str) -> str | None:
        with self._lock:
            session = self._sessions.get(client_id)
        return session.admission.principal if session else None

    def drop(self, client_id: str, reason: str = "SERVER_INITIATED_DISCONNECT") -> bool:
        """Close this client's connection (thread-safe); False when it is not connected."""
        loop = self._loop
        if loop is None:
            return False
        return bool(asyncio.run_coroutine_threadsafe(self._drop(client_id, reason), loop).result(5))

    async def _drop(self, client_id: str, reason: str) -> bool:
        with self._lock:
            session = self._sessions.get(client_id)
        if session is None:
            return False
        self.on_drop(client_id, reason)  # first: the broker log's "closed" line must find the reason
        _abort(session.device)
        _abort(session.upstream)
        return True

    # -- one connection -----------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        peer = str(peername[0]) if peername else ""
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        try:
            kind, body = await asyncio.wait_for(read_packet(reader), CONNECT_TIMEOUT)
            if kind != CONNECT:
                raise MalformedPacket("the first packet is not CONNECT")
            connect = parse_connect(body)
        except (MalformedPacket, asyncio.IncompleteReadError, TimeoutError, OSError, ssl.SSLError) as exc:
            LOG.debug("closing %s before CONNECT: %s", peer, exc)
            _abort(writer)
            return
        verdict: Admission | str = "no client certificate"
        if der:
            loop = asyncio.get_running_loop()
            try:
                verdict = await loop.run_in_executor(None, self.authorize, der, connect.client_id)
            except Exception as exc:  # IoT unreachable: refuse, as IoT Core would fail the connect
                LOG.warning("could not authorize %s: %s", connect.client_id, exc)
                verdict = f"authorization failed: {exc}"
        if not isinstance(verdict, Admission):
            LOG.info("refused client id %r from %s: %s", connect.client_id, peer, verdict)
            self.refusals.append((connect.client_id, verdict))
            _abort(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(str(self.upstream))
        except OSError as exc:
            LOG.warning("broker unreachable for %s: %s", connect.client_id, exc)
            _abort(writer)
            return
        session = Session(connect.client_id, verdict, der or b"", peer, writer, up_writer)
        with self._lock:
            self._sessions[connect.client_id] = session  # a reconnect replaces the old one
        keepalive = effective_keepalive(connect.keepalive)
        try:
            up_writer.write(
                encode_connect(
                    replace(connect, username=verdict.username.encode(), password=None, keepalive=keepalive)
                )
            )
            if not await _relay(reader, writer, up_reader, up_writer):
                # Gone without DISCONNECT: mosquitto times it out; this bound only guards against a stuck one.
                deadline = keepalive * KEEPALIVE_GRACE + 5
                try:
                    await asyncio.wait_for(_discard(up_reader), deadline)
                except TimeoutError:
                    self.on_drop(connect.client_id, "MQTT_KEEP_ALIVE_TIMEOUT")
                _abort(up_writer)
        finally:
            with self._lock:
                if self._sessions.get(connect.client_id) is session:
                    del self._sessions[connect.client_id]

    async def _control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One JSON request per line: {"op": "delete_connection", "clientId": ...} -> {"found": bool}."""
        try:
            request = json.loads(await asyncio.wait_for(reader.readline(), 5))
            found = False
            if request.get("op") == "delete_connection":
                found = await self._drop(str(request.get("clientId")), "API_INITIATED_DISCONNECT")
            writer.write(json.dumps({"found": found}).encode() + b"\n")
            await writer.drain()
        except (ValueError, TimeoutError, OSError, AttributeError) as exc:
            LOG.warning("bad control request: %s", exc)
        finally:
            writer.close()


def _abort(writer: asyncio.StreamWriter) -> None:
    transport = writer.transport
    if transport is not None and not transport.is_closing():
        transport.abort()
    elif transport is not None:
        with contextlib.suppress(Exception):
            transport.abort()


async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError, ssl.SSLError, asyncio.IncompleteReadError):
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()


async def _pump_packets(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> bool:
    """Copy the device's packets one by one; True when the last one was DISCONNECT (a clean goodbye)."""
    with contextlib.suppress(
        ConnectionError, OSError, ssl.SSLError, asyncio.IncompleteReadError, MalformedPacket
    ):
        while True:
            first = await src.readexactly(1)
            header, length, shift = bytearray(first), 0, 0
            for _ in range(4):
                byte = (await src.readexactly(1))[0]
                header.append(byte)
                length |= (byte & 0x7F) << shift
                if not byte & 0x80:
                    break
                shift += 7
            else:
                raise MalformedPacket("bad remaining length")
            if length > MAX_PACKET_BYTES:
                raise MalformedPacket(f"packet of {length} bytes")
            dst.write(bytes(header) + await src.readexactly(length))
            await dst.drain()
            if first[0] >> 4 == DISCONNECT:
                return True
    return False


async def _discard(src: asyncio.StreamReader) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while await src.read(65536):
            pass


async def _relay(
    dev_reader: asyncio.StreamReader,
    dev_writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> bool:
    """Copy both ways until either side closes. The device side is closed then; the upstream side too
    unless the device left without DISCONNECT: False, for the caller to let mosquitto time it out."""
    device = asyncio.ensure_future(_pump_packets(dev_reader, up_writer))
    broker = asyncio.ensure_future(_pump(up_reader, dev_writer))
    clean = True
    try:
        await asyncio.wait((device, broker), return_when=asyncio.FIRST_COMPLETED)
        if device.done() and not broker.done():
            clean = device.result()
    finally:
        for task in (device, broker):
            task.cancel()
        writers = (up_writer, dev_writer) if clean else (dev_writer,)
        for writer in writers:
            with contextlib.suppress(Exception):
                writer.close()
    return clean
