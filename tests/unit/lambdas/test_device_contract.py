"""The device API contract is defined once (lambdas/device_contract.py) and read twice.

- `check()`, the stdlib validator on the poll path, accepts exactly what the reference JSON Schema
  validator (jsonschema, Draft 2020-12) accepts: a property test over generated bodies (valid ones built
  from the schema, mutated ones, arbitrary JSON).
- The OpenAPI document carries the same schemas, and the handlers' real answers satisfy them.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from lambdas import device_contract
from lambdas.device_contract import SCHEMAS, ContractError, check
from lambdas.errors import BadRequest
from lambdas.logic import poll

REQUESTS = ("PollRequest", "AckRequest", "RegisterRequest", "RotateRequest")
REFERENCE = {name: jsonschema.Draft202012Validator(schema) for name, schema in SCHEMAS.items()}


def keywords(schema: dict[str, Any]) -> set[str]:
    """Every keyword a schema uses, through nested schemas."""
    found = set(schema)
    for key in ("properties",):
        for sub in schema.get(key, {}).values():
            found |= keywords(sub)
    for key in ("additionalProperties", "propertyNames"):
        if isinstance(schema.get(key), dict):
            found |= keywords(schema[key])
    return found


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_schemas_are_valid_and_use_only_what_check_implements(name):
    jsonschema.Draft202012Validator.check_schema(SCHEMAS[name])
    assert keywords(SCHEMAS[name]) <= device_contract.KEYWORDS


# --- generated bodies --------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False)
json_scalars |= st.text(max_size=40)
any_json = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Instances of the subset device_contract uses; mostly valid, at the limits on purpose."""
    if "const" in schema:
        return st.just(schema["const"])
    kinds = schema.get("type", ["string"])
    kinds = [kinds] if isinstance(kinds, str) else kinds
    return st.one_of([_of_type(kind, schema) for kind in kinds])


def _of_type(kind: str, schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind in ("integer", "number"):
        low, high = schema.get("minimum"), schema.get("maximum")
        ints = st.integers(min_value=low, max_value=high)
        bounds = [v for v in (low, high) if v is not None]
        edges = st.sampled_from([e for v in bounds for e in (v - 1, v, v + 1)] or [0])  # at the limits
        whole_floats = ints.map(float)  # 3.0 is an integer in JSON Schema
        out = ints | edges | whole_floats
        return out | st.floats(allow_nan=False) if kind == "number" else out
    if kind == "string":
        limit = schema.get("maxLength", 200)
        if "pattern" in schema:
            text = st.from_regex(schema["pattern"]).filter(lambda s: len(s) <= limit + 2)
        else:
            text = st.text(max_size=limit + 2)
        return text | st.sampled_from(["x" * limit, "x" * (limit + 1)])
    if kind == "object":
        properties = schema.get("properties", {})
        required = set(schema.get("required", ()))
        fixed = {k: from_schema(v) for k, v in properties.items() if k in required}
        optional = {k: from_schema(v) for k, v in properties.items() if k not in required}
        extra = schema.get("additionalProperties", True)
        if isinstance(extra, dict):
            names = schema.get("propertyNames", {})
            keys = st.from_regex(names["pattern"]) if "pattern" in names else st.text(max_size=8)
            limit = schema.get("maxProperties", 8)
            sizes = st.sampled_from([limit, limit + 1]) | st.integers(0, limit + 1)  # the limit, often
            return sizes.flatmap(lambda n: st.dictionaries(keys, from_schema(extra), min_size=n, max_size=n))
        return st.fixed_dictionaries(fixed, optional=optional)
    raise AssertionError(kind)


def mutated(name: str) -> st.SearchStrategy[Any]:
    """A valid-looking body with one field replaced, removed, or added."""
    schema = SCHEMAS[name]

    @st.composite
    def build(draw: st.DrawFn) -> Any:
        body = dict(draw(from_schema(schema)))
        fields = sorted(schema["properties"])
        field = draw(st.sampled_from(fields))
        action = draw(st.sampled_from(["replace", "remove", "add"]))
        if action == "replace":
            body[field] = draw(any_json)
        elif action == "remove":
            body.pop(field, None)
        else:
            body[draw(st.text(max_size=12))] = draw(any_json)
        return body

    return build()


def bodies(name: str) -> st.SearchStrategy[Any]:
    return from_schema(SCHEMAS[name]) | mutated(name) | any_json


def agrees(name: str, body: Any) -> bool:
    reference_ok = REFERENCE[name].is_valid(body)
    try:
        check(name, body)
    except ContractError:
        return not reference_ok
    return reference_ok


@pytest.mark.parametrize("name", REQUESTS)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_check_accepts_exactly_what_json_schema_accepts(name, data):
    body = data.draw(bodies(name))
    assert agrees(name, body), json.dumps(body, default=str)[:300]


@pytest.mark.parametrize("name", REQUESTS)
def test_generated_bodies_reach_both_answers(name):
    """The property above is only worth something if it sees valid and invalid bodies of each kind."""
    quick = settings(max_examples=200, deadline=None, database=None)
    find(bodies(name), REFERENCE[name].is_valid, settings=quick)
    find(bodies(name), lambda body: not REFERENCE[name].is_valid(body), settings=quick)


@pytest.mark.parametrize(
    ("name", "body", "field"),
    [
        ("PollRequest", {"agent": {"abc\n": 1}}, "agent"),  # Python's `$` alone would accept the newline
        ("PollRequest", {"attempt": 2**31}, "attempt"),
        ("PollRequest", {"attempt": 1.5}, "attempt"),
        ("PollRequest", {"attempt": True}, "attempt"),
        ("PollRequest", {"csr": "hello"}, "csr"),
        ("AckRequest", {"certificateId": "a" * 64 + "\n"}, "certificateId"),
        ("AckRequest", {"certificateId": "a" * 63}, "certificateId"),
        ("AckRequest", {}, "certificateId"),
        ("RegisterRequest", {"registrationToken": "t", "mac": "m"}, "csr"),
        ("RegisterRequest", {"registrationToken": 5, "mac": "m", "csr": "x"}, "registrationToken"),
    ],
)
def test_refused_with_a_bad_request_that_names_the_field(name, body, field):
    assert not REFERENCE[name].is_valid(body)
    with pytest.raises(BadRequest) as refused:
        check(name, body)
    assert refused.value.message.startswith(field)


def test_validate_normalizes_the_poll_body():
    assert poll.validate({"attempt": 3.0, "agent": {"version": "1", "ip": None}, "x": 1}) == {
        "attempt": 3,
        "agent": {"version": "1"},
        "csr": None,
    }
    assert poll.validate({}) == {"attempt": 0, "agent": {}, "csr": None}


def test_the_openapi_document_carries_the_contract(aws, owner_event):
    from lambdas.handlers.owner_api import handler

    answer = handler(owner_event("GET", "/v1/openapi.json", sub=None), None)
    assert answer["statusCode"] == 200
    document = json.loads(answer["body"])
    schemas = document["components"]["schemas"]
    for name, schema in SCHEMAS.items():
        assert schemas[name] == schema, name
    body = document["paths"]["/v1/device/poll"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/PollRequest"}


def test_real_answers_satisfy_the_response_schemas(aws, signed_event, device_key):
    from tests.unit.lambdas.test_provisioning import DEVICE, ack
    from tests.unit.lambdas.test_provisioning import poll as provisioning_poll

    REFERENCE["PollUnclaimed"].validate(poll.UNCLAIMED)
    aws.put_device(DEVICE, device_key, state="claimed", ownerId="owner-1")
    status, answer = provisioning_poll(signed_event, device_key)
    assert status == 200
    REFERENCE["PollProvisioned"].validate(answer)
    assert ack(signed_event, device_key, answer["certificateId"])[0] == 204
    status, refused = ack(signed_event, device_key, "f" * 64)
    assert status == 409
    REFERENCE["DeviceError"].validate(refused)
