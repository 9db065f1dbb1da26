"""The Lambda handlers in this process against moto (`mock_aws`), with every AWS call they make counted.

`mocked_cloud()` seeds moto like the stack (tables of `lambdas.definitions`, the service secret with a
claim-code key and a CA pair for own-CA mode, the IoT policy and thing type) and sets the LATCHKEY_*
environment, as the unit tests' `aws` fixture does. `AwsCalls` hooks botocore's events on the session
every boto3 client of the Lambda code is made from: `before-parameter-build` and `after-call` give the
operation, the time spent inside the call (serialisation, moto, parsing) and, through
`bench.capacity.CapacityMeter`, the DynamoDB units by the pricing rules.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from bench.capacity import CapacityMeter, Units

REGION = "us-east-1"


@dataclass
class Measured:
    calls: Counter[str] = field(default_factory=Counter)
    units: Units = field(default_factory=Units)
    aws_seconds: float = 0.0


class AwsCalls:
    """Counts calls by service:operation, times them, and meters DynamoDB capacity (when `meter`)."""

    def __init__(self) -> None:
        self.meter: CapacityMeter | None = None
        self.current = Measured()
        self._local = threading.local()
        self._lock = threading.Lock()

    def register(self, events: Any) -> None:
        events.register("before-parameter-build", self._before)
        events.register("after-call", self._after)

    def take(self) -> Measured:
        with self._lock:
            taken, self.current = self.current, Measured()
        return taken

    def _before(self, params: Any, model: Any, context: Any = None, **_: Any) -> None:
        started = time.perf_counter()
        service = model.service_model.service_name
        state = None
        if self.meter is not None and service == "dynamodb":
            state = self.meter.before(model.name, params)
        if context is not None:
            context["bench"] = (started, dict(params), state)

    def _after(self, model: Any, context: Any = None, **_: Any) -> None:
        started, params, state = (context or {}).get("bench", (time.perf_counter(), {}, None))
        service = model.service_model.service_name
        units = None
        if self.meter is not None and service == "dynamodb":
            units = self.meter.after(model.name, params, state or [])
        spent = time.perf_counter() - started
        with self._lock:
            self.current.calls[f"{service}:{model.name}"] += 1
            self.current.aws_seconds += spent
            if units is not None:
                self.current.units.add(units)


@contextmanager
def shared_session(calls: AwsCalls) -> Iterator[Any]:
    """Make every boto3 Session use one botocore session whose events `calls` hooks; yields the original
    Session class (for clients that must not be counted)."""
    import boto3.session
    import botocore.session

    original = boto3.session.Session
    core = botocore.session.get_session()
    calls.register(core)

    def session(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("botocore_session", core)
        return original(*args, **kwargs)

    boto3.session.Session = session  # type: ignore[misc, assignment]
    try:
        yield original
    finally:
        boto3.session.Session = original  # type: ignore[misc]


def reset_lambda_caches() -> None:
    from local.lambda_runtime import reset_function_caches  # the one registry of per-container caches

    reset_function_caches()


@contextmanager
def environment(values: dict[str, str], remove: tuple[str, ...] = ()) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in (*values, *remove)}
    for k in remove:
        os.environ.pop(k, None)
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def mocked_cloud(calls: AwsCalls) -> Iterator[Any]:
    """moto in-process, seeded like the stack; yields an uncounted dynamodb client for lookups."""
    from moto import mock_aws

    from lambdas import constants as c
    from local.seed import seed_in_process
    from tests.unit.lambdas.conftest import CLAIM_CODE_KEY, test_ca

    base = {
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
    }
    with (
        environment(base, remove=("LATCHKEY_AWS_ENDPOINT_URL", c.ENV_MQTT_BRIDGE, "AWS_PROFILE")),
        shared_session(calls) as uncounted_session,
        mock_aws(),
    ):
        session = uncounted_session(region_name=REGION)  # its own botocore session: not counted
        ddb = session.client("dynamodb")
        ca_cert, ca_key = test_ca()
        env = seed_in_process(
            session,
            prefix="latchkey-bench",
            ca_cert=ca_cert,
            ca_key=ca_key,
            claim_code_key=CLAIM_CODE_KEY,
            product="Latchkey Bench",
        )
        with environment(env):
            reset_lambda_caches()
            try:
                yield ddb
            finally:
                reset_lambda_caches()
