"""Faults at each AWS call of provisioning, acknowledgement and the owner's delete/revoke/release.

Each AWS call (the botocore operation, so the adapters' own error handling runs) fails once with
throttling, a timeout, an unreachable endpoint, or the function being killed right after the call
returned (a Lambda timeout or crash between two steps: a BaseException, so no `except Exception` clean-up
runs). The caller then retries like the agent (poll again, ack again) or the owner (click again), and
the test shows that it converges and that the invariant checker finds nothing - except for the one
documented residue of a kill between issuing a certificate and attaching it to the thing (docs/protocol.md,
"Provisioning"): an INACTIVE certificate on no thing, which cannot connect, and which the checker reports.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import botocore.client
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from lambdas import constants as c
from lambdas.logic import invariants
from tests.security.flows import Device, Lab, assert_consistent
from tests.unit.lambdas.conftest import reset_caches

# The AWS calls of each path, in order, with fresh caches (recorded; test_sequences_are_current
# fails when the code changes them).
SEQUENCES = {
    "poll": [
        "GetItem",
        "CreateThing",
        "ListThingPrincipals",
        "GetSecretValue",
        "RegisterCertificate",
        "AttachPolicy",
        "AttachThingPrincipal",
        "TransactWriteItems",
    ],
    "ack": ["GetItem", "DescribeCertificate", "UpdateCertificate", "TransactWriteItems"],
    "delete": [
        "GetItem",
        "DescribeCertificate",
        "UpdateCertificate",
        "ListPrincipalThings",
        "DeleteConnection",
        "ListAttachedPolicies",
        "DetachPolicy",
        "DetachThingPrincipal",
        "DeleteCertificate",
        "ListThingPrincipals",
        "DeleteThing",
        "Query",  # the device's grants, deleted in the same transaction (dal/devices.py)
        "TransactWriteItems",
        "Query",  # the sweep of a grant committed meanwhile
    ],
    # The adapter revokes, disconnects and detaches the policy; the record; then the sweep of the thing.
    "revoke": [
        "GetItem",
        "DescribeCertificate",
        "UpdateCertificate",
        "DeleteConnection",
        "ListAttachedPolicies",
        "DetachPolicy",
        "TransactWriteItems",
        "ListThingPrincipals",
    ],
    # The same removal as delete (which revokes and disconnects first), then the record and the grants.
    "release": [
        "GetItem",
        "DescribeCertificate",
        "UpdateCertificate",
        "ListPrincipalThings",
        "DeleteConnection",
        "ListAttachedPolicies",
        "DetachPolicy",
        "DetachThingPrincipal",
        "DeleteCertificate",
        "ListThingPrincipals",
        "DeleteThing",
        "Query",  # the device's grants, deleted in the same transaction (dal/devices.py)
        "TransactWriteItems",
        "Query",  # the sweep of a grant committed meanwhile
    ],
}
# A kill right after these leaves an issued certificate that no thing holds yet: the residue.
RESIDUE_AFTER = {("poll", "RegisterCertificate"), ("poll", "AttachPolicy")}


class LambdaKilled(BaseException):
    """The function died here (timeout, out of memory): nothing after this line ran, no clean-up."""


FAULTS = {
    "throttled": lambda op: ClientError(
        {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, op
    ),
    "timeout": lambda op: ReadTimeoutError(endpoint_url="https://aws.invalid"),
    "unreachable": lambda op: EndpointConnectionError(endpoint_url="https://aws.invalid"),
    "killed": None,  # after the call
}


def _steps(path: str) -> list[tuple[str, str, int]]:
    seen: dict[str, int] = {}
    steps = []
    for op in SEQUENCES[path]:
        seen[op] = seen.get(op, 0) + 1
        steps.append((path, op, seen[op]))
    return steps


def _ids(steps: list[tuple[str, str, int]]) -> list[str]:
    return [f"{path}-{op}#{n}" for path, op, n in steps]


class Injector:
    """Fails the `occurrence`-th call of `operation` once, while armed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, operation: str, occurrence: int, fault: str) -> None:
        self.operation, self.occurrence, self.fault = operation, occurrence, fault
        self.armed = False
        self.thread = threading.get_ident()
        self.seen = 0
        self.fired = False
        self.calls: list[str] = []
        real = botocore.client.BaseClient._make_api_call
        injector = self

        def call(client: Any, name: str, params: dict[str, Any]) -> Any:
            # Only the calls of the code under test: an embedded cloud started by an earlier test on
            # this worker has threads of its own that call AWS (moto server) too.
            if not injector.armed or threading.get_ident() != injector.thread:
                return real(client, name, params)
            injector.calls.append(name)
            hit = False
            if name == injector.operation and not injector.fired:
                injector.seen += 1
                hit = injector.seen == injector.occurrence
            if not hit:
                return real(client, name, params)
            injector.fired = True
            make = FAULTS[injector.fault]
            if make is None:
                real(client, name, params)
                raise LambdaKilled(f"killed after {name}")
            raise make(name)

        monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", call)

    @contextlib.contextmanager
    def arm(self) -> Iterator[None]:
        reset_caches()  # cold caches, as in SEQUENCES
        self.armed, self.seen, self.calls = True, 0, []
        self.thread = threading.get_ident()
        try:
            yield
        finally:
            self.armed = False


def _is_error_answer(status: Any, body: Any) -> bool:
    return isinstance(body, dict) and bool(body.get("error")) and bool(body.get("message"))


def _device_until_active(lab: Lab, device: Device, injector: Injector, phase: str) -> list[Any]:
    """Poll and ack like the agent until active (bounded); the fault is armed for the first `phase`."""
    answers: list[Any] = []
    armed_once = False

    def attempt(which: str, call: Any) -> tuple[int, Any] | None:
        nonlocal armed_once
        context = injector.arm() if which == phase and not armed_once else contextlib.nullcontext()
        if which == phase:
            armed_once = True
        try:
            with context:
                status, body = call()
        except LambdaKilled:
            answers.append(f"{which}:killed")
            return None
        answers.append(f"{which}:{status}")
        if status >= 500:
            assert _is_error_answer(status, body), body  # a JSON error, never a stack trace
        return status, body

    for _ in range(8):
        polled = attempt("poll", lambda: lab.poll(device))
        if polled is None or polled[0] != 200 or polled[1]["status"] != "provisioned":
            continue
        acked = attempt("ack", lambda b=polled[1]: lab.ack(device, b["certificateId"]))
        if acked is not None and acked[0] == 204:
            return answers
    raise AssertionError(f"provisioning did not converge: {answers}")


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize(
    ("path", "operation", "occurrence"),
    _steps("poll") + _steps("ack"),
    ids=_ids(_steps("poll") + _steps("ack")),
)
def test_a_fault_at_any_provisioning_call_converges(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, path: str, operation: str, occurrence: int, fault: str
) -> None:
    device = lab.claimed()
    injector = Injector(monkeypatch, operation, occurrence, fault)
    answers = _device_until_active(lab, device, injector, path)
    assert injector.fired, injector.calls
    assert any(a.endswith(":killed") or int(a.split(":")[1]) >= 500 for a in answers), answers
    record = lab.record(device)
    assert record is not None and record["state"] == c.STATE_ACTIVE
    problems = invariants.check()
    if fault == "killed" and (path, operation) in RESIDUE_AFTER:
        # The documented residue: the first attempt's certificate, INACTIVE, held by no thing.
        assert [p.kind for p in problems] == ["certificate-orphan"], problems
        assert "INACTIVE, attached to no Latchkey thing" in problems[0].message
        assert problems[0].subject != record["certificateId"]
    else:
        assert problems == [], "\n".join(str(p) for p in problems)


OWNER_STEPS = _steps("delete") + _steps("revoke") + _steps("release")
AFTER = {"delete": None, "revoke": c.STATE_REVOKED, "release": c.STATE_UNCLAIMED}
DEVICE_SEES = {"delete": 404, "revoke": 403, "release": 200}


@pytest.mark.parametrize("fault", ["throttled", "killed"])
@pytest.mark.parametrize(("path", "operation", "occurrence"), OWNER_STEPS, ids=_ids(OWNER_STEPS))
def test_a_fault_during_an_owner_action_converges_when_the_owner_retries(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, path: str, operation: str, occurrence: int, fault: str
) -> None:
    device, _ = lab.active()
    injector = Injector(monkeypatch, operation, occurrence, fault)
    answers: list[Any] = []
    for attempt in range(4):
        context = injector.arm() if attempt == 0 else contextlib.nullcontext()
        try:
            with context:
                status, body = getattr(lab, path)(device)
        except LambdaKilled:
            answers.append("killed")
            continue
        answers.append(status)
        if status < 300:
            break
        if status == 404 and "killed" in answers and path != "revoke":
            break  # the killed attempt had committed: the device is gone from the owner's account
        assert status >= 500 and _is_error_answer(status, body), (status, body)
    assert injector.fired and answers[-1] in (200, 204, 404), answers
    assert lab.state(device) == AFTER[path]
    assert lab.poll(device)[0] == DEVICE_SEES[path]
    assert_consistent()


def test_sequences_are_current(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    """SEQUENCES lists what the code really calls (update it when the code changes)."""
    recorder = Injector(monkeypatch, "none", 1, "throttled")
    for path in SEQUENCES:
        device, _ = lab.active() if path not in ("poll", "ack") else (lab.claimed(), None)
        if path == "ack":
            body = lab.poll(device)[1]
        with recorder.arm():
            if path == "poll":
                lab.poll(device)
            elif path == "ack":
                lab.ack(device, body["certificateId"])
            else:
                getattr(lab, path)(device)
        assert recorder.calls == SEQUENCES[path], (path, recorder.calls)
