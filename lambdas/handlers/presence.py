"""Presence Lambda: device status messages and IoT lifecycle events (via topic rules) -> device presence.

Invoked by the IoT rules (infrastructure/iot.py) on AWS and by the presence bridge locally, with the
message payload plus `topic` (and `receivedAt` on AWS). Bad or unknown input is logged and dropped: a
rule has no one to answer to, and raising would only make IoT retry a message that cannot succeed.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from lambdas.logic import presence

log = logging.getLogger("latchkey.presence")
log.setLevel(os.environ.get("LATCHKEY_LOG_LEVEL", "INFO"))

MAX_EVENT_BYTES = 4096


def handler(event: Any, context: Any = None) -> dict[str, Any]:
    try:
        size = len(json.dumps(event, default=str))
    except (TypeError, ValueError):
        size = MAX_EVENT_BYTES + 1
    if size > MAX_EVENT_BYTES:
        log.warning("presence event of %d bytes dropped", size)
        return {"result": "rejected"}
    update = presence.parse(event)
    if update is None:
        topic = event.get("topic") if isinstance(event, dict) else None
        log.info("presence event on %s ignored (not a valid status or lifecycle event)", topic)
        return {"result": "ignored"}
    result = presence.apply(update)
    log.debug("presence %s: %s", update, result)
    return {"result": result, "thing": update.thing}
