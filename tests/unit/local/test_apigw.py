"""The API Gateway v2 event builder and response mapper, without sockets."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest

from lambdas import definitions as d
from local import apigw
from local.gateway import body_framing, split_target

ROUTES = [apigw.compile_route(route) for route in d.ROUTES]
NOW = dt.datetime(2026, 3, 1, 12, 30, 5, 123000, tzinfo=dt.UTC)


def route(method: str, path: str) -> tuple[apigw.CompiledRoute, dict[str, str]]:
    compiled, params = apigw.match(ROUTES, method, path)
    assert compiled is not None, (method, path)
    return compiled, params


def event_for(request: apigw.Request, claims: dict | None = None) -> dict:
    compiled, params = route(request.method, request.raw_path)
    return apigw.build_event(
        compiled,
        params,
        request,
        request_id="req-1",
        domain_name="127.0.0.1:8080",
        port=8080,
        now=NOW,
        trace_id="Root=1-test",
        account_id="123456789012",
        claims=claims,
    )


def test_routes_match_on_method_and_template_and_decode_path_parameters():
    compiled, params = route("PATCH", "/v1/devices/lk-a%2Fb")
    assert compiled.route.route_key == "PATCH /v1/devices/{id}" and params == {"id": "lk-a/b"}
    assert apigw.match(ROUTES, "PUT", "/v1/devices/x") == (None, {})
    assert apigw.match(ROUTES, "GET", "/v1/devices/x/y/z") == (None, {})
    assert apigw.match(ROUTES, "GET", "/v1/devices/") == (None, {})  # a parameter is one non-empty segment


def test_every_route_of_the_definitions_is_reachable():
    for declared in d.ROUTES:
        path = declared.path.replace("{id}", "lk-0123456789abcdef")
        compiled, _ = route(declared.method, path)
        assert compiled.route == declared


def test_the_event_is_payload_2():
    request = apigw.Request(
        method="PATCH",
        raw_path="/v1/devices/lk-1",
        raw_query="x=1&x=2&empty=",
        headers=[
            ("Content-Type", "application/json"),
            ("X-Custom", "a"),
            ("x-custom", "b"),
            ("Cookie", "a=1; b=2"),
            ("Host", "gw.local:8080"),
            ("User-Agent", "ua/1"),
            ("X-Forwarded-Proto", "https"),  # API Gateway's own, not the client's
        ],
        body=b'{"name": "K\xc3\xbcche"}',
        source_ip="127.0.0.1",
    )
    event = event_for(request)
    assert event["version"] == "2.0" and event["routeKey"] == "PATCH /v1/devices/{id}"
    assert event["rawPath"] == "/v1/devices/lk-1" and event["rawQueryString"] == "x=1&x=2&empty="
    assert event["queryStringParameters"] == {"x": "1,2", "empty": ""}
    assert event["pathParameters"] == {"id": "lk-1"}
    assert event["headers"]["x-custom"] == "a,b" and "cookie" not in event["headers"]
    assert event["cookies"] == ["a=1", "b=2"]
    assert event["headers"]["x-forwarded-proto"] == "http" and event["headers"]["x-forwarded-port"] == "8080"
    assert event["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert event["headers"]["x-amzn-trace-id"] == "Root=1-test"
    assert json.loads(event["body"]) == {"name": "Küche"} and event["isBase64Encoded"] is False
    ctx = event["requestContext"]
    assert ctx["http"] == {
        "method": "PATCH",
        "path": "/v1/devices/lk-1",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "ua/1",
    }
    assert ctx["domainName"] == "gw.local:8080" and ctx["domainPrefix"] == "gw"
    assert ctx["time"] == "01/Mar/2026:12:30:05 +0000" and ctx["timeEpoch"] == 1772368205123
    assert (ctx["requestId"], ctx["stage"], ctx["routeKey"]) == ("req-1", "$default", event["routeKey"])
    assert ctx["accountId"] == "123456789012" and ctx["apiId"] == "local"
    assert "authorizer" not in ctx


def test_a_binary_body_is_base64_and_absent_parts_are_absent():
    raw = bytes(range(256))
    event = event_for(apigw.Request("POST", "/v1/device/poll", "", [], raw, "10.0.0.1"))
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == raw
    assert not {"pathParameters", "queryStringParameters", "cookies"} & event.keys()
    empty = event_for(apigw.Request("POST", "/v1/device/poll", "", [], b"", "10.0.0.1"))
    assert "body" not in empty and empty["isBase64Encoded"] is False
    assert empty["requestContext"]["domainName"] == "127.0.0.1:8080"  # no Host header


def test_jwt_claims_reach_the_function_as_strings():
    claims = {
        "sub": "u-1",
        "exp": 1700000000,
        "email_verified": True,
        "cognito:groups": ["a", "b"],
        "address": {"c": 1},
        "scope": "aws.cognito.signin.user.admin openid",
    }
    event = event_for(apigw.Request("GET", "/v1/devices", "", [], b"", "10.0.0.1"), claims)
    jwt = event["requestContext"]["authorizer"]["jwt"]
    assert jwt["claims"] == {
        "sub": "u-1",
        "exp": "1700000000",
        "email_verified": "true",
        "cognito:groups": "[a b]",
        "address": '{"c": 1}',
        "scope": "aws.cognito.signin.user.admin openid",
    }
    assert jwt["scopes"] == ["aws.cognito.signin.user.admin", "openid"]
    assert apigw.authorizer_context({"sub": "u"})["jwt"]["scopes"] is None  # an ID token has no scope


def test_a_dict_with_status_code_is_the_response():
    answer = apigw.response_from_result(
        {
            "statusCode": 429,
            "headers": {"Retry-After": 7, "Content-Type": "application/json"},
            "body": '{"error": "too_many_requests"}',
            "cookies": ["c=1; Path=/", "d=2"],
        }
    )
    assert answer.status == 429 and answer.headers["retry-after"] == "7"
    assert answer.cookies == ("c=1; Path=/", "d=2") and answer.body == b'{"error": "too_many_requests"}'
    assert apigw.response_from_result({"statusCode": 204}) == apigw.Response(
        204, {"content-type": "application/json"}
    )
    binary = apigw.response_from_result(
        {"statusCode": 200, "body": base64.b64encode(b"\x00\x01").decode(), "isBase64Encoded": True}
    )
    assert binary.body == b"\x00\x01"


def test_any_other_json_result_is_a_200_with_that_json():
    for result in ({"hello": "world"}, [1, 2], "text", 3, None):
        answer = apigw.response_from_result(result)
        assert answer.status == 200 and json.loads(answer.body) == result
        assert answer.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    "result",
    [
        {"statusCode": 200, "body": {"not": "a string"}},
        {"statusCode": "200", "body": ""},
        {"statusCode": 99, "body": ""},
        {"statusCode": True, "body": ""},
        {"statusCode": 200, "body": "%%%", "isBase64Encoded": True},
        {"not json": {1, 2}},
    ],
)
def test_results_api_gateway_answers_with_500(result: object):
    with pytest.raises(apigw.InvalidResult):
        apigw.response_from_result(result)


def test_gateway_errors_look_like_api_gateways():
    answer = apigw.message(401, "Unauthorized", {"www-authenticate": "Bearer"})
    assert answer.status == 401 and json.loads(answer.body) == {"message": "Unauthorized"}
    assert answer.headers == {"content-type": "application/json", "www-authenticate": "Bearer"}


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], (0, False)),
        ([("Content-Length", "12")], (12, False)),
        ([("content-length", "5, 5")], (5, False)),  # a repeated identical value is one length
        ([("Content-Length", "0")], (0, False)),
        ([("Transfer-Encoding", "chunked")], (0, True)),
        ([("Transfer-Encoding", " Chunked ")], (0, True)),
    ],
)
def test_body_framing(headers: list[tuple[str, str]], expected: tuple[int, bool]):
    assert body_framing(headers) == expected


@pytest.mark.parametrize(
    "headers",
    [
        [("Content-Length", "abc")],
        [("Content-Length", "-1")],
        [("Content-Length", "")],
        [("Content-Length", "1e3")],
        [("Content-Length", "²")],
        [("Content-Length", "1"), ("Content-Length", "2")],
        [("Content-Length", "1"), ("Transfer-Encoding", "chunked")],
        [("Transfer-Encoding", "chunked, gzip")],
        [("Transfer-Encoding", "identity")],
    ],
)
def test_framing_that_cannot_be_trusted_is_refused(headers: list[tuple[str, str]]):
    from local.gateway import BadFraming

    with pytest.raises(BadFraming):
        body_framing(headers)


def test_request_targets_split_into_raw_path_and_query():
    assert split_target("/v1/devices/lk%2F1?a=%20&b") == ("/v1/devices/lk%2F1", "a=%20&b")
    assert split_target("/") == ("/", "")
    assert split_target("http://gw:8080/v1/devices?x=1") == ("/v1/devices", "x=1")
