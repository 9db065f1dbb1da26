"""The local stand-in for the IoT topic rules that feed the Presence function.

On AWS (infrastructure/iot.py) two topic rules invoke `lambdas.handlers.presence.handler`, both with
`SELECT *, topic() AS topic, timestamp() AS receivedAt FROM '<filter>'`:

- status messages, filter `latchkey/things/+/status` (`constants.TOPIC_STATUS_FILTER`);
- lifecycle events, filter `$aws/events/presence/+/+` (IoT Core's connected/disconnected events).

Locally a paho client with the service certificate subscribes to the status filter and builds exactly
the event the first rule delivers; the connects/disconnects the broker logs become the event the second
rule delivers, with IoT Core's fields (`versionNumber` grows with every connection of a client id and is
shared by that connection's connect and disconnect; a dropped connection is reported only after the
keep-alive timeout, `local.mqtt_front`). Events are handed to the handler one at a time, in order, on a
worker thread (never on paho's network thread). Shapes: docs/local.md.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
import uuid
from typing import Any

from lambdas import constants as c
from local.broker import Broker, ClientEvent
from local.lambda_runtime import LambdaContext, function, load_handler
from local.pki import SERVICE_CN

LOG = logging.getLogger("latchkey.local.presence")
FUNCTION_ID = "Presence"
LIFECYCLE_TOPIC = "$aws/events/presence/{event}/{client_id}"


def _now_ms() -> int:
    return int(time.time() * 1000)


def status_event(topic: str, payload: bytes, received_at: int | None = None) -> dict[str, Any] | None:
    """The event the status topic rule delivers, or None for a payload the rule could not parse
    (IoT SQL `SELECT *` needs a JSON object)."""
    try:
        body = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    return {**body, "topic": topic, "receivedAt": _now_ms() if received_at is None else received_at}


def lifecycle_event(event: ClientEvent, session_id: str, version: int = 0) -> dict[str, Any]:
    """The event the lifecycle topic rule delivers: IoT Core's payload + topic + receivedAt."""
    topic = LIFECYCLE_TOPIC.format(event=event.event_type, client_id=event.client_id)
    body: dict[str, Any] = {
        "clientId": event.client_id,
        "timestamp": int(event.timestamp * 1000),
        "eventType": event.event_type,
        "sessionIdentifier": session_id,
        "principalIdentifier": event.principal or event.username,  # the certificate id, as on AWS
        "versionNumber": version,
    }
    if event.event_type == "connected":
        body["ipAddress"] = event.ip
    else:
        body["clientInitiatedDisconnect"] = event.reason == "CLIENT_INITIATED_DISCONNECT"
        body["disconnectReason"] = event.reason or "CONNECTION_LOST"
    return {**body, "topic": topic, "receivedAt": _now_ms()}


class PresenceBridge:
    def __init__(self, broker: Broker, *, lifecycle: bool = True) -> None:
        self.broker = broker
        self.lifecycle = lifecycle
        self.client_id = f"latchkey-presence-{uuid.uuid4().hex[:8]}"
        self.delivered = 0  # events handed to the handler
        self.failed = 0  # handler raised
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._sessions: dict[str, tuple[str, int]] = {}  # client id -> (session id, versionNumber)
        self._versions: dict[str, int] = {}  # client id -> the last versionNumber given out
        self._subscribed = threading.Event()
        self._missing_logged = False
        self._client: Any = None
        self._worker: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> PresenceBridge:
        import paho.mqtt.client as mqtt

        self._worker = threading.Thread(target=self._work, name="presence-bridge", daemon=True)
        self._worker.start()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True)
        client.tls_set_context(self.broker.client_ssl_context())
        client.reconnect_delay_set(0.1, 2)  # type: ignore[arg-type]  # paho sleeps floats
        client.on_connect = self._on_connect
        client.on_subscribe = lambda *_args: self._subscribed.set()
        client.on_message = self._on_message
        self._client = client
        client.connect(self.broker.host, self.broker.port, keepalive=30)
        client.loop_start()
        if self.lifecycle:
            self.broker.add_client_listener(self._on_client_event)
        if not self._subscribed.wait(timeout):
            raise RuntimeError("presence bridge could not subscribe to the status topics")
        return self

    def stop(self) -> None:
        self.broker.remove_client_listener(self._on_client_event)
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.disconnect()
            client.loop_stop()
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join(timeout=10)
            self._worker = None

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """True once every event received so far has been handled (bounded by `timeout`)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    # -- inputs -----------------------------------------------------------------------------------
    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if not reason.is_failure:
            client.subscribe(c.TOPIC_STATUS_FILTER, qos=1)

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        event = status_event(message.topic, message.payload)
        if event is None:
            LOG.warning(
                "status message on %s is not a JSON object; the topic rule would drop it", message.topic
            )
            return
        self._queue.put(event)

    def _on_client_event(self, event: ClientEvent) -> None:
        if not event.username or event.username == SERVICE_CN:
            return  # the embedded cloud's own clients are not devices
        if event.event_type == "connected":
            # Monotonic per client id across bridge restarts too (IoT's may skip values).
            version = max(self._versions.get(event.client_id, 0) + 1, int(event.timestamp * 1000))
            self._versions[event.client_id] = version
            session, version = self._sessions[event.client_id] = (str(uuid.uuid4()), version)
        else:
            known = self._sessions.pop(event.client_id, None)
            session, version = known or (str(uuid.uuid4()), self._versions.get(event.client_id, 0))
        self._queue.put(lifecycle_event(event, session, version))

    # -- output -----------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            event = self._queue.get()
            try:
                if event is None:
                    return
                self._deliver(event)
            finally:
                self._queue.task_done()

    def _deliver(self, event: dict[str, Any]) -> None:
        fn = function(FUNCTION_ID)
        try:
            handler = load_handler(fn.handler)
        except (ImportError, AttributeError) as exc:
            if not self._missing_logged:
                LOG.warning(
                    "presence handler %s not available (%s); skipping presence events", fn.handler, exc
                )
                self._missing_logged = True
            return
        try:
            handler(event, LambdaContext(fn))
            self.delivered += 1
        except Exception:
            self.failed += 1
            LOG.exception("presence handler failed for %s", event.get("topic"))
