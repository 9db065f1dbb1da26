"""The local stand-in for IoT Core's Device Shadow service, on mosquitto and moto's iot-data.

Devices use the topics IoT Core defines (`$aws/things/<thing>/shadow/...`): `update` (reports) and
`get` in, `update/accepted`, `update/delta` and `get/accepted` out. Documents live in moto's iot-data
(versioned, merged as IoT Core merges), so the owner API reads and writes them with the same iot-data
calls it makes on AWS. Owner changes made through iot-data are noticed by watching the documents'
versions (as `iot_sync` watches certificates) and announced as `update/delta`. The delta itself comes
from `lambdas.logic.shadow.delta`, the one delta computation.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import uuid
from typing import Any

from lambdas.logic.shadow import delta
from local.broker import Broker

LOG = logging.getLogger("latchkey.local.shadow")
PREFIX = "$aws/things/"


class ShadowService:
    def __init__(self, broker: Broker, iot: Any, iot_data: Any, interval: float = 0.3) -> None:
        self.broker = broker
        self.iot = iot
        self.iot_data = iot_data
        self.interval = interval
        self._versions: dict[str, int] = {}
        self._queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._client: Any = None
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self, timeout: float = 10.0) -> ShadowService:
        import paho.mqtt.client as mqtt

        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"latchkey-shadow-{uuid.uuid4().hex[:8]}",
            clean_session=True,
        )
        client.tls_set_context(self.broker.client_ssl_context())
        client.reconnect_delay_set(0.1, 2)  # type: ignore[arg-type]  # paho sleeps floats
        client.on_connect = self._on_connect
        client.on_subscribe = lambda *_a: self._subscribed.set()
        client.on_message = lambda _c, _u, m: self._queue.put((m.topic, bytes(m.payload)))
        self._client = client
        client.connect(self.broker.host, self.broker.port, keepalive=30)
        client.loop_start()
        for target, name in ((self._work, "shadow-requests"), (self._watch, "shadow-watch")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        if not self._subscribed.wait(timeout):
            raise RuntimeError("shadow service could not subscribe to the shadow topics")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(None)
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.disconnect()
            client.loop_stop()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []

    def _on_connect(self, client: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            client.subscribe([(PREFIX + "+/shadow/update", 1), (PREFIX + "+/shadow/get", 1)])

    def _publish(self, topic: str, body: dict[str, Any]) -> None:
        client = self._client
        if client is not None:
            client.publish(topic, json.dumps(body), qos=1)

    def _document(self, thing: str) -> dict[str, Any] | None:
        try:
            answer = self.iot_data.get_thing_shadow(thingName=thing)
        except Exception as exc:
            if "ResourceNotFound" in type(exc).__name__ or "ResourceNotFound" in str(exc):
                return None
            raise
        document: dict[str, Any] = json.loads(answer["payload"].read())
        return document

    def _announce_delta(self, thing: str, document: dict[str, Any]) -> None:
        state = document.get("state") or {}
        change = delta(state.get("desired") or {}, state.get("reported") or {})
        with self._lock:
            self._versions[thing] = int(document.get("version") or 0)
        if change:
            self._publish(
                f"{PREFIX}{thing}/shadow/update/delta", {"state": change, "version": document.get("version")}
            )

    # -- device requests ------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            topic, payload = item
            try:
                self._handle(topic, payload)
            except Exception:
                LOG.exception("shadow request on %s failed", topic)

    def _handle(self, topic: str, payload: bytes) -> None:
        thing, _, operation = topic[len(PREFIX) :].partition("/shadow/")
        if operation == "get":
            document = self._document(thing)
            if document is None:
                self._publish(f"{topic}/rejected", {"code": 404, "message": "No shadow exists"})
                return
            state = document.get("state") or {}
            body = {
                **document,
                "state": {**state, "delta": delta(state.get("desired") or {}, state.get("reported") or {})},
            }
            self._publish(f"{topic}/accepted", body)
            return
        try:
            request = json.loads(payload)
        except ValueError:
            self._publish(f"{topic}/rejected", {"code": 400, "message": "Payload contains invalid json"})
            return
        self.iot_data.update_thing_shadow(thingName=thing, payload=json.dumps(request).encode())
        document = self._document(thing) or {}
        self._publish(
            f"{topic}/accepted", {"state": request.get("state"), "version": document.get("version")}
        )
        self._announce_delta(thing, document)

    # -- owner changes through iot-data -------------------------------------------------------------
    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                things = [t["thingName"] for t in self.iot.list_things().get("things", [])]
                for thing in things:
                    document = self._document(thing)
                    if document is None:
                        continue
                    with self._lock:
                        known = self._versions.get(thing)
                    if known != int(document.get("version") or 0):
                        self._announce_delta(thing, document)
            except Exception:
                LOG.debug("shadow watch pass failed", exc_info=True)
