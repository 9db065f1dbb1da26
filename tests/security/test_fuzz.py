"""Fuzzing the API from its own OpenAPI document (schemathesis) against the local gateway.

Owner routes carry a valid Cognito JWT; device routes go unsigned (the signature check must answer
401/400, never 5xx) — the signed device paths are covered by the protocol tests. Checks: no 5xx, and
every response conforms to the documented schema. Bounded: `MAX_EXAMPLES` per operation by default
(> 1,000 requests in all); `make fuzz` runs the long variant.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

DEFAULT_EXAMPLES = 60
LONG_EXAMPLES = 1000


def fuzz(cloud: Any, owner: Any, max_examples: int) -> tuple[int, list[str]]:
    schema = schemathesis.openapi.from_url(f"{cloud.gateway_url}/v1/openapi.json")
    headers = {"Authorization": f"Bearer {owner.token}"}
    total = 0
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(
            max_examples=max_examples,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            nonlocal total
            total += 1
            response = case.call(base_url=cloud.gateway_url, headers=headers, timeout=10)
            try:
                case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
            except Exception as exc:
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {exc}"[:500])

        run()
    return total, failures


def test_fuzz_the_api_from_its_openapi_document(cloud: Any, owner: Any) -> None:
    total, failures = fuzz(cloud, owner, DEFAULT_EXAMPLES)
    print(f"\nschemathesis: {total} generated requests, {len(failures)} failures")
    assert total >= 1000
    assert not failures, "\n".join(failures[:20])


@pytest.mark.fuzz
def test_fuzz_long(cloud: Any, owner: Any) -> None:
    total, failures = fuzz(cloud, owner, LONG_EXAMPLES)
    print(f"\nschemathesis (long): {total} generated requests, {len(failures)} failures")
    assert not failures, "\n".join(failures[:20])
