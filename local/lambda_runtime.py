"""The bits of the Lambda runtime the local cloud and the tests need: load a handler by its string, a
context object, and a cold start of the Lambda code's per-container caches."""

from __future__ import annotations

import importlib
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from lambdas import definitions as d
from local.seed import ACCOUNT_ID, PREFIX, REGION

Handler = Callable[[dict[str, Any], Any], Any]

_lock = threading.Lock()
_cache: dict[str, Handler] = {}


def function(logical_id: str) -> d.Function:
    """The function definition, looked up on every call (tests may swap `definitions.FUNCTIONS`)."""
    for fn in d.FUNCTIONS:
        if fn.logical_id == logical_id:
            return fn
    raise KeyError(logical_id)


def load_handler(handler: str) -> Handler:
    """Import "package.module.function" (cached once it succeeds; a failure is retried next time,
    so a handler module that appears while the local cloud runs is picked up)."""
    with _lock:
        cached = _cache.get(handler)
    if cached is not None:
        return cached
    module_name, _, attr = handler.rpartition(".")
    module = importlib.import_module(module_name)
    fn = getattr(module, attr)
    with _lock:
        _cache[handler] = fn
    return fn


# Modules of the Lambda code that cache something derived from the environment (clients, the secret,
# the CA, the IoT endpoint) and forget it in a module-level `reset()`. On AWS a new environment means a
# new container; here the cloud and the tests reset them whenever they (re)apply one. Every `reset()` in
# lambdas/ is listed here (tests/unit/local/test_lambda_runtime.py checks both directions).
CACHED_MODULES = (
    "lambdas.aws_clients",
    "lambdas.adapters.secrets",
    "lambdas.adapters.ca",
    "lambdas.adapters.iot",
)


def reset_function_caches() -> None:
    """What a cold start forgets (only modules already imported: the others have nothing cached)."""
    for name in CACHED_MODULES:
        module = sys.modules.get(name)
        reset = getattr(module, "reset", None)
        if callable(reset):
            reset()


def forget_handlers() -> None:
    with _lock:
        _cache.clear()


class LambdaContext:
    """What handlers get as `context` (the attributes powertools and typical code read)."""

    def __init__(self, fn: d.Function) -> None:
        self.function_name = f"{PREFIX}-{fn.logical_id}"
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"
        self.memory_limit_in_mb = fn.memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = time.strftime("%Y/%m/%d/[$LATEST]") + uuid.uuid4().hex
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + fn.timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))
