"""Fuzzing the API from its own OpenAPI document (schemathesis) against the local gateway.

The document is loaded from `GET /v1/openapi.json`, so what is fuzzed is what the API publishes. Every
operation gets generated requests, valid (positive) and invalid (negative) for the schema:

- owner routes with a valid Cognito JWT (a fresh `owner`), and path ids that are sometimes the owner's
  real device / pending device (so the routes get past the 404) - plus a few without any token;
- device routes twice: as generated (unsigned, or with generated headers), and signed with a real device
  key (firmware's `sign_request`) over the exact bytes sent, for an unclaimed, a claimed and an active
  device, sometimes with the device's real CSR or certificate id so that provisioning and the ack run;
  `register` sometimes with a live registration token.

Checks on every answer: not a server error, status code documented, content type documented, headers
and body conform to the documented schema. Bounded by default (`DEFAULT_EXAMPLES` per operation and
variant, derandomized, >= 1,000 requests in well under 90 s); `make fuzz` runs `test_fuzz_long` with
`LONG_EXAMPLES` and a random seed. Requests come from a loopback address of their own, so the failures
they provoke do not count against the rate limits of other tests sharing this cloud.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from requests.adapters import HTTPAdapter
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from firmware.identity import DeviceKey, sign_request
from lambdas.logic import claims
from lambdas.logic.manufacturing import mint_device
from tests.security.flows import (
    ACK,
    POLL,
    LoopbackClient,
    assert_no_new_problems,
    fresh_loopback,
    problems_now,
)

DEFAULT_EXAMPLES = 50
UNAUTHENTICATED_EXAMPLES = 4
LONG_EXAMPLES = 800
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


class SourceAddressAdapter(HTTPAdapter):
    def __init__(self, source_ip: str) -> None:
        self.source_ip = source_ip
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.source_ip, 0)
        super().init_poolmanager(*args, **kwargs)


@dataclass
class FuzzDevice:
    device_id: str
    private_key_pem: str
    csr: str
    certificate_id: str | None = None


@dataclass
class Report:
    total: int = 0
    per_operation: Counter[str] = field(default_factory=Counter)
    per_status: Counter[tuple[str, int]] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


class Fuzzer:
    def __init__(self, cloud: Any, owner: Any) -> None:
        self.cloud, self.owner = cloud, owner
        self.base_url = cloud.gateway_url
        self.source_ip = fresh_loopback()
        self.setup = LoopbackClient(self.base_url, fresh_loopback())
        self.report = Report()
        self.devices = [self._device("unclaimed"), self._device("claimed"), self._device("active")]
        self.token = self._owned_ids("/v1/pending")["token"]  # before the fuzz uses up the pending limit

    # -- the world the requests act on ---------------------------------------------------------------
    def _device(self, state: str) -> FuzzDevice:
        minted = mint_device(None, "fuzz", "manufacturer")
        assert minted.private_key_pem is not None
        key = DeviceKey.from_pem(minted.private_key_pem)
        device = FuzzDevice(minted.device_id, minted.private_key_pem, key.csr_pem(minted.device_id))
        if state != "unclaimed":
            claims.claim_device(self.owner.sub, self.owner.email, minted.claim_code, None, "192.0.2.200")
        if state == "active":
            device.certificate_id = self._provision(device)
        return device

    def _provision(self, device: FuzzDevice) -> str:
        status, _, body = self.setup.signed(
            device.device_id, device.private_key_pem, POLL, {"csr": device.csr}
        )
        assert status == 200 and body["status"] == "provisioned", body
        certificate_id = str(body["certificateId"])
        status, _, _ = self.setup.signed(
            device.device_id, device.private_key_pem, ACK, {"certificateId": certificate_id}
        )
        assert status == 204
        return certificate_id

    def _owned_ids(self, path: str) -> dict[str, str]:
        """Fresh things for this operation's examples to act on: a device of the owner's, a pending one."""
        if path.startswith("/v1/pending"):
            status, body = self.owner.request(
                "POST", "/v1/pending", {"name": "Fuzz target", "board": "esp32"}
            )
            return {"id": body["id"], "token": body["registrationToken"]} if status == 201 else {}
        return {"id": self._device("active").device_id}

    # -- one request -----------------------------------------------------------------------------------
    def _send(self, case: Any, label: str, headers: dict[str, str], data: bytes | None = None) -> None:
        self.report.total += 1
        self.report.per_operation[label] += 1
        # A connection per request: on a kept-alive connection the local gateway's answers wait ~40 ms
        # for delayed ACKs (Nagle), which would triple the run time.
        session = requests.Session()
        session.mount("http://", SourceAddressAdapter(self.source_ip))
        # Set on the case itself: headers passed to call() lose to generated ones of the same name.
        case.headers = {**(case.headers or {}), **headers}
        kwargs: dict[str, Any] = {"base_url": self.base_url, "session": session, "timeout": 15}
        if data is not None:
            kwargs["data"] = data
        try:
            response = case.call(**kwargs)
        except requests.RequestException as exc:
            self.report.failures.append(f"{label}: no answer: {exc}"[:300])
            return
        finally:
            session.close()
        self.report.statuses[response.status_code] += 1
        self.report.per_status[label, response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup is a BaseExceptionGroup
            body = response.text[:200].replace("\n", " ")
            self.report.failures.append(f"{label} -> {response.status_code} {body}: {str(exc)[:600]}")

    def _signed(self, case: Any, device: FuzzDevice, path: str) -> tuple[dict[str, str], bytes] | None:
        """Headers and body bytes for the case, signed with the device's key (None: not serializable)."""
        body = case.body
        if isinstance(body, bytes):  # a negative case's raw body
            raw = body
        elif body is None or type(body).__name__ == "NotSet":
            raw = b""
        else:
            try:
                raw = json.dumps(body).encode()
            except (TypeError, ValueError):
                return None
        stamp = int(time.time())
        key = DeviceKey.from_pem(device.private_key_pem)
        return (
            {
                "Content-Type": "application/json",
                "X-Device-Id": device.device_id,
                "X-Timestamp": str(stamp),
                "X-Signature": sign_request(key, "POST", path, stamp, raw),
            },
            raw,
        )

    # -- operations ------------------------------------------------------------------------------------
    def run(self, examples: int, derandomize: bool) -> Report:
        schema = schemathesis.openapi.from_url(f"{self.base_url}/v1/openapi.json")
        for result in schema.get_all_operations():
            operation = result.ok()
            path = operation.path
            if path.startswith("/v1/device/"):
                self._device_operation(operation, examples, derandomize)
            else:
                self._owner_operation(operation, examples, derandomize)
                self._unauthenticated(operation, derandomize)
        return self.report

    def _strategy(self, operation: Any) -> Any:
        strategies = [operation.as_strategy(GenerationMode.POSITIVE)]
        with contextlib.suppress(Exception):  # unless nothing in this operation can be made invalid
            strategies.append(operation.as_strategy(GenerationMode.NEGATIVE))
        return st.one_of(*strategies)

    def _fuzz(self, operation: Any, variant: str, examples: int, derandomize: bool, send: Any) -> None:
        @settings(
            max_examples=examples,
            deadline=None,
            derandomize=derandomize,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=self._strategy(operation), data=st.data())
        def run(case: Any, data: Any) -> None:
            send(case, data)

        run()

    def _unauthenticated(self, operation: Any, derandomize: bool) -> None:
        label = f"{operation.label} (no token)"
        self._fuzz(
            operation,
            "no token",
            UNAUTHENTICATED_EXAMPLES,
            derandomize,
            lambda case, data: self._send(case, label, {}),
        )

    def _owner_operation(self, operation: Any, examples: int, derandomize: bool) -> None:
        owned = self._owned_ids(operation.path) if "{id}" in operation.path else {}
        if operation.path == "/v1/claims":  # a label to claim, typed as on the label
            owned = {"code": mint_device(None, "fuzz", "manufacturer").display_code}
        headers = {"Authorization": f"Bearer {self.owner.token}"}

        def send(case: Any, data: Any) -> None:
            if owned.get("id") and data.draw(st.booleans(), label="real id"):
                case.path_parameters = {**(case.path_parameters or {}), "id": owned["id"]}
            if (
                owned.get("code")
                and isinstance(case.body, dict)
                and data.draw(st.booleans(), label="real code")
            ):
                case.body = {**case.body, "claimCode": owned["code"]}
            self._send(case, operation.label, headers)

        self._fuzz(operation, "owner", examples, derandomize, send)

    def _device_operation(self, operation: Any, examples: int, derandomize: bool) -> None:
        path = operation.path
        label = operation.label
        if path == "/v1/device/register":
            token = self.token

            def register(case: Any, data: Any) -> None:
                if isinstance(case.body, dict) and data.draw(st.booleans(), label="live token"):
                    case.body = {**case.body, "registrationToken": token}
                self._send(case, label, {})

            self._fuzz(operation, "register", examples, derandomize, register)
            return

        def as_generated(case: Any, data: Any) -> None:
            self._send(case, f"{label} (as generated)", {})

        def signed(case: Any, data: Any) -> None:
            device = data.draw(st.sampled_from(self.devices), label="device")
            if isinstance(case.body, dict) and data.draw(st.booleans(), label="real values"):
                if path == POLL:
                    case.body = {**case.body, "csr": device.csr}
                elif device.certificate_id:
                    case.body = {**case.body, "certificateId": device.certificate_id}
            prepared = self._signed(case, device, path)
            if prepared is None:
                self._send(case, f"{label} (signed)", {})
                return
            headers, raw = prepared
            self._send(case, f"{label} (signed)", headers, raw)

        self._fuzz(operation, "as generated", examples, derandomize, as_generated)
        self._fuzz(operation, "signed", examples, derandomize, signed)


def _summary(report: Report, seconds: float) -> str:
    statuses = ", ".join(f"{status}: {n}" for status, n in sorted(report.statuses.items()))
    return (
        f"schemathesis: {report.total} generated requests in {seconds:.0f} s over "
        f"{len(report.per_operation)} operation variants, {len(report.failures)} failures (statuses {statuses})"
    )


# Every operation of the document is fuzzed; beside another test on a shared 2-core machine that takes
# longer than pytest's default 300 s.
@pytest.mark.timeout(900)
def test_fuzz_the_api_from_its_openapi_document(cloud: Any, owner: Any) -> None:
    before = problems_now()
    started = time.monotonic()
    report = Fuzzer(cloud, owner).run(DEFAULT_EXAMPLES, derandomize=True)
    print("\n" + _summary(report, time.monotonic() - started))
    assert report.total >= 1000
    assert not report.failures, "\n".join(report.failures[:15])
    assert report.statuses[200] and report.statuses[204]  # the fuzz got past validation and auth too
    assert_no_new_problems(before)  # whatever it did to the devices, tables and IoT still agree


@pytest.mark.fuzz
@pytest.mark.timeout(3600)
def test_fuzz_long(cloud: Any, owner: Any) -> None:
    before = problems_now()
    started = time.monotonic()
    report = Fuzzer(cloud, owner).run(LONG_EXAMPLES, derandomize=False)
    print("\n" + _summary(report, time.monotonic() - started))
    assert not report.failures, "\n".join(report.failures[:15])
    assert_no_new_problems(before)
