"""API Gateway HTTP API, payload format 2.0, without sockets: which route a request takes, the event its
function receives, and how the function's result becomes the HTTP answer.

`local/gateway.py` feeds it requests the HTTP server has already framed; everything here is a pure
function of its arguments, so it is tested without a server (tests/unit/local/test_apigw.py).
AWS's description of both formats: https://docs.aws.amazon.com/apigateway/latest/developerguide/
http-api-develop-integrations-lambda.html
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lambdas import definitions as d

API_ID = "local"
STAGE = "$default"


@dataclass(frozen=True)
class Request:
    """One request as the HTTP server received it (headers in arrival order, names as sent)."""

    method: str
    raw_path: str  # percent-encoded, as on the request line
    raw_query: str
    headers: Sequence[tuple[str, str]]
    body: bytes
    source_ip: str
    protocol: str = "HTTP/1.1"


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    cookies: tuple[str, ...] = ()  # one Set-Cookie each
    body: bytes = b""


class InvalidResult(Exception):
    """The function returned something API Gateway answers with a 500."""


def message(status: int, text: str, headers: dict[str, str] | None = None) -> Response:
    """An error API Gateway itself produces: `{"message": ...}`."""
    return Response(
        status,
        {"content-type": "application/json", **(headers or {})},
        body=json.dumps({"message": text}).encode(),
    )


# -- routes ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CompiledRoute:
    route: d.Route
    pattern: re.Pattern[str]
    params: tuple[str, ...]


def compile_route(route: d.Route) -> CompiledRoute:
    params: list[str] = []
    parts = []
    for segment in route.path.strip("/").split("/"):
        if segment.startswith("{") and segment.endswith("}"):
            params.append(segment[1:-1])
            parts.append("([^/]+)")
        else:
            parts.append(re.escape(segment))
    return CompiledRoute(route, re.compile("^/" + "/".join(parts) + "$"), tuple(params))


def match(
    routes: Iterable[CompiledRoute], method: str, raw_path: str
) -> tuple[CompiledRoute | None, dict[str, str]]:
    """The route for `method raw_path` and its path parameters (URL-decoded), or (None, {})."""
    for compiled in routes:
        if compiled.route.method == method and (m := compiled.pattern.match(raw_path)):
            values = (urllib.parse.unquote(value) for value in m.groups())
            return compiled, dict(zip(compiled.params, values, strict=True))
    return None, {}


# -- the event -----------------------------------------------------------------------------------------
def joined_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lower-case names; a repeated header's values joined with "," (what HTTP APIs pass)."""
    out: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        out[key] = f"{out[key]},{value}" if key in out else value
    return out


def claim_value(value: Any) -> str:
    """HTTP API hands JWT claims to the function as strings (numbers too; arrays as "[a b]")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + " ".join(claim_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def authorizer_context(claims: dict[str, Any]) -> dict[str, Any]:
    """`requestContext.authorizer` of a route with a JWT authorizer."""
    scope = claims.get("scope")
    return {
        "jwt": {
            "claims": {name: claim_value(value) for name, value in claims.items()},
            "scopes": scope.split() if isinstance(scope, str) else None,
        }
    }


def build_event(
    compiled: CompiledRoute,
    path_params: dict[str, str],
    request: Request,
    *,
    request_id: str,
    domain_name: str,
    port: int,
    now: dt.datetime,
    trace_id: str,
    account_id: str,
    claims: dict[str, Any] | None = None,
) -> dict[str, Any]:
    headers = joined_headers(request.headers)
    cookie_header = headers.pop("cookie", None)
    headers.setdefault("x-forwarded-for", request.source_ip)
    headers["x-forwarded-proto"] = "http"  # API Gateway sets these two itself
    headers["x-forwarded-port"] = str(port)
    headers.setdefault("x-amzn-trace-id", trace_id)
    host = headers.get("host", domain_name)
    route_key = compiled.route.route_key
    context: dict[str, Any] = {
        "accountId": account_id,
        "apiId": API_ID,
        "domainName": host,
        "domainPrefix": host.split(".")[0].split(":")[0],
        "http": {
            "method": request.method,
            "path": request.raw_path,
            "protocol": request.protocol,
            "sourceIp": request.source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": route_key,
        "stage": STAGE,
        "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(now.timestamp() * 1000),
    }
    if claims is not None:
        context["authorizer"] = authorizer_context(claims)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": request.raw_path,
        "rawQueryString": request.raw_query,
        "headers": headers,
        "requestContext": context,
        "isBase64Encoded": False,
    }
    if cookie_header:
        event["cookies"] = [c.strip() for c in cookie_header.split(";") if c.strip()]
    if request.raw_query:
        event["queryStringParameters"] = joined_headers(
            urllib.parse.parse_qsl(request.raw_query, keep_blank_values=True)
        )
    if path_params:
        event["pathParameters"] = path_params
    if request.body:
        try:
            event["body"] = request.body.decode("utf-8")
        except UnicodeDecodeError:
            event["body"] = base64.b64encode(request.body).decode()
            event["isBase64Encoded"] = True
    return event


# -- the answer ------------------------------------------------------------------------------------------
def response_from_result(result: Any) -> Response:
    """Payload 2.0 rules: a dict with `statusCode` is the response; any other JSON value is a 200 whose
    body is that JSON. Raises InvalidResult where API Gateway answers 500."""
    if not (isinstance(result, dict) and "statusCode" in result):
        try:
            body = json.dumps(result).encode()
        except (TypeError, ValueError) as exc:
            raise InvalidResult(f"result is not JSON ({exc})") from exc
        return Response(200, {"content-type": "application/json"}, body=body)
    status = result["statusCode"]
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise InvalidResult(f"statusCode {status!r} is not an HTTP status")
    body_text = result.get("body")
    if body_text is None:
        body_text = ""
    if not isinstance(body_text, str):
        raise InvalidResult(f"body is a {type(body_text).__name__}, not a string")
    try:
        raw = (
            base64.b64decode(body_text, validate=True)
            if result.get("isBase64Encoded")
            else body_text.encode()
        )
    except ValueError as exc:
        raise InvalidResult("isBase64Encoded but the body is not base64") from exc
    headers = {str(k).lower(): str(v) for k, v in (result.get("headers") or {}).items()}
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers[str(name).lower()] = ",".join(str(v) for v in values)
    headers.setdefault("content-type", "application/json")
    cookies = tuple(str(c) for c in result.get("cookies") or ())
    return Response(status, headers, cookies, raw)
